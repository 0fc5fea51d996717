//! Helpers shared by the engine's integration tests.

#![allow(dead_code)]

use engine::storage::{MemStorage, Storage, StorageFile, StorageLock};
use engine::wal::parse_segment_name;
use engine::wal::record::{self, Kind};
use engine::{Config, Engine, FsyncPolicy, VirtualClock};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
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
/// It also keeps a log of the calls that order durability (syncs, renames,
/// removes), for tests of the order of operations.
pub struct FailingStorage {
    pub inner: MemStorage,
    /// Syncs left before the failing one; negative once it failed.
    pub countdown: Arc<AtomicI64>,
    pub events: Arc<Mutex<Vec<String>>>,
}

impl FailingStorage {
    pub fn new(inner: MemStorage, fail_at: i64) -> FailingStorage {
        FailingStorage {
            inner,
            countdown: Arc::new(AtomicI64::new(fail_at)),
            events: Arc::default(),
        }
    }

    pub fn take_events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn note(&self, event: String) {
        self.events.lock().unwrap().push(event);
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
    name: String,
    inner: Box<dyn StorageFile>,
    countdown: Arc<AtomicI64>,
    events: Arc<Mutex<Vec<String>>>,
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
    fn link_count(&self) -> io::Result<u64> {
        self.inner.link_count()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.events
            .lock()
            .unwrap()
            .push(format!("sync {}", self.name));
        judge(&self.countdown)?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.events
            .lock()
            .unwrap()
            .push(format!("sync {}", self.name));
        judge(&self.countdown)?;
        self.inner.sync_all()
    }
}

impl Storage for FailingStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FailingFile {
            name: name.to_string(),
            inner: self.inner.create(name)?,
            countdown: self.countdown.clone(),
            events: self.events.clone(),
        }))
    }
    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(FailingFile {
            name: name.to_string(),
            inner: self.inner.open(name)?,
            countdown: self.countdown.clone(),
            events: self.events.clone(),
        }))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.note(format!("rename {from} {to}"));
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.note(format!("remove {name}"));
        self.inner.remove(name)
    }
    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        self.note(format!("link {from} {to}"));
        self.inner.link(from, to)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.events.lock().unwrap().push("sync_dir".to_string());
        judge(&self.countdown)?;
        self.inner.sync_dir()
    }
    fn lock(&self) -> io::Result<StorageLock> {
        self.inner.lock()
    }
}

/// One record found in an image's WAL.
#[derive(Clone, Debug)]
pub struct Found {
    pub lsn: u64,
    pub kind: Kind,
    pub txn: u64,
    pub segment: String,
    pub offset: usize,
    pub len: usize,
}

/// Every valid record of every segment in `files`, in LSN order (scanning
/// each segment from its start to its first invalid record).
pub fn records(files: &BTreeMap<String, Vec<u8>>) -> Vec<Found> {
    let mut found = Vec::new();
    for (name, bytes) in files {
        let Some(start) = parse_segment_name(name) else {
            continue;
        };
        let mut offset = 0;
        while let Ok(rec) = record::decode(&bytes[offset..], start + offset as u64, true) {
            let len = rec.encoded_len();
            found.push(Found {
                lsn: rec.lsn,
                kind: rec.body.kind(),
                txn: rec.txn,
                segment: name.clone(),
                offset,
                len,
            });
            offset += len;
        }
    }
    found
}

/// `files` with the WAL cut at `lsn`: the segment holding it truncated
/// there, later segments removed.
pub fn cut_log(files: &BTreeMap<String, Vec<u8>>, at: &Found) -> BTreeMap<String, Vec<u8>> {
    let mut cut = files.clone();
    let start = parse_segment_name(&at.segment).unwrap();
    cut.retain(|name, _| parse_segment_name(name).is_none_or(|s| s <= start));
    cut.get_mut(&at.segment).unwrap().truncate(at.offset);
    cut
}
