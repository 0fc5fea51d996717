//! Reading the WAL at recovery: a forward scanner that finds the end of the
//! log, and random access to one record (for undo).
//!
//! The scanner reads each segment file whole, in one call, and decodes
//! records in place (no per-record allocation). It follows `SegmentEnd`
//! records to the next segment; any other invalid record — bad length, bad
//! CRC, LSN not equal to its position, malformed body, or a missing segment —
//! ends the log, and the reason is kept in words with the file and offset.
//!
//! Planted bugs: `no-crc-check` skips the checksum; `replay-past-torn` skips
//! over a bad record whose length looks plausible and keeps scanning.

use super::record::{self, Body, DecodeError, HEADER_LEN, Record};
use super::writer::segment_name;
use crate::Lsn;
use crate::error::{Error, Result};
use crate::fatal::io_error;
use crate::storage::{Storage, read_exact_at};
use std::io;

/// Where and why the log ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    pub lsn: Lsn,
    pub reason: String,
}

/// A forward scan of the log from a start LSN.
pub struct LogReader<'s> {
    storage: &'s dyn Storage,
    segment_size: u64,
    check_crc: bool,
    skip_torn: bool,
    pos: Lsn,
    /// The start of the segment loaded in `data`, if any.
    loaded: Option<Lsn>,
    /// `None` when the loaded segment file is missing.
    data: Option<Vec<u8>>,
    /// The scan left the loaded segment and said so with `SegmentDone`.
    segment_done: bool,
    end: Option<LogEnd>,
    /// Segment bytes read from storage.
    pub bytes_read: u64,
    /// Bad records skipped (only with `replay-past-torn`).
    pub records_skipped: u64,
}

/// The segments a scan may visit is bounded by the stream: a named limit on
/// skipped records keeps a garbage-filled segment from looping long.
pub const RECORDS_SKIPPED_MAX: u64 = 1 << 20;

impl<'s> LogReader<'s> {
    pub fn new(
        storage: &'s dyn Storage,
        segment_size: u64,
        start: Lsn,
        check_crc: bool,
        skip_torn: bool,
    ) -> LogReader<'s> {
        LogReader {
            storage,
            segment_size,
            check_crc,
            skip_torn,
            pos: start,
            loaded: None,
            data: None,
            segment_done: false,
            end: None,
            bytes_read: 0,
            records_skipped: 0,
        }
    }

    /// Where the log ended, once [`LogReader::next`] returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    fn load(&mut self, start: Lsn) -> Result<()> {
        let name = segment_name(start);
        self.loaded = Some(start);
        let file = match self.storage.open(&name) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.data = None;
                return Ok(());
            }
            Err(error) => return Err(io_error("open", &name)(error)),
        };
        let len = file.len().map_err(io_error("len", &name))?;
        let len = usize::try_from(len.min(self.segment_size)).expect("segment fits memory");
        // The buffer is reused from segment to segment; only growth is
        // zeroed (the read overwrites every byte kept).
        let mut data = self.data.take().unwrap_or_default();
        data.truncate(len);
        data.resize(len, 0);
        read_exact_at(file.as_ref(), 0, &mut data).map_err(io_error("read", &name))?;
        self.bytes_read += len as u64;
        self.data = Some(data);
        Ok(())
    }

    /// The next valid record, or `None` at the end of the log.
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
        loop {
            match self.advance()? {
                Step::Record(found) => return Ok(Some(self.record(found))),
                Step::SegmentDone => {}
                Step::End => return Ok(None),
            }
        }
    }

    /// Finds the next valid record in the loaded segment (loading the
    /// segment at the scan position first if needed) without decoding it
    /// for the caller. Before the scan leaves a loaded segment (after its
    /// `SegmentEnd`, or a skip past its end) it returns
    /// [`Step::SegmentDone`], with that segment still loaded (see
    /// [`LogReader::segment`]): every [`Found`] returned since the previous
    /// `SegmentDone` lies in the loaded segment until the next call.
    pub fn advance(&mut self) -> Result<Step> {
        if self.end.is_some() {
            return Ok(Step::End);
        }
        loop {
            let start = self.pos - self.pos % self.segment_size;
            if self.loaded != Some(start) {
                if self.loaded.is_some() && !self.segment_done {
                    // Report the loaded segment finished before replacing it.
                    self.segment_done = true;
                    return Ok(Step::SegmentDone);
                }
                self.segment_done = false;
                self.load(start)?;
            }
            let offset = (self.pos - start) as usize;
            let Some(data) = self.data.as_ref() else {
                self.end = Some(LogEnd {
                    lsn: self.pos,
                    reason: format!(
                        "segment {} is missing (log ends at LSN {:#x})",
                        segment_name(start),
                        self.pos
                    ),
                });
                return Ok(Step::End);
            };
            let available = &data[offset.min(data.len())..];
            match record::decode(available, self.pos, self.check_crc) {
                Ok(found) if found.body == Body::SegmentEnd => {
                    self.pos = start + self.segment_size;
                }
                Ok(found) => {
                    let len = found.encoded_len();
                    let found = Found {
                        lsn: self.pos,
                        offset,
                        len,
                    };
                    self.pos += len as u64;
                    return Ok(Step::Record(found));
                }
                Err(error) => {
                    if self.skip_torn
                        && self.records_skipped < RECORDS_SKIPPED_MAX
                        && let Some(len) = error.plausible_len()
                    {
                        self.records_skipped += 1;
                        self.pos += len as u64;
                        continue;
                    }
                    self.end = Some(LogEnd {
                        lsn: self.pos,
                        reason: describe_end(&error, self.pos, start, offset),
                    });
                    return Ok(Step::End);
                }
            }
        }
    }

    /// The bytes of the loaded segment (empty if none is loaded or the
    /// segment is missing).
    pub fn segment(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }

    /// Decodes a record that [`LogReader::advance`] found valid in the
    /// loaded segment (its CRC is not checked again).
    pub fn record(&self, found: Found) -> Record<'_> {
        record_in(self.segment(), found)
    }
}

