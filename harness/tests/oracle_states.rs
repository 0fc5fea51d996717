//! The oracle on hand-made recovered states: each state-level violation kind
//! is detected, and valid states are accepted under every policy with the
//! permitted losses counted.

use engine::FsyncPolicy;
use harness::fault::FaultProfile;
use harness::fault::trace::{Event, WorkloadTxnId};
use harness::oracle::tag::tagged_value;
use harness::oracle::{History, Invariant, Promise, ViolationKind, check, state_hash};
use harness::target::State;
use harness::workload::bank::{BankTotal, account_key};
use std::collections::BTreeSet;

const BASE_ID: WorkloadTxnId = 100;

/// Builds a cycle's events: commits (acked or not) and checkpoints.
#[derive(Default)]
struct Trace {
    events: Vec<Event>,
}

impl Trace {
    /// Txn `txn` writes `writes` (`None`: delete); acked at `ack_us` if given.
    fn commit(
        &mut self,
        txn: WorkloadTxnId,
        writes: &[(&str, Option<&[u8]>)],
        ack_us: Option<u64>,
    ) {
        let writes = writes
            .iter()
            .enumerate()
            .map(|(index, (key, payload))| {
                let index = u32::try_from(index).unwrap();
                (
                    key.as_bytes().to_vec(),
                    payload.map(|payload| tagged_value(txn, index, payload)),
                )
            })
            .collect();
        self.events.push(Event::CommitIssued { txn, writes });
        self.events.push(Event::CommitLogged {
            txn,
            lsn: Some(txn * 1000),
        });
        if let Some(now_us) = ack_us {
            self.events.push(Event::Acked { txn, now_us });
        }
    }

    fn checkpoint(&mut self) {
        self.events.push(Event::CheckpointIssued);
        self.events.push(Event::CheckpointAcked);
    }

    fn history(&self, base: &State) -> History {
        History::new(base.clone(), BASE_ID, &self.events)
    }
}

fn promise(policy: &str, fault: FaultProfile, crash_time_us: u64) -> Promise {
    Promise {
        kind: policy
            .parse::<harness::target::TargetMode>()
            .unwrap()
            .promise(fault),
        fault,
        crash_time_us,
        fsync_allowance_us: 1000,
    }
}

fn kinds(verdict: &harness::oracle::Verdict) -> BTreeSet<ViolationKind> {
    verdict.kinds()
}

/// Three acked txns on distinct and shared keys, acked at 1ms, 2ms, 3ms.
fn three_txns() -> Trace {
    let mut trace = Trace::default();
    trace.commit(100, &[("a", Some(b"1")), ("b", Some(b"1"))], Some(1_000));
    trace.commit(101, &[("c", Some(b"2")), ("a", Some(b"2"))], Some(2_000));
    trace.commit(102, &[("d", Some(b"3")), ("b", None)], Some(3_000));
    trace
}

const POLICIES: [&str; 5] = ["always", "group", "group:200", "interval:10", "none"];

#[test]
fn full_state_is_accepted_under_every_policy_and_profile() {
    let history = three_txns().history(&State::new());
    let full = history.state_after(3);
    for policy in POLICIES {
        for fault in FaultProfile::ALL {
            let verdict = check(&history, &full, promise(policy, fault, 3_000), &[]);
            assert!(
                verdict.is_ok(),
                "{policy} {fault}: {:?}",
                verdict.violations
            );
            assert_eq!(verdict.prefix_len, Some(3));
            assert_eq!(verdict.acked_lost_permitted, 0);
        }
    }
}

#[test]
fn losing_an_acknowledged_commit_is_lost_ack_under_always_and_group() {
    let history = three_txns().history(&State::new());
    let recovered = history.state_after(2);
    for policy in ["always", "group"] {
        for fault in [FaultProfile::PowerLoss, FaultProfile::ProcessCrash] {
            let verdict = check(&history, &recovered, promise(policy, fault, 3_000), &[]);
            assert_eq!(
                kinds(&verdict),
                [ViolationKind::LostAck].into(),
                "{policy} {fault}"
            );
            let violation = &verdict.violations[0];
            assert_eq!(violation.txns, vec![102]);
            assert_eq!(violation.lsns, vec![102_000]);
            assert!(
                violation.message.contains("txn 102"),
                "{}",
                violation.message
            );
            assert!(
                violation.message.contains("LSN 102000"),
                "{}",
                violation.message
            );
            assert!(violation.keys.contains(&b"d".to_vec()));
        }
    }
}

