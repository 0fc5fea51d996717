//! `--target postgres:MODE` end to end on PostgreSQL 15 (issue 13): `sync`
//! keeps every acknowledged commit through power cuts (also cuts during
//! its own recovery), `no-fsync` loses acknowledged commits and the run
//! counts them as losses it never promised against, and no process of a
//! cluster outlives its run, also when the harness is SIGKILLed. Needs
//! root, /dev/fuse and PostgreSQL 15: fails, never skips, without.

mod common;

use common::{command, describe, powercut, summary};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests look for leftover PostgreSQL processes of any run: one at a
/// time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";

/// A short scenario: kv-churn, two crash cycles, a few crash states each.
const SCENARIO: &str = r#"
name = "postgres-test"
description = "a few power cuts of a small kv-churn on PostgreSQL"
workloads = ["kv-churn"]
policies = ["always"]
faults = ["power-loss"]
cycles = 2
duration = "20s"

[workload]
keys = 24
txns_per_cycle = 24
ops_per_txn = [1, 4]
value_size = [16, 900]
delete_ratio = 0.15
abort_ratio = 0.1
open_txns = 2
checkpoint_every = 10
op_time_us = 200

[engine]
page_count = 64
pool_pages = 8
segment_size = 16384

[crash]
points_per_trial = 5
states_per_point = 2
"#;

/// Every running process of a PostgreSQL cluster (the postmaster and its
/// backends all run the `postgres` program).
fn clusters_running() -> Vec<String> {
    let own = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == own {
            continue;
        }
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        if exe == Path::new(POSTGRES) {
            found.push(pid);
        }
    }
    found
}

fn assert_no_cluster_left(after: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = clusters_running();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{after}: PostgreSQL processes left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_postgres(mode: &str, seed: &str, out: &Path) -> std::process::Output {
    let scenario = out.join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    powercut(&[
        "run",
        "--scenario",
        scenario.to_str().unwrap(),
        "--target",
        &format!("postgres:{mode}"),
        "--trials",
        "1",
        "--seed",
        seed,
        "--jobs",
        "1",
        "--out",
        out.join("report").to_str().unwrap(),
    ])
}

#[test]
fn postgres_sync_keeps_every_acknowledged_commit_through_power_cuts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let output = run_postgres("sync", "1", out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = summary(&out.path().join("report"));
    assert!(summary["crash_states"].as_u64().unwrap() >= 10, "{summary}");
    assert!(summary["acked"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["violations"], 0, "{summary}");
    assert_eq!(summary["acked_lost_permitted"], 0, "{summary}");
    assert_no_cluster_left("after a run");
}

/// `fsync=off` promises nothing under power loss: what it loses is counted
/// (acknowledged commits lost, or a cluster that no longer recovers), and
/// none of it fails the run.
#[test]
fn postgres_without_fsync_loses_acknowledged_commits_and_the_run_counts_them() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let output = run_postgres("no-fsync", "1", out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = summary(&out.path().join("report"));
    assert_eq!(summary["violations"], 0, "{summary}");
    let lost = summary["acked_lost_permitted"].as_u64().unwrap();
    let unpromised = summary["unpromised"].as_u64().unwrap();
    assert!(
        lost + unpromised > 0,
        "nothing lost without fsync: {summary}"
    );
    assert_no_cluster_left("after a run");
}

#[test]
fn a_sigkilled_run_leaves_no_postgresql_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut run = command(&[
        "run",
        "--target",
        "postgres:sync",
        "--duration",
        "60s",
        "--fault",
        "power-loss",
        "--jobs",
        "2",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while clusters_running().is_empty() {
        assert!(Instant::now() < deadline, "no cluster started within 30s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    assert_no_cluster_left("after SIGKILL of powercut run");
}
