//! ARIES recovery: analysis, tail truncation, redo, undo.
//!
//! 1. **Analysis** reads the end record of the checkpoint named by the
//!    control file (the transaction table and dirty page table as of its
//!    begin record, and the redo LSN: the oldest recLSN), then scans from the
//!    begin record to the end of the log: the transaction table (active at
//!    the begin, plus every transaction seen, minus those with a commit or
//!    abort record), the next transaction id, and the pages that have a
//!    full-page image in the range. The scan also finds the end of the log:
//!    the first record whose length, CRC or LSN is wrong (zeros end a
//!    preallocated segment; a recycled segment's old records carry their
//!    old LSNs).
//! 2. **Tail truncation**: the segment holding the end is zeroed from it to
//!    its end and synced, later segments are removed and the directory
//!    synced, so new appends are never followed by old bytes (skipped by the
//!    `no-tail-truncate` bug). Every segment in the redo range is synced
//!    too, since a process crash may have left its bytes in the page cache
//!    only.
//! 3. **Redo** repeats history from the redo LSN (the `redo-from-checkpoint`
//!    bug starts at the begin record instead) for every transaction
//!    (one segment at a time, each segment's records page by page):
//!    a full-page image is applied only if the page on disk fails its
//!    checks or is older than the image; an update or CLR only if the page's
//!    pageLSN is below the record's LSN (skipped by `redo-no-pagelsn-check`).
//! 4. **Undo** rolls back the losers together in reverse LSN order, writing
//!    a CLR per undone update and an abort record per transaction; a CLR
//!    found in the log sends undo to its `undo_next_lsn`, so a crash during
//!    undo resumes where it stopped (skipped by the `no-undo` bug).
//!
//! The caller ends recovery with a checkpoint.

use crate::buffer::PAGES_FILE;
use crate::config::{Bug, Config};
use crate::db::RecoveryReport;
use crate::error::{Error, Result};
use crate::fatal::{Fatal, io_error};
use crate::page::Page;
use crate::state::{Core, Inner, UndoStep, undo_one};
use crate::storage::{Storage, read_exact_at};
use crate::wal::reader::{Found, LogEnd, LogReader, Step, read_record_at, record_in};
use crate::wal::record::{ActiveTxn, Body, HEADER_LEN, NO_LSN, Record, UpdateBody};
use crate::wal::writer::{
    Segment, WalWriter, open_segment, parse_segment_name, segment_name, zero_fill,
};
use crate::{Lsn, TxnId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What analysis found.
pub struct Analysis {
    pub end: LogEnd,
    pub losers: BTreeMap<TxnId, ActiveTxn>,
    pub next_txn: TxnId,
    /// Pages with a full-page image since the checkpoint's begin, and the
    /// first image's LSN.
    pub fpi_lsn: BTreeMap<u32, Lsn>,
    /// Where redo starts: the checkpoint's oldest recLSN, or its begin.
    pub redo_lsn: Lsn,
    /// The checkpoint's begin LSN and dirty page table (page → recLSN).
    pub begin_lsn: Lsn,
    pub dirty: BTreeMap<u32, Lsn>,
}

/// Bytes analysis reads at a time: small enough that the records are still
/// in the CPU cache when they are checked.
pub const ANALYSIS_WINDOW_BYTES: usize = 1 << 20;

fn reader<'s>(
    storage: &'s dyn Storage,
    config: &Config,
    start: Lsn,
    window_max: usize,
) -> LogReader<'s> {
    LogReader::new(
        storage,
        config.segment_size,
        start,
        !config.bugs.has(Bug::NoCrcCheck),
        config.bugs.has(Bug::ReplayPastTorn),
        window_max,
    )
    .with_lsn_check(!config.bugs.has(Bug::StaleRecycledRecord))
}

