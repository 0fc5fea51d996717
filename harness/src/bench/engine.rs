//! The reference engine under each fsync policy, on real files with real
//! fsyncs ([`RealStorage`]) and real time ([`SystemClock`]).
//!
//! Each configuration opens a fresh database directory. Threads commit
//! through [`Engine::commit`] (so `group` runs its own leader/follower
//! protocol); a ticker thread calls [`Engine::tick`] every millisecond for
//! every policy (it is the `interval:MS` flusher, it prepares the next WAL
//! segment off the commit path, and it drives checkpoints, with up to
//! [`CHECKPOINT_STEPS_PER_TICK`] steps per tick). The buffer pool holds the
//! whole page file, so no eviction forces a WAL flush (the write-ahead rule)
//! and `none` measures the commit path alone.
//!
//! Each policy runs twice: without checkpoints (the table's rows), and with a
//! fuzzy checkpoint every [`CHECKPOINT_EVERY_BYTES`] of WAL (each round of it
//! long enough to complete one), where the
//! commits whose transaction began or was acknowledged while a checkpoint was
//! under way are timed apart (the checkpoint table: their p99 next to the p99
//! without checkpoints).
//!
//! `fsyncs_per_commit` is the engine's own `wal_syncs / commits` over the
//! measurement (page-file syncs at checkpoints are not counted, as SQLite's
//! database-file syncs are not in its column).

