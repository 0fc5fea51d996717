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
    hard_links(storage);

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

/// Hard links: two names of one file share its bytes and its link count;
/// removing one name keeps the data under the other.
fn hard_links(storage: &dyn Storage) {
    storage.create_dir("h").unwrap();
    let first = storage.create("h/one").unwrap();
    first.write_at(0, b"shared").unwrap();
    storage.link("h/one", "two").unwrap();
    assert_eq!(first.link_count().unwrap(), 2);
    let second = storage.open("two").unwrap();
    assert_eq!(second.link_count().unwrap(), 2);
    second.write_at(0, b"SH").unwrap();
    let mut seen = [0u8; 6];
    read_exact_at(first.as_ref(), 0, &mut seen).unwrap();
    assert_eq!(
        &seen, b"SHared",
        "a write through one name is read through the other"
    );
    assert_eq!(
        storage.link("h/one", "two").err().map(|e| e.kind()),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        storage.link("h/none", "three").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        storage.link("h/one", "none/three").err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    // rename(2) between two names of one file does nothing.
    storage.rename("two", "h/one").unwrap();
    assert_eq!(first.link_count().unwrap(), 2);
    storage.remove("h/one").unwrap();
    assert_eq!(second.link_count().unwrap(), 1);
    let kept = storage.open("two").unwrap();
    read_exact_at(kept.as_ref(), 0, &mut seen).unwrap();
    assert_eq!(&seen, b"SHared", "the data stays under the other name");
    // A rename over the last name of a file takes its last link.
    storage.create("h/other").unwrap();
    storage.rename("h/other", "two").unwrap();
    assert_eq!(second.link_count().unwrap(), 0);
    storage.remove("two").unwrap();
    storage.remove_dir("h").unwrap();
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

/// One step of a random history of names and bytes.
#[derive(Clone, Debug)]
enum NameOp {
    Create(usize),
    Link(usize, usize),
    Rename(usize, usize),
    Remove(usize),
    Write(usize, u8, u8),
}

const NAMES: [&str; 4] = ["a", "b", "d/c", "d/e"];

fn name_op() -> impl proptest::strategy::Strategy<Value = NameOp> {
    use proptest::prelude::*;
    let name = 0..NAMES.len();
    prop_oneof![
        name.clone().prop_map(NameOp::Create),
        (name.clone(), name.clone()).prop_map(|(a, b)| NameOp::Link(a, b)),
        (name.clone(), name.clone()).prop_map(|(a, b)| NameOp::Rename(a, b)),
        name.clone().prop_map(NameOp::Remove),
        (name, 0u8..8, any::<u8>()).prop_map(|(a, at, byte)| NameOp::Write(a, at, byte)),
    ]
}

/// The model: names → inode number, inodes → bytes.
#[derive(Default)]
struct LinkModel {
    names: BTreeMap<String, usize>,
    inodes: Vec<Vec<u8>>,
}

impl LinkModel {
    fn apply(&mut self, op: &NameOp) -> Result<(), ErrorKind> {
        match *op {
            NameOp::Create(a) => {
                if self.names.contains_key(NAMES[a]) {
                    return Err(ErrorKind::AlreadyExists);
                }
                self.inodes.push(Vec::new());
                self.names
                    .insert(NAMES[a].to_string(), self.inodes.len() - 1);
            }
            NameOp::Link(a, b) => {
                let inode = *self.names.get(NAMES[a]).ok_or(ErrorKind::NotFound)?;
                if self.names.contains_key(NAMES[b]) {
                    return Err(ErrorKind::AlreadyExists);
                }
                self.names.insert(NAMES[b].to_string(), inode);
            }
            NameOp::Rename(a, b) => {
                let inode = *self.names.get(NAMES[a]).ok_or(ErrorKind::NotFound)?;
                if self.names.get(NAMES[b]) != Some(&inode) {
                    self.names.remove(NAMES[a]);
                    self.names.insert(NAMES[b].to_string(), inode);
                }
            }
            NameOp::Remove(a) => {
                self.names.remove(NAMES[a]).ok_or(ErrorKind::NotFound)?;
            }
            NameOp::Write(a, at, byte) => {
                let inode = *self.names.get(NAMES[a]).ok_or(ErrorKind::NotFound)?;
                let data = &mut self.inodes[inode];
                let end = usize::from(at) + 1;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[usize::from(at)] = byte;
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u64)> {
        self.names
            .iter()
            .map(|(name, inode)| {
                let links = self.names.values().filter(|i| *i == inode).count() as u64;
                (name.clone(), (self.inodes[*inode].clone(), links))
            })
            .collect()
    }
}

fn apply_to(storage: &dyn Storage, op: &NameOp) -> Result<(), ErrorKind> {
    let result = match *op {
        NameOp::Create(a) => storage.create(NAMES[a]).map(|_| ()),
        NameOp::Link(a, b) => storage.link(NAMES[a], NAMES[b]),
        NameOp::Rename(a, b) => storage.rename(NAMES[a], NAMES[b]),
        NameOp::Remove(a) => storage.remove(NAMES[a]),
        NameOp::Write(a, at, byte) => storage
            .open(NAMES[a])
            .and_then(|file| file.write_at(u64::from(at), &[byte])),
    };
    result.map_err(|e| e.kind())
}

/// Every name with its bytes and link count, read through the storage.
fn names_of(storage: &dyn Storage) -> BTreeMap<String, (Vec<u8>, u64)> {
    let mut all = BTreeMap::new();
    for name in NAMES {
        let Ok(file) = storage.open(name) else {
            continue;
        };
        let mut data = vec![0u8; file.len().unwrap() as usize];
        read_exact_at(file.as_ref(), 0, &mut data).unwrap();
        all.insert(name.to_string(), (data, file.link_count().unwrap()));
    }
    all
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random creates, links, renames, removes and writes give the same
    /// names, bytes, link counts and errors on the in-memory storage, on a
    /// real directory and in the model (names → inode → bytes).
    #[test]
    fn hard_links_match_the_model_and_the_real_file_system(
        ops in proptest::collection::vec(name_op(), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let real = RealStorage::new(dir.path()).unwrap();
        let mem = MemStorage::new();
        let mut model = LinkModel::default();
        for storage in [&real as &dyn Storage, &mem] {
            storage.create_dir("d").unwrap();
        }
        for op in &ops {
            let expected = model.apply(op);
            proptest::prop_assert_eq!(apply_to(&mem, op), expected, "mem: {:?}", op);
            proptest::prop_assert_eq!(apply_to(&real, op), expected, "real: {:?}", op);
            let want = model.snapshot();
            proptest::prop_assert_eq!(&names_of(&mem), &want, "mem after {:?}", op);
            proptest::prop_assert_eq!(&names_of(&real), &want, "real after {:?}", op);
        }
    }
}
