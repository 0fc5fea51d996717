//! Verifying crash states in isolated children.
//!
//! A verifier child (forked from the worker, so it already holds the trace)
//! builds each crash image, recovers it on an in-memory disk, and asks the
//! oracle; then it checks that recovery is idempotent (recover the recovered
//! disk again: same state), that the engine accepts a new commit, and that a
//! clean close and reopen keeps the state. It announces each state before
//! starting it, so when recovery hangs past its time limit, panics, aborts
//! or exhausts memory, the worker knows which state did it, records the
//! finding, and starts a new verifier child for the rest.

use super::child::{self, ChildEnd, Received};
use super::recovery_fault;
use super::trial::{Chain, CrashState, TrialPlan, cycle_start_us, txn_id_base};
use crate::case::bundle::{self, Bundle};
use crate::fault::FaultProfile;
use crate::fault::image::ImageBuilder;
use crate::fault::trace::Event;
use crate::oracle::{self, History, Invariant, Promise, ViolationKind};
use crate::report::groups::GroupKey;
use crate::target::{PromiseKind, State, Target, TargetErrorKind, TargetFactory, TargetMode};
use crate::workload::scenario::Combo;
use engine::VirtualClock;
use engine::storage::{MemStorage, Storage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The key the writability probe commits (outside every workload's keys).
pub const PROBE_KEY: &[u8] = b"\xffpowercut-probe";

/// One fsync's duration, allowed on top of an `interval:MS` loss window.
pub const FSYNC_ALLOWANCE_US: u64 = 1_000;

/// Address space a verifier child may use before allocation fails.
pub const VERIFIER_ADDRESS_SPACE_MAX: u64 = 8 << 30;

/// Everything a cycle's verification needs.
pub struct CycleInput<'a> {
    pub plan: &'a TrialPlan,
    pub trial: u64,
    pub cycle: usize,
    pub chain: &'a Chain,
    pub events: &'a [Event],
    /// When each event was appended (a timed trace: threaded trials), or
    /// empty; see [`crash_time_us`].
    pub times: &'a [u64],
    pub factory: &'a dyn TargetFactory,
    /// Tell each state's story in words (`replay --explain`).
    pub explain: bool,
}

/// Whether a crash state exercises its policy's promise: it holds an
/// acknowledged commit of its cycle that the promise forbids losing, so a
/// target breaking the promise would be caught here. Per promise:
///
/// - `durable` (`always`, `group`), and every promise under `process-crash`
///   (written data survives it): any acknowledged commit;
/// - `window:MS` (`interval:MS`) under a power loss: a commit acknowledged at least 2×MS
///   before the crash (the oracle's crash time, [`crash_time_us`]) — twice
///   the window, so a flusher that runs late, not only one that never
///   runs, is seen;
/// - `prefix` (the engine's `none`) and `none` under a power loss: a commit
///   acknowledged before a completed checkpoint (its only durable point);
/// - `media`: any acknowledged commit (a wrong value for it must be a
///   corruption error).
pub fn covers_promise(history: &History, promise: Promise) -> bool {
    let crash_us = promise
        .crash_time_us
        .max(history.last_ack_us().unwrap_or(0));
    let volatile_lost = promise.fault.loses_volatile_data() && promise.fault != FaultProfile::Media;
    history.txns().iter().any(|txn| {
        let Some(ack) = txn.ack else {
            return false;
        };
        match promise.kind {
            _ if !volatile_lost => true,
            PromiseKind::Durable => true,
            PromiseKind::Window { ms } => crash_us.saturating_sub(ack.now_us) >= 2 * ms * 1000,
            PromiseKind::Prefix | PromiseKind::None => history.acked_before_durable_point(txn),
        }
    })
}

/// The moment of the crash at `point` (events `0..point` happened) that a
/// window promise is judged by. A timed trace (a threaded trial's, in real
/// time) says when each event was appended, on the clock its `Acked` times
/// come from: the crash came no earlier than the last event it keeps, so
/// that event's time is the crash time — every commit acknowledged more
/// than the window before it must survive. These times are recorded data
/// (a bundle keeps them), never read again from a clock, so a replay
/// judges the same. An untimed trace (virtual time) has only its
/// acknowledgements: the last one's time, or the cycle's start.
pub fn crash_time_us(history: &History, times: &[u64], point: usize, cycle: usize) -> u64 {
    let last_event = point.checked_sub(1).and_then(|last| times.get(last));
    last_event
        .copied()
        .into_iter()
        .chain(history.last_ack_us())
        .max()
        .unwrap_or(cycle_start_us(cycle))
}

/// What an `interval:MS` window allows on top of MS: one fsync's
/// duration, and in a threaded trial one period of the flusher thread
/// that ticks the engine in real time (it fsyncs at its first tick at
/// least MS after the last fsync).
pub fn window_allowance_us(combo: Combo) -> u64 {
    match combo.target {
        TargetMode::Engine(policy) if combo.workload.threaded() => {
            FSYNC_ALLOWANCE_US + crate::workload::threaded::flusher_period_us(policy)
        }
        _ => FSYNC_ALLOWANCE_US,
    }
}

/// The verdict on one crash state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StateResult {
    /// The state exercises its policy's promise (see [`covers_promise`]).
    #[serde(default)]
    pub covers_promise: bool,
    pub acked: u64,
    pub acked_lost_permitted: u64,
    pub loss_window_max_us: u64,
    pub recovery_us: u64,
    /// `(kind, message)` of each violation found.
    pub violations: Vec<(String, String)>,
    /// What would be violations, found where the promise is `none`:
    /// counted by kind, never failures.
    #[serde(default)]
    pub unpromised: Vec<(String, String)>,
    /// For the continuation state: its image and recovered state.
    pub continuation: Option<Continuation>,
    pub bundle: Option<String>,
    /// Why a failing state has no bundle (with `--out`).
    #[serde(default)]
    pub no_bundle: Option<String>,
    /// The story in words, when asked for.
    pub explanation: Option<String>,
}

