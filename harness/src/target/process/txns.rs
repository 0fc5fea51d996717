//! The transactions a process target keeps open on the harness's side: a
//! program sees a transaction only when it commits (the driver may hold
//! several open at once; the program's protocol has one at a time).

use crate::fault::trace::Write as TxnWrite;
use crate::target::{TargetError, TargetErrorKind, TargetResult, TxnHandle};
use std::collections::BTreeMap;

/// Open transactions and their writes, in order (`None` deletes).
#[derive(Debug)]
pub struct OpenTxns {
    txns: BTreeMap<TxnHandle, Vec<TxnWrite>>,
    next: TxnHandle,
}

impl Default for OpenTxns {
    fn default() -> OpenTxns {
        OpenTxns {
            txns: BTreeMap::new(),
            next: 1,
        }
    }
}

fn no_such(txn: TxnHandle) -> TargetError {
    TargetError {
        kind: TargetErrorKind::Other,
        message: format!("no open transaction {txn}"),
    }
}

impl OpenTxns {
    pub fn begin(&mut self) -> TxnHandle {
        let txn = self.next;
        self.next += 1;
        self.txns.insert(txn, Vec::new());
        txn
    }

    /// Adds a write (`None` deletes `key`) to `txn`.
    pub fn write(&mut self, txn: TxnHandle, key: &[u8], value: Option<&[u8]>) -> TargetResult<()> {
        let writes = self.txns.get_mut(&txn).ok_or_else(|| no_such(txn))?;
        writes.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }

    pub fn abort(&mut self, txn: TxnHandle) {
        self.txns.remove(&txn);
    }

    /// Ends `txn` and gives its writes, to be sent as one transaction.
    pub fn take(&mut self, txn: TxnHandle) -> TargetResult<Vec<TxnWrite>> {
        self.txns.remove(&txn).ok_or_else(|| no_such(txn))
    }
}

/// `begin`, `put`, `delete` and `abort` of a [`crate::target::Target`] that
/// keeps its open transactions in a `txns: OpenTxns` field and sends each
/// one whole at `commit` (every process target: its program sees a
/// transaction only when it commits).
macro_rules! buffered_transactions {
    () => {
        fn begin(&mut self) -> $crate::target::TargetResult<$crate::target::TxnHandle> {
            Ok(self.txns.begin())
        }

        fn put(
            &mut self,
            txn: $crate::target::TxnHandle,
            key: &[u8],
            value: &[u8],
        ) -> $crate::target::TargetResult<()> {
            self.txns.write(txn, key, Some(value))
        }

        fn delete(
            &mut self,
            txn: $crate::target::TxnHandle,
            key: &[u8],
        ) -> $crate::target::TargetResult<()> {
            self.txns.write(txn, key, None)
        }

        fn abort(&mut self, txn: $crate::target::TxnHandle) -> $crate::target::TargetResult<()> {
            self.txns.abort(txn);
            Ok(())
        }
    };
}
pub(crate) use buffered_transactions;
