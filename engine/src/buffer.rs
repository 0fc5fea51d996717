//! The page file and the buffer pool in front of it.
//!
//! The pool holds at most `pool_pages` decoded pages and evicts with the
//! clock algorithm. Policy: STEAL (a dirty page of an uncommitted
//! transaction may be written at eviction) and NO-FORCE (commit writes no
//! page). The write-ahead rule is enforced at every page write: the WAL is
//! made durable past the page's pageLSN first. Page writes are not synced
//! except by a checkpoint.
//!
//! Every page read from disk is verified (checksum and page id); a failure
//! is [`Error::Corruption`], never a wrong value. All pool work happens under
//! the engine's core lock, so frames need no pins — except a checkpoint's
//! page writes, which copy the page under the core lock and write the copy
//! outside it ([`BufferPool::copy_out`], [`PageFile::write`]): the frame is
//! marked clean at the copy and *writing* until the copy is written, and
//! an eviction meanwhile writes the frame itself. Page writes are ordered by
//! pageLSN: the page file never takes an older copy of a page over a newer
//! one this instance wrote, so a copy that lands late changes nothing.

use crate::Lsn;
use crate::error::{Error, Result};
use crate::fatal::io_error;
use crate::page::Page;
use crate::storage::{StorageFile, read_exact_at};
use crate::wal::Log;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The name of the page file.
pub const PAGES_FILE: &str = "pages";

/// The page file: `page_count` slots of `page_size` bytes.
pub struct PageFile {
    file: Box<dyn StorageFile>,
    pub page_size: usize,
    pub page_count: u32,
    /// Page writes since open.
    pub writes: AtomicU64,
    /// Where recovery found the log to end: a page on disk with an LSN at
    /// or past it, not written since open, depends on lost log records.
    recovered_end: AtomicU64,
    /// Pages written since open (their LSNs may reuse positions past
    /// `recovered_end` legitimately).
    written: Vec<AtomicBool>,
    /// The pageLSN of each page's last write since open, behind the lock
    /// every page write takes (see [`PageFile::write`]).
    written_lsn: Mutex<Vec<Lsn>>,
}

impl PageFile {
    pub fn new(file: Box<dyn StorageFile>, page_size: usize, page_count: u32) -> PageFile {
        PageFile {
            file,
            page_size,
            page_count,
            writes: AtomicU64::new(0),
            recovered_end: AtomicU64::new(Lsn::MAX),
            written: (0..page_count).map(|_| AtomicBool::new(false)).collect(),
            written_lsn: Mutex::new(vec![0; page_count as usize]),
        }
    }

    /// Records where recovery found the end of the log (see
    /// [`PageFile::read_within_log`]).
    pub fn set_recovered_end(&self, end: Lsn) {
        self.recovered_end.store(end, Ordering::Release);
    }

    fn offset(&self, id: u32) -> u64 {
        assert!(id < self.page_count, "page {id} out of range");
        u64::from(id) * self.page_size as u64
    }

    /// The raw bytes of page `id`.
    pub fn read_raw(&self, id: u32) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.page_size];
        read_exact_at(self.file.as_ref(), self.offset(id), &mut bytes)
            .map_err(io_error("read", PAGES_FILE))?;
        Ok(bytes)
    }

    /// Page `id`, verified; a failed check is corruption.
    pub fn read(&self, id: u32) -> Result<Page> {
        let bytes = self.read_raw(id)?;
        Page::decode(&bytes, id).map_err(|what| Error::Corruption {
            file: PAGES_FILE.to_string(),
            location: format!("page {id}"),
            what,
        })
    }

    /// Page `id`, verified, and checked against the end of the log: a page
    /// whose LSN is at or past `log_end` (the next LSN to be written), or —
    /// unless this instance wrote it — past where recovery found the log to
    /// end, depends on log records that are gone (media damage in the log,
    /// or a broken write-ahead rule). That is corruption, never something to
    /// build on.
    pub fn read_within_log(&self, id: u32, log_end: Lsn) -> Result<Page> {
        let page = self.read(id)?;
        let written = self.written[id as usize].load(Ordering::Acquire);
        let end = if written {
            log_end
        } else {
            log_end.min(self.recovered_end.load(Ordering::Acquire))
        };
        if page.lsn >= end && page.lsn != 0 {
            return Err(Error::Corruption {
                file: PAGES_FILE.to_string(),
                location: format!("page {id}"),
                what: format!(
                    "page LSN {:#x} is at or past the end of the log {end:#x}: the log lost records this page depends on",
                    page.lsn
                ),
            });
        }
        Ok(page)
    }

    /// Writes `page` to its slot (not synced) — unless this instance wrote
    /// a newer version of it already (a higher pageLSN: an eviction wrote
    /// the frame while a checkpoint's older copy was on its way). Returns
    /// whether it wrote. Page writes are serialized.
    pub fn write(&self, page: &Page) -> Result<bool> {
        let bytes = page.encode(self.page_size);
        assert_eq!(bytes.len(), self.page_size, "encoded page size");
        let id = page.id as usize;
        let mut written_lsn = self.written_lsn.lock().expect("page write lock poisoned");
        if self.written[id].load(Ordering::Acquire) && written_lsn[id] > page.lsn {
            return Ok(false);
        }
        self.file
            .write_at(self.offset(page.id), &bytes)
            .map_err(io_error("write", PAGES_FILE))?;
        written_lsn[id] = page.lsn;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.written[id].store(true, Ordering::Release);
        Ok(true)
    }

    /// Syncs the page file.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// A page in the pool.