/// Decodes `found` from `segment`, the bytes of the segment it was found in
/// by [`LogReader::advance`] (already validated: the CRC is not rechecked).
pub fn record_in(segment: &[u8], found: Found) -> Record<'_> {
    let bytes = &segment[found.offset..found.offset + found.len];
    record::decode(bytes, found.lsn, false).expect("record validated by the scan")
}

/// Where [`LogReader::advance`] found a valid record: its LSN, and its
/// offset and length in the loaded segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub lsn: Lsn,
    pub offset: usize,
    pub len: usize,
}

/// One step of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Record(Found),
    /// The scan leaves the loaded segment (still loaded until the next call).
    SegmentDone,
    /// The end of the log ([`LogReader::end`] says where and why).
    End,
}

fn describe_end(error: &DecodeError, lsn: Lsn, start: Lsn, offset: usize) -> String {
    let what = match error {
        DecodeError::ShortHeader { available: 0 } => "end of written log".to_string(),
        other => format!("{} in record", other.describe()),
    };
    format!(
        "{what} at LSN {lsn:#x} ({} offset {offset})",
        segment_name(start)
    )
}

/// An owned copy of one record's bytes.
pub struct RecordBytes {
    pub lsn: Lsn,
    pub bytes: Vec<u8>,
}

impl RecordBytes {
    pub fn record(&self) -> Record<'_> {
        record::decode(&self.bytes, self.lsn, false).expect("record validated when read")
    }
}

/// Reads the one record at `lsn` (for undo), checking it fully.
pub fn read_record_at(storage: &dyn Storage, segment_size: u64, lsn: Lsn) -> Result<RecordBytes> {
    let start = lsn - lsn % segment_size;
    let name = segment_name(start);
    let file = storage.open(&name).map_err(io_error("open", &name))?;
    let offset = lsn - start;
    let mut header = [0u8; HEADER_LEN];
    let corrupt = |what: String| Error::corruption(name.clone(), lsn, what);
    read_exact_at(file.as_ref(), offset, &mut header)
        .map_err(|error| corrupt(format!("record header unreadable: {error}")))?;
    let len = record::u32_at(&header, 0) as usize;
    if !(HEADER_LEN..=record::RECORD_LEN_MAX).contains(&len) {
        return Err(corrupt(format!("bad record length {len}")));
    }
    let mut bytes = vec![0u8; len];
    read_exact_at(file.as_ref(), offset, &mut bytes)
        .map_err(|error| corrupt(format!("record unreadable: {error}")))?;
    record::decode(&bytes, lsn, true).map_err(|error| corrupt(error.describe()))?;
    Ok(RecordBytes { lsn, bytes })
}
