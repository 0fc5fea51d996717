//! `powercut run` end to end, through the real binary: the built-in smoke
//! scenario passes on the correct engine and writes well-formed reports;
//! bad input gets one line and exit 2.

mod common;
use common::{first_case_id, powercut, summary};

use std::path::Path;

#[test]
fn smoke_run_on_the_correct_engine_passes_and_writes_every_report() {
    let out = tempfile::tempdir().unwrap();
    let result = powercut(&[
        "run",
        "--duration",
        "4s",
        "--seed",
        "7",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(
        result.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary = summary(out.path());
    for field in [
        "trials",
        "crash_states",
        "violations",
        "violations_by_kind",
        "acked_lost_permitted",
        "elapsed_s",
        "crash_states_per_s",
        "seed",
    ] {
        assert!(
            summary.get(field).is_some(),
            "summary.json lacks {field}: {summary}"
        );
    }
    assert_eq!(summary["violations"], 0);
    assert_eq!(summary["seed"], 7);
    assert!(summary["trials"].as_u64().unwrap() > 0);
    assert!(summary["crash_states"].as_u64().unwrap() > summary["trials"].as_u64().unwrap());
    let trials = std::fs::read_to_string(out.path().join("trials.csv")).unwrap();
    assert!(
        trials.starts_with("trial,scenario,workload,policy,fault,"),
        "{trials}"
    );
    assert!(trials.lines().count() > 1);
    assert!(
        !out.path()
            .join(harness::supervisor::run::ROW_SPILL_FILE)
            .exists(),
        "the rows spilled during the run are removed once trials.csv is written"
    );
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && !junit.contains("<failure"),
        "{junit}"
    );
}

#[test]
fn bad_input_gets_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("bad.toml");
    std::fs::write(&malformed, "name = \"x\"\nworkloads = 3\n").unwrap();
    let malformed = malformed.to_str().unwrap().to_string();
    for args in [
        vec!["run", "--no-such-flag"],
        vec!["run", "--scenario", "/no/such/scenario.toml"],
        vec!["run", "--scenario", &malformed],
        vec!["run", "--policy", "sometimes"],
        vec!["run", "--fault", "meteor"],
        vec!["run", "--bug", "typo"],
        vec!["run", "--shard", "3/2"],
        vec!["run", "--duration", "forever"],
        vec!["bench", "nothing"],
        vec!["bench", "harness", "--target", "nosuch", "--duration", "1s"],
        vec!["bench", "engine", "--rounds", "0"],
        vec!["bench", "engine", "--rounds", "many"],
        vec!["run", "--target", "nosuch"],
    ] {
        let result = powercut(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Determinism (SPEC §5.2): the same binary and case id rebuild a
/// byte-identical crash image and the same verdict. The canary bug
/// `skip-fsync` makes a failure to replay.
#[test]
fn a_case_id_replays_to_a_byte_identical_image_and_the_same_verdict() {
    let result = powercut(&[
        "run",
        "--bug",
        "skip-fsync",
        "--policy",
        "always",
        "--fault",
        "power-loss",
        "--trials",
        "4",
        "--jobs",
        "1",
    ]);
    assert_eq!(
        result.status.code(),
        Some(1),
        "the canary bug must be caught"
    );
    let case = first_case_id(&String::from_utf8_lossy(&result.stdout));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        let replay = powercut(&[
            "replay",
            &case,
            "--keep-image",
            dir.path().to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&replay.stdout);
        assert_eq!(replay.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains("reproduced") && stdout.contains("lost-ack"),
            "{stdout}"
        );
    }
    let files = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| (name.clone(), std::fs::read(dir.join(name)).unwrap()))
            .collect::<Vec<_>>()
    };
    let first = files(dirs[0].path());
    assert!(!first.is_empty());
    assert_eq!(
        first,
        files(dirs[1].path()),
        "the two rebuilt images differ"
    );
    let flaky = powercut(&["replay", &case, "--flaky", "3"]);
    assert!(String::from_utf8_lossy(&flaky.stdout).contains("reproduced 3 of 3 replays"));
}

#[test]
fn malformed_case_ids_and_bundles_get_one_line_and_exit_2() {
    let empty = tempfile::tempdir().unwrap();
    for case in [
        "garbage",
        "pc1:smoke:kv-churn:group:power-loss:s1:t1",
        "pc1:nosuch:kv-churn:group:power-loss:s1:t1:5.1",
        empty.path().to_str().unwrap(),
    ] {
        let result = powercut(&["replay", case]);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{case}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{case}: {stderr}");
    }
}

#[test]
fn chaos_mode_kills_at_random_moments_and_stays_clean() {
    let result = powercut(&["run", "--chaos", "--trials", "6", "--jobs", "1"]);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stdout)
    );
}

#[test]
fn exhaustive_mode_reports_the_states_it_covered() {
    let result = powercut(&[
        "run",
        "--exhaustive",
        "3",
        "--fault",
        "power-loss",
        "--trials",
        "2",
        "--jobs",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(0), "{stdout}");
    let covered: u64 = stdout
        .split("exhaustive mode covered ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exhaustive count:\n{stdout}"));
    assert!(covered > 0, "{stdout}");
}
