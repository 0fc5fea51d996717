//! `powercut replay CASE`: rebuild one crash state exactly and judge it again.
//!
//! CASE is a case id or a bundle directory. Every cycle of the case is run
//! again with the workload killed exactly at its recorded crash point (the
//! workload is deterministic, so the trace prefix is the same bytes), each
//! crash image is rebuilt from its fault choices, and the last one is
//! recovered and judged in a verifier child, as the run did.

use crate::case::bundle;
use crate::case::id::{CaseId, Crash};
use crate::exit;
use crate::fault::image::{CrashImage, build_image};
use crate::fault::trace::Event;
use crate::supervisor::protocol::WorkerSetup;
use crate::supervisor::trial::{Chain, CrashState, TrialPlan};
use crate::supervisor::verify::{self, CycleInput, StateResult};
use crate::supervisor::workload_child::{self, WorkloadRequest};
use crate::workload::WorkloadKind;
use crate::workload::scenario;
use std::path::{Path, PathBuf};

/// A case, resolved to everything needed to rebuild it.
pub struct Resolved {
    pub case: CaseId,
    pub plan: TrialPlan,
    /// A process target's bundle: the cycle it recorded (replayed from its
    /// trace instead of running the workload again).
    pub recorded: Option<bundle::RecordedCycle>,
}

/// Resolves CASE (a case id or a bundle directory), under `target` instead
/// of the case's own target mode when one is given (`--target`: the same
/// seeded workload and crash points against another target or mode); the
/// error is one line.
pub fn resolve(argument: &str, target: Option<&str>) -> Result<Resolved, String> {
    let path = Path::new(argument);
    let (text, bundled_toml, recorded) = if path.is_dir() {
        let (case, toml) = bundle::read(path)?;
        (case, Some(toml), bundle::read_recorded(path)?)
    } else {
        (argument.to_string(), None, None)
    };
    let mut case: CaseId = text
        .parse()
        .map_err(|e: crate::case::id::CaseIdError| e.to_string())?;
    if let Some(target) = target {
        case.target = target
            .parse::<crate::target::TargetMode>()
            .map_err(|e| format!("--target: {e}"))?;
        crate::target::check_parts(&[case.target])?;
    }
    let toml = match bundled_toml {
        Some(toml) => toml,
        None => scenario_text(&case.scenario)?,
    };
    if recorded.is_none() && !case.target.kind().deterministic() {
        return Err(format!(
            "target `{}` is a process target: its cases replay from their bundle directory (failures/<case>/ under the run's --out), which keeps the trace",
            case.target
        ));
    }
    if recorded.is_none() && case.workload == WorkloadKind::KvThreads.name() {
        return Err(format!(
            "workload `{}` runs many threads and is not deterministic: its cases replay from their bundle directory (failures/<case>/ under the run's --out), which keeps the trace",
            case.workload
        ));
    }
    if recorded.is_some() && target.is_some() {
        return Err(
            "--target cannot change the target of a recorded (process target) bundle".into(),
        );
    }
    let plan = plan_for(&case, toml)?;
    Ok(Resolved {
        case,
        plan,
        recorded,
    })
}

fn scenario_text(label: &str) -> Result<String, String> {
    if let Some(text) = scenario::builtin_toml(label) {
        return Ok(text.to_string());
    }
    let Some((name, hash)) = label.split_once('@') else {
        return Err(format!(
            "unknown scenario `{label}` in the case id (built-ins: {})",
            scenario::Scenario::builtin_names().join(", ")
        ));
    };
    let candidate = PathBuf::from("scenarios").join(format!("{name}.toml"));
    match std::fs::read_to_string(&candidate) {
        Ok(text) if format!("{:08x}", crc32c::crc32c(text.as_bytes())) == hash => Ok(text),
        _ => Err(format!(
            "scenario file `{name}` (hash {hash}) is not built in and not at {}: replay its bundle directory instead",
            candidate.display()
        )),
    }
}

/// The trial plan that reproduces `case`: the scenario narrowed to the
/// case's workload, policy and fault, with its bugs and workload limits.
pub fn plan_for(case: &CaseId, toml: String) -> Result<TrialPlan, String> {
    let bugs: Vec<String> = case
        .bugs
        .iter()
        .map(|bug| bug.name().to_string())
        .chain(case.vfs_bugs.iter().map(|bug| bug.name().to_string()))
        .collect();
    let setup = WorkerSetup {
        scenario_label: case.scenario.clone(),
        scenario_toml: toml,
        targets: vec![case.target.to_string()],
        policies: Vec::new(),
        faults: vec![case.fault.to_string()],
        bugs,
        cycles: Some(case.crashes.len() as u32),
        seed: case.seed,
        chaos: false,
        exhaustive: None,
        failures_dir: None,
        bundles_max: 0,
    };
    let mut plan = TrialPlan::new(&setup).map_err(|e| format!("corrupt case or bundle: {e}"))?;
    let workload = case
        .workload
        .parse()
        .map_err(|e| format!("malformed case id: {e}"))?;
    plan.scenario.workloads = vec![workload];
    plan.scenario.starts = vec![case.start];
    plan.combos = plan.scenario.combos();
    plan.limits = case.limits;
    if let Some(txns) = case.limits.txns_max {
        plan.scenario.workload.txns_per_cycle =
            plan.scenario.workload.txns_per_cycle.min(txns.max(1));
    }
    if let Some(value) = case.limits.value_len_max {
        let tag = crate::oracle::tag::TAG_LEN as u32;
        let size = &mut plan.scenario.workload.value_size;
        size.max = size.max.min(value.max(tag));
        size.min = size.min.min(size.max);
    }
    Ok(plan)
}

