//! The `powercut` SQLite VFS: every file operation SQLite makes goes to the
//! harness [`Storage`] a [`Mount`] names (the recording storage in a
//! workload child, a crash image in a verifier, a real directory in
//! `bench`).
//!
//! It behaves as SQLite's own unix VFS on Linux (`os_unix.c` of the bundled
//! SQLite), so that a verdict is about SQLite and not about this VFS; each
//! mirrored behaviour is listed, with the `os_unix.c` function it comes
//! from, in docs/design.md ("SQLite through a VFS"):
//! - `xSync` is a full sync of the file (`unixSync` → `full_fsync`, whose
//!   `fdatasync` is `fsync` in this build: no `HAVE_FDATASYNC`), and on the
//!   first sync of a main journal, super-journal or WAL opened with
//!   `SQLITE_OPEN_CREATE` it syncs the directory too (`unixOpen` sets
//!   `UNIXFILE_DIRSYNC`; `unixSync` clears it), ignoring a directory-sync
//!   error as unix does;
//! - `xDelete` removes the file and, when `dirSync` is set, syncs the
//!   directory, failing with `SQLITE_IOERR_DIR_FSYNC` (`unixDelete`);
//! - `SQLITE_OPEN_DELETEONCLOSE` removes the name right after opening
//!   (`unixOpen`);
//! - a short read zero-fills and returns `SQLITE_IOERR_SHORT_READ`
//!   (`unixRead`); a size of 1 reads as 0 (`unixFileSize`); `xTruncate`
//!   rounds up to the chunk size set by `SQLITE_FCNTL_CHUNK_SIZE`
//!   (`unixTruncate`);
//! - sector size 4096 and device characteristics
//!   `SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_SUBPAGE_READ`
//!   (`setDeviceCharacteristics`, `unixSectorSize`,
//!   `unixDeviceCharacteristics`);
//! - `xAccess(EXISTS)` is true only for a file of size > 0 (`unixAccess`).
//!
//! Not like unix, on purpose:
//! - locking is an in-process lock level per open file: a target holds one
//!   connection on its storage, so no other process or connection exists to
//!   exclude; `xCheckReservedLock` reports no other holder;
//! - no shared memory (`iVersion` 1 methods, no `xShmMap`): WAL mode works
//!   because the connection is in `locking_mode=EXCLUSIVE` first, when
//!   SQLite keeps the WAL index in heap memory;
//! - no temporary files (`temp_store=MEMORY`): an open without a name fails;
//! - no file grows past [`FILE_LEN_MAX`]: such a write or truncate fails
//!   with `SQLITE_FULL` where unix would make a sparse file (a corrupt
//!   header can ask for one);
//! - `xRandomness` is a fixed stream and `xCurrentTime` a fixed instant, so
//!   a case replays byte for byte (the target also seeds SQLite's PRNG with
//!   `SQLITE_TESTCTRL_PRNG_SEED` before each open); `xSleep` returns at
//!   once (one connection never waits for a lock).
//!
//! A mount can be *detached* ([`Mount::detach`]): the target was dropped
//! without a clean close, as a killed process; whatever SQLite then does
//! while closing never reaches the storage (mutations fail with an I/O
//! error, reads still work).
//!
//! Planted bugs ([`VfsBug`]), off unless a mount switches them on, show that
//! the harness catches a VFS that breaks the unix VFS's behaviour.
//!
//! Syncs are counted process-wide per file kind ([`sync_counts`]), so
//! `bench` measures SQLite's fsyncs per commit rather than guessing them.

use engine::storage::{Storage, StorageFile};
use rusqlite::ffi;
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The name connections open with.
pub const VFS_NAME: &CStr = c"powercut";

/// Longest path SQLite may hand the VFS (unix: `MAX_PATHNAME`).
pub const PATH_LEN_MAX: c_int = 512;

/// The sector size the unix VFS reports on Linux (`SQLITE_DEFAULT_SECTOR_SIZE`).
pub const SECTOR_SIZE: c_int = 4096;

/// Not in the bundled bindings (added in SQLite 3.48).
const SQLITE_IOCAP_SUBPAGE_READ: c_int = 0x0000_8000;

/// What the unix VFS reports on Linux by default.
pub const DEVICE_CHARACTERISTICS: c_int =
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE | SQLITE_IOCAP_SUBPAGE_READ;

