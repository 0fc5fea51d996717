//! The model of committed history for one crash cycle.
//!
//! Built from the cycle's base state (the state validated at the start of
//! the cycle, fully durable) and the events of a crash prefix
//! `events[0..k]`: the transactions in commit-issue order with their writes,
//! which were acknowledged (event index and virtual time), which failed, the
//! LSNs of their commit records, and the durable points (checkpoints that
//! returned Ok). Storage events and open/recovery events are ignored.
//!
//! The state after every prefix of the commit order is summarised by an
//! incremental 128-bit hash (one pass over the writes, no copy of the state
//! per prefix); a candidate prefix whose hash matches a recovered state is
//! then confirmed by one exact comparison.

use crate::fault::trace::{Event, WorkloadTxnId, Write};
use crate::target::State;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// When a commit was acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Index of the `Acked` event in the trace.
    pub event_index: usize,
    /// Virtual time of the acknowledgement.
    pub now_us: u64,
}

/// A transaction whose commit was issued (in the crash prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedTxn {
    pub txn: WorkloadTxnId,
    /// Writes in order; the last write of a key wins; `None` deletes.
    pub writes: Vec<Write>,
    /// Index of the `CommitIssued` event.
    pub issued_at: usize,
    /// The commit record's LSN, if the commit call returned in the prefix
    /// (or, for many threads, once the record was appended).
    pub lsn: Option<u64>,
    /// Index of the `CommitLogged` event, if it is in the prefix.
    pub logged_at: Option<usize>,
    /// The acknowledgement, if it happened in the prefix.
    pub ack: Option<Ack>,
    /// The commit call returned an error (it may or may not survive).
    pub failed: bool,
}

/// A checkpoint that returned Ok: every commit acknowledged before
/// `issued_at` must survive from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurablePoint {
    /// Index of the `CheckpointIssued` event.
    pub issued_at: usize,
    /// Index of the `CheckpointAcked` event.
    pub acked_at: usize,
}

/// The committed history of one crash prefix.
#[derive(Clone, Debug)]
pub struct History {
    base: State,
    txn_id_base: WorkloadTxnId,
    txns: Vec<CommittedTxn>,
    positions: HashMap<WorkloadTxnId, usize>,
    durable_points: Vec<DurablePoint>,
    /// `prefix_hashes[p]`: hash of the state after the first `p` txns.
    prefix_hashes: Vec<u128>,
}

impl History {
    /// The history of `events` (a crash prefix of one cycle's trace) over
    /// `base`; this cycle's workload txn ids start at `txn_id_base` (lower
    /// ids are earlier cycles', already in `base`).
    pub fn new(base: State, txn_id_base: WorkloadTxnId, events: &[Event]) -> History {
        let mut txns: Vec<CommittedTxn> = Vec::new();
        let mut positions = HashMap::new();
        let mut durable_points = Vec::new();
        let mut checkpoint_issued_at = None;
        for (index, event) in events.iter().enumerate() {
            match event {
                Event::CommitIssued { txn, writes } => {
                    let previous = positions.insert(*txn, txns.len());
                    assert!(previous.is_none(), "txn {txn} issued twice");
                    assert!(*txn >= txn_id_base, "txn {txn} below the cycle's base id");
                    txns.push(CommittedTxn {
                        txn: *txn,
                        writes: writes.clone(),
                        issued_at: index,
                        lsn: None,
                        logged_at: None,
                        ack: None,
                        failed: false,
                    });
                }
                Event::CommitLogged { txn, lsn } => {
                    if let Some(&position) = positions.get(txn) {
                        txns[position].lsn = *lsn;
                        txns[position].logged_at = Some(index);
                    }
                }
                Event::Acked { txn, now_us } => {
                    if let Some(&position) = positions.get(txn) {
                        txns[position].ack = Some(Ack {
                            event_index: index,
                            now_us: *now_us,
                        });
                    }
                }
                Event::CommitFailed { txn } => {
                    if let Some(&position) = positions.get(txn) {
                        txns[position].failed = true;
                    }
                }
                Event::CheckpointIssued => checkpoint_issued_at = Some(index),
                Event::CheckpointAcked => {
                    if let Some(issued_at) = checkpoint_issued_at.take() {
                        durable_points.push(DurablePoint {
                            issued_at,
                            acked_at: index,
                        });
                    }
                }
                _ => {}
            }
        }
        let prefix_hashes = prefix_hashes(&base, &txns);
        debug_assert_eq!(prefix_hashes.len(), txns.len() + 1);
        History {
            base,
            txn_id_base,
            txns,
            positions,
            durable_points,
            prefix_hashes,
        }
    }

    /// The same history in the order of the commit records in the log, for
    /// traces of many threads, where the order commits were issued in is
    /// not the order the log holds them in. The threaded driver records
    /// `CommitLogged` while the WAL is locked, so those events are in LSN
    /// order and precede any write of their record. A transaction with no
    /// `CommitLogged` that was acknowledged wrote no record (it only
    /// deleted absent keys, holding their locks): it stands where it was
    /// issued. One neither logged nor acknowledged was not appended in
    /// this prefix and cannot survive: those go last, in issue order.
    pub fn in_log_order(mut self) -> History {
        self.txns.sort_by_key(|txn| match (txn.logged_at, txn.ack) {
            (Some(logged_at), _) => (false, logged_at),
            (None, Some(_)) => (false, txn.issued_at),
            (None, None) => (true, txn.issued_at),
        });
        self.positions = self
            .txns
            .iter()
            .enumerate()
            .map(|(position, txn)| (txn.txn, position))
            .collect();
        self.prefix_hashes = prefix_hashes(&self.base, &self.txns);
        self
    }

