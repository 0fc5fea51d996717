//! `powercut run`: the dispatcher.
//!
//! Resolves the request into a plan, starts one worker process per job
//! (each in its own process group, so every process the run starts can be
//! signalled and nothing else), hands out trials one at a time until the
//! budget is spent, gathers outcomes, shows progress, and writes the reports.
//! Only this module touches signals, the terminal and the report sinks.

use super::protocol::{TrialJob, TrialOutcome, WorkerMessage, WorkerSetup};
use crate::case::bundle::BUNDLES_MAX;
use crate::exit;
use crate::report::groups::{GroupKey, closing_line};
use crate::report::shard::Shard;
use crate::report::{self, RunReport, Summary, TrialRow};
use crate::workload::scenario;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the command line asked for, unvalidated.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    pub scenario: Option<String>,
    pub seed: u64,
    pub duration: Option<String>,
    pub trials: Option<u64>,
    /// `--target` selectors (empty: the scenario's).
    pub targets: Vec<String>,
    pub policies: Vec<String>,
    pub faults: Vec<String>,
    pub bugs: Vec<String>,
    pub jobs: Option<u32>,
    pub cycles: Option<u32>,
    pub shard: Option<String>,
    pub out: Option<PathBuf>,
    pub chaos: bool,
    pub exhaustive: Option<u32>,
    /// Stop at the first trial that reports a violation (`powercut mutants`):
    /// the report's `elapsed_s` is then the time to detect.
    pub stop_on_first_violation: bool,
    /// Print neither progress nor failure lines (library callers that make
    /// their own table).
    pub quiet: bool,
}

/// The file under `--out` that holds trial rows during a run (removed when
/// `trials.csv` is written).
pub const ROW_SPILL_FILE: &str = ".trials-in-progress.csv";

/// Workers at most, whatever `--jobs` says.
pub const JOBS_MAX: u32 = 256;

/// The failures listed in `summary.json` at most (the terminal shows one
/// line per group of failures instead, [`crate::report::groups`]).
pub const FAILURES_LISTED_MAX: usize = 100;

/// How big a case is, to pick each group's smallest: the operations its
/// cycles ran before their crashes, added up (an id that does not parse,
/// which the workers never write, sorts last).
fn case_operations(case_id: &str) -> u64 {
    case_id
        .parse::<crate::case::id::CaseId>()
        .map_or(u64::MAX, |case| {
            case.crashes.iter().map(|crash| crash.point).sum()
        })
}

/// How long a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Time(Duration),
    /// The global trial range `0..T`. A shard `K/N` runs its part of it, the
    /// trials `t < T` with `t % N == K - 1`, so the N shards of `--trials T`
    /// together run exactly the trials of the unsharded `--trials T`.
    Trials(u64),
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub setup: WorkerSetup,
    pub budget: Budget,
    pub jobs: u32,
    /// Run only this shard's trials (trial numbers are global, so shard
    /// outcomes do not depend on the other shards).
    pub shard: Option<Shard>,
    pub out: Option<PathBuf>,
    pub stop_on_first_violation: bool,
    pub quiet: bool,
    /// What happens to each trial's row during the run.
    pub rows: RowKeeping,
}

/// Where the dispatcher keeps trial rows while a run goes on. A long run
/// must not grow with its trial count, so `powercut run` spills them to a
/// file under `--out` (or drops them without one) and reads them back only
/// to write `trials.csv` and `junit.xml` at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKeeping {
    /// In memory, in the returned report (library callers: bounded runs).
    Keep,
    /// Appended to this file as they arrive; read back at the end.
    Spill(PathBuf),
    /// Not kept (no report will be written).
    Drop,
}