/// Largest file the VFS lets SQLite grow. Unix would make a sparse file
/// when a corrupt journal or database header asks for a write gigabytes
/// past the end; the harness's storages hold files in memory, so such a
/// write fails with `SQLITE_FULL` (disk full) instead of aborting the
/// verifier on allocation. The harness's workloads stay far below it.
pub const FILE_LEN_MAX: u64 = 1 << 30;

/// Storages mounted at once at most (one per open target in a process).
pub const MOUNTS_MAX: usize = 1024;

/// A planted VFS bug: a real mistake a VFS can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VfsBug {
    /// `xSync` returns OK without syncing anything.
    SyncNoop,
    /// `xDelete` with `dirSync` skips the directory sync (a deleted
    /// rollback journal, SQLite's commit point in DELETE mode, may come
    /// back after a power cut).
    NoDeleteDirSync,
}

impl VfsBug {
    pub const ALL: [VfsBug; 2] = [VfsBug::SyncNoop, VfsBug::NoDeleteDirSync];

    pub fn name(self) -> &'static str {
        match self {
            VfsBug::SyncNoop => "vfs-sync-noop",
            VfsBug::NoDeleteDirSync => "vfs-no-delete-dirsync",
        }
    }

    fn bit(self) -> u8 {
        match self {
            VfsBug::SyncNoop => 1,
            VfsBug::NoDeleteDirSync => 2,
        }
    }
}

impl std::str::FromStr for VfsBug {
    type Err = String;

    fn from_str(text: &str) -> Result<VfsBug, String> {
        VfsBug::ALL
            .into_iter()
            .find(|bug| bug.name() == text)
            .ok_or_else(|| format!("unknown VFS bug `{text}`"))
    }
}

/// A set of planted VFS bugs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VfsBugSet(u8);

impl VfsBugSet {
    pub const NONE: VfsBugSet = VfsBugSet(0);

    pub fn with(self, bug: VfsBug) -> VfsBugSet {
        VfsBugSet(self.0 | bug.bit())
    }

    pub fn contains(self, bug: VfsBug) -> bool {
        self.0 & bug.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = VfsBug> {
        VfsBug::ALL
            .into_iter()
            .filter(move |bug| self.contains(*bug))
    }
}

/// Syncs counted since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// `xSync` calls on WAL files.
    pub wal: u64,
    /// `xSync` calls on every other file (the database, journals).
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

static WAL_SYNCS: AtomicU64 = AtomicU64::new(0);
static OTHER_SYNCS: AtomicU64 = AtomicU64::new(0);
static MEASURING: Mutex<()> = Mutex::new(());
static REGISTERED: OnceLock<c_int> = OnceLock::new();
static NEXT_MOUNT: AtomicU64 = AtomicU64::new(1);

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

/// What a mounted storage shares with its open files.
struct MountShared {
    storage: Arc<dyn Storage>,
    bugs: VfsBugSet,
    /// Set when the target was dropped without a clean close.
    detached: AtomicBool,
}

fn mounts() -> MutexGuard<'static, BTreeMap<u64, Arc<MountShared>>> {
    static MOUNTS: Mutex<BTreeMap<u64, Arc<MountShared>>> = Mutex::new(BTreeMap::new());
    MOUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A [`Storage`] made reachable to SQLite under a path prefix, for as long
/// as the mount lives.
pub struct Mount {
    id: u64,
    shared: Arc<MountShared>,
}

impl Mount {
    /// Mounts `storage` with `bugs` planted; registers the VFS on first use.
    pub fn new(storage: Arc<dyn Storage>, bugs: VfsBugSet) -> io::Result<Mount> {
        register().map_err(|code| {
            io::Error::other(format!("cannot register the SQLite VFS (code {code})"))
        })?;
        let id = NEXT_MOUNT.fetch_add(1, Ordering::AcqRel);
        let shared = Arc::new(MountShared {
            storage,
            bugs,
            detached: AtomicBool::new(false),
        });
        let mut table = mounts();
        if table.len() >= MOUNTS_MAX {
            return Err(io::Error::other("too many SQLite storages mounted at once"));
        }
        table.insert(id, shared.clone());
        Ok(Mount { id, shared })
    }

    /// The path of file `name` (a plain name) on this mount.
    pub fn path(&self, name: &str) -> String {
        format!("/powercut-{}/{name}", self.id)
    }

    /// The mounted storage.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.shared.storage.clone()
    }

    /// From now on nothing SQLite does reaches the storage (the process
    /// "died"): mutations fail, reads still work.
    pub fn detach(&self) {
        self.shared.detached.store(true, Ordering::Release);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        mounts().remove(&self.id);
    }
}

