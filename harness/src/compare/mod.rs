//! `powercut compare`: the fsync-policy report (SPEC §5.3, §9).
//!
//! Puts both sides of the fsync trade in one table, measured in one run,
//! for every target mode `--target` selects (default: the engine under its
//! policies, and SQLite's `wal-full` and `wal-normal` beside it):
//!
//! - the throughput side: [`crate::bench::run_engine_bench`] on real files
//!   with real fsyncs, per target mode × committing threads;
//! - the crash side: the real run machinery ([`crate::supervisor::run`]) on
//!   the built-in `compare` scenario, per target mode × fault profile
//!   (`power-loss`, `process-crash`), with the mode's promise there and
//!   whether what was observed stays inside it. The workload driver is
//!   single-threaded and deterministic, so the crash side does not depend
//!   on the thread count: one crash measurement per mode × fault serves
//!   every thread row.
//!
//! Then it checks what the numbers must show ([`check_rows`]) and writes
//! `fsync-policies.csv` ([`CSV_COLUMNS`]) and `fsync-policies.svg`
//! ([`chart`]).
//!
//! Units and clocks: commit latencies are wall-clock µs on this machine's
//! disk; loss windows are in *virtual* ms (the workload's clock advances
//! `op_time_us` per step, and `interval:MS` windows are judged against it);
//! recovery times are wall-clock ms of recovering a crash image on an
//! in-memory disk inside a verifier child.
//!
//! Not checked here: that the throughput numbers are stable between runs
//! (fsync latency on a shared machine moves a lot; compare rows of one run).

pub mod chart;
pub mod cli;

use crate::bench::{self, BenchRow, EngineBenchOptions, System};
use crate::fault::FaultProfile;
use crate::supervisor::run::{Budget, Plan, RunRequest, execute};
use crate::supervisor::verify::FSYNC_ALLOWANCE_US;
use crate::target::{PromiseKind, TargetMode, expand_targets};
use engine::FsyncPolicy;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The built-in scenario the crash side runs.
pub const SCENARIO: &str = "compare";
/// The fault profiles of the crash side, in row order.
pub const FAULTS: [FaultProfile; 2] = [FaultProfile::PowerLoss, FaultProfile::ProcessCrash];
/// `fsync-policies.csv`'s header, in order.
pub const CSV_COLUMNS: [&str; 20] = [
    "policy",
    "threads",
    "fault",
    "commits_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "fsyncs_per_commit",
    "wal_bytes_per_commit",
    "crash_states",
    "acked",
    "acked_lost",
    "loss_per_1000",
    "max_loss_window_ms",
    "violations",
    "promise",
    "corrupt_states",
    "within_promise",
    "recovery_p50_ms",
    "recovery_p99_ms",
];
/// The CSV's file name in `--out`.
pub const CSV_NAME: &str = "fsync-policies.csv";
/// The chart's file name in `--out`.
pub const SVG_NAME: &str = "fsync-policies.svg";
/// Shortest throughput measurement of one configuration, whatever
/// `--duration` says.
pub const CONFIGURATION_DURATION_MIN: Duration = Duration::from_millis(100);
/// Longest `--duration`.
pub const DURATION_MAX: Duration = Duration::from_secs(6 * 3600);
/// Catch-up runs for policy × fault pairs the timed crash run did not reach.
pub const CATCH_UP_TRIALS_MAX: usize = 64;
/// PostgreSQL's crash side: crash points per trial and states per point of
/// the `compare` scenario it runs ([`postgres_scenario`]). A crash state of
/// PostgreSQL costs about a second (three starts of the server), the
/// engine's a few milliseconds: the full scenario (192 states a trial)
/// would take minutes per mode × fault.
pub const POSTGRES_POINTS_PER_TRIAL: i64 = 4;
pub const POSTGRES_STATES_PER_POINT: i64 = 2;

/// What `powercut compare` measures.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// `--target` selectors (`engine` stands for `policies`).
    pub targets: Vec<String>,
    pub policies: Vec<FsyncPolicy>,
    pub threads: Vec<usize>,
    /// The whole run's wall-clock budget: half for the throughput side
    /// (shared evenly among its configurations), half for the crash side.
    pub duration: Duration,
    pub out: PathBuf,
    /// Seeds the crash side (and the throughput side's keys).
    pub seed: u64,
    /// Crash-side worker processes (default: all cores).
    pub jobs: Option<u32>,
    /// Planted engine bugs for the crash side (a canary: the checks must
    /// then fail).
    pub bugs: Vec<String>,
    /// Where the throughput side makes its temporary database directory
    /// (default: the current directory; must not be tmpfs).
    pub bench_dir: Option<PathBuf>,
}