/// Pass 1: analysis from the checkpoint the control file names: its end
/// record (at `end_lsn`) holds the tables as of its begin record (at
/// `begin_lsn`), and the scan goes from the begin record to the end of the
/// log.
pub fn analyze(
    storage: &dyn Storage,
    config: &Config,
    begin_lsn: Lsn,
    end_lsn: Lsn,
) -> Result<Analysis> {
    let corrupt = |at: Lsn, what: String| {
        Error::corruption(segment_name(at - at % config.segment_size), at, what)
    };
    let end_record = read_record_at(storage, config.segment_size, end_lsn).map_err(|error| {
        corrupt(
            end_lsn,
            format!("the checkpoint end record named by the control file is unreadable: {error}"),
        )
    })?;
    let (mut losers, mut next_txn, redo_lsn, dirty) = match end_record.record().body {
        Body::Checkpoint {
            begin_lsn: begin,
            redo_lsn,
            next_txn,
            active,
            dirty,
        } if begin == begin_lsn && redo_lsn <= begin_lsn => (
            active
                .into_iter()
                .map(|txn| (txn.txn, txn))
                .collect::<BTreeMap<_, _>>(),
            next_txn,
            redo_lsn,
            dirty
                .into_iter()
                .map(|page| (page.page_id, page.rec_lsn))
                .collect::<BTreeMap<_, _>>(),
        ),
        other => {
            return Err(corrupt(
                end_lsn,
                format!(
                    "control names a {:?} record, not the end of the checkpoint begun at {begin_lsn:#x}",
                    other.kind()
                ),
            ));
        }
    };
    let mut scan = reader(storage, config, begin_lsn, ANALYSIS_WINDOW_BYTES);
    match scan.next()? {
        Some(record) if record.lsn == begin_lsn && record.body == Body::CheckpointBegin => {}
        _ => {
            let reason = scan.end().map(|end| end.reason.clone()).unwrap_or_default();
            return Err(corrupt(
                begin_lsn,
                format!(
                    "the checkpoint begin record named by the control file is unreadable: {reason}"
                ),
            ));
        }
    }
    let mut fpi_lsn = BTreeMap::new();
    while let Some(record) = scan.next()? {
        if record.txn != 0 {
            next_txn = next_txn.max(record.txn + 1);
        }
        match record.body {
            Body::Update(_) | Body::Clr { .. } => {
                losers
                    .entry(record.txn)
                    .or_insert(ActiveTxn {
                        txn: record.txn,
                        first_lsn: record.lsn,
                        last_lsn: record.lsn,
                    })
                    .last_lsn = record.lsn;
            }
            Body::Commit | Body::Abort => {
                losers.remove(&record.txn);
            }
            Body::FullPageImage { page_id, .. } => {
                fpi_lsn.entry(page_id).or_insert(record.lsn);
            }
            Body::Checkpoint { .. } | Body::CheckpointBegin | Body::SegmentEnd => {}
        }
    }
    let end = scan.end().expect("scan ended").clone();
    if end.lsn <= end_lsn {
        return Err(corrupt(
            end_lsn,
            format!(
                "the log ends at {:#x}, before the checkpoint end record the control file names: {}",
                end.lsn, end.reason
            ),
        ));
    }
    let redo_lsn = if config.bugs.has(Bug::RedoFromCheckpoint) {
        begin_lsn
    } else {
        redo_lsn
    };
    Ok(Analysis {
        end,
        losers,
        next_txn: next_txn.max(1),
        fpi_lsn,
        redo_lsn,
        begin_lsn,
        dirty,
    })
}

/// Pass 2: cuts the log at `end` (unless `no-tail-truncate`) and syncs every
/// segment from the redo start's to the end's. Segments are preallocated, so
/// the cut writes zeros from `end` to the end of its segment rather than
/// shortening the file: whatever lay there (a torn record, records written
/// after a lost one, a recycled segment's old records) can never be read as
/// the continuation of new appends. Later segments are removed. Returns the
/// bytes cut off (zeroed or removed).
pub fn truncate_tail(
    storage: &dyn Storage,
    config: &Config,
    fatal: &Fatal,
    redo_lsn: Lsn,
    end: Lsn,
) -> Result<u64> {
    let size = config.segment_size;
    let end_start = end - end % size;
    let first = redo_lsn - redo_lsn % size;
    let truncate = !config.bugs.has(Bug::NoTailTruncate);
    let names = storage.list().map_err(io_error("list", "the directory"))?;
    let mut truncated = 0;
    let mut removed = false;
    for name in names {
        let Some(start) = parse_segment_name(&name) else {
            continue;
        };
        if start < first {
            continue;
        }
        let file = storage.open(&name).map_err(io_error("open", &name))?;
        let len = file.len().map_err(io_error("len", &name))?;
        if start > end_start {
            truncated += len;
            if truncate {
                drop(file);
                fatal.io("remove", &name, storage.remove(&name))?;
                removed = true;
            }
            continue;
        }
        if start == end_start && truncate {
            let keep = end - start;
            truncated += len.saturating_sub(keep);
            zero_fill(file.as_ref(), fatal, &name, keep, size)?;
        }
        fatal.sync(config.bugs, &name, file.sync_data())?;
    }
    if removed {
        fatal.sync(config.bugs, "the directory", storage.sync_dir())?;
    }
    Ok(truncated)
}

