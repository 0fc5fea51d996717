//! The WAL record format: encoding, decoding and validation.
//!
//! Every record (little endian):
//!
//! | offset | size | field                                                   |
//! |--------|------|---------------------------------------------------------|
//! | 0      | 4    | `total_len` (header + body)                             |
//! | 4      | 4    | CRC32C over bytes `[0..4)` and `[8..total_len)`         |
//! | 8      | 8    | `lsn`: the record's byte position in the WAL stream     |
//! | 16     | 8    | `prev_lsn`: the transaction's previous record, or none  |
//! | 24     | 8    | `txn` (0 for system records)                            |
//! | 32     | 1    | `kind`                                                  |
//! | 33     | 3    | zero                                                    |
//! | 36     | ...  | body, by kind                                           |
//!
//! Decoding borrows from the input buffer (no per-record allocation), so
//! recovery can scan a whole segment read in one call.

use crate::{Lsn, TxnId};

/// Bytes of the fixed record header.
pub const HEADER_LEN: usize = 36;
/// "No LSN": the `prev_lsn` of a transaction's first record, and the
/// `undo_next_lsn` of a CLR that undid a transaction's first update.
pub const NO_LSN: Lsn = u64::MAX;
/// The encoded size of a [`Body::SegmentEnd`] record; a segment always keeps
/// room for one.
pub const SEGMENT_END_LEN: usize = HEADER_LEN;
/// Fixed part of an update body (before key and images).
pub const UPDATE_FIXED_LEN: usize = 16;
/// Bytes per active transaction in a checkpoint body.
pub const CHECKPOINT_TXN_LEN: usize = 24;
/// Bytes per dirty page in a checkpoint body.
pub const CHECKPOINT_DIRTY_LEN: usize = 12;
/// Fixed part of a checkpoint body (before its two tables).
pub const CHECKPOINT_FIXED_LEN: usize = 32;
/// Largest record the format accepts (a sanity bound for the length field).
pub const RECORD_LEN_MAX: usize = 1 << 24;

/// Record kinds, as stored in the `kind` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Update = 1,
    Commit = 2,
    Abort = 3,
    Clr = 4,
    Checkpoint = 5,
    FullPageImage = 6,
    SegmentEnd = 7,
    CheckpointBegin = 8,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Update,
            2 => Kind::Commit,
            3 => Kind::Abort,
            4 => Kind::Clr,
            5 => Kind::Checkpoint,
            6 => Kind::FullPageImage,
            7 => Kind::SegmentEnd,
            8 => Kind::CheckpointBegin,
            _ => return None,
        })
    }
}

/// A physical operation on one slot of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Insert = 0,
    Replace = 1,
    Remove = 2,
}

impl Op {
    fn from_u8(byte: u8) -> Option<Op> {
        Some(match byte {
            0 => Op::Insert,
            1 => Op::Replace,
            2 => Op::Remove,
            _ => return None,
        })
    }
}

/// The body of an update (and of a CLR): what was done to which slot.
///
/// Layout: `page_id u32 | op u8 | flags u8 (1: before present, 2: after
/// present) | slot u16 | key_len u16 | before_len u16 | after_len u16 |
/// 2 zero bytes | key | before | after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateBody<'a> {
    pub page_id: u32,
    pub op: Op,
    pub slot: u16,
    pub key: &'a [u8],
    /// The value before (absent for an insert).
    pub before: Option<&'a [u8]>,
    /// The value after (absent for a remove).
    pub after: Option<&'a [u8]>,
}

