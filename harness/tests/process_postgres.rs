//! `--target postgres:MODE` end to end on PostgreSQL 15 (issue 13): `sync`
//! keeps every acknowledged commit through power cuts (also cuts during
//! its own recovery), `no-fsync` loses acknowledged commits and the run
//! counts them as losses it never promised against, no process of a
//! cluster outlives its run, also when the harness is SIGKILLed, and a
//! failure replays and shrinks from its bundle with PostgreSQL's own log
//! line. Needs root, /dev/fuse and PostgreSQL 15: fails, never skips,
//! without.

mod common;

use common::{command, describe, powercut, summary};
use harness::case::bundle::{self, Bundle, RecordedCycle};
use harness::case::id::{CaseId, encode_fates};
use harness::fault::image::{ChangeFate, ExplicitFates};
use harness::fault::trace::Event;
use std::collections::BTreeSet;
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

/// The parent of process `pid`, if it runs.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

/// Whether `pid` runs the `postgres` program (a zombie has no program).
fn runs_postgres(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(POSTGRES))
}

/// The ancestors of `pid`, nearest first, up to (not including) process 1.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut chain = Vec::new();
    let mut at = pid;
    while let Some(parent) = parent_of(at).filter(|parent| *parent > 1) {
        chain.push(parent);
        at = parent;
    }
    chain
}

/// Every running process whose ancestors include `root`.
fn processes_under(root: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| ancestors(*pid).contains(&root))
        .collect()
}

/// Every running PostgreSQL process of a cluster (below an `unshare`, not
/// `initdb`'s) whose ancestors include `root`.
fn clusters_under(root: u32) -> BTreeSet<u32> {
    processes_under(root)
        .into_iter()
        .filter(|pid| runs_postgres(*pid))
        .filter(|pid| {
            let chain = ancestors(*pid);
            let below_root = chain.iter().position(|p| *p == root).unwrap_or(0);
            chain[..below_root].iter().any(|parent| {
                std::fs::read_link(format!("/proc/{parent}/exe"))
                    .is_ok_and(|exe| exe.ends_with("unshare"))
            })
        })
        .collect()
}

