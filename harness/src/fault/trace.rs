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
pub type WorkloadTxnId = u64;

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