impl UpdateBody<'_> {
    fn encoded_len(&self) -> usize {
        UPDATE_FIXED_LEN
            + self.key.len()
            + self.before.map_or(0, <[u8]>::len)
            + self.after.map_or(0, <[u8]>::len)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        assert_eq!(
            self.op == Op::Insert,
            self.before.is_none(),
            "insert has no before image"
        );
        assert_eq!(
            self.op == Op::Remove,
            self.after.is_none(),
            "remove has no after image"
        );
        let flags = u8::from(self.before.is_some()) | (u8::from(self.after.is_some()) << 1);
        out.extend_from_slice(&self.page_id.to_le_bytes());
        out.push(self.op as u8);
        out.push(flags);
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&len16(self.key.len()).to_le_bytes());
        out.extend_from_slice(&len16(self.before.map_or(0, <[u8]>::len)).to_le_bytes());
        out.extend_from_slice(&len16(self.after.map_or(0, <[u8]>::len)).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.before.unwrap_or(&[]));
        out.extend_from_slice(self.after.unwrap_or(&[]));
    }

    fn decode(body: &[u8]) -> Result<UpdateBody<'_>, &'static str> {
        if body.len() < UPDATE_FIXED_LEN {
            return Err("update body shorter than its fixed part");
        }
        let op = Op::from_u8(body[4]).ok_or("unknown update op")?;
        let flags = body[5];
        if flags & !3 != 0 || body[14] != 0 || body[15] != 0 {
            return Err("nonzero reserved bits in update body");
        }
        let has_before = flags & 1 != 0;
        let has_after = flags & 2 != 0;
        if has_before != (op != Op::Insert) || has_after != (op != Op::Remove) {
            return Err("update images do not match its op");
        }
        let key_len = usize::from(u16_at(body, 8));
        let before_len = usize::from(u16_at(body, 10));
        let after_len = usize::from(u16_at(body, 12));
        if (!has_before && before_len != 0) || (!has_after && after_len != 0) {
            return Err("absent image with a length");
        }
        if UPDATE_FIXED_LEN + key_len + before_len + after_len != body.len() {
            return Err("update lengths do not add up to the body");
        }
        let key_end = UPDATE_FIXED_LEN + key_len;
        let before_end = key_end + before_len;
        Ok(UpdateBody {
            page_id: u32_at(body, 0),
            op,
            slot: u16_at(body, 6),
            key: &body[UPDATE_FIXED_LEN..key_end],
            before: has_before.then(|| &body[key_end..before_end]),
            after: has_after.then(|| &body[before_end..]),
        })
    }
}

/// A transaction active at a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTxn {
    pub txn: TxnId,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
}

/// A page dirty at a checkpoint's begin and not written by it: redo must
/// start at or before `rec_lsn` (the LSN from which the page's changes may
/// be missing from the page file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirtyPage {
    pub page_id: u32,
    pub rec_lsn: Lsn,
}

/// A record's body, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Update(UpdateBody<'a>),
    Commit,
    /// The end of a rollback: every update of the transaction is undone.
    Abort,
    /// A compensation record: the physical op undo applied, and the next
    /// record of the transaction still to undo.
    Clr {
        undo_next_lsn: Lsn,
        update: UpdateBody<'a>,
    },
    /// The start of a fuzzy checkpoint (no body). Analysis starts here; the
    /// tables of the matching [`Body::Checkpoint`] are as of this record.
    CheckpointBegin,
    /// The end of a fuzzy checkpoint: `begin_lsn u64 | redo_lsn u64 |
    /// next_txn u64 | active count u32 | dirty count u32 | active x (txn,
    /// first_lsn, last_lsn) u64 each | dirty x (page_id u32, rec_lsn u64)`.
    /// `active` and `next_txn` are as of the begin record; `dirty` is the
    /// dirty page table of the begin record less the pages the checkpoint
    /// wrote; `redo_lsn` is min(`begin_lsn`, every `rec_lsn`).
    Checkpoint {
        begin_lsn: Lsn,
        redo_lsn: Lsn,
        next_txn: TxnId,
        active: Vec<ActiveTxn>,
        dirty: Vec<DirtyPage>,
    },
    /// `page_id u32 | 4 zero bytes | the page image`, up to the page's last
    /// entry: the zeros after it (the page's hole) are not logged, redo puts
    /// them back. A whole page (hole included) decodes the same.
    FullPageImage {
        page_id: u32,
        image: &'a [u8],
    },
    /// The rest of this segment is unused; the log goes on in the next.
    SegmentEnd,
}

