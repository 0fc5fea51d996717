//! `powercut merge DIR... [--out DIR]`: the reports of a sharded run joined
//! into the report of the whole run (SPEC §7).
//!
//! Each `powercut run --shard K/N --out DIR` reports its part of the global
//! trial range. Merging the N reports gives one `summary.json` (totals and
//! violations by kind added, failures kept, elapsed = the longest shard,
//! crash states per second recomputed from those, shards listed),
//! `trials.csv` (every row, sorted by trial), `failures.csv`, `junit.xml`
//! (rebuilt from the merged rows and failures) and `failures/` (every
//! shard's bundles copied). A merged report can itself be merged again.
//!
//! Checked, each a one-line error (exit 2): every directory holds a readable
//! report whose `trials.csv` has as many rows as its summary has trials; all
//! reports share the scenario, the seed and the shard count N; no shard and
//! no trial number appears twice; all N shards are present (unless
//! `--partial`, which marks the merged summary `interrupted`).
//! Not checked: that the shards ran the same binary and the same command
//! line overrides (`--policy`, `--fault`, `--cycles`, `--bug`); reports do
//! not record them (each case id does).

use super::shard::Shard;
use super::{Failure, ReportError, RunReport, Summary, TrialRow, write_all};
use crate::exit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Every failure of a run with its message (`trials.csv` keeps only a
/// trial's first), so a merge can rebuild `junit.xml` in full.
pub const FAILURES_FILE: &str = "failures.csv";

/// Report directories one merge accepts at most.
pub const REPORTS_MAX: usize = 4096;

/// Directory levels below `failures/` a bundle copy descends at most
/// (a bundle is `<case>/image/<file>`).
const BUNDLE_DEPTH_MAX: usize = 4;

/// One row of `failures.csv`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct FailureRow {
    trial: u64,
    kind: String,
    case_id: String,
    message: String,
}

const FAILURE_COLUMNS: [&str; 4] = ["trial", "kind", "case_id", "message"];

/// Writes `failures.csv`: one row per failure, in the order found.
pub fn write_failures(path: &Path, failures: &[(TrialRow, Failure)]) -> Result<(), ReportError> {
    let csv_error = |e: csv::Error| ReportError::new(path, io::Error::other(e));
    let mut writer = csv::Writer::from_writer(Vec::new());
    if failures.is_empty() {
        writer.write_record(FAILURE_COLUMNS).map_err(csv_error)?;
    }
    for (row, failure) in failures {
        writer
            .serialize(FailureRow {
                trial: row.trial,
                kind: failure.kind.clone(),
                case_id: failure.case_id.clone(),
                message: failure.message.clone(),
            })
            .map_err(csv_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ReportError::new(path, io::Error::other(e.to_string())))?;
    super::write_atomically(path, &bytes)
}

/// Reads the report in `dir` (as `powercut run --out DIR` wrote it).
pub fn read_report(dir: &Path) -> Result<RunReport, String> {
    let problem =
        |what: &str, detail: &dyn std::fmt::Display| format!("{}: {what}: {detail}", dir.display());
    let summary_path = dir.join("summary.json");
    let text = fs::read_to_string(&summary_path)
        .map_err(|e| problem("not a powercut report (no readable summary.json)", &e))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|e| problem("malformed summary.json", &e))?;
    let mut reader = csv::Reader::from_path(dir.join("trials.csv"))
        .map_err(|e| problem("cannot read trials.csv", &e))?;
    let trials: Vec<TrialRow> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(|e| problem("malformed trials.csv", &e))?;
    if trials.len() as u64 != summary.trials {
        return Err(problem(
            "inconsistent report",
            &format!(
                "summary.json says {} trials, trials.csv has {} rows",
                summary.trials,
                trials.len()
            ),
        ));
    }
    let failures = read_failures(dir, &trials).map_err(|e| problem("malformed failures", &e))?;
    Ok(RunReport {
        summary,
        trials,
        failures,
        ..RunReport::default()
    })
}

/// The failures of `failures.csv`, each with its trial's row; a report
/// without the file (an older one) gets each failing trial's first
/// failure from `trials.csv`.
fn read_failures(dir: &Path, trials: &[TrialRow]) -> Result<Vec<(TrialRow, Failure)>, String> {
    let path = dir.join(FAILURES_FILE);
    if !path.exists() {
        return Ok(trials
            .iter()
            .filter(|row| row.violations > 0)
            .map(|row| {
                let failure = Failure {
                    case_id: row.case_id.clone(),
                    kind: row.violation_kind.clone(),
                    message: format!("{} violation(s) in trial {}", row.violations, row.trial),
                    no_bundle: None,
                };
                (row.clone(), failure)
            })
            .collect());
    }
    let by_trial: BTreeMap<u64, &TrialRow> = trials.iter().map(|row| (row.trial, row)).collect();
    let mut reader = csv::Reader::from_path(&path).map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for record in reader.deserialize::<FailureRow>() {
        let record = record.map_err(|e| e.to_string())?;
        let row = by_trial.get(&record.trial).ok_or_else(|| {
            format!(
                "{FAILURES_FILE} names trial {}, absent from trials.csv",
                record.trial
            )
        })?;
        failures.push((
            (*row).clone(),
            Failure {
                case_id: record.case_id,
                kind: record.kind,
                message: record.message,
                no_bundle: None,
            },
        ));
    }
    Ok(failures)
}

