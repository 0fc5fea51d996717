//! Fuzzy checkpoints (ARIES) and WAL segment release and recycling.
//!
//! A checkpoint runs in steps while transactions go on; no step holds the
//! core lock during an fsync:
//!
//! 1. **begin** (under the core lock): append a `CheckpointBegin` record at
//!    LSN `b`; snapshot the active transaction table, the next transaction
//!    id and the dirty page table (page → recLSN); full-page images restart
//!    here.
//! 2. **write** (a batch of pages per step): every page of the table whose
//!    recLSN is below the *write limit* is written — copied under the core
//!    lock, then, outside every lock a commit takes, the WAL is flushed past
//!    the copy's pageLSN and the copy written. The background limit is the
//!    previous checkpoint's begin LSN: a page is written once it has been
//!    dirty for a whole checkpoint interval, so redo reaches back at most
//!    two intervals. A full
//!    checkpoint (close, end of recovery) writes every page dirty at `b`.
//!    A page found clean, or dirty again since after `b`, was written by an
//!    eviction meanwhile and leaves the table too. A background
//!    checkpoint's writes keep to a schedule counted in WAL bytes
//!    ([`COMPLETION_TARGET`], see [`on_schedule`]); a whole checkpoint
//!    ([`run`]) writes as fast as it can.
//! 3. **sync** the page file (the `early-checkpoint` bug moves this after
//!    step 4): every page write of step 2, and every eviction before it, is
//!    durable.
//! 4. **end**: append the `Checkpoint` record (begin LSN, the tables of step
//!    1, the dirty page table less the pages written, and the redo LSN =
//!    min(`b`, every remaining recLSN)); flush the WAL; replace the control
//!    file (it names `b` and the end record) — only now is the checkpoint
//!    the one recovery starts from; then release the segments wholly below
//!    min(redo LSN, first LSN of every transaction active at `b`)
//!    (`release-ignores-reclsn` uses `b` for the redo LSN;
//!    `early-wal-removal` releases everything below `b` before the control
//!    file is written).
//!
//! Released segments are recycled: renamed to the next future segment names
//! (at most [`SPARE_SEGMENTS_MAX`] spares), the others removed, then the
//! directory synced.

use crate::Lsn;
use crate::TxnId;
use crate::config::Bug;
use crate::control::{self, Control};
use crate::error::Result;
use crate::state::{Core, Inner};
use crate::wal::record::{ActiveTxn, Body, DirtyPage, NO_LSN};
use crate::wal::writer::{open_segment, parse_segment_name, segment_name};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

/// Pages one write step writes at most (the core lock is held only to copy
/// them).
pub const WRITE_BATCH_PAGES: usize = 4;
/// Write steps a page whose changes are not yet in a durable WAL may wait
/// for another thread's WAL flush (a group-commit round, an `always`
/// commit) before the checkpoint flushes the WAL itself.
pub const DEFERRALS_MAX: u32 = 8;
/// Released segments kept as spares for reuse; the rest are removed.
pub const SPARE_SEGMENTS_MAX: usize = 2;

/// Which pages a checkpoint writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The pages dirty since before the previous checkpoint's begin.
    Background,
    /// Every page dirty at the begin record.
    Full,
}

/// The checkpointer's state, behind its own lock (taken before the core
/// lock, never under it).
pub struct Checkpointer {
    running: Option<Running>,
    /// Begin LSN of the last complete checkpoint (the one the control file
    /// names).
    pub last_begin: Lsn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Write,
    Sync,
    End,
}

/// A checkpoint under way.
struct Running {
    begin_lsn: Lsn,
    next_txn: TxnId,
    active: Vec<ActiveTxn>,
    /// The dirty page table of the begin record, less the pages written.
    dirty: BTreeMap<u32, Lsn>,
    /// Pages still to write, in page order (deferred ones at the back).
    to_write: VecDeque<u32>,
    /// Write steps that deferred a page so far.
    deferrals: u32,
    /// Pages dirty since before this LSN are written.
    write_limit: Lsn,
    /// Pages to write at the begin record.
    total: usize,
    phase: Phase,
}

impl Checkpointer {
    pub fn new(last_begin: Lsn) -> Checkpointer {
        Checkpointer {
            running: None,
            last_begin,
        }
    }

    /// True if a checkpoint is under way and a background step would do
    /// something now (not held back by its schedule, see [`on_schedule`]).
    pub fn may_step(&self, inner: &Inner) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| running.phase != Phase::Write || on_schedule(inner, running))
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().expect("engine core lock poisoned")
}

