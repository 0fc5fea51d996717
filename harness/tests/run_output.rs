//! What a run prints, through the real binary: a failing run prints one line
//! per group of failures (kind × policy × fault) with its count and the
//! replay command of its smallest case, however many violations it found,
//! and ends with the counts by kind and a pointer to `shrink`; every case
//! still lands in `failures.csv`. On a terminal a timed run draws a bar with
//! the time elapsed and left.
//!
//! Not checked here: which case is the smallest (`report::groups` unit
//! tests do), and how the bar looks beyond its words.

mod common;
use common::{describe, powercut};

use std::collections::{BTreeMap, BTreeSet};

/// `--bug no-undo` leaves losers' writes in place: many phantom and
/// atomicity violations per trial, the flood the grouping exists for.
#[test]
fn a_failing_run_prints_one_line_per_group_with_its_replay_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let result = powercut(&[
        "run",
        "--bug",
        "no-undo",
        "--trials",
        "24",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    let lines: Vec<&str> = stdout.lines().collect();

    // Every case is in failures.csv; the run found far more than it prints.
    let mut reader = csv::Reader::from_path(out.join("failures.csv")).unwrap();
    let failures: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let summary = common::summary(&out);
    assert_eq!(
        failures.len() as u64,
        summary["violations"].as_u64().unwrap()
    );
    assert!(failures.len() > 100, "a flood to group: {}", failures.len());
    assert!(lines.len() < 60, "bounded output:\n{stdout}");

    // One line per kind × policy × fault, each with one replay command of
    // a case of that group, listed in failures.csv.
    let trials = csv::Reader::from_path(out.join("trials.csv"))
        .unwrap()
        .deserialize::<BTreeMap<String, String>>()
        .map(|row| row.unwrap())
        .map(|row| {
            (
                row["trial"].clone(),
                (row["policy"].clone(), row["fault"].clone()),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let groups: BTreeSet<(String, String, String)> = failures
        .iter()
        .map(|f| {
            let (policy, fault) = trials[&f[0]].clone();
            (f[1].to_string(), policy, fault)
        })
        .collect();
    let cases: BTreeSet<&str> = failures.iter().map(|f| &f[2]).collect();
    let group_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.contains("powercut replay "))
        .collect();
    assert_eq!(group_lines.len(), groups.len(), "{stdout}");
    let mut counted = 0;
    for line in &group_lines {
        let (head, case) = line.split_once("powercut replay ").unwrap();
        assert!(cases.contains(case.trim()), "{case} is in failures.csv");
        let words: Vec<&str> = head.split_whitespace().collect();
        let [count, "×", kind, policy, fault] = words[..] else {
            panic!("a group line: {line}");
        };
        assert!(case.contains(&format!(":{policy}:{fault}:")), "{line}");
        assert!(groups.contains(&(kind.into(), policy.into(), fault.into())));
        counted += count.parse::<usize>().unwrap();
    }
    assert_eq!(counted, failures.len(), "the counts add up");
    assert!(lines[0].starts_with(&format!("FAIL {} violation(s)", failures.len())));

    let last = lines.last().unwrap();
    assert!(last.starts_with("violations by kind: "), "{last}");
    for (kind, count) in summary["violations_by_kind"].as_object().unwrap() {
        assert!(last.contains(&format!("{kind} {count}")), "{last}");
    }
    assert!(
        last.contains("failures.csv") && last.contains("powercut shrink"),
        "{last}"
    );
}

/// On a terminal (a pseudo-terminal here, `CI` unset) a timed run draws a
/// bar with the time elapsed and the time left.
#[test]
fn a_timed_run_on_a_terminal_shows_time_elapsed_and_left() {
    use nix::pty::{Winsize, openpty};
    use std::io::Read;
    let size = Winsize {
        ws_row: 24,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).expect("a pseudo-terminal");
    let mut child = common::command(&["run", "--duration", "2s", "--jobs", "1"])
        .env_remove("CI")
        .stderr(std::fs::File::from(pty.slave))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("powercut starts");
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0; 4096];
        // The read fails (EIO) once the child has closed the terminal.
        while let Ok(n @ 1..) = master.read(&mut buffer) {
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let status = child.wait().unwrap();
    let terminal = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{terminal}");
    assert!(
        terminal.contains(" elapsed, 00:00:0") && terminal.contains(" left"),
        "{terminal}"
    );
    assert!(terminal.contains("trials, "), "{terminal}");
}
