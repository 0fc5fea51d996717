//! The crash windows of fuzzy checkpoints and recycled WAL segments
//! (docs/design.md): a crash between a checkpoint's begin and end record, a
//! page dirty across a checkpoint that did not write it, a crash right after
//! the writer moved into a recycled segment (its new records lost, its old
//! ones still there), and a stale record left behind the new tail of a
//! recycled segment. Crash images are snapshots of the in-memory storage
//! (everything written: a process crash), edited where a power loss is
//! meant.

mod common;

use common::*;
use engine::storage::MemStorage;
use engine::wal::parse_segment_name;
use engine::wal::record::Kind;
use engine::{Bug, Config, Engine, FsyncPolicy};
use std::collections::BTreeMap;

type Image = BTreeMap<String, Vec<u8>>;
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// `always`, a pool as big as the page file, automatic checkpoints driven
/// by `tick` every few KiB of WAL.
fn config(bug: Option<Bug>) -> Config {
    let mut config = small_config(FsyncPolicy::Always);
    config.pool_pages = config.page_count;
    config.checkpoint_wal_bytes = 4096;
    config.bugs = bug.into_iter().collect();
    config
}

fn commit(engine: &Engine, model: &mut Model, key: u32, round: u32) {
    let key = format!("key{key:03}").into_bytes();
    let value = format!("value-{round}-{}", "x".repeat(40)).into_bytes();
    put_commit(engine, &key, &value);
    model.insert(key, value);
}

fn segments(image: &Image) -> Vec<(u64, String)> {
    image
        .keys()
        .filter_map(|name| parse_segment_name(name).map(|start| (start, name.clone())))
        .collect()
}

/// A crash at every step of a checkpoint run by `tick` while commits go on
/// recovers every commit: before the end record is durable and the control
/// file names it, recovery starts from the previous checkpoint; after, from
/// the new one, with redo from its oldest recLSN.
#[test]
fn a_crash_between_checkpoint_begin_and_end_loses_nothing() {
    let config = config(None);
    let storage = MemStorage::new();
    let engine = open(&storage, &config);
    let mut model = Model::new();
    let mut crashed_inside = 0;
    let mut crashed_after = 0;
    for step in 0..400u32 {
        commit(&engine, &mut model, step % 16, step);
        let running_before = engine.checkpoint_running();
        engine.tick().unwrap();
        let image = storage.snapshot();
        let (_, recovered) = open_image(&image, &config);
        assert_eq!(state(&recovered), model, "crash after step {step}");
        let report = recovered.recovery_report().clone();
        assert!(report.redo_start_lsn <= report.checkpoint_lsn, "{report:?}");
        if engine.checkpoint_running() {
            crashed_inside += 1;
        } else if running_before {
            crashed_after += 1;
        }
    }
    assert!(
        crashed_inside >= 10,
        "crashes inside checkpoints: {crashed_inside}"
    );
    assert!(
        crashed_after >= 3,
        "crashes right after one: {crashed_after}"
    );
    assert!(engine.stats().checkpoints >= 3);
}

/// A page dirty since before the previous checkpoint's begin is written by
/// the next one; a page dirtied since stays in the pool, in the dirty page
/// table with its recLSN, and redo must start there — before the begin
/// record. `redo-from-checkpoint` starts at the begin and loses its change.
#[test]
fn redo_starts_at_the_oldest_rec_lsn_not_at_the_checkpoint() {
    for bug in [None, Some(Bug::RedoFromCheckpoint)] {
        let mut config = config(bug);
        config.checkpoint_wal_bytes = 0;
        let storage = MemStorage::new();
        let engine = open(&storage, &config);
        let mut model = Model::new();
        engine.checkpoint().unwrap();
        commit(&engine, &mut model, 1, 0);
        // The page of key001 is dirty since before this begin record and
        // after the previous one: this checkpoint leaves it in the pool.
        engine.checkpoint().unwrap();
        let image = storage.snapshot();
        let (_, recovered) = open_image(&image, &config);
        let report = recovered.recovery_report().clone();
        assert!(report.checkpoint_dirty_pages >= 1, "{bug:?}: {report:?}");
        let kept = state(&recovered) == model;
        assert_eq!(kept, bug.is_none(), "{bug:?}: {report:?}");
        if bug.is_none() {
            assert!(report.redo_start_lsn < report.checkpoint_lsn, "{report:?}");
        }
    }
}