use super::runner::{Span, TxnOutcome, run_committers_for};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use engine::storage::RealStorage;
use engine::{Config, Engine, FsyncPolicy, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Pages in the benchmark's page file (16 MiB of 4 KiB pages).
pub const PAGE_COUNT: u32 = 4096;
/// Keys per page on average. A 4 KiB page holds about 30 entries of a 100-byte
/// value; at 8 on average (keys hash to pages) a full page is a far tail
/// event, and is counted as an abort if it happens.
pub const KEYS_PER_PAGE: u64 = 8;
/// The key space of one run, shared out in disjoint ranges per thread.
pub const KEY_SPACE: u64 = PAGE_COUNT as u64 * KEYS_PER_PAGE;
/// How often the ticker calls [`Engine::tick`].
pub const TICK_PERIOD: Duration = Duration::from_millis(1);
/// Checkpoint steps the ticker runs per tick at most (a step writes a few
/// pages, syncs the page file, or ends the checkpoint).
pub const CHECKPOINT_STEPS_PER_TICK: usize = 4;
/// WAL bytes between checkpoints in the measurement with checkpoints.
pub const CHECKPOINT_EVERY_BYTES: u64 = 4 << 20;

/// A round with checkpoints goes on past its time until [`MARKED_MIN`] of
/// its commits came while a checkpoint ran (a slow policy at one thread
/// writes [`CHECKPOINT_EVERY_BYTES`] of WAL in a few seconds), up to this
/// many times its time.
pub const CHECKPOINT_RUN_CAP_FACTOR: u32 = 10;
/// Commits during checkpoints a round with checkpoints needs at least: a
/// p99 of fewer would be a maximum.
pub const MARKED_MIN: u64 = 200;
/// Threads of the untimed warm-up before an engine's first round.
pub const WARM_UP_THREADS: usize = 8;
/// The longest a warm-up may take (either kind).
pub const WARM_UP_CAP: Duration = Duration::from_secs(60);

/// The configuration measured for `policy`: no checkpoints, or one every
/// [`CHECKPOINT_EVERY_BYTES`].
pub fn bench_config(policy: FsyncPolicy, checkpoints: bool) -> Config {
    Config {
        policy,
        page_count: PAGE_COUNT,
        pool_pages: PAGE_COUNT,
        checkpoint_wal_bytes: if checkpoints {
            CHECKPOINT_EVERY_BYTES
        } else {
            0
        },
        ..Config::default()
    }
}

/// Opens a database in `dir` on the real file system.
pub fn open_real(dir: &Path, config: Config) -> Result<Engine, BenchError> {
    let storage = RealStorage::new(dir).map_err(|source| BenchError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    Engine::open(Arc::new(storage), config, Arc::new(SystemClock::new()))
        .map_err(engine_error("open"))
}

/// Measures one policy with `spec.threads` committing threads in its
/// directory under `root`, with checkpoints or without. The engine stays
/// open in `slot` from one round to the next (the caller closes it after the
/// last), so every round measures a running engine, not one just recovered
/// (whose first tick would zero a new WAL segment, and whose first
/// checkpoint finds nothing old enough to write). An engine with checkpoints
/// is first warmed up, untimed, until one checkpoint has completed: the
/// checkpoints measured are then the steady ones, writing the pages dirty
/// for a whole interval.
pub fn bench_engine(
    root: &Path,
    policy: FsyncPolicy,
    spec: RunSpec,
    checkpoints: bool,
    slot: &mut Option<Engine>,
) -> Result<Measured, BenchError> {
    if slot.is_none() {
        let name = policy.to_string().replace(':', "-");
        let suffix = if checkpoints { "-checkpoints" } else { "" };
        let dir = root.join(format!("engine-{name}-{}t{suffix}", spec.threads));
        let engine = open_real(&dir, bench_config(policy, checkpoints))?;
        if checkpoints {
            warm_up(&engine, spec)?;
        } else {
            touch_every_page(&engine)?;
        }
        *slot = Some(engine);
    }
    let engine = slot.as_ref().expect("opened above");
    let before = engine.stats();
    let marked = AtomicU64::new(0);
    let enough = || !checkpoints || marked.load(Ordering::Relaxed) >= MARKED_MIN;
    let span = Span {
        duration: spec.duration,
        cap: spec.duration * CHECKPOINT_RUN_CAP_FACTOR,
        enough: &enough,
    };
    let totals = with_ticker(engine, || {
        run_committers_for(spec.threads, &span, |index| {
            let mut inputs = TxnInputs::for_thread(spec, index);
            let marked = &marked;
            Ok(move || {
                let during_before = engine.checkpoint_running();
                let outcome = engine_txn(engine, &mut inputs)?;
                let during = during_before || engine.checkpoint_running();
                Ok(match outcome {
                    TxnOutcome::Committed if during => {
                        marked.fetch_add(1, Ordering::Relaxed);
                        TxnOutcome::CommittedMarked
                    }
                    other => other,
                })
            })
        })
    })?;
    let after = engine.stats();
    assert!(after.commits - before.commits >= totals.commits);
    Ok(Measured {
        totals,
        wal_syncs: after.wal_syncs - before.wal_syncs,
        all_file_syncs: None,
        wal_bytes: Some(after.wal_bytes_written - before.wal_bytes_written),
        engine: Some(after.since(&before)),
    })
}

/// Commits, untimed, with [`WARM_UP_THREADS`] threads until a checkpoint
/// has completed since `engine` opened.
fn warm_up(engine: &Engine, spec: RunSpec) -> Result<(), BenchError> {
    let before = engine.checkpoints_completed();
    let enough = || engine.checkpoints_completed() > before;
    let span = Span {
        duration: Duration::ZERO,
        cap: WARM_UP_CAP,
        enough: &enough,
    };
    let spec = RunSpec {
        threads: WARM_UP_THREADS,
        seed: !spec.seed,
        ..spec
    };
    with_ticker(engine, || {
        run_committers_for(spec.threads, &span, |index| {
            let mut inputs = TxnInputs::for_thread(spec, index);
            Ok(move || engine_txn(engine, &mut inputs))
        })
    })?;
    if engine.checkpoints_completed() == before {
        return Err(BenchError::WarmUp(WARM_UP_CAP));
    }
    Ok(())
}

/// Commits once to every page, untimed, before the first round of an
/// engine without checkpoints: a fresh database logs a full-page image at
/// each page's first change, a burst that weighs on a `group` fsync (eight
/// images at once) far more than on an `always` one, and that a running
/// engine without checkpoints never sees again. Each page gets a value at
/// the first key of the key space that falls on it.
fn touch_every_page(engine: &Engine) -> Result<(), BenchError> {
    let mut first_key = std::collections::BTreeMap::new();
    for key in 0..KEY_SPACE {
        first_key
            .entry(engine::page_of(&key.to_be_bytes(), PAGE_COUNT))
            .or_insert(key);
    }
    let keys: Vec<u64> = first_key.into_values().collect();
    let value = [0x5a_u8; super::VALUE_BYTES];
    let next = AtomicUsize::new(0);
    let enough = || next.load(Ordering::Relaxed) >= keys.len();
    let span = Span {
        duration: Duration::ZERO,
        cap: WARM_UP_CAP,
        enough: &enough,
    };
    with_ticker(engine, || {
        run_committers_for(WARM_UP_THREADS, &span, |_| {
            Ok(|| match keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                Some(key) => put_commit(engine, &key.to_be_bytes(), &value),
                // Another thread took the last key: nothing to commit.
                None => Ok(TxnOutcome::Aborted),
            })
        })
    })?;
    if !enough() {
        return Err(BenchError::WarmUp(WARM_UP_CAP));
    }
    Ok(())
}

/// Runs `work` while a ticker thread calls [`Engine::tick`] every
/// [`TICK_PERIOD`]; the ticker's error, if any, wins.
pub fn with_ticker<T>(
    engine: &Engine,
    work: impl FnOnce() -> Result<T, BenchError>,
) -> Result<T, BenchError> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                engine.tick().map_err(engine_error("tick"))?;
                for _ in 1..CHECKPOINT_STEPS_PER_TICK {
                    if !engine
                        .checkpoint_step()
                        .map_err(engine_error("checkpoint"))?
                    {
                        break;
                    }
                }
                std::thread::sleep(TICK_PERIOD);
            }
            Ok::<(), BenchError>(())
        });
        let result = work();
        stop.store(true, Ordering::Release);
        ticker.join().unwrap_or(Err(BenchError::ThreadPanicked))?;
        result
    })
}

/// One transaction: begin, put one value, commit. A write conflict or a full
/// page rolls it back and counts as an abort.
pub fn engine_txn(engine: &Engine, inputs: &mut TxnInputs) -> Result<TxnOutcome, BenchError> {
    let (key, value) = inputs.next_write();
    put_commit(engine, &key, value)
}

/// [`engine_txn`] of a given key and value.
fn put_commit(engine: &Engine, key: &[u8], value: &[u8]) -> Result<TxnOutcome, BenchError> {
    let txn = engine.begin().map_err(engine_error("begin"))?;
    match engine.put(txn, key, value) {
        Ok(()) => {}
        Err(engine::Error::Conflict { .. } | engine::Error::PageFull { .. }) => {
            engine.abort(txn).map_err(engine_error("abort"))?;
            return Ok(TxnOutcome::Aborted);
        }
        Err(source) => return Err(engine_error("put")(source)),
    }
    engine.commit(txn).map_err(engine_error("commit"))?;
    Ok(TxnOutcome::Committed)
}

pub fn engine_error(during: &'static str) -> impl Fn(engine::Error) -> BenchError {
    move |source| BenchError::Engine { during, source }
}
