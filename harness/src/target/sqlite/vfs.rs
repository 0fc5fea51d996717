//! A SQLite VFS that counts syncs, so SQLite's fsyncs per commit are
//! measured, not guessed.
//!
//! The VFS named [`VFS_NAME`] is a copy of the default (`unix`) VFS whose
//! `xOpen` opens the file with the default VFS and then swaps the file's
//! method table for a copy whose `xSync` bumps a counter before calling the
//! original. WAL files (opened with `SQLITE_OPEN_WAL`) and all other files
//! (the database, journals) are counted apart. Every other method is the
//! default VFS's own, on the default VFS's own file structure.
//!
//! Not counted: syncs SQLite does not route through `xSync` (none in the
//! unix VFS; its directory fsync after creating a file happens inside the
//! first `xSync` of that file and is counted as part of it).
//!
//! The counters are process-wide; [`exclusive`] serialises measurements so
//! two benchmarks in one process (parallel tests) do not mix their counts.

use std::ffi::{CStr, c_int};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use rusqlite::ffi;

/// The name to open connections with (`Connection::open_with_flags_and_vfs`).
pub const VFS_NAME: &CStr = c"powercut-counting";

/// Syncs counted since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// `xSync` calls on WAL files.
    pub wal: u64,
    /// `xSync` calls on every other file (the database file at checkpoints).
    pub other: u64,
}

impl SyncCounts {
    /// The syncs between `earlier` and `self`.
    pub fn since(self, earlier: SyncCounts) -> SyncCounts {
        SyncCounts {
            wal: self.wal - earlier.wal,
            other: self.other - earlier.other,
        }
    }
}

type SyncFn = unsafe extern "C" fn(*mut ffi::sqlite3_file, c_int) -> c_int;

/// One counting copy of an original method table.
struct WrappedMethods {
    /// Address of the copy (stable: boxed and never freed).
    ours: usize,
    /// Address of the table it copies.
    original: usize,
    wal: bool,
    original_sync: SyncFn,
}

/// Distinct method tables are few (one per locking style and file kind);
/// a bound keeps a surprise from growing the list without end.
const WRAPPED_TABLES_MAX: usize = 16;

static WAL_SYNCS: AtomicU64 = AtomicU64::new(0);
static OTHER_SYNCS: AtomicU64 = AtomicU64::new(0);
static BASE_VFS: AtomicUsize = AtomicUsize::new(0);
static WRAPPED: Mutex<Vec<WrappedMethods>> = Mutex::new(Vec::new());
static REGISTERED: OnceLock<c_int> = OnceLock::new();
static MEASURING: Mutex<()> = Mutex::new(());

/// Registers the counting VFS (once per process). Returns the SQLite result
/// code of the registration on failure.
pub fn register() -> Result<(), c_int> {
    // SAFETY: `register_once` runs once, before any connection uses the VFS.
    let code = *REGISTERED.get_or_init(|| unsafe { register_once() });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(code)
    }
}

/// The counts so far.
pub fn sync_counts() -> SyncCounts {
    SyncCounts {
        wal: WAL_SYNCS.load(Ordering::Acquire),
        other: OTHER_SYNCS.load(Ordering::Acquire),
    }
}

/// Held for the length of one measurement that reads the counters.
pub fn exclusive() -> MutexGuard<'static, ()> {
    MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

unsafe fn register_once() -> c_int {
    // SAFETY: plain SQLite C API calls; the copied VFS is leaked, so it
    // lives as long as the process, as `sqlite3_vfs_register` requires.
    unsafe {
        let code = ffi::sqlite3_initialize();
        if code != ffi::SQLITE_OK {
            return code;
        }
        let base = ffi::sqlite3_vfs_find(std::ptr::null());
        if base.is_null() {
            return ffi::SQLITE_ERROR;
        }
        BASE_VFS.store(base as usize, Ordering::Release);
        let mut vfs: ffi::sqlite3_vfs = *base;
        vfs.zName = VFS_NAME.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.xOpen = Some(counting_open);
        ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
    }
}

unsafe extern "C" fn counting_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = BASE_VFS.load(Ordering::Acquire) as *mut ffi::sqlite3_vfs;
    assert!(!base.is_null(), "counting VFS used before registration");
    // SAFETY: `file` has room for the base VFS's file (same `szOsFile`);
    // the base VFS fills it in; we only replace its method table pointer
    // with a copy of that table.
    unsafe {
        let Some(open) = (*base).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let code = open(base, name, file, flags, out_flags);
        if code != ffi::SQLITE_OK || (*file).pMethods.is_null() {
            return code;
        }
        let wal = flags & ffi::SQLITE_OPEN_WAL != 0;
        match wrapped_methods((*file).pMethods, wal) {
            Some(ours) => {
                (*file).pMethods = ours;
                code
            }
            None => {
                // Close what we opened rather than run uncounted.
                if let Some(close) = (*(*file).pMethods).xClose {
                    close(file);
                }
                (*file).pMethods = std::ptr::null();
                ffi::SQLITE_ERROR
            }
        }
    }
}

/// The counting copy of `original` for this file kind, made on first use.
fn wrapped_methods(
    original: *const ffi::sqlite3_io_methods,
    wal: bool,
) -> Option<*const ffi::sqlite3_io_methods> {
    let mut tables = WRAPPED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = tables
        .iter()
        .find(|t| t.original == original as usize && t.wal == wal)
    {
        return Some(found.ours as *const _);
    }
    if tables.len() >= WRAPPED_TABLES_MAX {
        return None;
    }
    // SAFETY: `original` is the live, static method table the base VFS set.
    let mut copy: ffi::sqlite3_io_methods = unsafe { *original };
    let original_sync = copy.xSync?;
    copy.xSync = Some(if wal {
        counting_sync_wal
    } else {
        counting_sync_other
    });
    let ours: &'static ffi::sqlite3_io_methods = Box::leak(Box::new(copy));
    tables.push(WrappedMethods {
        ours: ours as *const _ as usize,
        original: original as usize,
        wal,
        original_sync,
    });
    Some(ours as *const _)
}

unsafe extern "C" fn counting_sync_wal(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    WAL_SYNCS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: called by SQLite on a file opened through `counting_open`.
    unsafe { forward_sync(file, flags) }
}

unsafe extern "C" fn counting_sync_other(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    OTHER_SYNCS.fetch_add(1, Ordering::AcqRel);
    // SAFETY: as above.
    unsafe { forward_sync(file, flags) }
}

unsafe fn forward_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: `file` is open and its method table is one of ours.
    let ours = unsafe { (*file).pMethods } as usize;
    let original_sync = {
        let tables = WRAPPED.lock().unwrap_or_else(|p| p.into_inner());
        tables
            .iter()
            .find(|t| t.ours == ours)
            .map(|t| t.original_sync)
    };
    match original_sync {
        // SAFETY: the base VFS's own sync on its own file structure.
        Some(sync) => unsafe { sync(file, flags) },
        None => ffi::SQLITE_ERROR,
    }
}