impl Body<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Update(_) => Kind::Update,
            Body::Commit => Kind::Commit,
            Body::Abort => Kind::Abort,
            Body::Clr { .. } => Kind::Clr,
            Body::Checkpoint { .. } => Kind::Checkpoint,
            Body::FullPageImage { .. } => Kind::FullPageImage,
            Body::SegmentEnd => Kind::SegmentEnd,
            Body::CheckpointBegin => Kind::CheckpointBegin,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Body::Update(update) => update.encoded_len(),
            Body::Commit | Body::Abort | Body::SegmentEnd | Body::CheckpointBegin => 0,
            Body::Clr { update, .. } => 8 + update.encoded_len(),
            Body::Checkpoint { active, dirty, .. } => {
                CHECKPOINT_FIXED_LEN
                    + CHECKPOINT_TXN_LEN * active.len()
                    + CHECKPOINT_DIRTY_LEN * dirty.len()
            }
            Body::FullPageImage { image, .. } => 8 + image.len(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Body::Update(update) => update.encode(out),
            Body::Commit | Body::Abort | Body::SegmentEnd | Body::CheckpointBegin => {}
            Body::Clr {
                undo_next_lsn,
                update,
            } => {
                out.extend_from_slice(&undo_next_lsn.to_le_bytes());
                update.encode(out);
            }
            Body::Checkpoint {
                begin_lsn,
                redo_lsn,
                next_txn,
                active,
                dirty,
            } => {
                let active_count = u32::try_from(active.len()).expect("checkpoint txn count");
                let dirty_count = u32::try_from(dirty.len()).expect("checkpoint dirty count");
                out.extend_from_slice(&begin_lsn.to_le_bytes());
                out.extend_from_slice(&redo_lsn.to_le_bytes());
                out.extend_from_slice(&next_txn.to_le_bytes());
                out.extend_from_slice(&active_count.to_le_bytes());
                out.extend_from_slice(&dirty_count.to_le_bytes());
                for txn in active {
                    out.extend_from_slice(&txn.txn.to_le_bytes());
                    out.extend_from_slice(&txn.first_lsn.to_le_bytes());
                    out.extend_from_slice(&txn.last_lsn.to_le_bytes());
                }
                for page in dirty {
                    out.extend_from_slice(&page.page_id.to_le_bytes());
                    out.extend_from_slice(&page.rec_lsn.to_le_bytes());
                }
            }
            Body::FullPageImage { page_id, image } => {
                out.extend_from_slice(&page_id.to_le_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(image);
            }
        }
    }

    fn decode(kind: Kind, body: &[u8]) -> Result<Body<'_>, &'static str> {
        match kind {
            Kind::Update => Ok(Body::Update(UpdateBody::decode(body)?)),
            Kind::Commit | Kind::Abort | Kind::SegmentEnd | Kind::CheckpointBegin => {
                if !body.is_empty() {
                    return Err("body on a record kind that has none");
                }
                Ok(match kind {
                    Kind::Commit => Body::Commit,
                    Kind::Abort => Body::Abort,
                    Kind::CheckpointBegin => Body::CheckpointBegin,
                    _ => Body::SegmentEnd,
                })
            }
            Kind::Clr => {
                if body.len() < 8 {
                    return Err("CLR body too short");
                }
                Ok(Body::Clr {
                    undo_next_lsn: u64_at(body, 0),
                    update: UpdateBody::decode(&body[8..])?,
                })
            }
            Kind::Checkpoint => {
                if body.len() < CHECKPOINT_FIXED_LEN {
                    return Err("checkpoint body malformed");
                }
                let active_count = u32_at(body, 24) as usize;
                let dirty_count = u32_at(body, 28) as usize;
                let dirty_at = CHECKPOINT_FIXED_LEN + active_count * CHECKPOINT_TXN_LEN;
                if body.len() != dirty_at + dirty_count * CHECKPOINT_DIRTY_LEN {
                    return Err("checkpoint body length does not match its counts");
                }
                let active = decode_table(
                    body,
                    CHECKPOINT_FIXED_LEN,
                    active_count,
                    CHECKPOINT_TXN_LEN,
                    |entry| ActiveTxn {
                        txn: u64_at(entry, 0),
                        first_lsn: u64_at(entry, 8),
                        last_lsn: u64_at(entry, 16),
                    },
                );
                let dirty =
                    decode_table(body, dirty_at, dirty_count, CHECKPOINT_DIRTY_LEN, |entry| {
                        DirtyPage {
                            page_id: u32_at(entry, 0),
                            rec_lsn: u64_at(entry, 4),
                        }
                    });
                Ok(Body::Checkpoint {
                    begin_lsn: u64_at(body, 0),
                    redo_lsn: u64_at(body, 8),
                    next_txn: u64_at(body, 16),
                    active,
                    dirty,
                })
            }
            Kind::FullPageImage => {
                if body.len() < 8 || body[4..8] != [0; 4] {
                    return Err("full-page image body malformed");
                }
                Ok(Body::FullPageImage {
                    page_id: u32_at(body, 0),
                    image: &body[8..],
                })
            }
        }
    }
}

/// `count` entries of `entry_len` bytes from `at` in `body` (its length was
/// checked against the counts), each decoded by `entry`.
fn decode_table<T>(
    body: &[u8],
    at: usize,
    count: usize,
    entry_len: usize,
    entry: impl Fn(&[u8]) -> T,
) -> Vec<T> {
    assert!(
        at + count * entry_len <= body.len(),
        "table within the body"
    );
    body[at..at + count * entry_len]
        .chunks_exact(entry_len)
        .map(entry)
        .collect()
}

