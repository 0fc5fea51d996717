//! Model test: random transaction histories against a `BTreeMap` model.
//!
//! Up to `TXNS_OPEN_MAX` transactions are open at once over a small key
//! space (so write conflicts happen), values go up to `value_len_max`, the
//! pool is tiny (STEAL evictions), segments are small (rotation and
//! removal), and at random points the test checkpoints, closes and reopens,
//! or "crashes": recovers a snapshot of the storage taken with transactions
//! still open (a process-crash image), which must hold exactly the
//! committed state. What it does not check: power-loss images (the harness
//! does), concurrency (see basic.rs).

mod common;

use common::*;
use engine::storage::MemStorage;
use engine::{Bug, BugSet, Engine, Error, FsyncPolicy, TxnId};
use proptest::prelude::*;
use std::collections::BTreeMap;

const TXNS_OPEN_MAX: usize = 3;
const KEYS_MAX: u8 = 12;
const OPS_MAX: usize = 300;

#[derive(Clone, Debug)]
enum Step {
    Begin,
    Put {
        txn: usize,
        key: u8,
        len: usize,
        byte: u8,
    },
    Delete {
        txn: usize,
        key: u8,
    },
    Get {
        txn: usize,
        key: u8,
    },
    Commit {
        txn: usize,
    },
    Abort {
        txn: usize,
    },
    Checkpoint,
    Reopen,
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Begin),
        8 => (0..TXNS_OPEN_MAX, 0..KEYS_MAX, 0usize..=200, any::<u8>())
            .prop_map(|(txn, key, len, byte)| Step::Put { txn, key, len, byte }),
        2 => (0..TXNS_OPEN_MAX, 0..KEYS_MAX).prop_map(|(txn, key)| Step::Delete { txn, key }),
        2 => (0..TXNS_OPEN_MAX, 0..KEYS_MAX).prop_map(|(txn, key)| Step::Get { txn, key }),
        3 => (0..TXNS_OPEN_MAX).prop_map(|txn| Step::Commit { txn }),
        1 => (0..TXNS_OPEN_MAX).prop_map(|txn| Step::Abort { txn }),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
        1 => Just(Step::Crash),
    ]
}

