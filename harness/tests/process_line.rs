//! `--target line:COMMAND` end to end, with the example `appendkv` on a FUSE
//! mount: correct with its fsync, caught (`lost-ack`) without it, and no
//! mount or process of a run left behind, also after the harness itself is
//! SIGKILLed mid-run. Needs root and /dev/fuse: fails, never skips, without.

mod common;

use common::{command, describe, summary};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file look for leftover processes and mounts of any
/// run: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const APPENDKV: &str = env!("CARGO_BIN_EXE_appendkv");

/// Set in the environment of every run of these tests; every process of a
/// run (workers, children, programs) inherits it, so leftovers are told
/// apart from other processes on the machine.
const MARK: &str = "POWERCUT_PROCESS_LINE_TEST";

fn marked(args: &[&str]) -> std::process::Command {
    let mut command = command(args);
    command.env(MARK, std::process::id().to_string());
    command
}

/// Every process of our runs (by the mark in its environment), and every
/// mount powercut serves (a FUSE mount or a scratch tmpfs) in their mount
/// namespaces. A private namespace with no process left is gone, mounts
/// and all, so no process means no mount.
fn leftovers() -> (Vec<String>, Vec<String>) {
    let mut processes = Vec::new();
    let mut mounts = Vec::new();
    let own = std::process::id().to_string();
    let mark = format!("{MARK}={own}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == own {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let ours = environ.split(|b| *b == 0).any(|var| var == mark.as_bytes());
        if !ours {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        processes.push(format!(
            "{pid}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        ));
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
    marked(&[
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
    .output()
    .expect("run powercut")
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

    // A program that is not there is bad input: one line, exit 2.
    let missing = marked(&["run", "--target", "line:/nonexistent/prog", "--trials", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr).into_owned();
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(
        stderr.contains("not found") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
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

    // The printed command names the bundle, which replays from its trace.
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let argument = common::first_case_id(&stdout);
    let bundle = Path::new(argument.trim_matches('\''));
    assert!(bundle.join("trace.bin").is_file(), "{argument}");
    let replayed = marked(&["replay", bundle.to_str().unwrap(), "--explain"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&replayed.stdout).into_owned();
    assert_eq!(replayed.status.code(), Some(1), "{}", describe(&replayed));
    assert!(
        text.contains("reproduced") && text.contains("lost-ack"),
        "{text}"
    );
    assert!(
        text.contains("DROPPED"),
        "the story tells the dropped writes: {text}"
    );

    // Shrinking works on the recorded trace: crash point and fault choices.
    let shrunk_dir = out.path().join("minimal");
    let shrunk = marked(&[
        "shrink",
        bundle.to_str().unwrap(),
        "--budget",
        "60s",
        "--out",
        shrunk_dir.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&shrunk.stdout).into_owned();
    assert_eq!(shrunk.status.code(), Some(1), "{}", describe(&shrunk));
    assert!(text.contains("minimal case (lost-ack)"), "{text}");
    let again = marked(&["replay", shrunk_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));

    // Its case id alone cannot replay a process target: one clear line.
    let case_id = std::fs::read_to_string(bundle.join("case-id")).unwrap();
    let by_id = marked(&["replay", case_id.trim()]).output().unwrap();
    assert_eq!(by_id.status.code(), Some(2), "{}", describe(&by_id));
    assert_nothing_left("after replays and a shrink");
}

/// Starts a marked, silent `run` of appendkv under power loss.
fn spawn_appendkv_run(duration: &str, jobs: &str, out: &Path) -> std::process::Child {
    let target = format!("line:{APPENDKV}");
    marked(&[
        "run",
        "--target",
        &target,
        "--duration",
        duration,
        "--fault",
        "power-loss",
        "--jobs",
        jobs,
        "--out",
        out.to_str().unwrap(),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap()
}

#[test]
fn a_sigkilled_run_leaves_no_mount_and_no_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut run = spawn_appendkv_run("60s", "2", out.path());
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

/// `(state, parent pid, command name)` of `pid`, from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(char, u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
    let mut fields = stat[stat.rfind(')')? + 2..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent, name))
}

/// Every workload cycle ends with its child SIGKILLed, which orphans the
/// program that child started (it dies of its death signal). The worker
/// adopts and reaps it: no program of a run stays a zombie for more than a
/// second, whoever its parent (an init that never reaps, as in a
/// container, would keep it forever), and none is left after the run.
#[test]
fn programs_of_killed_cycles_are_reaped_not_left_zombies() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut run = spawn_appendkv_run("4s", "1", out.path());
    let own = std::process::id().to_string();
    let mark = format!("{MARK}={own}");
    // Programs seen alive (a zombie's environment cannot be read).
    let mut programs: std::collections::BTreeSet<u32> = Default::default();
    let mut zombie_since: std::collections::BTreeMap<u32, Instant> = Default::default();
    let check = |programs: &std::collections::BTreeSet<u32>,
                 zombie_since: &mut std::collections::BTreeMap<u32, Instant>| {
        let now = Instant::now();
        for &pid in programs {
            match stat_of(pid) {
                Some(('Z', parent, name)) if name == "appendkv" => {
                    let since = *zombie_since.entry(pid).or_insert(now);
                    assert!(
                        now - since < Duration::from_secs(1),
                        "program {pid} has been a zombie of {parent} ({:?}) for over a second",
                        stat_of(parent)
                    );
                }
                _ => {
                    zombie_since.remove(&pid);
                }
            }
        }
    };
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if environ.split(|b| *b == 0).any(|var| var == mark.as_bytes())
                && stat_of(pid).is_some_and(|(_, _, name)| name == "appendkv")
            {
                programs.insert(pid);
            }
        }
        check(&programs, &mut zombie_since);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "the run passes");
    assert!(
        programs.len() > 4,
        "several cycles ran their program: {programs:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        check(&programs, &mut zombie_since);
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<_> = programs
        .iter()
        .filter(|&&pid| stat_of(pid).is_some_and(|(_, _, name)| name == "appendkv"))
        .collect();
    assert!(left.is_empty(), "programs left after the run: {left:?}");
    assert_nothing_left("after a run");
}
