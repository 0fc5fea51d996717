//! Recovery on hand-made crash images (MemStorage snapshots, edited bytes).
//!
//! A `MemStorage` snapshot taken while the engine runs is a process-crash
//! image: everything written to the OS is there. Editing its bytes makes the
//! torn tails, torn pages and half-done rollbacks a power cut leaves.

mod common;

use common::*;
use engine::storage::MemStorage;
use engine::wal::record::Kind;
use engine::{Bug, BugSet, Config, Engine, Error, FsyncPolicy, VirtualClock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

type Image = BTreeMap<String, Vec<u8>>;
type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn last_segment(image: &Image) -> String {
    image
        .keys()
        .rfind(|name| name.starts_with("wal-"))
        .unwrap()
        .clone()
}

/// Torn tail: the last commit's record is torn. Recovery ends the log at it,
/// truncates the tail, and commits made after that recovery survive the
/// next one (they are not appended after the garbage).
#[test]
fn torn_tail_is_truncated_and_later_commits_survive() {
    let storage = MemStorage::new();
    let config = small_config(FsyncPolicy::Always);
    let engine = open(&storage, &config);
    put_commit(&engine, b"kept", b"1");
    put_commit(&engine, b"torn", b"2");
    let mut image = storage.snapshot();
    drop(engine);
    let segment = last_segment(&image);
    let commit = records(&image)
        .into_iter()
        .rfind(|r| r.kind == Kind::Commit)
        .unwrap();
    image.get_mut(&segment).unwrap()[commit.offset + 12] ^= 0xff;
    image
        .get_mut(&segment)
        .unwrap()
        .extend_from_slice(&[0xab; 100]);

    let (storage, engine) = open_image(&image, &config);
    let report = engine.recovery_report().clone();
    assert!(report.log_end_reason.contains("bad CRC"), "{report:?}");
    assert!(report.log_end_reason.contains(&segment), "{report:?}");
    assert_eq!(report.log_end_lsn, commit.lsn);
    assert!(report.truncated_bytes >= 100 + commit.len as u64);
    assert_eq!(report.losers.len(), 1, "the torn commit's txn is a loser");
    let state_now = state(&engine);
    assert_eq!(state_now.get(b"kept".as_slice()), Some(&b"1".to_vec()));
    assert_eq!(state_now.get(b"torn".as_slice()), None);
    put_commit(&engine, b"after", b"3");
    let image = storage.snapshot();
    drop(engine);

    let (_, engine) = open_image(&image, &config);
    assert_eq!(
        state(&engine).get(b"after".as_slice()),
        Some(&b"3".to_vec())
    );
}

/// STEAL: an uncommitted transaction's dirty pages reached the page file at
/// eviction; after a crash, undo removes its changes.
#[test]
fn stolen_pages_of_a_loser_are_undone() {
    let storage = MemStorage::new();
    let mut config = small_config(FsyncPolicy::Always);
    config.pool_pages = 1;
    let engine = open(&storage, &config);
    put_commit(&engine, b"base", b"committed");
    let loser = engine.begin().unwrap();
    for i in 0..12u8 {
        engine.put(loser, &[b'k', i], &[i; 50]).unwrap();
    }
    engine.put(loser, b"base", b"uncommitted").unwrap();
    assert!(engine.stats().page_writes > 0, "pages were stolen");
    put_commit(&engine, b"other", b"written out with the loser's tail");
    let image = storage.snapshot();
    drop(engine);

    let (_, engine) = open_image(&image, &config);
    let report = engine.recovery_report().clone();
    assert_eq!(report.losers, vec![loser]);
    assert_eq!(report.clrs_written, 13);
    let expected: BTreeMap<_, _> = [
        (b"base".to_vec(), b"committed".to_vec()),
        (
            b"other".to_vec(),
            b"written out with the loser's tail".to_vec(),
        ),
    ]
    .into();
    assert_eq!(state(&engine), expected);
}

/// Builds a log with a committed txn, a txn rolled back at runtime (CLRs and
/// an abort record), a loser, and another commit; returns the image and the
/// expected state after each commit record.
fn rollback_workload(config: &Config) -> (Image, Vec<(u64, State)>) {
    let storage = MemStorage::new();
    let engine = open(&storage, config);
    let mut model = BTreeMap::new();
    let mut after_commit = Vec::new();
    let txn = engine.begin().unwrap();
    for i in 0..5u8 {
        engine.put(txn, &[b'a', i], &[i; 30]).unwrap();
        model.insert(vec![b'a', i], vec![i; 30]);
    }
    after_commit.push((engine.commit(txn).unwrap(), model.clone()));
    let rolled_back = engine.begin().unwrap();
    for i in 0..5u8 {
        engine.put(rolled_back, &[b'a', i], b"new").unwrap();
        engine.put(rolled_back, &[b'b', i], b"new").unwrap();
    }
    engine.delete(rolled_back, b"a\x02").unwrap();
    let loser = engine.begin().unwrap();
    engine.put(loser, b"zz", b"loser").unwrap();
    engine.abort(rolled_back).unwrap();
    engine.put(loser, b"a\x03", b"loser").unwrap();
    let txn = engine.begin().unwrap();
    engine.put(txn, b"last", b"1").unwrap();
    model.insert(b"last".to_vec(), b"1".to_vec());
    after_commit.push((engine.commit(txn).unwrap(), model));
    let image = storage.snapshot();
    drop(engine);
    (image, after_commit)
}

/// Every prefix of the log (a crash after each record) recovers to the
/// state of the commits in it: covers a crash in the middle of a rollback
/// (CLRs, no abort record), which recovery must resume, and the pageLSN
/// check on pages written before the crash.
#[test]
fn every_log_prefix_recovers_and_rollback_resumes() {
    let mut config = small_config(FsyncPolicy::Always);
    config.pool_pages = 16;
    let (image, after_commit) = rollback_workload(&config);
    let all = records(&image);
    let clrs = all.iter().filter(|r| r.kind == Kind::Clr).count();
    assert_eq!(clrs, 11, "the runtime rollback logged one CLR per update");
    let mut resumed = 0;
    // The first two records are the initial checkpoint the control file names.
    for cut_at in all.iter().skip(2) {
        let cut = cut_log(&image, cut_at);
        let expected = after_commit
            .iter()
            .rev()
            .find(|(lsn, _)| *lsn < cut_at.lsn)
            .map(|(_, state)| state.clone())
            .unwrap_or_default();
        let (storage, engine) = open_image(&cut, &config);
        assert_eq!(state(&engine), expected, "cut at LSN {:#x}", cut_at.lsn);
        let report = engine.recovery_report().clone();
        let clrs_before = records(&cut).iter().filter(|r| r.kind == Kind::Clr).count();
        if clrs_before > 0 && clrs_before < clrs {
            resumed += 1;
            assert!(!report.losers.is_empty());
        }
        // Crash right after recovery and recover again: the same state.
        let again = storage.snapshot();
        drop(engine);
        let (_, engine) = open_image(&again, &config);
        assert_eq!(
            state(&engine),
            expected,
            "second recovery of cut {:#x}",
            cut_at.lsn
        );
    }
    assert!(resumed >= 5, "cuts inside the rollback were exercised");
}

/// Recovering the same image twice (on two copies) gives the same state and
/// the same report: redo is deterministic and idempotent.
#[test]
fn recovering_an_image_twice_is_idempotent() {
    let mut config = small_config(FsyncPolicy::Always);
    config.pool_pages = 2;
    let (image, after_commit) = rollback_workload(&config);
    let (first_storage, first) = open_image(&image, &config);
    let (second_storage, second) = open_image(&image, &config);
    assert_eq!(state(&first), after_commit.last().unwrap().1);
    assert_eq!(state(&first), state(&second));
    assert_eq!(first.recovery_report(), second.recovery_report());
    drop((first, second));
    assert_eq!(first_storage.snapshot(), second_storage.snapshot());
}

/// Builds an image in which page `victim` was written after the checkpoint
/// (it has a full-page image in the redo range) and then torn on disk.
fn torn_page_image(config: &Config) -> (Image, State, u32) {
    let storage = MemStorage::new();
    let engine = open(&storage, config);
    let mut model = BTreeMap::new();
    for i in 0..6u8 {
        put_commit(&engine, &[b'p', i], &[i; 40]);
        model.insert(vec![b'p', i], vec![i; 40]);
    }
    engine.checkpoint().unwrap();
    put_commit(&engine, b"p\x00", b"after checkpoint");
    model.insert(b"p\x00".to_vec(), b"after checkpoint".to_vec());
    let victim = crc32c::crc32c(b"p\x00") % config.page_count;
    // Evict the victim by reading keys on other pages (pool of one page).
    for i in 1..6u8 {
        let txn = engine.begin().unwrap();
        engine.get(txn, &[b'p', i]).unwrap();
        engine.abort(txn).unwrap();
    }
    let mut image = storage.snapshot();
    drop(engine);
    let page_size = config.page_size as usize;
    let start = victim as usize * page_size;
    // Tear it: the second half of the page is an old/garbage sector.
    for byte in &mut image.get_mut("pages").unwrap()[start + page_size / 2..start + page_size] {
        *byte ^= 0x5a;
    }
    (image, model, victim)
}

/// A torn data page is repaired from its full-page image; without full-page
/// images (planted bug) the same image is a corruption error, never a wrong
/// value.
#[test]
fn torn_page_is_repaired_from_its_full_page_image() {
    let mut config = small_config(FsyncPolicy::Always);
    config.pool_pages = 1;
    let (image, model, victim) = torn_page_image(&config);
    // The images are logged without the page's hole (a page of a few
    // entries costs its entries, not a page); redo puts the zeros back.
    let images: Vec<_> = records(&image)
        .into_iter()
        .filter(|found| found.kind == Kind::FullPageImage)
        .collect();
    assert!(!images.is_empty());
    assert!(
        images
            .iter()
            .all(|found| found.len < config.page_size as usize / 2),
        "{images:?}"
    );
    let (_, engine) = open_image(&image, &config);
    assert_eq!(engine.recovery_report().pages_repaired, vec![victim]);
    assert_eq!(state(&engine), model);

    config.bugs = BugSet::NONE.with(Bug::NoFullPageImages);
    let (image, _, _) = torn_page_image(&config);
    let storage = MemStorage::from_files(image);
    let result = Engine::open(Arc::new(storage), config, Arc::new(VirtualClock::new(0)));
    assert!(
        matches!(result, Err(ref error) if error.is_corruption()),
        "{:?}",
        result.err()
    );
}

/// fsync failure is fatal: the failing commit is not acknowledged, every
/// later call is refused, and nothing is acknowledged afterwards.
#[test]
fn fsync_failure_stops_the_engine() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Group { delay_us: 0 }] {
        let storage = FailingStorage::new(MemStorage::new(), i64::MAX);
        let countdown = storage.countdown.clone();
        let config = small_config(policy);
        let engine =
            Engine::open(Arc::new(storage), config, Arc::new(VirtualClock::new(0))).unwrap();
        put_commit(&engine, b"before", b"1");
        countdown.store(0, Ordering::SeqCst);
        let txn = engine.begin().unwrap();
        engine.put(txn, b"failing", b"2").unwrap();
        let ticket = engine.commit_enqueue(txn);
        let ticket = match policy {
            FsyncPolicy::Always => {
                assert!(
                    matches!(ticket, Err(Error::SyncFailed { .. })),
                    "{ticket:?}"
                );
                None
            }
            _ => {
                let ticket = ticket.unwrap();
                let target = engine.group_flush_begin().unwrap();
                let result = engine.group_flush_finish(target);
                assert!(
                    matches!(result, Err(Error::SyncFailed { .. })),
                    "{result:?}"
                );
                assert!(!engine.is_acknowledged(ticket));
                Some(ticket)
            }
        };
        assert!(matches!(engine.begin(), Err(Error::Stopped(_))));
        assert!(matches!(engine.checkpoint(), Err(Error::Stopped(_))));
        assert!(matches!(engine.group_flush_begin(), Err(Error::Stopped(_))));
        if let Some(ticket) = ticket {
            assert!(
                !engine.is_acknowledged(ticket),
                "a later sync would succeed"
            );
        }
        engine.close().unwrap();
    }
}

