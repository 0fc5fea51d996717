//! A FUSE file system served from a [`Storage`]: the data directory of a
//! process target.
//!
//! During the workload the storage is the harness's recording storage, so
//! every change the program makes to its files lands in the trace in the
//! order the kernel delivers it; during verification it is a crash image.
//! The mapping is one to one:
//!
//! | system call (as FUSE delivers it) | storage call |
//! |---|---|
//! | `creat`/`open(O_CREAT)`, `mknod` of a regular file | `create` |
//! | `mkdir` / `rmdir` | `create_dir` / `remove_dir` |
//! | `write` | `write_at` (one per FUSE write: no write-back caching) |
//! | `truncate`/`ftruncate`, `open(O_TRUNC)` | `set_len` |
//! | `fallocate` (mode 0) growing the file | `set_len` |
//! | `fallocate(PUNCH_HOLE|KEEP_SIZE)` | `write_at` of zeros |
//! | `fsync` / `fdatasync` | `sync_all` / `sync_data` |
//! | `fsync` of a directory | `sync_dir_at` |
//! | `rename` (also `RENAME_NOREPLACE`) | `rename` |
//! | `unlink` | `remove` |
//! | `link` | `link` |
//!
//! The kernel is not asked for write-back caching (fuser does not request
//! it), so a `write()` reaches the storage before it returns to the program;
//! `direct_io` stays off so shared `mmap` works (its pages reach the storage
//! when the kernel writes them back). One thread serves the requests, so the
//! storage sees them one at a time, in order.
//!
//! Hard links: a name made by `link` gets the inode number of its source,
//! and `getattr` reports the storage's link count. Names that were linked
//! before this mount started (or in an image) get inode numbers of their
//! own; they still reach the same bytes through the storage.
//!
//! Not supported (the program sees an error): links to a directory
//! (EPERM), renaming a directory (EXDEV),
//! `RENAME_EXCHANGE` (EINVAL), symbolic links and special files (EPERM),
//! `fallocate` modes other than the two above (EOPNOTSUPP). Permissions,
//! owners and times are not kept: files are 0644, directories 0755, owned
//! by the mounting user (or as an [`Owner`] given to [`Mount::owned_by`]
//! says), and every time is the mount's start.
//!
//! Writes after a kill: [`FsControl::mark_killed`] tells the file system
//! that the program was killed; every change that still arrives after it is
//! counted ([`FsControl::late_changes`]) and performed, so the supervisor
//! can report it rather than drop it silently.

use engine::storage::{DirEntry, Storage, StorageFile, check_name, split_path};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes and names. Every change goes
/// through this mount, so the kernel's caches stay right; a short time
/// bounds the harm if not.
const TTL: Duration = Duration::from_secs(1);
/// The largest read the file system answers at once.
const READ_BYTES_MAX: u32 = 1 << 20;
/// The most files open at once through one mount.
pub const OPEN_FILES_MAX: usize = 4096;
/// The most inodes the mount remembers (paths seen by lookups and creates).
pub const INODES_MAX: usize = 1 << 20;
const BLOCK_SIZE: u32 = 4096;

/// Shared switches and counters between the file system and its owner.
#[derive(Debug, Default)]
pub struct FsControl {
    killed: AtomicBool,
    late_changes: AtomicU64,
    changes: AtomicU64,
}

impl FsControl {
    /// From now on, every change that arrives is counted as late.
    pub fn mark_killed(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Changes (writes, truncations, creates, renames, removes, syncs) that
    /// arrived after [`FsControl::mark_killed`].
    pub fn late_changes(&self) -> u64 {
        self.late_changes.load(Ordering::SeqCst)
    }

    /// Every change served.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    fn count_change(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if self.killed.load(Ordering::SeqCst) {
            self.late_changes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What an inode is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inode {
    /// Its names known to this mount (several after `link`); empty once
    /// every one was unlinked (open handles still work).
    paths: Vec<String>,
    is_dir: bool,
}

struct Tables {
    inodes: HashMap<u64, Inode>,
    by_path: BTreeMap<String, u64>,
    next_inode: u64,
    handles: HashMap<u64, Arc<dyn StorageFile>>,
    next_handle: u64,
}

/// The file system: a [`Storage`] seen through FUSE.
pub struct StorageFs {
    storage: Arc<dyn Storage>,
    control: Arc<FsControl>,
    tables: Mutex<Tables>,
    uid: u32,
    gid: u32,
    /// Permission bits of directories and files.
    dir_perm: u16,
    file_perm: u16,
    started: SystemTime,
}

/// Who the mount says owns every file, and with which permissions: a
/// program that checks its data directory (PostgreSQL wants it owned by
/// its own uid, mode 0700) is served what it checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub dir_perm: u16,
    pub file_perm: u16,
}

impl StorageFs {
    pub fn new(storage: Arc<dyn Storage>, control: Arc<FsControl>) -> StorageFs {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let owner = Owner {
            uid,
            gid,
            dir_perm: 0o755,
            file_perm: 0o644,
        };
        StorageFs::owned_by(storage, control, owner)
    }

