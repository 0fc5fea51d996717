//! The storage contract, checked against every implementation.

use super::*;
use std::io::ErrorKind;

fn contract(storage: &dyn Storage) {
    let file = storage.create("a").unwrap();
    assert_eq!(
        storage.create("a").err().map(|e| e.kind()),
        Some(ErrorKind::AlreadyExists)
    );
    file.write_at(4, b"xyz").unwrap();
    assert_eq!(file.len().unwrap(), 7);
    let mut buf = [9u8; 8];
    assert_eq!(file.read_at(0, &mut buf).unwrap(), 7);
    assert_eq!(&buf[..7], b"\0\0\0\0xyz");
    file.set_len(2).unwrap();
    assert_eq!(file.len().unwrap(), 2);
    file.sync_data().unwrap();
    file.sync_all().unwrap();

    storage.create("b").unwrap().write_at(0, b"bee").unwrap();
    assert_eq!(
        storage.list().unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    storage.rename("b", "a").unwrap();
    assert_eq!(storage.list().unwrap(), vec!["a".to_string()]);
    let reopened = storage.open("a").unwrap();
    let mut bee = [0u8; 3];
    read_exact_at(reopened.as_ref(), 0, &mut bee).unwrap();
    assert_eq!(&bee, b"bee");
    assert_eq!(
        read_exact_at(reopened.as_ref(), 1, &mut bee)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::UnexpectedEof)
    );
    storage.remove("a").unwrap();
    storage.sync_dir().unwrap();
    assert!(storage.list().unwrap().is_empty());
    assert_eq!(
        storage.open("a").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        storage.remove("a").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        storage.create("x/y").err().map(|e| e.kind()),
        Some(ErrorKind::InvalidInput)
    );

    let held = storage.lock().unwrap();
    assert_eq!(
        storage.lock().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock)
    );
    drop(held);
    storage.lock().unwrap();
}

#[test]
fn mem_storage_keeps_the_contract() {
    contract(&MemStorage::new());
}

#[test]
fn real_storage_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RealStorage::new(dir.path()).unwrap());
}

#[test]
fn real_storage_lock_excludes_a_second_opener_of_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = RealStorage::new(dir.path()).unwrap();
    let second = RealStorage::new(dir.path()).unwrap();
    let _held = first.lock().unwrap();
    assert_eq!(
        second.lock().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock)
    );
}

#[test]
fn mem_snapshot_round_trips() {
    let storage = MemStorage::new();
    storage.create("f").unwrap().write_at(0, b"hello").unwrap();
    let copy = MemStorage::from_files(storage.snapshot());
    assert_eq!(copy.snapshot(), storage.snapshot());
}
