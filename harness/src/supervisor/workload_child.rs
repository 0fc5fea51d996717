//! The workload child: one cycle of the workload on the recording storage,
//! in a forked process that the worker really kills (SIGKILL).
//!
//! The child opens the engine on the previous cycle's crash image (recovery
//! is recorded too), runs the seeded workload, and records every storage
//! operation and acknowledgement in a shared-memory trace mapped before the
//! fork, so the trace survives the kill. The child is killed when it reaches
//! `stop_at` (replay), when it finishes its work, or — in chaos mode — at a
//! moment chosen independently of its progress; the operation index reached
//! is read from the trace, so every case stays replayable.

use super::child::{self, Received};
use super::trial::{Chain, cycle_start_us, txn_id_base};
use crate::fault::recording::{FaultPlan, RecordingStorage, StopHook};
use crate::fault::shm::SharedTrace;
use crate::fault::trace::{Event, EventSink};
use crate::oracle::ViolationKind;
use crate::target::TargetFactory;
use crate::workload::threaded::run_threaded_cycle;
use crate::workload::{CycleSpec, open_target, run_cycle};
use engine::storage::MemStorage;
use engine::{SystemClock, VirtualClock};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of shared memory for one cycle's trace (reserved, not committed).
pub const TRACE_BYTES_MAX: usize = 1 << 30;

/// How long one workload cycle may run before it counts as hung.
pub const WORKLOAD_TIME_MAX: Duration = Duration::from_secs(120);

/// In chaos mode the kill comes after this many microseconds at most (a
/// smoke cycle runs for a few milliseconds).
pub const CHAOS_KILL_US_MAX: u64 = 6_000;

/// What the worker asks of one workload cycle.
pub struct WorkloadRequest<'a> {
    pub factory: &'a dyn TargetFactory,
    pub spec: &'a CycleSpec,
    pub chain: &'a Chain,
    pub cycle: usize,
    pub seed: u64,
    /// The sync (counted from 0) that fails with EIO (`fsync-error`).
    pub fail_sync: Option<u64>,
    /// Kill the child when the trace reaches this many events.
    pub stop_at: Option<u64>,
    /// Chaos mode: kill at a moment drawn from this seed.
    pub chaos_seed: Option<u64>,
}

/// Something went wrong in the workload process itself.
#[derive(Clone, Debug)]
pub struct WorkloadProblem {
    pub kind: ViolationKind,
    pub message: String,
}

/// The recorded trace of one cycle.
pub struct WorkloadRun {
    pub events: Vec<Event>,
    /// When each event was appended, on the workload's clock (a threaded
    /// cycle's trace is timed); empty for an untimed trace.
    pub times: Vec<u64>,
    pub problem: Option<WorkloadProblem>,
}

const STOPPED: &[u8] = b"stopped";
const DONE: &[u8] = b"done";

