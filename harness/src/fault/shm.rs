//! [`SharedTrace`]: the trace in anonymous shared memory, mapped before fork
//! so that a workload child killed at any instant leaves a readable prefix.
//!
//! Fault model this module defends against: the writer process is SIGKILLed
//! at an arbitrary instruction (mid-encode, mid-copy, between the copy and
//! the publish). Memory itself is trusted. An entry becomes visible only once
//! all its bytes are written: the writer copies the bytes, then publishes the
//! new end offset with a Release store; the reader loads it with Acquire and
//! decodes only up to it. Bytes below the published end are never rewritten
//! (until [`SharedTrace::reset`], which only the parent calls, with no child
//! alive).
//!
//! Layout: a 64-byte header (magic, published end, event count, overflow
//! flag, stop_at) then the entries. An entry is a little-endian `u32` body
//! length followed by the body: a tag byte and the event's fields. A timed
//! entry (a trace given a clock with [`SharedTrace::stamp_with`], as a
//! threaded trial's is) has [`TIMED`] set in its tag byte and ends with the
//! `u64` time at which it was appended, read under the writers' lock, so
//! the times of a trace never decrease along it.
//!
//! Overflow: when an entry does not fit, nothing is written, the overflow
//! flag is set (sticky) and `record` returns [`NOT_RECORDED`]; every later
//! `record` is refused too, so the trace stays a consistent prefix of what
//! happened. A [`super::recording::RecordingStorage`] over it then fails the
//! operation and every later one, and the supervisor, seeing
//! [`SharedTrace::overflowed`], reports the trial as a harness limit rather
//! than a finding.
//!
//! Writers in one process (the engine's threads) are serialised by a
//! process-local lock; only one process (the child) writes at a time.

use super::trace::{Event, EventSink, NOT_RECORDED, Write};
use engine::Clock;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The default capacity: address space only (`MAP_NORESERVE`), pages are
/// used as they are written.
pub const TRACE_CAPACITY_DEFAULT: usize = 1 << 30;
/// The smallest capacity `SharedTrace::new` accepts.
pub const TRACE_CAPACITY_MIN: usize = 4096;
/// The largest single entry (a write's data, a transaction's writes).
pub const TRACE_ENTRY_BYTES_MAX: usize = u32::MAX as usize;

const HEADER_BYTES: usize = 64;
const MAGIC: u64 = 0x7063_7574_7472_6163; // "pcuttrac"
const MAGIC_OFFSET: usize = 0;
const END_OFFSET: usize = 8;
const COUNT_OFFSET: usize = 16;
const OVERFLOW_OFFSET: usize = 24;
const STOP_AT_OFFSET: usize = 32;
const STOP_AT_NONE: u64 = u64::MAX;

/// Why the bytes of a trace do not decode (a harness bug or stray write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceDecodeError {
    #[error("trace entry at byte {offset} is truncated")]
    Truncated { offset: usize },
    #[error("trace entry at byte {offset} has unknown tag {tag}")]
    UnknownTag { offset: usize, tag: u8 },
    #[error("trace entry at byte {offset} holds a name that is not UTF-8")]
    BadName { offset: usize },
    #[error("trace entry at byte {offset} has {extra} bytes after its fields")]
    TrailingBytes { offset: usize, extra: usize },
    #[error("trace header is damaged (bad magic)")]
    BadMagic,
    #[error("trace entry at byte {offset} is {what} where the entries before it are not")]
    MixedTimes { offset: usize, what: &'static str },
    #[error(
        "trace entry at byte {offset} was appended at {time_us} us, before the entry ahead of it"
    )]
    TimeWentBack { offset: usize, time_us: u64 },
}

/// The trace in a `MAP_SHARED` anonymous mapping (see the module header).
pub struct SharedTrace {
    base: NonNull<u8>,
    map_len: usize,
    /// Serialises writers of this process; holds the encoding scratch.
    writer: Mutex<Vec<u8>>,
    /// Stamps each entry appended by this process (set in the child).
    clock: OnceLock<Arc<dyn Clock>>,
}

// The mapping is plain memory shared by design; the header is accessed
// through atomics and the entries only below the published end (readers) or
// under `writer` (writers).
unsafe impl Send for SharedTrace {}
unsafe impl Sync for SharedTrace {}

