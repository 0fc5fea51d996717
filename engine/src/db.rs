//! The engine's public face: [`Engine`] and the types its API speaks.
//!
//! Locking (always taken in this order, never the reverse): the
//! checkpointer lock → `always_lock` (only under `always`) → the core lock
//! ([`Core`]: pool, transactions) → the WAL writer lock → the WAL sync lock
//! (the group-commit lock is taken alone). Syncs never hold the core or
//! writer lock except for page eviction, so a group-commit leader's fsync
//! runs while other threads append, and a checkpoint's fsyncs while they
//! commit.
//!
//! Determinism: the single-threaded API (`commit_enqueue`, `group_flush_*`,
//! `tick`, `checkpoint`) issues the same storage calls for the same inputs:
//! every map is ordered, time comes only from the injected [`Clock`], and no
//! background thread exists unless the caller starts one
//! ([`Engine::spawn_flusher`]).

use crate::buffer::{BufferPool, PAGES_FILE, PageFile};
use crate::checkpoint::{self, Checkpointer, Mode, Pace, SPARE_TMP_FILE};
use crate::clock::Clock;
use crate::config::{Bug, Config, FsyncPolicy};
use crate::control::{self, CONTROL_TMP_FILE, Control};
use crate::error::{Error, Result};
use crate::fatal::{Fatal, io_error};
use crate::group::{Group, RoundTimes};
use crate::page::{self, Page, entry_len};
use crate::recovery;
use crate::state::{Change, ChangeKind, Core, Inner, UndoStep, log_and_apply, undo_one};
use crate::storage::{Storage, StorageLock};
use crate::txn::{TxnTable, UndoEntry};
use crate::wal::Log;
use crate::wal::record::{
    Body, CHECKPOINT_DIRTY_LEN, CHECKPOINT_FIXED_LEN, CHECKPOINT_TXN_LEN, HEADER_LEN, NO_LSN, Op,
    SEGMENT_END_LEN, UPDATE_FIXED_LEN,
};
use crate::wal::writer::{Segment, WalWriter, open_segment, parse_segment_name, segment_name};
use crate::{Lsn, TxnId};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Most transactions active at once (each takes 24 bytes of a checkpoint
/// record; the bound also follows from the segment size, see `validate`).
pub const ACTIVE_TXNS_MAX: usize = 4096;
/// Largest segment accepted (recovery reads a segment whole).
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;

/// An open database. `Send + Sync`: many threads may run transactions and
/// commit at once.
pub struct Engine {
    inner: Inner,
    core: Mutex<Core>,
    /// The fuzzy checkpoint under way; taken before the core lock.
    checkpointer: Mutex<Checkpointer>,
    report: RecoveryReport,
    timings: RecoveryTimings,
    /// Under `always`: one commit at a time writes and fsyncs.
    always_lock: Mutex<()>,
    /// Group commit for threads (see [`crate::group`]).
    group: Group,
    /// Under `interval`: clock time of the last interval fsync.
    interval_last_us: Mutex<u64>,
    /// Told the LSN of every commit record as it is appended.
    commit_observer: OnceLock<CommitObserver>,
    _lock: StorageLock,
}

/// Called with a transaction and its commit record's LSN while the WAL is
/// locked, before the record can reach storage (see
/// [`Engine::set_commit_observer`]).
pub type CommitObserver = Box<dyn Fn(TxnId, Lsn) + Send + Sync>;

/// What recovery found and did when the engine was opened. For a fresh
/// directory `created` is true and the rest is zero/empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no database; a new one was created.
    pub created: bool,
    /// LSN of the begin record of the checkpoint recovery started from.
    pub checkpoint_lsn: Lsn,
    /// Where redo started: the oldest recLSN of the checkpoint's dirty page
    /// table, or its begin record.
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
    /// Pages in the dirty page table of the checkpoint recovery started
    /// from (redo starts at the oldest of their recLSNs, or at the
    /// checkpoint's begin record if there are none).
    pub checkpoint_dirty_pages: u64,
}

/// Where the time of [`Engine::open`]'s recovery went, in microseconds of
/// the engine's [`Clock`] (all zero for a fresh directory, and under a
/// [`crate::VirtualClock`] that nobody advances). For benchmarks only: no
/// decision depends on it, and it is kept apart from [`RecoveryReport`],
/// which stays the same on every replay of a case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryTimings {
    /// Analysis: the scan from the checkpoint to the end of the log.
    pub analysis_us: u64,
    /// Cutting the torn tail and syncing the segments in the redo range.
    pub truncate_us: u64,
    pub redo_us: u64,
    pub undo_us: u64,
    /// The checkpoint that ends recovery (writes the redone pages, syncs).
    pub checkpoint_us: u64,
}

