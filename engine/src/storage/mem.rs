//! [`MemStorage`]: a directory tree held in memory.
//!
//! Every operation takes effect at once and there is no crash model here:
//! syncs are no-ops. The harness builds crash images elsewhere and hands them
//! to the engine as a `MemStorage` (see [`MemStorage::from_files`]); the
//! engine's own tests use it for speed.
//!
//! Hard links: a file (an inode) is shared by every name that
//! [`Storage::link`] gave it, and counts its names. [`MemStorage::snapshot`]
//! and [`MemStorage::from_tree`] speak of paths and contents only, so a
//! snapshot of two names of one file is two files with the same bytes.

use super::{DirEntry, Storage, StorageFile, StorageLock, check_path, split_path};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One file (an inode): its bytes and how many names it has.
#[derive(Debug)]
struct MemInode {
    data: RwLock<Vec<u8>>,
    names: AtomicU64,
}

type FileData = Arc<MemInode>;

impl MemInode {
    /// A file of one name holding `data`.
    fn named(data: Vec<u8>) -> FileData {
        Arc::new(MemInode {
            data: RwLock::new(data),
            names: AtomicU64::new(1),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<u8>> {
        self.data.read().expect("file lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<u8>> {
        self.data.write().expect("file lock")
    }

    fn add_name(&self) {
        self.names.fetch_add(1, Ordering::AcqRel);
    }

    /// One name fewer; the count never goes below zero.
    fn drop_name(&self) {
        let before = self.names.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "MemStorage: a file lost more names than it had");
    }
}

/// An in-memory directory tree. Clones share the same tree.
#[derive(Clone, Default)]
pub struct MemStorage {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tree: Mutex<Tree>,
    locked: Arc<AtomicBool>,
}

/// Files by path, and the subdirectories (the root is implied).
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, FileData>,
    dirs: BTreeSet<String>,
}

impl Tree {
    fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.is_dir(path)
    }

    /// Fails with `NotFound` unless the parent directory of `path` exists.
    fn check_parent(&self, path: &str) -> io::Result<()> {
        let (parent, _) = split_path(path);
        if self.is_dir(parent) {
            Ok(())
        } else {
            Err(not_found(parent))
        }
    }

    /// Adds every ancestor directory of `path`.
    fn add_parents(&mut self, path: &str) {
        let mut parent = split_path(path).0;
        while !parent.is_empty() {
            self.dirs.insert(parent.to_string());
            parent = split_path(parent).0;
        }
    }
}

impl MemStorage {
    /// An empty directory.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A directory holding exactly `files` (path → contents); the parent
    /// directories of each path exist.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> MemStorage {
        MemStorage::from_tree(files, &BTreeSet::new())
    }

    /// A directory holding exactly `files` (path → contents) and the
    /// directories `dirs` (with their parents, and those of each file).
    pub fn from_tree(files: BTreeMap<String, Vec<u8>>, dirs: &BTreeSet<String>) -> MemStorage {
        let storage = MemStorage::new();
        {
            let mut tree = storage.tree();
            for dir in dirs {
                check_path(dir).expect("MemStorage::from_tree: bad directory path");
                tree.add_parents(dir);
                tree.dirs.insert(dir.clone());
            }
            for (path, data) in files {
                check_path(&path).expect("MemStorage::from_tree: bad file path");
                tree.add_parents(&path);
                assert!(
                    !tree.dirs.contains(&path),
                    "{path:?} is a file and a directory"
                );
                tree.files.insert(path, MemInode::named(data));
            }
        }
        storage
    }

    /// A copy of every file's current contents (path → contents).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.tree()
            .files
            .iter()
            .map(|(name, data)| (name.clone(), data.read().clone()))
            .collect()
    }

    /// Every subdirectory's path (the root not included).
    pub fn dirs(&self) -> BTreeSet<String> {
        self.tree().dirs.clone()
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.inner
            .tree
            .lock()
            .expect("MemStorage directory lock poisoned")
    }
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tree = self.tree();
        f.debug_map()
            .entries(
                tree.files
                    .iter()
                    .map(|(name, data)| (name, data.read().len())),
            )
            .finish()
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file named {name:?}"))
}