#[test]
fn none_under_power_loss_may_lose_acks_after_the_last_durable_point_and_counts_them() {
    let history = three_txns().history(&State::new());
    let recovered = history.state_after(1);
    let verdict = check(
        &history,
        &recovered,
        promise("none", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert!(verdict.is_ok(), "{:?}", verdict.violations);
    assert_eq!(verdict.prefix_len, Some(1));
    assert_eq!(verdict.acked_lost_permitted, 2);
    assert_eq!(verdict.loss_window_max_us, 1_000);
    // The same loss after a kill is a violation: the page cache survived.
    let verdict = check(
        &history,
        &recovered,
        promise("none", FaultProfile::ProcessCrash, 3_000),
        &[],
    );
    assert_eq!(kinds(&verdict), [ViolationKind::LostAck].into());
    assert_eq!(verdict.violations.len(), 2);
}

#[test]
fn a_commit_acknowledged_before_a_checkpoint_must_survive_under_none() {
    let mut trace = Trace::default();
    trace.commit(100, &[("a", Some(b"1"))], Some(1_000));
    trace.checkpoint();
    trace.commit(101, &[("b", Some(b"2"))], Some(2_000));
    let history = trace.history(&State::new());
    let fault = FaultProfile::PowerLoss;
    let kept_first = check(
        &history,
        &history.state_after(1),
        promise("none", fault, 2_000),
        &[],
    );
    assert!(kept_first.is_ok());
    assert_eq!(kept_first.acked_lost_permitted, 1);
    let lost_first = check(
        &history,
        &history.state_after(0),
        promise("none", fault, 2_000),
        &[],
    );
    assert_eq!(kinds(&lost_first), [ViolationKind::LostAck].into());
    assert_eq!(lost_first.violations[0].txns, vec![100]);
    assert!(lost_first.violations[0].message.contains("checkpoint"));
    assert_eq!(lost_first.acked_lost_permitted, 1);
}

#[test]
fn interval_may_lose_only_acks_within_its_window_under_power_loss() {
    // interval:10 with a 1ms fsync allowance: a window of 11ms.
    let mut trace = Trace::default();
    trace.commit(100, &[("a", Some(b"1"))], Some(1_000));
    trace.commit(101, &[("b", Some(b"2"))], Some(30_000));
    trace.commit(102, &[("c", Some(b"3"))], Some(35_000));
    let history = trace.history(&State::new());
    let power = FaultProfile::PowerLoss;
    let within = check(
        &history,
        &history.state_after(1),
        promise("interval:10", power, 40_000),
        &[],
    );
    assert!(within.is_ok(), "{:?}", within.violations);
    assert_eq!(within.acked_lost_permitted, 2);
    assert_eq!(within.loss_window_max_us, 10_000);
    let beyond = check(
        &history,
        &history.state_after(0),
        promise("interval:10", power, 40_000),
        &[],
    );
    assert_eq!(kinds(&beyond), [ViolationKind::BeyondWindow].into());
    assert_eq!(beyond.violations[0].txns, vec![100]);
    assert_eq!(beyond.acked_lost_permitted, 2);
    let killed = check(
        &history,
        &history.state_after(1),
        promise("interval:10", FaultProfile::ProcessCrash, 40_000),
        &[],
    );
    assert_eq!(kinds(&killed), [ViolationKind::LostAck].into());
}

/// PostgreSQL's asynchronous commit keeps its WAL buffers in the server's
/// memory: a window promise holds under a process crash too, and is judged
/// there as under a power cut.
#[test]
fn a_window_promise_is_judged_by_its_window_also_under_a_process_crash() {
    let mut trace = Trace::default();
    trace.commit(100, &[("a", Some(b"1"))], Some(1_000));
    trace.commit(101, &[("b", Some(b"2"))], Some(900_000));
    let history = trace.history(&State::new());
    let killed = FaultProfile::ProcessCrash;
    let within = check(
        &history,
        &history.state_after(1),
        promise("postgres:async", killed, 1_000_000),
        &[],
    );
    assert!(within.is_ok(), "{:?}", within.violations);
    assert_eq!(within.acked_lost_permitted, 1);
    let beyond = check(
        &history,
        &history.state_after(0),
        promise("postgres:async", killed, 1_000_000),
        &[],
    );
    assert_eq!(kinds(&beyond), [ViolationKind::BeyondWindow].into());
    let sync = check(
        &history,
        &history.state_after(1),
        promise("postgres:sync", killed, 1_000_000),
        &[],
    );
    assert_eq!(kinds(&sync), [ViolationKind::LostAck].into());
}

#[test]
fn unacknowledged_and_failed_commits_may_or_may_not_survive() {
    let mut trace = Trace::default();
    trace.commit(100, &[("a", Some(b"1"))], Some(1_000));
    trace.commit(101, &[("b", Some(b"2"))], None);
    trace.events.push(Event::CommitIssued {
        txn: 102,
        writes: vec![(b"c".to_vec(), Some(tagged_value(102, 0, b"3")))],
    });
    trace.events.push(Event::CommitFailed { txn: 102 });
    let history = trace.history(&State::new());
    for prefix in 1..=3 {
        let verdict = check(
            &history,
            &history.state_after(prefix),
            promise("always", FaultProfile::PowerLoss, 0),
            &[],
        );
        assert!(verdict.is_ok(), "prefix {prefix}: {:?}", verdict.violations);
        assert_eq!(verdict.acked_lost_permitted, 0);
    }
}

#[test]
fn a_missing_transaction_before_a_visible_one_is_a_hole() {
    let history = three_txns().history(&State::new());
    // Txn 100 and 102 visible, 101 (c, a) missing.
    let mut recovered = history.state_after(1);
    recovered.insert(b"d".to_vec(), tagged_value(102, 0, b"3"));
    recovered.remove(b"b".as_slice());
    let verdict = check(
        &history,
        &recovered,
        promise("none", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert_eq!(verdict.prefix_len, None);
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::Hole].into(),
        "{:?}",
        verdict.violations
    );
    let hole = &verdict.violations[0];
    assert_eq!(hole.txns, vec![101, 102]);
    assert_eq!(hole.lsns, vec![101_000, 102_000]);
    assert!(hole.message.contains("txn 101"), "{}", hole.message);
}

#[test]
fn half_a_transaction_is_an_atomicity_violation() {
    let history = three_txns().history(&State::new());
    // Txn 101 wrote c and a: only c is visible.
    let mut recovered = history.state_after(1);
    recovered.insert(b"c".to_vec(), tagged_value(101, 0, b"2"));
    let verdict = check(
        &history,
        &recovered,
        promise("none", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::Atomicity].into(),
        "{:?}",
        verdict.violations
    );
    assert_eq!(verdict.violations[0].txns, vec![101]);
    assert!(verdict.violations[0].keys.contains(&b"a".to_vec()));
}

#[test]
fn a_value_of_a_never_committed_transaction_is_a_phantom() {
    let history = three_txns().history(&State::new());
    let mut recovered = history.state_after(3);
    // Txn 103 was aborted: its commit was never issued.
    recovered.insert(b"e".to_vec(), tagged_value(103, 0, b"aborted"));
    let verdict = check(
        &history,
        &recovered,
        promise("always", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::Phantom].into(),
        "{:?}",
        verdict.violations
    );
    assert_eq!(verdict.violations[0].txns, vec![103]);
    assert_eq!(verdict.violations[0].keys, vec![b"e".to_vec()]);
}

#[test]
fn a_value_no_transaction_wrote_is_silent_corruption() {
    let history = three_txns().history(&State::new());
    let full = history.state_after(3);
    let mut flipped = full.clone();
    let value = flipped.get_mut(b"c".as_slice()).unwrap();
    let last = value.len() - 1;
    value[last] ^= 0x01;
    let mut untagged = full.clone();
    untagged.insert(b"z".to_vec(), b"short".to_vec());
    for (name, recovered) in [("flipped payload", flipped), ("untagged", untagged)] {
        for fault in [FaultProfile::PowerLoss, FaultProfile::Media] {
            let verdict = check(&history, &recovered, promise("always", fault, 3_000), &[]);
            assert_eq!(
                kinds(&verdict),
                [ViolationKind::SilentCorruption].into(),
                "{name} {fault}: {:?}",
                verdict.violations
            );
        }
    }
}

#[test]
fn under_media_a_prefix_state_is_accepted_with_losses_counted_and_others_are_corruption() {
    let history = three_txns().history(&State::new());
    let verdict = check(
        &history,
        &history.state_after(1),
        promise("always", FaultProfile::Media, 3_000),
        &[],
    );
    assert!(verdict.is_ok(), "{:?}", verdict.violations);
    assert_eq!(verdict.acked_lost_permitted, 2);
    let mut holed = history.state_after(1);
    holed.insert(b"d".to_vec(), tagged_value(102, 0, b"3"));
    let verdict = check(
        &history,
        &holed,
        promise("always", FaultProfile::Media, 3_000),
        &[],
    );
    assert_eq!(kinds(&verdict), [ViolationKind::SilentCorruption].into());
}

#[test]
fn a_broken_bank_total_is_an_invariant_violation() {
    let invariants: Vec<Box<dyn Invariant>> = vec![Box::new(BankTotal {
        accounts: 2,
        initial_balance: 10,
    })];
    let balance = |txn, index, amount: i64| tagged_value(txn, index, &amount.to_le_bytes());
    let mut base = State::new();
    base.insert(account_key(0), balance(1, 0, 10));
    base.insert(account_key(1), balance(1, 1, 10));
    let mut trace = Trace::default();
    let transfer = vec![
        (account_key(0), Some(balance(100, 0, 5))),
        (account_key(1), Some(balance(100, 1, 15))),
    ];
    trace.events.push(Event::CommitIssued {
        txn: 100,
        writes: transfer,
    });
    trace.events.push(Event::Acked {
        txn: 100,
        now_us: 1,
    });
    let history = trace.history(&base);
    let good = check(
        &history,
        &history.state_after(1),
        promise("always", FaultProfile::PowerLoss, 1),
        &invariants,
    );
    assert!(good.is_ok(), "{:?}", good.violations);
    // A state the history can produce, but with the total broken: txn 101
    // wrote only one side of a transfer (a workload bug the invariant catches).
    trace.events.push(Event::CommitIssued {
        txn: 101,
        writes: vec![(account_key(0), Some(balance(101, 0, 6)))],
    });
    let history = trace.history(&base);
    let broken = check(
        &history,
        &history.state_after(2),
        promise("always", FaultProfile::PowerLoss, 1),
        &invariants,
    );
    assert_eq!(kinds(&broken), [ViolationKind::Invariant].into());
    assert!(
        broken.violations[0].message.contains("sum to 21"),
        "{}",
        broken.violations[0].message
    );
}

#[test]
fn the_durable_base_of_a_later_cycle_is_wholly_required() {
    let mut base = State::new();
    base.insert(b"old".to_vec(), tagged_value(7, 0, b"cycle one"));
    base.insert(b"kept".to_vec(), tagged_value(8, 0, b"cycle one"));
    let history = three_txns().history(&base);
    let full = history.state_after(3);
    let promise = promise("none", FaultProfile::PowerLoss, 3_000);
    assert!(check(&history, &full, promise, &[]).is_ok());
    let mut lost = full.clone();
    lost.remove(b"old".as_slice());
    let verdict = check(&history, &lost, promise, &[]);
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::LostAck].into(),
        "{:?}",
        verdict.violations
    );
    assert_eq!(verdict.violations[0].txns, vec![7]);
    let mut reverted = full;
    reverted.insert(b"old".to_vec(), tagged_value(3, 0, b"cycle zero"));
    let verdict = check(&history, &reverted, promise, &[]);
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::LostAck].into(),
        "{:?}",
        verdict.violations
    );
    assert_eq!(verdict.violations[0].txns, vec![3, 7]);
}