/// The recovered state of the state a cycle continues from (the worker
/// rebuilds its crash image itself), as base64 of length-prefixed pairs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Continuation {
    pub state: String,
}

impl Continuation {
    pub fn new(state: &State) -> Continuation {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        for (key, value) in state {
            for part in [key, value] {
                bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                bytes.extend_from_slice(part);
            }
        }
        Continuation {
            state: base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
        }
    }

    pub fn state(&self) -> State {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&self.state)
            .expect("the verifier encodes continuations");
        let mut parts = Vec::new();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            parts.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        assert!(parts.len() % 2 == 0, "continuation holds key/value pairs");
        let mut state = State::new();
        let mut pairs = parts.into_iter();
        while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
            state.insert(key, value);
        }
        state
    }
}

#[derive(Serialize, Deserialize)]
enum Frame {
    Start(usize),
    Done(usize, Box<StateResult>),
    HarnessError(String),
}

/// Which failing crash states a worker keeps a bundle of: the first
/// `left` (the run's cap, [`bundle::BUNDLES_MAX`], shared out among the
/// workers), and — for a case that replays only from its bundle (a
/// threaded trial, a process target) — every one that is the smallest so
/// far of its group (violation kind × policy × fault, fewest operations,
/// ties to the smaller case id, as the run's groups choose), cap or not.
/// A group's smallest case over the run is the smallest of some worker's,
/// so the replay line the run prints for it always names a bundle.
#[derive(Clone, Debug, Default)]
pub struct BundleBudget {
    pub left: u32,
    /// Per group, the smallest case bundled so far: (operations, case id).
    smallest: BTreeMap<GroupKey, (u64, String)>,
}

impl BundleBudget {
    pub fn new(left: u32) -> BundleBudget {
        BundleBudget {
            left,
            smallest: BTreeMap::new(),
        }
    }

    /// True if `case` would be the smallest of its group bundled so far.
    fn is_smallest(&self, case: &FailingCase) -> bool {
        self.smallest
            .get(&case.group)
            .is_none_or(|(operations, id)| {
                (case.operations, case.id.as_str()) < (*operations, id.as_str())
            })
    }

    /// Counts a bundle written for `case`.
    fn bundled(&mut self, case: &FailingCase) {
        self.left = self.left.saturating_sub(1);
        if self.is_smallest(case) {
            self.smallest
                .insert(case.group.clone(), (case.operations, case.id.clone()));
        }
    }
}

/// A failing crash state as the run's groups see it.
struct FailingCase {
    group: GroupKey,
    operations: u64,
    id: String,
    /// It replays only from its bundle.
    recorded: bool,
}