impl RecoveryTimings {
    /// The phases that read the WAL: analysis, tail cut, redo and undo.
    pub fn replay_us(&self) -> u64 {
        self.analysis_us + self.truncate_us + self.redo_us + self.undo_us
    }
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
    /// Group-commit rounds led by committing threads ([`Engine::commit`]
    /// under `group`), the commits they covered, and where their time went
    /// (microseconds of the engine's clock): gathering committers, writing
    /// the WAL out, and the fsync. Everything but the fsync is the round's
    /// time outside it.
    pub group_rounds: u64,
    pub group_commits: u64,
    pub group_gather_us: u64,
    pub group_write_us: u64,
    pub group_sync_us: u64,
}

impl EngineStats {
    /// Every counter of `self` less `before`'s (a measurement's share).
    pub fn since(&self, before: &EngineStats) -> EngineStats {
        self.zip(before, u64::saturating_sub)
    }

    /// Every counter of `self` plus `other`'s.
    pub fn plus(&self, other: &EngineStats) -> EngineStats {
        self.zip(other, u64::saturating_add)
    }

    fn zip(&self, other: &EngineStats, op: fn(u64, u64) -> u64) -> EngineStats {
        EngineStats {
            commits: op(self.commits, other.commits),
            aborts: op(self.aborts, other.aborts),
            wal_bytes_written: op(self.wal_bytes_written, other.wal_bytes_written),
            wal_syncs: op(self.wal_syncs, other.wal_syncs),
            page_writes: op(self.page_writes, other.page_writes),
            checkpoints: op(self.checkpoints, other.checkpoints),
            group_rounds: op(self.group_rounds, other.group_rounds),
            group_commits: op(self.group_commits, other.group_commits),
            group_gather_us: op(self.group_gather_us, other.group_gather_us),
            group_write_us: op(self.group_write_us, other.group_write_us),
            group_sync_us: op(self.group_sync_us, other.group_sync_us),
        }
    }

    /// Commits per group-commit round (per fsync a committing thread led).
    pub fn commits_per_group_round(&self) -> Option<f64> {
        self.per_group_round(self.group_commits)
    }

    /// A group-commit round's time outside its fsync (gathering plus
    /// writing out), µs.
    pub fn outside_fsync_us_per_group_round(&self) -> Option<f64> {
        self.per_group_round(self.group_gather_us + self.group_write_us)
    }

    /// A group-commit round's fsync, µs.
    pub fn fsync_us_per_group_round(&self) -> Option<f64> {
        self.per_group_round(self.group_sync_us)
    }

