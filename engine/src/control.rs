//! The control file: the database's geometry and where recovery starts.
//!
//! Layout (little endian, 52 bytes):
//!
//! | offset | size | field                                  |
//! |--------|------|----------------------------------------|
//! | 0      | 8    | magic `PWRCUTDB`                       |
//! | 8      | 4    | format version (2)                     |
//! | 12     | 4    | `page_size`                            |
//! | 16     | 4    | `page_count`                           |
//! | 20     | 4    | zero                                   |
//! | 24     | 8    | `segment_size`                         |
//! | 32     | 8    | `checkpoint_lsn` (the begin record)    |
//! | 40     | 8    | `checkpoint_end_lsn` (its end record)  |
//! | 48     | 4    | CRC32C over bytes `[0..48)`            |
//!
//! It names a checkpoint only once that checkpoint is complete: its end
//! record is durable and every page it wrote is synced.
//!
//! It is replaced atomically: write `control.tmp`, sync it, rename it over
//! `control`, sync the directory (the `no-dir-fsync` bug skips that last
//! sync). A control file that fails its checks is corruption.

use crate::Lsn;
use crate::config::{Bug, BugSet};
use crate::error::{Error, Result};
use crate::fatal::{Fatal, io_error};
use crate::storage::{Storage, read_exact_at};
use crate::wal::record::{u32_at, u64_at};
use std::io;

pub const CONTROL_FILE: &str = "control";
pub const CONTROL_TMP_FILE: &str = "control.tmp";
pub const CONTROL_LEN: usize = 52;
const CRC_AT: usize = 48;
const MAGIC: &[u8; 8] = b"PWRCUTDB";
const VERSION: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub page_size: u32,
    pub page_count: u32,
    pub segment_size: u64,
    pub checkpoint_lsn: Lsn,
    pub checkpoint_end_lsn: Lsn,
}

impl Control {
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut bytes = [0u8; CONTROL_LEN];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.page_size.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.page_count.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.segment_size.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.checkpoint_lsn.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.checkpoint_end_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[0..CRC_AT]);
        bytes[CRC_AT..CONTROL_LEN].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Control, String> {
        if bytes.len() != CONTROL_LEN {
            return Err(format!("{} bytes, expected {CONTROL_LEN}", bytes.len()));
        }
        if crc32c::crc32c(&bytes[0..CRC_AT]) != u32_at(bytes, CRC_AT) {
            return Err("bad checksum".to_string());
        }
        if &bytes[0..8] != MAGIC {
            return Err("bad magic".to_string());
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(format!("unknown version {version}"));
        }
        Ok(Control {
            page_size: u32_at(bytes, 12),
            page_count: u32_at(bytes, 16),
            segment_size: u64_at(bytes, 24),
            checkpoint_lsn: u64_at(bytes, 32),
            checkpoint_end_lsn: u64_at(bytes, 40),
        })
    }
}

/// Reads the control file; `None` if there is none (a fresh directory).
pub fn read(storage: &dyn Storage) -> Result<Option<Control>> {
    let file = match storage.open(CONTROL_FILE) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("open", CONTROL_FILE)(error)),
    };
    let len = file.len().map_err(io_error("len", CONTROL_FILE))?;
    let corrupt = |what: String| Error::Corruption {
        file: CONTROL_FILE.to_string(),
        location: "offset 0".to_string(),
        what,
    };
    if len != CONTROL_LEN as u64 {
        return Err(corrupt(format!("{len} bytes, expected {CONTROL_LEN}")));
    }
    let mut bytes = [0u8; CONTROL_LEN];
    read_exact_at(file.as_ref(), 0, &mut bytes).map_err(io_error("read", CONTROL_FILE))?;
    Control::decode(&bytes).map(Some).map_err(corrupt)
}

/// Replaces the control file atomically. `control.tmp` must not exist.
pub fn write(storage: &dyn Storage, control: &Control, fatal: &Fatal, bugs: BugSet) -> Result<()> {
    let bytes = control.encode();
    let file = fatal.io("create", CONTROL_TMP_FILE, storage.create(CONTROL_TMP_FILE))?;
    fatal.io("write", CONTROL_TMP_FILE, file.write_at(0, &bytes))?;
    fatal.sync(bugs, CONTROL_TMP_FILE, file.sync_all())?;
    fatal.io(
        "rename",
        CONTROL_FILE,
        storage.rename(CONTROL_TMP_FILE, CONTROL_FILE),
    )?;
    if !bugs.has(Bug::NoDirFsync) {
        fatal.sync(bugs, "the directory", storage.sync_dir())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let control = Control {
            page_size: 4096,
            page_count: 10,
            segment_size: 1 << 20,
            checkpoint_lsn: 0x1234,
            checkpoint_end_lsn: 0x1300,
        };
        let bytes = control.encode();
        assert_eq!(Control::decode(&bytes).unwrap(), control);
        for at in 0..CONTROL_LEN {
            let mut bad = bytes;
            bad[at] ^= 4;
            assert!(Control::decode(&bad).is_err(), "flip at {at}");
        }
    }
}