/// The case id of `state`, a crash state of `input`'s cycle.
fn state_case(input: &CycleInput<'_>, state: &CrashState) -> crate::case::id::CaseId {
    input.plan.case_id(
        input.trial,
        input.chain,
        crate::case::id::Crash {
            point: state.point as u64,
            faults: state.faults.clone(),
        },
    )
}

/// The failing case of `state`, if `result` holds a violation.
fn failing_case(
    input: &CycleInput<'_>,
    state: &CrashState,
    result: &StateResult,
) -> Option<FailingCase> {
    let (kind, _) = result.violations.first()?;
    let combo = input.plan.combo(input.trial);
    let case = state_case(input, state);
    Some(FailingCase {
        group: GroupKey {
            kind: kind.clone(),
            policy: combo.target.to_string(),
            fault: combo.fault.to_string(),
        },
        operations: case.crashes.iter().map(|crash| crash.point).sum(),
        id: case.to_string(),
        recorded: combo.workload.threaded() || !combo.target.kind().deterministic(),
    })
}

/// Verifies `states` (sorted by crash point); returns one result per state.
pub fn verify_states(
    input: &CycleInput<'_>,
    states: &[CrashState],
    continuation: Option<usize>,
    bundles: &mut BundleBudget,
) -> Result<Vec<StateResult>, String> {
    let limit = input.plan.scenario.crash.recovery_time_limit;
    let mut results: Vec<StateResult> = Vec::with_capacity(states.len());
    while results.len() < states.len() {
        let first = results.len();
        let budget = bundles.clone();
        let mut verifier =
            child::spawn(|out| verifier_main(input, states, first, continuation, budget, out))
                .map_err(|e| format!("cannot fork a verifier: {e}"))?;
        let mut current = None;
        loop {
            match verifier
                .recv(limit)
                .map_err(|e| format!("verifier pipe: {e}"))?
            {
                Received::Frame(bytes) => match serde_json::from_slice::<Frame>(&bytes) {
                    Ok(Frame::Start(index)) => current = Some(index),
                    Ok(Frame::Done(index, result)) => {
                        assert_eq!(index, results.len(), "verifier answered out of order");
                        if result.bundle.is_some() {
                            // As the child counted it.
                            match failing_case(input, &states[index], &result) {
                                Some(case) => bundles.bundled(&case),
                                None => bundles.left = bundles.left.saturating_sub(1),
                            }
                        }
                        results.push(*result);
                        current = None;
                    }
                    Ok(Frame::HarnessError(message)) => return Err(message),
                    Err(error) => return Err(format!("unreadable verifier frame: {error}")),
                },
                Received::TimedOut => {
                    let Some(index) = current else {
                        return Err("a verifier child stalled between states".into());
                    };
                    verifier.kill_and_wait().map_err(|e| e.to_string())?;
                    results.push(failed(
                        ViolationKind::RecoveryHang,
                        format!(
                            "recovery did not finish within {} ms (state {index})",
                            limit.as_millis()
                        ),
                    ));
                    break;
                }
                Received::Closed => {
                    let end = verifier.wait().map_err(|e| e.to_string())?;
                    if let Some(index) = current {
                        results.push(failed(
                            ViolationKind::RecoveryPanic,
                            format!("recovery crashed the process: {end} (state {index})"),
                        ));
                    } else if end != ChildEnd::Exited(0) {
                        return Err(format!("a verifier child failed outside recovery: {end}"));
                    }
                    break;
                }
            }
        }
    }
    Ok(results)
}

impl StateResult {
    /// Where the promise is `none`, every violation is an observation:
    /// moved to `unpromised`, so it is counted and never fails the run.
    pub fn set_promise(&mut self, promise: crate::target::PromiseKind) {
        if promise == crate::target::PromiseKind::None {
            self.unpromised.append(&mut self.violations);
        }
    }
}

