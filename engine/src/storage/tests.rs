//! The storage contract, checked against every implementation.

use super::*;
use std::collections::BTreeMap;
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
        Some(ErrorKind::NotFound)
    );
    for bad in ["", "x//y", "x/../y", "/y", "./y"] {
        assert_eq!(
            storage.create(bad).err().map(|e| e.kind()),
            Some(ErrorKind::InvalidInput),
            "{bad:?}"
        );
    }
    directories(storage);

    let held = storage.lock().unwrap();
    assert_eq!(
        storage.lock().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock)
    );
    drop(held);
    storage.lock().unwrap();
}

/// Subdirectories: files inside them, listing, renames across directories,
/// removal of empty directories only, syncs of a directory.
fn directories(storage: &dyn Storage) {
    storage.create_dir("d").unwrap();
    assert_eq!(
        storage.create_dir("d").err().map(|e| e.kind()),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        storage.create_dir("none/e").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    storage.create_dir("d/e").unwrap();
    storage.create("d/f").unwrap().write_at(0, b"eff").unwrap();
    storage.create("top").unwrap();
    assert_eq!(
        storage.list().unwrap(),
        vec!["top".to_string()],
        "list() names the root's files only"
    );
    let entry = |name: &str, is_dir| DirEntry {
        name: name.to_string(),
        is_dir,
    };
    assert_eq!(
        storage.list_dir("").unwrap(),
        vec![entry("d", true), entry("top", false)]
    );
    assert_eq!(
        storage.list_dir("d").unwrap(),
        vec![entry("e", true), entry("f", false)]
    );
    storage.rename("d/f", "d/e/g").unwrap();
    storage.rename("top", "d/top").unwrap();
    assert_eq!(
        storage.rename("d/e", "e2").err().map(|e| e.kind()),
        Some(ErrorKind::Unsupported)
    );
    let mut eff = [0u8; 3];
    read_exact_at(storage.open("d/e/g").unwrap().as_ref(), 0, &mut eff).unwrap();
    assert_eq!(&eff, b"eff");
    storage.sync_dir_at("d").unwrap();
    storage.sync_dir_at("d/e").unwrap();
    assert_eq!(
        storage.remove_dir("d/e").err().map(|e| e.kind()),
        Some(ErrorKind::DirectoryNotEmpty)
    );
    storage.remove("d/e/g").unwrap();
    storage.remove("d/top").unwrap();
    storage.remove_dir("d/e").unwrap();
    storage.remove_dir("d").unwrap();
    assert_eq!(
        storage.remove_dir("d").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert!(storage.list_dir("").unwrap().is_empty());
}

#[test]
fn mem_from_tree_keeps_empty_directories_and_parents() {
    let files = BTreeMap::from([("a/b/f".to_string(), b"x".to_vec())]);
    let dirs = std::collections::BTreeSet::from(["e".to_string()]);
    let storage = MemStorage::from_tree(files.clone(), &dirs);
    assert_eq!(storage.snapshot(), files);
    let all: Vec<String> = storage.dirs().into_iter().collect();
    assert_eq!(all, vec!["a", "a/b", "e"]);
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
