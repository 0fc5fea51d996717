//! Rough performance checks on real files (ignored by default; run with
//! `cargo test -p engine --release --test perf -- --ignored --nocapture`).

use engine::storage::RealStorage;
use engine::{Config, Engine, FsyncPolicy, SystemClock};
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

#[test]
#[ignore]
fn recovery_replay_rate() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        policy: FsyncPolicy::None,
        checkpoint_wal_bytes: 0,
        segment_size: 16 << 20,
        ..Config::default()
    };
    {
        let storage = Arc::new(RealStorage::new(dir.path()).unwrap());
        let engine = Engine::open(storage, config.clone(), Arc::new(SystemClock::new())).unwrap();
        for i in 0..200_000u32 {
            let txn = engine.begin().unwrap();
            engine
                .put(txn, &(i % 2000).to_le_bytes(), &[9; 300])
                .unwrap();
            engine.commit(txn).unwrap();
        }
        // Crash: drop without close.
    }
    let storage = Arc::new(RealStorage::new(dir.path()).unwrap());
    let start = Instant::now();
    let engine = Engine::open(storage, config, Arc::new(SystemClock::new())).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let bytes = engine.recovery_report().wal_bytes_replayed as f64;
    println!(
        "recovery: {:.1} MB in {seconds:.3} s = {:.0} MB/s",
        bytes / 1e6,
        bytes / 1e6 / seconds
    );
}
