//! Scenario files (TOML): which workloads, fsync policies and fault profiles a
//! run combines, for how long, with which workload, engine and crash
//! parameters.
//!
//! ```toml
//! name = "smoke"
//! description = "the default: a short run of every common policy"
//! workloads = ["kv-churn", "bank"]          # kv-churn, bank, long-txn-steal, checkpoint-storm
//! policies = ["always", "group", "interval:10", "none"]
//! faults = ["power-loss", "process-crash"]  # fault profile names (SPEC §3)
//! cycles = 2                                # crash cycles per trial, >= 1
//! duration = "20s"                          # or: trials = 100 (exactly one of the two)
//! bugs = []                                 # planted bug names (SPEC §6)
//!
//! [workload]      # see WorkloadParams; every field optional
//! [engine]        # see EngineOverrides; every field optional
//! [crash]         # see CrashParams; every field optional
//! ```
//!
//! Unknown fields are errors. Every error is one line naming the file (and
//! the line, when the TOML parser knows it) and the problem.

use crate::fault::FaultProfile;
use crate::target::{ENGINE_KIND, Start, TargetKind, TargetMode, TargetSettings, expand_targets};
use engine::{Bug, BugSet, Config, FsyncPolicy};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Largest key space a scenario may ask for.
pub const KEYS_MAX: u32 = 1_000_000;
/// Largest number of transactions per crash cycle.
pub const TXNS_PER_CYCLE_MAX: u32 = 100_000;
/// Largest number of operations in one transaction.
pub const OPS_PER_TXN_MAX: u32 = 10_000;
/// Largest number of transactions open at once.
pub const OPEN_TXNS_MAX: u32 = 64;
/// Largest number of crash cycles per trial.
pub const CYCLES_MAX: u32 = 64;
/// Most client threads of a kv-threads trial.
pub const THREADS_MAX: u32 = 64;

/// The built-in scenarios, by name (the file `scenarios/<name>.toml`).
const BUILTINS: [(&str, &str); 10] = [
    ("smoke", include_str!("../../../scenarios/smoke.toml")),
    ("sqlite", include_str!("../../../scenarios/sqlite.toml")),
    ("bank", include_str!("../../../scenarios/bank.toml")),
    ("kv-churn", include_str!("../../../scenarios/kv-churn.toml")),
    (
        "long-txn-steal",
        include_str!("../../../scenarios/long-txn-steal.toml"),
    ),
    (
        "checkpoint-storm",
        include_str!("../../../scenarios/checkpoint-storm.toml"),
    ),
    (
        "multi-crash",
        include_str!("../../../scenarios/multi-crash.toml"),
    ),
    ("nightly", include_str!("../../../scenarios/nightly.toml")),
    ("compare", include_str!("../../../scenarios/compare.toml")),
    (
        "kv-threads",
        include_str!("../../../scenarios/kv-threads.toml"),
    ),
];

/// The scenario `powercut run` uses when none is given.
pub const DEFAULT_SCENARIO: &str = "smoke";

/// A scenario that could not be read: one line, naming the file and problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or `builtin:<name>`).
    pub source: String,
    /// The problem, on one line.
    pub problem: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario {}: {}", self.source, self.problem)
    }
}

impl std::error::Error for ScenarioError {}

