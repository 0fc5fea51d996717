//! Each planted bug switch changes behaviour observably (the harness proves
//! that it catches them; these tests prove the switches are wired). The
//! recovery bugs `no-undo` and `redo-no-pagelsn-check` are shown by the
//! model test's canary, `no-full-page-images` and `ignore-fsync-error` by
//! recovery.rs.

mod common;

use common::*;
use engine::storage::MemStorage;
use engine::wal::record::Kind;
use engine::{Bug, Config, Engine, FsyncPolicy, VirtualClock};
use std::collections::BTreeMap;
use std::sync::Arc;

fn with(bug: Option<Bug>, policy: FsyncPolicy) -> Config {
    let mut config = small_config(policy);
    config.bugs = bug.into_iter().collect();
    config
}

fn open_failing(config: &Config) -> (Arc<FailingStorage>, Engine) {
    let storage = Arc::new(FailingStorage::new(MemStorage::new(), i64::MAX));
    let engine = Engine::open(
        storage.clone(),
        config.clone(),
        Arc::new(VirtualClock::new(0)),
    )
    .unwrap();
    storage.take_events();
    (storage, engine)
}

/// Under `always`, a commit's fsync happens before its acknowledgement;
/// `ack-before-fsync` acknowledges first, `skip-fsync` never fsyncs.
#[test]
fn always_policy_bugs_acknowledge_without_an_fsync() {
    for (bug, fsynced) in [
        (None, true),
        (Some(Bug::AckBeforeFsync), false),
        (Some(Bug::SkipFsync), false),
    ] {
        let engine = open(&MemStorage::new(), &with(bug, FsyncPolicy::Always));
        let syncs = engine.stats().wal_syncs;
        let txn = engine.begin().unwrap();
        engine.put(txn, b"k", b"v").unwrap();
        let ticket = engine.commit_enqueue(txn).unwrap();
        assert!(engine.is_acknowledged(ticket));
        assert_eq!(engine.stats().wal_syncs > syncs, fsynced, "{bug:?}");
    }
}

/// `group-ack-beyond-flush` acknowledges a commit enqueued after the flush
/// target was taken.
#[test]
fn group_ack_beyond_flush_acknowledges_uncovered_commits() {
    for (bug, late_acked) in [(None, false), (Some(Bug::GroupAckBeyondFlush), true)] {
        let engine = open(
            &MemStorage::new(),
            &with(bug, FsyncPolicy::Group { delay_us: 0 }),
        );
        let target = engine.group_flush_begin().unwrap();
        let txn = engine.begin().unwrap();
        engine.put(txn, b"late", b"v").unwrap();
        let late = engine.commit_enqueue(txn).unwrap();
        engine.group_flush_finish(target).unwrap();
        assert_eq!(engine.is_acknowledged(late), late_acked, "{bug:?}");
    }
}

/// Segment creation and the control rename are followed by a directory
/// sync, except with `no-dir-fsync`.
#[test]
fn no_dir_fsync_skips_directory_syncs() {
    let mut counts = Vec::new();
    for bug in [None, Some(Bug::NoDirFsync)] {
        let (storage, engine) = open_failing(&with(bug, FsyncPolicy::None));
        for i in 0..200u32 {
            put_commit(&engine, &(i % 30).to_le_bytes(), &[1; 100]);
        }
        engine.checkpoint().unwrap();
        let events = storage.take_events();
        let renamed = events
            .iter()
            .position(|e| e == "rename control.tmp control")
            .unwrap();
        let after_rename = events.get(renamed + 1).map(String::as_str);
        counts.push((
            events.iter().filter(|e| *e == "sync_dir").count(),
            after_rename == Some("sync_dir"),
        ));
    }
    assert!(counts[0].1 && !counts[1].1, "{counts:?}");
    assert!(counts[0].0 > counts[1].0, "{counts:?}");
}

type Image = BTreeMap<String, Vec<u8>>;

fn three_commits(config: &Config) -> Image {
    let storage = MemStorage::new();
    let engine = open(&storage, config);
    put_commit(&engine, b"one", b"1");
    put_commit(&engine, b"two", b"2");
    put_commit(&engine, b"three", b"3");
    storage.snapshot()
}

/// A flipped byte inside an update's value: the CRC ends the log there;
/// `no-crc-check` replays the corrupted value.
#[test]
fn no_crc_check_replays_a_corrupted_record() {
    for bug in [None, Some(Bug::NoCrcCheck)] {
        let config = with(bug, FsyncPolicy::Always);
        let mut image = three_commits(&config);
        let update = records(&image)
            .into_iter()
            .rfind(|r| r.kind == Kind::Update)
            .unwrap();
        let segment = image.get_mut(&update.segment).unwrap();
        *segment.get_mut(update.offset + update.len - 1).unwrap() ^= 0x01;
        let (_, engine) = open_image(&image, &config);
        let three = state(&engine).get(b"three".as_slice()).cloned();
        match bug {
            None => assert_eq!(three, None),
            Some(_) => assert_eq!(three, Some(b"2".to_vec()), "corrupted value replayed"),
        }
    }
}