/// One WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub lsn: Lsn,
    pub prev_lsn: Lsn,
    pub txn: TxnId,
    pub body: Body<'a>,
}

impl Record<'_> {
    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len()
    }

    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let total_len = self.encoded_len();
        assert!(total_len <= RECORD_LEN_MAX, "record of {total_len} bytes");
        out.extend_from_slice(&(total_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&self.prev_lsn.to_le_bytes());
        out.extend_from_slice(&self.txn.to_le_bytes());
        out.push(self.body.kind() as u8);
        out.extend_from_slice(&[0; 3]);
        self.body.encode(out);
        assert_eq!(out.len() - start, total_len, "record encoded to its length");
        let crc = record_crc(&out[start..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Why bytes at a position are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header remain (`available` of them).
    ShortHeader { available: usize },
    /// The length field is impossible: too small, too large, or running past
    /// the available bytes.
    BadLength { total_len: u32, available: usize },
    /// The checksum does not match; `total_len` was plausible.
    BadCrc { total_len: u32 },
    /// The LSN field is not the record's position; `total_len` was plausible.
    BadLsn { total_len: u32, found: Lsn },
    /// Unknown kind, nonzero padding or a malformed body.
    BadBody { total_len: u32, what: &'static str },
}

impl DecodeError {
    /// The record length if it was plausible (a bad record that could be
    /// skipped over: what the `replay-past-torn` bug does).
    pub fn plausible_len(&self) -> Option<usize> {
        match self {
            DecodeError::ShortHeader { .. } | DecodeError::BadLength { .. } => None,
            DecodeError::BadCrc { total_len }
            | DecodeError::BadLsn { total_len, .. }
            | DecodeError::BadBody { total_len, .. } => Some(*total_len as usize),
        }
    }

    /// In words, for the recovery report.
    pub fn describe(&self) -> String {
        match self {
            DecodeError::ShortHeader { available: 0 } => "end of written log".to_string(),
            DecodeError::ShortHeader { available } => {
                format!("torn record header ({available} bytes)")
            }
            DecodeError::BadLength {
                total_len,
                available,
            } if *total_len == 0 => {
                format!("zero length field ({available} bytes follow)")
            }
            DecodeError::BadLength {
                total_len,
                available,
            } => format!("bad length {total_len} ({available} bytes available)"),
            DecodeError::BadCrc { .. } => "bad CRC".to_string(),
            DecodeError::BadLsn { found, .. } => format!("LSN field {found:#x} does not match"),
            DecodeError::BadBody { what, .. } => format!("malformed record ({what})"),
        }
    }
}

/// Decodes the record at the start of `bytes`, which sits at `lsn`.
/// `check_crc` false skips the checksum (the `no-crc-check` bug).
pub fn decode(bytes: &[u8], lsn: Lsn, check_crc: bool) -> Result<Record<'_>, DecodeError> {
    decode_checked(bytes, lsn, check_crc, true)
}

/// [`decode`], with the check that the record's LSN field is its position
/// made optional: without it (the `stale-recycled-record` bug) a record
/// left in a recycled segment by its previous life passes for a new one.
pub fn decode_checked(
    bytes: &[u8],
    lsn: Lsn,
    check_crc: bool,
    check_lsn: bool,
) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader {
            available: bytes.len(),
        });
    }
    let total_len = u32_at(bytes, 0);
    let len = total_len as usize;
    if !(HEADER_LEN..=RECORD_LEN_MAX).contains(&len) || len > bytes.len() {
        return Err(DecodeError::BadLength {
            total_len,
            available: bytes.len(),
        });
    }
    let record = &bytes[..len];
    if check_crc && record_crc(record) != u32_at(record, 4) {
        return Err(DecodeError::BadCrc { total_len });
    }
    let found = u64_at(record, 8);
    if check_lsn && found != lsn {
        return Err(DecodeError::BadLsn { total_len, found });
    }
    let bad_body = |what| DecodeError::BadBody { total_len, what };
    let kind = Kind::from_u8(record[32]).ok_or(bad_body("unknown record kind"))?;
    if record[33..36] != [0; 3] {
        return Err(bad_body("nonzero header padding"));
    }
    let body = Body::decode(kind, &record[HEADER_LEN..]).map_err(bad_body)?;
    Ok(Record {
        lsn,
        prev_lsn: u64_at(record, 16),
        txn: u64_at(record, 24),
        body,
    })
}

