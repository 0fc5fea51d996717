//! [`RecordingStorage`]: the storage the engine runs on inside a workload
//! child. It performs every call on an inner [`MemStorage`] (the live state,
//! what reads see) and records each mutation and sync, in order, in an
//! [`EventSink`]. Crash images are computed later from that record
//! ([`super::image`]); nothing here models a crash.
//!
//! Fault model of this layer (the only faults it injects itself):
//! - `fail_sync: Some(n)`: the n-th sync call (SyncData, SyncAll and SyncDir
//!   counted together from 0) returns EIO and is recorded with
//!   `failed: true`; the live state keeps the data (the page cache still
//!   holds it), and the image builder applies the Linux semantics (the
//!   pending changes it covered are never durable).
//! - `stop_at: Some(i)`: when the next event would get index `i` or later,
//!   the stop hook runs (once) before the operation is performed; if the
//!   hook returns, that operation and every later one fail with an error.
//! - A sink that overflowed: the operation whose event could not be kept has
//!   already changed the live state but fails; every later operation fails
//!   before it is performed. The trace stays a consistent prefix.
//!
//! Each operation and its record happen under one lock, so the trace order
//! is the order the live state saw (a sync can never be recorded before a
//! write it did not cover). Reads, `len`, `list`, `list_dir`, `open` and
//! `lock` are not recorded. A rename between two names of one file does
//! nothing (as `rename(2)`) and is recorded all the same; `link` is
//! recorded as `Link` with the file's id. Directories: `create_dir`, `remove_dir` and
//! `sync_dir_at` are recorded as `CreateDir`, `RemoveDir` and `SyncDir`; the
//! base's subdirectories need no event (they are durable).

use super::trace::{Event, EventSink, FileId, NOT_RECORDED};
use engine::storage::{DirEntry, MemStorage, Storage, StorageFile, StorageLock};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Faults the recording storage injects itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The sync call (counting SyncData, SyncAll and SyncDir from 0) that
    /// fails with EIO.
    pub fail_sync: Option<u64>,
    /// The event index at which the storage stops (see the module header).
    pub stop_at: Option<u64>,
}

/// Called with the index the next event would have got, before the
/// operation that reached `stop_at` is performed. The supervisor's hook tells
/// the parent and waits to be SIGKILLed.
pub type StopHook = Box<dyn Fn(u64) + Send + Sync>;

/// A [`Storage`] that records every mutation and sync. Clones share state.
#[derive(Clone)]
pub struct RecordingStorage {
    shared: Arc<Shared>,
}

struct Shared {
    live: MemStorage,
    sink: Arc<dyn EventSink>,
    plan: FaultPlan,
    stop_hook: Option<StopHook>,
    state: Mutex<State>,
}

struct State {
    /// The live directory: name → file id.
    names: BTreeMap<String, FileId>,
    next_file: FileId,
    syncs_seen: u64,
    /// The index at which the storage stopped, once it has.
    stopped_at: Option<u64>,
}

/// An operation's outcome and the event that records it.
struct Done<T> {
    result: io::Result<T>,
    event: Event,
}

impl Done<()> {
    fn ok(event: Event) -> Done<()> {
        Done {
            result: Ok(()),
            event,
        }
    }
}

impl RecordingStorage {
    /// Records operations on `live`, whose files get ids 0..n in path order
    /// (the image builder numbers the base image the same way).
    pub fn new(
        live: MemStorage,
        sink: Arc<dyn EventSink>,
        plan: FaultPlan,
        stop_hook: Option<StopHook>,
    ) -> RecordingStorage {
        assert!(
            plan.stop_at.is_none() || sink.next_index().is_some(),
            "a stop_at needs a sink that knows its next index"
        );
        let names: BTreeMap<String, FileId> = live
            .snapshot()
            .into_keys()
            .enumerate()
            .map(|(id, name)| (name, FileId::try_from(id).expect("file ids fit in u32")))
            .collect();
        let next_file = FileId::try_from(names.len()).expect("file ids fit in u32");
        let state = State {
            names,
            next_file,
            syncs_seen: 0,
            stopped_at: None,
        };
        let shared = Shared {
            live,
            sink,
            plan,
            stop_hook,
            state: Mutex::new(state),
        };
        RecordingStorage {
            shared: Arc::new(shared),
        }
    }

    /// Records operations on a directory holding exactly `base`.
    pub fn from_base(
        base: BTreeMap<String, Vec<u8>>,
        sink: Arc<dyn EventSink>,
        plan: FaultPlan,
    ) -> RecordingStorage {
        RecordingStorage::new(MemStorage::from_files(base), sink, plan, None)
    }

    /// The live state (every completed operation, durable or not).
    pub fn live(&self) -> &MemStorage {
        &self.shared.live
    }

    /// The index at which the storage stopped, if it has.
    pub fn stopped_at(&self) -> Option<u64> {
        self.shared.lock().stopped_at
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("RecordingStorage state lock poisoned")
    }

    /// Performs `op` under the lock and records its event.
    fn run<T>(&self, op: impl FnOnce(&mut State) -> io::Result<Done<T>>) -> io::Result<T> {
        let mut state = self.lock();
        self.may_proceed(&mut state)?;
        let done = op(&mut state)?;
        if self.sink.record(done.event) == NOT_RECORDED {
            return Err(trace_full());
        }
        done.result
    }