/// Splits `/powercut-ID/NAME` into the mount and the file name.
fn resolve(path: &str) -> Option<(Arc<MountShared>, String)> {
    let rest = path.strip_prefix("/powercut-")?;
    let (id, name) = rest.split_once('/')?;
    let id: u64 = id.parse().ok()?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let shared = mounts().get(&id)?.clone();
    Some((shared, name.to_string()))
}

/// The VFS's file structure: SQLite allocates `szOsFile` bytes and the VFS
/// fills them in; `state` owns everything else.
#[repr(C)]
struct VfsFile {
    base: ffi::sqlite3_file,
    state: *mut FileState,
}

/// Which of SQLite's files this is (for the sync counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Wal,
    Other,
}

struct FileState {
    mount: Arc<MountShared>,
    file: Box<dyn StorageFile>,
    kind: FileKind,
    /// `UNIXFILE_DIRSYNC`: sync the directory at the first sync.
    dir_sync_pending: bool,
    /// `UNIXFILE_PSOW`, settable by `SQLITE_FCNTL_POWERSAFE_OVERWRITE`.
    powersafe_overwrite: bool,
    /// `UNIXFILE_PERSIST_WAL`, settable by `SQLITE_FCNTL_PERSIST_WAL`.
    persist_wal: bool,
    /// `szChunk` (`SQLITE_FCNTL_CHUNK_SIZE`); 0: none.
    chunk_size: i64,
    lock: c_int,
}

impl FileState {
    fn writable(&self) -> bool {
        !self.mount.detached.load(Ordering::Acquire)
    }
}

/// The state of an open file.
///
/// # Safety
/// `file` must be a file this VFS opened successfully and not yet closed.
unsafe fn state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut FileState {
    // SAFETY: per the contract, `file` is a `VfsFile` whose `state` is a
    // live box owned by it; SQLite never calls one file from two threads
    // at once.
    unsafe { &mut *(*file.cast::<VfsFile>()).state }
}

/// Registers the VFS (once per process). Returns the SQLite result code of
/// the registration on failure.
pub fn register() -> Result<(), c_int> {
    // SAFETY: `register_once` runs once, before any connection uses the VFS.
    let code = *REGISTERED.get_or_init(|| unsafe { register_once() });
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(code)
    }
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe fn register_once() -> c_int {
    // SAFETY: plain SQLite C API calls; the VFS is leaked, so it lives as
    // long as the process, as `sqlite3_vfs_register` requires.
    unsafe {
        let code = ffi::sqlite3_initialize();
        if code != ffi::SQLITE_OK {
            return code;
        }
        let vfs = ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: std::mem::size_of::<VfsFile>() as c_int,
            mxPathname: PATH_LEN_MAX,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        };
        ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
    }
}

