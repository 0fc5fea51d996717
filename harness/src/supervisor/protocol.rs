//! What the supervisor and its worker processes say to each other: JSON
//! lines on the worker's stdin (setup, then one trial per line; end of input
//! means stop) and stdout (one outcome per trial).

use crate::report::{Failure, TrialRow};
use serde::{Deserialize, Serialize};

/// Everything a worker needs to run any trial of the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerSetup {
    /// The scenario's name as case ids carry it (`smoke`, or `NAME@HASH`).
    pub scenario_label: String,
    /// The scenario file's text (built-in or user's), parsed by the worker.
    pub scenario_toml: String,
    /// Overrides from the command line (empty: the scenario's).
    #[serde(default)]
    pub targets: Vec<String>,
    pub policies: Vec<String>,
    pub faults: Vec<String>,
    pub bugs: Vec<String>,
    pub cycles: Option<u32>,
    pub seed: u64,
    pub chaos: bool,
    pub exhaustive: Option<u32>,
    /// Where failure bundles go (`OUT/failures`), if anywhere.
    pub failures_dir: Option<String>,
    /// Bundles this worker may write at most.
    pub bundles_max: u32,
}

/// Run trial number `trial`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrialJob {
    pub trial: u64,
}

/// A message from a worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum WorkerMessage {
    Done(Box<TrialOutcome>),
    /// The worker cannot go on (it says why); the run fails with exit 3.
    Fatal(String),
}

/// The result of one trial.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrialOutcome {
    pub row: TrialRow,
    pub failures: Vec<Failure>,
    pub exhaustive_states: u64,
    /// Bundle directories this trial's worker wrote (under `--out`).
    pub bundles: Vec<String>,
    /// The widest permitted loss of any crash state, in virtual µs.
    #[serde(default)]
    pub loss_window_max_us: u64,
    /// Crash states that exercise their policy's promise
    /// ([`super::verify::covers_promise`]).
    #[serde(default)]
    pub states_covering_promise: u64,
    /// Each verified crash state's recovery time (wall clock, in-memory
    /// disk), in µs, in verification order.
    #[serde(default)]
    pub recovery_us: Vec<u64>,
    /// Violations where the target mode promises nothing, by kind.
    #[serde(default)]
    pub unpromised_by_kind: std::collections::BTreeMap<String, u64>,
    /// The first crash state of each unpromised kind, as a case id to replay.
    #[serde(default)]
    pub unpromised_cases: std::collections::BTreeMap<String, String>,
    /// Unpromised outcomes whose target names a cause
    /// ([`crate::target::TargetKind::cause`]), by `kind: cause`.
    #[serde(default)]
    pub unpromised_causes: std::collections::BTreeMap<String, u64>,
    /// Violations whose target names a cause, by `kind: cause`.
    #[serde(default)]
    pub violation_causes: std::collections::BTreeMap<String, u64>,
}