#[test]
fn an_intermediate_value_of_a_transaction_is_an_atomicity_violation() {
    let mut trace = Trace::default();
    trace.commit(
        100,
        &[("a", Some(b"first")), ("a", Some(b"second"))],
        Some(1),
    );
    let history = trace.history(&State::new());
    let mut recovered = State::new();
    recovered.insert(b"a".to_vec(), tagged_value(100, 0, b"first"));
    let verdict = check(
        &history,
        &recovered,
        promise("none", FaultProfile::PowerLoss, 1),
        &[],
    );
    assert_eq!(
        kinds(&verdict),
        [ViolationKind::Atomicity].into(),
        "{:?}",
        verdict.violations
    );
}

#[test]
fn prefix_hashes_are_the_hashes_of_the_prefix_states() {
    let mut base = State::new();
    base.insert(b"b".to_vec(), b"base".to_vec());
    let history = three_txns().history(&base);
    for prefix in 0..=3 {
        assert_eq!(
            history.prefix_hash(prefix),
            state_hash(&history.state_after(prefix))
        );
    }
    assert_ne!(history.prefix_hash(1), history.prefix_hash(2));
}

#[test]
fn a_recovered_state_with_nothing_is_judged_by_policy() {
    let history = three_txns().history(&State::new());
    let empty = State::new();
    let lost = check(
        &history,
        &empty,
        promise("group", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert_eq!(lost.violations.len(), 3);
    assert_eq!(lost.prefix_len, Some(0));
    let permitted = check(
        &history,
        &empty,
        promise("none", FaultProfile::PowerLoss, 3_000),
        &[],
    );
    assert!(permitted.is_ok());
    assert_eq!(permitted.acked_lost_permitted, 3);
    let _ = FsyncPolicy::Always;
}
