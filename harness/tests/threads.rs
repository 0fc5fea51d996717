//! kv-threads through the real binary: many client threads on one engine in
//! real time. The correct engine is clean; the race-only planted bug
//! (`group-ack-at-sync-return`, in the group-commit leader of
//! `Engine::commit`) is caught by threads and its bundle replays and
//! explains, and `--flaky N` runs its trial afresh N times; the single-threaded scenarios never catch it (their driver
//! never runs that path); a threaded case id alone is refused for replay;
//! bad scenarios are one line and exit 2.

mod common;
use common::{describe, powercut};

const BUG: &str = "group-ack-at-sync-return";

/// The promises that do not depend on time: `interval:MS`'s window is
/// judged in real time in a threaded trial, and a flusher thread starved
/// of CPU (or waiting behind another thread's long WAL write) on a busy
/// machine breaks it, which the oracle rightly reports; see
/// `an_interval_window_is_judged_at_each_crash_points_recorded_time`.
const TIMELESS_POLICIES: &str = "always,group,none";

/// `powercut run --scenario kv-threads --jobs 2 --out DIR ARGS...`.
fn run_threads(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = dir.to_str().unwrap();
    let mut all = vec![
        "run",
        "--scenario",
        "kv-threads",
        "--jobs",
        "2",
        "--out",
        out,
    ];
    all.extend_from_slice(args);
    powercut(&all)
}

#[test]
fn the_correct_engine_is_clean_under_threads_with_chaos_kills_too() {
    for chaos in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--policy", TIMELESS_POLICIES, "--duration", "4s"];
        if chaos {
            args.push("--chaos");
        }
        let result = run_threads(dir.path(), &args);
        assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
        let summary = common::summary(dir.path());
        assert!(
            summary["crash_states"].as_u64().unwrap_or(0) > 100,
            "{summary}"
        );
    }
}

#[test]
fn the_race_bug_is_caught_by_threads_and_its_bundle_replays() {
    let dir = tempfile::tempdir().unwrap();
    let result = run_threads(
        dir.path(),
        &[
            "--policy",
            "group",
            "--fault",
            "power-loss,process-crash",
            "--bug",
            BUG,
            "--duration",
            "15s",
        ],
    );
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("lost-ack"), "{stdout}");
    // Every group's smallest case keeps its bundle, even past the run's
    // cap of bundles: each group line replays a directory.
    let groups: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once(" powercut replay ").map(|(_, arg)| arg))
        .collect();
    assert!(!groups.is_empty(), "{stdout}");
    for argument in groups {
        assert!(
            std::path::Path::new(argument).is_dir(),
            "{argument}: {stdout}"
        );
    }
    let bundle = std::fs::read_dir(dir.path().join("failures"))
        .expect("bundles kept")
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .expect("a bundle");
    let bundle = bundle.to_str().unwrap();
    for _ in 0..2 {
        // The same trace every time: a replay is exact.
        let replay = powercut(&["replay", bundle]);
        assert_eq!(replay.status.code(), Some(1), "{}", describe(&replay));
        assert!(
            String::from_utf8_lossy(&replay.stdout).contains("reproduced"),
            "{}",
            describe(&replay)
        );
    }
    // --flaky N: fresh runs of the same seed (new interleavings).
    let flaky = powercut(&["replay", "--flaky", "2", bundle]);
    assert_eq!(flaky.status.code(), Some(1), "{}", describe(&flaky));
    let said = String::from_utf8_lossy(&flaky.stdout);
    assert!(
        said.contains("(same seed, new interleaving) found lost-ack in")
            && said.contains("of 2 run(s)"),
        "{said}"
    );
    let explain = powercut(&["replay", "--explain", bundle]);
    let told = String::from_utf8_lossy(&explain.stdout);
    assert!(told.contains("commit record of thread "), "{told}");
    // The case id alone cannot replay a threaded trial.
    let case_id = std::fs::read_to_string(std::path::Path::new(bundle).join("case-id")).unwrap();
    let by_id = powercut(&["replay", case_id.trim()]);
    assert_eq!(by_id.status.code(), Some(2), "{}", describe(&by_id));
    let stderr = String::from_utf8_lossy(&by_id.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("bundle"), "{stderr}");
}

#[test]
fn single_threaded_scenarios_never_catch_the_race_bug() {
    for scenario in ["smoke", "kv-churn"] {
        let result = powercut(&[
            "run",
            "--scenario",
            scenario,
            "--policy",
            "group,group:200",
            "--bug",
            BUG,
            "--duration",
            "3s",
            "--jobs",
            "2",
        ]);
        assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    }
}

#[test]
fn bad_threaded_scenarios_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = include_str!("../../scenarios/kv-threads.toml");
    for (name, text) in [
        ("one-thread", base.replace("threads = 4", "threads = 1")),
        (
            "sqlite",
            base.replace(
                "workloads = [\"kv-threads\"]",
                "workloads = [\"kv-threads\"]\ntargets = [\"sqlite:wal-full\"]",
            ),
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let result = powercut(&["run", "--scenario", path.to_str().unwrap(), "--trials", "1"]);
        assert_eq!(
            result.status.code(),
            Some(2),
            "{name}: {}",
            describe(&result)
        );
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
    }
}

/// Under `interval:2` the threaded trials judge each crash state at the
/// time the trace recorded for its crash point: a good share of states lie
/// at least 2×MS after an acknowledgement (the promise is exercised), and
/// whatever the oracle finds is only ever a window broken (never a hole,
/// a half transaction or a corruption), each naming its times; every such
/// finding replays from its bundle with the same verdict.
#[test]
fn an_interval_window_is_judged_at_each_crash_points_recorded_time() {
    let dir = tempfile::tempdir().unwrap();
    let result = run_threads(
        dir.path(),
        &[
            "--policy",
            "interval:2",
            "--fault",
            "power-loss",
            "--duration",
            "4s",
        ],
    );
    assert!(
        matches!(result.status.code(), Some(0 | 1)),
        "{}",
        describe(&result)
    );
    let summary = common::summary(dir.path());
    let share = summary["coverage"]["interval:2 × power-loss"]["share"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(share > 0.05, "{summary}");
    for (kind, _) in summary["violations_by_kind"].as_object().unwrap() {
        assert_eq!(kind, "beyond-window", "{summary}");
    }
    let stdout = String::from_utf8_lossy(&result.stdout);
    if let Some(bundle) = stdout
        .lines()
        .find_map(|line| line.split_once(" powercut replay ").map(|(_, arg)| arg))
    {
        let replay = powercut(&["replay", bundle]);
        assert_eq!(replay.status.code(), Some(1), "{}", describe(&replay));
        let said = String::from_utf8_lossy(&replay.stdout);
        assert!(said.contains("beyond-window: thread "), "{said}");
        let trace =
            std::fs::read_to_string(std::path::Path::new(bundle).join("trace.txt")).unwrap();
        assert!(trace.contains("us]"), "timed trace lines: {trace}");
    }
}
