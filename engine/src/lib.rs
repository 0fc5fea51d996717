//! The reference write-ahead-log key-value engine (SPEC §2).
//!
//! A transactional key-value store built like the classic WAL designs
//! (ARIES, PostgreSQL, InnoDB) so that the powercut harness has real
//! mechanisms to torture: a WAL of CRC-checked records in preallocated,
//! recycled segment files, a page file behind a bounded STEAL/NO-FORCE
//! buffer pool, full-page images against torn pages, fuzzy checkpoints
//! (begin and end records, a dirty page table, pages written in the
//! background) named by an atomically replaced control file, and ARIES
//! recovery (analysis, redo from the oldest recLSN, undo with CLRs).
//!
//! All file I/O goes through [`storage::Storage`]; all time through
//! [`clock::Clock`]. See `docs/design.md` for the on-disk formats and the
//! argument, crash window by crash window, for why acknowledged commits
//! survive.

pub mod clock;
pub mod config;
pub mod error;
pub mod storage;

mod buffer;
mod checkpoint;
mod control;
mod db;
mod fatal;
mod group;
mod page;
mod recovery;
mod state;
mod txn;
pub mod wal;

pub use clock::{Clock, SystemClock, VirtualClock};
pub use config::{Bug, BugSet, Config, FsyncPolicy};
pub use db::{
    ACTIVE_TXNS_MAX, CommitTicket, Engine, EngineStats, FlushTarget, RecoveryReport,
    RecoveryTimings, check_config,
};
pub use error::{Error, Result};
pub use page::page_of;

/// A log sequence number: the byte position of a record in the WAL stream.
pub type Lsn = u64;

/// A transaction id, unique for the life of a database directory.
pub type TxnId = u64;
