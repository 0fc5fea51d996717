//! kv-threads: many client threads against one engine in real time.
//!
//! The engine runs as a user runs it: [`SystemClock`], the real
//! [`Engine::commit`] (leaders and followers of group commit on its
//! condition variable), a [`Engine::spawn_flusher`] thread ticking it (the
//! `interval:MS` fsyncs, background fuzzy checkpoints, spare segments), and
//! thread 0 taking a full checkpoint every `checkpoint_every` of its
//! transactions. Every thread records into the one trace (its appends are
//! serialised, so the trace is one sequence across threads):
//! `CommitIssued` before the commit call, `CommitLogged` from the engine's
//! commit observer while the WAL is locked (so in log order, and before the
//! record can reach storage), and `Acked` right after the call returned Ok.
//! The oracle orders the history by those LSNs
//! ([`crate::oracle::history::History::in_log_order`]).
//!
//! Each thread draws its transactions from its own seeded stream, but the
//! interleaving is the scheduler's: a fresh run of a seed gives another
//! trace, so a case replays from the trace its bundle stores. Errors: a
//! `Conflict` (another thread holds the key) aborts the transaction and
//! goes on; any other error stops that thread.

use super::driver::{CycleSpec, PlannedValue};
use super::kv;
use crate::fault::trace::{Event, EventSink, WorkloadTxnId, threaded_txn_id};
use crate::oracle::tag;
use engine::storage::Storage;
use engine::{Clock, Config, Engine, Error, SystemClock, TxnId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The flusher thread's period when the policy sets none.
const FLUSHER_PERIOD_US: u64 = 1000;

/// Under `interval:MS` the flusher ticks this many times per window: the
/// engine fsyncs at the first tick at least MS after its last fsync, so
/// it keeps its window up to one tick late (the oracle allows that tick,
/// [`flusher_period_us`], on top of one fsync's duration).
const FLUSHER_TICKS_PER_WINDOW: u64 = 8;

/// The shortest flusher period.
const FLUSHER_PERIOD_US_MIN: u64 = 100;

/// How often the flusher thread ticks the engine under `policy`.
pub fn flusher_period_us(policy: engine::FsyncPolicy) -> u64 {
    match policy {
        engine::FsyncPolicy::Interval { ms } => {
            (ms * 1000 / FLUSHER_TICKS_PER_WINDOW).max(FLUSHER_PERIOD_US_MIN)
        }
        _ => FLUSHER_PERIOD_US,
    }
}

/// What the threads did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadedOutcome {
    pub acked: u64,
    pub aborted: u64,
    /// Transactions aborted on a conflict with another thread.
    pub conflicts: u64,
    /// The first error that stopped a thread (or the flusher), if any.
    pub stopped: Option<String>,
}

/// Opens the engine on `storage` (recording `OpenIssued` / `Opened`
/// around recovery) and runs one kv-threads cycle on `clock` (the one the
/// trace stamps its events with, so `Acked` times and the trace's times
/// are on one time line); an error is a failed recovery, in one line.
pub fn run_threaded_cycle(
    config: Config,
    storage: Arc<dyn Storage>,
    clock: Arc<SystemClock>,
    spec: &CycleSpec,
    seed: u64,
    sink: Arc<dyn EventSink>,
    txn_id_base: WorkloadTxnId,
) -> Result<ThreadedOutcome, String> {
    sink.record(Event::OpenIssued);
    let engine = Engine::open(storage, config, clock.clone()).map_err(|error| error.to_string())?;
    sink.record(Event::Opened);
    let engine = Arc::new(engine);
    // Engine txn id -> workload txn id, for commits under way.
    let names: Arc<Mutex<HashMap<TxnId, WorkloadTxnId>>> = Arc::default();
    {
        let names = names.clone();
        let sink = sink.clone();
        engine.set_commit_observer(Box::new(move |txn, lsn| {
            let name = names.lock().expect("names lock").get(&txn).copied();
            if let Some(name) = name {
                sink.record(Event::CommitLogged {
                    txn: name,
                    lsn: Some(lsn),
                });
            }
        }));
    }
    let period_us = flusher_period_us(engine.config().policy);
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = Engine::spawn_flusher(&engine, period_us, stop.clone());
    let threads = spec.params.threads.max(1);
    let per_thread = (spec.params.txns_per_cycle / threads).max(1);
    let outcomes: Vec<ThreadedOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let client = Client {
                    engine: &engine,
                    clock: clock.as_ref(),
                    spec,
                    rng: ChaCha8Rng::seed_from_u64(thread_seed(seed, index)),
                    sink: sink.as_ref(),
                    names: &names,
                    index,
                    txn_id_base,
                    issued: 0,
                    checkpoints: index == 0,
                };
                scope.spawn(move || client.run(per_thread))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a client thread panicked"))
            .collect()
    });
    stop.store(true, Ordering::Release);
    let flushed = flusher.join().expect("the flusher thread panicked");
    let mut total = ThreadedOutcome::default();
    for outcome in outcomes {
        total.acked += outcome.acked;
        total.aborted += outcome.aborted;
        total.conflicts += outcome.conflicts;
        total.stopped = total.stopped.or(outcome.stopped);
    }
    if let Err(error) = flushed {
        total.stopped = total.stopped.or(Some(error.to_string()));
    }
    Ok(total)
}

