//! The tag every value written by the workload carries, so the oracle can say
//! which transaction wrote a recovered value (or that none did).
//!
//! Layout: bytes `0..8` the workload transaction id (little endian), bytes
//! `8..12` the index of the write within its transaction (little endian),
//! then the payload.

use crate::fault::trace::WorkloadTxnId;

/// Bytes taken by the tag at the start of every value.
pub const TAG_LEN: usize = 12;

/// Who wrote a value, as its tag says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    pub txn: WorkloadTxnId,
    pub write_index: u32,
}

/// A value: the tag of (`txn`, `write_index`) followed by `payload`.
pub fn tagged_value(txn: WorkloadTxnId, write_index: u32, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(TAG_LEN + payload.len());
    value.extend_from_slice(&txn.to_le_bytes());
    value.extend_from_slice(&write_index.to_le_bytes());
    value.extend_from_slice(payload);
    debug_assert_eq!(read_tag(&value).map(|tag| tag.txn), Some(txn));
    value
}

/// The tag of `value`, or `None` if it is too short to carry one.
pub fn read_tag(value: &[u8]) -> Option<Tag> {
    let txn = value.get(0..8)?;
    let index = value.get(8..TAG_LEN)?;
    Some(Tag {
        txn: u64::from_le_bytes(txn.try_into().expect("8 bytes")),
        write_index: u32::from_le_bytes(index.try_into().expect("4 bytes")),
    })
}

/// The payload after the tag (empty if the value is shorter than a tag).
pub fn payload(value: &[u8]) -> &[u8] {
    value.get(TAG_LEN..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips() {
        let value = tagged_value(0x0102_0304_0506_0708, 7, b"payload");
        assert_eq!(
            read_tag(&value),
            Some(Tag {
                txn: 0x0102_0304_0506_0708,
                write_index: 7
            })
        );
        assert_eq!(payload(&value), b"payload");
        assert_eq!(read_tag(&value[..11]), None);
    }
}
