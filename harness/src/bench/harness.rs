//! `powercut bench harness`: crash states verified per second.
//!
//! Runs the built-in `smoke` scenario under `power-loss` on all cores for a
//! fixed time, through the same dispatcher, workers and verifier children as
//! `powercut run`, and reports crash states per second (each one a crash
//! image built, recovered, judged by the oracle, recovered again, written to
//! and reopened). `--target` picks the target modes (default: the
//! scenario's, the engine under its policies), e.g. `sqlite:wal-full`.

use super::BenchError;
use crate::supervisor::run::{Plan, RunRequest, execute};
use std::io::Write;
use std::time::Duration;

/// What one harness benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct HarnessBench {
    pub jobs: u32,
    pub trials: u64,
    pub crash_states: u64,
    pub elapsed_s: f64,
    pub crash_states_per_s: f64,
    pub violations: u64,
}

/// Measures for `duration` with `jobs` workers (None: all cores).
/// `targets` (`--target`) picks the targets (empty: the scenario's); for
/// each process target among them the cost of each step is printed first.
pub fn run_harness_bench(
    duration: Duration,
    jobs: Option<u32>,
    targets: &[String],
    out: &mut dyn Write,
) -> Result<HarnessBench, BenchError> {
    let request = RunRequest {
        scenario: Some("smoke".to_string()),
        seed: 1,
        duration: Some(format!("{}ms", duration.as_millis())),
        targets: targets.to_vec(),
        faults: vec!["power-loss".to_string()],
        jobs,
        ..RunRequest::default()
    };
    let label = if targets.is_empty() {
        "smoke".to_string()
    } else {
        format!("smoke on {}", targets.join(","))
    };
    // A bad --target or scenario is the user's: exit 2, not a failure.
    let plan = Plan::resolve(request).map_err(BenchError::InvalidOptions)?;
    for selector in targets {
        let Ok(mode) = selector.parse::<crate::target::TargetMode>() else {
            continue;
        };
        if mode.kind().deterministic() {
            continue;
        }
        let costs = super::process::profile(mode, super::process::ROUNDS_DEFAULT)
            .map_err(BenchError::Run)?;
        writeln!(
            out,
            "{mode}: per start, mean of {} rounds: mount+start+first answer {:.1} ms (mount, start of `true`, kill, unmount alone: {:.1} ms, \
             of which mount+fork+exec {:.1} ms, unmount {:.1} ms), scan {:.2} ms, one commit {:.2} ms, kill+unmount {:.1} ms, \
             clean close+unmount {:.1} ms",
            costs.rounds,
            costs.open_us / 1e3,
            costs.mount_us / 1e3,
            costs.mount_spawn_us / 1e3,
            costs.unmount_us / 1e3,
            costs.scan_us / 1e3,
            costs.commit_us / 1e3,
            costs.kill_us / 1e3,
            costs.close_us / 1e3
        )?;
    }
    let report = execute(&plan).map_err(BenchError::Run)?;
    let summary = report.summary;
    let bench = HarnessBench {
        jobs: plan.jobs,
        trials: summary.trials,
        crash_states: summary.crash_states,
        elapsed_s: summary.elapsed_s,
        crash_states_per_s: summary.crash_states_per_s,
        violations: summary.violations,
    };
    writeln!(
        out,
        "harness: {label} × power-loss, {} job(s): {} trials, {} crash states in {:.1}s = {:.0} crash states/s ({} violations)",
        bench.jobs,
        bench.trials,
        bench.crash_states,
        bench.elapsed_s,
        bench.crash_states_per_s,
        bench.violations
    )?;
    Ok(bench)
}
