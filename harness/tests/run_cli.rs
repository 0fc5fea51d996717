//! `powercut run` end to end, through the real binary: the built-in smoke
//! scenario passes on the correct engine and writes well-formed reports;
//! bad input gets one line and exit 2.

use std::path::Path;
use std::process::Command;

fn powercut(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_powercut"))
        .args(args)
        .env("CI", "1")
        .output()
        .expect("run powercut")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report exists")).expect("valid JSON")
}

#[test]
fn smoke_run_on_the_correct_engine_passes_and_writes_every_report() {
    let out = tempfile::tempdir().unwrap();
    let result = powercut(&["run", "--duration", "4s", "--seed", "7", "--out", out.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&result.stderr));
    let summary = read_json(&out.path().join("summary.json"));
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
        assert!(summary.get(field).is_some(), "summary.json lacks {field}: {summary}");
    }
    assert_eq!(summary["violations"], 0);
    assert_eq!(summary["seed"], 7);
    assert!(summary["trials"].as_u64().unwrap() > 0);
    assert!(summary["crash_states"].as_u64().unwrap() > summary["trials"].as_u64().unwrap());
    let trials = std::fs::read_to_string(out.path().join("trials.csv")).unwrap();
    assert!(trials.starts_with("trial,scenario,workload,policy,fault,"), "{trials}");
    assert!(trials.lines().count() > 1);
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite") && !junit.contains("<failure"), "{junit}");
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
    ] {
        let result = powercut(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?} printed more than one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
