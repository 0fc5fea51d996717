//! `powercut bench engine` end to end, tiny: every configuration gives one
//! CSV row under the fixed header, with commits and sane numbers. (Speed is
//! not checked here: the machine running the tests is shared.)

use engine::FsyncPolicy;
use harness::bench::{
    BenchRow, CSV_COLUMNS, EngineBenchOptions, RecoveryOptions, System, run_engine_bench,
};
use std::path::Path;
use std::time::Duration;

fn tiny_options(dir: &Path, policies: Vec<FsyncPolicy>, sqlite: bool) -> EngineBenchOptions {
    EngineBenchOptions {
        policies,
        threads: vec![1],
        duration: Duration::from_millis(60),
        rounds: 2,
        sqlite,
        csv: Some(dir.join("bench.csv")),
        recovery: None,
        dir: Some(dir.to_path_buf()),
        seed: 7,
        ..EngineBenchOptions::default()
    }
}

fn check_csv(path: &Path, rows: &[BenchRow]) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, CSV_COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(&record[1], row.policy);
        assert_eq!(&record[2], "1");
        let commits_per_s: f64 = record[3].parse().unwrap();
        assert!(commits_per_s > 0.0, "{record:?}");
        let p50: f64 = record[5].parse().unwrap();
        let p99: f64 = record[6].parse().unwrap();
        assert!(0.0 < p50 && p50 <= p99, "{record:?}");
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn sqlite_rows_have_the_csv_header_and_measured_syncs() {
    let scratch = scratch();
    let options = tiny_options(scratch.path(), vec![], true);
    let mut out = Vec::new();
    let report = run_engine_bench(&options, &mut out).unwrap();
    let policies: Vec<&str> = report.rows.iter().map(|r| r.policy.as_str()).collect();
    assert_eq!(policies, ["wal-full", "wal-normal"]);
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.system == System::Sqlite && r.commits > 0)
    );
    // synchronous=FULL syncs the WAL at every commit; NORMAL only at checkpoints.
    let full = report.rows[0].fsyncs_per_commit.unwrap();
    let normal = report.rows[1].fsyncs_per_commit.unwrap();
    assert!(full >= 0.99, "full: {full}");
    assert!(normal < 0.5, "normal: {normal}");
    check_csv(options.csv.as_ref().unwrap(), &report.rows);
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains("sqlite") && table.contains("normal"),
        "{table}"
    );
}

#[test]
fn engine_rows_for_every_policy() {
    let scratch = scratch();
    let policies: Vec<FsyncPolicy> = ["always", "group", "interval:10", "none"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let options = tiny_options(scratch.path(), policies, false);
    let report = run_engine_bench(&options, &mut std::io::sink()).unwrap();
    assert_eq!(report.rows.len(), 4);
    for row in &report.rows {
        assert_eq!(row.system, System::Engine);
        assert!(row.commits > 0, "{row:?}");
        assert!(row.fsyncs_per_commit.is_some(), "{row:?}");
    }
    let always = report.rows[0].fsyncs_per_commit.unwrap();
    assert!(always >= 0.99, "always syncs every commit: {always}");
    check_csv(options.csv.as_ref().unwrap(), &report.rows);
}

#[test]
fn a_memory_file_system_is_refused() {
    if !Path::new("/dev/shm").is_dir() {
        return;
    }
    let mut options = tiny_options(Path::new("/dev/shm"), vec![], true);
    options.csv = None;
    let error = run_engine_bench(&options, &mut std::io::sink()).unwrap_err();
    assert!(
        matches!(error, harness::bench::BenchError::MemoryFileSystem { .. }),
        "{error}"
    );
}

/// A crash after a small WAL: recovery replays it and reports a speed; the
/// memory reading is taken (not judged: tests share the process).
#[test]
fn recovery_replays_the_wal_it_built() {
    let scratch = scratch();
    let mut options = tiny_options(scratch.path(), vec![], false);
    options.threads = vec![];
    options.csv = None;
    options.recovery = Some(RecoveryOptions {
        wal_bytes: 2 << 20,
        pool_pages: 16,
        segment_size: 4 << 20,
    });
    let mut out = Vec::new();
    let report = run_engine_bench(&options, &mut out).unwrap();
    let recovery = report.recovery.unwrap();
    assert!(recovery.build_commits > 0);
    assert!(recovery.wal_bytes_written >= 2 << 20);
    assert!(recovery.wal_bytes_replayed > 0, "{recovery:?}");
    assert!(recovery.wal_bytes_replayed <= recovery.wal_bytes_written + (1 << 20));
    assert!(recovery.replay_mb_per_s > 0.0);
    assert!(recovery.rss_peak_recovery_bytes > 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("MB/s"), "{text}");
}

/// The full default benchmark, for a person at a terminal:
/// `cargo test --release -p harness --test bench_engine -- --ignored --nocapture`
/// (`POWERCUT_BENCH_CSV=path` keeps the CSV; `POWERCUT_BENCH_SECONDS=n`,
/// `POWERCUT_BENCH_SEGMENT_BYTES=n` for the recovery WAL's segments,
/// `POWERCUT_BENCH_RECOVERY_ONLY=1`).
#[test]
#[ignore = "takes about a minute and measures this machine; run by hand"]
fn full_benchmark_by_hand() {
    let seconds: u64 = std::env::var("POWERCUT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let segment_size = std::env::var("POWERCUT_BENCH_SEGMENT_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RecoveryOptions::default().segment_size);
    let options = EngineBenchOptions {
        duration: Duration::from_secs(seconds),
        csv: std::env::var_os("POWERCUT_BENCH_CSV").map(Into::into),
        recovery: Some(RecoveryOptions {
            segment_size,
            ..RecoveryOptions::default()
        }),
        dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..EngineBenchOptions::default()
    };
    let options = if std::env::var_os("POWERCUT_BENCH_RECOVERY_ONLY").is_some() {
        EngineBenchOptions {
            policies: vec![],
            threads: vec![],
            sqlite: false,
            ..options
        }
    } else {
        options
    };
    let report = run_engine_bench(&options, &mut std::io::stdout()).unwrap();
    assert!(report.rows.iter().all(|row| row.commits > 0));
}