/// Commits until the writer has moved into a recycled segment; returns the
/// image just before that move (the spare still holds only its old
/// records), the image just after, the spare's name, and the model before.
fn until_recycled(config: &Config) -> (Image, Image, String, Model) {
    let storage = MemStorage::new();
    let engine = open(&storage, config);
    let mut model = Model::new();
    let steps_max = 5000u32;
    let mut before = (storage.snapshot(), model.clone());
    for step in 0..steps_max {
        commit(&engine, &mut model, step % 16, step);
        engine.tick().unwrap();
        let image = storage.snapshot();
        let found = records(&image);
        let last = found.last().expect("a log");
        let current = &last.segment;
        // The segment the log is in now held a record of another position
        // before: it is a recycled file (its old records carry old LSNs).
        let previous = &before.0;
        let recycled = previous.get(current).is_some_and(|old| {
            engine::wal::record::decode(old, parse_segment_name(current).unwrap(), true).is_err()
                && old.iter().any(|&byte| byte != 0)
        });
        let moved = !records(previous)
            .iter()
            .any(|record| record.segment == *current);
        if recycled && moved {
            return (before.0, image, current.clone(), before.1);
        }
        before = (image, model.clone());
    }
    panic!("no rotation into a recycled segment in {steps_max} commits");
}

/// A crash right after the writer moved into a recycled segment, with every
/// record it wrote there lost (a power cut before their sync): the previous
/// segment ends with its `SegmentEnd`, and the spare still holds its old
/// records, whose CRCs are good but whose LSN fields name their old
/// positions. Recovery ends the log at the spare's start; the
/// `stale-recycled-record` bug replays the old records as new ones.
#[test]
fn a_recycled_segments_old_records_are_not_replayed() {
    for bug in [None, Some(Bug::StaleRecycledRecord)] {
        let config = config(bug);
        let (before, after, spare, model) = until_recycled(&config);
        let mut image = after.clone();
        image.insert(spare.clone(), before[&spare].clone());
        let found = records(&image);
        let ends_segment = found.iter().any(|r| {
            r.kind == Kind::SegmentEnd
                && parse_segment_name(&r.segment) < parse_segment_name(&spare)
        });
        assert!(ends_segment, "the previous segment was ended");
        let storage = MemStorage::from_files(image);
        let opened = Engine::open(
            std::sync::Arc::new(storage),
            config.clone(),
            std::sync::Arc::new(engine::VirtualClock::new(0)),
        );
        match (bug, opened) {
            (None, Ok(engine)) => {
                let report = engine.recovery_report().clone();
                assert_eq!(
                    report.log_end_lsn,
                    parse_segment_name(&spare).unwrap(),
                    "{report:?}"
                );
                assert!(report.log_end_reason.contains("stale record"), "{report:?}");
                assert_eq!(state(&engine), model);
            }
            (None, Err(error)) => panic!("recovery failed: {error}"),
            (Some(_), Ok(engine)) => {
                let report = engine.recovery_report().clone();
                assert!(
                    report.log_end_lsn > parse_segment_name(&spare).unwrap(),
                    "{report:?}"
                );
            }
            (Some(_), Err(_)) => {}
        }
    }
}

/// After recovery, the tail of the end segment is zeros: old records past
/// the end (here, a recycled segment's) can never follow new appends, and a
/// second crash and recovery find exactly the new log.
#[test]
fn recovery_zeroes_the_rest_of_the_end_segment() {
    let config = config(None);
    let (_, after, spare, _) = until_recycled(&config);
    let (storage, engine) = open_image(&after, &config);
    let end = engine.recovery_report().log_end_lsn;
    let start = parse_segment_name(&spare).unwrap();
    drop(engine);
    let image = storage.snapshot();
    let end_segment = segments(&image)
        .into_iter()
        .rfind(|(segment_start, _)| *segment_start <= end)
        .map(|(_, name)| name)
        .unwrap();
    let found = records(&image);
    let tail_from = found
        .iter()
        .filter(|r| r.segment == end_segment)
        .map(|r| r.offset + r.len)
        .max()
        .unwrap();
    assert!(
        image[&end_segment][tail_from..]
            .iter()
            .all(|&byte| byte == 0),
        "the end segment's tail is zeroed (log from {start:#x})"
    );
    let (_, again) = open_image(&image, &config);
    assert_eq!(state(&again), {
        let (_, first) = open_image(&after, &config);
        state(&first)
    });
}