/// Opens the WAL writer at the end of the log: appends go at `end` in its
/// segment (created, preallocated, if the log ends at its start and it is
/// missing).
pub fn open_writer(
    storage: &Arc<dyn Storage>,
    config: &Config,
    fatal: &Arc<Fatal>,
    end: Lsn,
) -> Result<WalWriter> {
    let start = end - end % config.segment_size;
    let name = segment_name(start);
    let file = open_segment(
        storage.as_ref(),
        fatal,
        config.bugs,
        &name,
        config.segment_size,
    )?;
    fatal.sync(config.bugs, "the directory", storage.sync_dir())?;
    let mut len = end - start;
    if config.bugs.has(Bug::NoTailTruncate) {
        // As if the segment ended at its last written byte (a file that
        // was never cut): appends go after the torn tail, not over it.
        let mut bytes = vec![0u8; usize::try_from(config.segment_size).expect("segment fits")];
        read_exact_at(file.as_ref(), 0, &mut bytes).map_err(io_error("read", &name))?;
        let written = bytes
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(0, |at| at + 1);
        len = len.max(written as u64);
    }
    let segment = Segment {
        start,
        name,
        file: Arc::from(file),
    };
    Ok(WalWriter::new(
        storage.clone(),
        fatal.clone(),
        config.segment_size,
        config.bugs,
        segment,
        len,
    ))
}

/// Pass 3: redo from `redo_lsn` (the checkpoint's oldest recLSN) up to `end`.
///
/// Redo goes one segment at a time (the scan reads a whole segment into its
/// window): the scan validates the segment's records and notes the page of
/// each update, CLR and full-page image; then the segment's records are
/// applied page by page (each page's records in
/// LSN order), so a page is fetched once per segment instead of once per
/// record — with a pool smaller than the pages the log touches, fetching in
/// LSN order evicts and rereads a page for nearly every record (InnoDB
/// applies its redo per page for the same reason). Every record changes only
/// its own page and is applied or skipped by that page's state alone, so the
/// pages end as redo in LSN order leaves them; a failure is reported for the
/// record of lowest LSN that fails, as redo in LSN order would report it.
pub fn redo(
    inner: &Inner,
    core: &mut Core,
    analysis: &Analysis,
    report: &mut RecoveryReport,
) -> Result<()> {
    let (redo_lsn, end) = (analysis.redo_lsn, analysis.end.lsn);
    let segment_len = usize::try_from(inner.config.segment_size).expect("segment fits memory");
    // Analysis checked every record from the begin record to the end.
    let mut scan = reader(inner.storage.as_ref(), &inner.config, redo_lsn, segment_len)
        .validated_from(analysis.begin_lsn);
    let mut batch = RedoBatch::default();
    let records_max = segment_len / HEADER_LEN;
    loop {
        let found = match scan.advance()? {
            Step::Record(found) if found.lsn < end => found,
            Step::Record(_) | Step::End => break,
            Step::WindowDone => {
                batch.apply(inner, core, scan.window(), report)?;
                continue;
            }
        };
        report.records_scanned += 1;
        if let Some(page_id) = page_changed(&scan.record(found).body)
            && analysis.needs_redo(page_id, found.lsn)
        {
            assert!(batch.records.len() < records_max, "redo batch bound");
            batch.records.push((page_id, found));
        }
    }
    batch.apply(inner, core, scan.window(), report)?;
    // Analysis validated the log from the checkpoint's begin record on; the
    // stretch from the redo start to it is read only here, and must be whole.
    if let Some(short) = scan.end().filter(|found| found.lsn < end) {
        return Err(Error::corruption(
            segment_name(short.lsn - short.lsn % inner.config.segment_size),
            short.lsn,
            format!(
                "the log between the redo start {redo_lsn:#x} and the end {end:#x} is damaged: {}",
                short.reason
            ),
        ));
    }
    report.wal_bytes_replayed = end.saturating_sub(redo_lsn);
    Ok(())
}