/// `powercut ARGS` started, its output thrown away.
fn spawn_quiet(args: &[&str]) -> std::process::Child {
    command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
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

/// No acknowledged commit is lost and nothing else goes wrong, but for the
/// one known finding (docs/postgres.md): a crash point between the creation
/// of `postmaster.pid` and its fsync leaves it empty and PostgreSQL will not
/// start. Where the crash points fall in a process target's trace is not
/// deterministic, so the test admits that violation, and only that one.
#[test]
fn postgres_sync_keeps_every_acknowledged_commit_through_power_cuts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let output = run_postgres("sync", "1", out.path());
    let summary = summary(&out.path().join("report"));
    assert!(summary["crash_states"].as_u64().unwrap() >= 10, "{summary}");
    assert!(summary["acked"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["acked_lost_permitted"], 0, "{summary}");
    let violations = summary["violations"].as_u64().unwrap();
    let empty_lock_files = summary["violation_causes"]["postgres:sync × power-loss"]
        ["recovery-error: lock-file-empty"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(violations, empty_lock_files, "{summary}");
    let code = if violations == 0 { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
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
}

/// Every process of every cluster dies with the harness: the postmaster
/// by its parent-death signal, its backends with its PID namespace.
#[test]
fn a_sigkilled_run_leaves_no_postgresql_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut run = spawn_quiet(&[
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
    ]);
    let root = run.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "no cluster of the run started within 30s"
        );
        seen.extend(clusters_under(root));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The processes running at the kill are the ones that must die.
    let running = loop {
        let running = clusters_under(root);
        if !running.is_empty() {
            break running;
        }
        assert!(Instant::now() < deadline, "no cluster runs to kill");
        std::thread::sleep(Duration::from_millis(2));
    };
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = running
            .iter()
            .copied()
            .filter(|pid| runs_postgres(*pid))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL processes of the killed run still run: {left:?} (of {running:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PostgreSQL's own words when a power cut kept the creation of
/// `postmaster.pid` but not its contents.
const EMPTY_LOCK_FILE: &str = "lock file \"postmaster.pid\" is empty";

/// A bundle built, not found: the cluster's starting image, and a trace in
/// which the postmaster creates `postmaster.pid` and writes its pid into
/// it; the power is cut after the write, with the create kept and the
/// write lost (explicit fault choices). What PostgreSQL does with that
/// image is up to PostgreSQL: it refuses to start.
fn empty_lock_file_bundle(dir: &Path) -> std::path::PathBuf {
    let image = harness::target::process::postgres::starting_image().unwrap();
    let pid_file = u32::try_from(image.files.len()).unwrap();
    let events = vec![
        Event::Create {
            name: "postmaster.pid".into(),
            file: pid_file,
        },
        Event::Write {
            file: pid_file,
            offset: 0,
            data: b"1\n/data\n1764590000\n5432\n\n".to_vec(),
        },
    ];
    let mut fates = ExplicitFates::default();
    fates.changes.insert(0, ChangeFate::Persisted);
    let case = format!(
        "pc1:postgres-test:kv-churn:postgres:sync:power-loss:s1:t0:2.x{}",
        encode_fates(&fates)
    );
    let case: CaseId = case.parse().unwrap();
    let contents = Bundle {
        case_id: case.to_string(),
        scenario_toml: SCENARIO.to_string(),
        verdict_json: "[]".into(),
        recorded: Some(RecordedCycle {
            events,
            times: Vec::new(),
            base_image: image.files.clone(),
            base_state: Default::default(),
        }),
        ..Bundle::default()
    };
    bundle::write(dir, "empty-lock-file", &contents).unwrap()
}

/// A `postgres:` failure replays from its bundle (no PostgreSQL run needed
/// to find it), and PostgreSQL's log line is in the verdict and in
/// `--explain`; `shrink` keeps the one change the failure needs.
#[test]
fn a_postgres_bundle_replays_and_shrinks_with_postgresqls_log() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let dir = empty_lock_file_bundle(out.path());
    let dir_arg = dir.to_str().unwrap();

    let replay = powercut(&["replay", dir_arg]);
    assert_eq!(replay.status.code(), Some(1), "{}", describe(&replay));
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(stdout.contains("reproduced"), "{}", describe(&replay));
    assert!(stdout.contains("recovery-error"), "{}", describe(&replay));
    assert!(stdout.contains(EMPTY_LOCK_FILE), "{}", describe(&replay));

    let explain = powercut(&["replay", dir_arg, "--explain"]);
    assert_eq!(explain.status.code(), Some(1), "{}", describe(&explain));
    let stdout = String::from_utf8_lossy(&explain.stdout);
    let (story, verdict) = stdout
        .split_once("reproduced")
        .unwrap_or_else(|| panic!("no verdict: {}", describe(&explain)));
    assert!(story.contains(EMPTY_LOCK_FILE), "{}", describe(&explain));
    assert!(story.contains("postmaster.pid"), "{}", describe(&explain));
    assert!(verdict.contains(EMPTY_LOCK_FILE), "{}", describe(&explain));

    let shrunk_dir = out.path().join("shrunk");
    let shrink = powercut(&[
        "shrink",
        dir_arg,
        "--budget",
        "60s",
        "--out",
        shrunk_dir.to_str().unwrap(),
    ]);
    assert_eq!(shrink.status.code(), Some(1), "{}", describe(&shrink));
    let stdout = String::from_utf8_lossy(&shrink.stdout);
    assert!(
        stdout.contains("volatile changes kept 1 → 1"),
        "{}",
        describe(&shrink)
    );
    assert!(stdout.contains(EMPTY_LOCK_FILE), "{}", describe(&shrink));
    let again = powercut(&["replay", shrunk_dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains(EMPTY_LOCK_FILE));
}

/// A worker SIGKILLed while `initdb` makes the cluster's image leaves no
/// directory of it behind (it lives on the worker's private tmpfs) and no
/// `initdb` running.
#[test]
fn a_worker_killed_during_initdb_leaves_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let initdb = Path::new(POSTGRES).with_file_name("initdb");
    let out = tempfile::tempdir().unwrap();
    let mut run = spawn_quiet(&[
        "run",
        "--target",
        "postgres:sync",
        "--trials",
        "1",
        "--jobs",
        "1",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let root = run.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (initdb_pid, worker) = loop {
        let found = processes_under(root).into_iter().find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == initdb)
        });
        if let Some(pid) = found {
            break (pid, parent_of(pid).unwrap());
        }
        assert!(Instant::now() < deadline, "no initdb of the run within 30s");
        std::thread::sleep(Duration::from_millis(5));
    };
    // SAFETY: a plain signal to the run's worker.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{initdb_pid}/exe")).is_ok_and(|exe| exe == initdb) {
        assert!(
            Instant::now() < deadline,
            "initdb {initdb_pid} outlives its SIGKILLed worker {worker}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name == &format!("powercut-postgres-initdb-{worker}"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let scratch = Path::new("/tmp/.powercut-process-targets/powercut-postgres-initdb");
    assert!(
        !scratch.exists(),
        "{} is visible outside the worker",
        scratch.display()
    );
}
