//! The engine's public face. (API contract; the implementation lands with the
//! engine issue — every body below is to be replaced.)

use crate::clock::Clock;
use crate::config::Config;
use crate::error::Result;
use crate::storage::Storage;
use crate::{Lsn, TxnId};
use std::sync::Arc;

/// An open database. `Send + Sync`: many threads may run transactions and
/// commit at once.
pub struct Engine {
    _private: (),
}

/// What recovery found and did when the engine was opened. For a fresh
/// directory `created` is true and the rest is zero/empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no database; a new one was created.
    pub created: bool,
    /// LSN of the checkpoint record recovery started from.
    pub checkpoint_lsn: Lsn,
    /// Where redo started.
    pub redo_start_lsn: Lsn,
    /// The end of the valid log: the first byte after the last valid record.
    pub log_end_lsn: Lsn,
    /// Why the log ends there, in words with the segment file and offset,
    /// e.g. "bad CRC in record at LSN 0x1f40 (wal-0000000000000000, offset 8000)".
    pub log_end_reason: String,
    /// Bytes of the torn tail cut off (0 if the log ended cleanly).
    pub truncated_bytes: u64,
    /// WAL bytes read from the redo start to the log end.
    pub wal_bytes_replayed: u64,
    /// Records read during redo / applied to a page (the rest were skipped by
    /// the pageLSN check).
    pub records_scanned: u64,
    pub records_redone: u64,
    /// Pages whose on-disk copy failed its checksum and were restored from a
    /// full-page image.
    pub pages_repaired: Vec<u32>,
    /// Transactions without a commit or abort record, rolled back by undo.
    pub losers: Vec<TxnId>,
    /// Compensation records written by undo.
    pub clrs_written: u64,
}

/// Counters since open, for benchmarks and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub commits: u64,
    pub aborts: u64,
    pub wal_bytes_written: u64,
    pub wal_syncs: u64,
    pub page_writes: u64,
    pub checkpoints: u64,
}

/// A commit whose record is in the log; acknowledged now or later (see
/// [`Engine::commit_enqueue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitTicket {
    pub txn: TxnId,
    /// LSN of the commit record.
    pub lsn: Lsn,
}

/// What a group-commit leader is flushing: the WAL up to (not including) `lsn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushTarget {
    pub lsn: Lsn,
}

impl Engine {
    /// Opens the database in `storage`: creates it if the directory holds
    /// none, otherwise runs recovery. Takes the directory lock
    /// ([`crate::Error::Locked`] if another engine holds it).
    pub fn open(
        storage: Arc<dyn Storage>,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine> {
        let _ = (storage, config, clock);
        todo!("engine issue")
    }

    /// What recovery found and did in [`Engine::open`].
    pub fn recovery_report(&self) -> &RecoveryReport {
        todo!("engine issue")
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<TxnId> {
        todo!("engine issue")
    }

    /// Sets `key` to `value` in `txn` (takes the key's write lock, no wait:
    /// [`crate::Error::Conflict`] if another transaction holds it).
    pub fn put(&self, txn: TxnId, key: &[u8], value: &[u8]) -> Result<()> {
        let _ = (txn, key, value);
        todo!("engine issue")
    }

    /// Deletes `key` in `txn` (a no-op write if absent).
    pub fn delete(&self, txn: TxnId, key: &[u8]) -> Result<()> {
        let _ = (txn, key);
        todo!("engine issue")
    }

    /// Reads `key` as `txn` sees it (its own writes included).
    pub fn get(&self, txn: TxnId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = (txn, key);
        todo!("engine issue")
    }

    /// Rolls `txn` back.
    pub fn abort(&self, txn: TxnId) -> Result<()> {
        let _ = txn;
        todo!("engine issue")
    }

    /// Commits `txn` and returns once the policy allows acknowledging it
    /// (for `group`, after an fsync covering the commit record, led by one of
    /// the waiting threads). Returns the commit record's LSN.
    pub fn commit(&self, txn: TxnId) -> Result<Lsn> {
        let _ = txn;
        todo!("engine issue")
    }

    /// Commits `txn` without waiting on other threads, for deterministic
    /// single-threaded drivers: appends the commit record and does what the
    /// policy does at commit (`always`: write + fsync; `interval`/`none`:
    /// write to the OS; `group`: nothing more). The ticket is acknowledged
    /// when [`Engine::is_acknowledged`] says so — for `group`, after a
    /// [`Engine::group_flush_begin`] / [`Engine::group_flush_finish`] pair
    /// that covers it.
    pub fn commit_enqueue(&self, txn: TxnId) -> Result<CommitTicket> {
        let _ = txn;
        todo!("engine issue")
    }

    /// True once the commit may be reported to the client as durable under
    /// the policy.
    pub fn is_acknowledged(&self, ticket: CommitTicket) -> bool {
        let _ = ticket;
        todo!("engine issue")
    }

    /// Group commit, leader step 1: writes every WAL byte appended so far to
    /// the OS and returns that position as the flush target. Commits enqueued
    /// after this call are not covered by it.
    pub fn group_flush_begin(&self) -> Result<FlushTarget> {
        todo!("engine issue")
    }

    /// Group commit, leader step 2: fsyncs the WAL up to `target` and
    /// publishes it as flushed, acknowledging the commits it covers. Returns
    /// the flushed LSN.
    pub fn group_flush_finish(&self, target: FlushTarget) -> Result<Lsn> {
        let _ = target;
        todo!("engine issue")
    }

    /// Lets time-driven work happen at the clock's current time: the
    /// `interval:MS` flusher, and an automatic checkpoint when due.
    pub fn tick(&self) -> Result<()> {
        todo!("engine issue")
    }

    /// Takes a checkpoint: flushes the WAL and all dirty pages, writes a
    /// checkpoint record, replaces the control file atomically, and removes
    /// WAL segments no longer needed. Every commit acknowledged before the
    /// call is durable when it returns.
    pub fn checkpoint(&self) -> Result<()> {
        todo!("engine issue")
    }

    /// Every key and value, sorted by key, as the pages hold them now (call
    /// it with no transaction active to read the committed state).
    pub fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        todo!("engine issue")
    }

    /// Counters since open.
    pub fn stats(&self) -> EngineStats {
        todo!("engine issue")
    }

    /// Closes cleanly: aborts active transactions, takes a checkpoint,
    /// releases the lock.
    pub fn close(self) -> Result<()> {
        todo!("engine issue")
    }
}