/// A C string argument as text (`None`: null or not UTF-8).
unsafe fn text<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes NUL-terminated strings.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `file` has room for a `VfsFile` (`szOsFile`); until
    // `pMethods` is set SQLite will not call its methods.
    unsafe {
        (*file).pMethods = std::ptr::null();
        // No name: a temporary file, which `temp_store=MEMORY` avoids.
        let Some((mount, name)) = text(name).and_then(resolve) else {
            return ffi::SQLITE_CANTOPEN;
        };
        let kind_bits = flags & 0x0FFF00;
        let create = flags & ffi::SQLITE_OPEN_CREATE != 0;
        let opened = match mount.storage.open(&name) {
            Ok(handle) => Ok(handle),
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
                if mount.detached.load(Ordering::Acquire) {
                    return ffi::SQLITE_CANTOPEN;
                }
                mount.storage.create(&name)
            }
            Err(error) => Err(error),
        };
        let Ok(handle) = opened else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0 && mount.storage.remove(&name).is_err() {
            return ffi::SQLITE_CANTOPEN;
        }
        // unixOpen: isNewJrnl → UNIXFILE_DIRSYNC.
        let new_journal = create
            && matches!(
                kind_bits,
                ffi::SQLITE_OPEN_SUPER_JOURNAL
                    | ffi::SQLITE_OPEN_MAIN_JOURNAL
                    | ffi::SQLITE_OPEN_WAL
            );
        let state = Box::new(FileState {
            mount,
            file: handle,
            kind: if kind_bits == ffi::SQLITE_OPEN_WAL {
                FileKind::Wal
            } else {
                FileKind::Other
            },
            dir_sync_pending: new_journal,
            powersafe_overwrite: true,
            persist_wal: false,
            chunk_size: 0,
            lock: ffi::SQLITE_LOCK_NONE,
        });
        let ours = file.cast::<VfsFile>();
        (*ours).state = Box::into_raw(state);
        (*file).pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once; the box is ours.
    unsafe {
        let ours = file.cast::<VfsFile>();
        drop(Box::from_raw((*ours).state));
        (*ours).state = std::ptr::null_mut();
        (*file).pMethods = std::ptr::null();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: an open file; `buf` holds `amount` bytes.
    let (state, buf) = unsafe {
        (
            state(file),
            std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount as usize),
        )
    };
    assert!(offset >= 0 && amount > 0, "SQLite reads a positive range");
    let mut done = 0;
    while done < buf.len() {
        match state
            .file
            .read_at(offset as u64 + done as u64, &mut buf[done..])
        {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(_) => return ffi::SQLITE_IOERR_READ,
        }
    }
    if done == buf.len() {
        ffi::SQLITE_OK
    } else {
        // unixRead: unread bytes must be zero-filled.
        buf[done..].fill(0);
        ffi::SQLITE_IOERR_SHORT_READ
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: an open file; `buf` holds `amount` bytes.
    let (state, data) = unsafe {
        (
            state(file),
            std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize),
        )
    };
    assert!(offset >= 0 && amount > 0, "SQLite writes a positive range");
    if !state.writable() {
        return ffi::SQLITE_IOERR_WRITE;
    }
    if offset as u64 + data.len() as u64 > FILE_LEN_MAX {
        return ffi::SQLITE_FULL;
    }
    match state.file.write_at(offset as u64, data) {
        Ok(()) => ffi::SQLITE_OK,
        Err(_) => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: an open file.
    let state = unsafe { state(file) };
    if !state.writable() {
        return ffi::SQLITE_IOERR_TRUNCATE;
    }
    let mut size = size.max(0);
    if state.chunk_size > 0 {
        // unixTruncate: a whole number of chunks.
        size = (size + state.chunk_size - 1) / state.chunk_size * state.chunk_size;
    }
    if size as u64 > FILE_LEN_MAX {
        return ffi::SQLITE_FULL;
    }
    match state.file.set_len(size as u64) {
        Ok(()) => ffi::SQLITE_OK,
        Err(_) => ffi::SQLITE_IOERR_TRUNCATE,
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: an open file.
    let state = unsafe { state(file) };
    match state.kind {
        FileKind::Wal => WAL_SYNCS.fetch_add(1, Ordering::AcqRel),
        FileKind::Other => OTHER_SYNCS.fetch_add(1, Ordering::AcqRel),
    };
    if !state.writable() {
        return ffi::SQLITE_IOERR_FSYNC;
    }
    if state.mount.bugs.contains(VfsBug::SyncNoop) {
        return ffi::SQLITE_OK;
    }
    // full_fsync: `fdatasync` is `fsync` in this build, whatever the
    // SQLITE_SYNC_DATAONLY flag says.
    if state.file.sync_all().is_err() {
        return ffi::SQLITE_IOERR_FSYNC;
    }
    if state.dir_sync_pending {
        // unixSync: once; a failed directory sync is ignored.
        let _ = state.mount.storage.sync_dir();
        state.dir_sync_pending = false;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: an open file; `size` is writable.
    unsafe {
        match state(file).file.len() {
            Ok(len) => {
                // unixFileSize: 1 byte reads as 0 (ticket #3260).
                *size = if len == 1 { 0 } else { len as i64 };
                ffi::SQLITE_OK
            }
            Err(_) => ffi::SQLITE_IOERR_FSTAT,
        }
    }
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let state = unsafe { state(file) };
    state.lock = state.lock.max(level);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let state = unsafe { state(file) };
    state.lock = state.lock.min(level);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // One connection per storage: no other holder exists.
    // SAFETY: `out` is writable.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: an open file; `arg` is what `op` documents.
    unsafe {
        let state = state(file);
        match op {
            ffi::SQLITE_FCNTL_LOCKSTATE => {
                *arg.cast::<c_int>() = state.lock;
                ffi::SQLITE_OK
            }
            ffi::SQLITE_FCNTL_CHUNK_SIZE => {
                state.chunk_size = i64::from(*arg.cast::<c_int>());
                ffi::SQLITE_OK
            }
            // unixFileControl → fcntlSizeHint: grows the file only when a
            // chunk size is set; SQLite sets none here.
            ffi::SQLITE_FCNTL_SIZE_HINT if state.chunk_size == 0 => ffi::SQLITE_OK,
            ffi::SQLITE_FCNTL_PERSIST_WAL => {
                mode_bit(&mut state.persist_wal, arg.cast::<c_int>());
                ffi::SQLITE_OK
            }
            ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE => {
                mode_bit(&mut state.powersafe_overwrite, arg.cast::<c_int>());
                ffi::SQLITE_OK
            }
            ffi::SQLITE_FCNTL_VFSNAME => {
                *arg.cast::<*mut c_char>() =
                    ffi::sqlite3_mprintf(c"%s".as_ptr(), VFS_NAME.as_ptr());
                ffi::SQLITE_OK
            }
            ffi::SQLITE_FCNTL_HAS_MOVED => {
                *arg.cast::<c_int>() = 0;
                ffi::SQLITE_OK
            }
            _ => ffi::SQLITE_NOTFOUND,
        }
    }
}

/// unixModeBit: a negative argument reads the bit, otherwise sets it.
///
/// # Safety
/// `arg` points to a writable `int`.
unsafe fn mode_bit(bit: &mut bool, arg: *mut c_int) {
    // SAFETY: per the contract.
    unsafe {
        if *arg < 0 {
            *arg = c_int::from(*bit);
        } else {
            *bit = *arg != 0;
        }
    }
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    SECTOR_SIZE
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open file.
    let state = unsafe { state(file) };
    if state.powersafe_overwrite {
        DEVICE_CHARACTERISTICS
    } else {
        SQLITE_IOCAP_SUBPAGE_READ
    }
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    dir_sync: c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated path.
    let Some((mount, name)) = (unsafe { text(name) }).and_then(resolve) else {
        return ffi::SQLITE_IOERR_DELETE;
    };
    if mount.detached.load(Ordering::Acquire) {
        return ffi::SQLITE_IOERR_DELETE;
    }
    match mount.storage.remove(&name) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return ffi::SQLITE_IOERR_DELETE_NOENT;
        }
        Err(_) => return ffi::SQLITE_IOERR_DELETE,
    }
    if dir_sync & 1 != 0
        && !mount.bugs.contains(VfsBug::NoDeleteDirSync)
        && mount.storage.sync_dir().is_err()
    {
        return ffi::SQLITE_IOERR_DIR_FSYNC;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated path and a writable `out`.
    unsafe {
        let found = text(name)
            .and_then(resolve)
            .and_then(|(mount, name)| mount.storage.open(&name).ok());
        *out = match (flags, found) {
            (_, None) => 0,
            // unixAccess: a regular file exists only if it is not empty.
            (ffi::SQLITE_ACCESS_EXISTS, Some(file)) => c_int::from(file.len().unwrap_or(0) > 0),
            (_, Some(_)) => 1,
        };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    out_len: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is NUL-terminated; `out` holds `out_len` bytes.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > out_len as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_dl_open(_vfs: *mut ffi::sqlite3_vfs, _name: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C" fn x_dl_error(_vfs: *mut ffi::sqlite3_vfs, len: c_int, out: *mut c_char) {
    const MESSAGE: &[u8] = b"extensions are not loaded by the powercut VFS\0";
    if len > 0 {
        let n = MESSAGE.len().min(len as usize);
        // SAFETY: `out` holds `len` bytes; the copy ends with a NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(MESSAGE.as_ptr().cast::<c_char>(), out, n);
            *out.add(n - 1) = 0;
        }
    }
}

unsafe extern "C" fn x_dl_sym(
    _vfs: *mut ffi::sqlite3_vfs,
    _handle: *mut c_void,
    _symbol: *const c_char,
) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)> {
    None
}

unsafe extern "C" fn x_dl_close(_vfs: *mut ffi::sqlite3_vfs, _handle: *mut c_void) {}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    len: c_int,
    out: *mut c_char,
) -> c_int {
    // A fixed stream: the same bytes every time (replays are byte-identical).
    let mut z: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..len.max(0) as usize {
        z = z
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // SAFETY: `out` holds `len` bytes.
        unsafe { *out.add(i) = (z >> 56) as c_char };
    }
    len
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, microseconds: c_int) -> c_int {
    microseconds
}

/// 2026-01-01 00:00 UTC as a Julian day number × 86 400 000 (ms).
const FIXED_NOW_JULIAN_MS: i64 = 212_633_985_600_000;

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: `out` is writable.
    unsafe { *out = FIXED_NOW_JULIAN_MS as f64 / 86_400_000.0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    // SAFETY: `out` is writable.
    unsafe { *out = FIXED_NOW_JULIAN_MS };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _len: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}