impl Plan {
    /// Checks everything the user gave; an error is one line (exit 2).
    pub fn resolve(request: RunRequest) -> Result<Plan, String> {
        let source = scenario::resolve(request.scenario.as_deref())?;
        let mut selected = source.scenario.clone();
        selected.select(&request.targets, &request.policies)?;
        crate::target::check_parts(&selected.targets)?;
        for fault in &request.faults {
            fault.parse::<crate::fault::FaultProfile>()?;
        }
        for bug in &request.bugs {
            bug.parse::<crate::target::PlantedBug>()?;
        }
        if request.cycles == Some(0) {
            return Err("--cycles must be at least 1".into());
        }
        let k_max = crate::fault::exhaustive::EXHAUSTIVE_SUBSET_CHANGES_MAX as u32;
        if request.exhaustive.is_some_and(|k| k > k_max) {
            return Err(format!("--exhaustive K must be at most {k_max}"));
        }
        if request.jobs == Some(0) {
            return Err("--jobs must be at least 1".into());
        }
        let budget = match (request.trials, &request.duration) {
            (Some(0), _) => return Err("--trials must be at least 1".into()),
            (Some(trials), _) => Budget::Trials(trials),
            (None, Some(text)) => Budget::Time(scenario::parse_duration(text)?),
            (None, None) => match source.scenario.budget {
                scenario::Budget::Duration(limit) => Budget::Time(limit),
                scenario::Budget::Trials(trials) => Budget::Trials(trials),
            },
        };
        let shard = request.shard.as_deref().map(Shard::parse).transpose()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let jobs = request.jobs.unwrap_or(cores).min(JOBS_MAX);
        let failures_dir = request
            .out
            .as_ref()
            .map(|out| out.join("failures").to_string_lossy().into_owned());
        let setup = WorkerSetup {
            scenario_label: source.label,
            scenario_toml: source.toml,
            targets: request.targets,
            policies: request.policies,
            faults: request.faults,
            bugs: request.bugs,
            cycles: request.cycles,
            seed: request.seed,
            chaos: request.chaos,
            exhaustive: request.exhaustive,
            failures_dir,
            bundles_max: (BUNDLES_MAX as u32).div_ceil(jobs),
        };
        Ok(Plan {
            setup,
            budget,
            jobs,
            shard,
            out: request.out,
            stop_on_first_violation: request.stop_on_first_violation,
            quiet: request.quiet,
            rows: RowKeeping::Keep,
        })
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_interrupt_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }.expect("install signal handler");
    }
}

/// Why a run produced no report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// Bad input (exit 2), in one line.
    Usage(String),
    /// The harness itself failed (exit 3), in one line.
    Harness(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => exit::USAGE,
            RunError::Harness(_) => exit::HARNESS_FAILED,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            RunError::Usage(message) | RunError::Harness(message) => message,
        }
    }
}

/// True once Ctrl-C or SIGTERM asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Runs a request to its report, for library callers (`powercut mutants`):
/// writes no report files and prints no summary line. Worker processes are
/// this executable re-run as `powercut __worker`.
pub fn run_to_report(request: RunRequest) -> Result<RunReport, RunError> {
    let plan = Plan::resolve(request).map_err(RunError::Usage)?;
    install_interrupt_handlers();
    execute(&plan).map_err(RunError::Harness)
}

/// Runs `powercut run`; returns the exit code.
pub fn run(request: RunRequest) -> i32 {
    let mut plan = match Plan::resolve(request) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    plan.rows = match &plan.out {
        Some(out) => RowKeeping::Spill(out.join(ROW_SPILL_FILE)),
        None => RowKeeping::Drop,
    };
    if let Some(out) = &plan.out
        && let Err(error) = std::fs::create_dir_all(out.join("failures"))
    {
        eprintln!(
            "powercut: cannot write reports to {}: {error}",
            out.display()
        );
        return exit::HARNESS_FAILED;
    }
    install_interrupt_handlers();
    match execute(&plan) {
        Ok(report) => finish(&plan, report),
        Err(message) => {
            eprintln!("powercut: {message}");
            exit::HARNESS_FAILED
        }
    }
}

/// Runs a resolved plan to its end (or an interrupt) and returns what it
/// found, writing nothing: the caller reports.
pub fn execute(plan: &Plan) -> Result<RunReport, String> {
    Dispatcher::start(plan).and_then(|dispatcher| dispatcher.drive())
}

/// Trials a shard (or the whole run) runs out of the global range `0..count`.
fn trials_in(count: u64, shard: Option<Shard>) -> u64 {
    match shard {
        None => count,
        Some(shard) => count
            .saturating_sub(shard.first_trial())
            .div_ceil(shard.count()),
    }
}

