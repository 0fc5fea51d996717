//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use engine::storage::{MemStorage, Storage, StorageFile, StorageLock};
use engine::{Config, Engine, FsyncPolicy, VirtualClock};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A small geometry: forces eviction (STEAL) and segment rotation.
pub fn small_config(policy: FsyncPolicy) -> Config {
    Config {
        policy,
        page_size: 1024,
        page_count: 16,
        pool_pages: 4,
        segment_size: 16 << 10,
        checkpoint_wal_bytes: 0,
        key_len_max: 32,
        value_len_max: 200,
        ..Config::default()
    }
}

pub fn open(storage: &MemStorage, config: &Config) -> Engine {
    Engine::open(
        Arc::new(storage.clone()),
        config.clone(),
        Arc::new(VirtualClock::new(0)),
    )
    .expect("open")
}

/// Opens an engine on a copy of `files`.
pub fn open_image(files: &BTreeMap<String, Vec<u8>>, config: &Config) -> (MemStorage, Engine) {
    let storage = MemStorage::from_files(files.clone());
    let engine = open(&storage, config);
    (storage, engine)
}

pub fn state(engine: &Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
    engine.scan().expect("scan").into_iter().collect()
}

pub fn put_commit(engine: &Engine, key: &[u8], value: &[u8]) {
    let txn = engine.begin().unwrap();
    engine.put(txn, key, value).unwrap();
    engine.commit(txn).unwrap();
}

/// A storage wrapper that fails the n-th sync (0-based, counting file and
/// directory syncs) with EIO, and every sync after it if `sticky`.
pub struct FailingStorage {
    pub inner: MemStorage,
    /// Syncs left before the failing one; negative once it failed.
    pub countdown: Arc<AtomicI64>,
}

impl FailingStorage {
    pub fn new(inner: MemStorage, fail_at: i64) -> FailingStorage {
        FailingStorage {
            inner,
            countdown: Arc::new(AtomicI64::new(fail_at)),
        }
    }
}

fn judge(countdown: &AtomicI64) -> io::Result<()> {
    if countdown.fetch_sub(1, Ordering::AcqRel) == 0 {
        Err(io::Error::other("injected EIO"))
    } else {
        Ok(())
    }
}

struct FailingFile {
    inner: Box<dyn StorageFile>,
    countdown: Arc<AtomicI64>,
}

impl StorageFile for FailingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn sync_data(&self) -> io::Result<()> {
        judge(&self.countdown)?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        judge(&self.countdown)?;
        self.inner.sync_all()
    }
}

impl Storage for FailingStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FailingFile {
            inner: self.inner.create(name)?,
            countdown: self.countdown.clone(),
        }))
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FailingFile {
            inner: self.inner.open(name)?,
            countdown: self.countdown.clone(),
        }))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        judge(&self.countdown)?;
        self.inner.sync_dir()
    }
    fn lock(&self) -> io::Result<StorageLock> {
        self.inner.lock()
    }
}