    /// As [`StorageFs::new`], every file owned by `owner`.
    pub fn owned_by(storage: Arc<dyn Storage>, control: Arc<FsControl>, owner: Owner) -> StorageFs {
        let root = Inode {
            paths: vec![String::new()],
            is_dir: true,
        };
        let tables = Tables {
            inodes: HashMap::from([(INodeNo::ROOT.0, root)]),
            by_path: BTreeMap::from([(String::new(), INodeNo::ROOT.0)]),
            next_inode: INodeNo::ROOT.0 + 1,
            handles: HashMap::new(),
            next_handle: 1,
        };
        StorageFs {
            storage,
            control,
            tables: Mutex::new(tables),
            uid: owner.uid,
            gid: owner.gid,
            dir_perm: owner.dir_perm,
            file_perm: owner.file_perm,
            started: SystemTime::now(),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().expect("StorageFs tables poisoned")
    }

    fn path_of(&self, ino: INodeNo) -> Result<(String, bool), Errno> {
        let tables = self.tables();
        let inode = tables.inodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        let path = inode.paths.first().cloned().ok_or(Errno::ENOENT)?;
        Ok((path, inode.is_dir))
    }

    /// The path of `name` inside directory `parent`.
    fn child_path(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let (dir, is_dir) = self.path_of(parent)?;
        if !is_dir {
            return Err(Errno::ENOTDIR);
        }
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        check_name(name).map_err(|_| Errno::EINVAL)?;
        Ok(if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        })
    }

    /// The inode for `path` (a new one if unseen).
    fn inode_for(&self, path: &str, is_dir: bool) -> Result<u64, Errno> {
        let mut tables = self.tables();
        if let Some(&ino) = tables.by_path.get(path) {
            let inode = tables
                .inodes
                .get_mut(&ino)
                .expect("by_path and inodes agree");
            inode.is_dir = is_dir;
            return Ok(ino);
        }
        if tables.inodes.len() >= INODES_MAX {
            return Err(Errno::ENOSPC);
        }
        let ino = tables.next_inode;
        tables.next_inode += 1;
        tables.by_path.insert(path.to_string(), ino);
        let inode = Inode {
            paths: vec![path.to_string()],
            is_dir,
        };
        tables.inodes.insert(ino, inode);
        Ok(ino)
    }

    /// Forgets the name `path` (its inode lives on under its other names
    /// and for open handles).
    fn unlink_path(&self, path: &str) {
        forget_name(&mut self.tables(), path);
    }

    /// Whether `path` is a directory, a file, or absent.
    fn kind_of(&self, path: &str) -> Result<Option<bool>, Errno> {
        if path.is_empty() {
            return Ok(Some(true));
        }
        let (dir, name) = split_path(path);
        let entries = self.storage.list_dir(dir).map_err(errno)?;
        Ok(find(&entries, name).map(|entry| entry.is_dir))
    }