/// The shards a report covers: its own shard, the shards it was merged
/// from, or `1/1` for an unsharded run.
fn shards_of(summary: &Summary) -> Result<Vec<Shard>, String> {
    let listed: Vec<&String> = if summary.shards.is_empty() {
        summary.shard.iter().collect()
    } else {
        summary.shards.iter().collect()
    };
    if listed.is_empty() {
        return Ok(vec![Shard::WHOLE]);
    }
    listed
        .into_iter()
        .map(|text| Shard::parse(text).map_err(|e| format!("summary.json: {e}")))
        .collect()
}

/// Joins shard reports (named by their directories, for error messages).
/// With `partial`, missing shards are allowed and mark the result
/// interrupted.
pub fn merge(reports: &[(PathBuf, RunReport)], partial: bool) -> Result<RunReport, String> {
    assert!(reports.len() <= REPORTS_MAX, "too many reports");
    let Some((first_dir, first)) = reports.first() else {
        return Err("merge needs at least one report directory".into());
    };
    let mut merged = RunReport::default();
    let summary = &mut merged.summary;
    summary.scenario = first.summary.scenario.clone();
    summary.seed = first.summary.seed;
    let mut shards: BTreeMap<Shard, &Path> = BTreeMap::new();
    let mut shard_count = None;
    let mut trial_owner: BTreeMap<u64, &Path> = BTreeMap::new();
    for (dir, report) in reports {
        let theirs = &report.summary;
        let differs = |what: &str, mine: &dyn std::fmt::Display, other: &dyn std::fmt::Display| {
            format!(
                "cannot merge: {} has {what} {other}, {} has {mine}",
                dir.display(),
                first_dir.display()
            )
        };
        if theirs.scenario != summary.scenario {
            return Err(differs("scenario", &summary.scenario, &theirs.scenario));
        }
        if theirs.seed != summary.seed {
            return Err(differs("seed", &summary.seed, &theirs.seed));
        }
        for shard in shards_of(theirs).map_err(|e| format!("{}: {e}", dir.display()))? {
            let expected = *shard_count.get_or_insert(shard.count());
            if shard.count() != expected {
                return Err(differs("shard count", &expected, &shard.count()));
            }
            if let Some(other) = shards.insert(shard, dir) {
                return Err(format!(
                    "cannot merge: shard {shard} appears in both {} and {}",
                    other.display(),
                    dir.display()
                ));
            }
        }
        for row in &report.trials {
            if let Some(other) = trial_owner.insert(row.trial, dir) {
                return Err(format!(
                    "cannot merge: trial {} appears in both {} and {}",
                    row.trial,
                    other.display(),
                    dir.display()
                ));
            }
        }
        add_totals(summary, theirs);
        merged.trials.extend(report.trials.iter().cloned());
        merged.failures.extend(report.failures.iter().cloned());
    }
    let shard_count = shard_count.expect("at least one report");
    let missing: Vec<String> = Shard::all(shard_count)
        .filter(|shard| !shards.contains_key(shard))
        .map(|shard| shard.to_string())
        .collect();
    if !missing.is_empty() {
        if !partial {
            return Err(format!(
                "cannot merge: missing shard(s) {} (pass --partial to merge what is there)",
                missing.join(", ")
            ));
        }
        summary.interrupted = true;
    }
    summary.shards = shards.keys().map(|shard| shard.to_string()).collect();
    summary.crash_states_per_s = summary.crash_states as f64 / summary.elapsed_s.max(1e-9);
    merged.trials.sort_by_key(|row| row.trial);
    merged.failures.sort_by_key(|(row, _)| row.trial);
    Ok(merged)
}

