//! kv-churn: puts, overwrites and deletes of mixed sizes over a key space;
//! and the long transaction of long-txn-steal.

use super::driver::{PlannedValue, PlannedWrite};
use super::scenario::WorkloadParams;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// The key of slot `index` of the key space.
pub fn key(index: u32) -> Vec<u8> {
    format!("k{index:06}").into_bytes()
}

/// The key of the long transaction's write `index` (its own range, so it
/// takes no lock another transaction waits on, yet shares their pages).
pub fn long_key(index: u32) -> Vec<u8> {
    format!("l{index:06}").into_bytes()
}

/// One kv-churn transaction: `ops_per_txn` writes to random keys.
pub fn plan_txn(rng: &mut ChaCha8Rng, params: &WorkloadParams) -> Vec<PlannedWrite> {
    let ops = rng.random_range(params.ops_per_txn.min..=params.ops_per_txn.max);
    (0..ops)
        .map(|_| {
            let key = key(rng.random_range(0..params.keys));
            let value = if rng.random_bool(params.delete_ratio) {
                PlannedValue::Delete
            } else {
                PlannedValue::Filler {
                    len: rng.random_range(params.value_size.min..=params.value_size.max),
                }
            };
            PlannedWrite { key, value }
        })
        .collect()
}

/// The long transaction: `long_txn_ops` large values to distinct keys.
pub fn plan_long_txn(params: &WorkloadParams) -> Vec<PlannedWrite> {
    (0..params.long_txn_ops)
        .map(|index| PlannedWrite {
            key: long_key(index),
            value: PlannedValue::Filler {
                len: params.value_size.max,
            },
        })
        .collect()
}
