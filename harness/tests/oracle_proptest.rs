//! Property tests of the oracle on random histories: the model state after
//! every prefix of the commit order is accepted (when the promise permits the
//! loss), and removing one committed transaction from the middle is reported.

use harness::fault::FaultProfile;
use harness::fault::trace::{Event, WorkloadTxnId, Write};
use harness::oracle::history::apply;
use harness::oracle::tag::tagged_value;
use harness::oracle::{History, Promise, ViolationKind, check};
use harness::target::State;
use proptest::prelude::*;

const BASE_ID: WorkloadTxnId = 1000;

/// A random transaction: its writes (key slot, payload or delete), and
/// whether it was acknowledged.
type RandomTxn = (Vec<(u8, Option<Vec<u8>>)>, bool);

/// A random write: key slot 0..6, delete or a payload of 0..40 bytes.
fn write_strategy() -> impl Strategy<Value = (u8, Option<Vec<u8>>)> {
    (
        0u8..6,
        prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 0..40)),
    )
}

/// Random transactions (each: its writes, whether acked).
fn txns_strategy() -> impl Strategy<Value = Vec<RandomTxn>> {
    prop::collection::vec(
        (prop::collection::vec(write_strategy(), 1..5), any::<bool>()),
        1..14,
    )
}

/// Events of the random history; with `unique_key`, every txn also writes a
/// key of its own, so every txn is visible in the final state.
fn events(txns: &[RandomTxn], unique_key: bool) -> Vec<Event> {
    let mut events = Vec::new();
    for (offset, (writes, acked)) in txns.iter().enumerate() {
        let txn = BASE_ID + offset as u64;
        let mut tagged: Vec<Write> = writes
            .iter()
            .enumerate()
            .map(|(index, (slot, payload))| {
                let index = u32::try_from(index).unwrap();
                (
                    format!("k{slot}").into_bytes(),
                    payload.as_ref().map(|p| tagged_value(txn, index, p)),
                )
            })
            .collect();
        if unique_key {
            let index = u32::try_from(tagged.len()).unwrap();
            tagged.push((
                format!("u{txn}").into_bytes(),
                Some(tagged_value(txn, index, b"u")),
            ));
        }
        events.push(Event::CommitIssued {
            txn,
            writes: tagged,
        });
        events.push(Event::CommitLogged {
            txn,
            lsn: Some(offset as u64 * 64),
        });
        if *acked {
            events.push(Event::Acked {
                txn,
                now_us: offset as u64,
            });
        }
    }
    events
}

fn base() -> State {
    let mut base = State::new();
    base.insert(b"k0".to_vec(), tagged_value(1, 0, b"base"));
    base.insert(b"k5".to_vec(), tagged_value(2, 0, b"base"));
    base
}

fn promise(policy: &str) -> Promise {
    Promise {
        kind: policy
            .parse::<harness::target::TargetMode>()
            .unwrap()
            .promise(FaultProfile::PowerLoss),
        fault: FaultProfile::PowerLoss,
        crash_time_us: 100,
        fsync_allowance_us: 0,
    }
}

/// The base with every txn but the one at `skip` applied.
fn without(history: &History, skip: usize) -> State {
    let mut state = history.base().clone();
    for (position, txn) in history.txns().iter().enumerate() {
        if position != skip {
            apply(&mut state, &txn.writes);
        }
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_prefix_state_is_accepted(txns in txns_strategy(), unique in any::<bool>()) {
        let history = History::new(base(), BASE_ID, &events(&txns, unique));
        let n = history.txns().len();
        let last_acked = history.txns().iter().rposition(|t| t.ack.is_some()).map_or(0, |p| p + 1);
        for prefix in 0..=n {
            let state = history.state_after(prefix);
            // none under power loss (no checkpoint): any prefix is fine.
            let verdict = check(&history, &state, promise("none"), &[]);
            prop_assert!(verdict.is_ok(), "prefix {}: {:?}", prefix, verdict.violations);
            let lost = history.txns()[prefix..].iter().filter(|t| t.ack.is_some()).count();
            // Equal states of a longer prefix may be chosen: never more lost.
            prop_assert!(verdict.acked_lost_permitted <= lost as u64);
            prop_assert!(verdict.prefix_len.unwrap() >= prefix);
            // always: accepted exactly when no acked txn is beyond the prefix
            // (or an equal state of a longer prefix keeps them).
            let verdict = check(&history, &state, promise("always"), &[]);
            if prefix >= last_acked {
                prop_assert!(verdict.is_ok(), "prefix {}: {:?}", prefix, verdict.violations);
            } else {
                let only_lost_acks = verdict.violations.iter().all(|v| v.kind == ViolationKind::LostAck);
                prop_assert!(only_lost_acks, "{:?}", verdict.violations);
            }
            prop_assert_eq!(verdict.acked_lost_permitted, 0);
        }
    }

    #[test]
    fn removing_a_committed_txn_from_the_middle_is_reported(
        txns in txns_strategy(),
        pick in any::<prop::sample::Index>(),
    ) {
        // With a key of its own per txn, every txn is visible: a removed
        // middle txn is a hole even where losses are permitted.
        prop_assume!(txns.len() >= 2);
        let history = History::new(base(), BASE_ID, &events(&txns, true));
        let skip = pick.index(history.txns().len() - 1);
        let state = without(&history, skip);
        let verdict = check(&history, &state, promise("none"), &[]);
        prop_assert!(verdict.kinds().contains(&ViolationKind::Hole), "{:?}", verdict.violations);
        let removed = history.txns()[skip].txn;
        prop_assert!(verdict.violations.iter().any(|v| v.txns.first() == Some(&removed)));
    }

    #[test]
    fn removing_an_acknowledged_txn_is_reported_under_always(
        txns in txns_strategy(),
        pick in any::<prop::sample::Index>(),
    ) {
        // Every txn acknowledged, random overlapping keys only: the removal
        // is a hole or a lost acknowledged commit, whenever it shows.
        let txns: Vec<_> = txns.into_iter().map(|(writes, _)| (writes, true)).collect();
        prop_assume!(txns.len() >= 2);
        let history = History::new(base(), BASE_ID, &events(&txns, false));
        let skip = pick.index(history.txns().len() - 1);
        let state = without(&history, skip);
        prop_assume!(state != history.state_after(history.txns().len()));
        let verdict = check(&history, &state, promise("always"), &[]);
        prop_assert!(!verdict.is_ok());
        for violation in &verdict.violations {
            prop_assert!(
                matches!(violation.kind, ViolationKind::Hole | ViolationKind::LostAck),
                "{:?}", violation
            );
        }
    }
}