/// The rebuilt crash state and its verdict.
pub struct Replayed {
    pub events: Vec<Event>,
    pub image: CrashImage,
    pub result: StateResult,
    /// Problems of the workload process itself (a panic outside recovery).
    pub workload_problem: Option<String>,
}

/// Runs the case's cycles again and judges its crash state.
pub fn rebuild(resolved: &Resolved, explain: bool) -> Result<Replayed, String> {
    if let Some(recorded) = &resolved.recorded {
        return rebuild_recorded(resolved, recorded, explain);
    }
    let Resolved { case, plan, .. } = resolved;
    let trial = case.trial;
    let combo = plan.combo(trial);
    let factory = plan.factory(trial);
    let spec = plan.scenario.cycle_spec(combo);
    let mut chain = plan.start_chain(trial)?;
    for (cycle, crash) in case.crashes.iter().enumerate() {
        let cycle_seed = plan.cycle_seed(trial, cycle);
        let run = workload_child::run(&WorkloadRequest {
            factory: factory.as_ref(),
            spec: &spec,
            chain: &chain,
            cycle,
            seed: cycle_seed,
            fail_sync: plan.fail_sync(combo.fault, cycle_seed),
            stop_at: Some(crash.point),
            chaos_seed: None,
        })?;
        let last = cycle + 1 == case.crashes.len();
        let (events, image, result) = judge_crash(
            plan,
            trial,
            cycle,
            &chain,
            (&run.events, &run.times),
            crash,
            factory.as_ref(),
            explain && last,
            !last,
        )?;
        if last {
            return Ok(Replayed {
                events,
                image,
                result,
                workload_problem: run.problem.map(|p| format!("{}: {}", p.kind, p.message)),
            });
        }
        let Some(continuation) = result.continuation else {
            return Err(format!(
                "cycle {cycle}'s crash state fails already ({}): replay `{}`",
                result
                    .violations
                    .first()
                    .map_or("no state".to_string(), |(kind, _)| kind.clone()),
                CaseId {
                    crashes: case.crashes[..=cycle].to_vec(),
                    ..case.clone()
                }
            ));
        };
        let mut crashes: Vec<Crash> = chain.crashes.clone();
        crashes.push(crash.clone());
        chain = Chain {
            image: image.files,
            state: continuation.state(),
            crashes,
        };
    }
    unreachable!("a case id has at least one crash")
}

/// Rebuilds a process target's crash state from its bundle: the recorded
/// trace of the failing cycle, cut at the case's crash point, with its
/// fault choices, over the disk the cycle started from; then starts the
/// program on the image and judges it, as the run did.
fn rebuild_recorded(
    resolved: &Resolved,
    recorded: &bundle::RecordedCycle,
    explain: bool,
) -> Result<Replayed, String> {
    let Resolved { case, plan, .. } = resolved;
    let factory = plan.factory(case.trial);
    let (crash, earlier) = case
        .crashes
        .split_last()
        .expect("a case id has at least one crash");
    let chain = Chain {
        image: recorded.base_image.clone(),
        state: recorded.base_state.clone(),
        crashes: earlier.to_vec(),
    };
    let (events, image, result) = judge_crash(
        plan,
        case.trial,
        earlier.len(),
        &chain,
        (&recorded.events, &recorded.times),
        crash,
        factory.as_ref(),
        explain,
        false,
    )?;
    Ok(Replayed {
        events,
        image,
        result,
        workload_problem: None,
    })
}

/// Cuts the cycle's `events` (and their times, if the trace is timed) at
/// `crash`'s point, rebuilds the crash image
/// over `chain` with its fault choices, and judges it in a verifier child
/// (asking for the recovered state to continue with when `continues`).
#[allow(clippy::too_many_arguments)] // one crash state, spelt out
fn judge_crash(
    plan: &TrialPlan,
    trial: u64,
    cycle: usize,
    chain: &Chain,
    (events, times): (&[Event], &[u64]),
    crash: &Crash,
    factory: &dyn crate::target::TargetFactory,
    explain: bool,
    continues: bool,
) -> Result<(Vec<Event>, CrashImage, StateResult), String> {
    let fault = plan.combo(trial).fault;
    let sector_size = u64::from(plan.scenario.crash.sector_size);
    let point = usize::try_from(crash.point).map_err(|_| "crash point too large".to_string())?;
    if events.len() < point {
        return Err(format!(
            "cycle {cycle} recorded only {} operations, the case crashes at {point}: this case does not belong to this binary or scenario",
            events.len()
        ));
    }
    let events = events[..point].to_vec();
    let times = &times[..point.min(times.len())];
    let state = CrashState {
        point,
        faults: crash.faults.clone(),
    };
    let image = build_image(
        &chain.image,
        &events,
        point,
        fault,
        sector_size,
        &state.faults.to_choices(),
    )
    .map_err(|e| format!("cannot rebuild the crash image: {e}"))?;
    let input = CycleInput {
        plan,
        trial,
        cycle,
        chain,
        events: &events,
        times,
        factory,
        explain,
    };
    let mut bundles = verify::BundleBudget::default();
    let result = verify::verify_states(
        &input,
        std::slice::from_ref(&state),
        continues.then_some(0),
        &mut bundles,
    )?
    .pop()
    .expect("one state, one result");
    Ok((events, image, result))
}