struct Client<'a> {
    engine: &'a Engine,
    clock: &'a SystemClock,
    spec: &'a CycleSpec,
    rng: ChaCha8Rng,
    sink: &'a dyn EventSink,
    names: &'a Mutex<HashMap<TxnId, WorkloadTxnId>>,
    /// This thread's index (named in its transactions' ids).
    index: u32,
    txn_id_base: WorkloadTxnId,
    /// Transactions this thread began so far.
    issued: u64,
    /// This thread takes the full checkpoints.
    checkpoints: bool,
}

impl Client<'_> {
    fn run(mut self, txns: u32) -> ThreadedOutcome {
        let mut outcome = ThreadedOutcome::default();
        for done in 1..=txns {
            if let Err(error) = self.txn(&mut outcome) {
                outcome.stopped = Some(error.to_string());
                break;
            }
            let every = self.spec.params.checkpoint_every;
            if self.checkpoints && every > 0 && done.is_multiple_of(every) {
                self.sink.record(Event::CheckpointIssued);
                if let Err(error) = self.engine.checkpoint() {
                    outcome.stopped = Some(error.to_string());
                    break;
                }
                self.sink.record(Event::CheckpointAcked);
            }
        }
        outcome
    }

    /// One transaction; `Err` stops the thread (a conflict does not).
    fn txn(&mut self, outcome: &mut ThreadedOutcome) -> Result<(), Error> {
        let params = &self.spec.params;
        let plan = kv::plan_txn(&mut self.rng, params);
        let abort = self.rng.random_bool(params.abort_ratio);
        let id = threaded_txn_id(self.txn_id_base, self.index, self.issued);
        self.issued += 1;
        let handle = self.engine.begin()?;
        let mut writes = Vec::with_capacity(plan.len());
        for (index, planned) in plan.into_iter().enumerate() {
            let write_index = u32::try_from(index).expect("ops bounded");
            let value = match planned.value {
                PlannedValue::Filler { len } => {
                    let mut filler = vec![0u8; len as usize - tag::TAG_LEN];
                    self.rng.fill(&mut filler[..]);
                    Some(tag::tagged_value(id, write_index, &filler))
                }
                PlannedValue::Delete | PlannedValue::Balance(_) => None,
            };
            let result = match &value {
                Some(value) => self.engine.put(handle, &planned.key, value),
                None => self.engine.delete(handle, &planned.key),
            };
            match result {
                Ok(()) => writes.push((planned.key, value)),
                Err(Error::Conflict { .. } | Error::PageFull { .. }) => {
                    outcome.conflicts += 1;
                    return self.engine.abort(handle);
                }
                Err(error) => return Err(error),
            }
        }
        if abort {
            outcome.aborted += 1;
            return self.engine.abort(handle);
        }
        self.names.lock().expect("names lock").insert(handle, id);
        self.sink.record(Event::CommitIssued { txn: id, writes });
        let committed = self.engine.commit(handle);
        self.names.lock().expect("names lock").remove(&handle);
        match committed {
            Ok(_) => {
                self.sink.record(Event::Acked {
                    txn: id,
                    now_us: self.clock.now_us(),
                });
                outcome.acked += 1;
                Ok(())
            }
            Err(error) => {
                self.sink.record(Event::CommitFailed { txn: id });
                Err(error)
            }
        }
    }
}

/// Thread `index`'s own stream of choices.
fn thread_seed(seed: u64, index: u32) -> u64 {
    seed ^ u64::from(index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