/// Whether a checkpoint's steps keep to a schedule (see [`on_schedule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Background steps (`tick`, `checkpoint_step`).
    Spread,
    /// As fast as the steps go (a whole checkpoint: close, end of recovery,
    /// `Engine::checkpoint`).
    Now,
}

/// PostgreSQL's `checkpoint_completion_target`: a background checkpoint's
/// page writes are spread so they end when this share of the next
/// checkpoint interval's WAL has been written (numerator, denominator).
pub const COMPLETION_TARGET: (u64, u64) = (1, 2);

/// True if a background checkpoint may write its next batch: the share of
/// its pages written is not ahead of the share of [`COMPLETION_TARGET`] of
/// `checkpoint_wal_bytes` appended since its begin record. The schedule is
/// WAL, not time, so under the harness's virtual clock it replays exactly;
/// a checkpoint with no WAL behind it (an idle engine) waits, and close
/// finishes it.
fn on_schedule(inner: &Inner, running: &Running) -> bool {
    let every = u128::from(inner.config.checkpoint_wal_bytes);
    if every == 0 || running.total == 0 {
        return true;
    }
    let done = (running.total - running.to_write.len().min(running.total)) as u128;
    let wal = u128::from(inner.log.next_lsn() - running.begin_lsn);
    let (num, den) = COMPLETION_TARGET;
    // done / total <= wal / (every * num / den)
    done * every * u128::from(num) <= wal * running.total as u128 * u128::from(den)
}

/// Step 1: appends the begin record and snapshots the tables.
pub fn begin(
    inner: &Inner,
    core: &Mutex<Core>,
    state: &mut Checkpointer,
    mode: Mode,
) -> Result<()> {
    assert!(state.running.is_none(), "one checkpoint at a time");
    inner.fatal.check()?;
    let mut core = lock(core);
    let begin_lsn = inner.log.append(0, NO_LSN, Body::CheckpointBegin)?;
    core.fpi_lsn.clear();
    let dirty: BTreeMap<u32, Lsn> = core.pool.dirty_table().into_iter().collect();
    let write_limit = match mode {
        Mode::Background => state.last_begin.min(begin_lsn),
        Mode::Full => begin_lsn,
    };
    let to_write: VecDeque<u32> = dirty
        .iter()
        .filter(|&(_, &rec_lsn)| rec_lsn < write_limit)
        .map(|(&page, _)| page)
        .collect();
    state.running = Some(Running {
        total: to_write.len(),
        begin_lsn,
        next_txn: core.txns.next_txn,
        active: core.txns.checkpoint_list(),
        dirty,
        to_write,
        deferrals: 0,
        write_limit,
        phase: Phase::Write,
    });
    drop(core);
    inner.checkpoint_running.store(true, Ordering::Release);
    Ok(())
}

/// Runs the next step of the checkpoint under way; returns true once it is
/// complete (the control file names it).
pub fn step(
    inner: &Inner,
    core: &Mutex<Core>,
    state: &mut Checkpointer,
    pace: Pace,
) -> Result<bool> {
    inner.fatal.check()?;
    let running = state.running.as_mut().expect("a checkpoint is under way");
    match running.phase {
        Phase::Write if pace == Pace::Spread && !on_schedule(inner, running) => Ok(false),
        Phase::Write => {
            write_batch(inner, core, running)?;
            if running.to_write.is_empty() {
                running.phase = Phase::Sync;
            }
            Ok(false)
        }
        Phase::Sync => {
            if !inner.config.bugs.has(Bug::EarlyCheckpoint) {
                sync_pages(inner)?;
            }
            running.phase = Phase::End;
            Ok(false)
        }
        Phase::End => {
            let running = state.running.take().expect("checked above");
            let begin_lsn = running.begin_lsn;
            end(inner, running)?;
            state.last_begin = begin_lsn;
            inner.checkpoints.fetch_add(1, Ordering::Relaxed);
            inner.checkpoint_running.store(false, Ordering::Release);
            Ok(true)
        }
    }
}

