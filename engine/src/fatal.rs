//! The engine's stop switch: a failed fsync (or a failed WAL write) is
//! fatal.
//!
//! After a failed sync nothing written since the last good sync is known to
//! be durable — Linux may have dropped the dirty pages and marked them clean,
//! so a later sync that succeeds proves nothing. The engine therefore stops:
//! the call that saw the failure returns [`Error::SyncFailed`], every later
//! call except `close`/drop returns [`Error::Stopped`], and no commit is
//! acknowledged after it. The planted bug `ignore-fsync-error` makes
//! [`Fatal::sync`] report success instead.

use crate::config::{Bug, BugSet};
use crate::error::{Error, Result};
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the engine has stopped, and why.
#[derive(Debug, Default)]
pub struct Fatal {
    stopped: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Fatal {
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// `Err(Stopped)` once the engine has stopped.
    pub fn check(&self) -> Result<()> {
        if !self.is_stopped() {
            return Ok(());
        }
        let reason = self.reason.lock().expect("fatal reason lock").clone();
        Err(Error::Stopped(reason.unwrap_or_default()))
    }

    /// Stops the engine (the first reason wins).
    pub fn stop(&self, reason: String) {
        let mut slot = self.reason.lock().expect("fatal reason lock");
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopped.store(true, Ordering::Release);
    }

    /// Judges the result of a sync of `file`: a failure stops the engine
    /// (unless the `ignore-fsync-error` bug is on).
    pub fn sync(&self, bugs: BugSet, file: &str, result: io::Result<()>) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(_) if bugs.has(Bug::IgnoreFsyncError) => Ok(()),
            Err(source) => {
                self.stop(format!("sync of {file} failed: {source}"));
                Err(Error::SyncFailed {
                    file: file.to_string(),
                    source,
                })
            }
        }
    }

    /// Judges the result of a write whose failure leaves the WAL in an
    /// unknown state: a failure stops the engine.
    pub fn io<T>(&self, op: &'static str, file: &str, result: io::Result<T>) -> Result<T> {
        result.map_err(|source| {
            self.stop(format!("{op} of {file} failed: {source}"));
            Error::Io {
                op,
                file: file.to_string(),
                source,
            }
        })
    }
}

/// Wraps a storage error that does not stop the engine.
pub fn io_error<'a>(op: &'static str, file: &'a str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        file: file.to_string(),
        source,
    }
}
