//! The data page format and the in-memory page.
//!
//! A page on disk (little endian), `page_size` bytes:
//!
//! | offset | size | field                                             |
//! |--------|------|---------------------------------------------------|
//! | 0      | 4    | CRC32C over bytes `[4..page_size)`                |
//! | 4      | 4    | `page_id`                                         |
//! | 8      | 8    | `page_lsn`: LSN of the last record applied        |
//! | 16     | 2    | `entry_count`                                     |
//! | 18     | 2    | reserved, zero                                    |
//! | 20     | ...  | entries sorted by key: `key_len u16, val_len u16, key, value` |
//! |        |      | then zeros to the end of the page                 |
//!
//! An all-zero page is a valid empty page (a fresh page file). Every read
//! from disk checks the CRC and the page id: a misdirected or torn write is
//! corruption, never a wrong value.
//!
//! In memory a page is decoded into a sorted entry vector; the physical
//! operations (insert/replace/remove at a slot) are what update records and
//! CLRs carry, and redo applies them only after checking they make sense.

use crate::Lsn;
use crate::wal::record::{Op, u16_at, u32_at, u64_at};

/// Bytes of the page header.
pub const PAGE_HEADER_LEN: usize = 20;
/// Bytes of an entry's header (key_len, val_len).
pub const ENTRY_HEADER_LEN: usize = 4;

/// The bytes an entry takes in a page.
pub fn entry_len(key_len: usize, value_len: usize) -> usize {
    ENTRY_HEADER_LEN + key_len + value_len
}

/// The page a key lives on.
pub fn page_of(key: &[u8], page_count: u32) -> u32 {
    crc32c::crc32c(key) % page_count
}

/// A decoded page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub id: u32,
    pub lsn: Lsn,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes used, header included.
    used: usize,
}

impl Page {
    /// An empty page.
    pub fn empty(id: u32) -> Page {
        Page {
            id,
            lsn: 0,
            entries: Vec::new(),
            used: PAGE_HEADER_LEN,
        }
    }

