//! The workload driver against a fake target (a `BTreeMap` with configurable
//! acknowledgements): determinism, tagging, group-commit leading, errors, and
//! the oracle accepting the fake's state after a cycle.

use engine::VirtualClock;
use harness::fault::FaultProfile;
use harness::fault::trace::{Event, VecSink, Write};
use harness::oracle::Invariant;
use harness::oracle::tag::{TAG_LEN, read_tag};
use harness::oracle::{History, Promise, check};
use harness::target::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetResult, TxnHandle,
};
use harness::workload::bank::BankTotal;
use harness::workload::{
    CycleOutcome, CycleSpec, Scenario, WorkloadKind, WorkloadParams, run_cycle,
};
use std::collections::BTreeMap;

/// When the fake acknowledges a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckMode {
    /// At the commit call (always, interval, none).
    OnCommit,
    /// At `flush_finish`, for the commits issued before `flush_begin`.
    OnFlush,
}

/// A target that applies commits to a map at once.
struct FakeTarget {
    committed: State,
    open: BTreeMap<TxnHandle, Vec<Write>>,
    next_handle: TxnHandle,
    mode: AckMode,
    unflushed: Vec<TxnHandle>,
    flushing: Option<Vec<TxnHandle>>,
    acks: Vec<TxnHandle>,
    /// Reject every n-th put.
    reject_every: Option<u64>,
    /// Fail the n-th commit with a fatal error.
    fatal_commit: Option<u64>,
    puts: u64,
    commits: u64,
    /// What was called, in order.
    calls: Vec<&'static str>,
}

impl FakeTarget {
    fn new(mode: AckMode) -> FakeTarget {
        FakeTarget::with_state(mode, State::new())
    }

    fn with_state(mode: AckMode, committed: State) -> FakeTarget {
        FakeTarget {
            committed,
            open: BTreeMap::new(),
            next_handle: 1,
            mode,
            unflushed: Vec::new(),
            flushing: None,
            acks: Vec::new(),
            reject_every: None,
            fatal_commit: None,
            puts: 0,
            commits: 0,
            calls: Vec::new(),
        }
    }
}

fn rejected() -> TargetError {
    TargetError {
        kind: TargetErrorKind::Rejected,
        message: "page full".into(),
    }
}

impl Target for FakeTarget {
    fn begin(&mut self) -> TargetResult<TxnHandle> {
        self.calls.push("begin");
        let handle = self.next_handle;
        self.next_handle += 1;
        self.open.insert(handle, Vec::new());
        Ok(handle)
    }

    fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()> {
        self.calls.push("put");
        self.puts += 1;
        if self
            .reject_every
            .is_some_and(|n| self.puts.is_multiple_of(n))
        {
            return Err(rejected());
        }
        self.open
            .get_mut(&txn)
            .unwrap()
            .push((key.to_vec(), Some(value.to_vec())));
        Ok(())
    }

    fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()> {
        self.calls.push("delete");
        self.open.get_mut(&txn).unwrap().push((key.to_vec(), None));
        Ok(())
    }

    fn abort(&mut self, txn: TxnHandle) -> TargetResult<()> {
        self.calls.push("abort");
        self.open.remove(&txn).unwrap();
        Ok(())
    }

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        self.calls.push("commit");
        self.commits += 1;
        if self.fatal_commit == Some(self.commits) {
            return Err(TargetError {
                kind: TargetErrorKind::Fatal,
                message: "fsync failed".into(),
            });
        }
        let writes = self.open.remove(&txn).unwrap();
        harness::oracle::history::apply(&mut self.committed, &writes);
        match self.mode {
            AckMode::OnCommit => self.acks.push(txn),
            AckMode::OnFlush => self.unflushed.push(txn),
        }
        Ok(Some(self.commits * 100))
    }

    fn flush_begin(&mut self) -> TargetResult<()> {
        self.calls.push("flush_begin");
        assert!(self.flushing.is_none(), "flush_begin twice");
        self.flushing = Some(std::mem::take(&mut self.unflushed));
        Ok(())
    }

    fn flush_finish(&mut self) -> TargetResult<()> {
        self.calls.push("flush_finish");
        let covered = self
            .flushing
            .take()
            .expect("flush_finish without flush_begin");
        self.acks.extend(covered);
        Ok(())
    }

    fn tick(&mut self) -> TargetResult<()> {
        Ok(())
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        self.calls.push("checkpoint");
        Ok(())
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acks)
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        Ok(self.committed.get(key).cloned())
    }

    fn scan(&mut self) -> TargetResult<State> {
        Ok(self.committed.clone())
    }

    fn recovery_summary(&self) -> String {
        "fake".into()
    }

    fn close(self: Box<Self>) -> TargetResult<()> {
        Ok(())
    }
}

