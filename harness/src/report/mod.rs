//! Report sinks (SPEC §5.3): `summary.json`, `trials.csv`, `junit.xml` and
//! failure bundles, all under the run's `--out` directory.
//!
//! The supervisor feeds one [`RunReport`]; the writers here only format it.
//! Any failure to write is a [`ReportError`] (exit code 3), never a panic.

pub mod groups;
pub mod latency;
pub mod merge;
pub mod shard;

use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A report could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write report {path}: {source}")]
pub struct ReportError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl ReportError {
    pub fn new(path: &Path, source: impl Into<io::Error>) -> ReportError {
        ReportError {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    /// `K/N` when this run is one shard of a larger one.
    pub shard: Option<String>,
    pub shards: Vec<String>,
    pub jobs: u32,
    pub trials: u64,
    pub crash_states: u64,
    pub violations: u64,
    pub violations_by_kind: BTreeMap<String, u64>,
    /// Acknowledged commits at the crash points checked.
    pub acked: u64,
    /// Acknowledged commits lost within the policy's promise (counted,
    /// not hidden).
    pub acked_lost_permitted: u64,
    /// Violations found where the target mode promises nothing (`none`):
    /// counted and reported by kind, never failures.
    #[serde(default)]
    pub unpromised: u64,
    #[serde(default)]
    pub unpromised_by_kind: BTreeMap<String, u64>,
    /// One case id per unpromised kind (the first seen), to replay.
    #[serde(default)]
    pub unpromised_cases: BTreeMap<String, String>,
    /// Unpromised outcomes whose target names a cause (PostgreSQL: its
    /// `PANIC`/`FATAL` line), per `target × fault`, by `kind: cause`.
    #[serde(default)]
    pub unpromised_causes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Violations whose target names a cause, the same way.
    #[serde(default)]
    pub violation_causes: BTreeMap<String, BTreeMap<String, u64>>,
    pub elapsed_s: f64,
    pub crash_states_per_s: f64,
    /// True if the run was stopped (Ctrl-C, SIGTERM) before its budget.
    pub interrupted: bool,
    /// Crash states enumerated by `--exhaustive` (0 if not used).
    pub exhaustive_states: u64,
    /// Case ids of failures, at most a bounded number.
    pub failures: Vec<String>,
    /// Failures by kind × policy × fault, each with its count and smallest
    /// case (absent from reports of older versions).
    #[serde(default)]
    pub groups: groups::FailureGroups,
    /// How well the run exercised each promise, by `"POLICY × FAULT"`.
    #[serde(default)]
    pub coverage: BTreeMap<String, Coverage>,
}

/// The coverage figure of one policy × fault profile: the share of its crash
/// states that exercise the policy's promise, i.e. hold an acknowledged
/// commit the promise forbids losing (for `interval:MS`, one acknowledged at
/// least 2×MS of virtual time before the crash; for `none` under a power
/// loss, one acknowledged before a completed checkpoint; see
/// `supervisor::verify::covers_promise`). A figure near zero means the
/// promise was hardly tested, however many states ran.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Coverage {
    pub crash_states: u64,
    pub states_covering_promise: u64,
    /// `states_covering_promise / crash_states` (0 without states).
    pub share: f64,
}

impl Summary {
    /// Adds `causes` (by `kind: cause`) of `target × fault` to `into`.
    pub fn add_causes(
        into: &mut BTreeMap<String, BTreeMap<String, u64>>,
        pair: &str,
        causes: &BTreeMap<String, u64>,
    ) {
        if causes.is_empty() {
            return;
        }
        let counts = into.entry(pair.to_string()).or_default();
        for (cause, count) in causes {
            *counts.entry(cause.clone()).or_insert(0) += count;
        }
    }

