//! [`RealStorage`]: a directory of the real file system.

use super::{DirEntry, Storage, StorageFile, StorageLock, check_path};
use fs2::FileExt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The name of the file that carries the directory lock.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// A directory on the real file system; syncs are real `fdatasync`/`fsync`.
#[derive(Debug)]
pub struct RealStorage {
    dir: PathBuf,
}

impl RealStorage {
    /// Uses `dir`, creating it (and its parents) if it does not exist.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<RealStorage> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(RealStorage { dir })
    }

    /// The directory this storage lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        check_path(name)?;
        Ok(self.dir.join(name))
    }
}

impl Storage for RealStorage {
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(name)?)?;
        Ok(Box::new(RealFile { file }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(name)?)?;
        Ok(Box::new(RealFile { file }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let from = self.path(from)?;
        if from.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("directory {} cannot be renamed", from.display()),
            ));
        }
        fs::rename(from, self.path(to)?)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)
    }

    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        fs::hard_link(self.path(from)?, self.path(to)?)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string()
                && name != LOCK_FILE_NAME
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn create_dir(&self, path: &str) -> io::Result<()> {
        fs::create_dir(self.path(path)?)
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        fs::remove_dir(self.path(path)?)
    }

    fn list_dir(&self, dir: &str) -> io::Result<Vec<DirEntry>> {
        let path = if dir.is_empty() {
            self.dir.clone()
        } else {
            self.path(dir)?
        };
        let mut entries = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if dir.is_empty() && name == LOCK_FILE_NAME {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_file() || kind.is_dir() {
                entries.push(DirEntry {
                    name,
                    is_dir: kind.is_dir(),
                });
            }
        }
        entries.sort();
        Ok(entries)
    }

    fn sync_dir_at(&self, dir: &str) -> io::Result<()> {
        if dir.is_empty() {
            return self.sync_dir();
        }
        File::open(self.path(dir)?)?.sync_all()
    }

    fn lock(&self) -> io::Result<StorageLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK_FILE_NAME))?;
        file.try_lock_exclusive()?;
        Ok(StorageLock::new(Box::new(file)))
    }
}

struct RealFile {
    file: File,
}

impl StorageFile for RealFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn link_count(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.nlink())
    }
}
