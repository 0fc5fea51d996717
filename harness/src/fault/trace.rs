//! The trace: every storage operation and workload acknowledgement, in order.
//!
//! Sinks: [`VecSink`] (in memory) and [`super::shm::SharedTrace`] (shared
//! memory mapped before fork, readable after the writer was SIGKILLed).

/// Identifies a file (an inode) for the life of a trace: files of the base
/// image are numbered first (in path order), then each `Create` takes the
/// next number. A rename moves a name, not the file id; a link adds a name
/// to it.
pub type FileId = u32;

/// The [`FileId`] the image builder reports for a change that concerns a
/// directory, not a file (`CreateDir`, `RemoveDir`).
pub const NO_FILE: FileId = FileId::MAX;

/// The workload's id for a transaction, unique across all cycles of a trial.
/// Cycle `c`'s ids are `(c + 1) << 32` plus a number below 2^32: a
/// single-threaded driver counts from 0; a threaded one (kv-threads) puts
/// its thread (+1) in bits 24..32 and that thread's own count below
/// ([`threaded_txn_id`]), so a story can say which thread committed what
/// ([`TxnName`]).
pub type WorkloadTxnId = u64;

/// Bits of a cycle's part of a [`WorkloadTxnId`] that count one thread's
/// transactions.
const THREAD_COUNT_BITS: u32 = 24;

/// The id of thread `thread`'s transaction number `count` (from 0) in the
/// cycle whose ids start at `cycle_base`.
pub fn threaded_txn_id(cycle_base: WorkloadTxnId, thread: u32, count: u64) -> WorkloadTxnId {
    assert!(thread < 0xff, "thread {thread} beyond the id's 8 bits");
    assert!(
        count < 1 << THREAD_COUNT_BITS,
        "a thread's count beyond 24 bits"
    );
    cycle_base + ((u64::from(thread) + 1) << THREAD_COUNT_BITS) + count
}

/// A transaction as the workload means it, for stories and messages:
/// `txn N` (the raw id) for a single-threaded driver's, `thread T txn N`
/// (with `of cycle C` after the first cycle) for a threaded one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnName(pub WorkloadTxnId);

impl std::fmt::Display for TxnName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.0;
        let within = id & 0xffff_ffff;
        let thread = within >> THREAD_COUNT_BITS;
        match (id >> 32).checked_sub(1) {
            Some(cycle) if thread > 0 => {
                let count = within & ((1 << THREAD_COUNT_BITS) - 1);
                write!(f, "thread {} txn {count}", thread - 1)?;
                if cycle > 0 {
                    write!(f, " of cycle {cycle}")?;
                }
                Ok(())
            }
            _ => write!(f, "txn {id}"),
        }
    }
}

/// A value written by a transaction: `None` deletes the key.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// One entry of the trace. The index of an event in the trace is its
/// "operation index"; a crash point `k` keeps events `0..k`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    // --- storage operations, recorded by the recording storage after the
    // operation completed (a failed sync is recorded with `failed: true`).
    Create {
        name: String,
        file: FileId,
    },
    Write {
        file: FileId,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        file: FileId,
        len: u64,
    },
    SyncData {
        file: FileId,
        failed: bool,
    },
    SyncAll {
        file: FileId,
        failed: bool,
    },
    Rename {
        from: String,
        to: String,
        file: FileId,
    },
    Remove {
        name: String,
        file: FileId,
    },
    /// The file named `from` got a second name `to` (a hard link): a new
    /// entry in the directory of `to`; the file keeps its id.
    Link {
        from: String,
        to: String,
        file: FileId,
    },
    /// A sync of the directory `dir` (`""` is the root): covers the
    /// entries created, renamed or removed in it.
    SyncDir {
        dir: String,
        failed: bool,
    },
    /// A subdirectory was created (its entry lives in its parent).
    CreateDir {
        path: String,
    },
    /// An empty subdirectory was removed.
    RemoveDir {
        path: String,
    },
    // --- workload events, recorded by the driver.
    /// The driver is about to call commit for this transaction, whose writes
    /// (in order; the last write of a key wins) are these.
    CommitIssued {
        txn: WorkloadTxnId,
        writes: Vec<Write>,
    },
    /// The commit call returned; the target's commit record is at `lsn`
    /// (a target without LSNs reports none).
    CommitLogged {
        txn: WorkloadTxnId,
        lsn: Option<u64>,
    },
    /// The target acknowledged the commit at this virtual time.
    Acked {
        txn: WorkloadTxnId,
        now_us: u64,
    },
    /// The target said no to the commit (error); it may or may not survive.
    CommitFailed {
        txn: WorkloadTxnId,
    },
    /// A checkpoint returned Ok: every commit acknowledged before its
    /// `CheckpointIssued` is durable from here on.
    CheckpointIssued,
    CheckpointAcked,
    /// The workload (re)opened the target: recovery starts here.
    OpenIssued,
    /// Recovery finished and the target is open.
    Opened,
}

/// Where events go: the shared-memory trace in a workload child, a `Vec` in
/// tests. Appending is the only operation; it must be cheap.
pub trait EventSink: Send + Sync {
    /// Appends `event`; returns its operation index, or [`NOT_RECORDED`] if
    /// the sink had no room (then [`EventSink::overflowed`] is true).
    fn record(&self, event: Event) -> u64;

    /// The index the next event will get, if this sink can tell (a recording
    /// storage with a `stop_at` needs it).
    fn next_index(&self) -> Option<u64> {
        None
    }

    /// True once an event was dropped for lack of room: the sink then keeps
    /// a consistent prefix and records nothing more.
    fn overflowed(&self) -> bool {
        false
    }
}

/// What [`EventSink::record`] returns for an event it could not keep.
pub const NOT_RECORDED: u64 = u64::MAX;

/// An in-memory sink, for tests and for recording outside a workload child.
#[derive(Debug, Default)]
pub struct VecSink {
    events: std::sync::Mutex<Vec<Event>>,
}

impl VecSink {
    pub fn new() -> VecSink {
        VecSink::default()
    }

    /// A copy of the events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("VecSink lock").clone()
    }
}

impl EventSink for VecSink {
    fn record(&self, event: Event) -> u64 {
        let mut events = self.events.lock().expect("VecSink lock");
        events.push(event);
        events.len() as u64 - 1
    }

    fn next_index(&self) -> Option<u64> {
        Some(self.events.lock().expect("VecSink lock").len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threaded_txn_is_named_by_its_thread_and_count() {
        let base = 1 << 32;
        assert_eq!(
            TxnName(threaded_txn_id(base, 1, 15)).to_string(),
            "thread 1 txn 15"
        );
        assert_eq!(
            TxnName(threaded_txn_id(3 << 32, 63, 99_999)).to_string(),
            "thread 63 txn 99999 of cycle 2"
        );
        // A single-threaded driver's ids (and small test ids) stay as they are.
        assert_eq!(TxnName(base + 15).to_string(), "txn 4294967311");
        assert_eq!(TxnName(101).to_string(), "txn 101");
        let ids: Vec<WorkloadTxnId> = (0..64)
            .flat_map(|thread| [0, 1, (1 << 24) - 1].map(|n| threaded_txn_id(base, thread, n)))
            .collect();
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(ids.iter().all(|&id| (base..2 << 32).contains(&id)));
    }
}