/// A bad record in the middle of the log ends it; `replay-past-torn` skips
/// it and replays what follows.
#[test]
fn replay_past_torn_skips_a_bad_record() {
    for bug in [None, Some(Bug::ReplayPastTorn)] {
        let config = with(bug, FsyncPolicy::Always);
        let mut image = three_commits(&config);
        let first_commit = records(&image)
            .into_iter()
            .find(|r| r.kind == Kind::Commit)
            .unwrap();
        image.get_mut(&first_commit.segment).unwrap()[first_commit.offset + 5] ^= 0xff;
        let (_, engine) = open_image(&image, &config);
        let later = state(&engine).contains_key(b"three".as_slice());
        assert_eq!(later, bug.is_some(), "{bug:?}");
    }
}

/// A torn tail in one segment and a stale later segment that ends in
/// garbage: recovery zeroes the first from the tear to its end and removes
/// the second before any new append. `no-tail-truncate` keeps both, so the
/// old records after the tear stay behind the new appends.
#[test]
fn no_tail_truncate_keeps_the_torn_tail() {
    for bug in [None, Some(Bug::NoTailTruncate)] {
        // A pool as big as the page file: no page reaches the disk before
        // the crash, so tearing the log is a possible crash image.
        let mut config = with(bug, FsyncPolicy::Always);
        config.pool_pages = config.page_count;
        let storage = MemStorage::new();
        let engine = open(&storage, &config);
        for i in 0..60u32 {
            put_commit(&engine, &(i % 20).to_le_bytes(), &[3; 100]);
        }
        let mut image = storage.snapshot();
        drop(engine);
        let found = records(&image);
        let first_segment = found[0].segment.clone();
        let torn = found
            .iter()
            .find(|r| r.segment == first_segment && r.kind == Kind::Commit && r.offset > 4000)
            .unwrap()
            .clone();
        let later: Vec<String> = image
            .keys()
            .filter(|n| n.starts_with("wal-") && **n > first_segment)
            .cloned()
            .collect();
        assert!(!later.is_empty(), "the workload rotated");
        image.get_mut(&first_segment).unwrap()[torn.offset + 9] ^= 0xff;
        image
            .get_mut(&later[0])
            .unwrap()
            .extend_from_slice(&[0x55; 40]);
        let (storage, engine) = open_image(&image, &config);
        let after = storage.snapshot();
        // (With the bug the stale segment is appended to, and may even be
        // removed by recovery's checkpoint once the log moved past it.)
        if bug.is_none() {
            assert!(!after.contains_key(&later[0]), "stale segment removed");
        }
        let last = found
            .iter()
            .rfind(|r| r.segment == first_segment && r.kind != Kind::SegmentEnd)
            .unwrap();
        let old_bytes = &image[&first_segment][last.offset..last.offset + last.len];
        let kept_whole = after
            .get(&first_segment)
            .map(|bytes| &bytes[last.offset..last.offset + last.len] == old_bytes);
        assert!(last.offset > torn.offset + 1000, "the tail is long");
        match bug {
            // The correct engine zeroes the torn tail in place.
            None => assert_eq!(kept_whole, Some(false), "torn tail zeroed"),
            // The bug leaves it and appends after it (or recovery's
            // checkpoint released the segment once the log moved past).
            Some(_) => assert_ne!(kept_whole, Some(false), "torn tail kept: {bug:?}"),
        }
        put_commit(&engine, b"after", b"1");
    }
}

/// The page file is synced before the control file names the new
/// checkpoint; `early-checkpoint` renames the control file first.
#[test]
fn early_checkpoint_replaces_control_before_pages_are_durable() {
    for bug in [None, Some(Bug::EarlyCheckpoint)] {
        let (storage, engine) = open_failing(&with(bug, FsyncPolicy::Always));
        put_commit(&engine, b"k", b"v");
        storage.take_events();
        engine.checkpoint().unwrap();
        let events = storage.take_events();
        let at = |what: &str| events.iter().position(|e| e == what).unwrap();
        let pages_first = at("sync pages") < at("rename control.tmp control");
        assert_eq!(pages_first, bug.is_none(), "{bug:?}: {events:?}");
    }
}

/// Segments an active transaction still needs are kept, and removal comes
/// after the control file is replaced; `early-wal-removal` removes them,
/// before the rename.
#[test]
fn early_wal_removal_removes_segments_an_active_txn_needs() {
    for bug in [None, Some(Bug::EarlyWalRemoval)] {
        let (storage, engine) = open_failing(&with(bug, FsyncPolicy::None));
        let long = engine.begin().unwrap();
        engine.put(long, b"long", b"running").unwrap();
        for i in 0..300u32 {
            put_commit(&engine, &(i % 30).to_le_bytes(), &[2; 100]);
        }
        storage.take_events();
        engine.checkpoint().unwrap();
        let events = storage.take_events();
        // Released: removed, or renamed to a spare's name (recycled).
        let removed_first = events.iter().position(|e| {
            e == "remove wal-0000000000000000" || e.starts_with("rename wal-0000000000000000 ")
        });
        let renamed = events
            .iter()
            .position(|e| e == "rename control.tmp control")
            .unwrap();
        match bug {
            None => assert_eq!(removed_first, None, "{events:?}"),
            Some(_) => assert!(removed_first.unwrap() < renamed, "{events:?}"),
        }
        engine.abort(long).unwrap();
    }
}
