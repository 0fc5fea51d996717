//! The harness never breaks (SPEC §8), through the real binary:
//!
//! - a recovery that hangs, spins, aborts, segfaults or exhausts memory is a
//!   finding (`recovery-hang`, `recovery-panic`), and the run goes on; the
//!   misbehaving recovery is planted with the TEST-ONLY environment variable
//!   `POWERCUT_TEST_RECOVERY_FAULT`, read by the verifier child alone;
//! - no process the run started outlives it, and no zombie piles up during it;
//! - SIGINT and SIGTERM stop a run within a second, kill its processes and
//!   still write a partial summary marked `interrupted`;
//! - a run writes only under `--out` (not the working directory, not TMPDIR);
//! - bad input gets one line and exit 2; unwritable reports get exit 3.
//!
//! Processes are recognised by a marker in their environment, which every
//! worker and forked child inherits, so concurrent tests do not mix.
//! Not checked here: a full disk during the run (bundle writes that fail
//! are skipped; the final report write is covered by the unwritable cases).

mod common;
use common::{describe, summary};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FAULT_ENV: &str = "POWERCUT_TEST_RECOVERY_FAULT";
const MARKER_ENV: &str = "POWERCUT_ROBUSTNESS_MARKER";

/// The smoke scenario with a 1 s recovery time limit, so a planted hang
/// costs a second per trial.
fn fast_scenario(dir: &Path) -> PathBuf {
    let smoke = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/smoke.toml"
    ))
    .unwrap();
    let path = dir.join("fast.toml");
    let text = smoke.replace("[crash]\n", "[crash]\nrecovery_time_limit = \"1s\"\n");
    assert_ne!(text, smoke, "smoke.toml has a [crash] table");
    std::fs::write(&path, text).unwrap();
    path
}

fn command(args: &[&str]) -> Command {
    let mut command = common::command(args);
    command.env_remove(FAULT_ENV);
    command
}

fn unique_marker(test: &str) -> String {
    format!("{test}-{}-{:?}", std::process::id(), Instant::now())
}

/// Pids of live processes whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_ENV}={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .collect()
}

/// `(pid, parent pid, state)` from `/proc/PID/stat`.
fn process_stat(pid: u32) -> Option<(u32, u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((pid, parent, state))
}