/// The CRC32C of a record: over the length field and everything after the
/// CRC field.
pub fn record_crc(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[0..4]);
    crc32c::crc32c_append(crc, &record[8..])
}

fn len16(len: usize) -> u16 {
    u16::try_from(len).expect("key or value longer than 65535 bytes")
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        let update = UpdateBody {
            page_id: 7,
            op: Op::Replace,
            slot: 3,
            key: b"key",
            before: Some(b"old"),
            after: Some(b"new value"),
        };
        let bodies = vec![
            Body::Update(update),
            Body::Update(UpdateBody {
                op: Op::Insert,
                before: None,
                ..update
            }),
            Body::Update(UpdateBody {
                op: Op::Remove,
                after: None,
                ..update
            }),
            Body::Commit,
            Body::Abort,
            Body::Clr {
                undo_next_lsn: NO_LSN,
                update,
            },
            Body::Checkpoint {
                begin_lsn: 0x900,
                redo_lsn: 0x300,
                next_txn: 9,
                active: vec![ActiveTxn {
                    txn: 4,
                    first_lsn: 100,
                    last_lsn: 200,
                }],
                dirty: vec![
                    DirtyPage {
                        page_id: 3,
                        rec_lsn: 0x300,
                    },
                    DirtyPage {
                        page_id: 9,
                        rec_lsn: 0x500,
                    },
                ],
            },
            Body::CheckpointBegin,
            Body::FullPageImage {
                page_id: 2,
                image: &[5; 64],
            },
            Body::SegmentEnd,
        ];
        bodies
            .into_iter()
            .map(|body| Record {
                lsn: 0x1000,
                prev_lsn: 0x800,
                txn: 3,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for record in samples() {
            let mut bytes = Vec::new();
            record.encode(&mut bytes);
            assert_eq!(bytes.len(), record.encoded_len());
            assert_eq!(decode(&bytes, 0x1000, true).unwrap(), record);
        }
    }

    #[test]
    fn every_field_corruption_is_detected() {
        for record in samples() {
            let mut bytes = Vec::new();
            record.encode(&mut bytes);
            // Every single-byte flip anywhere is caught (by the CRC at least).
            for at in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[at] ^= 0x10;
                assert!(decode(&bad, 0x1000, true).is_err(), "flip at {at}");
            }
            // The wrong position is caught even without the CRC.
            assert!(matches!(
                decode(&bytes, 0x2000, false),
                Err(DecodeError::BadLsn { .. })
            ));
            // A torn (short) record is caught by its length.
            assert!(matches!(
                decode(&bytes[..bytes.len() - 1], 0x1000, true),
                Err(DecodeError::BadLength { .. } | DecodeError::ShortHeader { .. })
            ));
            // An unknown kind is caught even without the CRC.
            let mut bad_kind = bytes.clone();
            bad_kind[32] = 99;
            assert!(matches!(
                decode(&bad_kind, 0x1000, false),
                Err(DecodeError::BadBody { .. })
            ));
            // A body byte: caught by the CRC.
            if bytes.len() > HEADER_LEN {
                let mut bad_body = bytes.clone();
                *bad_body.last_mut().unwrap() ^= 1;
                assert!(matches!(
                    decode(&bad_body, 0x1000, true),
                    Err(DecodeError::BadCrc { .. })
                ));
            }
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        let zeros = [0u8; 100];
        assert!(matches!(
            decode(&zeros, 0, false),
            Err(DecodeError::BadLength { total_len: 0, .. })
        ));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn update_round_trips(
                lsn in any::<u64>(),
                prev in any::<u64>(),
                txn in any::<u64>(),
                page_id in any::<u32>(),
                slot in any::<u16>(),
                key in proptest::collection::vec(any::<u8>(), 0..64),
                before in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                after in proptest::collection::vec(any::<u8>(), 0..300),
                clr in any::<bool>(),
            ) {
                let op = if before.is_some() { Op::Replace } else { Op::Insert };
                let update = UpdateBody {
                    page_id, op, slot, key: &key,
                    before: before.as_deref(), after: Some(&after),
                };
                let body = if clr {
                    Body::Clr { undo_next_lsn: prev ^ 1, update }
                } else {
                    Body::Update(update)
                };
                let record = Record { lsn, prev_lsn: prev, txn, body };
                let mut bytes = vec![1, 2, 3];
                record.encode(&mut bytes);
                prop_assert_eq!(decode(&bytes[3..], lsn, true).unwrap(), record);
            }
        }
    }
}