/// Adds one report's totals to the merged summary.
fn add_totals(summary: &mut Summary, theirs: &Summary) {
    summary.jobs += theirs.jobs;
    summary.trials += theirs.trials;
    summary.crash_states += theirs.crash_states;
    summary.violations += theirs.violations;
    for (kind, count) in &theirs.violations_by_kind {
        *summary.violations_by_kind.entry(kind.clone()).or_insert(0) += count;
    }
    summary.acked += theirs.acked;
    summary.acked_lost_permitted += theirs.acked_lost_permitted;
    summary.unpromised += theirs.unpromised;
    for (kind, count) in &theirs.unpromised_by_kind {
        *summary.unpromised_by_kind.entry(kind.clone()).or_insert(0) += count;
    }
    for (kind, case_id) in &theirs.unpromised_cases {
        summary
            .unpromised_cases
            .entry(kind.clone())
            .or_insert_with(|| case_id.clone());
    }
    for (pair, causes) in &theirs.unpromised_causes {
        Summary::add_causes(&mut summary.unpromised_causes, pair, causes);
    }
    for (pair, causes) in &theirs.violation_causes {
        Summary::add_causes(&mut summary.violation_causes, pair, causes);
    }
    summary.elapsed_s = summary.elapsed_s.max(theirs.elapsed_s);
    summary.interrupted |= theirs.interrupted;
    summary.exhaustive_states += theirs.exhaustive_states;
    summary.failures.extend(theirs.failures.iter().cloned());
    summary.groups.join(&theirs.groups);
    for (pair, coverage) in &theirs.coverage {
        let (policy, fault) = pair.split_once(" × ").unwrap_or((pair.as_str(), ""));
        summary.add_coverage(
            policy,
            fault,
            coverage.crash_states,
            coverage.states_covering_promise,
        );
    }
}

/// Copies every bundle under `from/failures/` to `to/failures/` (a bundle
/// already there, from an earlier merge, is kept).
fn copy_bundles(from: &Path, to: &Path) -> Result<u64, ReportError> {
    let source = from.join("failures");
    if !source.is_dir() {
        return Ok(0);
    }
    let target = to.join("failures");
    let mut copied = 0;
    let entries = fs::read_dir(&source).map_err(|e| ReportError::new(&source, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReportError::new(&source, e))?;
        let destination = target.join(entry.file_name());
        if entry.path().is_dir() && !destination.exists() {
            copy_tree(&entry.path(), &destination, BUNDLE_DEPTH_MAX)?;
            copied += 1;
        }
    }
    Ok(copied)
}

fn copy_tree(from: &Path, to: &Path, depth_left: usize) -> Result<(), ReportError> {
    if depth_left == 0 {
        return Ok(());
    }
    fs::create_dir_all(to).map_err(|e| ReportError::new(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| ReportError::new(from, e))? {
        let entry = entry.map_err(|e| ReportError::new(from, e))?;
        let destination = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| ReportError::new(from, e))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &destination, depth_left - 1)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &destination).map_err(|e| ReportError::new(&destination, e))?;
        }
    }
    Ok(())
}