/// The bar a run shows on a terminal: for a timed run, the budget in
/// milliseconds with the time elapsed and left; for `--trials`, the trials
/// done with elapsed time and an estimate of the time left. Its message
/// holds the counts so far.
fn progress_bar(plan: &Plan) -> indicatif::ProgressBar {
    use indicatif::{FormattedDuration, ProgressBar, ProgressState, ProgressStyle};
    let (length, template) = match plan.budget {
        Budget::Time(limit) => (
            limit.as_millis() as u64,
            "{spinner} [{bar:30}] {elapsed_precise} elapsed, {left} left · {msg}",
        ),
        Budget::Trials(count) => (
            trials_in(count, plan.shard),
            "{spinner} [{bar:30}] {pos}/{len} trials, {elapsed_precise} elapsed, ~{eta_precise} left · {msg}",
        ),
    };
    let left = |state: &ProgressState, out: &mut dyn std::fmt::Write| {
        let ms = state.len().unwrap_or(0).saturating_sub(state.pos());
        let _ = write!(out, "{}", FormattedDuration(Duration::from_millis(ms)));
    };
    let style = ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .with_key("left", left)
        .progress_chars("=> ");
    let bar = ProgressBar::new(length).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn finish(plan: &Plan, report: RunReport) -> i32 {
    let summary = &report.summary;
    let failures_dir = plan.setup.failures_dir.as_deref();
    let replay_argument = |case: &str| {
        let no_bundle = report.no_bundle.get(case).map(String::as_str);
        super::process::replay_argument(case, failures_dir, no_bundle)
    };
    for line in summary.groups.lines(&replay_argument) {
        println!("{line}");
    }
    if plan.setup.exhaustive.is_some() {
        println!(
            "powercut: exhaustive mode covered {} crash states (every crash point of a sync window × every subset of the last K volatile changes)",
            summary.exhaustive_states
        );
    }
    println!(
        "powercut: {} trials, {} crash states in {:.1}s ({:.0}/s), {} violation(s), {} acknowledged commit(s) lost within policy promises{}",
        summary.trials,
        summary.crash_states,
        summary.elapsed_s,
        summary.crash_states_per_s,
        summary.violations,
        summary.acked_lost_permitted,
        if summary.interrupted {
            " [interrupted]"
        } else {
            ""
        }
    );
    if summary.unpromised > 0 {
        let kinds: Vec<String> = summary
            .unpromised_by_kind
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        println!(
            "powercut: {} violation(s) where the target promises nothing (promise `none`, not failures): {}",
            summary.unpromised,
            kinds.join(", ")
        );
    }
    for (label, causes) in [
        ("causes of violations", &summary.violation_causes),
        (
            "causes where the target promises nothing",
            &summary.unpromised_causes,
        ),
    ] {
        for (pair, counts) in causes {
            let counts: Vec<String> = counts
                .iter()
                .map(|(cause, count)| format!("{cause} {count}"))
                .collect();
            println!("powercut: {label}, {pair}: {}", counts.join(", "));
        }
    }
    if summary.violations > 0 {
        println!(
            "{}",
            closing_line(&summary.violations_by_kind, plan.out.as_deref())
        );
    }
    if let Some(out) = &plan.out
        && let Err(error) = report::write_all(out, &report)
    {
        eprintln!("powercut: {error}");
        return exit::HARNESS_FAILED;
    }
    if summary.violations > 0 {
        exit::VIOLATIONS
    } else if summary.interrupted {
        eprintln!("powercut: interrupted before the budget was spent");
        exit::HARNESS_FAILED
    } else {
        exit::OK
    }
}

enum Event {
    Message(usize, WorkerMessage),
    Closed(usize),
}

struct Worker {
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    busy: bool,
    /// Once the worker is reaped its pid (and group id) may be reused by a
    /// stranger's process: from then on it is never signalled again.
    reaped: bool,
}

impl Worker {
    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .expect("send to a worker after its input closed");
        writeln!(stdin, "{line}").map_err(|e| format!("cannot talk to a worker process: {e}"))
    }

    /// Kills the worker's process group (the worker and every child it
    /// forked) and reaps the worker. The group id is the worker's pid, which
    /// stays reserved until the worker is reaped, so the signal can only
    /// reach processes this run started.
    /// Returns whether it signalled.
    fn kill_group(&mut self) -> bool {
        if self.reaped {
            return false;
        }
        let group = nix::unistd::Pid::from_raw(-(self.process.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        self.reap();
        true
    }

    fn reap(&mut self) -> Option<std::process::ExitStatus> {
        self.stdin = None;
        let status = self.process.wait().ok();
        self.reaped = true;
        status
    }
}

struct Dispatcher<'plan> {
    plan: &'plan Plan,
    workers: Vec<Worker>,
    events: mpsc::Receiver<Event>,
    started: Instant,
    /// The next trial number to hand out (global across shards).
    next_trial: u64,
    report: RunReport,
    progress: Option<indicatif::ProgressBar>,
    /// Rows spilled so far ([`RowKeeping::Spill`]).
    spill: Option<csv::Writer<std::fs::File>>,
}

impl<'plan> Dispatcher<'plan> {
    fn start(plan: &'plan Plan) -> Result<Dispatcher<'plan>, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let setup = serde_json::to_string(&plan.setup).expect("setup serialises");
        let (sender, events) = mpsc::channel();
        let mut workers = Vec::new();
        for index in 0..plan.jobs as usize {
            let mut command = Command::new(&exe);
            command
                .arg("__worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .process_group(0);
            // SAFETY: prctl is async-signal-safe and touches no memory. A
            // worker dies with the dispatcher even when the dispatcher is
            // SIGKILLed and has no chance to kill the worker groups itself.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut process = command
                .spawn()
                .map_err(|e| format!("cannot start a worker process: {e}"))?;
            let stdout = process.stdout.take().expect("piped stdout");
            let sender = sender.clone();
            std::thread::spawn(move || read_worker(index, stdout, sender));
            let stdin = process.stdin.take();
            let mut worker = Worker {
                process,
                stdin,
                busy: false,
                reaped: false,
            };
            worker.send(&setup)?;
            workers.push(worker);
        }
        let on_terminal =
            !plan.quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let progress = on_terminal.then(|| progress_bar(plan));
        let mut report = RunReport::default();
        report.summary.scenario = plan.setup.scenario_label.clone();
        report.summary.seed = plan.setup.seed;
        report.summary.jobs = plan.jobs;
        report.summary.shard = plan.shard.map(|shard| shard.to_string());
        report.summary.shards = report.summary.shard.iter().cloned().collect();
        let first_trial = plan.shard.map_or(0, Shard::first_trial);
        Ok(Dispatcher {
            plan,
            workers,
            events,
            started: Instant::now(),
            next_trial: first_trial,
            report,
            progress,
            spill: None,
        })
    }

    fn budget_left(&self) -> bool {
        match self.plan.budget {
            Budget::Time(limit) => self.started.elapsed() < limit,
            Budget::Trials(count) => self.next_trial < count,
        }
    }

    fn hand_out(&mut self, index: usize) -> Result<(), String> {
        if !self.budget_left() || INTERRUPTED.load(Ordering::SeqCst) {
            self.workers[index].stdin = None; // end of input: the worker exits
            return Ok(());
        }
        let job = TrialJob {
            trial: self.next_trial,
        };
        assert!(self.plan.shard.is_none_or(|shard| shard.runs(job.trial)));
        self.next_trial += self.plan.shard.map_or(1, Shard::count);
        self.workers[index].busy = true;
        self.workers[index].send(&serde_json::to_string(&job).expect("job serialises"))
    }

    fn drive(mut self) -> Result<RunReport, String> {
        for index in 0..self.workers.len() {
            self.hand_out(index)?;
        }
        let mut open = self.workers.len();
        while open > 0 {
            self.show_time();
            if INTERRUPTED.load(Ordering::SeqCst) {
                for worker in &mut self.workers {
                    worker.kill_group();
                }
                self.report.summary.interrupted = true;
                break;
            }
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Message(index, WorkerMessage::Done(outcome))) => {
                    self.workers[index].busy = false;
                    self.record(*outcome);
                    if self.plan.stop_on_first_violation && self.report.summary.violations > 0 {
                        for worker in &mut self.workers {
                            worker.kill_group();
                        }
                        break;
                    }
                    self.hand_out(index)?;
                }
                Ok(Event::Message(_, WorkerMessage::Fatal(message))) => {
                    for worker in &mut self.workers {
                        worker.kill_group();
                    }
                    return Err(format!("a worker failed: {message}"));
                }
                Ok(Event::Closed(index)) => {
                    open -= 1;
                    let status = self.workers[index].reap();
                    if self.workers[index].busy {
                        for worker in &mut self.workers {
                            worker.kill_group();
                        }
                        return Err(format!("a worker process died unexpectedly ({status:?})"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !self.budget_left() {
                        for index in 0..self.workers.len() {
                            if !self.workers[index].busy {
                                self.workers[index].stdin = None;
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
        self.read_back_rows()?;
        // Workers finish out of order; reports list trials in order, so a
        // run's reports do not depend on --jobs.
        self.report.trials.sort_by_key(|row| row.trial);
        self.report.failures.sort_by_key(|(row, _)| row.trial);
        let elapsed = self.started.elapsed().as_secs_f64();
        let summary = &mut self.report.summary;
        summary.elapsed_s = elapsed;
        summary.crash_states_per_s = summary.crash_states as f64 / elapsed.max(1e-9);
        Ok(std::mem::take(&mut self.report))
    }

    /// Moves a timed run's bar to the time spent.
    fn show_time(&self) {
        if let (Some(bar), Budget::Time(limit)) = (&self.progress, self.plan.budget) {
            bar.set_position(self.started.elapsed().min(limit).as_millis() as u64);
        }
    }

    fn record(&mut self, outcome: TrialOutcome) {
        let summary = &mut self.report.summary;
        let row = outcome.row;
        summary.trials += 1;
        summary.crash_states += row.crash_states;
        summary.acked += row.acked;
        summary.acked_lost_permitted += row.acked_lost_permitted;
        summary.unpromised += row.unpromised;
        for (kind, count) in &outcome.unpromised_by_kind {
            *summary.unpromised_by_kind.entry(kind.clone()).or_insert(0) += count;
        }
        for (kind, case_id) in &outcome.unpromised_cases {
            summary
                .unpromised_cases
                .entry(kind.clone())
                .or_insert_with(|| case_id.clone());
        }
        let pair = format!("{} × {}", row.policy, row.fault);
        Summary::add_causes(
            &mut summary.unpromised_causes,
            &pair,
            &outcome.unpromised_causes,
        );
        Summary::add_causes(
            &mut summary.violation_causes,
            &pair,
            &outcome.violation_causes,
        );
        summary.exhaustive_states += outcome.exhaustive_states;
        summary.add_coverage(
            &row.policy,
            &row.fault,
            row.crash_states,
            outcome.states_covering_promise,
        );
        let times = self
            .report
            .crash_times
            .entry((row.policy.clone(), row.fault.clone()))
            .or_default();
        times.loss_window_max_us = times.loss_window_max_us.max(outcome.loss_window_max_us);
        for &recovery_us in &outcome.recovery_us {
            times.recovery.record_ns(recovery_us.saturating_mul(1000));
        }
        for failure in &outcome.failures {
            summary.violations += 1;
            *summary
                .violations_by_kind
                .entry(failure.kind.clone())
                .or_insert(0) += 1;
            if summary.failures.len() < FAILURES_LISTED_MAX {
                summary.failures.push(failure.case_id.clone());
            }
            let key = GroupKey {
                kind: failure.kind.clone(),
                policy: row.policy.clone(),
                fault: row.fault.clone(),
            };
            let previous = summary.groups.smallest_case(&key).map(str::to_string);
            summary.groups.add(
                key.clone(),
                &failure.case_id,
                case_operations(&failure.case_id),
            );
            if summary.groups.smallest_case(&key) == Some(failure.case_id.as_str())
                && previous.as_deref() != Some(failure.case_id.as_str())
            {
                // Only a group's smallest case is printed: keep why it has
                // no bundle, if it has none.
                if let Some(previous) = previous {
                    self.report.no_bundle.remove(&previous);
                }
                if let Some(why) = &failure.no_bundle {
                    self.report
                        .no_bundle
                        .insert(failure.case_id.clone(), why.clone());
                }
            }
            self.report.failures.push((row.clone(), failure.clone()));
        }
        if let Some(bar) = &self.progress {
            if let Budget::Trials(_) = self.plan.budget {
                bar.inc(1);
            }
            let groups = match summary.groups.len() {
                0 => String::new(),
                count => format!(" in {count} group(s)"),
            };
            let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} trials, {} crash states ({:.0}/s), {} violation(s){groups}",
                summary.trials,
                summary.crash_states,
                summary.crash_states as f64 / elapsed,
                summary.violations
            ));
        }
        self.keep_row(row);
    }

    fn keep_row(&mut self, row: TrialRow) {
        match &self.plan.rows {
            RowKeeping::Keep => self.report.trials.push(row),
            RowKeeping::Drop => {}
            RowKeeping::Spill(path) => {
                if self.spill.is_none() {
                    self.spill = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(path)
                        .ok()
                        .map(csv::Writer::from_writer);
                }
                let written = self.spill.as_mut().map(|spill| spill.serialize(&row));
                if !matches!(written, Some(Ok(()))) {
                    // The disk refused: keep the row in memory instead, so
                    // the report still lists it (or fails to write, exit 3).
                    self.spill = None;
                    self.report.trials.push(row);
                }
            }
        }
    }

    /// Brings spilled rows back for the reports (through the open file, so
    /// a report folder removed meanwhile still fails only at the report
    /// write) and removes the spill file.
    fn read_back_rows(&mut self) -> Result<(), String> {
        use std::io::{Seek, SeekFrom};
        let RowKeeping::Spill(path) = &self.plan.rows else {
            return Ok(());
        };
        let Some(spill) = self.spill.take() else {
            return Ok(());
        };
        let failed = |e: &dyn std::fmt::Display| {
            format!("cannot read back trial rows from {}: {e}", path.display())
        };
        let mut file = spill.into_inner().map_err(|e| failed(&e.error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| failed(&e))?;
        for row in csv::Reader::from_reader(file).deserialize::<TrialRow>() {
            self.report.trials.push(row.map_err(|e| failed(&e))?);
        }
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}

impl Drop for Dispatcher<'_> {
    /// Whatever way the run ends (an error, an interrupt, the budget), no
    /// worker outlives it and none is left a zombie.
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.kill_group();
        }
    }
}

fn read_worker(index: usize, stdout: std::process::ChildStdout, events: mpsc::Sender<Event>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let message = serde_json::from_str::<WorkerMessage>(&line).unwrap_or_else(|e| {
            WorkerMessage::Fatal(format!("unreadable worker output ({e}): {line}"))
        });
        if events.send(Event::Message(index, message)).is_err() {
            return;
        }
    }
    let _ = events.send(Event::Closed(index));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bar of a sharded `--trials` run counts the trials that shard
    /// runs: the shards' counts add up to the run's.
    #[test]
    fn a_shards_bar_counts_its_own_trials() {
        assert_eq!(trials_in(40, Shard::new(2, 3)), 13);
        assert_eq!(trials_in(40, None), 40);
        for count in 0..50 {
            for shards in 1..7 {
                let total: u64 = Shard::all(shards).map(|s| trials_in(count, Some(s))).sum();
                assert_eq!(total, count, "{count} trials in {shards} shards");
            }
        }
    }

    /// A reaped worker's pid may belong to a stranger: signalling its group
    /// again could kill processes this run never started.
    #[test]
    fn a_reaped_worker_is_never_signalled_again() {
        let process = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut worker = Worker {
            process,
            stdin: None,
            busy: true,
            reaped: false,
        };
        assert!(worker.kill_group(), "a live worker's group is killed");
        assert!(worker.reaped);
        assert!(!worker.kill_group(), "a reaped worker is never signalled");
    }
}
