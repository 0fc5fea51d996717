//! Sharp checkpoints and WAL segment removal.
//!
//! A checkpoint runs under the core lock, so no page changes and no commit
//! record is appended while it runs:
//!
//! 1. write and sync the WAL;
//! 2. write every dirty page (the WAL already covers them), sync the page
//!    file — the `early-checkpoint` bug moves this sync after step 4;
//! 3. append a checkpoint record (active transactions with their first and
//!    last LSN, the next transaction id), write and sync the WAL;
//! 4. replace the control file atomically (it names the checkpoint record);
//! 5. remove the segments wholly below min(checkpoint LSN, first LSN of every
//!    active transaction), then sync the directory. The `early-wal-removal`
//!    bug removes everything below the checkpoint LSN, active transactions
//!    ignored, before step 4.
//!
//! Redo starts at the checkpoint LSN: every change before it is in the
//! synced page file.

use crate::Lsn;
use crate::config::Bug;
use crate::control::{self, Control};
use crate::error::Result;
use crate::state::{Core, Inner};
use crate::wal::record::Body;
use crate::wal::writer::parse_segment_name;
use std::sync::atomic::Ordering;

/// Takes a checkpoint (the caller holds the core lock).
pub fn checkpoint(inner: &Inner, core: &mut Core) -> Result<Lsn> {
    inner.fatal.check()?;
    let bugs = inner.config.bugs;
    let log = &inner.log;
    let flushed = log.flush_all()?;
    log.acknowledge(flushed);
    core.pool.write_all_dirty(&inner.pages, log)?;
    if !bugs.has(Bug::EarlyCheckpoint) {
        sync_pages(inner)?;
    }
    core.fpi_done.clear();
    let active = core.txns.checkpoint_list();
    let keep_from = active
        .iter()
        .map(|txn| txn.first_lsn)
        .min()
        .unwrap_or(Lsn::MAX);
    let body = Body::Checkpoint {
        next_txn: core.txns.next_txn,
        active,
    };
    let lsn = log.append(0, crate::wal::record::NO_LSN, body)?;
    let flushed = log.flush_all()?;
    log.acknowledge(flushed);
    if bugs.has(Bug::EarlyWalRemoval) {
        remove_segments_below(inner, lsn)?;
    }
    let control = Control {
        page_size: inner.config.page_size,
        page_count: inner.config.page_count,
        segment_size: inner.config.segment_size,
        checkpoint_lsn: lsn,
    };
    control::write(inner.storage.as_ref(), &control, &inner.fatal, bugs)?;
    if bugs.has(Bug::EarlyCheckpoint) {
        sync_pages(inner)?;
    }
    if !bugs.has(Bug::EarlyWalRemoval) {
        remove_segments_below(inner, lsn.min(keep_from))?;
    }
    core.checkpoint_lsn = lsn;
    inner.checkpoints.fetch_add(1, Ordering::Relaxed);
    Ok(lsn)
}

fn sync_pages(inner: &Inner) -> Result<()> {
    let result = inner.pages.sync();
    inner
        .fatal
        .sync(inner.config.bugs, crate::buffer::PAGES_FILE, result)
}

/// Removes every segment that ends at or below `lsn`, then syncs the
/// directory if it removed any.
pub fn remove_segments_below(inner: &Inner, lsn: Lsn) -> Result<usize> {
    let segment_size = inner.config.segment_size;
    let current = inner.log.lock_writer().current_start();
    let names = inner
        .fatal
        .io("list", "the directory", inner.storage.list())?;
    let mut removed = 0;
    for name in names {
        let Some(start) = parse_segment_name(&name) else {
            continue;
        };
        if start + segment_size <= lsn && start < current {
            inner
                .fatal
                .io("remove", &name, inner.storage.remove(&name))?;
            removed += 1;
        }
    }
    if removed > 0 {
        let result = inner.storage.sync_dir();
        inner
            .fatal
            .sync(inner.config.bugs, "the directory", result)?;
    }
    inner.log.lock_writer().release_synced(lsn.min(current));
    Ok(removed)
}
