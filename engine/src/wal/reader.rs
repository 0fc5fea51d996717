//! Reading the WAL at recovery: a forward scanner that finds the end of the
//! log, and random access to one record (for undo).
//!
//! The scanner reads a segment in windows of up to `window_max` bytes, one
//! call each, and decodes records in place (no per-record allocation): a
//! window of a segment's whole length reads it in one call; a smaller one
//! (analysis uses 1 MiB) keeps the bytes in the CPU cache from the read to
//! the checks. A record cut by the window's end is read again at the start
//! of the next window, so the result never depends on the window size. The
//! scanner follows `SegmentEnd` records to the next segment; any other
//! invalid record — bad length, bad CRC, LSN not equal to its position,
//! malformed body, or a missing segment — ends the log, and the reason is
//! kept in words with the file and offset.
//!
//! Segments are preallocated and recycled (see [`super::writer`]): the
//! bytes after the last record are zeros (a fresh or tail-zeroed segment) or
//! records of the file's previous life under another name. Zeros end the
//! log ("end of written log"); an old record is refused because its LSN
//! field, covered by its CRC, names its old position, not this one.
//!
//! Planted bugs: `no-crc-check` skips the checksum; `replay-past-torn` skips
//! over a bad record whose length looks plausible and keeps scanning;
//! `stale-recycled-record` skips the LSN check, so a recycled segment's old
//! records pass for new ones.

use super::record::{self, Body, DecodeError, HEADER_LEN, RECORD_LEN_MAX, Record};
use super::writer::segment_name;
use crate::Lsn;
use crate::error::{Error, Result};
use crate::fatal::io_error;
use crate::storage::{Storage, StorageFile, read_exact_at};
use std::io;

/// Where and why the log ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    pub lsn: Lsn,
    pub reason: String,
}

/// The segment file a scan is in.
struct OpenSegment {
    start: Lsn,
    /// `None` when the segment file is missing.
    file: Option<Box<dyn StorageFile>>,
    /// Bytes of the file the scan may read: its length, at most a segment.
    len: u64,
}