/// Runs a whole checkpoint (finishing the one under way first, if any, and
/// returning when that one is complete). Every commit acknowledged before
/// the call is durable when it returns (the end step flushes the WAL).
pub fn run(inner: &Inner, core: &Mutex<Core>, state: &mut Checkpointer, mode: Mode) -> Result<()> {
    if state.running.is_none() {
        begin(inner, core, state, mode)?;
    }
    let pages = inner.config.pool_pages as usize;
    // Every step writes or drops a batch, but for at most DEFERRALS_MAX
    // steps that put some of theirs back; then sync and end.
    let deferred_max = DEFERRALS_MAX as usize;
    let steps_max =
        (pages + WRITE_BATCH_PAGES * deferred_max).div_ceil(WRITE_BATCH_PAGES) + deferred_max + 4;
    for _ in 0..steps_max {
        if step(inner, core, state, Pace::Now)? {
            return Ok(());
        }
    }
    unreachable!("checkpoint not complete in {steps_max} steps")
}

/// Step 2: writes the next batch of pages. Under the core lock, each due
/// page is copied out (marked clean and *writing*, see
/// [`crate::buffer::BufferPool::copy_out`]); outside every lock a commit
/// needs, the WAL is made durable past the copies' pageLSNs (the
/// write-ahead rule) and the copies are written; then, under the core lock
/// again, the frames stop *writing*.
fn write_batch(inner: &Inner, core: &Mutex<Core>, running: &mut Running) -> Result<()> {
    let count = running.to_write.len().min(WRITE_BATCH_PAGES);
    let batch: Vec<u32> = running.to_write.drain(..count).collect();
    let mut copies = Vec::with_capacity(batch.len());
    let may_defer = running.deferrals < DEFERRALS_MAX;
    let mut deferred = false;
    {
        let mut core = lock(core);
        let flushed = inner.log.flushed_lsn();
        for &page in &batch {
            match core.pool.dirty_before(page, running.write_limit) {
                // Its WAL is not durable yet: rather than fsync the WAL
                // here (in the way of the commits' own fsyncs), come back
                // to it once someone else has.
                Some(page_lsn) if page_lsn >= flushed && may_defer => {
                    running.to_write.push_back(page);
                    deferred = true;
                }
                Some(_) => {
                    copies.push(core.pool.copy_out(page).expect("dirty page"));
                }
                // Written by an eviction since the begin record (and maybe
                // dirty again since after it): the sync of step 3 covers it.
                None => {
                    running.dirty.remove(&page);
                }
            }
        }
    }
    let written = write_copies(inner, &copies);
    if !copies.is_empty() {
        let mut core = lock(core);
        for page in &copies {
            if written.is_ok() {
                core.pool.copy_written(page.id);
                running.dirty.remove(&page.id);
            } else {
                // A failed write: every page of the batch is dirty again,
                // since its recLSN at the begin record (it stayed dirty
                // from then to its copy).
                core.pool.copy_unwritten(page.id, running.dirty[&page.id]);
            }
        }
    }
    written?;
    running.deferrals += u32::from(deferred);
    Ok(())
}

/// Writes a batch's copies after making the WAL durable past them (the
/// write-ahead rule), outside the core lock.
fn write_copies(inner: &Inner, copies: &[crate::page::Page]) -> Result<()> {
    if let Some(page_lsn) = copies.iter().map(|page| page.lsn).max() {
        inner.log.flush_to(page_lsn + 1)?;
        assert!(inner.log.flushed_lsn() > page_lsn, "write-ahead rule");
    }
    for page in copies {
        inner.pages.write(page)?;
    }
    Ok(())
}

fn sync_pages(inner: &Inner) -> Result<()> {
    let result = inner.pages.sync();
    inner
        .fatal
        .sync(inner.config.bugs, crate::buffer::PAGES_FILE, result)
}

/// Step 4: the end record, the control file, segment release.
fn end(inner: &Inner, running: Running) -> Result<()> {
    let bugs = inner.config.bugs;
    let log = &inner.log;
    let begin_lsn = running.begin_lsn;
    let redo_lsn = running.dirty.values().copied().fold(begin_lsn, Lsn::min);
    let keep_from = running
        .active
        .iter()
        .map(|txn| txn.first_lsn)
        .fold(Lsn::MAX, Lsn::min);
    let body = Body::Checkpoint {
        begin_lsn,
        redo_lsn,
        next_txn: running.next_txn,
        active: running.active,
        dirty: running
            .dirty
            .iter()
            .map(|(&page_id, &rec_lsn)| DirtyPage { page_id, rec_lsn })
            .collect(),
    };
    let end_lsn = log.append(0, NO_LSN, body)?;
    let flushed = log.flush_all()?;
    log.acknowledge(flushed);
    if bugs.has(Bug::EarlyWalRemoval) {
        release_segments_below(inner, begin_lsn)?;
    }
    let control = Control {
        page_size: inner.config.page_size,
        page_count: inner.config.page_count,
        segment_size: inner.config.segment_size,
        checkpoint_lsn: begin_lsn,
        checkpoint_end_lsn: end_lsn,
    };
    control::write(inner.storage.as_ref(), &control, &inner.fatal, bugs)?;
    if bugs.has(Bug::EarlyCheckpoint) {
        sync_pages(inner)?;
    }
    if !bugs.has(Bug::EarlyWalRemoval) {
        let redo_from = if bugs.has(Bug::ReleaseIgnoresRecLsn) {
            begin_lsn
        } else {
            redo_lsn
        };
        release_segments_below(inner, redo_from.min(keep_from))?;
    }
    Ok(())
}