impl SharedTrace {
    /// Maps `capacity_bytes` (header included) of shared anonymous memory.
    /// Call before fork.
    pub fn new(capacity_bytes: usize) -> io::Result<SharedTrace> {
        if capacity_bytes < TRACE_CAPACITY_MIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("trace capacity {capacity_bytes} is below {TRACE_CAPACITY_MIN} bytes"),
            ));
        }
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                capacity_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(address.cast::<u8>()).expect("mmap returned null");
        let trace = SharedTrace {
            base,
            map_len: capacity_bytes,
            writer: Mutex::new(Vec::new()),
            clock: OnceLock::new(),
        };
        trace.header(MAGIC_OFFSET).store(MAGIC, Ordering::Relaxed);
        trace.reset();
        Ok(trace)
    }

    /// Empties the trace and clears the overflow flag and stop_at. Only with
    /// no writer alive.
    pub fn reset(&self) {
        self.header(END_OFFSET).store(0, Ordering::Relaxed);
        self.header(COUNT_OFFSET).store(0, Ordering::Relaxed);
        self.header(OVERFLOW_OFFSET).store(0, Ordering::Relaxed);
        self.header(STOP_AT_OFFSET)
            .store(STOP_AT_NONE, Ordering::Release);
    }

    /// From now on, every entry this process appends carries the time
    /// `clock` reads under the writers' lock (a threaded trial's workload
    /// child sets its engine's clock here, so acknowledgements and storage
    /// operations are on one time line). Call it before the first record;
    /// a second clock is refused (returns false).
    pub fn stamp_with(&self, clock: Arc<dyn Clock>) -> bool {
        self.clock.set(clock).is_ok()
    }

    /// Bytes available for entries.
    pub fn capacity_bytes(&self) -> usize {
        self.map_len - HEADER_BYTES
    }

    /// Bytes of published entries.
    pub fn len_bytes(&self) -> usize {
        self.header(END_OFFSET).load(Ordering::Acquire) as usize
    }

    /// True once an event was refused for lack of room.
    pub fn overflowed(&self) -> bool {
        self.header(OVERFLOW_OFFSET).load(Ordering::Acquire) != 0
    }

    /// The index at which the child's recording storage must stop; the
    /// parent sets it before fork, the child passes it into its
    /// [`super::recording::FaultPlan`].
    pub fn set_stop_at(&self, stop_at: Option<u64>) {
        let value = stop_at.unwrap_or(STOP_AT_NONE);
        assert_ne!(Some(STOP_AT_NONE), stop_at, "stop_at u64::MAX is reserved");
        self.header(STOP_AT_OFFSET).store(value, Ordering::Release);
    }

    pub fn stop_at(&self) -> Option<u64> {
        let value = self.header(STOP_AT_OFFSET).load(Ordering::Acquire);
        (value != STOP_AT_NONE).then_some(value)
    }

    /// The published events, in order.
    pub fn try_events(&self) -> Result<Vec<Event>, TraceDecodeError> {
        self.try_timed_events().map(|(events, _)| events)
    }

    /// The published events, in order, and the time each was appended at
    /// (empty when the trace had no clock).
    pub fn try_timed_events(&self) -> Result<(Vec<Event>, Vec<u64>), TraceDecodeError> {
        if self.header(MAGIC_OFFSET).load(Ordering::Relaxed) != MAGIC {
            return Err(TraceDecodeError::BadMagic);
        }
        let end = self.len_bytes();
        assert!(
            end <= self.capacity_bytes(),
            "published end beyond capacity"
        );
        // SAFETY: bytes below the published end are fully written and never
        // rewritten while readers may look (Acquire above pairs with the
        // writer's Release).
        let bytes = unsafe { std::slice::from_raw_parts(self.data_ptr(), end) };
        decode_timed_entries(bytes)
    }

    /// The published events, in order; panics if the trace is malformed
    /// (only a harness bug can make it so).
    pub fn events(&self) -> Vec<Event> {
        self.try_events()
            .unwrap_or_else(|error| panic!("shared trace is malformed: {error}"))
    }

    fn header(&self, offset: usize) -> &AtomicU64 {
        assert!(offset + 8 <= HEADER_BYTES, "header field out of range");
        assert!(offset.is_multiple_of(8), "header field misaligned");
        // SAFETY: in bounds, 8-aligned (mmap is page-aligned), lives as long
        // as `self`; all header accesses are atomic.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER_BYTES < map_len (checked in `new`).
        unsafe { self.base.as_ptr().add(HEADER_BYTES) }
    }
}

