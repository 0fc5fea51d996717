//! The engine's API on the happy path: transactions, policies, reopen.

mod common;

use common::*;
use engine::storage::MemStorage;
use engine::{Engine, Error, FsyncPolicy, VirtualClock};
use std::sync::Arc;

#[test]
fn put_get_delete_commit_abort_and_reopen() {
    let storage = MemStorage::new();
    let config = small_config(FsyncPolicy::Always);
    let engine = open(&storage, &config);
    assert!(engine.recovery_report().created);
    let txn = engine.begin().unwrap();
    engine.put(txn, b"a", b"1").unwrap();
    engine.put(txn, b"b", b"2").unwrap();
    assert_eq!(engine.get(txn, b"a").unwrap(), Some(b"1".to_vec()));
    engine.delete(txn, b"b").unwrap();
    assert_eq!(engine.get(txn, b"b").unwrap(), None);
    engine.commit(txn).unwrap();

    let txn = engine.begin().unwrap();
    engine.put(txn, b"a", b"changed").unwrap();
    engine.put(txn, b"c", b"3").unwrap();
    engine.delete(txn, b"a").unwrap();
    engine.abort(txn).unwrap();
    assert_eq!(state(&engine).len(), 1);
    assert_eq!(state(&engine)[&b"a".to_vec()], b"1".to_vec());
    engine.close().unwrap();

    let engine = open(&storage, &config);
    assert!(!engine.recovery_report().created);
    assert_eq!(state(&engine).len(), 1);
    engine.close().unwrap();
}

#[test]
fn conflicts_are_no_wait_and_locks_release_at_end() {
    let storage = MemStorage::new();
    let engine = open(&storage, &small_config(FsyncPolicy::None));
    let first = engine.begin().unwrap();
    let second = engine.begin().unwrap();
    engine.put(first, b"k", b"1").unwrap();
    assert!(matches!(
        engine.put(second, b"k", b"2"),
        Err(Error::Conflict { holder, .. }) if holder == first
    ));
    assert!(matches!(
        engine.delete(second, b"k"),
        Err(Error::Conflict { .. })
    ));
    engine.commit(first).unwrap();
    engine.put(second, b"k", b"2").unwrap();
    engine.commit(second).unwrap();
    assert_eq!(state(&engine)[&b"k".to_vec()], b"2".to_vec());
}

#[test]
fn read_only_transactions_write_no_log_record() {
    let storage = MemStorage::new();
    let engine = open(&storage, &small_config(FsyncPolicy::Always));
    let before = engine.stats();
    let txn = engine.begin().unwrap();
    assert_eq!(engine.get(txn, b"nothing").unwrap(), None);
    engine.delete(txn, b"absent").unwrap();
    engine.commit(txn).unwrap();
    let txn = engine.begin().unwrap();
    engine.abort(txn).unwrap();
    let after = engine.stats();
    assert_eq!(before.wal_bytes_written, after.wal_bytes_written);
    assert_eq!(before.wal_syncs, after.wal_syncs);
}

#[test]
fn group_commit_is_acknowledged_only_by_a_covering_flush() {
    let storage = MemStorage::new();
    let engine = open(&storage, &small_config(FsyncPolicy::Group { delay_us: 0 }));
    let txn = engine.begin().unwrap();
    engine.put(txn, b"k", b"v").unwrap();
    let ticket = engine.commit_enqueue(txn).unwrap();
    assert!(!engine.is_acknowledged(ticket));
    let target = engine.group_flush_begin().unwrap();
    let txn = engine.begin().unwrap();
    engine.put(txn, b"late", b"v").unwrap();
    let late = engine.commit_enqueue(txn).unwrap();
    engine.group_flush_finish(target).unwrap();
    assert!(engine.is_acknowledged(ticket));
    assert!(
        !engine.is_acknowledged(late),
        "enqueued after the flush began"
    );
    let target = engine.group_flush_begin().unwrap();
    engine.group_flush_finish(target).unwrap();
    assert!(engine.is_acknowledged(late));
}