/// `powercut merge`: returns the exit code (0 clean, 1 violations, 2 bad
/// input, 3 reports not writable or a shard interrupted).
pub fn main(dirs: &[PathBuf], out: Option<&Path>, partial: bool) -> i32 {
    if dirs.len() > REPORTS_MAX {
        eprintln!("powercut: merge takes at most {REPORTS_MAX} report directories");
        return exit::USAGE;
    }
    let mut reports = Vec::with_capacity(dirs.len());
    for dir in dirs {
        match read_report(dir) {
            Ok(report) => reports.push((dir.clone(), report)),
            Err(message) => {
                eprintln!("powercut: {message}");
                return exit::USAGE;
            }
        }
    }
    let merged = match merge(&reports, partial) {
        Ok(merged) => merged,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    let summary = &merged.summary;
    if let Some(out) = out {
        let written = write_all(out, &merged).and_then(|()| {
            dirs.iter()
                .try_fold(0, |copied, dir| Ok(copied + copy_bundles(dir, out)?))
        });
        if let Err(error) = written {
            eprintln!("powercut: {error}");
            return exit::HARNESS_FAILED;
        }
    }
    if summary.groups.is_empty() {
        // Reports of an older version keep no groups: list their cases.
        for case in &summary.failures {
            println!("  powercut replay {case}");
        }
    }
    for line in summary.groups.lines(&|case| case.to_string()) {
        println!("{line}");
    }
    println!(
        "powercut: merged {} report(s) (shards {}): {} trials, {} crash states, {} violation(s), {} acknowledged commit(s) lost within policy promises{}",
        reports.len(),
        summary.shards.join(", "),
        summary.trials,
        summary.crash_states,
        summary.violations,
        summary.acked_lost_permitted,
        if summary.interrupted {
            " [interrupted or partial]"
        } else {
            ""
        }
    );
    if summary.violations > 0 {
        println!(
            "{}",
            super::groups::closing_line(&summary.violations_by_kind, out)
        );
    }
    if summary.violations > 0 {
        exit::VIOLATIONS
    } else if summary.interrupted {
        eprintln!("powercut: a shard was interrupted or is missing: the run is incomplete");
        exit::HARNESS_FAILED
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(k: u64, n: u64, trials: &[u64], failing: Option<u64>) -> RunReport {
        let rows: Vec<TrialRow> = trials
            .iter()
            .map(|&trial| TrialRow {
                trial,
                scenario: "smoke".into(),
                policy: "group".into(),
                fault: "power-loss".into(),
                crash_states: 10,
                violations: u64::from(failing == Some(trial)),
                ..TrialRow::default()
            })
            .collect();
        let failures: Vec<(TrialRow, Failure)> = rows
            .iter()
            .filter(|row| row.violations > 0)
            .map(|row| {
                let failure = Failure {
                    case_id: format!("pc1:t{}", row.trial),
                    kind: "lost-ack".into(),
                    message: "txn lost".into(),
                    no_bundle: None,
                };
                (row.clone(), failure)
            })
            .collect();
        let mut by_kind = BTreeMap::new();
        if !failures.is_empty() {
            by_kind.insert("lost-ack".to_string(), failures.len() as u64);
        }
        RunReport {
            summary: Summary {
                scenario: "smoke".into(),
                seed: 9,
                shard: Some(format!("{k}/{n}")),
                shards: vec![format!("{k}/{n}")],
                jobs: 2,
                trials: rows.len() as u64,
                crash_states: 10 * rows.len() as u64,
                violations: failures.len() as u64,
                violations_by_kind: by_kind,
                elapsed_s: 1.0 + k as f64,
                failures: failures.iter().map(|(_, f)| f.case_id.clone()).collect(),
                ..Summary::default()
            },
            trials: rows,
            failures,
            ..RunReport::default()
        }
    }

    #[test]
    fn shards_add_up_and_round_trip_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_all(&a, &shard(1, 2, &[0, 2, 4], Some(2))).unwrap();
        write_all(&b, &shard(2, 2, &[1, 3], None)).unwrap();
        let reports = vec![
            (b.clone(), read_report(&b).unwrap()),
            (a.clone(), read_report(&a).unwrap()),
        ];
        let merged = merge(&reports, false).unwrap();
        let summary = &merged.summary;
        assert_eq!(summary.trials, 5);
        assert_eq!(summary.crash_states, 50);
        assert_eq!(summary.violations, 1);
        assert_eq!(summary.violations_by_kind["lost-ack"], 1);
        assert_eq!(summary.failures, vec!["pc1:t2".to_string()]);
        assert_eq!(summary.shards, vec!["1/2".to_string(), "2/2".to_string()]);
        assert_eq!(summary.shard, None);
        assert_eq!(summary.jobs, 4);
        assert!((summary.elapsed_s - 3.0).abs() < 1e-9);
        assert!((summary.crash_states_per_s - 50.0 / 3.0).abs() < 1e-9);
        let trials: Vec<u64> = merged.trials.iter().map(|row| row.trial).collect();
        assert_eq!(trials, vec![0, 1, 2, 3, 4]);
        assert_eq!(merged.failures.len(), 1);
        assert_eq!(merged.failures[0].1.message, "txn lost");
    }

    #[test]
    fn duplicate_missing_and_mismatched_shards_are_refused() {
        let a = (PathBuf::from("a"), shard(1, 2, &[0], None));
        let again = (PathBuf::from("a2"), shard(1, 2, &[2], None));
        let error = merge(&[a.clone(), again], false).unwrap_err();
        assert!(error.contains("shard 1/2 appears in both"), "{error}");
        let error = merge(std::slice::from_ref(&a), false).unwrap_err();
        assert!(error.contains("missing shard(s) 2/2"), "{error}");
        let partial = merge(std::slice::from_ref(&a), true).unwrap();
        assert!(partial.summary.interrupted);
        let mut other_seed = shard(2, 2, &[1], None);
        other_seed.summary.seed = 10;
        let error = merge(&[a.clone(), (PathBuf::from("b"), other_seed)], false).unwrap_err();
        assert!(error.contains("seed"), "{error}");
        let overlapping = (PathBuf::from("b"), shard(2, 2, &[0], None));
        let error = merge(&[a.clone(), overlapping], false).unwrap_err();
        assert!(error.contains("trial 0 appears in both"), "{error}");
        let mut zero_based = shard(2, 2, &[1], None);
        zero_based.summary.shard = Some("0/2".into());
        zero_based.summary.shards = vec!["0/2".into()];
        let error = merge(&[a.clone(), (PathBuf::from("old"), zero_based)], false).unwrap_err();
        assert!(error.contains("shards count from 1"), "{error}");
        let overlapping = (PathBuf::from("b"), shard(2, 2, &[0], None));
        let error = merge(&[a, overlapping], false).unwrap_err();
        assert!(error.contains("trial 0 appears in both"), "{error}");
    }
}