fn failed(kind: ViolationKind, message: String) -> StateResult {
    StateResult {
        violations: vec![(kind.name().to_string(), message)],
        no_bundle: Some(
            "its recovery hung or crashed the verifier, which leaves no recovered state to bundle"
                .into(),
        ),
        ..StateResult::default()
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn verifier_main(
    input: &CycleInput<'_>,
    states: &[CrashState],
    first: usize,
    continuation: Option<usize>,
    bundles: BundleBudget,
    out: &mut child::FrameWriter,
) -> i32 {
    limit_address_space();
    std::panic::set_hook(Box::new(|info| {
        *PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify_in_child(input, states, first, continuation, bundles, out)
    })) {
        Ok(code) => code,
        Err(_) => {
            let frame = Frame::HarnessError(format!("the verifier panicked: {}", panic_text()));
            let _ = out.send(&serde_json::to_vec(&frame).expect("frame serialises"));
            1
        }
    }
}

fn verify_in_child(
    input: &CycleInput<'_>,
    states: &[CrashState],
    first: usize,
    continuation: Option<usize>,
    mut bundles: BundleBudget,
    out: &mut child::FrameWriter,
) -> i32 {
    let combo = input.plan.combo(input.trial);
    let sector_size = u64::from(input.plan.scenario.crash.sector_size);
    let mut builder = ImageBuilder::new(&input.chain.image, input.events, sector_size);
    let invariants = combo.workload.invariants(&input.plan.scenario.workload);
    let send = |frame: &Frame, out: &mut child::FrameWriter| {
        out.send(&serde_json::to_vec(frame).expect("frame serialises"))
            .is_ok()
    };
    // Test-only (see `recovery_fault`): read here, in the verifier child only.
    let planted = match recovery_fault::from_env() {
        Ok(fault) => fault.map(|fault| recovery_fault::MisbehavingFactory { fault }),
        Err(message) => {
            send(&Frame::HarnessError(message), out);
            return 1;
        }
    };
    for (index, state) in states.iter().enumerate().skip(first) {
        if !send(&Frame::Start(index), out) {
            return 1;
        }
        let factory: &dyn TargetFactory = match &planted {
            Some(planted) if recovery_fault::fires_at(input.cycle, index) => planted,
            _ => input.factory,
        };
        let choices = state.faults.to_choices();
        let image = match builder.image_at(state.point, combo.fault, &choices) {
            Ok(image) => image,
            Err(error) => {
                send(
                    &Frame::HarnessError(format!("cannot build crash image: {error}")),
                    out,
                );
                return 1;
            }
        };
        let mut history = History::new(
            input.chain.state.clone(),
            txn_id_base(input.cycle),
            &input.events[..state.point],
        );
        if input.plan.combo(input.trial).workload.threaded() {
            history = history.in_log_order();
        }
        let promise = Promise {
            kind: combo.target.promise(combo.fault),
            fault: combo.fault,
            crash_time_us: crash_time_us(&history, input.times, state.point, input.cycle),
            fsync_allowance_us: window_allowance_us(combo),
        };
        let checked = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_state(
                factory,
                combo.target,
                &image.files,
                &history,
                promise,
                &invariants,
            )
        })) {
            Ok(checked) => checked,
            Err(_) => Checked {
                verdict: oracle::Verdict {
                    violations: vec![violation(
                        ViolationKind::RecoveryPanic,
                        format!("the engine panicked after recovery: {}", panic_text()),
                    )],
                    ..oracle::Verdict::default()
                },
                state: None,
                recovery_summary: String::new(),
                recovery_us: 0,
            },
        };
        let mut result = StateResult {
            covers_promise: covers_promise(&history, promise),
            acked: oracle::acknowledged(&history).count() as u64,
            acked_lost_permitted: checked.verdict.acked_lost_permitted,
            loss_window_max_us: checked.verdict.loss_window_max_us,
            recovery_us: checked.recovery_us,
            violations: checked
                .verdict
                .violations
                .iter()
                .map(|v| (v.kind.name().to_string(), v.message.clone()))
                .collect(),
            continuation: None,
            bundle: None,
            no_bundle: None,
            explanation: None,
            unpromised: Vec::new(),
        };
        result.set_promise(promise.kind);
        if continuation == Some(index)
            && result.violations.is_empty()
            && let Some(recovered) = &checked.state
        {
            result.continuation = Some(Continuation::new(recovered));
        }
        let failing = failing_case(input, state, &result);
        let wants_bundle = failing
            .as_ref()
            .is_some_and(|case| bundles.left > 0 || (case.recorded && bundles.is_smallest(case)));
        if failing.is_some() && !wants_bundle && input.plan.setup.failures_dir.is_some() {
            result.no_bundle = Some(format!(
                "the run's cap of {} bundles was reached",
                bundle::BUNDLES_MAX
            ));
        }
        if wants_bundle || input.explain {
            let contents = bundle_for(input, state, &image, &history, &checked);
            if input.explain {
                result.explanation = Some(contents.explanation.clone());
            }
            let dir = input
                .plan
                .setup
                .failures_dir
                .as_ref()
                .filter(|_| wants_bundle);
            if let Some(dir) = dir {
                let name = contents
                    .case_id
                    .parse::<crate::case::id::CaseId>()
                    .map(|c| c.bundle_name());
                let written = name.map_err(|e| e.to_string()).and_then(|name| {
                    bundle::write(std::path::Path::new(dir), &name, &contents)
                        .map_err(|e| e.to_string())
                });
                match written {
                    Ok(path) => {
                        if let Some(case) = &failing {
                            bundles.bundled(case);
                        }
                        result.bundle = Some(path.to_string_lossy().into_owned());
                    }
                    Err(error) => result.no_bundle = Some(format!("writing it failed: {error}")),
                }
            }
        }
        if !send(&Frame::Done(index, Box::new(result)), out) {
            return 1;
        }
    }
    0
}