/// A forward scan of the log from a start LSN.
pub struct LogReader<'s> {
    storage: &'s dyn Storage,
    segment_size: u64,
    check_crc: bool,
    /// Refuse a record whose LSN field is not its position (always, but
    /// for the `stale-recycled-record` bug).
    check_lsn: bool,
    /// Records from this LSN on were validated by an earlier scan (redo
    /// after analysis): their CRC is not computed again.
    validated_from: Lsn,
    skip_torn: bool,
    /// The most bytes read (and held) at a time, unless one record is larger.
    window_max: usize,
    pos: Lsn,
    segment: Option<OpenSegment>,
    /// Offset in the segment of `window[0]`.
    window_start: u64,
    /// Bytes of the open segment from `window_start`: `buffer[..window_len]`.
    window_len: usize,
    /// The window's storage, reused: it only grows (zeroed once), so a
    /// read never pays for clearing memory it then overwrites.
    buffer: Vec<u8>,
    /// The scan is about to replace the window and said so with `WindowDone`.
    window_done: bool,
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
    /// A scan from `start` reading windows of up to `window_max` bytes.
    pub fn new(
        storage: &'s dyn Storage,
        segment_size: u64,
        start: Lsn,
        check_crc: bool,
        skip_torn: bool,
        window_max: usize,
    ) -> LogReader<'s> {
        assert!(window_max >= HEADER_LEN, "window holds a record header");
        LogReader {
            storage,
            segment_size,
            check_crc,
            check_lsn: true,
            validated_from: Lsn::MAX,
            skip_torn,
            window_max,
            pos: start,
            segment: None,
            window_start: 0,
            window_len: 0,
            buffer: Vec::new(),
            window_done: false,
            end: None,
            bytes_read: 0,
            records_skipped: 0,
        }
    }

    /// Whether records must carry their own position as LSN (false only for
    /// the `stale-recycled-record` bug).
    pub fn with_lsn_check(mut self, check_lsn: bool) -> LogReader<'s> {
        self.check_lsn = check_lsn;
        self
    }

    /// Skips the CRC of records at or past `lsn`, which an earlier scan of
    /// the same log (analysis, up to the end it found) already checked.
    pub fn validated_from(mut self, lsn: Lsn) -> LogReader<'s> {
        self.validated_from = lsn;
        self
    }

    /// Where the log ended, once [`LogReader::next`] returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    fn open(&mut self, start: Lsn) -> Result<()> {
        let name = segment_name(start);
        self.window_len = 0;
        self.window_start = 0;
        let (file, len) = match self.storage.open(&name) {
            Ok(file) => {
                let len = file.len().map_err(io_error("len", &name))?;
                (Some(file), len.min(self.segment_size))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => (None, 0),
            Err(error) => return Err(io_error("open", &name)(error)),
        };
        self.segment = Some(OpenSegment { start, file, len });
        Ok(())
    }

    /// Reads the window at `offset` of the open segment: `need` bytes or
    /// `window_max`, whichever is more, cut at the end of the file.
    fn load(&mut self, offset: u64, need: usize) -> Result<()> {
        let segment = self.segment.as_ref().expect("a segment is open");
        let file = segment.file.as_ref().expect("the segment file exists");
        let left = segment.len.saturating_sub(offset);
        let len = usize::try_from(left.min(need.max(self.window_max) as u64))
            .expect("window fits memory");
        if self.buffer.len() < len {
            self.buffer.resize(len, 0);
        }
        self.window_len = 0;
        read_exact_at(file.as_ref(), offset, &mut self.buffer[..len])
            .map_err(io_error("read", &segment_name(segment.start)))?;
        self.window_len = len;
        self.window_start = offset;
        self.bytes_read += len as u64;
        Ok(())
    }

    /// Returns `WindowDone` once before the window is replaced.
    fn window_done(&mut self) -> Option<Step> {
        self.window_done = !self.window_done;
        self.window_done.then_some(Step::WindowDone)
    }

    /// The next valid record, or `None` at the end of the log.
    pub fn next(&mut self) -> Result<Option<Record<'_>>> {
        loop {
            match self.advance()? {
                Step::Record(found) => return Ok(Some(self.record(found))),
                Step::WindowDone => {}
                Step::End => return Ok(None),
            }
        }
    }

    /// Finds the next valid record in the window (reading the segment at
    /// the scan position first if needed) without decoding it for the
    /// caller. Before the window is replaced it returns
    /// [`Step::WindowDone`], with the window still loaded (see
    /// [`LogReader::window`]): every [`Found`] returned since the previous
    /// `WindowDone` lies in the window until the next call.
    pub fn advance(&mut self) -> Result<Step> {
        if self.end.is_some() {
            return Ok(Step::End);
        }
        loop {
            let start = self.pos - self.pos % self.segment_size;
            let offset = self.pos - start;
            if self.segment.as_ref().map(|segment| segment.start) != Some(start) {
                if let Some(step) = self.window_done() {
                    return Ok(step);
                }
                self.open(start)?;
            }
            let segment = self.segment.as_ref().expect("segment opened");
            let (segment_len, exists) = (segment.len, segment.file.is_some());
            if !exists {
                self.end = Some(LogEnd {
                    lsn: self.pos,
                    reason: format!(
                        "segment {} is missing (log ends at LSN {:#x})",
                        segment_name(start),
                        self.pos
                    ),
                });
                return Ok(Step::End);
            }
            let window_end = self.window_start + self.window_len as u64;
            let in_window = offset >= self.window_start && offset < window_end;
            if !in_window && offset < segment_len {
                if let Some(step) = self.window_done() {
                    return Ok(step);
                }
                self.load(offset, 0)?;
                continue;
            }
            let at = usize::try_from(offset.saturating_sub(self.window_start))
                .expect("window offset fits memory")
                .min(self.window_len);
            let available = &self.buffer[at..self.window_len];
            let check_crc = self.check_crc && self.pos < self.validated_from;
            let decoded = record::decode_checked(available, self.pos, check_crc, self.check_lsn);
            if window_end < segment_len
                && let Err(error) = &decoded
                && let Some(need) = more_needed(error)
            {
                if let Some(step) = self.window_done() {
                    return Ok(step);
                }
                self.load(offset, need)?;
                continue;
            }
            match decoded {
                Ok(found) if found.body == Body::SegmentEnd => {
                    self.pos = start + self.segment_size;
                }
                Ok(found) => {
                    let len = found.encoded_len();
                    let found = Found {
                        lsn: self.pos,
                        offset: at,
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
                    // As if the whole rest of the segment had been read.
                    let error = match error {
                        DecodeError::BadLength { total_len, .. } => DecodeError::BadLength {
                            total_len,
                            available: usize::try_from(segment_len.saturating_sub(offset))
                                .expect("segment fits memory"),
                        },
                        other => other,
                    };
                    self.end = Some(LogEnd {
                        lsn: self.pos,
                        reason: describe_end(&error, self.pos, start, offset as usize),
                    });
                    return Ok(Step::End);
                }
            }
        }
    }

    /// The bytes of the window (empty if none is loaded).
    pub fn window(&self) -> &[u8] {
        &self.buffer[..self.window_len]
    }

    /// Decodes a record that [`LogReader::advance`] found valid in the
    /// window (its CRC is not checked again).
    pub fn record(&self, found: Found) -> Record<'_> {
        record_in(self.window(), found)
    }
}