    /// Bytes used, header included.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn entries(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.entries
    }

    /// `Ok(slot)` of `key`, or `Err(slot)` where it would be inserted.
    pub fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key)
            .ok()
            .map(|slot| self.entries[slot].1.as_slice())
    }

    pub fn value_at(&self, slot: usize) -> &[u8] {
        &self.entries[slot].1
    }

    /// Applies a physical operation, checking first that it fits the page as
    /// it is (right slot, right key, room). An operation applied twice (redo
    /// without the pageLSN check) fails here or visibly changes the page.
    /// On failure the page is unchanged.
    pub fn apply(
        &mut self,
        op: Op,
        slot: usize,
        key: &[u8],
        after: Option<&[u8]>,
        page_size: usize,
    ) -> Result<(), String> {
        let used = self.check(op, slot, key, after, page_size)?;
        match op {
            Op::Insert => {
                let value = after.expect("checked: insert has a value");
                self.entries.insert(slot, (key.to_vec(), value.to_vec()));
            }
            Op::Replace => {
                let value = after.expect("checked: replace has a value");
                let stored = &mut self.entries[slot].1;
                stored.clear();
                stored.extend_from_slice(value);
            }
            Op::Remove => {
                self.entries.remove(slot);
            }
        }
        self.used = used;
        Ok(())
    }

    /// Checks, without changing the page, that [`Page::apply`] with the
    /// same arguments would succeed; returns the bytes used after it.
    pub fn check(
        &self,
        op: Op,
        slot: usize,
        key: &[u8],
        after: Option<&[u8]>,
        page_size: usize,
    ) -> Result<usize, String> {
        let count = self.entries.len();
        match op {
            Op::Insert => {
                let value = after.ok_or("insert without a value")?;
                if slot > count {
                    return Err(format!("insert at slot {slot} of {count}"));
                }
                if slot > 0 && self.entries[slot - 1].0.as_slice() >= key {
                    return Err(format!("insert at slot {slot} breaks key order"));
                }
                if slot < count && self.entries[slot].0.as_slice() <= key {
                    return Err(format!(
                        "insert at slot {slot} duplicates or breaks key order"
                    ));
                }
                let grown = self.used + entry_len(key.len(), value.len());
                if grown > page_size {
                    return Err(format!("insert needs {grown} bytes of {page_size}"));
                }
                Ok(grown)
            }
            Op::Replace => {
                let value = after.ok_or("replace without a value")?;
                self.check_slot(slot, key)?;
                let old = self.entries[slot].1.len();
                let resized = self.used - old + value.len();
                if resized > page_size {
                    return Err(format!("replace needs {resized} bytes of {page_size}"));
                }
                Ok(resized)
            }
            Op::Remove => {
                self.check_slot(slot, key)?;
                let (k, v) = &self.entries[slot];
                Ok(self.used - entry_len(k.len(), v.len()))
            }
        }
    }

    fn check_slot(&self, slot: usize, key: &[u8]) -> Result<(), String> {
        match self.entries.get(slot) {
            Some((k, _)) if k.as_slice() == key => Ok(()),
            Some(_) => Err(format!("slot {slot} holds another key")),
            None => Err(format!("slot {slot} of {} is empty", self.entries.len())),
        }
    }

    /// Encodes the page into `page_size` bytes with its checksum.
    pub fn encode(&self, page_size: usize) -> Vec<u8> {
        assert!(self.used <= page_size, "page {} overfull", self.id);
        assert!(
            self.entries.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "page {} entries not sorted and unique",
            self.id
        );
        let mut bytes = Vec::with_capacity(page_size);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&self.id.to_le_bytes());
        bytes.extend_from_slice(&self.lsn.to_le_bytes());
        let count = u16::try_from(self.entries.len()).expect("entry count");
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0; 2]);
        for (key, value) in &self.entries {
            bytes.extend_from_slice(&(key.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(value);
        }
        assert_eq!(bytes.len(), self.used, "page {} used bytes", self.id);
        bytes.resize(page_size, 0);
        let crc = crc32c::crc32c(&bytes[4..]);
        bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and verifies a page read from slot `id` of the page file.
    /// Pages are formatted at creation, so an all-zero page is corruption.
    pub fn decode(bytes: &[u8], id: u32) -> Result<Page, String> {
        if is_all_zero(bytes) {
            return Err(format!(
                "page {id} is all zeros (wiped, or never formatted)"
            ));
        }
        if bytes.len() < PAGE_HEADER_LEN {
            return Err("page shorter than its header".to_string());
        }
        let crc = crc32c::crc32c(&bytes[4..]);
        if crc != u32_at(bytes, 0) {
            return Err(format!("page {id}: bad checksum"));
        }
        let stored_id = u32_at(bytes, 4);
        if stored_id != id {
            return Err(format!("page {id}: holds page id {stored_id}"));
        }
        let count = usize::from(u16_at(bytes, 16));
        let mut entries = Vec::with_capacity(count);
        let mut at = PAGE_HEADER_LEN;
        for _ in 0..count {
            if at + ENTRY_HEADER_LEN > bytes.len() {
                return Err(format!("page {id}: entry header past the end"));
            }
            let key_len = usize::from(u16_at(bytes, at));
            let value_len = usize::from(u16_at(bytes, at + 2));
            let end = at + entry_len(key_len, value_len);
            if end > bytes.len() {
                return Err(format!("page {id}: entry past the end"));
            }
            let key = bytes[at + ENTRY_HEADER_LEN..at + ENTRY_HEADER_LEN + key_len].to_vec();
            let value = bytes[at + ENTRY_HEADER_LEN + key_len..end].to_vec();
            entries.push((key, value));
            at = end;
        }
        if !entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(format!("page {id}: entries not sorted and unique"));
        }
        Ok(Page {
            id,
            lsn: u64_at(bytes, 8),
            entries,
            used: at,
        })
    }
}

/// True if every byte is zero; compares a word at a time, since every read
/// checks.
fn is_all_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let words_zero = words
        .by_ref()
        .all(|word| u64::from_ne_bytes(word.try_into().expect("8 bytes")) == 0);
    words_zero && words.remainder().iter().all(|byte| *byte == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let mut page = Page::empty(3);
        page.apply(Op::Insert, 0, b"b", Some(b"2"), 256).unwrap();
        page.apply(Op::Insert, 0, b"a", Some(b"1"), 256).unwrap();
        page.apply(Op::Replace, 1, b"b", Some(b"22"), 256).unwrap();
        page.lsn = 77;
        let bytes = page.encode(256);
        assert_eq!(Page::decode(&bytes, 3).unwrap(), page);
        assert!(Page::decode(&bytes, 4).is_err(), "page id checked");
        let mut torn = bytes.clone();
        torn[30] ^= 1;
        assert!(Page::decode(&torn, 3).is_err(), "checksum checked");
        // A wiped page (a lost or misdirected write of zeros) is not a
        // silently empty page: pages are formatted at creation.
        assert!(Page::decode(&[0; 256], 9).is_err(), "all-zero page refused");
        let empty = Page::empty(9).encode(256);
        assert_eq!(Page::decode(&empty, 9).unwrap(), Page::empty(9));
    }

    #[test]
    fn applying_twice_breaks_visibly() {
        let mut page = Page::empty(0);
        page.apply(Op::Insert, 0, b"a", Some(b"1"), 256).unwrap();
        assert!(page.apply(Op::Insert, 0, b"a", Some(b"1"), 256).is_err());
        page.apply(Op::Remove, 0, b"a", None, 256).unwrap();
        assert!(page.apply(Op::Remove, 0, b"a", None, 256).is_err());
        assert!(
            page.apply(Op::Insert, 0, b"big", Some(&[0; 300]), 256)
                .is_err()
        );
    }
}