impl Analysis {
    /// Whether redo must look at the change of `page_id` at `lsn` (ARIES's
    /// dirty page table test): from the checkpoint's begin on, always; before
    /// it, only for a page of the table, from its recLSN on. Every other
    /// change before the begin is in the page file, synced by the
    /// checkpoint: the page is not even read, so a page torn since (its full
    /// page image comes later, at or after the begin) is not read before
    /// its image repairs it.
    fn needs_redo(&self, page_id: u32, lsn: Lsn) -> bool {
        lsn >= self.begin_lsn
            || self
                .dirty
                .get(&page_id)
                .is_some_and(|&rec_lsn| lsn >= rec_lsn)
    }
}

/// The page a record changes at redo, if any.
fn page_changed(body: &Body<'_>) -> Option<u32> {
    match body {
        Body::Update(update) | Body::Clr { update, .. } => Some(update.page_id),
        Body::FullPageImage { page_id, .. } => Some(*page_id),
        _ => None,
    }
}

/// The records of one window of the scan (a segment) still to redo.
#[derive(Default)]
struct RedoBatch {
    /// (page changed, where the record is in the window), in LSN order.
    records: Vec<(u32, Found)>,
    /// (LSN, page) of the full-page images that repaired a page.
    repaired: Vec<(Lsn, u32)>,
}

impl RedoBatch {
    /// Applies the batch, page by page, from `window` (the scan's window
    /// its records were found in), and empties it.
    fn apply(
        &mut self,
        inner: &Inner,
        core: &mut Core,
        window: &[u8],
        report: &mut RecoveryReport,
    ) -> Result<()> {
        // Stable: each page's records stay in LSN order.
        self.records.sort_by_key(|(page_id, _)| *page_id);
        let mut failed: Option<(Lsn, Error)> = None;
        for &(_, found) in &self.records {
            if failed.as_ref().is_some_and(|(lsn, _)| found.lsn > *lsn) {
                continue;
            }
            match redo_record(inner, core, &record_in(window, found)) {
                Ok((applied, repaired)) => {
                    report.records_redone += u64::from(applied);
                    if let Some(page_id) = repaired {
                        self.repaired.push((found.lsn, page_id));
                    }
                }
                Err(error) => failed = Some((found.lsn, error)),
            }
        }
        self.records.clear();
        if let Some((_, error)) = failed {
            return Err(error);
        }
        self.repaired.sort_unstable();
        for (_, page_id) in self.repaired.drain(..) {
            if !report.pages_repaired.contains(&page_id) {
                report.pages_repaired.push(page_id);
            }
        }
        Ok(())
    }
}

/// Redoes one record; returns (applied, the page it repaired).
fn redo_record(inner: &Inner, core: &mut Core, record: &Record<'_>) -> Result<(bool, Option<u32>)> {
    Ok(match &record.body {
        Body::Update(update) | Body::Clr { update, .. } => {
            (redo_update(inner, core, record.lsn, update)?, None)
        }
        Body::FullPageImage { page_id, image } => {
            let (applied, repaired) = redo_image(inner, core, record.lsn, *page_id, image)?;
            (applied, repaired.then_some(*page_id))
        }
        _ => (false, None),
    })
}