impl Default for CompareOptions {
    fn default() -> CompareOptions {
        CompareOptions {
            targets: DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
            policies: ["always", "group", "interval:10", "interval:1000", "none"]
                .iter()
                .map(|p| p.parse().expect("built-in policy"))
                .collect(),
            threads: vec![1, 8],
            duration: Duration::from_secs(60),
            out: PathBuf::from("reports"),
            seed: 1,
            jobs: None,
            bugs: Vec::new(),
            bench_dir: None,
        }
    }
}

/// The targets compared when `--target` is not given.
pub const DEFAULT_TARGETS: [&str; 3] = ["engine", "sqlite:wal-full", "sqlite:wal-normal"];

impl CompareOptions {
    /// The target modes compared, in row order.
    pub fn modes(&self) -> Result<Vec<TargetMode>, String> {
        expand_targets(&self.targets, &self.policies)
    }
}

/// Why `powercut compare` could not produce its report.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}")]
    Usage(String),
    #[error("throughput side: {0}")]
    Bench(#[from] bench::BenchError),
    #[error("crash side: {0}")]
    Crash(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("writing the table: {0}")]
    Output(#[from] io::Error),
}

/// One row of `fsync-policies.csv`; `None` is an empty cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CompareRow {
    pub policy: String,
    pub threads: usize,
    /// Empty on SQLite rows (no crash side).
    pub fault: String,
    pub commits_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub fsyncs_per_commit: Option<f64>,
    pub wal_bytes_per_commit: Option<f64>,
    pub crash_states: Option<u64>,
    pub acked: Option<u64>,
    pub acked_lost: Option<u64>,
    pub loss_per_1000: Option<f64>,
    pub max_loss_window_ms: Option<f64>,
    pub violations: Option<u64>,
    /// The mode's promise under this fault (durable, window:MS, prefix, none).
    pub promise: String,
    /// Crash states recovered to worse than a loss of commits.
    pub corrupt_states: Option<u64>,
    /// No violation: what was observed stays inside the promise.
    pub within_promise: Option<bool>,
    pub recovery_p50_ms: Option<f64>,
    pub recovery_p99_ms: Option<f64>,
}

/// The crash side of one policy × fault profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CrashSide {
    pub trials: u64,
    pub crash_states: u64,
    pub acked: u64,
    pub acked_lost: u64,
    pub loss_window_max_us: u64,
    pub violations: u64,
    pub corrupt_states: u64,
    /// Violations where the promise is `none`, counted.
    pub unpromised: u64,
    /// Violations by kind (e.g. `beyond-window`).
    pub violation_kinds: BTreeMap<String, u64>,
    pub recovery_p50_ms: f64,
    pub recovery_p99_ms: f64,
}

/// What one `powercut compare` measured and concluded.
#[derive(Clone, Debug)]
pub struct CompareReport {
    pub rows: Vec<CompareRow>,
    /// Checks that failed, one sentence each (empty: all passed).
    pub failed_checks: Vec<String>,
    pub elapsed_s: f64,
}

/// Runs both sides, checks them, writes the CSV and the SVG into
/// `options.out`, and prints progress and the table to `out`.
pub fn run_compare(
    options: &CompareOptions,
    out: &mut dyn Write,
) -> Result<CompareReport, CompareError> {
    validate(options)?;
    let started = Instant::now();
    std::fs::create_dir_all(&options.out).map_err(|e| CompareError::Write {
        path: options.out.clone(),
        message: e.to_string(),
    })?;
    let half = options.duration / 2;
    writeln!(
        out,
        "powercut compare: seed {}, {:?} in all: {:?} throughput side, {:?} crash side",
        options.seed, options.duration, half, half
    )?;
    let bench_rows = throughput_side(options, half, out)?;
    writeln!(
        out,
        "crash side: scenario `{SCENARIO}`, faults power-loss and process-crash"
    )?;
    let modes = options.modes().map_err(CompareError::Usage)?;
    let crash = crash_side(options, &modes, half)?;
    let rows = build_rows(options, &modes, &bench_rows, &crash);
    let failed_checks = check_rows(&rows, &crash);
    write_csv(&options.out.join(CSV_NAME), &rows)?;
    chart::write_svg(&options.out.join(SVG_NAME), &rows).map_err(|message| {
        CompareError::Write {
            path: options.out.join(SVG_NAME),
            message,
        }
    })?;
    write_table(out, &rows)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "wrote {} and {} in {:.1}s",
        options.out.join(CSV_NAME).display(),
        options.out.join(SVG_NAME).display(),
        elapsed_s
    )?;
    Ok(CompareReport {
        rows,
        failed_checks,
        elapsed_s,
    })
}