    fn may_proceed(&self, state: &mut State) -> io::Result<()> {
        if self.sink.overflowed() {
            return Err(trace_full());
        }
        let Some(stop_at) = self.plan.stop_at else {
            return Ok(());
        };
        let next = self
            .sink
            .next_index()
            .expect("checked in RecordingStorage::new");
        if next < stop_at {
            return Ok(());
        }
        if state.stopped_at.is_none() {
            state.stopped_at = Some(next);
            if let Some(hook) = &self.stop_hook {
                hook(next);
            }
        }
        Err(io::Error::other(format!(
            "powercut: storage stopped at operation index {next} (stop_at {stop_at})"
        )))
    }

    /// Counts a sync call; true if this one must fail.
    fn sync_fails(&self, state: &mut State) -> bool {
        let ordinal = state.syncs_seen;
        state.syncs_seen += 1;
        self.plan.fail_sync == Some(ordinal)
    }
}

fn trace_full() -> io::Error {
    io::Error::other("powercut: the trace is full (overflowed); the storage stopped")
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn name_mismatch(name: &str) -> io::Error {
    io::Error::other(format!(
        "powercut: recording storage lost track of {name:?} (live state changed behind it)"
    ))
}

impl Storage for RecordingStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let shared = &self.shared;
        shared.run(|state| {
            let inner = shared.live.create(name)?;
            let file = state.next_file;
            state.next_file = file.checked_add(1).expect("file ids exhausted");
            state.names.insert(name.to_string(), file);
            let handle: Box<dyn StorageFile> = Box::new(RecordingFile {
                inner,
                file,
                shared: shared.clone(),
            });
            Ok(Done {
                result: Ok(handle),
                event: Event::Create {
                    name: name.to_string(),
                    file,
                },
            })
        })
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let state = self.shared.lock();
        let inner = self.shared.live.open(name)?;
        let file = *state.names.get(name).ok_or_else(|| name_mismatch(name))?;
        Ok(Box::new(RecordingFile {
            inner,
            file,
            shared: self.shared.clone(),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.shared.run(|state| {
            let Some(&file) = state.names.get(from) else {
                // Not a file: the live state says why (no such file, a
                // directory), without changing.
                self.shared.live.rename(from, to)?;
                return Err(name_mismatch(from));
            };
            self.shared.live.rename(from, to)?;
            if state.names.get(to) != Some(&file) {
                state.names.remove(from);
                state.names.insert(to.to_string(), file);
            }
            Ok(Done::ok(Event::Rename {
                from: from.to_string(),
                to: to.to_string(),
                file,
            }))
        })
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.shared.run(|state| {
            self.shared.live.remove(name)?;
            let file = state
                .names
                .remove(name)
                .ok_or_else(|| name_mismatch(name))?;
            Ok(Done::ok(Event::Remove {
                name: name.to_string(),
                file,
            }))
        })
    }

    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        self.shared.run(|state| {
            self.shared.live.link(from, to)?;
            let file = *state.names.get(from).ok_or_else(|| name_mismatch(from))?;
            state.names.insert(to.to_string(), file);
            Ok(Done::ok(Event::Link {
                from: from.to_string(),
                to: to.to_string(),
                file,
            }))
        })
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.shared.live.list()
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.sync_dir_at("")
    }

    fn create_dir(&self, path: &str) -> io::Result<()> {
        self.shared.run(|_| {
            self.shared.live.create_dir(path)?;
            Ok(Done::ok(Event::CreateDir {
                path: path.to_string(),
            }))
        })
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        self.shared.run(|_| {
            self.shared.live.remove_dir(path)?;
            Ok(Done::ok(Event::RemoveDir {
                path: path.to_string(),
            }))
        })
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        self.shared.live.list_dir(dir)
    }

    fn sync_dir_at(&self, dir: &str) -> io::Result<()> {
        self.shared.run(|state| {
            self.shared.live.sync_dir_at(dir)?;
            let failed = self.shared.sync_fails(state);
            Ok(Done {
                result: if failed { Err(eio()) } else { Ok(()) },
                event: Event::SyncDir {
                    dir: dir.to_string(),
                    failed,
                },
            })
        })
    }

    fn lock(&self) -> io::Result<StorageLock> {
        self.shared.live.lock()
    }
}

/// An open file of a [`RecordingStorage`]; it keeps its file id (and keeps
/// working) after the file is renamed or removed.
struct RecordingFile {
    inner: Box<dyn StorageFile>,
    file: FileId,
    shared: Arc<Shared>,
}

impl RecordingFile {
    fn sync(&self, data_only: bool) -> io::Result<()> {
        self.shared.run(|state| {
            let failed = self.shared.sync_fails(state);
            let file = self.file;
            let result = match (failed, data_only) {
                (true, _) => Err(eio()),
                (false, true) => self.inner.sync_data(),
                (false, false) => self.inner.sync_all(),
            };
            let event = if data_only {
                Event::SyncData { file, failed }
            } else {
                Event::SyncAll { file, failed }
            };
            Ok(Done { result, event })
        })
    }
}

impl StorageFile for RecordingFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.shared.run(|_| {
            self.inner.write_at(offset, data)?;
            Ok(Done::ok(Event::Write {
                file: self.file,
                offset,
                data: data.to_vec(),
            }))
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.shared.run(|_| {
            self.inner.set_len(len)?;
            Ok(Done::ok(Event::SetLen {
                file: self.file,
                len,
            }))
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync(true)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(false)
    }

    fn link_count(&self) -> io::Result<u64> {
        self.inner.link_count()
    }
}