/// The kinds of workload (SPEC §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Puts, overwrites and deletes of mixed sizes over a key space.
    KvChurn,
    /// Transfers between accounts: the balances always sum to the same total.
    Bank,
    /// kv-churn plus one long transaction touching many pages (STEAL
    /// evictions) that aborts or is still in flight at the crash.
    LongTxnSteal,
    /// kv-churn with a checkpoint every few transactions.
    CheckpointStorm,
    /// kv-churn transactions from `workload.threads` client threads on one
    /// engine in real time (the engine's own group commit, flusher thread
    /// and background checkpoints): not deterministic, so its cases replay
    /// from the trace their bundle keeps. Reference engine only.
    KvThreads,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::KvChurn,
        WorkloadKind::Bank,
        WorkloadKind::LongTxnSteal,
        WorkloadKind::CheckpointStorm,
        WorkloadKind::KvThreads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::KvChurn => "kv-churn",
            WorkloadKind::Bank => "bank",
            WorkloadKind::LongTxnSteal => "long-txn-steal",
            WorkloadKind::CheckpointStorm => "checkpoint-storm",
            WorkloadKind::KvThreads => "kv-threads",
        }
    }

    /// Runs many client threads in real time: a fresh run of the same seed
    /// gives another trace, so its cases replay from their bundles.
    pub fn threaded(self) -> bool {
        self == WorkloadKind::KvThreads
    }

    /// The invariants every recovered state of this workload must satisfy.
    pub fn invariants(self, params: &WorkloadParams) -> Vec<Box<dyn crate::oracle::Invariant>> {
        match self {
            WorkloadKind::Bank => vec![Box::new(super::bank::BankTotal {
                accounts: params.accounts,
                initial_balance: params.initial_balance,
            })],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = String;

    fn from_str(text: &str) -> Result<WorkloadKind, String> {
        WorkloadKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = WorkloadKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown workload `{text}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// An inclusive range written `[min, max]` in TOML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "[u32; 2]")]
pub struct Span {
    pub min: u32,
    pub max: u32,
}

impl TryFrom<[u32; 2]> for Span {
    type Error = String;

    fn try_from([min, max]: [u32; 2]) -> Result<Span, String> {
        if min > max {
            return Err(format!("range [{min}, {max}] has min > max"));
        }
        Ok(Span { min, max })
    }
}

/// The `[workload]` table: what the seeded driver generates.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadParams {
    /// Size of the key space of kv-churn (keys `k000000`..).
    pub keys: u32,
    /// Transactions begun per crash cycle.
    pub txns_per_cycle: u32,
    /// Writes per transaction (kv-churn).
    pub ops_per_txn: Span,
    /// Total value size in bytes, tag included (values over 512 bytes span
    /// sectors).
    pub value_size: Span,
    /// Fraction of writes that are deletes.
    pub delete_ratio: f64,
    /// Fraction of transactions that abort instead of committing.
    pub abort_ratio: f64,
    /// Transactions kept open at once (their operations interleave).
    pub open_txns: u32,
    /// A checkpoint after every this many finished transactions (0: never).
    pub checkpoint_every: u32,
    /// Virtual microseconds each step takes.
    pub op_time_us: u64,
    /// Bank accounts.
    pub accounts: u32,
    /// Each account's opening balance.
    pub initial_balance: i64,
    /// Writes of the long transaction of long-txn-steal.
    pub long_txn_ops: u32,
    /// checkpoint-storm: a checkpoint after every this many transactions.
    pub storm_checkpoint_every: u32,
    /// kv-threads: client threads (each runs `txns_per_cycle` / threads
    /// transactions, at least one).
    pub threads: u32,
}

impl Default for WorkloadParams {
    fn default() -> WorkloadParams {
        WorkloadParams {
            keys: 64,
            txns_per_cycle: 40,
            ops_per_txn: Span { min: 1, max: 6 },
            value_size: Span { min: 16, max: 900 },
            delete_ratio: 0.15,
            abort_ratio: 0.1,
            open_txns: 3,
            checkpoint_every: 0,
            op_time_us: 50,
            accounts: 8,
            initial_balance: 1000,
            long_txn_ops: 48,
            storm_checkpoint_every: 2,
            threads: 4,
        }
    }
}

/// The `[engine]` table: overrides of [`engine::Config`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineOverrides {
    pub page_size: Option<u32>,
    pub page_count: Option<u32>,
    pub pool_pages: Option<u32>,
    pub segment_size: Option<u64>,
    pub checkpoint_wal_bytes: Option<u64>,
    pub value_len_max: Option<u32>,
}

/// The `[crash]` table: how crash states are chosen and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashParams {
    /// Crash points chosen per trial (per cycle).
    pub points_per_trial: u32,
    /// Fault states (crash images) built per crash point.
    pub states_per_point: u32,
    /// Sector size of the simulated disk in bytes.
    pub sector_size: u32,
    /// A recovery taking longer is a `recovery-hang`.
    pub recovery_time_limit: std::time::Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CrashFile {
    points_per_trial: u32,
    states_per_point: u32,
    sector_size: u32,
    recovery_time_limit: String,
}

impl Default for CrashFile {
    fn default() -> CrashFile {
        CrashFile {
            points_per_trial: 32,
            states_per_point: 4,
            sector_size: 512,
            recovery_time_limit: "10s".to_string(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    workloads: Vec<WorkloadKind>,
    /// Targets (`engine`, `sqlite`, `sqlite:wal-full`; default `engine`).
    #[serde(default)]
    targets: Vec<String>,
    /// The reference engine's fsync policies (its modes under `engine`).
    #[serde(default)]
    policies: Vec<String>,
    /// The policies threaded workloads run under (default: all of
    /// `policies`; a `--policy` on the command line overrides both).
    #[serde(default)]
    threaded_policies: Vec<String>,
    faults: Vec<String>,
    /// What a trial starts from: `empty`, `steady` (default: both for
    /// process targets, `empty` for the engine and SQLite).
    #[serde(default)]
    start: Vec<String>,
    #[serde(default = "default_cycles")]
    cycles: u32,
    duration: Option<String>,
    trials: Option<u64>,
    #[serde(default)]
    bugs: Vec<String>,
    #[serde(default)]
    workload: WorkloadParams,
    #[serde(default)]
    engine: EngineOverrides,
    #[serde(default)]
    crash: CrashFile,
}

fn default_cycles() -> u32 {
    2
}

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Duration(std::time::Duration),
    Trials(u64),
}

/// One trial's combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Combo {
    pub workload: WorkloadKind,
    pub target: TargetMode,
    pub fault: FaultProfile,
    pub start: Start,
}

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub workloads: Vec<WorkloadKind>,
    /// The `targets` as written (`engine` alone stands for `policies`).
    pub target_selectors: Vec<String>,
    pub policies: Vec<FsyncPolicy>,
    /// The policies threaded workloads run under, if the scenario narrows
    /// them (`threaded_policies`): real time cannot hold `interval:MS` to
    /// its window on a machine busier than its cores (docs/how-a-run-works.md).
    pub threaded_policies: Option<Vec<FsyncPolicy>>,
    /// `target_selectors` expanded: every target mode a trial may run.
    pub targets: Vec<TargetMode>,
    pub faults: Vec<FaultProfile>,
    /// The `start` list as written (empty: each target's default, see
    /// [`Scenario::starts_for`]).
    pub starts: Vec<Start>,
    /// Crash cycles per trial (at least 1).
    pub cycles: u32,
    pub budget: Budget,
    pub bugs: BugSet,
    pub workload: WorkloadParams,
    pub engine: EngineOverrides,
    pub crash: CrashParams,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            source: source.clone(),
            problem: format!("cannot read: {error}"),
        })?;
        Scenario::from_toml(&text, &source)
    }

    /// Parses and validates scenario text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Scenario, ScenarioError> {
        let fail = |problem: String| ScenarioError {
            source: source.to_string(),
            problem,
        };
        let file: ScenarioFile = toml::from_str(text).map_err(|error| {
            let message = one_line(error.message());
            match error.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    fail(format!("line {line}, column {column}: {message}"))
                }
                None => fail(message),
            }
        })?;
        Scenario::validate(file).map_err(fail)
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Scenario> {
        let (_, text) = BUILTINS.iter().find(|(builtin, _)| *builtin == name)?;
        let scenario = Scenario::from_toml(text, &format!("builtin:{name}"))
            .expect("built-in scenarios parse (tested)");
        Some(scenario)
    }

    /// The names of the built-in scenarios.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTINS.iter().map(|(name, _)| *name).collect()
    }

    /// Resolves a `--scenario` argument: an existing file, else a built-in
    /// name.
    pub fn resolve(argument: &str) -> Result<Scenario, ScenarioError> {
        let path = Path::new(argument);
        if path.exists() {
            return Scenario::from_file(path);
        }
        Scenario::builtin(argument).ok_or_else(|| ScenarioError {
            source: argument.to_string(),
            problem: format!(
                "no such file, and not a built-in scenario (built-ins: {})",
                Scenario::builtin_names().join(", ")
            ),
        })
    }

    fn validate(file: ScenarioFile) -> Result<Scenario, String> {
        if file.name.trim().is_empty() {
            return Err("`name` is empty".to_string());
        }
        if file.workloads.is_empty() {
            return Err("`workloads` is empty".to_string());
        }
        if file.faults.is_empty() {
            return Err("`faults` is empty".to_string());
        }
        let policies = file
            .policies
            .iter()
            .map(|text| FsyncPolicy::from_str(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| format!("`policies`: {problem}"))?;
        let faults = file
            .faults
            .iter()
            .map(|text| FaultProfile::from_str(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| format!("`faults`: {problem}"))?;
        let bugs = file
            .bugs
            .iter()
            .map(|text| Bug::from_str(text))
            .collect::<Result<BugSet, _>>()
            .map_err(|problem| format!("`bugs`: {problem}"))?;
        if file.cycles == 0 || file.cycles > CYCLES_MAX {
            return Err(format!(
                "`cycles` = {} is out of range 1..={CYCLES_MAX}",
                file.cycles
            ));
        }
        let mut starts = Vec::new();
        for text in &file.start {
            let start = Start::from_str(text).map_err(|problem| format!("`start`: {problem}"))?;
            if !starts.contains(&start) {
                starts.push(start);
            }
        }
        let budget = match (&file.duration, file.trials) {
            (Some(text), None) => Budget::Duration(
                parse_duration(text).map_err(|problem| format!("`duration`: {problem}"))?,
            ),
            (None, Some(0)) => return Err("`trials` must be at least 1".to_string()),
            (None, Some(trials)) => Budget::Trials(trials),
            (Some(_), Some(_)) => {
                return Err("give either `duration` or `trials`, not both".to_string());
            }
            (None, None) => return Err("missing `duration` (e.g. \"30s\") or `trials`".to_string()),
        };
        validate_workload(&file.workload)?;
        let crash = CrashParams {
            points_per_trial: file.crash.points_per_trial,
            states_per_point: file.crash.states_per_point,
            sector_size: file.crash.sector_size,
            recovery_time_limit: parse_duration(&file.crash.recovery_time_limit)
                .map_err(|problem| format!("`crash.recovery_time_limit`: {problem}"))?,
        };
        if crash.points_per_trial == 0 || crash.states_per_point == 0 {
            return Err(
                "`crash.points_per_trial` and `crash.states_per_point` must be at least 1"
                    .to_string(),
            );
        }
        if crash.sector_size == 0 || !crash.sector_size.is_power_of_two() {
            return Err(format!(
                "`crash.sector_size` = {} is not a power of two",
                crash.sector_size
            ));
        }
        let target_selectors = if file.targets.is_empty() {
            vec![ENGINE_KIND.name().to_string()]
        } else {
            file.targets
        };
        let targets = select_targets(&target_selectors, &policies)?;
        threads_need_engine(&file.workloads, &targets)?;
        let threaded_policies = threaded_policies(&file.threaded_policies, &policies)?;
        let scenario = Scenario {
            name: file.name,
            description: file.description,
            workloads: file.workloads,
            target_selectors,
            policies,
            threaded_policies,
            targets,
            faults,
            starts,
            cycles: file.cycles,
            budget,
            bugs,
            workload: file.workload,
            engine: file.engine,
            crash,
        };
        let engine_config = scenario.engine_config(FsyncPolicy::Always, BugSet::NONE);
        engine::check_config(&engine_config).map_err(|e| format!("the [engine] table: {e}"))?;
        let value_len_max = engine_config.value_len_max;
        if scenario.workload.value_size.max > value_len_max {
            return Err(format!(
                "`workload.value_size` max {} exceeds the engine's value_len_max {value_len_max}",
                scenario.workload.value_size.max
            ));
        }
        Ok(scenario)
    }

    /// Applies `--target` and `--policy` (each empty: the scenario's own).
    pub fn select(&mut self, targets: &[String], policies: &[String]) -> Result<(), String> {
        if !policies.is_empty() {
            self.policies = policies
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?;
            // The user's own `--policy` is run by every workload.
            self.threaded_policies = None;
        }
        if !targets.is_empty() {
            self.target_selectors = targets.to_vec();
        }
        self.targets = select_targets(&self.target_selectors, &self.policies)?;
        threads_need_engine(&self.workloads, &self.targets)
    }

    /// Every combination, in a fixed order: workload × target mode × fault
    /// × start.
    pub fn combos(&self) -> Vec<Combo> {
        let mut combos = Vec::new();
        for &workload in &self.workloads {
            for &target in &self.targets {
                if !self.runs(workload, target) {
                    continue;
                }
                for &fault in &self.faults {
                    for start in self.starts_for(target) {
                        combos.push(Combo {
                            workload,
                            target,
                            fault,
                            start,
                        });
                    }
                }
            }
        }
        combos
    }

    /// Whether `workload` runs on `target` (threaded workloads only under
    /// `threaded_policies`, when the scenario names them).
    fn runs(&self, workload: WorkloadKind, target: TargetMode) -> bool {
        match (&self.threaded_policies, target) {
            (Some(allowed), TargetMode::Engine(policy)) if workload.threaded() => {
                allowed.contains(&policy)
            }
            _ => true,
        }
    }

    /// What trials of `target` start from: the scenario's `start` list, or
    /// when it has none both starts for a process target (whose first start
    /// and steady state differ: SPEC §9) and an empty directory for a
    /// deterministic one (its later cycles start from a recovered disk).
    pub fn starts_for(&self, target: TargetMode) -> Vec<Start> {
        if !self.starts.is_empty() {
            self.starts.clone()
        } else if target.kind().deterministic() {
            vec![Start::Empty]
        } else {
            Start::ALL.to_vec()
        }
    }

    /// The combination trial `trial` runs: combo `trial % n`.
    pub fn combo_for_trial(&self, trial: u64) -> Combo {
        let combos = self.combos();
        assert!(!combos.is_empty(), "a validated scenario has combos");
        let index = usize::try_from(trial % combos.len() as u64).expect("fits");
        combos[index]
    }

    /// What opening any target of a trial needs (its planted bugs too).
    pub fn target_settings(&self, bugs: BugSet) -> TargetSettings {
        TargetSettings {
            engine: self.engine_config(FsyncPolicy::Always, bugs),
            vfs_bugs: crate::target::sqlite::vfs::VfsBugSet::NONE,
        }
    }

    /// The engine configuration for one trial.
    pub fn engine_config(&self, policy: FsyncPolicy, bugs: BugSet) -> Config {
        let defaults = Config::default();
        let overrides = &self.engine;
        Config {
            policy,
            page_size: overrides.page_size.unwrap_or(defaults.page_size),
            page_count: overrides.page_count.unwrap_or(defaults.page_count),
            pool_pages: overrides.pool_pages.unwrap_or(defaults.pool_pages),
            segment_size: overrides.segment_size.unwrap_or(defaults.segment_size),
            checkpoint_wal_bytes: overrides
                .checkpoint_wal_bytes
                .unwrap_or(defaults.checkpoint_wal_bytes),
            key_len_max: defaults.key_len_max,
            value_len_max: overrides.value_len_max.unwrap_or(defaults.value_len_max),
            bugs,
        }
    }

    /// What the driver needs for one cycle of `combo`.
    pub fn cycle_spec(&self, combo: Combo) -> super::CycleSpec {
        super::CycleSpec {
            kind: combo.workload,
            params: self.workload.clone(),
            target: combo.target,
        }
    }
}

/// `threaded_policies` as written: each one of `policies`.
fn threaded_policies(
    written: &[String],
    policies: &[FsyncPolicy],
) -> Result<Option<Vec<FsyncPolicy>>, String> {
    if written.is_empty() {
        return Ok(None);
    }
    let mut chosen = Vec::new();
    for text in written {
        let policy: FsyncPolicy = text
            .parse()
            .map_err(|problem| format!("`threaded_policies`: {problem}"))?;
        if !policies.contains(&policy) {
            return Err(format!(
                "`threaded_policies`: `{text}` is not one of the scenario's `policies`"
            ));
        }
        chosen.push(policy);
    }
    Ok(Some(chosen))
}

/// kv-threads drives the reference engine's own threaded API: no other
/// target runs it.
fn threads_need_engine(workloads: &[WorkloadKind], targets: &[TargetMode]) -> Result<(), String> {
    match targets
        .iter()
        .find(|target| !matches!(target, TargetMode::Engine(_)))
    {
        Some(target) if workloads.iter().any(|kind| kind.threaded()) => Err(format!(
            "workload `kv-threads` runs only on the reference engine, not on `{target}`"
        )),
        _ => Ok(()),
    }
}

/// Expands target selectors; `engine` needs at least one policy.
fn select_targets(
    selectors: &[String],
    policies: &[FsyncPolicy],
) -> Result<Vec<TargetMode>, String> {
    if policies.is_empty() && selectors.iter().any(|s| s.trim() == ENGINE_KIND.name()) {
        return Err("`policies` is empty (the `engine` target runs under them)".to_string());
    }
    expand_targets(selectors, policies).map_err(|problem| format!("`targets`: {problem}"))
}

fn validate_workload(params: &WorkloadParams) -> Result<(), String> {
    let tag_len = u32::try_from(crate::oracle::tag::TAG_LEN).expect("small");
    let checks: [(bool, String); 9] = [
        (
            params.threads < 2 || params.threads > THREADS_MAX,
            format!("`workload.threads` must be in 2..={THREADS_MAX}"),
        ),
        (
            params.keys == 0 || params.keys > KEYS_MAX,
            format!("`workload.keys` must be in 1..={KEYS_MAX}"),
        ),
        (
            params.txns_per_cycle == 0 || params.txns_per_cycle > TXNS_PER_CYCLE_MAX,
            format!("`workload.txns_per_cycle` must be in 1..={TXNS_PER_CYCLE_MAX}"),
        ),
        (
            params.ops_per_txn.min == 0 || params.ops_per_txn.max > OPS_PER_TXN_MAX,
            format!("`workload.ops_per_txn` must lie in 1..={OPS_PER_TXN_MAX}"),
        ),
        (
            params.value_size.min < tag_len,
            format!("`workload.value_size` min must be at least the {tag_len}-byte tag"),
        ),
        (
            !(0.0..=1.0).contains(&params.delete_ratio)
                || !(0.0..=1.0).contains(&params.abort_ratio),
            "`workload.delete_ratio` and `workload.abort_ratio` must lie in 0..=1".to_string(),
        ),
        (
            params.open_txns == 0 || params.open_txns > OPEN_TXNS_MAX,
            format!("`workload.open_txns` must be in 1..={OPEN_TXNS_MAX}"),
        ),
        (
            params.accounts < 2 || params.accounts > KEYS_MAX,
            format!("`workload.accounts` must be in 2..={KEYS_MAX}"),
        ),
        (
            params.long_txn_ops > OPS_PER_TXN_MAX || params.storm_checkpoint_every == 0,
            format!(
                "`workload.long_txn_ops` must be at most {OPS_PER_TXN_MAX} and `workload.storm_checkpoint_every` at least 1"
            ),
        ),
    ];
    match checks.into_iter().find(|(bad, _)| *bad) {
        Some((_, problem)) => Err(problem),
        None => Ok(()),
    }
}

/// Parses a duration: a whole number and a unit, `us`, `ms`, `s`, `m` or `h`
/// ("500ms", "30s", "2m", "1h").
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let bad = || format!("`{text}` is not a duration (e.g. 500ms, 30s, 2m, 1h)");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(std::time::Duration::from_secs)
            .ok_or_else(bad)
    };
    match unit {
        "us" => Ok(std::time::Duration::from_micros(number)),
        "ms" => Ok(std::time::Duration::from_millis(number)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(bad()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// A scenario as the user named it: parsed, with its text and the label
/// case ids carry (`NAME` for a built-in, `NAME@HASH` for a file).
#[derive(Clone, Debug)]
pub struct ScenarioSource {
    pub scenario: Scenario,
    pub toml: String,
    pub label: String,
}

/// Resolves `--scenario` (a file path or a built-in name; none: the
/// default); the error is one line.
pub fn resolve(argument: Option<&str>) -> Result<ScenarioSource, String> {
    let argument = argument.unwrap_or(DEFAULT_SCENARIO);
    if let Some((_, text)) = BUILTINS.iter().find(|(name, _)| *name == argument) {
        let scenario =
            Scenario::from_toml(text, &format!("builtin:{argument}")).map_err(|e| e.to_string())?;
        return Ok(ScenarioSource {
            label: argument.to_string(),
            toml: text.to_string(),
            scenario,
        });
    }
    let scenario = Scenario::resolve(argument).map_err(|e| e.to_string())?;
    let toml =
        std::fs::read_to_string(argument).map_err(|e| format!("{argument}: cannot read: {e}"))?;
    let hash = crc32c::crc32c(toml.as_bytes());
    let stem = Path::new(argument)
        .file_stem()
        .map_or_else(
            || "scenario".to_string(),
            |s| s.to_string_lossy().into_owned(),
        )
        .replace([':', '@', ' '], "-");
    Ok(ScenarioSource {
        label: format!("{stem}@{hash:08x}"),
        toml,
        scenario,
    })
}

/// The text of a built-in scenario.
pub fn builtin_toml(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| *text)
}