/// The planted `ignore-fsync-error` bug acknowledges a commit whose fsync
/// failed.
#[test]
fn ignore_fsync_error_bug_acknowledges_anyway() {
    let storage = FailingStorage::new(MemStorage::new(), i64::MAX);
    let countdown = storage.countdown.clone();
    let mut config = small_config(FsyncPolicy::Always);
    config.bugs = BugSet::NONE.with(Bug::IgnoreFsyncError);
    let engine = Engine::open(Arc::new(storage), config, Arc::new(VirtualClock::new(0))).unwrap();
    countdown.store(0, Ordering::SeqCst);
    let txn = engine.begin().unwrap();
    engine.put(txn, b"k", b"v").unwrap();
    let ticket = engine.commit_enqueue(txn).unwrap();
    assert!(engine.is_acknowledged(ticket));
}

/// A crash during recovery's own undo: the image a crash after some of
/// recovery's CLRs leaves (its WAL cut there, the control file and pages
/// from before recovery) recovers, resuming the rollback from the CLRs.
#[test]
fn crash_during_recovery_undo_resumes() {
    let storage = MemStorage::new();
    let config = small_config(FsyncPolicy::Always);
    let engine = open(&storage, &config);
    put_commit(&engine, b"base", b"1");
    let loser = engine.begin().unwrap();
    for i in 0..6u8 {
        engine.put(loser, &[b'l', i], b"uncommitted").unwrap();
    }
    engine.put(loser, b"base", b"2").unwrap();
    put_commit(&engine, b"other", b"3");
    let image = storage.snapshot();
    drop(engine);
    let expected: BTreeMap<_, _> = [
        (b"base".to_vec(), b"1".to_vec()),
        (b"other".to_vec(), b"3".to_vec()),
    ]
    .into();
    let (recovered, engine) = open_image(&image, &config);
    assert_eq!(state(&engine), expected);
    drop(engine);
    let after = recovered.snapshot();
    let found = records(&after);
    let abort = found
        .iter()
        .find(|r| r.kind == Kind::Abort && r.txn == loser)
        .expect("recovery wrote the loser's abort record");
    let clrs: Vec<_> = found
        .iter()
        .filter(|r| r.kind == Kind::Clr && r.txn == loser)
        .collect();
    assert_eq!(clrs.len(), 7);
    // A crash after 3 of recovery's CLRs: the log holds them, then nothing.
    for cut_at in [clrs[3], abort] {
        let mut cut = cut_log(&after, cut_at);
        cut.insert("control".to_string(), image["control"].clone());
        cut.insert("pages".to_string(), image["pages"].clone());
        for (name, bytes) in &image {
            cut.entry(name.clone()).or_insert_with(|| bytes.clone());
        }
        let (_, engine) = open_image(&cut, &config);
        assert_eq!(state(&engine), expected);
        assert_eq!(engine.recovery_report().losers, vec![loser]);
    }
}
