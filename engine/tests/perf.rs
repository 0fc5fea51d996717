//! Rough performance checks on real files (ignored by default; run with
//! `cargo test -p engine --release --test perf -- --ignored --nocapture`).
//!
//! The machine these run on is shared: every rate is the median of several
//! repetitions, and recovery reports the recovering thread's CPU time next
//! to its wall time (CPU time does not count the time other processes held
//! the core).

use engine::storage::RealStorage;
use engine::{Config, Engine, FsyncPolicy, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn run(policy: FsyncPolicy, threads: usize, commits_per_thread: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(RealStorage::new(dir.path()).unwrap());
    let config = Config {
        policy,
        ..Config::default()
    };
    let engine = Arc::new(Engine::open(storage, config, Arc::new(SystemClock::new())).unwrap());
    let syncs = engine.stats().wal_syncs;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..commits_per_thread {
                    let txn = engine.begin().unwrap();
                    let key = format!("{t}-{}", i % 50);
                    engine.put(txn, key.as_bytes(), &[7; 100]).unwrap();
                    engine.commit(txn).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let commits = (threads * commits_per_thread) as f64;
    let syncs = (engine.stats().wal_syncs - syncs) as f64;
    (commits / seconds, commits / syncs.max(1.0))
}

#[test]
#[ignore]
fn group_commit_vs_always() {
    let (always, _) = run(FsyncPolicy::Always, 8, 100);
    let (group, per_sync) = run(FsyncPolicy::Group { delay_us: 0 }, 8, 400);
    println!(
        "always: {always:.0} commits/s; group: {group:.0} commits/s, {per_sync:.1} commits per fsync"
    );
}

/// Repetitions of each timed step; the median is reported.
const REPEATS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The calling thread's (CPU time, time waiting for a CPU) in seconds
/// (Linux schedstat; zeros elsewhere). Wall time minus both is time blocked,
/// mostly on I/O.
fn thread_schedstat_seconds() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<u64>().unwrap_or(0) as f64 / 1e9);
    (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0))
}

fn recovery_config() -> Config {
    Config {
        policy: FsyncPolicy::None,
        checkpoint_wal_bytes: 0,
        segment_size: 16 << 20,
        ..Config::default()
    }
}

/// 200 000 one-put commits over 2 000 keys, then a crash (drop without
/// close): about 142 MB of WAL after the initial checkpoint.
fn write_crashed_database(dir: &Path) {
    let storage = Arc::new(RealStorage::new(dir).unwrap());
    let engine = Engine::open(storage, recovery_config(), Arc::new(SystemClock::new())).unwrap();
    for i in 0..200_000u32 {
        let txn = engine.begin().unwrap();
        engine
            .put(txn, &(i % 2000).to_le_bytes(), &[9; 300])
            .unwrap();
        engine.commit(txn).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Recovery of the same crashed directory, `REPEATS` times on fresh copies.
/// "open" is the whole `Engine::open` (control file, analysis, tail cut,
/// redo, undo and the closing checkpoint, which writes the redone pages and
/// syncs); "replay" is analysis + tail cut + redo + undo, the part that
/// reads the WAL (from [`Engine::recovery_timings`]). Both divide the WAL
/// bytes from the checkpoint to the log end by their time.
#[test]
#[ignore]
fn recovery_replay_rate() {
    // `RECOVERY_PERF_DIR` keeps the crashed directory between runs (to
    // profile recovery alone); it is written only if it holds no database.
    let temporary = tempfile::tempdir().unwrap();
    let source = std::env::var_os("RECOVERY_PERF_DIR")
        .map_or_else(|| temporary.path().to_path_buf(), Into::into);
    if !source.join("control").exists() {
        std::fs::create_dir_all(&source).unwrap();
        write_crashed_database(&source);
    }
    let mut open_wall = Vec::new();
    let mut open_cpu = Vec::new();
    let mut open_waiting = Vec::new();
    let mut replay = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..REPEATS {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&source, dir.path());
        let storage = Arc::new(RealStorage::new(dir.path()).unwrap());
        let clock = Arc::new(SystemClock::new());
        let (cpu_start, waiting_start) = thread_schedstat_seconds();
        let start = Instant::now();
        let engine = Engine::open(storage, recovery_config(), clock).unwrap();
        open_wall.push(start.elapsed().as_secs_f64());
        let (cpu_end, waiting_end) = thread_schedstat_seconds();
        open_cpu.push(cpu_end - cpu_start);
        open_waiting.push(waiting_end - waiting_start);
        let timings = engine.recovery_timings();
        replay.push(timings.replay_us() as f64 / 1e6);
        bytes = engine.recovery_report().wal_bytes_replayed as f64;
        println!("  {timings:?}");
    }
    let megabytes = bytes / 1e6;
    let (wall, cpu, replay) = (median(open_wall), median(open_cpu), median(replay));
    let waiting = median(open_waiting);
    println!(
        "recovery of {megabytes:.1} MB, median of {REPEATS}: open {wall:.3} s wall = {:.0} MB/s, \
         {cpu:.3} s CPU = {:.0} MB/s ({waiting:.3} s waiting for a CPU); \
         replay phase {replay:.3} s wall = {:.0} MB/s",
        megabytes / wall,
        megabytes / cpu,
        megabytes / replay,
    );
}

/// The normal write path without fsyncs: 4 000 keys with 100-byte values on
/// 256 pages that all fit the pool (about 16 entries a page), overwritten
/// 10 puts per transaction, policy `none` (a commit writes to the OS but
/// never syncs). Reports puts per second of the thread's CPU time and of
/// wall time, medians of `REPEATS` runs of 200 000 puts.
#[test]
#[ignore]
fn put_rate() {
    let keys = 4_000u32;
    let puts = 200_000u32;
    let puts_per_txn = 10;
    let config = Config {
        policy: FsyncPolicy::None,
        page_count: 256,
        pool_pages: 256,
        checkpoint_wal_bytes: 0,
        segment_size: 64 << 20,
        ..Config::default()
    };
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..REPEATS {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(RealStorage::new(dir.path()).unwrap());
        let engine = Engine::open(storage, config.clone(), Arc::new(SystemClock::new())).unwrap();
        // Load every key once, so the timed puts are replaces on full pages.
        for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
            let txn = engine.begin().unwrap();
            for key in chunk {
                engine.put(txn, &key.to_le_bytes(), &[1; 100]).unwrap();
            }
            engine.commit(txn).unwrap();
        }
        let (cpu_start, _) = thread_schedstat_seconds();
        let start = Instant::now();
        for first in (0..puts).step_by(puts_per_txn) {
            let txn = engine.begin().unwrap();
            for i in first..first + puts_per_txn as u32 {
                let key = (i.wrapping_mul(2_654_435_761) % keys).to_le_bytes();
                engine.put(txn, &key, &[(i % 251) as u8; 100]).unwrap();
            }
            engine.commit(txn).unwrap();
        }
        wall.push(start.elapsed().as_secs_f64());
        cpu.push(thread_schedstat_seconds().0 - cpu_start);
    }
    let puts = f64::from(puts);
    let (wall, cpu) = (median(wall), median(cpu));
    println!(
        "puts, median of {REPEATS}: {:.0} puts/s of CPU ({:.2} us each), {:.0} puts/s wall",
        puts / cpu,
        cpu / puts * 1e6,
        puts / wall
    );
}
