//! The transaction table, key write locks and undo-space reservations.
//!
//! Concurrency control is deliberately simple: a per-key write lock, taken
//! by put/delete and held to commit/abort, no waiting ([`Error::Conflict`]).
//! Reads take no lock: a transaction sees its own writes (they are in the
//! page) and, for other keys, whatever the page holds — including other
//! transactions' uncommitted writes (read-uncommitted across transactions).
//!
//! Reservations: an uncommitted delete or shrink frees page space that its
//! undo will need back. The bytes freed are reserved per (transaction, page)
//! and count as used for every other transaction until it ends, so rollback
//! (at runtime or in recovery) always fits.
//!
//! All maps are `BTreeMap`s: iteration order is part of the engine's
//! deterministic behaviour.

use crate::error::{Error, Result};
use crate::wal::record::{ActiveTxn, NO_LSN};
use crate::{Lsn, TxnId};
use std::collections::BTreeMap;

/// What runtime rollback needs to undo one update.
pub struct UndoEntry {
    pub lsn: Lsn,
    pub prev_lsn: Lsn,
    pub page_id: u32,
    pub key: Vec<u8>,
    pub before: Option<Vec<u8>>,
}

/// An active transaction.
pub struct Txn {
    pub id: TxnId,
    /// Its first log record, or `NO_LSN` while read-only.
    pub first_lsn: Lsn,
    /// Its last log record (the head of the prev-LSN chain).
    pub last_lsn: Lsn,
    pub undo: Vec<UndoEntry>,
    locks: Vec<Vec<u8>>,
    reserved: BTreeMap<u32, usize>,
}

impl Txn {
    pub fn is_read_only(&self) -> bool {
        self.first_lsn == NO_LSN
    }

    /// Records that update `lsn` was logged for this transaction.
    pub fn logged(&mut self, lsn: Lsn) {
        assert!(
            self.last_lsn == NO_LSN || lsn > self.last_lsn,
            "txn LSNs increase"
        );
        if self.first_lsn == NO_LSN {
            self.first_lsn = lsn;
        }
        self.last_lsn = lsn;
    }
}

/// Every active transaction, the lock table and the reservations.
pub struct TxnTable {
    active: BTreeMap<TxnId, Txn>,
    locks: BTreeMap<Vec<u8>, TxnId>,
    reserved_by_page: BTreeMap<u32, usize>,
    pub next_txn: TxnId,
    active_max: usize,
}

impl TxnTable {
    pub fn new(next_txn: TxnId, active_max: usize) -> TxnTable {
        assert!(next_txn > 0, "transaction id 0 is the system's");
        TxnTable {
            active: BTreeMap::new(),
            locks: BTreeMap::new(),
            reserved_by_page: BTreeMap::new(),
            next_txn,
            active_max,
        }
    }

    pub fn begin(&mut self) -> Result<TxnId> {
        if self.active.len() >= self.active_max {
            return Err(Error::TooLarge {
                what: "number of active transactions",
                len: self.active.len() + 1,
                max: self.active_max,
            });
        }
        let id = self.next_txn;
        self.next_txn += 1;
        let txn = Txn {
            id,
            first_lsn: NO_LSN,
            last_lsn: NO_LSN,
            undo: Vec::new(),
            locks: Vec::new(),
            reserved: BTreeMap::new(),
        };
        self.active.insert(id, txn);
        Ok(id)
    }

    pub fn get(&self, id: TxnId) -> Result<&Txn> {
        self.active.get(&id).ok_or(Error::NoSuchTxn(id))
    }

    pub fn get_mut(&mut self, id: TxnId) -> Result<&mut Txn> {
        self.active.get_mut(&id).ok_or(Error::NoSuchTxn(id))
    }

    /// Active transaction ids, ascending.
    pub fn ids(&self) -> Vec<TxnId> {
        self.active.keys().copied().collect()
    }

    /// The transactions with log records, for a checkpoint record.
    pub fn checkpoint_list(&self) -> Vec<ActiveTxn> {
        self.active
            .values()
            .filter(|txn| !txn.is_read_only())
            .map(|txn| ActiveTxn {
                txn: txn.id,
                first_lsn: txn.first_lsn,
                last_lsn: txn.last_lsn,
            })
            .collect()
    }

    /// Takes `key`'s write lock for `id` (no wait).
    pub fn lock(&mut self, id: TxnId, key: &[u8]) -> Result<()> {
        match self.locks.get(key) {
            Some(&holder) if holder == id => Ok(()),
            Some(&holder) => Err(Error::Conflict {
                key: key.to_vec(),
                holder,
            }),
            None => {
                self.locks.insert(key.to_vec(), id);
                self.get_mut(id)?.locks.push(key.to_vec());
                Ok(())
            }
        }
    }

    /// Bytes of `page` reserved by transactions other than `id`.
    pub fn reserved_by_others(&self, id: TxnId, page: u32) -> usize {
        let total = self.reserved_by_page.get(&page).copied().unwrap_or(0);
        let own = self
            .active
            .get(&id)
            .and_then(|txn| txn.reserved.get(&page).copied())
            .unwrap_or(0);
        assert!(own <= total, "reservation accounting");
        total - own
    }

    /// Reserves `bytes` of `page` for `id`'s undo.
    pub fn reserve(&mut self, id: TxnId, page: u32, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        *self.get_mut(id)?.reserved.entry(page).or_insert(0) += bytes;
        *self.reserved_by_page.entry(page).or_insert(0) += bytes;
        Ok(())
    }

    /// Ends `id`: removes it, releases its locks and reservations.
    pub fn finish(&mut self, id: TxnId) -> Result<Txn> {
        let txn = self.active.remove(&id).ok_or(Error::NoSuchTxn(id))?;
        for key in &txn.locks {
            let holder = self.locks.remove(key);
            assert_eq!(holder, Some(id), "lock table out of step");
        }
        for (page, bytes) in &txn.reserved {
            let total = self
                .reserved_by_page
                .get_mut(page)
                .expect("reservation accounting");
            *total -= bytes;
            if *total == 0 {
                self.reserved_by_page.remove(page);
            }
        }
        Ok(txn)
    }
}
