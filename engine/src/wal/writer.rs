//! The WAL writer: appends records to an in-memory tail and writes it to
//! the current segment file at the file's end.
//!
//! Records never span segments. When a record would not fit (room for one
//! `SegmentEnd` record is always kept), the writer appends a `SegmentEnd`,
//! writes the tail out, and moves to the next segment at `start +
//! segment_size`: a spare left there by recycling (a released segment
//! renamed to a future name), or else a new file created at full size
//! (zeros) and synced. Either way the directory is synced before any record
//! goes in, so the name is durable before a commit in it can be
//! acknowledged (the `no-dir-fsync` bug skips that sync). Segment files
//! never change size afterwards, so an `fdatasync` of the WAL writes data
//! only, never the file's size.
//!
//! Syncing is not done here but by [`super::Log`], outside this writer's
//! lock, so that commits can keep appending while a group fsync runs.

use super::record::{Body, NO_LSN, Record, SEGMENT_END_LEN};
use crate::config::{Bug, BugSet};
use crate::error::Result;
use crate::fatal::Fatal;
use crate::storage::{Storage, StorageFile};
use crate::{Lsn, TxnId};
use std::io;
use std::sync::Arc;

/// The file name of the segment starting at `start`.
pub fn segment_name(start: Lsn) -> String {
    format!("wal-{start:016x}")
}

/// The start LSN of a segment file name, or `None` for other names.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_prefix("wal-")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Zeros written at a time when a segment is created or zeroed.
pub const ZERO_CHUNK_BYTES: usize = 256 << 10;

/// Opens segment `name` for appending from its start: a spare (recycled or
/// preallocated) as it is, or a new file of `segment_size` zeros, synced.
/// The caller syncs the directory.
pub fn open_segment(
    storage: &dyn Storage,
    fatal: &Fatal,
    bugs: BugSet,
    name: &str,
    segment_size: u64,
) -> Result<Box<dyn StorageFile>> {
    let file = match storage.create(name) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            fatal.io("open", name, storage.open(name))?
        }
        other => fatal.io("create", name, other)?,
    };
    let len = fatal.io("len", name, file.len())?;
    if len < segment_size {
        zero_fill(file.as_ref(), fatal, name, len, segment_size)?;
        fatal.sync(bugs, name, file.sync_data())?;
    }
    Ok(file)
}

/// Writes zeros over `[from, to)` of `file` (not synced).
pub fn zero_fill(
    file: &dyn StorageFile,
    fatal: &Fatal,
    name: &str,
    from: u64,
    to: u64,
) -> Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let chunks_max = to.div_ceil(ZERO_CHUNK_BYTES as u64) + 1;
    let mut at = from;
    for _ in 0..chunks_max {
        if at >= to {
            return Ok(());
        }
        let len = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        fatal.io("write", name, file.write_at(at, &zeros[..len]))?;
        at += len as u64;
    }
    unreachable!("zero fill of {name} did not end in {chunks_max} chunks")
}

/// An open segment file.
#[derive(Clone)]
pub struct Segment {
    pub start: Lsn,
    pub name: String,
    pub file: Arc<dyn StorageFile>,
}

/// The appending end of the log.
pub struct WalWriter {
    storage: Arc<dyn Storage>,
    fatal: Arc<Fatal>,
    segment_size: u64,
    bugs: BugSet,
    current: Segment,
    /// Bytes of the current segment already written: the offset of the
    /// next write (the file itself is always `segment_size` long).
    written_len: u64,
    /// Appended records not yet written to the OS; they start at
    /// `current.start + written_len`.
    tail: Vec<u8>,
    /// Earlier segments that may hold unsynced data, oldest first.
    unsynced: Vec<Segment>,
    /// Bytes written to the OS since open.
    pub bytes_written: u64,
}

