//! The write-ahead log: format ([`record`]), appending ([`writer`]),
//! scanning at recovery ([`reader`]), and [`Log`], which owns the writer and
//! the three positions every durability decision is made from:
//!
//! - *written*: bytes handed to the OS (survive a process crash);
//! - *flushed*: bytes covered by a successful sync (survive a power cut);
//! - *acknowledged*: commits below it may be reported durable. The policy
//!   decides how it follows the other two; the planted bugs move it early.
//!
//! Syncs run outside the writer's lock (under their own), so appends go on
//! while a group-commit leader waits for the disk.

pub(crate) mod reader;
pub mod record;
pub(crate) mod writer;

pub use writer::{parse_segment_name, segment_name};

use crate::config::BugSet;
use crate::error::Result;
use crate::fatal::Fatal;
use crate::{Lsn, TxnId};
use record::Body;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use writer::WalWriter;

/// The log, shared by every thread.
pub(crate) struct Log {
    writer: Mutex<WalWriter>,
    /// Serializes syncs (and so the order of `flushed` updates).
    sync_lock: Mutex<()>,
    flushed: AtomicU64,
    acked: AtomicU64,
    fatal: Arc<Fatal>,
    bugs: BugSet,
    /// `sync_data` calls on segment files since open.
    pub syncs: AtomicU64,
}

impl Log {
    /// A log whose bytes below `durable_end` are known durable.
    pub fn new(writer: WalWriter, durable_end: Lsn, fatal: Arc<Fatal>, bugs: BugSet) -> Log {
        assert!(
            durable_end <= writer.next_lsn(),
            "durable end beyond the log"
        );
        Log {
            writer: Mutex::new(writer),
            sync_lock: Mutex::new(()),
            flushed: AtomicU64::new(durable_end),
            acked: AtomicU64::new(durable_end),
            fatal,
            bugs,
            syncs: AtomicU64::new(0),
        }
    }

    fn writer(&self) -> MutexGuard<'_, WalWriter> {
        self.writer.lock().expect("WAL writer lock poisoned")
    }

    /// Appends a record (in memory); returns its LSN.
    pub fn append(&self, txn: TxnId, prev_lsn: Lsn, body: Body<'_>) -> Result<Lsn> {
        self.fatal.check()?;
        self.writer().append(txn, prev_lsn, body)
    }

    /// Appends a record and calls `observe` with its LSN while the writer
    /// is still locked: nothing can write the record out before `observe`
    /// returns.
    pub fn append_observed(
        &self,
        txn: TxnId,
        prev_lsn: Lsn,
        body: Body<'_>,
        observe: impl FnOnce(Lsn),
    ) -> Result<Lsn> {
        self.fatal.check()?;
        let mut writer = self.writer();
        let lsn = writer.append(txn, prev_lsn, body)?;
        observe(lsn);
        Ok(lsn)
    }

    pub fn next_lsn(&self) -> Lsn {
        self.writer().next_lsn()
    }

    pub fn written_lsn(&self) -> Lsn {
        self.writer().written_lsn()
    }

    pub fn flushed_lsn(&self) -> Lsn {
        self.flushed.load(Ordering::Acquire)
    }

    pub fn acked_lsn(&self) -> Lsn {
        self.acked.load(Ordering::Acquire)
    }

    pub fn bytes_written(&self) -> u64 {
        self.writer().bytes_written
    }

    /// Writes every appended byte to the OS; returns the written end.
    pub fn write_out(&self) -> Result<Lsn> {
        self.fatal.check()?;
        self.writer().write_out()
    }

    /// Syncs the WAL so that everything below `target` (already written) is
    /// durable, and publishes it as flushed.
    pub fn sync_to(&self, target: Lsn) -> Result<()> {
        let _sync = self.sync_lock.lock().expect("WAL sync lock poisoned");
        self.fatal.check()?;
        if self.flushed_lsn() >= target {
            return Ok(());
        }
        let files = {
            let writer = self.writer();
            assert!(target <= writer.written_lsn(), "sync of unwritten bytes");
            writer.files_to_sync()
        };
        for segment in &files {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.fatal
                .sync(self.bugs, &segment.name, segment.file.sync_data())?;
        }
        let before = self.flushed.fetch_max(target, Ordering::AcqRel);
        assert!(before < target, "flushed moved under the sync lock");
        self.writer().release_synced(target);
        Ok(())
    }

    /// Makes the WAL durable at least up to `target` (the write-ahead rule).
    pub fn flush_to(&self, target: Lsn) -> Result<()> {
        if self.flushed_lsn() >= target {
            return Ok(());
        }
        let written = self.write_out()?;
        assert!(written >= target, "flush target beyond the appended log");
        self.sync_to(written)
    }

    /// Writes and syncs everything appended; returns the durable end.
    pub fn flush_all(&self) -> Result<Lsn> {
        let written = self.write_out()?;
        self.sync_to(written)?;
        Ok(written)
    }

    /// Acknowledges every commit whose record starts below `lsn` — unless
    /// the engine has stopped: nothing is acknowledged after a fatal error.
    pub fn acknowledge(&self, lsn: Lsn) {
        if !self.fatal.is_stopped() {
            self.acked.fetch_max(lsn, Ordering::AcqRel);
        }
    }

    /// Locks the writer (checkpoint bookkeeping).
    pub fn lock_writer(&self) -> MutexGuard<'_, WalWriter> {
        self.writer()
    }
}