impl Drop for SharedTrace {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our mapping; no reference outlives `self`.
        let result = unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        assert_eq!(result, 0, "munmap of the shared trace failed");
    }
}

impl std::fmt::Debug for SharedTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTrace")
            .field("capacity_bytes", &self.capacity_bytes())
            .field("len_bytes", &self.len_bytes())
            .field("overflowed", &self.overflowed())
            .finish()
    }
}

impl EventSink for SharedTrace {
    fn record(&self, event: Event) -> u64 {
        let mut scratch = self.writer.lock().expect("SharedTrace writer lock");
        if self.overflowed() {
            return NOT_RECORDED;
        }
        let time_us = self.clock.get().map(|clock| clock.now_us());
        encode_entry_at(&event, time_us, &mut scratch);
        let end = self.header(END_OFFSET).load(Ordering::Relaxed) as usize;
        if scratch.len() > self.capacity_bytes() - end {
            self.header(OVERFLOW_OFFSET).store(1, Ordering::Release);
            return NOT_RECORDED;
        }
        // SAFETY: `end + scratch.len()` is within the data area (checked
        // above); the region above the published end belongs to this writer
        // (we hold the lock) and no reader looks at it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                scratch.as_ptr(),
                self.data_ptr().add(end),
                scratch.len(),
            );
        }
        let index = self.header(COUNT_OFFSET).load(Ordering::Relaxed);
        self.header(COUNT_OFFSET)
            .store(index + 1, Ordering::Relaxed);
        let new_end = (end + scratch.len()) as u64;
        self.header(END_OFFSET).store(new_end, Ordering::Release);
        index
    }

    fn next_index(&self) -> Option<u64> {
        let _writer = self.writer.lock().expect("SharedTrace writer lock");
        Some(self.header(COUNT_OFFSET).load(Ordering::Relaxed))
    }

    fn overflowed(&self) -> bool {
        SharedTrace::overflowed(self)
    }
}

// --- encoding ---

const TAG_CREATE: u8 = 0;
const TAG_WRITE: u8 = 1;
const TAG_SET_LEN: u8 = 2;
const TAG_SYNC_DATA: u8 = 3;
const TAG_SYNC_ALL: u8 = 4;
const TAG_RENAME: u8 = 5;
const TAG_REMOVE: u8 = 6;
const TAG_SYNC_DIR: u8 = 7;
const TAG_COMMIT_ISSUED: u8 = 8;
const TAG_COMMIT_LOGGED: u8 = 9;
const TAG_ACKED: u8 = 10;
const TAG_COMMIT_FAILED: u8 = 11;
const TAG_CHECKPOINT_ISSUED: u8 = 12;
const TAG_CHECKPOINT_ACKED: u8 = 13;
const TAG_OPEN_ISSUED: u8 = 14;
const TAG_OPENED: u8 = 15;
const TAG_CREATE_DIR: u8 = 16;
const TAG_REMOVE_DIR: u8 = 17;
const TAG_LINK: u8 = 18;

/// Set in the tag byte of a timed entry (whose body ends with its time).
pub const TIMED: u8 = 0x80;

/// Encodes one entry (length prefix + body) into `out`, replacing it.
pub fn encode_entry(event: &Event, out: &mut Vec<u8>) {
    encode_entry_at(event, None, out);
}