/// Zombies whose parent is one of `parents`.
fn zombies_of(parents: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process_stat)
        .filter(|&(_, parent, state)| state == 'Z' && parents.contains(&parent))
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Waits (a short grace for the kernel to finish SIGKILLs) until no
/// process with `marker` is left; returns those still there.
fn leftovers(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = marked_processes(marker);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Each planted misbehaviour of recovery is reported under its kind, once
/// per trial (the first state of each trial's first cycle), and every trial
/// of the budget still runs and verifies its other crash states.
#[test]
fn a_hanging_or_crashing_recovery_is_a_finding_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = fast_scenario(dir.path());
    let cases = [
        ("hang", "recovery-hang", "did not finish within 1000 ms"),
        ("spin", "recovery-hang", "did not finish within 1000 ms"),
        ("abort", "recovery-panic", "killed by SIGABRT"),
        ("segv", "recovery-panic", "killed by SIGSEGV"),
        ("oom", "recovery-panic", "killed by SIGABRT"),
    ];
    for (fault, kind, says) in cases {
        let out = dir.path().join(fault);
        let started = Instant::now();
        let result = command(&[
            "run",
            "--scenario",
            scenario.to_str().unwrap(),
            "--trials",
            "2",
            "--jobs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .env(FAULT_ENV, fault)
        .output()
        .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(
            result.status.code(),
            Some(1),
            "{fault}: {}",
            describe(&result)
        );
        let report = summary(&out);
        assert_eq!(report["trials"], 2, "{fault}: the run went on: {report}");
        assert_eq!(report["violations_by_kind"][kind], 2, "{fault}: {report}");
        assert_eq!(report["violations"], 2, "{fault}: {report}");
        assert!(
            report["crash_states"].as_u64().unwrap() > 2,
            "{fault}: the other states were verified: {report}"
        );
        // The run prints one line per group of failures; every failure's
        // message is in failures.csv.
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert!(stdout.contains(&format!("× {kind} ")), "{fault}: {stdout}");
        let failures = std::fs::read_to_string(out.join("failures.csv")).unwrap();
        assert!(failures.contains(says), "{fault}: {failures}");
        let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
        assert!(
            junit.contains(&format!("type=\"{kind}\"")),
            "{fault}: {junit}"
        );
        if kind == "recovery-hang" {
            assert!(
                elapsed >= Duration::from_secs(2),
                "{fault}: killed at the limit"
            );
            assert!(
                elapsed < Duration::from_secs(30),
                "{fault}: took {elapsed:?}"
            );
        }
    }
}

/// While a run kills hanging verifiers, every ended child is reaped
/// promptly (no zombie of a run's process survives a second), and after
/// the run none of its processes is left.
#[test]
fn no_zombies_pile_up_and_no_process_outlives_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = fast_scenario(dir.path());
    let marker = unique_marker("zombies");
    let mut child = command(&[
        "run",
        "--scenario",
        scenario.to_str().unwrap(),
        "--trials",
        "6",
        "--jobs",
        "2",
    ])
    .env(FAULT_ENV, "hang")
    .env(MARKER_ENV, &marker)
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut first_seen: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut samples = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let parents = marked_processes(&marker);
        let now = Instant::now();
        let zombies = zombies_of(&parents);
        first_seen.retain(|pid, _| zombies.contains(pid));
        for pid in zombies {
            let since = *first_seen.entry(pid).or_insert(now);
            assert!(
                now - since < Duration::from_secs(1),
                "zombie {pid} left unreaped for over a second"
            );
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "6 planted hangs are violations");
    assert!(samples > 5, "the run was sampled while it ran");
    assert_eq!(
        leftovers(&marker),
        Vec::<u32>::new(),
        "processes outlived the run"
    );
}

/// Ctrl-C and SIGTERM: the run stops within a second, kills its workers
/// and their children, leaves no temporary files, and writes a partial
/// report marked interrupted (exit 3: no violation, budget not spent).
#[test]
fn sigint_and_sigterm_stop_the_run_within_a_second_with_a_partial_report() {
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let [cwd, tmp, out] = ["cwd", "tmp", "out"].map(|n| dir.path().join(n));
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let marker = unique_marker(signal.as_str());
        let mut child = command(&["run", "--duration", "60s", "--out", out.to_str().unwrap()])
            .current_dir(&cwd)
            .env("TMPDIR", &tmp)
            .env(MARKER_ENV, &marker)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run is still going"
        );
        assert!(marked_processes(&marker).len() > 1, "workers are running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = wait_with_deadline(&mut child, Duration::from_secs(10));
        let took = sent.elapsed();
        let status = status.unwrap_or_else(|| panic!("{signal}: still running after 10 s"));
        assert!(
            took < Duration::from_secs(1),
            "{signal}: took {took:?} to stop"
        );
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(3), "{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{signal}: {stderr}");
        assert!(!stderr.contains("panicked"), "{signal}: {stderr}");
        let report = summary(&out);
        assert_eq!(report["interrupted"], true, "{signal}: {report}");
        assert!(out.join("trials.csv").exists() && out.join("junit.xml").exists());
        assert_eq!(
            leftovers(&marker),
            Vec::<u32>::new(),
            "{signal}: processes left"
        );
        assert_eq!(
            std::fs::read_dir(&cwd).unwrap().count(),
            0,
            "{signal}: cwd written"
        );
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "{signal}: TMPDIR left"
        );
    }
}

