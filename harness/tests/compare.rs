//! `powercut compare`: the CSV has exactly its header and every crash cell
//! of every row (engine policies and SQLite modes) is filled from
//! measurement, with the mode's promise; the SVG is written and names the
//! target modes; a policy whose promise is broken (a planted bug, the
//! canary) fails its check with exit 1 and says which check failed.
//!
//! Not checked here: the throughput numbers themselves (they depend on the
//! disk and on other tenants of the machine), or `group` beating `always`
//! (a one-thread run does not chart 8 threads; see `check_rows` below).

use harness::compare::{CSV_COLUMNS, CompareRow, CrashSide, check_rows};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The crash-side columns: everything from `crash_states` on.
fn crash_columns() -> &'static [&'static str] {
    let first = CSV_COLUMNS
        .iter()
        .position(|name| *name == "crash_states")
        .expect("the CSV has a crash_states column");
    &CSV_COLUMNS[first..]
}

fn compare(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_powercut"))
        .args([
            "compare",
            "--threads",
            "1",
            "--duration",
            "2s",
            "--jobs",
            "2",
        ])
        .arg("--out")
        .arg(out)
        .arg("--bench-dir")
        .arg(env!("CARGO_TARGET_TMPDIR"))
        .args(extra)
        .output()
        .expect("run powercut")
}

