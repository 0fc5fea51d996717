//! bank: transfers between accounts; the balances always sum to the same
//! total. The first cycle creates every account in one transaction; a
//! transfer locks its two accounts (in the driver) until it ends, so the
//! balances it computes from the issued-commit model stay right.

use super::driver::{PlannedValue, PlannedWrite};
use super::scenario::WorkloadParams;
use crate::oracle::tag;
use crate::oracle::{Invariant, InvariantBreach};
use crate::target::State;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// Largest amount moved by one transfer.
pub const TRANSFER_AMOUNT_MAX: i64 = 100;

/// The key of account `index`.
pub fn account_key(index: u32) -> Vec<u8> {
    format!("acct{index:06}").into_bytes()
}

/// The balance a bank value holds (after its tag), if it is one.
pub fn balance(value: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = tag::payload(value).try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

/// True if `state` holds any account (so they were created).
pub fn has_accounts(state: &State, params: &WorkloadParams) -> bool {
    (0..params.accounts).any(|index| state.contains_key(&account_key(index)))
}

/// The transaction creating every account with its opening balance.
pub fn plan_create(params: &WorkloadParams) -> Vec<PlannedWrite> {
    (0..params.accounts)
        .map(|index| PlannedWrite {
            key: account_key(index),
            value: PlannedValue::Balance(params.initial_balance),
        })
        .collect()
}

/// A transfer between two accounts none of `locked` holds, computed from
/// the balances in `model`; `None` if no two free accounts exist.
pub fn plan_transfer(
    rng: &mut ChaCha8Rng,
    params: &WorkloadParams,
    model: &State,
    locked: &BTreeSet<Vec<u8>>,
) -> Option<Vec<PlannedWrite>> {
    let free: Vec<Vec<u8>> = (0..params.accounts)
        .map(account_key)
        .filter(|key| !locked.contains(key) && model.contains_key(key))
        .collect();
    if free.len() < 2 {
        return None;
    }
    let from = rng.random_range(0..free.len());
    let mut to = rng.random_range(0..free.len() - 1);
    if to >= from {
        to += 1;
    }
    let amount = rng.random_range(1..=TRANSFER_AMOUNT_MAX);
    let current = |key: &Vec<u8>| model.get(key).and_then(|value| balance(value)).unwrap_or(0);
    Some(vec![
        PlannedWrite {
            key: free[from].clone(),
            value: PlannedValue::Balance(current(&free[from]) - amount),
        },
        PlannedWrite {
            key: free[to].clone(),
            value: PlannedValue::Balance(current(&free[to]) + amount),
        },
    ])
}

/// The bank invariant: either no account exists yet, or all `accounts`
/// exist, each holds a balance, and they sum to `accounts * initial_balance`.
///
/// Does not check: keys outside the account range, or which transfer
/// produced a balance (the oracle's prefix match does).
#[derive(Clone, Copy, Debug)]
pub struct BankTotal {
    pub accounts: u32,
    pub initial_balance: i64,
}

impl Invariant for BankTotal {
    fn name(&self) -> &str {
        "bank-total"
    }

    fn check(&self, state: &State) -> Result<(), InvariantBreach> {
        let keys: Vec<Vec<u8>> = (0..self.accounts).map(account_key).collect();
        let present: Vec<&Vec<u8>> = keys.iter().filter(|k| state.contains_key(*k)).collect();
        if present.is_empty() {
            return Ok(());
        }
        if present.len() != keys.len() {
            let missing: Vec<Vec<u8>> = keys
                .iter()
                .filter(|k| !state.contains_key(*k))
                .cloned()
                .collect();
            return Err(InvariantBreach {
                message: format!("{} of {} accounts missing", missing.len(), self.accounts),
                keys: missing,
            });
        }
        let mut total: i64 = 0;
        for key in &keys {
            let value = &state[key];
            let Some(balance) = balance(value) else {
                return Err(InvariantBreach {
                    message: "account value is not a balance".to_string(),
                    keys: vec![key.clone()],
                });
            };
            total = total.wrapping_add(balance);
        }
        let expected = i64::from(self.accounts) * self.initial_balance;
        if total != expected {
            return Err(InvariantBreach {
                message: format!("balances sum to {total}, expected {expected}"),
                keys,
            });
        }
        Ok(())
    }
}
