//! Helpers the command-line tests share: run the real `powercut` binary
//! (quiet, as in CI), show its output, read its reports.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// `powercut ARGS`, with `CI` set so no progress bar is drawn.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_powercut"));
    command.args(args).env("CI", "1");
    command
}

/// Runs `powercut ARGS` to the end.
pub fn powercut(args: &[&str]) -> Output {
    command(args).output().expect("run powercut")
}

/// Exit status and both streams, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A report directory's `summary.json`.
pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("valid summary.json")
}

/// The case id of the first failure a run printed (a group line ends with
/// `powercut replay CASE`).
pub fn first_case_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| {
            line.split_once("powercut replay ")
                .map(|(_, case)| case.trim())
        })
        .unwrap_or_else(|| panic!("no failure printed:\n{stdout}"))
        .to_string()
}

/// Asserts that a command was refused as bad input or a harness failure
/// should be: exit `code`, one line on stderr that says `says`, no panic.
/// `what` names the case in the failure message.
pub fn assert_refused(output: &Output, code: i32, says: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {}",
        describe(output)
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
    assert!(stderr.contains(says), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}