/// The temporary name a spare segment is prepared under.
pub const SPARE_TMP_FILE: &str = "wal-spare.tmp";

/// Makes sure the segment after the current one exists, so the writer's
/// next rotation only opens it: a released segment recycled there, or else
/// a new one prepared here — created under [`SPARE_TMP_FILE`], filled with
/// zeros and synced outside every lock, then renamed to the next name under
/// the writer's lock (only if the writer has not moved on and the name is
/// still free), and the directory synced. Returns whether it made one.
pub fn ensure_spare(inner: &Inner) -> Result<bool> {
    let size = inner.config.segment_size;
    let bugs = inner.config.bugs;
    let next = inner.log.lock_writer().current_start() + size;
    let next_name = segment_name(next);
    let storage = inner.storage.as_ref();
    let names = inner.fatal.io("list", "the directory", storage.list())?;
    if names.contains(&next_name) {
        return Ok(false);
    }
    if names.iter().any(|name| name == SPARE_TMP_FILE) {
        inner
            .fatal
            .io("remove", SPARE_TMP_FILE, storage.remove(SPARE_TMP_FILE))?;
    }
    let file = open_segment(storage, &inner.fatal, bugs, SPARE_TMP_FILE, size)?;
    drop(file);
    let placed = {
        let writer = inner.log.lock_writer();
        let free = writer.current_start() + size == next
            && matches!(storage.open(&next_name), Err(ref e) if e.kind() == std::io::ErrorKind::NotFound);
        if free {
            inner.fatal.io(
                "rename",
                SPARE_TMP_FILE,
                storage.rename(SPARE_TMP_FILE, &next_name),
            )?;
        }
        free
    };
    if !placed {
        inner
            .fatal
            .io("remove", SPARE_TMP_FILE, storage.remove(SPARE_TMP_FILE))?;
    }
    if !bugs.has(Bug::NoDirFsync) {
        let result = storage.sync_dir();
        inner.fatal.sync(bugs, "the directory", result)?;
    }
    Ok(placed)
}

/// Releases every segment that ends at or below `lsn` (never the current
/// one): the oldest become spares under the next future names (at most
/// [`SPARE_SEGMENTS_MAX`] spares in all), the rest are removed; then the
/// directory is synced if anything changed. Returns how many were released.
///
/// The writer's lock is held while renaming, so the writer never moves into
/// a name half-way through a rename; the writer syncs the directory itself
/// when it moves into a spare, so a spare's name is durable before records
/// in it are acknowledged.
pub fn release_segments_below(inner: &Inner, lsn: Lsn) -> Result<usize> {
    let segment_size = inner.config.segment_size;
    let mut released = 0;
    {
        let mut writer = inner.log.lock_writer();
        let current = writer.current_start();
        let names = inner
            .fatal
            .io("list", "the directory", inner.storage.list())?;
        let starts: Vec<Lsn> = names
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .collect();
        let mut spares = starts.iter().filter(|&&start| start > current).count();
        let mut next_spare = starts.iter().copied().fold(current, Lsn::max) + segment_size;
        for &start in &starts {
            if start + segment_size > lsn || start >= current {
                continue;
            }
            let name = segment_name(start);
            if spares < SPARE_SEGMENTS_MAX {
                let spare = segment_name(next_spare);
                inner
                    .fatal
                    .io("rename", &name, inner.storage.rename(&name, &spare))?;
                spares += 1;
                next_spare += segment_size;
            } else {
                inner
                    .fatal
                    .io("remove", &name, inner.storage.remove(&name))?;
            }
            released += 1;
        }
        writer.release_synced(lsn.min(current));
    }
    if released > 0 && !inner.config.bugs.has(Bug::NoDirFsync) {
        let result = inner.storage.sync_dir();
        inner
            .fatal
            .sync(inner.config.bugs, "the directory", result)?;
    }
    Ok(released)
}