fn limit_address_space() {
    let limit = nix::sys::resource::rlim_t::try_from(VERIFIER_ADDRESS_SPACE_MAX).expect("fits");
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit);
}

/// What recovering one crash image showed.
pub struct Checked {
    pub verdict: oracle::Verdict,
    /// The recovered state, if recovery and the scan succeeded.
    pub state: Option<State>,
    pub recovery_summary: String,
    pub recovery_us: u64,
}

fn violation(kind: ViolationKind, message: String) -> oracle::Violation {
    oracle::Violation::new(kind, message)
}

fn panic_text() -> String {
    PANIC_MESSAGE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| "panic".to_string())
}

/// Opens a target on `storage`, turning a panic into an error message.
fn open(
    factory: &dyn TargetFactory,
    storage: &MemStorage,
    now_us: u64,
) -> Result<Box<dyn Target>, (ViolationKind, String, TargetErrorKind)> {
    let clock = Arc::new(VirtualClock::new(now_us));
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        factory.open(storage, clock)
    })) {
        Ok(Ok(target)) => Ok(target),
        Ok(Err(error)) => Err((
            ViolationKind::RecoveryError,
            format!("recovery failed: {error}"),
            error.kind,
        )),
        Err(_) => Err((
            ViolationKind::RecoveryPanic,
            format!("recovery panicked: {}", panic_text()),
            TargetErrorKind::Other,
        )),
    }
}

fn scan(target: &mut dyn Target) -> Result<State, (String, TargetErrorKind)> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.scan())) {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(error)) => Err((
            format!("reading the recovered state failed: {error}"),
            error.kind,
        )),
        Err(_) => Err((
            format!("reading the recovered state panicked: {}", panic_text()),
            TargetErrorKind::Other,
        )),
    }
}

/// Recovers `files`, judges the state, and checks idempotence and
/// writability. Under `media`, a clear corruption error is an acceptable
/// outcome (never a wrong value).
pub fn check_state(
    factory: &dyn TargetFactory,
    mode: TargetMode,
    files: &BTreeMap<String, Vec<u8>>,
    history: &History,
    promise: Promise,
    invariants: &[Box<dyn Invariant>],
) -> Checked {
    let media = promise.fault == FaultProfile::Media;
    let storage = MemStorage::from_files(files.clone());
    let started = Instant::now();
    let mut checked = Checked {
        verdict: oracle::Verdict::default(),
        state: None,
        recovery_summary: String::new(),
        recovery_us: 0,
    };
    let mut target = match open(factory, &storage, promise.crash_time_us) {
        Ok(target) => target,
        Err((_, _, TargetErrorKind::Corruption)) if media => return checked,
        Err((kind, message, _)) => {
            // The explanation's "What recovery found" tells it too (a
            // program's own log line, for a process target).
            checked.recovery_summary = format!("it did not open: {message}");
            checked.verdict.violations.push(violation(kind, message));
            return checked;
        }
    };
    checked.recovery_us = started.elapsed().as_micros() as u64;
    checked.recovery_summary = target.recovery_summary();
    let state = match scan(target.as_mut()) {
        Ok(state) => state,
        Err((_, TargetErrorKind::Corruption)) if media => return checked,
        Err((message, _)) => {
            checked
                .verdict
                .violations
                .push(violation(ViolationKind::RecoveryError, message));
            return checked;
        }
    };
    checked.verdict = oracle::check(history, &state, promise, invariants);
    drop(target); // a crash right after recovery: the disk keeps every write
    if let Err(problem) = check_again(factory, mode, &storage, &state, promise) {
        checked.verdict.violations.push(problem);
    }
    checked.state = Some(state);
    checked
}