fn policy() -> impl Strategy<Value = FsyncPolicy> {
    prop_oneof![
        Just(FsyncPolicy::Always),
        Just(FsyncPolicy::Group { delay_us: 0 }),
        Just(FsyncPolicy::Interval { ms: 5 }),
        Just(FsyncPolicy::None),
    ]
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;

struct Open {
    id: TxnId,
    /// The transaction's own writes: `None` is a delete.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

fn key(index: u8) -> Vec<u8> {
    format!("key-{index:02}").into_bytes()
}

fn run(policy: FsyncPolicy, steps: &[Step]) -> Result<(), TestCaseError> {
    run_with(policy, BugSet::NONE, steps)
}

fn run_with(policy: FsyncPolicy, bugs: BugSet, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut config = small_config(policy);
    config.bugs = bugs;
    config.page_count = 8;
    config.pool_pages = 2;
    config.segment_size = 8 << 10;
    let mut storage = MemStorage::new();
    let mut engine = open(&storage, &config);
    let mut committed = State::new();
    let mut txns: Vec<Open> = Vec::new();
    for step in steps {
        match step.clone() {
            Step::Begin if txns.len() < TXNS_OPEN_MAX => {
                let id = engine.begin().unwrap();
                txns.push(Open {
                    id,
                    writes: BTreeMap::new(),
                });
            }
            Step::Begin => {}
            Step::Put { txn, .. } | Step::Delete { txn, .. } | Step::Get { txn, .. }
                if txn >= txns.len() => {}
            Step::Commit { txn } | Step::Abort { txn } if txn >= txns.len() => {}
            Step::Put {
                txn,
                key: k,
                len,
                byte,
            } => {
                let value = vec![byte; len];
                let result = engine.put(txns[txn].id, &key(k), &value);
                check_write(&mut txns, txn, key(k), Some(value), result)?;
            }
            Step::Delete { txn, key: k } => {
                let result = engine.delete(txns[txn].id, &key(k));
                check_write(&mut txns, txn, key(k), None, result)?;
            }
            Step::Get { txn, key: k } => {
                let got = engine.get(txns[txn].id, &key(k)).unwrap();
                // Own writes, else another open transaction's (read
                // uncommitted), else the committed value.
                let expected = txns[txn]
                    .writes
                    .get(&key(k))
                    .cloned()
                    .or_else(|| txns.iter().find_map(|t| t.writes.get(&key(k)).cloned()))
                    .unwrap_or_else(|| committed.get(&key(k)).cloned());
                prop_assert_eq!(got, expected);
            }
            Step::Commit { txn } => {
                let open = txns.remove(txn);
                engine.commit(open.id).unwrap();
                for (k, v) in open.writes {
                    match v {
                        Some(v) => committed.insert(k, v),
                        None => committed.remove(&k),
                    };
                }
            }
            Step::Abort { txn } => {
                let open = txns.remove(txn);
                engine.abort(open.id).unwrap();
            }
            Step::Checkpoint => engine.checkpoint().unwrap(),
            Step::Reopen => {
                for open in txns.drain(..) {
                    engine.abort(open.id).unwrap();
                }
                prop_assert_eq!(&state(&engine), &committed);
                engine.close().unwrap();
                engine = open(&storage, &config);
                prop_assert_eq!(&state(&engine), &committed);
            }
            Step::Crash => {
                // Group commit acknowledged everything through commit();
                // the snapshot is what a process crash leaves.
                let image = storage.snapshot();
                drop(engine);
                txns.clear();
                let (recovered, reopened) = open_image(&image, &config);
                storage = recovered;
                engine = reopened;
                prop_assert_eq!(&state(&engine), &committed);
            }
        }
    }
    for open in txns.drain(..) {
        engine.abort(open.id).unwrap();
    }
    prop_assert_eq!(&state(&engine), &committed);
    let image = storage.snapshot();
    drop(engine);
    let (_, engine) = open_image(&image, &config);
    prop_assert_eq!(&state(&engine), &committed);
    Ok(())
}

fn check_write(
    txns: &mut [Open],
    txn: usize,
    k: Vec<u8>,
    value: Option<Vec<u8>>,
    result: Result<(), Error>,
) -> Result<(), TestCaseError> {
    let holder = txns
        .iter()
        .enumerate()
        .find(|(i, t)| *i != txn && t.writes.contains_key(&k));
    match result {
        Ok(()) => {
            prop_assert!(holder.is_none(), "write to a key another txn wrote");
            txns[txn].writes.insert(k, value);
        }
        Err(Error::Conflict { holder: id, .. }) => {
            // Locks are also held on keys whose write failed (page full) or
            // deleted while absent: the model only knows successful writes.
            if let Some((_, t)) = holder {
                prop_assert_eq!(t.id, id);
            }
        }
        Err(Error::PageFull { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_model(
        policy in policy(),
        steps in proptest::collection::vec(step(), 1..OPS_MAX),
    ) {
        run(policy, &steps)?;
    }
}

/// The same model with a larger, fixed history, as a smoke test of long
/// runs (many rotations, removals and checkpoints).
#[test]
fn long_deterministic_history() {
    run(FsyncPolicy::Always, &long_history()).unwrap();
}

/// Canaries: the model test must fail when recovery skips undo or redo
/// skips the pageLSN check (planted bugs), or it checks nothing.
#[test]
fn model_catches_planted_recovery_bugs() {
    for bug in [Bug::NoUndo, Bug::RedoNoPageLsnCheck] {
        let steps = long_history();
        let outcome = std::panic::catch_unwind(|| {
            run_with(FsyncPolicy::Always, BugSet::NONE.with(bug), &steps)
        });
        assert!(
            !matches!(outcome, Ok(Ok(()))),
            "the model test did not notice the {bug} bug"
        );
    }
}

fn long_history() -> Vec<Step> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..3000)
        .map(|_| match rng.random_range(0..20) {
            0..=2 => Step::Begin,
            3..=11 => Step::Put {
                txn: rng.random_range(0..TXNS_OPEN_MAX),
                key: rng.random_range(0..KEYS_MAX),
                len: rng.random_range(0..=200),
                byte: rng.random(),
            },
            12 | 13 => Step::Delete {
                txn: rng.random_range(0..TXNS_OPEN_MAX),
                key: rng.random_range(0..KEYS_MAX),
            },
            14..=16 => Step::Commit {
                txn: rng.random_range(0..TXNS_OPEN_MAX),
            },
            17 => Step::Abort {
                txn: rng.random_range(0..TXNS_OPEN_MAX),
            },
            18 => Step::Checkpoint,
            _ => Step::Crash,
        })
        .collect()
}

#[allow(dead_code)]
fn _engine_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}