fn redo_update(inner: &Inner, core: &mut Core, lsn: Lsn, update: &UpdateBody<'_>) -> Result<bool> {
    if update.page_id >= inner.config.page_count {
        return Err(Error::corruption(
            "WAL",
            lsn,
            "update of a page out of range",
        ));
    }
    let frame = core
        .pool
        .fetch(update.page_id, &inner.pages, &inner.log)
        .map_err(|error| match error {
            Error::Corruption {
                file,
                location,
                what,
            } => Error::Corruption {
                file,
                location,
                what: format!(
                    "{what}; no full-page image in the redo range repairs it (redo of LSN {lsn:#x})"
                ),
            },
            other => other,
        })?;
    let check = !inner.config.bugs.has(Bug::RedoNoPageLsnCheck);
    if check && frame.page.lsn >= lsn {
        return Ok(false);
    }
    frame
        .page
        .apply(
            update.op,
            usize::from(update.slot),
            update.key,
            update.after,
            inner.pages.page_size,
        )
        .map_err(|what| {
            Error::corruption(
                PAGES_FILE,
                lsn,
                format!("redo on page {}: {what}", update.page_id),
            )
        })?;
    frame.page.lsn = lsn;
    frame.mark_dirty(lsn);
    Ok(true)
}

/// Applies a full-page image if the page needs it; returns (applied,
/// repaired a page that failed its checks on disk).
fn redo_image(
    inner: &Inner,
    core: &mut Core,
    lsn: Lsn,
    page_id: u32,
    image: &[u8],
) -> Result<(bool, bool)> {
    let page_size = inner.pages.page_size;
    if image.len() > page_size || page_id >= inner.config.page_count {
        return Err(Error::corruption(
            "WAL",
            lsn,
            "full-page image of the wrong size or page",
        ));
    }
    // The image's hole, not logged.
    let mut whole = Vec::with_capacity(page_size);
    whole.extend_from_slice(image);
    whole.resize(page_size, 0);
    let restored = Page::decode(&whole, page_id)
        .map_err(|what| Error::corruption("WAL", lsn, format!("full-page image: {what}")))?;
    if let Some(frame) = core.pool.cached(page_id) {
        let older = frame.page.lsn < lsn;
        if older {
            frame.page = restored;
            frame.mark_dirty(lsn);
        }
        return Ok((older, false));
    }
    let (page, dirty, repaired) = match inner.pages.read_within_log(page_id, inner.log.next_lsn()) {
        Ok(page) if page.lsn >= lsn => (page, false, false),
        Ok(_) => (restored, true, false),
        Err(error) if error.is_corruption() => (restored, true, true),
        Err(error) => return Err(error),
    };
    core.pool
        .install(page, dirty.then_some(lsn), &inner.pages, &inner.log)?;
    Ok((dirty, repaired))
}

/// Pass 4: rolls back every loser, in reverse LSN order across all of them.
pub fn undo(
    inner: &Inner,
    core: &mut Core,
    losers: &BTreeMap<TxnId, ActiveTxn>,
    report: &mut RecoveryReport,
) -> Result<()> {
    let mut last: BTreeMap<TxnId, Lsn> = losers.values().map(|t| (t.txn, t.last_lsn)).collect();
    let mut queue: BTreeSet<(Lsn, TxnId)> = losers.values().map(|t| (t.last_lsn, t.txn)).collect();
    let storage = inner.storage.as_ref();
    while let Some((next, txn)) = queue.pop_last() {
        let bytes = read_record_at(storage, inner.config.segment_size, next)?;
        let record = bytes.record();
        if record.txn != txn {
            return Err(Error::corruption(
                "WAL",
                next,
                format!(
                    "undo chain of txn {txn} reaches a record of txn {}",
                    record.txn
                ),
            ));
        }
        let undo_next = match record.body {
            Body::Update(update) => {
                let prev = last[&txn];
                let step = UndoStep {
                    txn,
                    prev_lsn: prev,
                    page_id: update.page_id,
                    key: update.key,
                    before: update.before,
                    undo_next_lsn: record.prev_lsn,
                };
                let clr = undo_one(inner, core, &step)?;
                last.insert(txn, clr);
                report.clrs_written += 1;
                record.prev_lsn
            }
            Body::Clr { undo_next_lsn, .. } => undo_next_lsn,
            other => {
                return Err(Error::corruption(
                    "WAL",
                    next,
                    format!(
                        "undo chain of txn {txn} reaches a {:?} record",
                        other.kind()
                    ),
                ));
            }
        };
        if undo_next == NO_LSN {
            inner.log.append(txn, last[&txn], Body::Abort)?;
        } else {
            assert!(undo_next < next, "undo chain goes backwards");
            queue.insert((undo_next, txn));
        }
    }
    Ok(())
}