/// Recovers the recovered disk again (must give the same state), commits a
/// probe (must be acknowledged), closes cleanly and reopens (must keep the
/// state plus the probe).
fn check_again(
    factory: &dyn TargetFactory,
    mode: TargetMode,
    storage: &MemStorage,
    state: &State,
    promise: Promise,
) -> Result<(), oracle::Violation> {
    let now_us = promise.crash_time_us + 1;
    let mut again = open(factory, storage, now_us).map_err(|(_, message, _)| {
        violation(
            ViolationKind::NotIdempotent,
            format!("second recovery of the recovered disk: {message}"),
        )
    })?;
    let second = scan(again.as_mut())
        .map_err(|(message, _)| violation(ViolationKind::NotIdempotent, message))?;
    if &second != state {
        return Err(violation(
            ViolationKind::NotIdempotent,
            format!(
                "recovering the recovered disk again changed the state:\n{}",
                bundle::diff_text(state, &second)
            ),
        ));
    }
    let not_writable = |what: String| violation(ViolationKind::NotWritable, what);
    let probe = write_probe(again.as_mut(), mode, promise).map_err(not_writable)?;
    again
        .close()
        .map_err(|e| not_writable(format!("clean close after recovery failed: {e}")))?;
    let mut reopened = open(factory, storage, now_us + 1).map_err(|(_, message, _)| {
        not_writable(format!("reopen after a clean close: {message}"))
    })?;
    let after = scan(reopened.as_mut()).map_err(|(message, _)| not_writable(message))?;
    let mut expected = state.clone();
    expected.insert(PROBE_KEY.to_vec(), probe);
    if after != expected {
        return Err(not_writable(format!(
            "a clean close and reopen after recovery changed the state:\n{}",
            bundle::diff_text(&expected, &after)
        )));
    }
    Ok(())
}

fn write_probe(
    target: &mut dyn Target,
    mode: TargetMode,
    promise: Promise,
) -> Result<Vec<u8>, String> {
    let value = format!("probe@{}", promise.crash_time_us).into_bytes();
    let fail = |what: &str, e: crate::target::TargetError| {
        format!("the recovered engine refused a new commit ({what}): {e}")
    };
    let txn = target.begin().map_err(|e| fail("begin", e))?;
    target
        .put(txn, PROBE_KEY, &value)
        .map_err(|e| fail("put", e))?;
    target.commit(txn).map_err(|e| fail("commit", e))?;
    if mode.leads_group_commit() {
        target.flush_begin().map_err(|e| fail("flush", e))?;
        target.flush_finish().map_err(|e| fail("flush", e))?;
    }
    if !target.take_acks().contains(&txn) {
        return Err("the recovered engine did not acknowledge a new commit".into());
    }
    Ok(value)
}

/// Everything a failure bundle holds for one crash state.
fn bundle_for(
    input: &CycleInput<'_>,
    state: &CrashState,
    image: &crate::fault::image::CrashImage,
    history: &History,
    checked: &Checked,
) -> Bundle {
    let case = state_case(input, state);
    let violations: Vec<String> = checked
        .verdict
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.kind.name(), v.message))
        .collect();
    let trace: String = input.events[..state.point]
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let at = input
                .times
                .get(index)
                .map_or(String::new(), |us| format!("  [t={us}us]"));
            format!(
                "{index:>6} {}{at}\n",
                crate::case::explain::describe_event(event)
            )
        })
        .collect();
    let story = crate::case::explain::Story {
        case: &case,
        events: &input.events[..state.point],
        history,
        fates: &image.fates,
        recovery_summary: &checked.recovery_summary,
        violations: &checked.verdict.violations,
        recovered: checked.state.as_ref(),
        segment_size: input
            .plan
            .scenario
            .target_settings(input.plan.bugs)
            .engine
            .segment_size,
    };
    Bundle {
        case_id: case.to_string(),
        scenario_toml: input.plan.setup.scenario_toml.clone(),
        verdict_json: serde_json::to_string_pretty(&violations).expect("serialises"),
        explanation: story.tell(),
        trace,
        image: image.files.clone(),
        recovered: checked.state.clone(),
        expected: Some(history.state_after(crate::case::explain::acked_prefix(history))),
        recorded: recorded_cycle(input, case.target),
    }
}