pub struct Frame {
    pub page: Page,
    pub dirty: bool,
    /// While dirty: the recLSN, at or before the first record whose change
    /// the page file may lack (see [`crate::state::log_and_apply`]).
    pub rec_lsn: Lsn,
    referenced: bool,
    /// Copied out by a checkpoint, clean, and the copy not yet written: an
    /// eviction must write the frame (see [`BufferPool::copy_out`]).
    writing: bool,
}

impl Frame {
    /// Marks the frame dirty since `rec_lsn`, unless it already is (the
    /// older recLSN stays).
    pub fn mark_dirty(&mut self, rec_lsn: Lsn) {
        if !self.dirty {
            self.dirty = true;
            self.rec_lsn = rec_lsn;
        }
    }
}

/// At most `capacity` frames, clock eviction.
pub struct BufferPool {
    frames: Vec<Frame>,
    index: BTreeMap<u32, usize>,
    hand: usize,
    capacity: usize,
}

impl BufferPool {
    pub fn new(capacity: usize) -> BufferPool {
        assert!(capacity > 0, "empty buffer pool");
        BufferPool {
            frames: Vec::with_capacity(capacity),
            index: BTreeMap::new(),
            hand: 0,
            capacity,
        }
    }

    /// The cached frame of page `id`, if any.
    pub fn cached(&mut self, id: u32) -> Option<&mut Frame> {
        let slot = *self.index.get(&id)?;
        let frame = &mut self.frames[slot];
        frame.referenced = true;
        Some(frame)
    }

    /// Page `id`, from the pool or read (and verified) from disk.
    pub fn fetch(&mut self, id: u32, pages: &PageFile, log: &Log) -> Result<&mut Frame> {
        if let Some(&slot) = self.index.get(&id) {
            self.frames[slot].referenced = true;
            return Ok(&mut self.frames[slot]);
        }
        let page = pages.read_within_log(id, log.next_lsn())?;
        let slot = self.install(page, None, pages, log)?;
        Ok(&mut self.frames[slot])
    }

    /// Puts `page` in the pool, replacing a cached copy; returns its slot.
    /// `dirty_since`: the page is dirty with this recLSN.
    pub fn install(
        &mut self,
        page: Page,
        dirty_since: Option<Lsn>,
        pages: &PageFile,
        log: &Log,
    ) -> Result<usize> {
        if let Some(&slot) = self.index.get(&page.id) {
            let frame = &mut self.frames[slot];
            frame.page = page;
            if let Some(rec_lsn) = dirty_since {
                frame.mark_dirty(rec_lsn);
            }
            frame.referenced = true;
            return Ok(slot);
        }
        let frame = Frame {
            page,
            dirty: dirty_since.is_some(),
            rec_lsn: dirty_since.unwrap_or(0),
            referenced: true,
            writing: false,
        };
        let id = frame.page.id;
        let slot = if self.frames.len() < self.capacity {
            self.frames.push(frame);
            self.frames.len() - 1
        } else {
            let victim = self.choose_victim();
            self.write_back(victim, pages, log)?;
            let old = std::mem::replace(&mut self.frames[victim], frame);
            self.index.remove(&old.page.id);
            victim
        };
        self.index.insert(id, slot);
        assert!(self.frames.len() <= self.capacity, "pool over capacity");
        Ok(slot)
    }

    /// The clock: the first frame not referenced since the hand last passed.
    fn choose_victim(&mut self) -> usize {
        let sweeps_max = 2 * self.frames.len();
        for _ in 0..sweeps_max {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.frames.len();
            let frame = &mut self.frames[slot];
            if !frame.referenced {
                return slot;
            }
            frame.referenced = false;
        }
        unreachable!("the clock found no victim in two sweeps")
    }