/// Checkpoints copy pages out under the core lock and write the copies
/// outside it while threads commit, and a pool smaller than the page file
/// evicts pages — some of them while their checkpoint copy is on its way.
/// Every process-crash image taken meanwhile, and the one at the end,
/// recovers every commit acknowledged before it: a late copy never
/// overwrites a newer eviction, and a page copied out is never lost.
#[test]
fn checkpoint_writes_outside_the_core_lock_lose_nothing_under_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut config = config(None);
    config.pool_pages = 4;
    config.checkpoint_wal_bytes = 2048;
    let storage = MemStorage::new();
    let engine = Arc::new(open(&storage, &config));
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = 4u32;
    let commits = 300u32;
    let committers: Vec<_> = (0..threads)
        .map(|thread| {
            let (engine, acked) = (Arc::clone(&engine), Arc::clone(&acked));
            std::thread::spawn(move || {
                // At least `commits` rounds, and on until 10 checkpoints.
                let rounds_max = 100 * commits;
                for round in 1..=rounds_max {
                    if round > commits && engine.stats().checkpoints >= 10 {
                        break;
                    }
                    assert!(round < rounds_max, "10 checkpoints never came");
                    let key = format!("t{thread}-k{}", round % 5).into_bytes();
                    put_commit(&engine, &key, format!("{round:08}").as_bytes());
                    acked.lock().unwrap().insert(key, round);
                }
            })
        })
        .collect();
    let ticker = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                engine.tick().unwrap();
                while engine.checkpoint_step().unwrap() {}
            }
        })
    };
    let check = |image: &Image, acked: &BTreeMap<Vec<u8>, u32>| {
        let (_, recovered) = open_image(image, &config);
        let found = state(&recovered);
        for (key, &round) in acked {
            let value = found.get(key).expect("an acknowledged key");
            let got: u32 = std::str::from_utf8(value).unwrap().parse().unwrap();
            assert!(got >= round, "{key:?}: {got} < acknowledged {round}");
        }
    };
    let mut images = 0;
    while committers.iter().any(|c| !c.is_finished()) {
        let before = acked.lock().unwrap().clone();
        check(&storage.snapshot(), &before);
        images += 1;
    }
    for committer in committers {
        committer.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    ticker.join().unwrap();
    let all = acked.lock().unwrap().clone();
    assert_eq!(all.len(), 20);
    check(&storage.snapshot(), &all);
    let stats = engine.stats();
    assert!(stats.checkpoints >= 10, "{stats:?}");
    assert!(images >= 2, "{images} crash images");
    Arc::into_inner(engine).unwrap().close().unwrap();
    check(&storage.snapshot(), &all);
}

/// A background checkpoint spreads its page writes over the WAL that follows
/// its begin record (half a checkpoint interval's worth, like PostgreSQL's
/// `checkpoint_completion_target`): with no new WAL it writes one batch and
/// waits, and `checkpoint_step` says so instead of spinning; as commits add
/// WAL it writes on and completes. Close finishes a waiting one.
#[test]
fn background_checkpoints_spread_their_page_writes_over_the_wal() {
    let mut config = config(None);
    config.checkpoint_wal_bytes = 16 << 10;
    let storage = MemStorage::new();
    let engine = open(&storage, &config);
    let mut model = Model::new();
    let mut round = 0;
    let mut commit_tick = |engine: &Engine, model: &mut Model| {
        round += 1;
        commit(engine, model, round % 48, round);
        engine.tick().unwrap();
    };
    // The first checkpoint finds nothing dirty for a whole interval; the
    // second writes the pages dirty since before the first began.
    for _ in 0..10_000 {
        if engine.stats().checkpoints >= 1 && engine.checkpoint_running() {
            break;
        }
        commit_tick(&engine, &mut model);
    }
    assert!(engine.checkpoint_running(), "a second checkpoint began");
    let writes_before = engine.stats().page_writes;
    let mut steps = 0;
    while engine.checkpoint_step().unwrap() {
        steps += 1;
        assert!(steps < 100, "checkpoint_step never says it waits");
    }
    let written = engine.stats().page_writes - writes_before;
    assert!(
        (1..=4).contains(&written),
        "{written} pages written with no new WAL"
    );
    assert!(engine.checkpoint_running(), "waiting, not complete");
    let completed = engine.stats().checkpoints;
    let mut commits = 0;
    while engine.stats().checkpoints == completed {
        commit_tick(&engine, &mut model);
        commits += 1;
        assert!(commits < 10_000, "the checkpoint never completed");
    }
    assert!(commits >= 10, "spread over {commits} commits only");
    // Close finishes a checkpoint that waits for WAL.
    while !engine.checkpoint_running() {
        commit_tick(&engine, &mut model);
    }
    while engine.checkpoint_step().unwrap() {}
    engine.close().unwrap();
    let (_, reopened) = open_image(&storage.snapshot(), &config);
    assert_eq!(state(&reopened), model);
}