    /// Adds `covering` of `states` crash states to `policy × fault`.
    pub fn add_coverage(&mut self, policy: &str, fault: &str, states: u64, covering: u64) {
        assert!(covering <= states, "more covering states than states");
        let entry = self
            .coverage
            .entry(format!("{policy} × {fault}"))
            .or_default();
        entry.crash_states += states;
        entry.states_covering_promise += covering;
        entry.share = if entry.crash_states == 0 {
            0.0
        } else {
            let share = entry.states_covering_promise as f64 / entry.crash_states as f64;
            (share * 1e4).round() / 1e4
        };
    }
}

/// One row of `trials.csv`: one trial (all its cycles and crash states).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TrialRow {
    pub trial: u64,
    pub scenario: String,
    pub workload: String,
    pub policy: String,
    pub fault: String,
    pub cycles: u32,
    pub crash_states: u64,
    pub acked: u64,
    pub acked_lost_permitted: u64,
    pub violations: u64,
    /// The first violation's kind, empty if none.
    pub violation_kind: String,
    /// The failing case id, or the trial's last crash state if it passed.
    pub case_id: String,
    pub elapsed_ms: u64,
    /// Violations where the target mode promises nothing (`none`).
    #[serde(default)]
    pub unpromised: u64,
    /// Those by kind: `kind=count` joined by `;`.
    #[serde(default)]
    pub unpromised_kinds: String,
    /// Crash states whose recovery was worse than losing commits (a hole,
    /// a half transaction, a recovery error, a wrong value...), promised
    /// or not.
    #[serde(default)]
    pub corrupt_states: u64,
    /// What the trial started from: `empty` or `steady`.
    #[serde(default)]
    pub start: String,
}

/// One failure, for `junit.xml` and the console.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub case_id: String,
    pub kind: String,
    pub message: String,
    /// Why the run kept no bundle of this case (under `--out`), when it
    /// kept none.
    #[serde(default)]
    pub no_bundle: Option<String>,
}

/// Everything a run reports.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub summary: Summary,
    pub trials: Vec<TrialRow>,
    /// Failures by `(policy, fault)` test case (see [`write_junit`]).
    pub failures: Vec<(TrialRow, Failure)>,
    /// Why no bundle was kept, for each group's smallest case that has
    /// none (by case id; not written by [`write_all`]).
    pub no_bundle: BTreeMap<String, String>,
    /// Loss windows and recovery times by `(policy, fault)` (for
    /// `powercut compare`; not written by [`write_all`]).
    pub crash_times: BTreeMap<(String, String), CrashTimes>,
}

/// The widest permitted loss and the recovery times of one policy × fault
/// profile over a run.
#[derive(Clone, Debug, Default)]
pub struct CrashTimes {
    /// Virtual µs between the oldest lost acknowledgement and the crash.
    pub loss_window_max_us: u64,
    /// Recovery times of the crash states whose recovery finished (wall
    /// clock, in-memory disk), recorded as µs × 1000 (the histogram's ns).
    pub recovery: latency::LatencyHistogram,
}

/// Writes `summary.json`, `trials.csv`, `failures.csv` and `junit.xml`
/// into `dir`.
pub fn write_all(dir: &Path, report: &RunReport) -> Result<(), ReportError> {
    fs::create_dir_all(dir).map_err(|e| ReportError::new(dir, e))?;
    write_summary(&dir.join("summary.json"), &report.summary)?;
    write_trials(&dir.join("trials.csv"), &report.trials)?;
    merge::write_failures(&dir.join(merge::FAILURES_FILE), &report.failures)?;
    write_junit(&dir.join("junit.xml"), report)
}

pub fn write_summary(path: &Path, summary: &Summary) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(summary).expect("summary serialises");
    write_atomically(path, text.as_bytes())
}

pub fn write_trials(path: &Path, rows: &[TrialRow]) -> Result<(), ReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        writer
            .write_record(TRIAL_COLUMNS)
            .map_err(|e| ReportError::new(path, io::Error::other(e)))?;
    }
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| ReportError::new(path, io::Error::other(e)))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ReportError::new(path, io::Error::other(e.to_string())))?;
    write_atomically(path, &bytes)
}

/// The columns of `trials.csv`, in order.
pub const TRIAL_COLUMNS: [&str; 17] = [
    "trial",
    "scenario",
    "workload",
    "policy",
    "fault",
    "cycles",
    "crash_states",
    "acked",
    "acked_lost_permitted",
    "violations",
    "violation_kind",
    "case_id",
    "elapsed_ms",
    "unpromised",
    "unpromised_kinds",
    "corrupt_states",
    "start",
];

