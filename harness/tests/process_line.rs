//! `--target line:COMMAND` end to end, with the example `appendkv` on a FUSE
//! mount: correct with its fsync, caught (`lost-ack`) without it, and no
//! mount or process of a run left behind, also after the harness itself is
//! SIGKILLed mid-run. Needs root and /dev/fuse: fails, never skips, without.

mod common;

use common::{command, describe, powercut, summary};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file look for leftover processes and mounts of any
/// run: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const APPENDKV: &str = env!("CARGO_BIN_EXE_appendkv");

/// Every process whose command line names `APPENDKV`, and every mount in
/// any namespace served by powercut (a FUSE mount or a scratch tmpfs).
fn leftovers() -> (Vec<String>, Vec<String>) {
    let mut processes = Vec::new();
    let mut mounts = Vec::new();
    let own = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == own {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(APPENDKV) {
            processes.push(format!("{pid}: {cmdline}"));
        }
        let mountinfo = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        for line in mountinfo.lines() {
            if line.contains("fuse.powercut") || line.contains("powercut-scratch") {
                mounts.push(format!("{pid}: {line}"));
            }
        }
    }
    (processes, mounts)
}

/// Waits a little for the kernel to finish tearing processes down.
fn assert_nothing_left(after: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (processes, mounts) = leftovers();
        if processes.is_empty() && mounts.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{after}: left behind\nprocesses: {processes:#?}\nmounts: {mounts:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_line(target: &str, out: &Path) -> std::process::Output {
    powercut(&[
        "run",
        "--target",
        target,
        "--trials",
        "1",
        "--cycles",
        "1",
        "--fault",
        "power-loss",
        "--jobs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn appendkv_with_its_fsync_keeps_every_acknowledged_commit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let output = run_line(&format!("line:{APPENDKV}"), out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let summary = summary(out.path());
    assert!(summary["crash_states"].as_u64().unwrap() > 10, "{summary}");
    assert_eq!(summary["violations"], 0, "{summary}");
    assert_nothing_left("after a run");
}

/// The canary: appendkv without its fsync acknowledges commits that a power
/// cut loses; the oracle must say `lost-ack`.
#[test]
fn appendkv_without_fsync_is_caught_losing_acknowledged_commits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let output = run_line(&format!("line:{APPENDKV} --no-fsync"), out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let summary = summary(out.path());
    assert!(
        summary["violations_by_kind"]["lost-ack"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{summary}"
    );
    assert_nothing_left("after a failing run");
}

#[test]
fn a_sigkilled_run_leaves_no_mount_and_no_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let target = format!("line:{APPENDKV}");
    let mut run = command(&[
        "run",
        "--target",
        &target,
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
    // Wait until programs run on mounts, so the kill lands mid-trial.
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftovers().1.is_empty() {
        assert!(Instant::now() < deadline, "no mount appeared within 30s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !leftovers().0.is_empty() || !leftovers().1.is_empty(),
        "the run is busy"
    );
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    assert_nothing_left("after SIGKILL of powercut run");
}