/// A process target's or a threaded trial's bundle keeps the cycle it ran
/// (its workload cannot be run again byte for byte).
fn recorded_cycle(
    input: &CycleInput<'_>,
    target: crate::target::TargetMode,
) -> Option<bundle::RecordedCycle> {
    let threaded = input.plan.combo(input.trial).workload.threaded();
    (threaded || !target.kind().deterministic()).then(|| bundle::RecordedCycle {
        events: input.events.to_vec(),
        times: input.times.to_vec(),
        base_image: input.chain.image.clone(),
        base_state: input.chain.state.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::trace::{Event, threaded_txn_id};

    /// A threaded cycle's timed trace: thread 0 commits `k` (acknowledged
    /// at 130 µs), then the engine keeps writing (a checkpoint's pages, say)
    /// for 40 ms with no other acknowledgement, and nothing syncs.
    fn timed_trace() -> (History, Vec<Event>, Vec<u64>) {
        let txn = threaded_txn_id(txn_id_base(0), 0, 0);
        let write = |offset| Event::Write {
            file: 0,
            offset,
            data: vec![1; 8],
        };
        let events = vec![
            Event::OpenIssued,
            Event::Opened,
            Event::CommitIssued {
                txn,
                writes: vec![(b"k".to_vec(), Some(b"v".to_vec()))],
            },
            Event::CommitLogged { txn, lsn: Some(64) },
            write(0),
            Event::Acked { txn, now_us: 130 },
            write(4096),
            write(8192),
            write(12288),
        ];
        let times = vec![0, 10, 100, 110, 120, 131, 5_000, 20_000, 40_000];
        let history = History::new(State::new(), txn_id_base(0), &events).in_log_order();
        (history, events, times)
    }

    fn promise(crash_time_us: u64) -> Promise {
        Promise {
            kind: PromiseKind::Window { ms: 10 },
            fault: FaultProfile::PowerLoss,
            crash_time_us,
            fsync_allowance_us: FSYNC_ALLOWANCE_US,
        }
    }

    #[test]
    fn a_window_is_judged_by_the_time_of_each_crash_point_not_the_last_ack() {
        let (history, events, times) = timed_trace();
        let lost = State::new();
        let judged = |point: usize| {
            let prefix =
                History::new(State::new(), txn_id_base(0), &events[..point]).in_log_order();
            let crash_us = crash_time_us(&prefix, &times, point, 0);
            (
                crash_us,
                oracle::check(&prefix, &lost, promise(crash_us), &[]),
            )
        };
        // 40 ms after its acknowledgement the commit must have survived.
        let (crash_us, verdict) = judged(events.len());
        assert_eq!(crash_us, 40_000);
        assert_eq!(
            verdict.kinds().into_iter().collect::<Vec<_>>(),
            vec![ViolationKind::BeyondWindow],
            "{verdict:?}"
        );
        assert!(verdict.violations[0].message.contains("thread 0 txn 0"));
        // The loose judgement (the crash at the last acknowledgement) let
        // the same loss pass.
        let loose = oracle::check(
            &history,
            &lost,
            promise(history.last_ack_us().unwrap()),
            &[],
        );
        assert!(
            loose.is_ok() && loose.acked_lost_permitted == 1,
            "{loose:?}"
        );
        // 5 ms after it, within 10 ms + one fsync, losing it is permitted.
        let (crash_us, verdict) = judged(7);
        assert_eq!(crash_us, 5_000);
        assert!(
            verdict.is_ok() && verdict.acked_lost_permitted == 1,
            "{verdict:?}"
        );
        // Coverage follows the same clock: 2×MS after the ack, not before.
        assert!(covers_promise(&history, promise(40_000)));
        assert!(!covers_promise(&history, promise(5_000)));
    }

    #[test]
    fn an_untimed_trace_is_judged_at_its_last_acknowledgement() {
        let (history, events, _) = timed_trace();
        assert_eq!(crash_time_us(&history, &[], events.len(), 0), 130);
        let none = History::new(State::new(), txn_id_base(0), &events[..2]);
        assert_eq!(crash_time_us(&none, &[], 2, 0), cycle_start_us(0));
    }
}