    fn per_group_round(&self, total: u64) -> Option<f64> {
        (self.group_rounds > 0).then(|| total as f64 / self.group_rounds as f64)
    }
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

/// Checks that `config` is one the engine accepts (sizes, and a segment big
/// enough for the largest record and a checkpoint), as `open` will.
pub fn check_config(config: &Config) -> Result<()> {
    validate(config).map(|_| ())
}

/// Checks a configuration; returns the bound on active transactions.
fn validate(config: &Config) -> Result<usize> {
    let bad = |what: String| Err(Error::Config(what));
    if !config.page_size.is_multiple_of(512) || !(1024..=65536).contains(&config.page_size) {
        return bad(format!(
            "page_size {} must be a multiple of 512 in 1024..=65536",
            config.page_size
        ));
    }
    if config.page_count == 0 || config.pool_pages == 0 {
        return bad("page_count and pool_pages must be at least 1".to_string());
    }
    if config.key_len_max == 0 || config.key_len_max > 4096 || config.value_len_max > 65535 {
        return bad("key_len_max must be in 1..=4096, value_len_max at most 65535".to_string());
    }
    let update_max = HEADER_LEN
        + 8
        + UPDATE_FIXED_LEN
        + config.key_len_max as usize
        + 2 * config.value_len_max as usize;
    let image_len = HEADER_LEN + 8 + config.page_size as usize;
    let record_max = update_max.max(image_len);
    let segment_size = config.segment_size;
    if segment_size > SEGMENT_SIZE_MAX || segment_size < (2 * record_max + SEGMENT_END_LEN) as u64 {
        return bad(format!(
            "segment_size {segment_size} must be at most {SEGMENT_SIZE_MAX} and at least twice the largest record ({record_max} bytes)"
        ));
    }
    // A checkpoint end record holds the dirty page table (at most the pool)
    // and the active transactions; it must fit half a segment.
    let dirty_table_len = CHECKPOINT_DIRTY_LEN * config.pool_pages as usize;
    let checkpoint_room = (segment_size as usize / 2)
        .saturating_sub(HEADER_LEN + CHECKPOINT_FIXED_LEN + dirty_table_len);
    let active_max = (checkpoint_room / CHECKPOINT_TXN_LEN).min(ACTIVE_TXNS_MAX);
    if active_max < 8 {
        return bad(format!(
            "segment_size {segment_size} too small for a checkpoint record of {} dirty pages",
            config.pool_pages
        ));
    }
    Ok(active_max)
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
        let active_max = validate(&config)?;
        let lock = storage.lock().map_err(|error| {
            if error.kind() == io::ErrorKind::WouldBlock {
                Error::Locked
            } else {
                io_error("lock", "the directory")(error)
            }
        })?;
        let fatal = Arc::new(Fatal::default());
        let (inner, core, report, timings, last_begin) = match control::read(storage.as_ref())? {
            None => {
                let (inner, core, report) = create(storage, config, clock, fatal, active_max)?;
                (inner, core, report, RecoveryTimings::default(), 0)
            }
            Some(found) => recover(storage, config, clock, fatal, active_max, found)?,
        };
        let now_us = inner.clock.now_us();
        Ok(Engine {
            inner,
            core: Mutex::new(core),
            checkpointer: Mutex::new(Checkpointer::new(last_begin)),
            report,
            timings,
            always_lock: Mutex::new(()),
            group: Group::default(),
            interval_last_us: Mutex::new(now_us),
            commit_observer: OnceLock::new(),
            _lock: lock,
        })
    }

    /// Sets the observer told every commit record's LSN as it is appended,
    /// in log order, before any thread can write the record out (a harness
    /// recording many threads learns the commit order the log holds). Set
    /// once; false if one was already set. The observer must not call the
    /// engine.
    pub fn set_commit_observer(&self, observer: CommitObserver) -> bool {
        self.commit_observer.set(observer).is_ok()
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().expect("engine core lock poisoned")
    }