/// `junit.xml`: one test suite per scenario, one test case per
/// policy × fault profile; a failing test case lists its case ids.
pub fn write_junit(path: &Path, report: &RunReport) -> Result<(), ReportError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut cases: BTreeMap<(String, String, String), (u64, Vec<&Failure>)> = BTreeMap::new();
    let mut unpromised: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for row in &report.trials {
        let key = (row.scenario.clone(), row.policy.clone(), row.fault.clone());
        *unpromised.entry(key.clone()).or_default() += row.unpromised;
        cases.entry(key).or_default().0 += row.crash_states;
    }
    for (row, failure) in &report.failures {
        let key = (row.scenario.clone(), row.policy.clone(), row.fault.clone());
        cases.entry(key).or_default().1.push(failure);
    }
    let mut junit = Report::new("powercut");
    let mut suites: BTreeMap<String, TestSuite> = BTreeMap::new();
    for (key, (states, failures)) in cases {
        let unpromised = unpromised.get(&key).copied().unwrap_or(0);
        let (scenario, policy, fault) = key;
        let status = match failures.first() {
            None => TestCaseStatus::success(),
            Some(first) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!(
                    "{} violation(s); first: {}",
                    failures.len(),
                    first.kind
                ));
                status.set_type(first.kind.clone());
                let text: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{}: {}\n  powercut replay {}", f.kind, f.message, f.case_id))
                    .collect();
                status.set_description(text.join("\n"));
                status
            }
        };
        let mut case = TestCase::new(format!("{policy} × {fault}"), status);
        case.set_classname(format!("powercut.{scenario}"));
        case.add_property(quick_junit::Property::new(
            "crash_states",
            states.to_string(),
        ));
        if unpromised > 0 {
            // Outside any promise (`none`): reported, not a failure.
            case.add_property(quick_junit::Property::new(
                "unpromised_violations",
                unpromised.to_string(),
            ));
        }
        suites
            .entry(scenario.clone())
            .or_insert_with(|| TestSuite::new(scenario))
            .add_test_case(case);
    }
    junit.add_test_suites(suites.into_values());
    let text = junit
        .to_string()
        .map_err(|e| ReportError::new(path, io::Error::other(e.to_string())))?;
    write_atomically(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a report.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| ReportError::new(path, e))?;
    fs::rename(&tmp, path).map_err(|e| ReportError::new(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: &str, violations: u64) -> TrialRow {
        TrialRow {
            trial: 3,
            scenario: "smoke".into(),
            workload: "bank".into(),
            policy: policy.into(),
            fault: "power-loss".into(),
            cycles: 2,
            crash_states: 100,
            violations,
            case_id: "pc1:x".into(),
            ..TrialRow::default()
        }
    }

    #[test]
    fn reports_are_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let failing = row("none", 1);
        let report = RunReport {
            summary: Summary {
                scenario: "smoke".into(),
                trials: 2,
                crash_states: 200,
                violations: 1,
                ..Summary::default()
            },
            trials: vec![row("group", 0), failing.clone()],
            failures: vec![(
                failing,
                Failure {
                    case_id: "pc1:x".into(),
                    kind: "lost-ack".into(),
                    message: "txn 4 lost".into(),
                    no_bundle: None,
                },
            )],
            ..RunReport::default()
        };
        write_all(dir.path(), &report).unwrap();
        let summary: Summary =
            serde_json::from_str(&fs::read_to_string(dir.path().join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary, report.summary);
        let mut reader = csv::Reader::from_path(dir.path().join("trials.csv")).unwrap();
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            TRIAL_COLUMNS
        );
        let rows: Vec<TrialRow> = reader.deserialize().map(Result::unwrap).collect();
        assert_eq!(rows, report.trials);
        let junit = fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        assert!(junit.contains("group × power-loss"));
        assert!(junit.contains("<failure"), "{junit}");
        assert!(junit.contains("powercut replay pc1:x"));
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let error = write_all(&file.join("sub"), &RunReport::default()).unwrap_err();
        assert!(error.to_string().contains("cannot write report"));
    }
}
