//! Sharding and merge (SPEC §7), through the real binary: `--trials T`
//! names the global trial range `0..T` and shard `K/N` (K from 1) runs its
//! part of it, so shards `1/N`..`N/N` merged equal the unsharded run; `powercut merge` keeps every
//! failure and refuses reports that do not belong together.

mod common;
use common::{assert_refused, describe, powercut, summary};

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

/// `trials.csv` rows without `elapsed_ms` (the only column that depends on
/// the machine), in file order.
fn rows(dir: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(dir.join("trials.csv")).expect("trials.csv");
    let headers = reader.headers().unwrap().clone();
    let timing = headers.iter().position(|h| h == "elapsed_ms").unwrap();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            (0..record.len())
                .filter(|&i| i != timing)
                .map(|i| record[i].to_string())
                .collect()
        })
        .collect()
}

fn trial_numbers(dir: &Path) -> Vec<u64> {
    rows(dir)
        .iter()
        .map(|row| row[0].parse().unwrap())
        .collect()
}

fn run_into(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--jobs", "2", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    powercut(&args)
}

/// The contract of SPEC §7: the union of the shards is the unsharded run.
#[test]
fn two_shards_merged_equal_one_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let [whole, shard1, shard2, merged] =
        ["whole", "s1", "s2", "merged"].map(|n| dir.path().join(n));
    let common = ["--seed", "11", "--trials", "7"];
    for (out, shard) in [
        (&whole, None),
        (&shard1, Some("1/2")),
        (&shard2, Some("2/2")),
    ] {
        let mut args = common.to_vec();
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let result = run_into(out, &args);
        assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    }
    assert_eq!(trial_numbers(&shard1), vec![0, 2, 4, 6]);
    assert_eq!(trial_numbers(&shard2), vec![1, 3, 5]);
    assert_eq!(summary(&shard1)["shard"], "1/2");
    assert_eq!(summary(&shard2)["shard"], "2/2");
    let result = powercut(&[
        "merge",
        shard2.to_str().unwrap(),
        shard1.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));

    let (one, joined) = (summary(&whole), summary(&merged));
    for field in [
        "trials",
        "crash_states",
        "acked",
        "acked_lost_permitted",
        "violations",
        "groups",
    ] {
        assert_eq!(one[field], joined[field], "{field}: {one} vs {joined}");
    }
    assert_eq!(joined["seed"], 11);
    assert_eq!(joined["shards"], serde_json::json!(["1/2", "2/2"]));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("(shards 1/2, 2/2)"), "{stdout}");
    assert_eq!(joined["interrupted"], false);
    let elapsed_max = summary(&shard1)["elapsed_s"]
        .as_f64()
        .unwrap()
        .max(summary(&shard2)["elapsed_s"].as_f64().unwrap());
    assert_eq!(joined["elapsed_s"].as_f64().unwrap(), elapsed_max);
    let mut sorted = rows(&whole);
    sorted.sort_by_key(|row| row[0].parse::<u64>().unwrap());
    assert_eq!(
        rows(&merged),
        sorted,
        "same trials, same crash states, same case ids"
    );
    let trials: BTreeSet<u64> = trial_numbers(&merged).into_iter().collect();
    assert_eq!(trials, (0..7).collect());
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && !junit.contains("<failure"),
        "{junit}"
    );
}

/// `--trials T` counts the global range, so a shard may get fewer than
/// T / N trials, or none at all, and still succeed.
#[test]
fn trials_count_the_global_range_under_sharding() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let result = run_into(&out, &["--trials", "5", "--shard", "2/3"]);
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    assert_eq!(trial_numbers(&out), vec![1, 4]);
    assert_eq!(summary(&out)["shard"], "2/3");
    let empty = dir.path().join("empty");
    let result = run_into(&empty, &["--trials", "2", "--shard", "3/3"]);
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    assert_eq!(summary(&empty)["trials"], 0);
}