#[test]
fn interval_policy_fsyncs_on_tick_when_due() {
    let storage = MemStorage::new();
    let clock = Arc::new(VirtualClock::new(0));
    let config = small_config(FsyncPolicy::Interval { ms: 10 });
    let engine = Engine::open(Arc::new(storage.clone()), config, clock.clone()).unwrap();
    let txn = engine.begin().unwrap();
    engine.put(txn, b"k", b"v").unwrap();
    let ticket = engine.commit_enqueue(txn).unwrap();
    assert!(engine.is_acknowledged(ticket), "acknowledged once written");
    let syncs = engine.stats().wal_syncs;
    engine.tick().unwrap();
    assert_eq!(engine.stats().wal_syncs, syncs, "not due yet");
    clock.advance_us(10_000);
    engine.tick().unwrap();
    assert!(engine.stats().wal_syncs > syncs, "due: fsynced");
}

#[test]
fn threads_commit_concurrently_under_group_commit() {
    let storage = MemStorage::new();
    let mut config = small_config(FsyncPolicy::Group { delay_us: 0 });
    config.page_count = 256;
    config.pool_pages = 64;
    let engine = Arc::new(open(&storage, &config));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let txn = engine.begin().unwrap();
                    let key = format!("t{thread}-{i}");
                    engine.put(txn, key.as_bytes(), b"value").unwrap();
                    let lsn = engine.commit(txn).unwrap();
                    assert!(lsn > 0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(state(&engine).len(), 800);
    assert_eq!(engine.stats().commits, 800);
}

#[test]
fn the_commit_observer_sees_every_commit_record_in_log_order() {
    let storage = MemStorage::new();
    let mut config = small_config(FsyncPolicy::Group { delay_us: 0 });
    config.page_count = 256;
    config.pool_pages = 64;
    let engine = Arc::new(open(&storage, &config));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    assert!(engine.set_commit_observer(Box::new(move |txn, lsn| {
        sink.lock().unwrap().push((txn, lsn));
    })));
    assert!(!engine.set_commit_observer(Box::new(|_, _| {})), "set once");
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut returned = Vec::new();
                for i in 0..100 {
                    let txn = engine.begin().unwrap();
                    engine
                        .put(txn, format!("t{thread}-{i}").as_bytes(), b"value")
                        .unwrap();
                    returned.push((txn, engine.commit(txn).unwrap()));
                }
                returned
            })
        })
        .collect();
    let mut returned: Vec<(u64, u64)> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "observed in LSN order"
    );
    returned.sort_by_key(|&(_, lsn)| lsn);
    assert_eq!(
        seen, returned,
        "each commit once, with the LSN commit returned"
    );
}

#[test]
fn second_open_is_locked_out() {
    let storage = MemStorage::new();
    let config = small_config(FsyncPolicy::Always);
    let engine = open(&storage, &config);
    let second = Engine::open(
        Arc::new(storage.clone()),
        config.clone(),
        Arc::new(VirtualClock::new(0)),
    );
    assert!(matches!(second, Err(Error::Locked)));
    engine.close().unwrap();
    open(&storage, &config).close().unwrap();
}

#[test]
fn oversized_and_page_full_are_rejected_and_txn_goes_on() {
    let storage = MemStorage::new();
    let mut config = small_config(FsyncPolicy::None);
    config.page_count = 1;
    let engine = open(&storage, &config);
    let txn = engine.begin().unwrap();
    assert!(matches!(
        engine.put(txn, b"k", &[0; 201]),
        Err(Error::TooLarge { .. })
    ));
    let mut full = false;
    for i in 0..20u32 {
        match engine.put(txn, &i.to_le_bytes(), &[7; 200]) {
            Ok(()) => {}
            Err(Error::PageFull { page: 0 }) => {
                full = true;
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(full, "one 1 KiB page cannot hold 20 entries of 200 bytes");
    engine.commit(txn).unwrap();
    assert_eq!(state(&engine).len(), 4);
}