/// A run (with failures, so bundles are written) touches neither its
/// working directory nor TMPDIR: everything lands under `--out`.
#[test]
fn a_run_writes_only_under_its_out_directory() {
    let dir = tempfile::tempdir().unwrap();
    let [cwd, tmp, out] = ["cwd", "tmp", "out"].map(|n| dir.path().join(n));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let result = command(&[
        "run",
        "--bug",
        "skip-fsync",
        "--policy",
        "always",
        "--fault",
        "power-loss",
        "--trials",
        "3",
        "--out",
        out.to_str().unwrap(),
    ])
    .current_dir(&cwd)
    .env("TMPDIR", &tmp)
    .output()
    .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "cwd written");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "TMPDIR written"
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected = [
        "failures",
        "failures.csv",
        "junit.xml",
        "summary.json",
        "trials.csv",
    ];
    assert_eq!(names, expected);
    assert!(std::fs::read_dir(out.join("failures")).unwrap().count() > 0);
}

/// A report directory that cannot be created or written: exit 3 and one
/// clear line, before any trial runs. (Tests run as root, to whom a
/// read-only directory is writable, so the paths are under a regular file
/// and under /proc.)
#[test]
fn an_unwritable_report_directory_is_exit_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("regular-file");
    std::fs::write(&blocker, b"x").unwrap();
    for out in [
        blocker.join("reports"),
        blocker.clone(),
        PathBuf::from("/proc/powercut-reports"),
    ] {
        let result = command(&["run", "--trials", "1", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(
            result.status.code(),
            Some(3),
            "{out:?}: {}",
            describe(&result)
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{out:?}: {stderr}");
        assert!(stderr.contains("cannot write reports"), "{out:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{out:?}: {stderr}");
    }
}

/// The report folder vanishes during the run (a full or unmounted disk
/// looks the same to the final write): the run ends with exit 3 and one
/// line naming the report it could not write.
#[test]
fn a_report_folder_lost_during_the_run_is_exit_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let child = command(&["run", "--duration", "3s", "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, b"not a folder any more").unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write report"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Bad input beyond `run_cli.rs`'s cases: one line, exit 2, no panic.
#[test]
fn more_bad_input_gets_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty_scenario = dir.path().join("empty.toml");
    std::fs::write(&empty_scenario, "").unwrap();
    let binary_scenario = dir.path().join("binary.toml");
    std::fs::write(&binary_scenario, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    // A real bundle, then corrupted three ways.
    let out = dir.path().join("out");
    let result = command(&[
        "run",
        "--bug",
        "skip-fsync",
        "--policy",
        "always",
        "--fault",
        "power-loss",
        "--trials",
        "2",
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let bundle = std::fs::read_dir(out.join("failures"))
        .unwrap()
        .next()
        .expect("a bundle")
        .unwrap()
        .path();
    let corrupt = |name: &str, file: &str, bytes: &[u8]| {
        let copy = dir.path().join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(&bundle).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(copy.join(file), bytes).unwrap();
        copy.to_str().unwrap().to_string()
    };
    let garbled_id = corrupt("garbled-id", "case-id", b"pc1:smoke:\xff\xfe\n");
    let truncated_id = corrupt("truncated-id", "case-id", b"pc1:smoke:kv-churn\n");
    let bad_toml = corrupt("bad-toml", "scenario.toml", b"workloads = [\n");
    let [empty_scenario, binary_scenario, scenario_dir] =
        [&empty_scenario, &binary_scenario, &dir.path().to_path_buf()]
            .map(|p| p.to_str().unwrap().to_string());
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--scenario", &empty_scenario],
        vec!["run", "--scenario", &binary_scenario],
        vec!["run", "--scenario", &scenario_dir],
        vec!["run", "--shard", "1/0"],
        vec!["run", "--shard", "2"],
        vec!["run", "--trials", "0"],
        vec!["run", "--jobs", "0"],
        vec!["run", "--trials", "many"],
        vec!["replay", "pc1:smoke:kv-churn:always:power-loss:s1:tX:5.1"],
        vec!["replay", &garbled_id],
        vec!["replay", &truncated_id],
        vec!["replay", &bad_toml],
        vec!["merge", "--no-such-flag"],
        vec!["no-such-command"],
    ];
    for args in cases {
        let result = command(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(
            result.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&result)
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
