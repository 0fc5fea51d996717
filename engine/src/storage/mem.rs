//! [`MemStorage`]: a directory held in memory.
//!
//! Every operation takes effect at once and there is no crash model here:
//! syncs are no-ops. The harness builds crash images elsewhere and hands them
//! to the engine as a `MemStorage` (see [`MemStorage::from_files`]); the
//! engine's own tests use it for speed.

use super::{Storage, StorageFile, StorageLock, check_name};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

type FileData = Arc<RwLock<Vec<u8>>>;

/// An in-memory directory. Clones share the same directory.
#[derive(Clone, Default)]
pub struct MemStorage {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    files: Mutex<BTreeMap<String, FileData>>,
    locked: Arc<AtomicBool>,
}

impl MemStorage {
    /// An empty directory.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A directory holding exactly `files` (name → contents).
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> MemStorage {
        let storage = MemStorage::new();
        {
            let mut map = storage.files();
            for (name, data) in files {
                check_name(&name).expect("MemStorage::from_files: bad file name");
                map.insert(name, Arc::new(RwLock::new(data)));
            }
        }
        storage
    }

    /// A copy of every file's current contents (name → contents).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.files()
            .iter()
            .map(|(name, data)| (name.clone(), data.read().expect("file lock").clone()))
            .collect()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FileData>> {
        self.inner
            .files
            .lock()
            .expect("MemStorage directory lock poisoned")
    }
}

impl std::fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = self.files();
        f.debug_map()
            .entries(
                files
                    .iter()
                    .map(|(name, data)| (name, data.read().expect("file lock").len())),
            )
            .finish()
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file named {name:?}"))
}

impl Storage for MemStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_name(name)?;
        let mut files = self.files();
        if files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("file {name:?} exists"),
            ));
        }
        let data = FileData::default();
        files.insert(name.to_string(), data.clone());
        Ok(Box::new(MemFile { data }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        check_name(name)?;
        let data = self
            .files()
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))?;
        Ok(Box::new(MemFile { data }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_name(from)?;
        check_name(to)?;
        let mut files = self.files();
        let data = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_string(), data);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        self.files()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files().keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
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
        let data = self.data.read().expect("file lock");
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
        let mut data = self.data.write().expect("file lock");
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.data.write().expect("file lock").resize(len, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().expect("file lock").len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}