fn validate(options: &CompareOptions) -> Result<(), CompareError> {
    let usage = |message: String| Err(CompareError::Usage(message));
    let modes = match options.modes() {
        Ok(modes) => modes,
        Err(message) => return usage(message),
    };
    if options.policies.is_empty() && modes.iter().any(|m| matches!(m, TargetMode::Engine(_))) {
        return usage("--policy needs at least one policy".into());
    }
    if let Err(message) = crate::target::check_parts(&modes) {
        return usage(message);
    }
    if options.threads.is_empty() {
        return usage("--threads needs at least one thread count".into());
    }
    if let Some(&bad) = options
        .threads
        .iter()
        .find(|&&t| t == 0 || t > bench::THREADS_MAX)
    {
        return usage(format!(
            "--threads {bad}: each must be in 1..={}",
            bench::THREADS_MAX
        ));
    }
    if options.duration < Duration::from_secs(1) || options.duration > DURATION_MAX {
        return usage(format!(
            "--duration {:?}: must be between 1s and {DURATION_MAX:?}",
            options.duration
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(policy) = options
        .policies
        .iter()
        .find(|p| !seen.insert(p.to_string()))
    {
        return usage(format!("--policy {policy} given twice"));
    }
    Ok(())
}

/// Measures every target mode × every thread count in `budget`.
fn throughput_side(
    options: &CompareOptions,
    budget: Duration,
    out: &mut dyn Write,
) -> Result<Vec<BenchRow>, CompareError> {
    let modes = options.modes().map_err(CompareError::Usage)?;
    let mut policies = Vec::new();
    let mut sqlite_modes = Vec::new();
    let mut redis_modes = Vec::new();
    let mut postgres_modes = Vec::new();
    let mut line_commands = Vec::new();
    for mode in &modes {
        match mode {
            TargetMode::Engine(policy) => policies.push(*policy),
            TargetMode::Sqlite(sqlite) => sqlite_modes.push(*sqlite),
            TargetMode::Redis(redis) => redis_modes.push(*redis),
            TargetMode::Postgres(postgres) => postgres_modes.push(*postgres),
            TargetMode::Line(command) => line_commands.push(*command),
        }
    }
    if policies.is_empty()
        && sqlite_modes.is_empty()
        && redis_modes.is_empty()
        && postgres_modes.is_empty()
        && line_commands.is_empty()
    {
        return Ok(Vec::new());
    }
    let configurations = modes.len() * options.threads.len();
    let per_configuration = (budget / configurations as u32).max(CONFIGURATION_DURATION_MIN);
    let rounds = if per_configuration >= Duration::from_secs(1) {
        3
    } else {
        1
    };
    let bench_options = EngineBenchOptions {
        policies,
        threads: options.threads.clone(),
        duration: per_configuration,
        rounds,
        sqlite: !sqlite_modes.is_empty(),
        sqlite_modes,
        redis_modes,
        postgres_modes,
        line_commands,
        csv: None,
        recovery: None,
        dir: options.bench_dir.clone(),
        ..EngineBenchOptions::default()
    };
    writeln!(
        out,
        "throughput side: {configurations} configurations, real files and fsync (noisy on a shared machine)"
    )?;
    let report = bench::run_engine_bench(&bench_options, out)?;
    Ok(report.rows)
}

/// The `compare` scenario with PostgreSQL's fewer crash states a trial
/// ([`POSTGRES_POINTS_PER_TRIAL`]), as `(label, TOML)`; the label is a
/// scenario file's (`NAME@HASH`), since it is no built-in (its cases replay
/// from their bundles, which keep the TOML).
pub fn postgres_scenario() -> (String, String) {
    let builtin = crate::workload::scenario::builtin_toml(SCENARIO).expect("built-in scenario");
    let mut table: toml::Table = builtin.parse().expect("the built-in scenario parses");
    let name = format!("{SCENARIO}-postgres");
    table.insert("name".into(), toml::Value::String(name.clone()));
    let crash = table
        .entry("crash")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[crash] is a table");
    crash.insert(
        "points_per_trial".into(),
        toml::Value::Integer(POSTGRES_POINTS_PER_TRIAL),
    );
    crash.insert(
        "states_per_point".into(),
        toml::Value::Integer(POSTGRES_STATES_PER_POINT),
    );
    let text = toml::to_string(&table).expect("a TOML table serialises");
    let label = format!("{name}@{:08x}", crc32c::crc32c(text.as_bytes()));
    (label, text)
}

/// Runs the crash side: every target mode × fault in one timed run (trials
/// go round-robin over the pairs), then one trial of any pair the time did
/// not reach, so every crash cell is measured. PostgreSQL's modes run apart:
/// one trial per mode × fault × start of [`postgres_scenario`], whatever the
/// time.
fn crash_side(
    options: &CompareOptions,
    modes: &[TargetMode],
    budget: Duration,
) -> Result<BTreeMap<(String, String), CrashSide>, CompareError> {
    let (postgres, others): (Vec<TargetMode>, Vec<TargetMode>) = modes
        .iter()
        .partition(|mode| matches!(mode, TargetMode::Postgres(_)));
    let faults: Vec<String> = FAULTS.iter().map(|f| f.to_string()).collect();
    let mut sides = BTreeMap::new();
    if !postgres.is_empty() {
        let names: Vec<String> = postgres.iter().map(|m| m.to_string()).collect();
        run_crash(
            options,
            Some(postgres_scenario()),
            &names,
            &faults,
            // One trial per combination (process targets start both empty
            // and from a steady state).
            Budget::Trials((names.len() * faults.len() * crate::target::Start::ALL.len()) as u64),
            &mut sides,
        )?;
    }
    if others.is_empty() {
        return Ok(sides);
    }
    let policies: Vec<String> = others.iter().map(|m| m.to_string()).collect();
    run_crash(
        options,
        None,
        &policies,
        &faults,
        Budget::Time(budget),
        &mut sides,
    )?;
    let missing: Vec<(String, String)> = policies
        .iter()
        .flat_map(|p| faults.iter().map(move |f| (p.clone(), f.clone())))
        .filter(|pair| sides.get(pair).is_none_or(|side| side.crash_states == 0))
        .take(CATCH_UP_TRIALS_MAX)
        .collect();
    for (policy, fault) in missing {
        run_crash(
            options,
            None,
            std::slice::from_ref(&policy),
            std::slice::from_ref(&fault),
            Budget::Trials(1),
            &mut sides,
        )?;
    }
    Ok(sides)
}

/// One run of the crash side: the built-in `compare` scenario, or
/// `scenario` (label, TOML) when given.
fn run_crash(
    options: &CompareOptions,
    scenario: Option<(String, String)>,
    policies: &[String],
    faults: &[String],
    budget: Budget,
    sides: &mut BTreeMap<(String, String), CrashSide>,
) -> Result<(), CompareError> {
    let mut plan = Plan::resolve(RunRequest {
        scenario: Some(SCENARIO.to_string()),
        seed: options.seed,
        trials: Some(1),
        targets: policies.to_vec(),
        faults: faults.to_vec(),
        bugs: options.bugs.clone(),
        jobs: options.jobs,
        ..RunRequest::default()
    })
    .map_err(CompareError::Usage)?;
    if let Some((label, toml)) = scenario {
        plan.setup.scenario_label = label;
        plan.setup.scenario_toml = toml;
    }
    plan.budget = budget;
    let report = execute(&plan).map_err(CompareError::Crash)?;
    if report.summary.interrupted {
        return Err(CompareError::Crash("interrupted".into()));
    }
    let mut by_pair: BTreeMap<(String, String), CrashSide> = BTreeMap::new();
    for row in &report.trials {
        let side = by_pair
            .entry((row.policy.clone(), row.fault.clone()))
            .or_default();
        side.trials += 1;
        side.crash_states += row.crash_states;
        side.acked += row.acked;
        side.acked_lost += row.acked_lost_permitted;
        side.violations += row.violations;
        side.corrupt_states += row.corrupt_states;
        side.unpromised += row.unpromised;
    }
    for (row, failure) in &report.failures {
        if let Some(side) = by_pair.get_mut(&(row.policy.clone(), row.fault.clone())) {
            *side
                .violation_kinds
                .entry(failure.kind.clone())
                .or_insert(0) += 1;
        }
    }
    for (pair, times) in &report.crash_times {
        if let Some(side) = by_pair.get_mut(pair) {
            side.loss_window_max_us = times.loss_window_max_us;
            let quantile_ms = |q: f64| times.recovery.quantile_us(q).unwrap_or(0.0) / 1000.0;
            side.recovery_p50_ms = round_to(quantile_ms(0.50), 3);
            side.recovery_p99_ms = round_to(quantile_ms(0.99), 3);
        }
    }
    for (pair, side) in by_pair {
        assert!(
            !sides.contains_key(&pair),
            "one crash measurement per policy × fault"
        );
        sides.insert(pair, side);
    }
    Ok(())
}

/// Joins the two sides: per target mode × threads × fault.
pub fn build_rows(
    options: &CompareOptions,
    modes: &[TargetMode],
    bench_rows: &[BenchRow],
    crash: &BTreeMap<(String, String), CrashSide>,
) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    let find = |mode: &TargetMode, threads: usize| {
        let (system, policy) = match mode {
            TargetMode::Engine(policy) => (System::Engine, policy.to_string()),
            TargetMode::Sqlite(sqlite) => (System::Sqlite, sqlite.to_string()),
            TargetMode::Redis(redis) => (System::Redis, redis.to_string()),
            TargetMode::Postgres(postgres) => (System::Postgres, postgres.to_string()),
            TargetMode::Line(command) => (System::Line, command.to_string()),
        };
        bench_rows
            .iter()
            .find(|row| row.system == system && row.policy == policy && row.threads == threads)
    };
    for mode in modes {
        let name = mode.to_string();
        for &threads in &options.threads {
            let bench_row = find(mode, threads);
            for fault in FAULTS {
                let mut row = throughput_row(&name, threads, bench_row);
                row.fault = fault.to_string();
                row.promise = mode.promise(fault).to_string();
                if let Some(side) = crash.get(&(name.clone(), fault.to_string())) {
                    fill_crash(&mut row, side);
                }
                rows.push(row);
            }
        }
    }
    rows
}

fn throughput_row(policy: &str, threads: usize, bench_row: Option<&BenchRow>) -> CompareRow {
    let mut row = CompareRow {
        policy: policy.to_string(),
        threads,
        ..CompareRow::default()
    };
    if let Some(measured) = bench_row {
        row.commits_per_s = Some(measured.commits_per_s);
        row.p50_us = Some(measured.p50_us);
        row.p99_us = Some(measured.p99_us);
        row.p999_us = Some(measured.p999_us);
        row.fsyncs_per_commit = measured.fsyncs_per_commit;
        row.wal_bytes_per_commit = measured.wal_bytes_per_commit.map(|b| round_to(b, 1));
    }
    row
}

fn fill_crash(row: &mut CompareRow, side: &CrashSide) {
    row.crash_states = Some(side.crash_states);
    row.acked = Some(side.acked);
    row.acked_lost = Some(side.acked_lost);
    row.loss_per_1000 = Some(if side.acked == 0 {
        0.0
    } else {
        round_to(side.acked_lost as f64 * 1000.0 / side.acked as f64, 3)
    });
    row.max_loss_window_ms = Some(round_to(side.loss_window_max_us as f64 / 1000.0, 3));
    row.violations = Some(side.violations);
    row.corrupt_states = Some(side.corrupt_states);
    row.within_promise = Some(side.violations == 0);
    row.recovery_p50_ms = Some(side.recovery_p50_ms);
    row.recovery_p99_ms = Some(side.recovery_p99_ms);
}

/// What the numbers must show (SPEC §4.3); returns one sentence per failed
/// check. Rows of policies or thread counts not measured are not checked.
pub fn check_rows(
    rows: &[CompareRow],
    crash: &BTreeMap<(String, String), CrashSide>,
) -> Vec<String> {
    let mut failed = Vec::new();
    for ((policy, fault), side) in crash {
        let mode: Option<TargetMode> = policy.parse().ok();
        let parsed: Option<FsyncPolicy> = match mode {
            Some(TargetMode::Engine(policy)) => Some(policy),
            _ => None,
        };
        let promise = mode
            .zip(fault.parse::<FaultProfile>().ok())
            .map(|(m, f)| m.promise(f));
        let power_loss = fault == &FaultProfile::PowerLoss.to_string();
        if side.crash_states == 0 {
            failed.push(format!("{policy} × {fault}: no crash state was checked"));
            continue;
        }
        if side.violations > 0 {
            let kinds: Vec<String> = side
                .violation_kinds
                .iter()
                .map(|(kind, count)| format!("{count} {kind}"))
                .collect();
            failed.push(format!(
                "{policy} × {fault}: {} violation(s) ({}); its promise there is {}",
                side.violations,
                kinds.join(", "),
                promise.map_or("unknown".to_string(), |p| p.to_string())
            ));
        }
        if promise == Some(PromiseKind::Durable) && side.acked_lost > 0 {
            failed.push(if power_loss {
                format!(
                    "{policy} × {fault}: {} acknowledged commit(s) lost; it promises durable",
                    side.acked_lost
                )
            } else {
                format!(
                    "{policy} × {fault}: {} acknowledged commit(s) lost to a process crash; the OS keeps written data",
                    side.acked_lost
                )
            });
        }
        match parsed {
            Some(FsyncPolicy::Interval { ms }) => {
                let window_us = ms * 1000 + FSYNC_ALLOWANCE_US;
                if side.loss_window_max_us > window_us {
                    failed.push(format!(
                        "{policy} × {fault}: a loss window of {:.3} ms exceeds the promised {ms} ms + {:.0} ms",
                        side.loss_window_max_us as f64 / 1000.0,
                        FSYNC_ALLOWANCE_US as f64 / 1000.0
                    ));
                }
            }
            Some(FsyncPolicy::None) if power_loss && side.acked_lost == 0 => {
                failed.push(format!(
                    "none × {fault}: no acknowledged commit was lost in {} crash states — the fault model is too kind (or the run too short)",
                    side.crash_states
                ));
            }
            _ => {}
        }
    }
    let commits_at = |policy: &str, threads: usize| {
        rows.iter()
            .find(|row| row.policy == policy && row.threads == threads)
            .and_then(|row| row.commits_per_s)
    };
    if let (Some(group), Some(always)) = (commits_at("group", 8), commits_at("always", 8))
        && group <= always
    {
        failed.push(format!(
            "group ({group:.1} commits/s) does not beat always ({always:.1} commits/s) at 8 threads"
        ));
    }
    failed
}

/// Writes the rows with exactly [`CSV_COLUMNS`].
pub fn write_csv(path: &Path, rows: &[CompareRow]) -> Result<(), CompareError> {
    let write_error = |message: String| CompareError::Write {
        path: path.to_path_buf(),
        message,
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| write_error(e.to_string()))?;
    for row in rows {
        let cells = row_cells(row);
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        writer
            .write_record(&cells)
            .map_err(|e| write_error(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| write_error(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| write_error(e.to_string()))
}

fn row_cells(row: &CompareRow) -> Vec<String> {
    fn cell<T: ToString>(value: Option<T>) -> String {
        value.map_or_else(String::new, |v| v.to_string())
    }
    vec![
        row.policy.clone(),
        row.threads.to_string(),
        row.fault.clone(),
        cell(row.commits_per_s),
        cell(row.p50_us),
        cell(row.p99_us),
        cell(row.p999_us),
        cell(row.fsyncs_per_commit),
        cell(row.wal_bytes_per_commit),
        cell(row.crash_states),
        cell(row.acked),
        cell(row.acked_lost),
        cell(row.loss_per_1000),
        cell(row.max_loss_window_ms),
        cell(row.violations),
        row.promise.clone(),
        cell(row.corrupt_states),
        cell(row.within_promise),
        cell(row.recovery_p50_ms),
        cell(row.recovery_p99_ms),
    ]
}

/// The table as the README shows it (Markdown).
pub fn write_table(out: &mut dyn Write, rows: &[CompareRow]) -> io::Result<()> {
    writeln!(out, "| {} |", CSV_COLUMNS.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(CSV_COLUMNS.len()))?;
    for row in rows {
        writeln!(out, "| {} |", row_cells(row).join(" | "))?;
    }
    Ok(())
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
