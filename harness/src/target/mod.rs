//! The target seam: how the harness drives an engine under test.
//!
//! The workload driver and the verifier talk to the engine only through
//! [`Target`], so another engine (another Rust engine, later SQLite) can be
//! tortured by implementing it and [`TargetFactory`]. All of a target's file
//! I/O must go through the [`Storage`] it is opened on: that is where the
//! harness records, injects faults and builds crash images.

mod engine;
pub mod process;
pub mod sqlite;

pub use self::engine::{EngineFactory, EngineTarget};

use ::engine::Clock;
use ::engine::storage::Storage;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The target's name for an open transaction.
pub type TxnHandle = u64;

/// The recovered (or current) contents: key → value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// How a target operation failed, as far as the driver and the oracle care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetErrorKind {
    /// The transaction cannot go on (write conflict, full page, too large):
    /// the driver aborts it and carries on.
    Rejected,
    /// On-disk data failed a check: a clear corruption error.
    Corruption,
    /// The target stopped (a failed fsync, an I/O error): it accepts nothing
    /// more until reopened.
    Fatal,
    /// Anything else (misuse, invalid configuration, locked directory).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError {
    pub kind: TargetErrorKind,
    pub message: String,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TargetError {}

pub type TargetResult<T> = Result<T, TargetError>;

/// An open engine under test. One thread drives it; every call is
/// deterministic given the same storage contents and call sequence.
pub trait Target {
    fn begin(&mut self) -> TargetResult<TxnHandle>;
    fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()>;
    fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()>;
    fn abort(&mut self, txn: TxnHandle) -> TargetResult<()>;
    /// Issues the commit: after this returns the commit is "issued"; it is
    /// acknowledged when [`Target::take_acks`] reports it. Returns the
    /// position of the commit record (an LSN), if the target has one.
    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>>;
    /// Group commit leader, step 1 (capture what the flush covers). A
    /// no-op for targets without group commit.
    fn flush_begin(&mut self) -> TargetResult<()>;
    /// Group commit leader, step 2 (fsync, acknowledge what it covered).
    fn flush_finish(&mut self) -> TargetResult<()>;
    /// Lets time-driven work run at the clock's current time.
    fn tick(&mut self) -> TargetResult<()>;
    /// A durable point: when this returns Ok, every commit acknowledged
    /// before the call survives any later crash, whatever the policy.
    fn checkpoint(&mut self) -> TargetResult<()>;
    /// Commits acknowledged since the last call, each reported exactly once,
    /// in the order they became acknowledged.
    fn take_acks(&mut self) -> Vec<TxnHandle>;
    /// Reads one committed key (no transaction active).
    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>>;
    /// Every committed key and value (no transaction active).
    fn scan(&mut self) -> TargetResult<State>;
    /// What recovery found and did when this target was opened, in words.
    fn recovery_summary(&self) -> String;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> TargetResult<()>;
}

/// Opens targets: the workload's, and the verifier's after each crash.
pub trait TargetFactory: Send + Sync {
    /// Opens (creating or recovering) a target on `storage`.
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>>;
}