#[test]
fn the_csv_and_svg_hold_measured_rows_for_each_policy_and_fault() {
    let dir = tempfile::tempdir().unwrap();
    let output = compare(dir.path(), &["--policy", "always,none"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reader = csv::Reader::from_path(dir.path().join("fsync-policies.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[0].to_string(), r[2].to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("always", "power-loss"),
        ("always", "process-crash"),
        ("none", "power-loss"),
        ("none", "process-crash"),
        ("sqlite:wal-full", "power-loss"),
        ("sqlite:wal-full", "process-crash"),
        ("sqlite:wal-normal", "power-loss"),
        ("sqlite:wal-normal", "process-crash"),
    ]
    .iter()
    .map(|(p, f)| (p.to_string(), f.to_string()))
    .collect();
    assert_eq!(keys, expected);
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    for row in &rows {
        assert_eq!(&row[1], "1", "threads");
        assert!(row[column("commits_per_s")].parse::<f64>().unwrap() > 0.0);
        let sqlite = row[0].starts_with("sqlite:");
        for name in crash_columns() {
            let cell = &row[column(name)];
            match *name {
                "promise" => assert!(
                    ["durable", "prefix", "none"].contains(&cell) || cell.starts_with("window:"),
                    "{cell}"
                ),
                "within_promise" => assert_eq!(cell, "true", "{} {}", &row[0], &row[2]),
                _ => {
                    cell.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{name} of {} {}: `{cell}`", &row[0], &row[2]));
                }
            }
        }
        assert!(row[column("crash_states")].parse::<u64>().unwrap() > 0);
        assert!(row[column("acked")].parse::<u64>().unwrap() > 0);
        assert!(row[column("recovery_p99_ms")].parse::<f64>().unwrap() > 0.0);
        assert_eq!(row[column("wal_bytes_per_commit")].is_empty(), sqlite);
    }
    let promise = |mode: &str, fault: &str| {
        rows.iter()
            .find(|r| &r[0] == mode && &r[2] == fault)
            .map(|r| r[column("promise")].to_string())
    };
    assert_eq!(
        promise("sqlite:wal-full", "power-loss").as_deref(),
        Some("durable")
    );
    assert_eq!(
        promise("sqlite:wal-normal", "power-loss").as_deref(),
        Some("prefix")
    );
    assert_eq!(promise("none", "power-loss").as_deref(), Some("prefix"));
    let none_power_loss = &rows[2];
    assert!(
        none_power_loss[column("acked_lost")]
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        none_power_loss[column("max_loss_window_ms")]
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let svg = std::fs::read_to_string(dir.path().join("fsync-policies.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for name in ["always", "none", "sqlite:wal-full", "commits/s"] {
        assert!(svg.contains(name), "the chart names {name}");
    }
}

/// Canary: with `skip-fsync` planted, `always` acknowledges commits it never
/// synced, so a power cut loses them; the run must fail its `always` check.
#[test]
fn a_broken_promise_fails_its_check_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = compare(dir.path(), &["--policy", "always", "--bug", "skip-fsync"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("CHECK FAILED: always × power-loss"),
        "{stdout}"
    );
    assert!(dir.path().join("fsync-policies.csv").exists());
}

fn side(acked_lost: u64, loss_window_max_us: u64) -> CrashSide {
    CrashSide {
        trials: 1,
        crash_states: 10,
        acked: 100,
        acked_lost,
        loss_window_max_us,
        ..CrashSide::default()
    }
}

fn throughput(policy: &str, commits_per_s: f64) -> CompareRow {
    CompareRow {
        policy: policy.into(),
        threads: 8,
        fault: "power-loss".into(),
        commits_per_s: Some(commits_per_s),
        ..CompareRow::default()
    }
}

#[test]
fn each_promise_is_checked_from_the_numbers() {
    let mut crash = BTreeMap::new();
    let mut put = |policy: &str, fault: &str, side: CrashSide| {
        crash.insert((policy.to_string(), fault.to_string()), side);
    };
    put("always", "power-loss", side(0, 0));
    put("group", "power-loss", side(1, 500));
    put("interval:10", "power-loss", side(5, 11_000));
    put("interval:1000", "power-loss", side(5, 1_200_000));
    put("none", "power-loss", side(0, 0));
    put("none", "process-crash", side(2, 100));
    let rows = [throughput("always", 1000.0), throughput("group", 900.0)];
    let failed = check_rows(&rows, &crash);
    let expect = [
        "group × power-loss: 1 acknowledged commit(s) lost",
        "interval:1000 × power-loss: a loss window of 1200.000 ms",
        "none × power-loss: no acknowledged commit was lost",
        "none × process-crash: 2 acknowledged commit(s) lost to a process crash",
        "group (900.0 commits/s) does not beat always (1000.0 commits/s) at 8 threads",
    ];
    for sentence in expect {
        assert!(
            failed.iter().any(|f| f.starts_with(sentence)),
            "missing `{sentence}` in {failed:#?}"
        );
    }
    assert_eq!(failed.len(), expect.len(), "{failed:#?}");
}

/// The rows `compare --target TARGET` writes; a check may fail (exit 1),
/// never the command (2 or 3).
fn rows_of_target(target: &str) -> Vec<CompareRow> {
    let dir = tempfile::tempdir().unwrap();
    let output = compare(dir.path(), &["--target", target]);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reader = csv::Reader::from_path(dir.path().join("fsync-policies.csv")).unwrap();
    reader.deserialize().map(Result::unwrap).collect()
}

/// `--target redis`: one row per Redis mode × fault with both sides
/// measured — throughput from a commit loop against redis-server on a real
/// directory, the crash side from the run machinery on the FUSE mount —
/// and Redis's documented promise. The checks may fail (Redis's findings
/// under power loss, docs/process-targets.md): exit 1, never 2 or 3. Needs
/// redis-server, root and /dev/fuse.
#[test]
fn redis_modes_get_rows_with_both_sides() {
    let rows = rows_of_target("redis");
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.policy.clone(), row.fault.clone(), row.promise.clone()))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("redis:always", "power-loss", "durable"),
        ("redis:always", "process-crash", "durable"),
        ("redis:everysec", "power-loss", "window:1000"),
        ("redis:everysec", "process-crash", "durable"),
        ("redis:no", "power-loss", "none"),
        ("redis:no", "process-crash", "durable"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, expected);
    for row in &rows {
        assert!(row.commits_per_s.unwrap() > 0.0, "{row:?}");
        assert!(row.p99_us.unwrap() > 0.0, "{row:?}");
        assert!(row.wal_bytes_per_commit.unwrap() > 0.0, "{row:?}");
        assert_eq!(row.fsyncs_per_commit, None, "not counted for Redis");
        assert!(row.crash_states.unwrap() > 0, "{row:?}");
        assert!(row.loss_per_1000.is_some() && row.within_promise.is_some());
    }
    let everysec = rows
        .iter()
        .find(|row| row.policy == "redis:everysec")
        .unwrap();
    let always = rows
        .iter()
        .find(|row| row.policy == "redis:always")
        .unwrap();
    assert!(
        everysec.commits_per_s > always.commits_per_s,
        "an fsync per command costs: {always:?} vs {everysec:?}"
    );
}

/// `--target postgres:MODE`: one row per mode × fault with both sides —
/// throughput from a commit loop against PostgreSQL on a real directory,
/// the crash side from the run machinery on the FUSE mount (fewer crash
/// states a trial than the engine's) — and PostgreSQL's documented
/// promise. A finding under power loss would fail a check: exit 1, never 2
/// or 3. Needs PostgreSQL 15, root and /dev/fuse.
#[test]
fn postgres_modes_get_rows_with_both_sides() {
    let rows = rows_of_target("postgres:async");
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row.policy.as_str(),
                row.fault.as_str(),
                row.promise.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("postgres:async", "power-loss", "window:600"),
            ("postgres:async", "process-crash", "window:600"),
        ]
    );
    for row in &rows {
        assert_eq!(row.threads, 1);
        assert!(row.commits_per_s.unwrap() > 0.0, "{row:?}");
        assert!(row.p50_us.unwrap() > 0.0, "{row:?}");
        assert!(row.p99_us.unwrap() >= row.p50_us.unwrap(), "{row:?}");
        // A commit writes at least its row (100 bytes) into the WAL.
        assert!(row.wal_bytes_per_commit.unwrap() > 100.0, "{row:?}");
        assert_eq!(row.fsyncs_per_commit, None, "not counted for PostgreSQL");
        assert!(row.crash_states.unwrap() > 0, "{row:?}");
        assert!(row.acked.unwrap() > 0, "{row:?}");
        assert!(row.acked_lost.unwrap() <= row.acked.unwrap(), "{row:?}");
        assert!(row.within_promise.is_some() && row.recovery_p50_ms.is_some());
    }
}

/// `line:COMMAND`'s throughput side: the example program on a real
/// directory, committing threads taking turns on its one pipe, gives a row
/// of measured commits and latencies (its fsyncs and bytes are not
/// counted). Its crash side is the run machinery's, as for every target.
#[test]
fn a_line_program_gets_a_throughput_row() {
    use harness::bench::{EngineBenchOptions, System, run_engine_bench};
    let options = EngineBenchOptions {
        policies: Vec::new(),
        sqlite: false,
        line_commands: vec![env!("CARGO_BIN_EXE_appendkv")],
        threads: vec![1, 2],
        duration: std::time::Duration::from_millis(400),
        rounds: 1,
        dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..EngineBenchOptions::default()
    };
    let report = run_engine_bench(&options, &mut Vec::new()).unwrap();
    assert_eq!(report.rows.len(), 2, "{:?}", report.rows);
    for (row, threads) in report.rows.iter().zip([1, 2]) {
        assert_eq!(row.system, System::Line);
        assert_eq!(row.policy, env!("CARGO_BIN_EXE_appendkv"));
        assert_eq!(row.threads, threads);
        assert!(row.commits > 0 && row.commits_per_s > 0.0, "{row:?}");
        assert!(row.p99_us >= row.p50_us && row.p50_us > 0.0, "{row:?}");
        assert_eq!(row.fsyncs_per_commit, None);
        assert_eq!(row.wal_bytes_per_commit, None);
    }
}