/// The bytes a record cut short by the end of the window needs from its
/// start, or `None` if more bytes would not make it valid.
fn more_needed(error: &DecodeError) -> Option<usize> {
    match *error {
        DecodeError::ShortHeader { .. } => Some(HEADER_LEN),
        DecodeError::BadLength {
            total_len,
            available,
        } => {
            let len = total_len as usize;
            ((HEADER_LEN..=RECORD_LEN_MAX).contains(&len) && len > available).then_some(len)
        }
        _ => None,
    }
}

/// Decodes `found` from `window`, the bytes it was found in by
/// [`LogReader::advance`] (already validated: the CRC is not rechecked).
pub fn record_in(window: &[u8], found: Found) -> Record<'_> {
    let bytes = &window[found.offset..found.offset + found.len];
    // The scan checked the LSN field (unless a planted bug told it not to).
    record::decode_checked(bytes, found.lsn, false, false).expect("record validated by the scan")
}

/// Where [`LogReader::advance`] found a valid record: its LSN, and its
/// offset and length in the window.
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
    /// The scan replaces the window next (it stays loaded until the next
    /// call).
    WindowDone,
    /// The end of the log ([`LogReader::end`] says where and why).
    End,
}

fn describe_end(error: &DecodeError, lsn: Lsn, start: Lsn, offset: usize) -> String {
    let what = match error {
        DecodeError::ShortHeader { available: 0 } => "end of written log".to_string(),
        DecodeError::BadLength { total_len: 0, .. } if preallocated_zeros(error) => {
            "end of written log (zeros)".to_string()
        }
        DecodeError::BadLsn { found, .. } => {
            format!("stale record (LSN field {found:#x}) from the segment's earlier life")
        }
        other => format!("{} in record", other.describe()),
    };
    format!(
        "{what} at LSN {lsn:#x} ({} offset {offset})",
        segment_name(start)
    )
}

