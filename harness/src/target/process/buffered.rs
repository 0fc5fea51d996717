//! What the process targets share: transactions kept until they commit (a
//! program is sent a transaction whole, when the driver commits it, so it
//! sees one at a time) and a virtual clock kept at real time.

use crate::fault::trace::Write as TxnWrite;
use crate::target::{TargetError, TargetErrorKind, TargetResult, TxnHandle};
use engine::Clock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The open transactions' writes, in order (`None` deletes), and the
/// commits acknowledged since the driver last asked.
#[derive(Debug)]
pub struct BufferedTxns {
    txns: BTreeMap<TxnHandle, Vec<TxnWrite>>,
    next_txn: TxnHandle,
    acks: Vec<TxnHandle>,
}

impl Default for BufferedTxns {
    fn default() -> BufferedTxns {
        BufferedTxns {
            txns: BTreeMap::new(),
            next_txn: 1,
            acks: Vec::new(),
        }
    }
}

fn no_such(txn: TxnHandle) -> TargetError {
    TargetError {
        kind: TargetErrorKind::Other,
        message: format!("no open transaction {txn}"),
    }
}

impl BufferedTxns {
    pub fn begin(&mut self) -> TxnHandle {
        let txn = self.next_txn;
        self.next_txn += 1;
        self.txns.insert(txn, Vec::new());
        txn
    }

    pub fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()> {
        let writes = self.txns.get_mut(&txn).ok_or_else(|| no_such(txn))?;
        writes.push((key.to_vec(), Some(value.to_vec())));
        Ok(())
    }

    pub fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()> {
        let writes = self.txns.get_mut(&txn).ok_or_else(|| no_such(txn))?;
        writes.push((key.to_vec(), None));
        Ok(())
    }

    pub fn abort(&mut self, txn: TxnHandle) {
        self.txns.remove(&txn);
    }

    /// Closes `txn` and gives its writes, to be sent as its commit.
    pub fn take(&mut self, txn: TxnHandle) -> TargetResult<Vec<TxnWrite>> {
        self.txns.remove(&txn).ok_or_else(|| no_such(txn))
    }

    /// The program answered `txn`'s commit.
    pub fn acknowledge(&mut self, txn: TxnHandle) {
        self.acks.push(txn);
    }

    /// The commits acknowledged since the last call, in order.
    pub fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acks)
    }
}

/// Keeps the driver's virtual clock at or past the real time since a
/// program started: a process has its own, real clock (timers, fsync
/// intervals), so acknowledgement times and loss windows must be real.
pub struct RealTime {
    clock: Arc<dyn Clock>,
    started: Instant,
    started_us: u64,
}

impl RealTime {
    pub fn new(clock: Arc<dyn Clock>) -> RealTime {
        RealTime {
            started_us: clock.now_us(),
            clock,
            started: Instant::now(),
        }
    }

    /// Moves the virtual clock up to the real time, never back.
    pub fn follow(&self) {
        let real_us = self.started_us + self.started.elapsed().as_micros() as u64;
        let now_us = self.clock.now_us();
        if real_us > now_us {
            self.clock.sleep_us(real_us - now_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::VirtualClock;

    #[test]
    fn transactions_keep_their_writes_until_taken_and_acks_come_once() {
        let mut txns = BufferedTxns::default();
        let a = txns.begin();
        let b = txns.begin();
        assert_ne!(a, b);
        txns.put(a, b"k", b"v").unwrap();
        txns.delete(a, b"j").unwrap();
        txns.put(b, b"x", b"y").unwrap();
        txns.abort(b);
        assert!(txns.put(b, b"x", b"y").is_err());
        assert!(txns.take(b).is_err());
        let writes = txns.take(a).unwrap();
        assert_eq!(
            writes,
            vec![(b"k".to_vec(), Some(b"v".to_vec())), (b"j".to_vec(), None)]
        );
        assert!(txns.take(a).is_err());
        txns.acknowledge(a);
        assert_eq!(txns.take_acks(), vec![a]);
        assert!(txns.take_acks().is_empty());
    }

    #[test]
    fn the_virtual_clock_follows_real_time_and_never_goes_back() {
        let clock = Arc::new(VirtualClock::new(1_000));
        let real = RealTime::new(clock.clone());
        std::thread::sleep(std::time::Duration::from_millis(5));
        real.follow();
        assert!(clock.now_us() >= 6_000, "{}", clock.now_us());
        clock.sleep_us(1_000_000);
        let ahead = clock.now_us();
        real.follow();
        assert_eq!(clock.now_us(), ahead);
    }
}
