//! The workload driver: runs one crash cycle of a seeded workload against a
//! [`Target`], single-threaded, recording the workload events of the trace.
//!
//! Every choice comes from one ChaCha8 stream seeded with the cycle's seed, so
//! a deterministic target yields the same event list for the same seed. The
//! driver keeps up to `open_txns` transactions open and interleaves their
//! operations; it aborts some; it records `CommitIssued` before each commit
//! call and `CommitLogged` after it, `Acked` for every acknowledgement
//! `take_acks` reports (polled after every call that may acknowledge), and
//! `CheckpointIssued`/`CheckpointAcked` around checkpoints. Under group
//! commit it plays the leader: after some commits it calls `flush_begin`,
//! sometimes issues more commits, then `flush_finish`, so commits enqueued
//! during a flush exist.
//!
//! Errors: `Rejected` on begin/put/delete aborts that transaction and goes
//! on; any other error, or any error from commit, flush or checkpoint, stops
//! the cycle (the supervisor crashes it). A failed commit's effect is
//! unknown, so no later transaction is generated from the model.

use super::scenario::{WorkloadKind, WorkloadParams};
use super::{bank, kv};
use crate::fault::trace::{Event, EventSink, WorkloadTxnId, Write};
use crate::oracle::tag;
use crate::target::{
    State, Target, TargetError, TargetErrorKind, TargetFactory, TargetMode, TargetResult, TxnHandle,
};
use engine::storage::Storage;
use engine::{Clock, VirtualClock};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Probability that the group leader starts a flush after a commit, and
/// that an open flush finishes at a step.
const GROUP_FLUSH_PROBABILITY: f64 = 0.5;
/// Probability that a step begins a new transaction when one may begin.
const BEGIN_PROBABILITY: f64 = 0.4;
/// Probability that the long transaction takes the step.
const LONG_TXN_STEP_PROBABILITY: f64 = 0.3;

/// What one cycle runs.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleSpec {
    pub kind: WorkloadKind,
    pub params: WorkloadParams,
    /// The target mode: under group commit the driver leads flushes; a
    /// checkpoint is recorded as a durable point only where it is one.
    pub target: TargetMode,
}

/// The value a planned write will carry (its tag is added when written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannedValue {
    Delete,
    /// Random filler up to this total length (tag included).
    Filler {
        len: u32,
    },
    /// A bank balance.
    Balance(i64),
}

/// One write a generator planned for a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedWrite {
    pub key: Vec<u8>,
    pub value: PlannedValue,
}

/// What a cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleOutcome {
    /// The first workload txn id the next cycle may use.
    pub next_txn_id: WorkloadTxnId,
    /// Commits issued (the call returned Ok).
    pub issued: u64,
    /// Commits acknowledged.
    pub acked: u64,
    /// Transactions the workload aborted by choice.
    pub aborted: u64,
    /// Transactions aborted because the target rejected an operation.
    pub rejected: u64,
    /// Commit calls that returned an error.
    pub failed: u64,
    /// Checkpoints acknowledged.
    pub checkpoints: u64,
    /// Transactions still open at the end (the long one of long-txn-steal).
    pub in_flight: u64,
    /// Acknowledgements of handles the driver never committed (a target bug).
    pub unknown_acks: u64,
    /// The error that stopped the cycle early, if one did.
    pub stopped: Option<TargetError>,
    /// The base with every issued commit applied in issue order.
    pub issued_state: State,
}

/// Opens a target for the workload, recording `OpenIssued` before and
/// `Opened` after a successful open (recovery runs in between).
pub fn open_target(
    factory: &dyn TargetFactory,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    sink: &dyn EventSink,
) -> TargetResult<Box<dyn Target>> {
    sink.record(Event::OpenIssued);
    let target = factory.open(storage, clock)?;
    sink.record(Event::Opened);
    Ok(target)
}

/// Runs one cycle of `spec` from the durable state `base`; workload txn ids
/// start at `txn_id_base`.
pub fn run_cycle(
    target: &mut dyn Target,
    spec: &CycleSpec,
    seed: u64,
    base: &State,
    sink: &dyn EventSink,
    clock: &VirtualClock,
    txn_id_base: WorkloadTxnId,
) -> CycleOutcome {
    let driver = Driver {
        target,
        spec,
        rng: ChaCha8Rng::seed_from_u64(seed),
        sink,
        clock,
        next_txn_id: txn_id_base,
        open: Vec::new(),
        pending: BTreeMap::new(),
        locked: BTreeSet::new(),
        flush_open: false,
        started: 0,
        finished: 0,
        outcome: CycleOutcome {
            issued_state: base.clone(),
            ..CycleOutcome::default()
        },
    };
    driver.run()
}

struct OpenTxn {
    id: WorkloadTxnId,
    handle: TxnHandle,
    plan: Vec<PlannedWrite>,
    done: Vec<Write>,
    abort: bool,
    /// The long transaction of long-txn-steal: never committed.
    long: bool,
}

impl OpenTxn {
    fn ops_left(&self) -> bool {
        self.done.len() < self.plan.len()
    }