/// `powercut replay`; returns the exit code.
/// What `powercut replay` was asked.
pub struct ReplayRequest<'a> {
    pub case: &'a str,
    /// Replay under this target mode instead of the case's.
    pub target: Option<&'a str>,
    pub explain: bool,
    pub keep_image: Option<&'a Path>,
    pub flaky: Option<u32>,
}

pub fn main(request: &ReplayRequest<'_>) -> i32 {
    let (explain, keep_image, flaky) = (request.explain, request.keep_image, request.flaky);
    let resolved = match resolve(request.case, request.target) {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    // A recorded bundle replays its one trace the same way every time: its
    // `--flaky N` runs the trial afresh instead (below).
    let runs = match resolved.recorded {
        Some(_) => 1,
        None => flaky.unwrap_or(1).max(1),
    };
    let mut reproduced = 0;
    let mut first: Option<Replayed> = None;
    for _ in 0..runs {
        let replayed = match rebuild(&resolved, explain && first.is_none()) {
            Ok(replayed) => replayed,
            Err(message) => {
                eprintln!("powercut: {message}");
                return exit::HARNESS_FAILED;
            }
        };
        if !replayed.result.violations.is_empty() {
            reproduced += 1;
        }
        if let Some(first) = &first {
            if first.image.files != replayed.image.files {
                println!("the crash image differs between replays: the case is not deterministic");
            }
        } else {
            first = Some(replayed);
        }
    }
    let replayed = first.expect("at least one run");
    if let Some(dir) = keep_image {
        if let Err(message) = keep(dir, &replayed.image) {
            eprintln!("powercut: {message}");
            return exit::HARNESS_FAILED;
        }
        println!("crash image written to {}", dir.display());
    }
    print_verdict(&resolved.case, &replayed);
    if runs > 1 {
        println!("reproduced {reproduced} of {runs} replays");
    }
    if let (Some(fresh), Some(_)) = (flaky, &resolved.recorded) {
        match fresh_runs(&resolved, &replayed, fresh.max(1)) {
            Ok(line) => println!("{line}"),
            Err(message) => {
                eprintln!("powercut: {message}");
                return exit::HARNESS_FAILED;
            }
        }
    }
    if reproduced > 0 {
        exit::VIOLATIONS
    } else {
        exit::OK
    }
}

/// `--flaky N` for a case that is not deterministic (a threaded trial, a
/// process target): runs its trial afresh `runs` times from the same seed
/// (new interleavings, new crash points) and says how many found a
/// violation of the kind the bundle holds.
fn fresh_runs(resolved: &Resolved, replayed: &Replayed, runs: u32) -> Result<String, String> {
    let Some((kind, _)) = replayed.result.violations.first() else {
        return Ok(format!(
            "the bundle's trace shows no violation: {runs} fresh run(s) not attempted"
        ));
    };
    let mut found = 0;
    for _ in 0..runs {
        let outcome = resolved
            .plan
            .run_trial(resolved.case.trial, &mut verify::BundleBudget::default())?;
        if outcome.failures.iter().any(|failure| &failure.kind == kind) {
            found += 1;
        }
    }
    Ok(format!(
        "a fresh run of trial {} (same seed, new interleaving) found {kind} in {found} of {runs} run(s)",
        resolved.case.trial
    ))
}

fn print_verdict(case: &CaseId, replayed: &Replayed) {
    let result = &replayed.result;
    if let Some(explanation) = &result.explanation {
        println!("{explanation}");
    }
    if result.violations.is_empty() && !result.unpromised.is_empty() {
        println!(
            "no promise broken: case {case} is under a `none` promise; observed (counted, not a failure):"
        );
        for (kind, message) in &result.unpromised {
            println!("  {kind}: {message}");
        }
        return;
    }
    if result.violations.is_empty() {
        println!(
            "did not reproduce: case {case} recovers to a valid state ({} acknowledged commit(s) at the crash, {} lost within the policy's promise)",
            result.acked, result.acked_lost_permitted
        );
        return;
    }
    println!("reproduced: case {case}");
    for (kind, message) in &result.violations {
        println!("  {kind}: {message}");
    }
}

fn keep(dir: &Path, image: &CrashImage) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, bytes) in &image.files {
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))?;
    }
    Ok(())
}