/// Runs one workload cycle in a child and returns its trace.
pub fn run(request: &WorkloadRequest<'_>) -> Result<WorkloadRun, String> {
    let trace = Arc::new(
        SharedTrace::new(TRACE_BYTES_MAX).map_err(|e| format!("cannot map the trace: {e}"))?,
    );
    let mut child = child::spawn(|out| child_main(request, &trace, out))
        .map_err(|e| format!("cannot fork a workload child: {e}"))?;
    let timeout = match request.chaos_seed {
        Some(seed) => Duration::from_micros(
            ChaCha8Rng::seed_from_u64(seed).random_range(50..=CHAOS_KILL_US_MAX),
        ),
        None => WORKLOAD_TIME_MAX,
    };
    let received = child
        .recv(timeout)
        .map_err(|e| format!("workload child pipe: {e}"))?;
    let end = child
        .kill_and_wait()
        .map_err(|e| format!("cannot reap a workload child: {e}"))?;
    let (events, times) = trace
        .try_timed_events()
        .map_err(|e| format!("unreadable trace: {e}"))?;
    let recovered = events.iter().any(|event| matches!(event, Event::Opened));
    let sync_failed = events.iter().any(|event| {
        matches!(
            event,
            Event::SyncData { failed: true, .. }
                | Event::SyncAll { failed: true, .. }
                | Event::SyncDir { failed: true, .. }
        )
    });
    let problem = match received {
        Received::Frame(frame) if frame == STOPPED || frame == DONE => None,
        // An injected fsync error during recovery stops the engine, as it
        // must; the trace up to there is the cycle.
        Received::Frame(_) if sync_failed => None,
        Received::TimedOut if request.chaos_seed.is_some() => None,
        Received::Frame(frame) => Some(WorkloadProblem {
            kind: ViolationKind::RecoveryError,
            message: String::from_utf8_lossy(&frame).into_owned(),
        }),
        Received::TimedOut => Some(WorkloadProblem {
            kind: ViolationKind::RecoveryHang,
            message: format!(
                "the workload process did not finish within {}s ({} events recorded, {})",
                WORKLOAD_TIME_MAX.as_secs(),
                events.len(),
                if recovered {
                    "after recovery"
                } else {
                    "during recovery"
                }
            ),
        }),
        Received::Closed => Some(WorkloadProblem {
            kind: ViolationKind::RecoveryPanic,
            message: format!(
                "the engine died {} in the workload process ({end}) after {} events",
                if recovered {
                    "after recovery"
                } else {
                    "during recovery"
                },
                events.len()
            ),
        }),
    };
    Ok(WorkloadRun {
        events,
        times,
        problem,
    })
}

fn child_main(
    request: &WorkloadRequest<'_>,
    trace: &Arc<SharedTrace>,
    out: &mut child::FrameWriter,
) -> i32 {
    let sink: Arc<dyn EventSink> = trace.clone();
    let hook_out = Mutex::new(out.try_clone().expect("clone the workload pipe"));
    let plan = FaultPlan {
        fail_sync: request.fail_sync,
        stop_at: request.stop_at,
    };
    let hook: StopHook = Box::new(move |_index| {
        let _ = hook_out.lock().expect("hook pipe").send(STOPPED);
        loop {
            // Wait for the worker's SIGKILL.
            std::thread::sleep(Duration::from_secs(3600));
        }
    });
    let storage = RecordingStorage::new(
        MemStorage::from_files(request.chain.image.clone()),
        sink.clone(),
        plan,
        Some(hook),
    );
    if request.spec.kind.threaded() {
        // One time line for the engine and the trace: each event carries
        // the time it was appended at, so the oracle knows when each crash
        // point was (`verify::crash_time_us`).
        let clock = Arc::new(SystemClock::new());
        assert!(trace.stamp_with(clock.clone()), "a fresh trace per child");
        let config = request
            .factory
            .engine_config()
            .expect("kv-threads runs only on the engine (checked with the scenario)");
        let _ = match run_threaded_cycle(
            config,
            Arc::new(storage),
            clock,
            request.spec,
            request.seed,
            sink,
            txn_id_base(request.cycle),
        ) {
            Ok(_) => out.send(DONE),
            Err(error) => out.send(
                format!("recovery of the workload's starting image failed: {error}").as_bytes(),
            ),
        };
        return 0;
    }
    let clock = Arc::new(VirtualClock::new(cycle_start_us(request.cycle)));
    let mut target = match open_target(
        request.factory,
        Arc::new(storage),
        clock.clone(),
        sink.as_ref(),
    ) {
        Ok(target) => target,
        Err(error) => {
            let _ = out.send(
                format!("recovery of the workload's starting image failed: {error}").as_bytes(),
            );
            return 2;
        }
    };
    run_cycle(
        target.as_mut(),
        request.spec,
        request.seed,
        &request.chain.state,
        sink.as_ref(),
        &clock,
        txn_id_base(request.cycle),
    );
    let _ = out.send(DONE);
    0
}
