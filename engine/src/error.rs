//! The engine's typed errors. Corruption is a value the caller sees, never a
//! silent fallback.

use crate::{Lsn, TxnId};
use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A storage call failed (not a sync: see [`Error::SyncFailed`]).
    #[error("I/O error during {op} of {file}: {source}")]
    Io {
        op: &'static str,
        file: String,
        source: io::Error,
    },
    /// A sync failed. The engine has stopped: nothing it wrote since the last
    /// successful sync is durable, and no commit will be acknowledged again.
    #[error("sync of {file} failed: {source}; the engine has stopped")]
    SyncFailed { file: String, source: io::Error },
    /// An earlier fatal error stopped the engine.
    #[error("the engine has stopped after an earlier fatal error: {0}")]
    Stopped(String),
    /// On-disk data failed a check (checksum, LSN, structure).
    #[error("corruption in {file} at {location}: {what}")]
    Corruption {
        file: String,
        location: String,
        what: String,
    },
    /// Another opener holds the directory lock.
    #[error("the database directory is locked by another engine instance")]
    Locked,
    /// Another active transaction holds the write lock on the key.
    #[error("write conflict on key {key:?}: held by transaction {holder}")]
    Conflict { key: Vec<u8>, holder: TxnId },
    /// The key's page has no room for the entry.
    #[error("page {page} is full")]
    PageFull { page: u32 },
    /// A key or value longer than the configured maximum.
    #[error("{what} of {len} bytes is larger than the maximum {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// No active transaction has this id.
    #[error("no active transaction {0}")]
    NoSuchTxn(TxnId),
    /// The configuration is invalid or does not match the directory's.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// True for corruption detected in on-disk data.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    pub(crate) fn corruption(file: impl Into<String>, lsn: Lsn, what: impl Into<String>) -> Error {
        Error::Corruption {
            file: file.into(),
            location: format!("LSN {lsn:#x}"),
            what: what.into(),
        }
    }
}