fn spec(kind: WorkloadKind, policy: &str) -> CycleSpec {
    CycleSpec {
        kind,
        params: WorkloadParams {
            txns_per_cycle: 30,
            checkpoint_every: 7,
            value_size: harness::workload::Span { min: 16, max: 1000 },
            ..WorkloadParams::default()
        },
        target: policy.parse().unwrap(),
    }
}

/// Runs a cycle on `target`; returns its events and outcome.
fn run(
    target: &mut FakeTarget,
    spec: &CycleSpec,
    seed: u64,
    base: &State,
    id_base: u64,
) -> (Vec<Event>, CycleOutcome) {
    let sink = VecSink::new();
    let clock = VirtualClock::new(0);
    let outcome = run_cycle(target, spec, seed, base, &sink, &clock, id_base);
    (sink.events(), outcome)
}

fn mode(policy: &str) -> AckMode {
    if policy.starts_with("group") {
        AckMode::OnFlush
    } else {
        AckMode::OnCommit
    }
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
    for kind in WorkloadKind::ALL {
        for policy in ["always", "group"] {
            let spec = spec(kind, policy);
            let (first, _) = run(
                &mut FakeTarget::new(mode(policy)),
                &spec,
                42,
                &State::new(),
                0,
            );
            let (again, _) = run(
                &mut FakeTarget::new(mode(policy)),
                &spec,
                42,
                &State::new(),
                0,
            );
            let (other, _) = run(
                &mut FakeTarget::new(mode(policy)),
                &spec,
                43,
                &State::new(),
                0,
            );
            assert!(!first.is_empty());
            assert_eq!(first, again, "{kind} {policy}");
            assert_ne!(first, other, "{kind} {policy}");
        }
    }
}