fn exists(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, format!("{name:?} exists"))
}

impl Storage for MemStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_path(name)?;
        let mut tree = self.tree();
        tree.check_parent(name)?;
        if tree.exists(name) {
            return Err(exists(name));
        }
        let data = MemInode::named(Vec::new());
        tree.files.insert(name.to_string(), data.clone());
        Ok(Box::new(MemFile { data }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_path(name)?;
        let data = self
            .tree()
            .files
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        Ok(Box::new(MemFile { data }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut tree = self.tree();
        if tree.dirs.contains(from) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("directory {from:?} cannot be renamed"),
            ));
        }
        tree.check_parent(to)?;
        if tree.is_dir(to) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{to:?} is a directory"),
            ));
        }
        let source = tree.files.get(from).ok_or_else(|| not_found(from))?;
        if tree
            .files
            .get(to)
            .is_some_and(|target| Arc::ptr_eq(source, target))
        {
            // Two names of one file: rename(2) does nothing.
            return Ok(());
        }
        let data = tree.files.remove(from).expect("checked above");
        if let Some(replaced) = tree.files.insert(to.to_string(), data) {
            replaced.drop_name();
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_path(name)?;
        let data = self
            .tree()
            .files
            .remove(name)
            .ok_or_else(|| not_found(name))?;
        data.drop_name();
        Ok(())
    }

    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut tree = self.tree();
        let data = tree
            .files
            .get(from)
            .cloned()
            .ok_or_else(|| not_found(from))?;
        tree.check_parent(to)?;
        if tree.exists(to) {
            return Err(exists(to));
        }
        data.add_name();
        tree.files.insert(to.to_string(), data);
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self
            .tree()
            .files
            .keys()
            .filter(|path| !path.contains('/'))
            .cloned()
            .collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn create_dir(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        let mut tree = self.tree();
        tree.check_parent(path)?;
        if tree.exists(path) {
            return Err(exists(path));
        }
        tree.dirs.insert(path.to_string());
        Ok(())
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        let mut tree = self.tree();
        if !tree.dirs.contains(path) {
            return Err(not_found(path));
        }
        let inside = |p: &String| split_path(p).0 == path;
        if tree.files.keys().any(inside) || tree.dirs.iter().any(inside) {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("directory {path:?} is not empty"),
            ));
        }
        tree.dirs.remove(path);
        Ok(())
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let tree = self.tree();
        if !tree.is_dir(dir) {
            return Err(not_found(dir));
        }
        let entry = |path: &String, is_dir: bool| {
            let (parent, name) = split_path(path);
            (parent == dir).then(|| DirEntry {
                name: name.to_string(),
                is_dir,
            })
        };
        let mut entries: Vec<DirEntry> = tree
            .files
            .keys()
            .filter_map(|p| entry(p, false))
            .chain(tree.dirs.iter().filter_map(|p| entry(p, true)))
            .collect();
        entries.sort();
        Ok(entries)
    }

    fn sync_dir_at(&self, dir: &str) -> io::Result<()> {
        if self.tree().is_dir(dir) {
            Ok(())
        } else {
            Err(not_found(dir))
        }
    }

    fn lock(&self) -> io::Result<StorageLock> {
        let flag = self.inner.locked.clone();
        if flag.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked by another opener",
            ));
        }
        Ok(StorageLock::new(Box::new(MemLockGuard { flag })))
    }
}

struct MemLockGuard {
    flag: Arc<AtomicBool>,
}

impl Drop for MemLockGuard {
    fn drop(&mut self) {
        let was_locked = self.flag.swap(false, Ordering::AcqRel);
        assert!(was_locked, "MemStorage lock released twice");
    }
}

struct MemFile {
    data: FileData,
}

impl StorageFile for MemFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.data.read();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = start + bytes.len();
        let mut data = self.data.write();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.data.write().resize(len, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }

    fn link_count(&self) -> io::Result<u64> {
        Ok(self.data.names.load(Ordering::Acquire))
    }
}