/// Failures survive the merge: counts by kind, case ids, junit failures and
/// the bundles of both shards. The canary bug makes failures to keep.
#[test]
fn merge_keeps_every_shards_failures_and_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let [shard1, shard2, merged, whole] =
        ["s1", "s2", "merged", "whole"].map(|n| dir.path().join(n));
    let canary = [
        "--bug",
        "skip-fsync",
        "--policy",
        "always",
        "--fault",
        "power-loss",
    ];
    for (out, shard) in [(&shard1, "1/2"), (&shard2, "2/2")] {
        let mut args = canary.to_vec();
        args.extend(["--trials", "4", "--shard", shard]);
        let result = run_into(out, &args);
        assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    }
    let result = powercut(&[
        "merge",
        shard1.to_str().unwrap(),
        shard2.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(
        result.status.code(),
        Some(1),
        "violations found: {}",
        describe(&result)
    );
    let (a, b, joined) = (summary(&shard1), summary(&shard2), summary(&merged));
    let count = |s: &serde_json::Value| s["violations"].as_u64().unwrap();
    assert!(count(&a) > 0 && count(&b) > 0);
    assert_eq!(count(&joined), count(&a) + count(&b));
    let failures = |s: &serde_json::Value| s["failures"].as_array().unwrap().len();
    assert_eq!(failures(&joined), failures(&a) + failures(&b));
    let bundles = |d: &Path| std::fs::read_dir(d.join("failures")).unwrap().count();
    assert!(bundles(&shard1) > 0 && bundles(&shard2) > 0);
    assert_eq!(bundles(&merged), bundles(&shard1) + bundles(&shard2));
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<failure") && junit.contains("powercut replay pc1:"),
        "{junit}"
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("powercut replay "), "{stdout}");
    assert!(stdout.contains("violations by kind: lost-ack"), "{stdout}");
    // The groups (kind × policy × fault, count, smallest case) of the
    // merged shards are those of the unsharded run.
    let mut args = canary.to_vec();
    args.extend(["--trials", "4"]);
    let result = run_into(&whole, &args);
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let one = summary(&whole);
    assert_eq!(joined["violations"], one["violations"]);
    assert_eq!(joined["groups"], one["groups"]);
    assert!(!one["groups"]["groups"].as_array().unwrap().is_empty());
}

/// Reports that do not belong together, or are not reports, get one line
/// and exit 2; an output directory that cannot be written gets exit 3.
#[test]
fn merge_refuses_bad_reports_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let [shard1, other_seed, corrupt, not_report] =
        ["s1", "seed2", "corrupt", "plain"].map(|n| dir.path().join(n));
    for (out, seed) in [(&shard1, "1"), (&other_seed, "2")] {
        let result = run_into(out, &["--trials", "2", "--shard", "1/2", "--seed", seed]);
        assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    }
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("summary.json"), "{\"trials\": ").unwrap();
    std::fs::create_dir_all(&not_report).unwrap();
    let blocker = dir.path().join("regular-file");
    std::fs::write(&blocker, b"x").unwrap();
    let [s1, seed2, corrupt, plain] =
        [&shard1, &other_seed, &corrupt, &not_report].map(|p| p.to_str().unwrap().to_string());
    let under_file = blocker.join("out").to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["merge", &s1], 2, "missing shard(s) 2/2"),
        (vec!["merge", &s1, &s1], 2, "appears in both"),
        (vec!["merge", &s1, &seed2], 2, "seed"),
        (vec!["merge", &corrupt], 2, "malformed summary.json"),
        (vec!["merge", &plain], 2, "not a powercut report"),
        (vec!["merge", "/no/such/report"], 2, "not a powercut report"),
        (vec!["merge", "--no-such-flag", &s1], 2, "--no-such-flag"),
        (
            vec!["merge", &s1, "--partial", "--out", &under_file],
            3,
            "cannot write report",
        ),
    ];
    for (args, code, says) in cases {
        assert_refused(&powercut(&args), code, says, &format!("{args:?}"));
    }
    let partial = powercut(&["merge", &s1, "--partial"]);
    assert_eq!(
        partial.status.code(),
        Some(3),
        "a partial merge is incomplete"
    );
}

/// Shards count from 1: `--shard 0/2` (a habit from 0-based tools) is
/// refused with one line that says so, exit 2, and runs nothing.
#[test]
fn shard_zero_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    for (shard, says) in [("0/2", "shards count from 1"), ("3/2", "1 <= K <= N")] {
        let result = run_into(&out, &["--trials", "2", "--shard", shard]);
        assert_refused(&result, 2, says, shard);
        assert!(!out.join("summary.json").exists(), "{shard}: nothing ran");
    }
}
