//! Every promise is exercised by the built-in scenarios: `summary.json`
//! reports, per policy × fault profile, the share of crash states that hold
//! an acknowledged commit the promise forbids losing (for `interval:MS`, one
//! acknowledged at least 2×MS before the crash; kv-threads' real-time
//! figure is checked in `threads.rs`). A promise
//! whose figure is near zero is not tested, however long the run; this
//! checks that every built-in scenario with several policies keeps every
//! figure well above zero, `nightly` first.

mod common;
use common::{describe, powercut, summary};

/// The lowest share accepted for any policy × fault profile.
const SHARE_MIN: f64 = 0.05;

fn check(scenario: &str, trials: u32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let trials = trials.to_string();
    let result = powercut(&[
        "run",
        "--scenario",
        scenario,
        "--trials",
        &trials,
        "--out",
        out.to_str().unwrap(),
    ]);
    let summary = summary(&out);
    assert_eq!(result.status.code(), Some(0), "{}", describe(&result));
    let coverage = summary["coverage"]
        .as_object()
        .expect("coverage in summary.json");
    assert!(!coverage.is_empty(), "{summary}");
    for (pair, figure) in coverage {
        let states = figure["crash_states"].as_u64().unwrap();
        let covering = figure["states_covering_promise"].as_u64().unwrap();
        let share = figure["share"].as_f64().unwrap();
        assert!(covering <= states, "{scenario}: {pair}: {figure}");
        assert!(
            share >= SHARE_MIN,
            "{scenario}: {pair}: only {covering} of {states} crash states exercise the promise"
        );
    }
}

#[test]
fn nightly_exercises_every_promise() {
    // 4 workloads x 5 policies x 6 fault profiles: two trials each.
    check("nightly", 240);
}

#[test]
fn the_other_built_in_scenarios_exercise_every_promise() {
    for scenario in [
        "smoke",
        "bank",
        "kv-churn",
        "multi-crash",
        "checkpoint-storm",
        "long-txn-steal",
    ] {
        check(scenario, 48);
    }
}