    /// The attributes of an inode; `links` is a file's link count
    /// (ignored for a directory).
    fn attr(&self, ino: u64, is_dir: bool, size: u64, links: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if is_dir {
                self.dir_perm
            } else {
                self.file_perm
            },
            nlink: if is_dir {
                2
            } else {
                u32::try_from(links).unwrap_or(u32::MAX)
            },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    /// The attributes of `path` (looked up in the storage).
    fn attr_of_path(&self, path: &str) -> Result<FileAttr, Errno> {
        let is_dir = self.kind_of(path)?.ok_or(Errno::ENOENT)?;
        let (size, links) = if is_dir {
            (0, 2)
        } else {
            let file = self.storage.open(path).map_err(errno)?;
            (
                file.len().map_err(errno)?,
                file.link_count().map_err(errno)?,
            )
        };
        let ino = self.inode_for(path, is_dir)?;
        Ok(self.attr(ino, is_dir, size, links))
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<dyn StorageFile>, Errno> {
        self.tables()
            .handles
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    fn add_handle(&self, file: Box<dyn StorageFile>) -> Result<FileHandle, Errno> {
        let mut tables = self.tables();
        if tables.handles.len() >= OPEN_FILES_MAX {
            return Err(Errno::ENFILE);
        }
        let fh = tables.next_handle;
        tables.next_handle += 1;
        tables.handles.insert(fh, Arc::from(file));
        Ok(FileHandle(fh))
    }

    fn create_file(&self, parent: INodeNo, name: &OsStr) -> Result<(FileAttr, FileHandle), Errno> {
        let path = self.child_path(parent, name)?;
        self.control.count_change();
        let file = self.storage.create(&path).map_err(errno)?;
        let ino = self.inode_for(&path, false)?;
        let fh = self.add_handle(file)?;
        Ok((self.attr(ino, false, 0, 1), fh))
    }

    fn do_setattr(
        &self,
        ino: INodeNo,
        size: Option<u64>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let (path, is_dir) = {
            let tables = self.tables();
            let inode = tables.inodes.get(&ino.0).ok_or(Errno::ENOENT)?;
            (inode.paths.first().cloned(), inode.is_dir)
        };
        if is_dir {
            if size.is_some() {
                return Err(Errno::EISDIR);
            }
            return Ok(self.attr(ino.0, true, 0, 2));
        }
        let file = match (fh, &path) {
            (Some(fh), _) => self.handle(fh)?,
            (None, Some(path)) => Arc::from(self.storage.open(path).map_err(errno)?),
            (None, None) => return Err(Errno::ENOENT),
        };
        if let Some(size) = size {
            self.control.count_change();
            file.set_len(size).map_err(errno)?;
        }
        let len = file.len().map_err(errno)?;
        Ok(self.attr(ino.0, false, len, file.link_count().map_err(errno)?))
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.child_path(parent, name)?;
        let to = self.child_path(newparent, newname)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        match self.kind_of(&from)? {
            None => return Err(Errno::ENOENT),
            Some(true) => return Err(Errno::EXDEV),
            Some(false) => {}
        }
        match self.kind_of(&to)? {
            Some(_) if flags.contains(RenameFlags::RENAME_NOREPLACE) => return Err(Errno::EEXIST),
            Some(true) => return Err(Errno::EISDIR),
            _ => {}
        }
        self.control.count_change();
        self.storage.rename(&from, &to).map_err(errno)?;
        let mut tables = self.tables();
        let same_inode = tables
            .by_path
            .get(&from)
            .is_some_and(|ino| tables.by_path.get(&to) == Some(ino));
        if same_inode {
            // Two names of one inode: rename(2) does nothing.
            return Ok(());
        }
        forget_name(&mut tables, &to);
        if let Some(ino) = forget_name(&mut tables, &from) {
            tables.by_path.insert(to.clone(), ino);
            let inode = tables
                .inodes
                .get_mut(&ino)
                .expect("by_path and inodes agree");
            inode.paths.push(to);
        }
        Ok(())
    }

    /// `link`: the file of inode `ino` gets the name `newname` in
    /// `newparent`, under the same inode number.
    fn do_link(
        &self,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Result<FileAttr, Errno> {
        let (from, is_dir) = self.path_of(ino)?;
        if is_dir {
            return Err(Errno::EPERM);
        }
        let to = self.child_path(newparent, newname)?;
        self.control.count_change();
        self.storage.link(&from, &to).map_err(errno)?;
        {
            let mut tables = self.tables();
            forget_name(&mut tables, &to);
            tables.by_path.insert(to.clone(), ino.0);
            let inode = tables.inodes.get_mut(&ino.0).expect("path_of found it");
            inode.paths.push(to.clone());
        }
        self.attr_of_path(&to)
    }

    /// `unlink` (`dir` false) or `rmdir` (`dir` true) of `name` in `parent`.
    fn remove_entry(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let path = self.child_path(parent, name)?;
        match self.kind_of(&path)? {
            Some(true) if !dir => return Err(Errno::EISDIR),
            Some(false) if dir => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.control.count_change();
        if dir {
            self.storage.remove_dir(&path).map_err(errno)?;
        } else {
            self.storage.remove(&path).map_err(errno)?;
        }
        self.unlink_path(&path);
        Ok(())
    }

    fn do_fallocate(
        &self,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let file = self.handle(fh)?;
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        self.control.count_change();
        match mode {
            0 => {
                if file.len().map_err(errno)? < end {
                    file.set_len(end).map_err(errno)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            m if m == libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE => {
                let len = file.len().map_err(errno)?;
                let end = end.min(len);
                if offset < end {
                    let zeros = vec![0u8; usize::try_from(end - offset).map_err(|_| Errno::EFBIG)?];
                    file.write_at(offset, &zeros).map_err(errno)?;
                }
                Ok(())
            }
            _ => Err(Errno::from_i32(libc::EOPNOTSUPP)),
        }
    }
}

/// Forgets the name `path` of whatever inode it named; returns that inode.
fn forget_name(tables: &mut Tables, path: &str) -> Option<u64> {
    let ino = tables.by_path.remove(path)?;
    if let Some(inode) = tables.inodes.get_mut(&ino) {
        inode.paths.retain(|name| name != path);
    }
    Some(ino)
}

/// Answers a request that returns nothing.
fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn find<'a>(entries: &'a [DirEntry], name: &str) -> Option<&'a DirEntry> {
    entries
        .binary_search_by(|entry| entry.name.as_str().cmp(name))
        .ok()
        .map(|i| &entries[i])
}

/// The errno a storage error stands for.
pub fn errno(error: io::Error) -> Errno {
    if let Some(code) = error.raw_os_error() {
        return Errno::from_i32(code);
    }
    let code = match error.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::DirectoryNotEmpty => libc::ENOTEMPTY,
        io::ErrorKind::IsADirectory => libc::EISDIR,
        io::ErrorKind::NotADirectory => libc::ENOTDIR,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::Unsupported => libc::EOPNOTSUPP,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::StorageFull => libc::ENOSPC,
        _ => libc::EIO,
    };
    Errno::from_i32(code)
}

impl Filesystem for StorageFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .child_path(parent, name)
            .and_then(|path| self.attr_of_path(&path))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = (|| {
            if let Some(fh) = fh {
                let file = self.handle(fh)?;
                let len = file.len().map_err(errno)?;
                let links = file.link_count().map_err(errno)?;
                return Ok(self.attr(ino.0, false, len, links));
            }
            let (path, _) = self.path_of(ino)?;
            self.attr_of_path(&path)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino, size, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.create_file(parent, name) {
            Ok((attr, fh)) => {
                self.tables().handles.remove(&fh.0);
                reply.entry(&TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            let path = self.child_path(parent, name)?;
            self.control.count_change();
            self.storage.create_dir(&path).map_err(errno)?;
            let ino = self.inode_for(&path, true)?;
            Ok(self.attr(ino, true, 0, 2))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove_entry(parent, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.remove_entry(parent, name, true));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.do_rename(parent, name, newparent, newname, flags),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.do_link(ino, newparent, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = (|| {
            let (path, is_dir) = self.path_of(ino)?;
            if is_dir {
                return Err(Errno::EISDIR);
            }
            let file = self.storage.open(&path).map_err(errno)?;
            self.add_handle(file)
        })();
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let result = (|| {
            let file = self.handle(fh)?;
            let mut buf = vec![0u8; size.min(READ_BYTES_MAX) as usize];
            let mut done = 0;
            while done < buf.len() {
                let n = file
                    .read_at(offset + done as u64, &mut buf[done..])
                    .map_err(errno)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            Ok(buf)
        })();
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = (|| {
            let file = self.handle(fh)?;
            self.control.count_change();
            file.write_at(offset, data).map_err(errno)?;
            u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tables().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let file = self.handle(fh)?;
            self.control.count_change();
            if datasync {
                file.sync_data().map_err(errno)
            } else {
                file.sync_all().map_err(errno)
            }
        })();
        reply_empty(reply, result);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = (|| {
            let (path, is_dir) = self.path_of(ino)?;
            if !is_dir {
                return Err(Errno::ENOTDIR);
            }
            let entries = self.storage.list_dir(&path).map_err(errno)?;
            let mut all = vec![
                (ino.0, FileType::Directory, ".".to_string()),
                (ino.0, FileType::Directory, "..".to_string()),
            ];
            for entry in entries {
                let child = if path.is_empty() {
                    entry.name.clone()
                } else {
                    format!("{path}/{}", entry.name)
                };
                let child_ino = self.inode_for(&child, entry.is_dir)?;
                let kind = if entry.is_dir {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                };
                all.push((child_ino, kind, entry.name));
            }
            Ok(all)
        })();
        match result {
            Ok(all) => {
                for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            let (path, is_dir) = self.path_of(ino)?;
            if !is_dir {
                return Err(Errno::ENOTDIR);
            }
            self.control.count_change();
            self.storage.sync_dir_at(&path).map_err(errno)
        })();
        reply_empty(reply, result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = 1 << 24;
        reply.statfs(
            blocks,
            blocks,
            blocks,
            1 << 20,
            1 << 20,
            BLOCK_SIZE,
            255,
            BLOCK_SIZE,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(parent, name) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_fallocate(fh, offset, length, mode));
    }
}

/// The heap size from which glibc serves an allocation with its own
/// `mmap` (see [`keep_large_buffers_off_the_heap`]).
const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;

/// Makes every allocation of [`MMAP_THRESHOLD_BYTES`] or more a fresh
/// `mmap`, once per process.
///
/// fuser allocates a zeroed 16 MiB request buffer for every mount. glibc
/// raises its `mmap` threshold each time such a block is freed, so from the
/// second mount on the buffer came from the heap and was zeroed by
/// `memset`: 4096 page faults per mount, and a heap of touched pages that
/// every later `fork` (each program start) copied and write-faulted again.
/// That was the largest CPU cost of a process target's crash state. A fixed
/// threshold turns off glibc's adjustment: the buffer is fresh zero pages
/// again, and only the pages a request lands in are ever touched.
fn keep_large_buffers_off_the_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt takes two integers and touches allocator settings
        // only; every allocator call before and after stays valid.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    });
}

/// A mounted [`StorageFs`]; dropping it unmounts (and stops serving).
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    control: Arc<FsControl>,
    mountpoint: PathBuf,
}

/// Tries of an unmount the kernel refuses as busy.
pub const UNMOUNT_TRIES: u32 = 200;
/// Pause between them.
pub const UNMOUNT_RETRY_PAUSE: Duration = Duration::from_millis(5);

impl Mount {
    /// Serves `storage` at `mountpoint` (an existing empty directory) on a
    /// background thread. Needs root (mount(2) on `/dev/fuse`).
    pub fn new(storage: Arc<dyn Storage>, mountpoint: &Path) -> io::Result<Mount> {
        Mount::owned_by(storage, mountpoint, None)
    }

    /// As [`Mount::new`], every file owned by `owner` when given.
    pub fn owned_by(
        storage: Arc<dyn Storage>,
        mountpoint: &Path,
        owner: Option<Owner>,
    ) -> io::Result<Mount> {
        let control = Arc::new(FsControl::default());
        let fs = match owner {
            Some(owner) => StorageFs::owned_by(storage, control.clone(), owner),
            None => StorageFs::new(storage, control.clone()),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("powercut".to_string()),
            fuser::MountOption::Subtype("powercut".to_string()),
            fuser::MountOption::NoDev,
            fuser::MountOption::NoSuid,
        ];
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(1);
        keep_large_buffers_off_the_heap();
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(Mount {
            session: Some(session),
            control,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    pub fn control(&self) -> &Arc<FsControl> {
        &self.control
    }

    /// Unmounts and waits for the serving thread. The kernel may refuse
    /// the unmount as busy for a moment after the last file on the mount
    /// was closed (seen under load, the close's release still in flight):
    /// it is tried again, [`UNMOUNT_TRIES`] times at most, before the error
    /// stands.
    pub fn unmount(mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = CString::new(self.mountpoint.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mount point with a NUL"))?;
        for tries_left in (0..UNMOUNT_TRIES).rev() {
            // SAFETY: a NUL-terminated path that outlives the call.
            if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EBUSY) || tries_left == 0 {
                return Err(error);
            }
            std::thread::sleep(UNMOUNT_RETRY_PAUSE);
        }
        // Unmounted: the serving thread sees the connection end.
        session.join()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}