    /// False only for the long transaction once it waits, in flight, for
    /// the crash.
    fn active(&self) -> bool {
        !self.long || self.abort || self.ops_left()
    }
}

struct Driver<'a> {
    target: &'a mut dyn Target,
    spec: &'a CycleSpec,
    rng: ChaCha8Rng,
    sink: &'a dyn EventSink,
    clock: &'a VirtualClock,
    next_txn_id: WorkloadTxnId,
    open: Vec<OpenTxn>,
    /// Issued, unacknowledged commits: target handle → workload txn id.
    pending: BTreeMap<TxnHandle, WorkloadTxnId>,
    /// Keys of open bank transfers (no other transfer touches them).
    locked: BTreeSet<Vec<u8>>,
    flush_open: bool,
    /// Regular transactions begun (or skipped).
    started: u32,
    /// Transactions ended (committed or aborted), for checkpoint spacing.
    finished: u32,
    outcome: CycleOutcome,
}

impl Driver<'_> {
    fn run(mut self) -> CycleOutcome {
        let params = &self.spec.params;
        let steps_max = u64::from(params.txns_per_cycle)
            * (u64::from(params.ops_per_txn.max.max(params.accounts)) + 3)
            + u64::from(params.long_txn_ops) * 8
            + 64;
        if self.spec.kind == WorkloadKind::LongTxnSteal && params.long_txn_ops > 0 {
            let abort = self.rng.random_bool(0.5);
            self.begin(kv::plan_long_txn(params), abort, true);
        }
        if self.spec.kind == WorkloadKind::Bank
            && !bank::has_accounts(&self.outcome.issued_state, params)
        {
            self.create_accounts();
        }
        let mut steps: u64 = 0;
        while self.running() && self.more_work() {
            assert!(steps < steps_max, "driver exceeded {steps_max} steps");
            steps += 1;
            self.step();
        }
        if self.running() {
            self.drain();
        }
        self.outcome.next_txn_id = self.next_txn_id;
        self.outcome.in_flight = self.open.len() as u64;
        self.outcome
    }

    fn running(&self) -> bool {
        self.outcome.stopped.is_none()
    }

    fn more_work(&self) -> bool {
        self.started < self.spec.params.txns_per_cycle || self.open.iter().any(OpenTxn::active)
    }

    /// The bank's first transaction: every account, committed at once.
    fn create_accounts(&mut self) {
        if !self.begin(bank::plan_create(&self.spec.params), false, false) {
            return;
        }
        let index = self.open.len() - 1;
        while self.running() && self.open.len() > index && self.open[index].ops_left() {
            self.advance(index);
        }
        if self.running() && self.open.len() > index {
            self.advance(index);
        }
    }

    fn step(&mut self) {
        if self.flush_open && self.rng.random_bool(GROUP_FLUSH_PROBABILITY) {
            self.flush_finish();
        }
        let regular_open = self.open.iter().filter(|txn| !txn.long).count();
        let may_begin = self.started < self.spec.params.txns_per_cycle
            && regular_open < self.spec.params.open_txns as usize;
        let long_index = self.open.iter().position(|txn| txn.long && txn.ops_left());
        if !self.running() {
            return;
        } else if long_index.is_some() && self.rng.random_bool(LONG_TXN_STEP_PROBABILITY) {
            self.advance(long_index.expect("checked"));
        } else if may_begin && (regular_open == 0 || self.rng.random_bool(BEGIN_PROBABILITY)) {
            self.begin_regular();
        } else {
            let candidates: Vec<usize> = (0..self.open.len())
                .filter(|&i| self.open[i].active())
                .collect();
            if !candidates.is_empty() {
                let pick = candidates[self.rng.random_range(0..candidates.len())];
                self.advance(pick);
            }
        }
        self.clock.advance_us(self.spec.params.op_time_us);
        if self.running() {
            let result = self.target.tick();
            self.check(result);
            self.poll_acks();
        }
    }

    fn begin_regular(&mut self) {
        self.started += 1;
        let params = &self.spec.params;
        let plan = match self.spec.kind {
            WorkloadKind::Bank => bank::plan_transfer(
                &mut self.rng,
                params,
                &self.outcome.issued_state,
                &self.locked,
            ),
            _ => Some(kv::plan_txn(&mut self.rng, params)),
        };
        let abort = self.rng.random_bool(params.abort_ratio);
        if let Some(plan) = plan {
            self.begin(plan, abort, false);
        }
    }

    /// Begins a transaction; false if the target refused.
    fn begin(&mut self, plan: Vec<PlannedWrite>, abort: bool, long: bool) -> bool {
        let handle = match self.target.begin() {
            Ok(handle) => handle,
            Err(error) => {
                self.fail(error);
                return false;
            }
        };
        let id = self.next_txn_id;
        self.next_txn_id += 1;
        if self.spec.kind == WorkloadKind::Bank {
            self.locked
                .extend(plan.iter().map(|write| write.key.clone()));
        }
        self.open.push(OpenTxn {
            id,
            handle,
            plan,
            done: Vec::new(),
            abort,
            long,
        });
        true
    }

    /// One operation of open transaction `index`, or its end.
    fn advance(&mut self, index: usize) {
        let txn = &self.open[index];
        if txn.ops_left() {
            self.write(index);
        } else if txn.abort {
            let txn = self.end(index);
            let result = self.target.abort(txn.handle);
            self.check(result);
            self.outcome.aborted += 1;
        } else if !txn.long {
            self.commit(index);
        }
    }

    fn write(&mut self, index: usize) {
        let txn = &self.open[index];
        let write_index = u32::try_from(txn.done.len()).expect("ops bounded");
        let planned = txn.plan[txn.done.len()].clone();
        let (id, handle) = (txn.id, txn.handle);
        let value = match planned.value {
            PlannedValue::Delete => None,
            PlannedValue::Filler { len } => {
                let mut filler = vec![0u8; len as usize - tag::TAG_LEN];
                self.rng.fill(&mut filler[..]);
                Some(tag::tagged_value(id, write_index, &filler))
            }
            PlannedValue::Balance(balance) => {
                Some(tag::tagged_value(id, write_index, &balance.to_le_bytes()))
            }
        };
        let result = match &value {
            Some(value) => self.target.put(handle, &planned.key, value),
            None => self.target.delete(handle, &planned.key),
        };
        match result {
            Ok(()) => self.open[index].done.push((planned.key, value)),
            Err(error) if error.kind == TargetErrorKind::Rejected => {
                let txn = self.end(index);
                let result = self.target.abort(txn.handle);
                self.check(result);
                self.outcome.rejected += 1;
            }
            Err(error) => self.fail(error),
        }
    }

    fn commit(&mut self, index: usize) {
        let txn = self.end(index);
        self.sink.record(Event::CommitIssued {
            txn: txn.id,
            writes: txn.done.clone(),
        });
        match self.target.commit(txn.handle) {
            Ok(lsn) => {
                self.sink.record(Event::CommitLogged { txn: txn.id, lsn });
                self.outcome.issued += 1;
                self.pending.insert(txn.handle, txn.id);
                crate::oracle::history::apply(&mut self.outcome.issued_state, &txn.done);
                self.poll_acks();
                if self.spec.target.leads_group_commit()
                    && !self.flush_open
                    && self.rng.random_bool(GROUP_FLUSH_PROBABILITY)
                {
                    let result = self.target.flush_begin();
                    self.flush_open = result.is_ok();
                    self.check(result);
                }
            }
            Err(error) => {
                self.sink.record(Event::CommitFailed { txn: txn.id });
                self.outcome.failed += 1;
                self.fail(error);
                return;
            }
        }
        let every = match self.spec.kind {
            WorkloadKind::CheckpointStorm => self.spec.params.storm_checkpoint_every,
            _ => self.spec.params.checkpoint_every,
        };
        if every > 0 && self.finished.is_multiple_of(every) && self.running() {
            self.checkpoint();
        }
    }

    /// Removes open transaction `index` (ended), unlocking its keys.
    fn end(&mut self, index: usize) -> OpenTxn {
        let txn = self.open.remove(index);
        for write in &txn.plan {
            self.locked.remove(&write.key);
        }
        self.finished += 1;
        txn
    }

    fn checkpoint(&mut self) {
        self.sink.record(Event::CheckpointIssued);
        let result = self.target.checkpoint();
        self.poll_acks();
        if result.is_ok() {
            if self.spec.target.checkpoint_is_durable() {
                self.sink.record(Event::CheckpointAcked);
            }
            self.outcome.checkpoints += 1;
        }
        self.check(result);
    }

    fn flush_finish(&mut self) {
        self.flush_open = false;
        let result = self.target.flush_finish();
        self.poll_acks();
        self.check(result);
    }

    /// The end of a cycle: a last group flush, so issued commits get acked.
    fn drain(&mut self) {
        if self.flush_open {
            self.flush_finish();
        }
        if self.running() && self.spec.target.leads_group_commit() && !self.pending.is_empty() {
            let result = self.target.flush_begin();
            self.check(result);
            if self.running() {
                self.flush_finish();
            }
        }
        if self.running() {
            let result = self.target.tick();
            self.check(result);
            self.poll_acks();
        }
    }

    fn poll_acks(&mut self) {
        for handle in self.target.take_acks() {
            match self.pending.remove(&handle) {
                Some(txn) => {
                    self.sink.record(Event::Acked {
                        txn,
                        now_us: self.clock.now_us(),
                    });
                    self.outcome.acked += 1;
                }
                None => self.outcome.unknown_acks += 1,
            }
        }
    }

    fn check(&mut self, result: TargetResult<()>) {
        if let Err(error) = result {
            self.fail(error);
        }
    }

    /// A `Rejected` error is survivable; anything else stops the cycle.
    fn fail(&mut self, error: TargetError) {
        if error.kind != TargetErrorKind::Rejected && self.outcome.stopped.is_none() {
            self.outcome.stopped = Some(error);
        }
    }
}