    /// What recovery found and did in [`Engine::open`].
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Where the time of recovery went (benchmarks; see [`RecoveryTimings`]).
    pub fn recovery_timings(&self) -> RecoveryTimings {
        self.timings
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<TxnId> {
        self.inner.fatal.check()?;
        self.core().txns.begin()
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.inner.config.key_len_max as usize;
        if key.is_empty() || key.len() > max {
            return Err(Error::TooLarge {
                what: "key (empty keys are refused too)",
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// Sets `key` to `value` in `txn` (takes the key's write lock, no wait:
    /// [`crate::Error::Conflict`] if another transaction holds it).
    pub fn put(&self, txn: TxnId, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.fatal.check()?;
        self.check_key(key)?;
        let max = self.inner.config.value_len_max as usize;
        if value.len() > max {
            return Err(Error::TooLarge {
                what: "value",
                len: value.len(),
                max,
            });
        }
        let mut core = self.core();
        self.write(&mut core, txn, key, Some(value))
    }

    /// Deletes `key` in `txn` (a no-op write if absent).
    pub fn delete(&self, txn: TxnId, key: &[u8]) -> Result<()> {
        self.inner.fatal.check()?;
        self.check_key(key)?;
        let mut core = self.core();
        self.write(&mut core, txn, key, None)
    }

    /// A put (`Some`) or delete (`None`) under the core lock.
    fn write(&self, core: &mut Core, txn: TxnId, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let inner = &self.inner;
        let page_size = inner.pages.page_size;
        core.txns.get(txn)?;
        core.txns.lock(txn, key)?;
        let page_id = page::page_of(key, inner.config.page_count);
        let frame = core.pool.fetch(page_id, &inner.pages, &inner.log)?;
        let found = frame.page.find(key);
        let old = found.ok().map(|slot| frame.page.value_at(slot).to_vec());
        let (op, slot) = match (found, value) {
            (Ok(slot), Some(_)) => (Op::Replace, slot),
            (Ok(slot), None) => (Op::Remove, slot),
            (Err(slot), Some(_)) => (Op::Insert, slot),
            (Err(_), None) => return Ok(()),
        };
        let old_len = old.as_ref().map_or(0, |v| entry_len(key.len(), v.len()));
        let new_len = value.map_or(0, |v| entry_len(key.len(), v.len()));
        let used_after = frame.page.used() - old_len + new_len;
        let reserved = core.txns.reserved_by_others(txn, page_id);
        if new_len > old_len && used_after + reserved > page_size {
            return Err(Error::PageFull { page: page_id });
        }
        let prev_lsn = core.txns.get(txn)?.last_lsn;
        let change = Change {
            txn,
            prev_lsn,
            kind: ChangeKind::Update,
            page_id,
            op,
            slot,
            key,
            before: old.as_deref(),
            after: value,
        };
        let lsn = log_and_apply(inner, core, &change)?;
        core.txns
            .reserve(txn, page_id, old_len.saturating_sub(new_len))?;
        let state = core.txns.get_mut(txn)?;
        state.logged(lsn);
        state.undo.push(UndoEntry {
            lsn,
            prev_lsn,
            page_id,
            key: key.to_vec(),
            before: old,
        });
        Ok(())
    }

    /// Reads `key` as `txn` sees it (its own writes included).
    pub fn get(&self, txn: TxnId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.fatal.check()?;
        self.check_key(key)?;
        let mut core = self.core();
        core.txns.get(txn)?;
        let page_id = page::page_of(key, self.inner.config.page_count);
        let frame = core
            .pool
            .fetch(page_id, &self.inner.pages, &self.inner.log)?;
        Ok(frame.page.get(key).map(<[u8]>::to_vec))
    }

    /// Rolls `txn` back.
    pub fn abort(&self, txn: TxnId) -> Result<()> {
        self.inner.fatal.check()?;
        let mut core = self.core();
        self.abort_locked(&mut core, txn)
    }

    fn abort_locked(&self, core: &mut Core, txn: TxnId) -> Result<()> {
        let inner = &self.inner;
        let state = core.txns.get_mut(txn)?;
        let undo = std::mem::take(&mut state.undo);
        let mut last = state.last_lsn;
        let read_only = state.is_read_only();
        for entry in undo.iter().rev() {
            let step = UndoStep {
                txn,
                prev_lsn: last,
                page_id: entry.page_id,
                key: &entry.key,
                before: entry.before.as_deref(),
                undo_next_lsn: entry.prev_lsn,
            };
            last = undo_one(inner, core, &step)?;
            assert!(last > entry.lsn, "CLR after the update it undoes");
        }
        if !read_only {
            inner.log.append(txn, last, Body::Abort)?;
        }
        core.txns.finish(txn)?;
        inner.aborts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Commits `txn` and returns once the policy allows acknowledging it
    /// (for `group`, after an fsync covering the commit record, led by one of
    /// the waiting threads). Returns the commit record's LSN (0 for a
    /// read-only transaction, which writes no record).
    pub fn commit(&self, txn: TxnId) -> Result<Lsn> {
        let ticket = self.commit_enqueue(txn)?;
        if let FsyncPolicy::Group { delay_us } = self.inner.config.policy {
            self.wait_group(ticket, delay_us)?;
        }
        Ok(ticket.lsn)
    }

    /// Group commit for threads: waits until a flush covers `ticket`,
    /// leading one if no other thread is.
    fn wait_group(&self, ticket: CommitTicket, delay_us: u64) -> Result<()> {
        let rounds_max = 1 << 20;
        let group = &self.group;
        for _ in 0..rounds_max {
            if self.is_acknowledged(ticket) {
                return Ok(());
            }
            self.inner.fatal.check()?;
            let mut state = group.lock();
            if self.is_acknowledged(ticket) {
                return Ok(());
            }
            if state.leading {
                group.arrive(&state);
                group.wait_round(state);
                continue;
            }
            state.leading = true;
            let clock = self.inner.clock.as_ref();
            let started_us = clock.now_us();
            if delay_us > 0 {
                drop(state);
                clock.sleep_us(delay_us);
            } else {
                drop(group.gather(state));
            }
            let gathered_us = clock.now_us();
            let target_count = group.enqueued.load(Ordering::Acquire);
            let begun = self.group_flush_begin();
            let written_us = clock.now_us();
            let result = begun.and_then(|target| self.group_flush_finish(target));
            let synced_us = clock.now_us();
            let times = RoundTimes {
                gather_us: gathered_us - started_us,
                write_us: written_us - gathered_us,
                sync_us: synced_us - written_us,
            };
            if result.is_ok() && self.inner.config.bugs.has(Bug::GroupAckAtSyncReturn) {
                // Planted: what was appended during the fsync is taken as
                // covered by it.
                self.inner.log.acknowledge(self.inner.log.next_lsn());
            }
            group.end_round(target_count, &times);
            result?;
        }
        unreachable!("group commit made no progress in {rounds_max} rounds")
    }

    /// Commits `txn` without waiting on other threads, for deterministic
    /// single-threaded drivers: appends the commit record and does what the
    /// policy does at commit (`always`: write + fsync; `interval`/`none`:
    /// write to the OS; `group`: nothing more). The ticket is acknowledged
    /// when [`Engine::is_acknowledged`] says so — for `group`, after a
    /// [`Engine::group_flush_begin`] / [`Engine::group_flush_finish`] pair
    /// that covers it.
    pub fn commit_enqueue(&self, txn: TxnId) -> Result<CommitTicket> {
        self.inner.fatal.check()?;
        let policy = self.inner.config.policy;
        let _always = (policy == FsyncPolicy::Always)
            .then(|| self.always_lock.lock().expect("always lock poisoned"));
        let log = &self.inner.log;
        let bugs = self.inner.config.bugs;
        let lsn = {
            let mut core = self.core();
            let state = core.txns.get(txn)?;
            if state.is_read_only() {
                core.txns.finish(txn)?;
                self.inner.commits.fetch_add(1, Ordering::Relaxed);
                return Ok(CommitTicket { txn, lsn: 0 });
            }
            let observer = self.commit_observer.get();
            let lsn = log.append_observed(txn, state.last_lsn, Body::Commit, |lsn| {
                if let Some(observe) = observer {
                    observe(txn, lsn);
                }
            })?;
            core.txns.finish(txn)?;
            lsn
        };
        if let FsyncPolicy::Group { .. } = policy {
            self.group.enqueued.fetch_add(1, Ordering::AcqRel);
        }
        match policy {
            FsyncPolicy::Always if bugs.has(Bug::SkipFsync) => {
                log.acknowledge(log.write_out()?);
            }
            FsyncPolicy::Always if bugs.has(Bug::AckBeforeFsync) => {
                // The fsync owed to the previous commit happens only now.
                log.sync_to(log.written_lsn())?;
                log.acknowledge(log.write_out()?);
            }
            FsyncPolicy::Always => {
                let flushed = log.flush_all()?;
                log.acknowledge(flushed);
            }
            FsyncPolicy::Group { .. } => {}
            FsyncPolicy::Interval { .. } | FsyncPolicy::None => {
                log.acknowledge(log.write_out()?);
            }
        }
        self.inner.commits.fetch_add(1, Ordering::Relaxed);
        Ok(CommitTicket { txn, lsn })
    }

    /// True once the commit may be reported to the client as durable under
    /// the policy.
    pub fn is_acknowledged(&self, ticket: CommitTicket) -> bool {
        self.inner.log.acked_lsn() > ticket.lsn
    }

    /// Group commit, leader step 1: writes every WAL byte appended so far to
    /// the OS and returns that position as the flush target. Commits enqueued
    /// after this call are not covered by it.
    pub fn group_flush_begin(&self) -> Result<FlushTarget> {
        self.inner.fatal.check()?;
        let written = self.inner.log.write_out()?;
        if self.inner.config.bugs.has(Bug::AckBeforeFsync) {
            self.inner.log.acknowledge(written);
        }
        Ok(FlushTarget { lsn: written })
    }

    /// Group commit, leader step 2: fsyncs the WAL up to `target` and
    /// publishes it as flushed, acknowledging the commits it covers. Returns
    /// the flushed LSN.
    pub fn group_flush_finish(&self, target: FlushTarget) -> Result<Lsn> {
        self.inner.fatal.check()?;
        let log = &self.inner.log;
        log.sync_to(target.lsn)?;
        if self.inner.config.bugs.has(Bug::GroupAckBeyondFlush) {
            log.acknowledge(log.next_lsn());
        } else {
            log.acknowledge(target.lsn);
        }
        Ok(log.flushed_lsn())
    }

    /// Lets time-driven work happen at the clock's current time: the
    /// `interval:MS` flusher, and an automatic checkpoint when due.
    pub fn tick(&self) -> Result<()> {
        self.inner.fatal.check()?;
        if let FsyncPolicy::Interval { ms } = self.inner.config.policy {
            let now_us = self.inner.clock.now_us();
            let mut last_us = self
                .interval_last_us
                .lock()
                .expect("interval lock poisoned");
            if now_us.saturating_sub(*last_us) >= ms * 1000 {
                *last_us = now_us;
                drop(last_us);
                let log = &self.inner.log;
                log.sync_to(log.write_out()?)?;
            }
        }
        self.checkpoint_tick()?;
        checkpoint::ensure_spare(&self.inner)?;
        Ok(())
    }

    /// The checkpoint's share of [`Engine::tick`]: one step of the
    /// checkpoint under way, or the begin of one when
    /// `checkpoint_wal_bytes` of WAL were appended since the last began.
    fn checkpoint_tick(&self) -> Result<()> {
        let every = self.inner.config.checkpoint_wal_bytes;
        let mut state = self.checkpointer();
        if state.is_running() {
            checkpoint::step(&self.inner, &self.core, &mut state, Pace::Spread)?;
        } else if every > 0 && self.inner.log.next_lsn() - state.last_begin >= every {
            checkpoint::begin(&self.inner, &self.core, &mut state, Mode::Background)?;
        }
        Ok(())
    }

    fn checkpointer(&self) -> MutexGuard<'_, Checkpointer> {
        self.checkpointer
            .lock()
            .expect("checkpointer lock poisoned")
    }

    /// Starts a thread that calls [`Engine::tick`] every `period_us` of the
    /// clock until `stop` is set (for real-time runs of `interval:MS`; the
    /// deterministic harness calls `tick` itself). The thread ends at the
    /// first error.
    pub fn spawn_flusher(
        engine: &Arc<Engine>,
        period_us: u64,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<Result<()>> {
        let engine = Arc::clone(engine);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                engine.inner.clock.sleep_us(period_us.max(1));
                engine.tick()?;
            }
            Ok(())
        })
    }

    /// Takes a fuzzy checkpoint to completion (or completes the one under
    /// way): begin record, the pages dirty for a whole checkpoint interval
    /// written and synced, end record, control file, segments released.
    /// Other threads go on committing meanwhile. Every commit acknowledged
    /// before the call is durable when it returns.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.fatal.check()?;
        let mut state = self.checkpointer();
        checkpoint::run(&self.inner, &self.core, &mut state, Mode::Background)
    }

    /// True while a checkpoint is under way (begun, not yet complete).
    /// Lock-free: a committing thread may ask without waiting for a step.
    pub fn checkpoint_running(&self) -> bool {
        self.inner.checkpoint_running.load(Ordering::Acquire)
    }

    /// Runs one step of the checkpoint under way, if any (a real-time
    /// checkpointer may call it between ticks to finish sooner); returns
    /// whether a checkpoint is still under way and may take another step
    /// now (false while its page writes wait for WAL to keep to their
    /// schedule: half of the next interval's WAL, like PostgreSQL's
    /// `checkpoint_completion_target`).
    pub fn checkpoint_step(&self) -> Result<bool> {
        self.inner.fatal.check()?;
        let mut state = self.checkpointer();
        if state.may_step(&self.inner) {
            checkpoint::step(&self.inner, &self.core, &mut state, Pace::Spread)?;
        }
        Ok(state.may_step(&self.inner))
    }

    /// Every key and value, sorted by key, as the pages hold them now (call
    /// it with no transaction active to read the committed state). Pages not
    /// in the pool are read from disk (verified) without caching them.
    pub fn scan(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.fatal.check()?;
        let mut core = self.core();
        let mut all = Vec::new();
        for id in 0..self.inner.config.page_count {
            match core.pool.cached(id) {
                Some(frame) => all.extend(frame.page.entries().iter().cloned()),
                None => all.extend(
                    self.inner
                        .pages
                        .read_within_log(id, self.inner.log.next_lsn())?
                        .entries()
                        .iter()
                        .cloned(),
                ),
            }
        }
        all.sort();
        Ok(all)
    }

    /// Checkpoints completed since open (lock-free, unlike [`Engine::stats`]).
    pub fn checkpoints_completed(&self) -> u64 {
        self.inner.checkpoints.load(Ordering::Relaxed)
    }

    /// Counters since open.
    pub fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        EngineStats {
            commits: inner.commits.load(Ordering::Relaxed),
            aborts: inner.aborts.load(Ordering::Relaxed),
            wal_bytes_written: inner.log.bytes_written(),
            wal_syncs: inner.log.syncs.load(Ordering::Relaxed),
            page_writes: inner.pages.writes.load(Ordering::Relaxed),
            checkpoints: self.checkpoints_completed(),
            group_rounds: self.group.rounds.load(Ordering::Relaxed),
            group_commits: self.group.covered.load(Ordering::Relaxed),
            group_gather_us: self.group.gather_us.load(Ordering::Relaxed),
            group_write_us: self.group.write_us.load(Ordering::Relaxed),
            group_sync_us: self.group.sync_us.load(Ordering::Relaxed),
        }
    }

    /// Closes cleanly: aborts active transactions, takes a checkpoint,
    /// releases the lock. A stopped engine just releases the lock.
    pub fn close(self) -> Result<()> {
        if self.inner.fatal.is_stopped() {
            return Ok(());
        }
        let mut state = self.checkpointer();
        {
            let mut core = self.core();
            for txn in core.txns.ids() {
                self.abort_locked(&mut core, txn)?;
            }
        }
        if state.is_running() {
            checkpoint::run(&self.inner, &self.core, &mut state, Mode::Background)?;
        }
        checkpoint::run(&self.inner, &self.core, &mut state, Mode::Full)
    }
}

/// Creates a fresh database: removes leftovers, creates the page file and
/// the first segment, writes the initial checkpoint, then the control file.
fn create(
    storage: Arc<dyn Storage>,
    config: Config,
    clock: Arc<dyn Clock>,
    fatal: Arc<Fatal>,
    active_max: usize,
) -> Result<(Inner, Core, RecoveryReport)> {
    let bugs = config.bugs;
    let names = storage.list().map_err(io_error("list", "the directory"))?;
    let mut removed = false;
    for name in names {
        if name == PAGES_FILE
            || name == CONTROL_TMP_FILE
            || name == SPARE_TMP_FILE
            || parse_segment_name(&name).is_some()
        {
            storage.remove(&name).map_err(io_error("remove", &name))?;
            removed = true;
        }
    }
    if removed {
        fatal.sync(bugs, "the directory", storage.sync_dir())?;
    }
    let pages = storage
        .create(PAGES_FILE)
        .map_err(io_error("create", PAGES_FILE))?;
    // Every page is formatted (checksum, id) at creation, so a page that
    // reads as all zeros later was wiped or never written: corruption.
    let mut formatted = Vec::with_capacity(config.page_size as usize * config.page_count as usize);
    for id in 0..config.page_count {
        formatted.extend_from_slice(&Page::empty(id).encode(config.page_size as usize));
    }
    pages
        .write_at(0, &formatted)
        .map_err(io_error("write", PAGES_FILE))?;
    fatal.sync(bugs, PAGES_FILE, pages.sync_data())?;
    let name = segment_name(0);
    let segment = open_segment(storage.as_ref(), &fatal, bugs, &name, config.segment_size)?;
    fatal.sync(bugs, "the directory", storage.sync_dir())?;
    let writer = WalWriter::new(
        storage.clone(),
        fatal.clone(),
        config.segment_size,
        bugs,
        Segment {
            start: 0,
            name,
            file: Arc::from(segment),
        },
        0,
    );
    let log = Log::new(writer, 0, fatal.clone(), bugs);
    let checkpoint_lsn = log.append(0, NO_LSN, Body::CheckpointBegin)?;
    assert_eq!(checkpoint_lsn, 0, "the first record starts the log");
    let checkpoint_end_lsn = log.append(
        0,
        NO_LSN,
        Body::Checkpoint {
            begin_lsn: checkpoint_lsn,
            redo_lsn: checkpoint_lsn,
            next_txn: 1,
            active: Vec::new(),
            dirty: Vec::new(),
        },
    )?;
    log.acknowledge(log.flush_all()?);
    let control = Control {
        page_size: config.page_size,
        page_count: config.page_count,
        segment_size: config.segment_size,
        checkpoint_lsn,
        checkpoint_end_lsn,
    };
    control::write(storage.as_ref(), &control, &fatal, bugs)?;
    let core = Core {
        pool: BufferPool::new(config.pool_pages as usize),
        txns: TxnTable::new(1, active_max),
        fpi_lsn: BTreeMap::new(),
    };
    let inner = make_inner(storage, config, clock, fatal, log, pages);
    let report = RecoveryReport {
        created: true,
        ..RecoveryReport::default()
    };
    Ok((inner, core, report))
}

fn make_inner(
    storage: Arc<dyn Storage>,
    config: Config,
    clock: Arc<dyn Clock>,
    fatal: Arc<Fatal>,
    log: Log,
    pages: Box<dyn crate::storage::StorageFile>,
) -> Inner {
    let pages = PageFile::new(pages, config.page_size as usize, config.page_count);
    Inner {
        storage,
        config,
        clock,
        log,
        pages,
        fatal,
        commits: AtomicU64::new(0),
        aborts: AtomicU64::new(0),
        checkpoints: AtomicU64::new(0),
        checkpoint_running: AtomicBool::new(false),
    }
}

/// Opens an existing database and runs ARIES recovery (see [`recovery`]).
fn recover(
    storage: Arc<dyn Storage>,
    config: Config,
    clock: Arc<dyn Clock>,
    fatal: Arc<Fatal>,
    active_max: usize,
    control: Control,
) -> Result<(Inner, Core, RecoveryReport, RecoveryTimings, Lsn)> {
    if control.page_size != config.page_size
        || control.page_count != config.page_count
        || control.segment_size != config.segment_size
    {
        return Err(Error::Config(format!(
            "the directory holds page_size {}, page_count {}, segment_size {}; the configuration says {}, {}, {}",
            control.page_size,
            control.page_count,
            control.segment_size,
            config.page_size,
            config.page_count,
            config.segment_size
        )));
    }
    let names = storage.list().map_err(io_error("list", "the directory"))?;
    for leftover in [CONTROL_TMP_FILE, SPARE_TMP_FILE] {
        if names.iter().any(|name| name == leftover) {
            storage
                .remove(leftover)
                .map_err(io_error("remove", leftover))?;
        }
    }
    let pages = storage
        .open(PAGES_FILE)
        .map_err(io_error("open", PAGES_FILE))?;
    let pages_len = pages.len().map_err(io_error("len", PAGES_FILE))?;
    let expected_len = u64::from(config.page_size) * u64::from(config.page_count);
    if pages_len != expected_len {
        return Err(Error::Corruption {
            file: PAGES_FILE.to_string(),
            location: "file length".to_string(),
            what: format!("{pages_len} bytes, expected {expected_len}"),
        });
    }
    let checkpoint_lsn = control.checkpoint_lsn;
    let mut timings = RecoveryTimings::default();
    let mut lap_us = clock.now_us();
    let mut lap = |clock: &dyn Clock| {
        let now_us = clock.now_us();
        let elapsed_us = now_us.saturating_sub(lap_us);
        lap_us = now_us;
        elapsed_us
    };
    let analysis = recovery::analyze(
        storage.as_ref(),
        &config,
        checkpoint_lsn,
        control.checkpoint_end_lsn,
    )?;
    timings.analysis_us = lap(clock.as_ref());
    let end = analysis.end.lsn;
    let redo_lsn = analysis.redo_lsn;
    let truncated = recovery::truncate_tail(storage.as_ref(), &config, &fatal, redo_lsn, end)?;
    let writer = recovery::open_writer(&storage, &config, &fatal, end)?;
    let durable_end = writer.next_lsn();
    let log = Log::new(writer, durable_end, fatal.clone(), config.bugs);
    let mut core = Core {
        pool: BufferPool::new(config.pool_pages as usize),
        txns: TxnTable::new(analysis.next_txn, active_max),
        fpi_lsn: analysis.fpi_lsn.clone(),
    };
    let no_undo = config.bugs.has(Bug::NoUndo);
    let inner = make_inner(storage, config, clock, fatal, log, pages);
    inner.pages.set_recovered_end(end);
    let mut report = RecoveryReport {
        created: false,
        checkpoint_lsn,
        redo_start_lsn: redo_lsn,
        log_end_lsn: end,
        log_end_reason: analysis.end.reason.clone(),
        truncated_bytes: truncated,
        losers: analysis.losers.keys().copied().collect(),
        checkpoint_dirty_pages: analysis.dirty.len() as u64,
        ..RecoveryReport::default()
    };
    timings.truncate_us = lap(inner.clock.as_ref());
    recovery::redo(&inner, &mut core, &analysis, &mut report)?;
    timings.redo_us = lap(inner.clock.as_ref());
    if !no_undo {
        recovery::undo(&inner, &mut core, &analysis.losers, &mut report)?;
    }
    timings.undo_us = lap(inner.clock.as_ref());
    let core = Mutex::new(core);
    let mut state = Checkpointer::new(checkpoint_lsn);
    checkpoint::run(&inner, &core, &mut state, Mode::Full)?;
    let core = core.into_inner().expect("engine core lock poisoned");
    timings.checkpoint_us = lap(inner.clock.as_ref());
    Ok((inner, core, report, timings, state.last_begin))
}