    /// Writes frame `slot` if dirty (or copied out and not yet written),
    /// after the WAL is durable past its pageLSN (the write-ahead rule).
    fn write_back(&mut self, slot: usize, pages: &PageFile, log: &Log) -> Result<()> {
        let frame = &mut self.frames[slot];
        if !frame.dirty && !frame.writing {
            return Ok(());
        }
        log.flush_to(frame.page.lsn + 1)?;
        assert!(log.flushed_lsn() > frame.page.lsn, "write-ahead rule");
        pages.write(&frame.page)?;
        frame.dirty = false;
        frame.writing = false;
        Ok(())
    }

    /// The dirty page table: every dirty page and its recLSN, in page order.
    pub fn dirty_table(&self) -> Vec<(u32, Lsn)> {
        self.index
            .iter()
            .filter(|&(_, &slot)| self.frames[slot].dirty)
            .map(|(&id, &slot)| (id, self.frames[slot].rec_lsn))
            .collect()
    }

    /// Page `id`'s pageLSN if it is cached and dirty since before
    /// `rec_lsn_below` (a checkpoint's candidate for writing).
    pub fn dirty_before(&self, id: u32, rec_lsn_below: Lsn) -> Option<Lsn> {
        let frame = &self.frames[*self.index.get(&id)?];
        (frame.dirty && frame.rec_lsn < rec_lsn_below).then_some(frame.page.lsn)
    }

    /// A checkpoint's write of page `id`, step 1 (under the core lock): if
    /// it is cached and dirty, returns a copy and marks the frame clean and
    /// *writing*. The caller makes the WAL durable past the copy's pageLSN,
    /// writes the copy with [`PageFile::write`] outside the core lock, then
    /// calls [`BufferPool::copy_written`]. A change meanwhile dirties the
    /// frame again with its own recLSN (the copy holds everything before);
    /// an eviction meanwhile writes the frame itself, and the page file then
    /// refuses the older copy.
    pub fn copy_out(&mut self, id: u32) -> Option<Page> {
        let frame = &mut self.frames[*self.index.get(&id)?];
        if !frame.dirty {
            return None;
        }
        assert!(!frame.writing, "page {id} copied out twice");
        frame.dirty = false;
        frame.writing = true;
        Some(frame.page.clone())
    }

    /// Step 3 of a checkpoint's write (under the core lock): the copy of
    /// page `id` is written.
    pub fn copy_written(&mut self, id: u32) {
        if let Some(&slot) = self.index.get(&id) {
            self.frames[slot].writing = false;
        }
    }

    /// Step 3 of a checkpoint's write that failed (under the core lock):
    /// page `id`, dirty since `rec_lsn` when it was copied, is dirty again
    /// (since the older of that and a change after the copy). Not cached: an
    /// eviction wrote it meanwhile.
    pub fn copy_unwritten(&mut self, id: u32, rec_lsn: Lsn) {
        if let Some(&slot) = self.index.get(&id) {
            let frame = &mut self.frames[slot];
            frame.writing = false;
            frame.rec_lsn = if frame.dirty {
                frame.rec_lsn.min(rec_lsn)
            } else {
                rec_lsn
            };
            frame.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemStorage, Storage};

    /// A page write never replaces a newer version this instance wrote: a
    /// checkpoint's copy that lands after an eviction wrote the frame is
    /// refused, an equal or newer one goes through.
    #[test]
    fn page_writes_are_ordered_by_page_lsn() {
        let storage = MemStorage::new();
        let file = storage.create(PAGES_FILE).unwrap();
        let pages = PageFile::new(file, 1024, 4);
        let mut page = Page::empty(2);
        page.lsn = 500;
        assert!(pages.write(&page).unwrap());
        let mut stale = Page::empty(2);
        stale.lsn = 300;
        assert!(!pages.write(&stale).unwrap(), "an older copy is refused");
        assert_eq!(pages.read(2).unwrap().lsn, 500);
        assert!(pages.write(&page).unwrap(), "the same version again");
        page.lsn = 700;
        assert!(pages.write(&page).unwrap());
        assert_eq!(pages.read(2).unwrap().lsn, 700);
        // Another page is independent, and a page this instance never wrote
        // takes any version.
        stale.id = 3;
        assert!(pages.write(&stale).unwrap());
        assert_eq!(pages.writes.load(Ordering::Relaxed), 4);
    }
}