#[test]
fn every_value_is_tagged_with_its_txn_and_write_index() {
    let spec = spec(WorkloadKind::KvChurn, "always");
    let (events, outcome) = run(
        &mut FakeTarget::new(AckMode::OnCommit),
        &spec,
        7,
        &State::new(),
        500,
    );
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    for event in &events {
        if let Event::CommitIssued { txn, writes } = event {
            ids.push(*txn);
            for (index, (_, value)) in writes.iter().enumerate() {
                let Some(value) = value else { continue };
                let tag = read_tag(value).expect("tagged");
                assert_eq!(tag.txn, *txn);
                assert_eq!(tag.write_index as usize, index);
                assert!(value.len() >= TAG_LEN);
                sizes.push(value.len());
            }
        }
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids unique");
    assert!(unique[0] >= 500 && outcome.next_txn_id > *unique.last().unwrap());
    assert!(
        sizes.iter().any(|&size| size > 512),
        "some values span sectors"
    );
    assert!(sizes.iter().any(|&size| size < 512));
    assert!(events.iter().any(|e| matches!(e, Event::Acked { .. })));
}

#[test]
fn commit_issued_precedes_logged_precedes_acked_and_the_model_matches() {
    let spec = spec(WorkloadKind::KvChurn, "always");
    let mut target = FakeTarget::new(AckMode::OnCommit);
    let (events, outcome) = run(&mut target, &spec, 3, &State::new(), 0);
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    for event in &events {
        if let Event::Acked { txn, .. } = event {
            let issued =
                position(&|e| matches!(e, Event::CommitIssued { txn: t, .. } if t == txn)).unwrap();
            let logged =
                position(&|e| matches!(e, Event::CommitLogged { txn: t, .. } if t == txn)).unwrap();
            let acked =
                position(&|e| matches!(e, Event::Acked { txn: t, .. } if t == txn)).unwrap();
            assert!(issued < logged && logged < acked);
        }
    }
    assert_eq!(outcome.issued_state, target.committed);
    assert_eq!(outcome.issued, outcome.acked);
    assert!(outcome.aborted > 0, "some transactions abort");
    assert!(outcome.checkpoints > 0);
    let issued = events
        .iter()
        .filter(|e| matches!(e, Event::CheckpointIssued))
        .count();
    assert_eq!(issued as u64, outcome.checkpoints);
}

#[test]
fn the_group_leader_issues_commits_during_a_flush_and_acks_everything() {
    let spec = spec(WorkloadKind::KvChurn, "group");
    let mut target = FakeTarget::new(AckMode::OnFlush);
    let (_, outcome) = run(&mut target, &spec, 11, &State::new(), 0);
    assert_eq!(
        outcome.issued, outcome.acked,
        "the last flush acks every issued commit"
    );
    let mut in_flush = false;
    let mut commit_during_flush = false;
    for call in &target.calls {
        match *call {
            "flush_begin" => in_flush = true,
            "flush_finish" => in_flush = false,
            "commit" if in_flush => commit_during_flush = true,
            _ => {}
        }
    }
    assert!(commit_during_flush, "no commit enqueued during a flush");
}

#[test]
fn interleaved_transactions_are_open_at_once() {
    let spec = spec(WorkloadKind::KvChurn, "always");
    let mut target = FakeTarget::new(AckMode::OnCommit);
    run(&mut target, &spec, 5, &State::new(), 0);
    let mut open: i32 = 0;
    let mut open_max = 0;
    for call in &target.calls {
        match *call {
            "begin" => open += 1,
            "commit" | "abort" => open -= 1,
            _ => {}
        }
        open_max = open_max.max(open);
    }
    assert!(open_max >= 2, "at most {open_max} open");
}

#[test]
fn rejected_puts_abort_their_transaction_and_the_cycle_goes_on() {
    let spec = spec(WorkloadKind::KvChurn, "always");
    let mut target = FakeTarget::new(AckMode::OnCommit);
    target.reject_every = Some(5);
    let (events, outcome) = run(&mut target, &spec, 9, &State::new(), 0);
    assert!(outcome.rejected > 0);
    assert!(outcome.stopped.is_none());
    assert_eq!(outcome.issued_state, target.committed);
    let history = History::new(State::new(), 0, &events);
    let promise = Promise {
        kind: PromiseKind::Durable,
        fault: FaultProfile::PowerLoss,
        crash_time_us: 0,
        fsync_allowance_us: 0,
    };
    assert!(check(&history, &target.committed, promise, &[]).is_ok());
}

#[test]
fn a_fatal_commit_error_stops_the_cycle() {
    let spec = spec(WorkloadKind::KvChurn, "always");
    let mut target = FakeTarget::new(AckMode::OnCommit);
    target.fatal_commit = Some(4);
    let (events, outcome) = run(&mut target, &spec, 9, &State::new(), 0);
    assert_eq!(
        outcome.stopped.as_ref().map(|e| e.kind.clone()),
        Some(TargetErrorKind::Fatal)
    );
    assert_eq!(outcome.failed, 1);
    assert!(
        matches!(events.last(), Some(Event::CommitFailed { .. })),
        "{:?}",
        events.last()
    );
    assert_eq!(target.commits, 4);
}

#[test]
fn bank_cycles_keep_the_total_and_continue_from_their_base() {
    let spec = spec(WorkloadKind::Bank, "group");
    let invariant = BankTotal {
        accounts: spec.params.accounts,
        initial_balance: spec.params.initial_balance,
    };
    let mut target = FakeTarget::new(AckMode::OnFlush);
    let (events, first) = run(&mut target, &spec, 1, &State::new(), 0);
    assert!(invariant.check(&target.committed).is_ok());
    assert_eq!(target.committed.len(), spec.params.accounts as usize);
    let history = History::new(State::new(), 0, &events);
    let promise = Promise {
        kind: spec.target.promise(FaultProfile::PowerLoss),
        fault: FaultProfile::PowerLoss,
        crash_time_us: 0,
        fsync_allowance_us: 0,
    };
    let invariants = WorkloadKind::Bank.invariants(&spec.params);
    for prefix in 0..=history.txns().len() {
        // Every prefix keeps the total (losses may be violations: not asked).
        assert!(
            invariants[0].check(&history.state_after(prefix)).is_ok(),
            "prefix {prefix}"
        );
    }
    assert!(check(&history, &target.committed, promise, &invariants).is_ok());
    // Cycle two starts from the durable state: no account creation again.
    let base = target.committed.clone();
    let mut second = FakeTarget::with_state(AckMode::OnFlush, base.clone());
    let (events, outcome) = run(&mut second, &spec, 2, &base, first.next_txn_id);
    let first_writes = events.iter().find_map(|e| match e {
        Event::CommitIssued { writes, .. } => Some(writes.len()),
        _ => None,
    });
    assert_eq!(
        first_writes,
        Some(2),
        "a transfer, not the account creation"
    );
    assert!(invariant.check(&second.committed).is_ok());
    assert!(outcome.issued > 0);
    let history = History::new(base, first.next_txn_id, &events);
    assert!(check(&history, &second.committed, promise, &invariants).is_ok());
}

#[test]
fn the_long_transaction_never_commits_and_aborts_or_stays_open() {
    let spec = spec(WorkloadKind::LongTxnSteal, "always");
    let mut saw_open = false;
    let mut saw_abort = false;
    for seed in 0..8 {
        let mut target = FakeTarget::new(AckMode::OnCommit);
        let (events, outcome) = run(&mut target, &spec, seed, &State::new(), 0);
        for event in &events {
            if let Event::CommitIssued { writes, .. } = event {
                assert!(
                    writes.iter().all(|(key, _)| !key.starts_with(b"l")),
                    "long txn committed"
                );
            }
        }
        saw_open |= outcome.in_flight == 1;
        saw_abort |= outcome.in_flight == 0;
    }
    assert!(saw_open && saw_abort);
}

#[test]
fn checkpoint_storm_checkpoints_often() {
    let spec = spec(WorkloadKind::CheckpointStorm, "none");
    let (_, outcome) = run(
        &mut FakeTarget::new(AckMode::OnCommit),
        &spec,
        4,
        &State::new(),
        0,
    );
    assert!(outcome.checkpoints * 3 >= outcome.issued, "{outcome:?}");
}

#[test]
fn every_builtin_scenario_drives_the_fake_target() {
    for name in Scenario::builtin_names() {
        let scenario = Scenario::builtin(name).unwrap();
        for combo in scenario.combos().into_iter().take(8) {
            let spec = scenario.cycle_spec(combo);
            let mut target = FakeTarget::new(mode(&combo.target.to_string()));
            let (events, outcome) = run(&mut target, &spec, 1, &State::new(), 0);
            assert!(outcome.stopped.is_none());
            let history = History::new(State::new(), 0, &events);
            let promise = Promise {
                kind: combo.target.promise(combo.fault),
                fault: combo.fault,
                crash_time_us: 0,
                fsync_allowance_us: 0,
            };
            let verdict = check(
                &history,
                &target.committed,
                promise,
                &combo.workload.invariants(&spec.params),
            );
            assert!(
                verdict.is_ok(),
                "{name} {combo:?}: {:?}",
                verdict.violations
            );
        }
    }
}