/// A zero length field: the preallocated or zeroed rest of a segment.
fn preallocated_zeros(error: &DecodeError) -> bool {
    matches!(error, DecodeError::BadLength { total_len: 0, .. })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::wal::record::{Op, UpdateBody};
    use std::collections::BTreeMap;

    const SEGMENT_SIZE: u64 = 4096;

    /// Records of mixed sizes from `lsn` up to `fill` bytes of the segment
    /// at `start`, then a `SegmentEnd`.
    fn segment(start: Lsn, fill: u64, seed: u8) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut i = 0usize;
        let value = vec![seed; 300];
        loop {
            let after = &value[..(i * 37 + usize::from(seed)) % 300];
            let record = Record {
                lsn: start + bytes.len() as u64,
                prev_lsn: NO_PREV,
                txn: i as u64 + 1,
                body: if i % 3 == 2 {
                    Body::Commit
                } else {
                    Body::Update(UpdateBody {
                        page_id: i as u32,
                        op: Op::Insert,
                        slot: 0,
                        key: b"key",
                        before: None,
                        after: Some(after),
                    })
                },
            };
            if (bytes.len() + record.encoded_len()) as u64 > fill {
                break;
            }
            record.encode(&mut bytes);
            i += 1;
        }
        let end = Record {
            lsn: start + bytes.len() as u64,
            prev_lsn: NO_PREV,
            txn: 0,
            body: Body::SegmentEnd,
        };
        end.encode(&mut bytes);
        bytes
    }

    const NO_PREV: Lsn = crate::wal::record::NO_LSN;

    /// Every record and the end a scan from `start` finds.
    fn scan_all(
        files: &BTreeMap<String, Vec<u8>>,
        start: Lsn,
        window_max: usize,
        skip_torn: bool,
    ) -> (Vec<(Lsn, usize, Vec<u8>)>, LogEnd) {
        let storage = MemStorage::from_files(files.clone());
        let mut scan = LogReader::new(&storage, SEGMENT_SIZE, start, true, skip_torn, window_max);
        let mut found = Vec::new();
        let steps_max = 100_000;
        for _ in 0..steps_max {
            match scan.advance().unwrap() {
                Step::Record(at) => {
                    let record = scan.record(at);
                    let bytes = scan.window()[at.offset..at.offset + at.len].to_vec();
                    found.push((record.lsn, at.len, bytes));
                }
                Step::WindowDone => {}
                Step::End => return (found, scan.end().unwrap().clone()),
            }
        }
        panic!("scan did not end in {steps_max} steps");
    }

    /// Two full segments, then a third cut by each kind of tail damage.
    fn logs() -> Vec<BTreeMap<String, Vec<u8>>> {
        let mut logs = Vec::new();
        let first = segment(0, SEGMENT_SIZE - 200, 1);
        let second = segment(SEGMENT_SIZE, SEGMENT_SIZE - 40, 2);
        let third = segment(2 * SEGMENT_SIZE, 3000, 3);
        let body_len = third.len() - HEADER_LEN;
        let mut tails: Vec<Vec<u8>> = vec![
            third.clone(),
            third[..body_len - 5].to_vec(),
            third[..body_len / 2].to_vec(),
            Vec::new(),
        ];
        let mut garbage = third[..body_len].to_vec();
        garbage.extend_from_slice(&[0xab; 700]);
        tails.push(garbage);
        let mut flipped = third.clone();
        flipped[body_len / 3] ^= 0x40;
        tails.push(flipped);
        let mut huge_len = third[..body_len].to_vec();
        huge_len.extend_from_slice(&u32::MAX.to_le_bytes());
        huge_len.extend_from_slice(&[0; 100]);
        tails.push(huge_len);
        for tail in tails {
            let mut files = BTreeMap::new();
            files.insert(segment_name(0), first.clone());
            files.insert(segment_name(SEGMENT_SIZE), second.clone());
            files.insert(segment_name(2 * SEGMENT_SIZE), tail);
            logs.push(files);
        }
        let mut missing = logs[0].clone();
        missing.remove(&segment_name(SEGMENT_SIZE));
        logs.push(missing);
        logs
    }

    /// The window size changes how a segment is read, never what is found:
    /// the same records and the same end, in words, for every window.
    #[test]
    fn any_window_finds_the_same_records_and_end() {
        for files in logs() {
            for skip_torn in [false, true] {
                let from_zero = scan_all(&files, 0, SEGMENT_SIZE as usize, skip_torn);
                assert!(from_zero.0.len() > 3, "the log has records");
                for start in [0, from_zero.0[2].0, SEGMENT_SIZE] {
                    let whole = scan_all(&files, start, SEGMENT_SIZE as usize, skip_torn);
                    for window_max in [HEADER_LEN, 50, 64, 100, 333, 1000, 4095] {
                        let windowed = scan_all(&files, start, window_max, skip_torn);
                        assert!(
                            windowed == whole,
                            "window {window_max}, start {start}: {} records, {:?}; whole: {} records, {:?}",
                            windowed.0.len(),
                            windowed.1,
                            whole.0.len(),
                            whole.1
                        );
                    }
                }
            }
        }
    }
}