impl WalWriter {
    /// A writer appending to `file`, the segment starting at `start`, at
    /// offset `file_len` (where the log ends in it).
    pub fn new(
        storage: Arc<dyn Storage>,
        fatal: Arc<Fatal>,
        segment_size: u64,
        bugs: BugSet,
        current: Segment,
        file_len: u64,
    ) -> WalWriter {
        assert_eq!(current.start % segment_size, 0, "segment start aligned");
        WalWriter {
            storage,
            fatal,
            segment_size,
            bugs,
            current,
            written_len: file_len,
            tail: Vec::with_capacity(64 << 10),
            unsynced: Vec::new(),
            bytes_written: 0,
        }
    }

    /// The LSN the next record will get (if it fits in this segment).
    pub fn next_lsn(&self) -> Lsn {
        self.current.start + self.written_len + self.tail.len() as u64
    }

    /// The end of what has been written to the OS.
    pub fn written_lsn(&self) -> Lsn {
        self.current.start + self.written_len
    }

    /// Appends a record to the tail (in memory) and returns its LSN.
    pub fn append(&mut self, txn: TxnId, prev_lsn: Lsn, body: Body<'_>) -> Result<Lsn> {
        let mut record = Record {
            lsn: 0,
            prev_lsn,
            txn,
            body,
        };
        let len = record.encoded_len() as u64;
        assert!(
            len + SEGMENT_END_LEN as u64 <= self.segment_size,
            "record of {len} bytes cannot fit a segment"
        );
        let rotations_max = 1 << 16;
        for _ in 0..rotations_max {
            let offset = self.next_lsn() - self.current.start;
            if offset + len + SEGMENT_END_LEN as u64 <= self.segment_size {
                break;
            }
            self.rotate()?;
        }
        record.lsn = self.next_lsn();
        let before = self.tail.len();
        record.encode(&mut self.tail);
        assert_eq!((self.tail.len() - before) as u64, len, "record length");
        Ok(record.lsn)
    }

    /// Ends the current segment and starts the next one.
    fn rotate(&mut self) -> Result<()> {
        let offset = self.next_lsn() - self.current.start;
        if offset + SEGMENT_END_LEN as u64 <= self.segment_size {
            let end = Record {
                lsn: self.next_lsn(),
                prev_lsn: NO_LSN,
                txn: 0,
                body: Body::SegmentEnd,
            };
            end.encode(&mut self.tail);
        }
        self.write_out()?;
        let start = self.current.start + self.segment_size;
        let name = segment_name(start);
        let file = open_segment(
            self.storage.as_ref(),
            &self.fatal,
            self.bugs,
            &name,
            self.segment_size,
        )?;
        let file: Arc<dyn StorageFile> = Arc::from(file);
        if !self.bugs.has(Bug::NoDirFsync) {
            let result = self.storage.sync_dir();
            self.fatal.sync(self.bugs, "the directory", result)?;
        }
        let old = std::mem::replace(&mut self.current, Segment { start, name, file });
        self.unsynced.push(old);
        self.written_len = 0;
        Ok(())
    }

    /// Writes the tail to the OS; returns the written end.
    pub fn write_out(&mut self) -> Result<Lsn> {
        if !self.tail.is_empty() {
            let result = self.current.file.write_at(self.written_len, &self.tail);
            self.fatal.io("write", &self.current.name, result)?;
            self.written_len += self.tail.len() as u64;
            self.bytes_written += self.tail.len() as u64;
            self.tail.clear();
        }
        assert!(self.written_len <= self.segment_size, "segment overflow");
        Ok(self.written_lsn())
    }

    /// The files a sync must cover: every segment that may hold unsynced
    /// data, oldest first.
    pub fn files_to_sync(&self) -> Vec<Segment> {
        let mut files = self.unsynced.clone();
        files.push(self.current.clone());
        files
    }

    /// Forgets earlier segments that a sync up to `lsn` covered.
    pub fn release_synced(&mut self, lsn: Lsn) {
        let size = self.segment_size;
        self.unsynced.retain(|segment| segment.start + size > lsn);
    }

    /// The start of the current segment.
    pub fn current_start(&self) -> Lsn {
        self.current.start
    }
}