    /// The durable state at the start of the cycle.
    pub fn base(&self) -> &State {
        &self.base
    }

    pub fn txn_id_base(&self) -> WorkloadTxnId {
        self.txn_id_base
    }

    /// Transactions in commit-issue order (in log order after
    /// [`History::in_log_order`]).
    pub fn txns(&self) -> &[CommittedTxn] {
        &self.txns
    }

    /// The position of `txn` in commit-issue order.
    pub fn position(&self, txn: WorkloadTxnId) -> Option<usize> {
        self.positions.get(&txn).copied()
    }

    pub fn durable_points(&self) -> &[DurablePoint] {
        &self.durable_points
    }

    /// True if `txn` was acknowledged before a completed durable point.
    pub fn acked_before_durable_point(&self, txn: &CommittedTxn) -> bool {
        let Some(ack) = txn.ack else { return false };
        self.durable_points
            .last()
            .is_some_and(|point| ack.event_index < point.issued_at)
    }

    /// The latest acknowledgement time in the prefix.
    pub fn last_ack_us(&self) -> Option<u64> {
        self.txns
            .iter()
            .filter_map(|t| t.ack.map(|a| a.now_us))
            .max()
    }

    /// The model: the base with the first `prefix_len` transactions applied.
    pub fn state_after(&self, prefix_len: usize) -> State {
        assert!(prefix_len <= self.txns.len(), "prefix beyond the history");
        let mut state = self.base.clone();
        for txn in &self.txns[..prefix_len] {
            apply(&mut state, &txn.writes);
        }
        state
    }

    /// The hash of [`History::state_after`]`(prefix_len)`.
    pub fn prefix_hash(&self, prefix_len: usize) -> u128 {
        self.prefix_hashes[prefix_len]
    }

    /// Every prefix length whose model equals `state` exactly, ascending.
    pub fn matching_prefixes(&self, state: &State) -> Vec<usize> {
        let hash = state_hash(state);
        (0..self.prefix_hashes.len())
            .filter(|&p| self.prefix_hashes[p] == hash)
            .filter(|&p| self.state_after(p) == *state)
            .collect()
    }
}

/// A hash of a whole state: the wrapping sum of its entries' hashes, so an
/// entry can be added or removed in O(1).
pub fn state_hash(state: &State) -> u128 {
    state.iter().fold(0u128, |sum, (key, value)| {
        sum.wrapping_add(entry_hash(key, value))
    })
}

fn entry_hash(key: &[u8], value: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        key.hash(&mut hasher);
        value.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

fn prefix_hashes(base: &State, txns: &[CommittedTxn]) -> Vec<u128> {
    let mut hashes = Vec::with_capacity(txns.len() + 1);
    let mut hash = state_hash(base);
    // Keys written so far → current value (None: deleted); others are base's.
    let mut overlay: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
    hashes.push(hash);
    for txn in txns {
        for (key, value) in &txn.writes {
            let old = match overlay.get(key.as_slice()) {
                Some(current) => *current,
                None => base.get(key).map(Vec::as_slice),
            };
            if let Some(old) = old {
                hash = hash.wrapping_sub(entry_hash(key, old));
            }
            if let Some(new) = value {
                hash = hash.wrapping_add(entry_hash(key, new));
            }
            overlay.insert(key, value.as_deref());
        }
        hashes.push(hash);
    }
    hashes
}

/// Applies a transaction's writes, in order, to `state`.
pub fn apply(state: &mut State, writes: &[Write]) {
    for (key, value) in writes {
        match value {
            Some(value) => state.insert(key.clone(), value.clone()),
            None => state.remove(key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Vec<Write> {
        vec![(key.as_bytes().to_vec(), Some(b"v".to_vec()))]
    }

    #[test]
    fn log_order_follows_the_commit_records_not_the_issue_order() {
        let events = vec![
            Event::CommitIssued {
                txn: 1,
                writes: put("a"),
            },
            Event::CommitIssued {
                txn: 4,
                writes: put("d"),
            },
            Event::CommitIssued {
                txn: 2,
                writes: put("b"),
            },
            Event::CommitLogged {
                txn: 2,
                lsn: Some(100),
            },
            Event::CommitLogged {
                txn: 1,
                lsn: Some(200),
            },
            // Deletes an absent key: acknowledged with no commit record.
            Event::CommitIssued {
                txn: 3,
                writes: vec![(b"c".to_vec(), None)],
            },
            Event::Acked { txn: 3, now_us: 5 },
            Event::Acked { txn: 2, now_us: 6 },
        ];
        let only_b: State = [(b"b".to_vec(), b"v".to_vec())].into_iter().collect();
        let issued = History::new(State::new(), 0, &events);
        assert!(issued.matching_prefixes(&only_b).is_empty());
        let logged = History::new(State::new(), 0, &events).in_log_order();
        let order: Vec<WorkloadTxnId> = logged.txns().iter().map(|txn| txn.txn).collect();
        // Logged in LSN order, then the acknowledged record-less one where
        // it was issued, then the one never appended.
        assert_eq!(order, vec![2, 1, 3, 4]);
        assert_eq!(logged.matching_prefixes(&only_b), vec![1]);
        assert_eq!(logged.position(4), Some(3));
        assert_eq!(logged.txns()[0].logged_at, Some(3));
    }
}
