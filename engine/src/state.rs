//! The engine's shared state and the one way pages change: log, then apply.
//!
//! [`Inner`] is what every thread shares without the core lock (storage,
//! log, page file, counters). [`Core`] is everything behind the core lock:
//! the buffer pool, the transaction table, and the pages that already have a
//! full-page image since the last checkpoint's begin record.
//!
//! [`log_and_apply`] is the single path by which a page changes at runtime
//! and during undo: a full-page image first if this is the page's first
//! change since the checkpoint began (skipped by the `no-full-page-images`
//! bug), then the update or CLR record, then the physical change with the
//! page's pageLSN set to that record's LSN. A page that was clean gets its
//! recLSN here: its full-page image of this checkpoint interval if it has
//! one, else the update's LSN — so redo from the oldest recLSN always starts
//! at or before the image that can repair the page if its next write tears
//! (the `reclsn-skips-image` bug takes the update's LSN: a page written,
//! then dirtied again in the same interval, has its image before its recLSN,
//! where redo skips it).

use crate::buffer::{BufferPool, PageFile};
use crate::clock::Clock;
use crate::config::{Bug, Config};
use crate::error::{Error, Result};
use crate::fatal::Fatal;
use crate::page::Page;
use crate::storage::Storage;
use crate::txn::TxnTable;
use crate::wal::Log;
use crate::wal::record::{Body, NO_LSN, Op, UpdateBody};
use crate::{Lsn, TxnId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// Shared, lock-free-to-reach parts of an open engine.
pub struct Inner {
    pub storage: Arc<dyn Storage>,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub log: Log,
    pub pages: PageFile,
    pub fatal: Arc<Fatal>,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub checkpoints: AtomicU64,
    /// A checkpoint is under way (for readers that must not wait on the
    /// checkpointer's lock).
    pub checkpoint_running: AtomicBool,
}

/// Everything behind the core lock.
pub struct Core {
    pub pool: BufferPool,
    pub txns: TxnTable,
    /// Pages with a full-page image logged since the last checkpoint's begin
    /// record, and the image's LSN.
    pub fpi_lsn: BTreeMap<u32, Lsn>,
}

/// Whether a change is a forward update or a compensation (undo) record.
#[derive(Clone, Copy, Debug)]
pub enum ChangeKind {
    Update,
    Clr { undo_next_lsn: Lsn },
}

/// One physical change to log and apply.
pub struct Change<'a> {
    pub txn: TxnId,
    pub prev_lsn: Lsn,
    pub kind: ChangeKind,
    pub page_id: u32,
    pub op: Op,
    pub slot: usize,
    pub key: &'a [u8],
    pub before: Option<&'a [u8]>,
    pub after: Option<&'a [u8]>,
}

/// Logs `change` (after a full-page image if due) and applies it to the
/// cached page, in place: the change is checked against the page first (a
/// change that does not fit is an error and nothing is logged), so no copy
/// of the page is needed to apply it. Callers check for room first.
pub fn log_and_apply(inner: &Inner, core: &mut Core, change: &Change<'_>) -> Result<Lsn> {
    let page_size = inner.pages.page_size;
    let frame = core.pool.fetch(change.page_id, &inner.pages, &inner.log)?;
    // Checked before anything is logged; applied in place once logged.
    frame
        .page
        .check(change.op, change.slot, change.key, change.after, page_size)
        .map_err(|what| Error::corruption("pages", frame.page.lsn, what))?;
    let fpi_due = !core.fpi_lsn.contains_key(&change.page_id);
    if !inner.config.bugs.has(Bug::NoFullPageImages) && fpi_due {
        let image = frame.page.encode(page_size);
        // The zeros that end every page (its hole) are not logged: redo
        // puts them back. A page of a few entries costs its entries, not a
        // whole page, which matters most to a group fsync carrying many.
        let (kept, hole) = image.split_at(frame.page.used());
        assert!(
            hole.iter().all(|&byte| byte == 0),
            "page {} has bytes past its entries",
            change.page_id
        );
        let image_lsn = inner.log.append(
            0,
            NO_LSN,
            Body::FullPageImage {
                page_id: change.page_id,
                image: kept,
            },
        )?;
        core.fpi_lsn.insert(change.page_id, image_lsn);
    }
    let update = UpdateBody {
        page_id: change.page_id,
        op: change.op,
        slot: u16::try_from(change.slot).expect("slot fits u16"),
        key: change.key,
        before: change.before,
        after: change.after,
    };
    let body = match change.kind {
        ChangeKind::Update => Body::Update(update),
        ChangeKind::Clr { undo_next_lsn } => Body::Clr {
            undo_next_lsn,
            update,
        },
    };
    let lsn = inner.log.append(change.txn, change.prev_lsn, body)?;
    assert!(
        lsn > frame.page.lsn || frame.page.lsn == 0,
        "pageLSN increases"
    );
    if let Err(what) = frame
        .page
        .apply(change.op, change.slot, change.key, change.after, page_size)
    {
        panic!(
            "page {} changed between check and apply: {what}",
            change.page_id
        );
    }
    frame.page.lsn = lsn;
    if !frame.dirty {
        let image_lsn = core.fpi_lsn.get(&change.page_id).copied();
        if inner.config.bugs.has(Bug::RecLsnSkipsImage) {
            frame.mark_dirty(lsn);
        } else {
            frame.mark_dirty(image_lsn.map_or(lsn, |image| image.min(lsn)));
        }
    }
    Ok(lsn)
}

/// One update to undo.
pub struct UndoStep<'a> {
    pub txn: TxnId,
    /// The transaction's last record (the CLR's `prev_lsn`).
    pub prev_lsn: Lsn,
    pub page_id: u32,
    pub key: &'a [u8],
    /// The value to restore (absent: remove the key).
    pub before: Option<&'a [u8]>,
    /// Where undo of this transaction goes on after this step.
    pub undo_next_lsn: Lsn,
}

/// Undoes one update logically by key: restores `before` as the key's value
/// (absent: removes the key), logging a CLR that points to `undo_next_lsn`.
pub fn undo_one(inner: &Inner, core: &mut Core, step: &UndoStep<'_>) -> Result<Lsn> {
    let UndoStep {
        txn,
        prev_lsn,
        page_id,
        key,
        before,
        undo_next_lsn,
    } = *step;
    let frame = core.pool.fetch(page_id, &inner.pages, &inner.log)?;
    let page: &Page = &frame.page;
    let (op, slot, current) = match (page.find(key), before) {
        (Ok(slot), Some(_)) => (Op::Replace, slot, Some(page.value_at(slot).to_vec())),
        (Ok(slot), None) => (Op::Remove, slot, Some(page.value_at(slot).to_vec())),
        (Err(slot), Some(_)) => (Op::Insert, slot, None),
        (Err(_), None) => {
            return Err(Error::corruption(
                "pages",
                prev_lsn,
                format!("undo of txn {txn}: key to remove is absent from page {page_id}"),
            ));
        }
    };
    let change = Change {
        txn,
        prev_lsn,
        kind: ChangeKind::Clr { undo_next_lsn },
        page_id,
        op,
        slot,
        key,
        before: current.as_deref(),
        after: before,
    };
    log_and_apply(inner, core, &change)
}