/// Encodes one entry, timed when `time_us` is given, into `out`.
pub fn encode_entry_at(event: &Event, time_us: Option<u64>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    encode_body(event, out);
    if let Some(time_us) = time_us {
        out[4] |= TIMED;
        put_u64(out, time_us);
    }
    let body_len = out.len() - 4;
    assert!(body_len <= TRACE_ENTRY_BYTES_MAX, "trace entry too large");
    out[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
}

fn encode_body(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Create { name, file } => {
            out.push(TAG_CREATE);
            put_bytes(out, name.as_bytes());
            put_u32(out, *file);
        }
        Event::Write { file, offset, data } => {
            out.push(TAG_WRITE);
            put_u32(out, *file);
            put_u64(out, *offset);
            put_bytes(out, data);
        }
        Event::SetLen { file, len } => {
            out.push(TAG_SET_LEN);
            put_u32(out, *file);
            put_u64(out, *len);
        }
        Event::SyncData { file, failed } => {
            out.push(TAG_SYNC_DATA);
            put_u32(out, *file);
            out.push(u8::from(*failed));
        }
        Event::SyncAll { file, failed } => {
            out.push(TAG_SYNC_ALL);
            put_u32(out, *file);
            out.push(u8::from(*failed));
        }
        Event::Rename { from, to, file } => {
            out.push(TAG_RENAME);
            put_bytes(out, from.as_bytes());
            put_bytes(out, to.as_bytes());
            put_u32(out, *file);
        }
        Event::Remove { name, file } => {
            out.push(TAG_REMOVE);
            put_bytes(out, name.as_bytes());
            put_u32(out, *file);
        }
        Event::Link { from, to, file } => {
            out.push(TAG_LINK);
            put_bytes(out, from.as_bytes());
            put_bytes(out, to.as_bytes());
            put_u32(out, *file);
        }
        Event::SyncDir { dir, failed } => {
            out.push(TAG_SYNC_DIR);
            put_bytes(out, dir.as_bytes());
            out.push(u8::from(*failed));
        }
        Event::CreateDir { path } => {
            out.push(TAG_CREATE_DIR);
            put_bytes(out, path.as_bytes());
        }
        Event::RemoveDir { path } => {
            out.push(TAG_REMOVE_DIR);
            put_bytes(out, path.as_bytes());
        }
        Event::CommitIssued { txn, writes } => {
            out.push(TAG_COMMIT_ISSUED);
            put_u64(out, *txn);
            put_writes(out, writes);
        }
        Event::CommitLogged { txn, lsn } => {
            out.push(TAG_COMMIT_LOGGED);
            put_u64(out, *txn);
            match lsn {
                Some(lsn) => {
                    out.push(1);
                    put_u64(out, *lsn);
                }
                None => out.push(0),
            }
        }
        Event::Acked { txn, now_us } => {
            out.push(TAG_ACKED);
            put_u64(out, *txn);
            put_u64(out, *now_us);
        }
        Event::CommitFailed { txn } => {
            out.push(TAG_COMMIT_FAILED);
            put_u64(out, *txn);
        }
        Event::CheckpointIssued => out.push(TAG_CHECKPOINT_ISSUED),
        Event::CheckpointAcked => out.push(TAG_CHECKPOINT_ACKED),
        Event::OpenIssued => out.push(TAG_OPEN_ISSUED),
        Event::Opened => out.push(TAG_OPENED),
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("trace field longer than u32::MAX");
    put_u32(out, len);
    out.extend_from_slice(bytes);
}

fn put_writes(out: &mut Vec<u8>, writes: &[Write]) {
    let count = u32::try_from(writes.len()).expect("too many writes in one commit");
    put_u32(out, count);
    for (key, value) in writes {
        put_bytes(out, key);
        match value {
            Some(value) => {
                out.push(1);
                put_bytes(out, value);
            }
            None => out.push(0),
        }
    }
}

/// Decodes a sequence of entries (as published in the shared region).
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Event>, TraceDecodeError> {
    decode_timed_entries(bytes).map(|(events, _)| events)
}

/// Decodes a sequence of entries and their times: one per event when the
/// entries are timed, none when they are not (a mix, or a time earlier
/// than the one before, is an error: one clock stamps a whole trace).
pub fn decode_timed_entries(bytes: &[u8]) -> Result<(Vec<Event>, Vec<u64>), TraceDecodeError> {
    let mut events = Vec::new();
    let mut times: Vec<u64> = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let mut reader = Reader {
            bytes,
            pos: offset,
            entry: offset,
        };
        let body_len = reader.u32()? as usize;
        let body_end = reader
            .pos
            .checked_add(body_len)
            .filter(|end| *end <= bytes.len());
        let body_end = body_end.ok_or(TraceDecodeError::Truncated { offset })?;
        let mut body = Reader {
            bytes: &bytes[..body_end],
            pos: reader.pos,
            entry: offset,
        };
        let (event, time_us) = body.timed_event()?;
        match time_us {
            Some(time_us) if times.len() == events.len() => {
                if times.last().is_some_and(|&last| last > time_us) {
                    return Err(TraceDecodeError::TimeWentBack { offset, time_us });
                }
                times.push(time_us);
            }
            None if times.is_empty() => {}
            _ => {
                let what = if time_us.is_some() {
                    "timed"
                } else {
                    "untimed"
                };
                return Err(TraceDecodeError::MixedTimes { offset, what });
            }
        }
        events.push(event);
        if body.pos != body_end {
            return Err(TraceDecodeError::TrailingBytes {
                offset,
                extra: body_end - body.pos,
            });
        }
        offset = body_end;
    }
    Ok((events, times))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the entry being decoded starts (for errors).
    entry: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TraceDecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(TraceDecodeError::Truncated { offset: self.entry })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, TraceDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, TraceDecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, TraceDecodeError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, TraceDecodeError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn name(&mut self) -> Result<String, TraceDecodeError> {
        let entry = self.entry;
        String::from_utf8(self.bytes()?).map_err(|_| TraceDecodeError::BadName { offset: entry })
    }

    fn flag(&mut self) -> Result<bool, TraceDecodeError> {
        Ok(self.u8()? != 0)
    }

    fn writes(&mut self) -> Result<Vec<Write>, TraceDecodeError> {
        let count = self.u32()? as usize;
        // Each write takes at least 5 bytes: do not trust `count` for the
        // allocation.
        let mut writes = Vec::with_capacity(count.min(self.bytes.len() / 5));
        for _ in 0..count {
            let key = self.bytes()?;
            let value = if self.flag()? {
                Some(self.bytes()?)
            } else {
                None
            };
            writes.push((key, value));
        }
        Ok(writes)
    }

    /// One entry's event and, if the entry is timed, its time.
    fn timed_event(&mut self) -> Result<(Event, Option<u64>), TraceDecodeError> {
        let timed = self.bytes.get(self.pos).is_some_and(|tag| tag & TIMED != 0);
        let event = self.event()?;
        let time_us = if timed { Some(self.u64()?) } else { None };
        Ok((event, time_us))
    }

    fn event(&mut self) -> Result<Event, TraceDecodeError> {
        let tag = self.u8()? & !TIMED;
        let event = match tag {
            TAG_CREATE => Event::Create {
                name: self.name()?,
                file: self.u32()?,
            },
            TAG_WRITE => Event::Write {
                file: self.u32()?,
                offset: self.u64()?,
                data: self.bytes()?,
            },
            TAG_SET_LEN => Event::SetLen {
                file: self.u32()?,
                len: self.u64()?,
            },
            TAG_SYNC_DATA => Event::SyncData {
                file: self.u32()?,
                failed: self.flag()?,
            },
            TAG_SYNC_ALL => Event::SyncAll {
                file: self.u32()?,
                failed: self.flag()?,
            },
            TAG_RENAME => Event::Rename {
                from: self.name()?,
                to: self.name()?,
                file: self.u32()?,
            },
            TAG_REMOVE => Event::Remove {
                name: self.name()?,
                file: self.u32()?,
            },
            TAG_LINK => Event::Link {
                from: self.name()?,
                to: self.name()?,
                file: self.u32()?,
            },
            TAG_SYNC_DIR => Event::SyncDir {
                dir: self.name()?,
                failed: self.flag()?,
            },
            TAG_CREATE_DIR => Event::CreateDir { path: self.name()? },
            TAG_REMOVE_DIR => Event::RemoveDir { path: self.name()? },
            TAG_COMMIT_ISSUED => Event::CommitIssued {
                txn: self.u64()?,
                writes: self.writes()?,
            },
            TAG_COMMIT_LOGGED => Event::CommitLogged {
                txn: self.u64()?,
                lsn: if self.flag()? {
                    Some(self.u64()?)
                } else {
                    None
                },
            },
            TAG_ACKED => Event::Acked {
                txn: self.u64()?,
                now_us: self.u64()?,
            },
            TAG_COMMIT_FAILED => Event::CommitFailed { txn: self.u64()? },
            TAG_CHECKPOINT_ISSUED => Event::CheckpointIssued,
            TAG_CHECKPOINT_ACKED => Event::CheckpointAcked,
            TAG_OPEN_ISSUED => Event::OpenIssued,
            TAG_OPENED => Event::Opened,
            tag => {
                return Err(TraceDecodeError::UnknownTag {
                    offset: self.entry,
                    tag,
                });
            }
        };
        Ok(event)
    }
}
