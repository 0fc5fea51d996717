//! The storage seam: the only way the engine touches files.
//!
//! The engine lives in one flat directory. Every byte it reads or writes,
//! every file it creates, renames or removes, and every sync goes through
//! [`Storage`] and [`StorageFile`]. Nothing in the engine calls `std::fs`
//! directly, so the harness can substitute an implementation that records
//! every call in order, fails a chosen sync, and rebuilds what a disk could
//! hold after a power cut at any point of that record.
//!
//! Durability contract (what the engine may assume, and all it may assume):
//! - `write_at`, `set_len`, `create`, `rename`, `link` and `remove` are
//!   *volatile* until a sync covers them: `sync_data`/`sync_all` of a file
//!   covers that file's data and size; `sync_dir` covers the directory
//!   entries created, renamed, linked or removed before it.
//! - A failed sync (`Err`) guarantees nothing, not even later: on Linux the
//!   page cache drops the failed pages and marks them clean, so a later
//!   successful sync does not make them durable.
//! - Reads see every completed write (the page cache), durable or not.
//!
//! Implementations: [`RealStorage`] (a directory of the real file system) and
//! [`MemStorage`] (in memory, every operation immediately visible; it has no
//! crash model of its own — the harness layers one on top by recording).

mod mem;
mod real;

pub use mem::MemStorage;
pub use real::RealStorage;

use std::io;

/// A directory of files, as the engine sees it.
///
/// Names are paths relative to the storage's root: plain names joined by `/`
/// (see [`check_path`]). The engine uses plain names only (one flat
/// directory); a program served through the harness's FUSE front-end uses
/// subdirectories too ([`Storage::create_dir`]). A path's parent directory
/// must exist. All methods are safe to call from several threads at once.
///
/// Directories: a directory entry (a file's or a subdirectory's name) lives
/// in its parent directory and is volatile until a sync of that parent
/// ([`Storage::sync_dir_at`]; [`Storage::sync_dir`] syncs the root). A
/// rename between two directories is covered by a sync of either of them.
/// Directories themselves cannot be renamed. A storage that supports no
/// subdirectories (the default methods) fails them with `Unsupported`.
pub trait Storage: Send + Sync {
    /// Creates the file `name`, empty. Fails with `AlreadyExists` if a file of
    /// that name exists. The new directory entry is volatile until
    /// [`Storage::sync_dir`].
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Opens the existing file `name` for reading and writing. Fails with
    /// `NotFound` if there is none.
    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    /// Volatile until [`Storage::sync_dir`].
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes the file `name`. Fails with `NotFound` if there is none.
    /// Volatile until [`Storage::sync_dir`]. Open handles stay usable. A
    /// file with other names (hard links) keeps its data under them.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Gives the file `from` a second name `to` (a hard link, `link(2)`):
    /// both names reach the same data, so a write through one is read
    /// through the other, and removing one keeps the file under the other.
    /// Fails with `NotFound` if `from` is not a file, `AlreadyExists` if `to`
    /// exists, `NotFound` if the parent of `to` does not. The new entry is
    /// volatile until a sync of its directory, like a create. A storage
    /// without hard links (the default) fails with `Unsupported`.
    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        let _ = from;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this storage has no hard links ({to:?})"),
        ))
    }

    /// The names of the files in the directory, sorted.
    fn list(&self) -> io::Result<Vec<String>>;

    /// Makes every earlier `create`, `rename` and `remove` in the root
    /// directory durable (the same as `sync_dir_at("")`).
    fn sync_dir(&self) -> io::Result<()>;

    /// Creates the empty directory `path`. Fails with `AlreadyExists` if a
    /// file or directory of that name exists, `NotFound` if its parent does
    /// not. The new entry is volatile until a sync of its parent directory.
    fn create_dir(&self, path: &str) -> io::Result<()> {
        Err(no_directories(path))
    }

    /// Removes the empty directory `path`. Fails with `NotFound` if there is
    /// no such directory, `DirectoryNotEmpty` if it holds entries. Volatile
    /// until a sync of its parent directory.
    fn remove_dir(&self, path: &str) -> io::Result<()> {
        Err(no_directories(path))
    }

    /// The entries directly inside directory `dir` (`""` is the root),
    /// sorted by name. Fails with `NotFound` if `dir` is not a directory.
    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        if !dir.is_empty() {
            return Err(no_directories(dir));
        }
        let names = self.list()?;
        Ok(names
            .into_iter()
            .map(|name| DirEntry {
                name,
                is_dir: false,
            })
            .collect())
    }

    /// Makes every earlier `create`, `create_dir`, `rename`, `link`,
    /// `remove` and `remove_dir` of an entry of directory `dir` durable (`""` is the
    /// root; a rename counts in both its directories).
    fn sync_dir_at(&self, dir: &str) -> io::Result<()> {
        if dir.is_empty() {
            self.sync_dir()
        } else {
            Err(no_directories(dir))
        }
    }

    /// Takes the exclusive lock on the directory for as long as the returned
    /// guard lives. Fails with `WouldBlock` if another opener holds it.
    fn lock(&self) -> io::Result<StorageLock>;
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a file's length is not a collection's
pub trait StorageFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    /// A short count happens only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes all of `data` at `offset`, extending the file if needed (a gap
    /// reads as zeros). Volatile until a sync of this file.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes (an extension reads as
    /// zeros). Volatile until a sync of this file.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The current length of the file in bytes (durable or not).
    fn len(&self) -> io::Result<u64>;

    /// Makes this file's data and size durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes this file's data, size and metadata durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;

    /// How many names the file has now (its link count, live state): 0 once
    /// every name was removed while this handle stays open. A storage
    /// without hard links gives every file one name.
    fn link_count(&self) -> io::Result<u64> {
        Ok(1)
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The plain name inside its directory.
    pub name: String,
    pub is_dir: bool,
}

fn no_directories(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this storage has no subdirectories ({path:?})"),
    )
}

/// A held directory lock; dropping it releases the lock.
pub struct StorageLock {
    _guard: Box<dyn Send + Sync>,
}

impl StorageLock {
    /// Wraps whatever keeps the lock held (a locked file, a flag's guard).
    pub fn new(guard: Box<dyn Send + Sync>) -> StorageLock {
        StorageLock { _guard: guard }
    }
}

impl std::fmt::Debug for StorageLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageLock")
    }
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn StorageFile, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read at offset {}", offset + done as u64),
            ));
        }
        done += n;
    }
    Ok(())
}

/// Checks that `path` is a relative path of plain names joined by `/` (no
/// empty, `.` or `..` component, no NUL), as every [`Storage`] requires.
pub fn check_path(path: &str) -> io::Result<()> {
    for component in path.split('/') {
        check_name(component)?;
    }
    Ok(())
}

/// The directory holding `path` (`""` for the root) and its plain name.
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => ("", path),
    }
}

/// Checks that `name` is a plain file name (one path component).
pub fn check_name(name: &str) -> io::Result<()> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain file name: {name:?}"),
        ))
    }
}

#[cfg(test)]
mod tests;
