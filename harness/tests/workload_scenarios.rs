//! Scenario files: every built-in parses; malformed files give one-line
//! errors naming the file and the problem; unknown fields are rejected.

use engine::{Bug, BugSet, FsyncPolicy};
use harness::fault::FaultProfile;
use harness::workload::scenario::DEFAULT_SCENARIO;
use harness::workload::{Budget, Scenario, WorkloadKind, parse_duration};
use std::time::Duration;

const MINIMAL: &str = r#"
name = "t"
workloads = ["kv-churn", "bank"]
policies = ["always", "interval:10"]
faults = ["power-loss"]
trials = 5
"#;

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::from_toml(text, "t.toml").map_err(|error| error.to_string())
}

fn assert_error(text: &str, expected: &str) {
    let error = parse(text).expect_err("must be rejected");
    assert!(!error.contains('\n'), "not one line: {error}");
    assert!(error.starts_with("scenario t.toml: "), "{error}");
    assert!(error.contains(expected), "`{error}` lacks `{expected}`");
}

#[test]
fn every_builtin_parses_and_is_named_after_itself() {
    let names = Scenario::builtin_names();
    for expected in [
        "smoke",
        "bank",
        "kv-churn",
        "long-txn-steal",
        "checkpoint-storm",
        "multi-crash",
        "kv-threads",
        "nightly",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    for name in names {
        let scenario = Scenario::builtin(name).expect("built-in");
        assert_eq!(scenario.name, name);
        assert!(!scenario.combos().is_empty());
        assert!(scenario.cycles >= 1);
        // The file on disk is the embedded one.
        let path = format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(Scenario::from_file(path.as_ref()).unwrap(), scenario);
    }
    assert!(Scenario::builtin("no-such").is_none());
}

#[test]
fn the_default_scenario_is_small_and_multi_cycle() {
    let smoke = Scenario::builtin(DEFAULT_SCENARIO).unwrap();
    assert_eq!(
        smoke.workloads,
        vec![WorkloadKind::KvChurn, WorkloadKind::Bank]
    );
    assert_eq!(smoke.policies.len(), 4);
    assert_eq!(
        smoke.faults,
        vec![FaultProfile::PowerLoss, FaultProfile::ProcessCrash]
    );
    assert!(smoke.cycles >= 2);
    assert_eq!(smoke.budget, Budget::Duration(Duration::from_secs(20)));
    assert!(
        smoke.workload.value_size.max > 512,
        "records must span sectors"
    );
    let config = smoke.engine_config(FsyncPolicy::Always, BugSet::NONE);
    assert_eq!(
        (config.page_count, config.pool_pages, config.segment_size),
        (64, 8, 16384)
    );
    assert_eq!(config.policy, FsyncPolicy::Always);
}

#[test]
fn nightly_covers_every_workload_and_fault_profile() {
    let nightly = Scenario::builtin("nightly").unwrap();
    assert_eq!(nightly.workloads.len(), WorkloadKind::ALL.len());
    assert_eq!(nightly.faults.len(), FaultProfile::ALL.len());
    assert_eq!(Scenario::builtin("multi-crash").unwrap().cycles, 4);
}

#[test]
fn combos_are_the_product_and_trials_cycle_through_them() {
    let scenario = parse(MINIMAL).unwrap();
    let combos = scenario.combos();
    assert_eq!(combos.len(), 4);
    for trial in 0..10u64 {
        assert_eq!(
            scenario.combo_for_trial(trial),
            combos[(trial % 4) as usize]
        );
    }
    assert_eq!(
        combos[1].target,
        harness::target::TargetMode::Engine(FsyncPolicy::Interval { ms: 10 })
    );
    assert_eq!(combos[2].workload, WorkloadKind::Bank);
    assert_eq!(scenario.budget, Budget::Trials(5));
    assert_eq!(scenario.cycles, 2);
}

#[test]
fn bugs_and_engine_overrides_reach_the_engine_config() {
    let text = format!(
        "{MINIMAL}bugs = [\"skip-fsync\", \"no-undo\"]\n[engine]\npool_pages = 3\ncheckpoint_wal_bytes = 4096\n"
    );
    let scenario = parse(&text).unwrap();
    assert!(scenario.bugs.has(Bug::SkipFsync) && scenario.bugs.has(Bug::NoUndo));
    let config = scenario.engine_config(FsyncPolicy::None, scenario.bugs);
    assert_eq!(config.pool_pages, 3);
    assert_eq!(config.checkpoint_wal_bytes, 4096);
    assert_eq!(config.bugs, scenario.bugs);
    assert_eq!(config.page_count, engine::Config::default().page_count);
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    assert_error(&format!("{MINIMAL}colour = 3\n"), "colour");
    assert_error(&format!("{MINIMAL}[workload]\nkeyz = 3\n"), "keyz");
    assert_error(&format!("{MINIMAL}[engine]\npages = 3\n"), "pages");
    assert_error(&format!("{MINIMAL}[crash]\npoints = 3\n"), "points");
}

#[test]
fn malformed_scenarios_give_one_line_errors_naming_the_problem() {
    assert_error("name = \n", "line 1");
    assert_error(&MINIMAL.replace("kv-churn", "kv-chrn"), "kv-chrn");
    assert_error(&MINIMAL.replace("interval:10", "sometimes"), "policies");
    assert_error(&MINIMAL.replace("power-loss", "flood"), "flood");
    assert_error(&MINIMAL.replace("trials = 5", ""), "duration");
    assert_error(
        &MINIMAL.replace("trials = 5", "trials = 5\nduration = \"3s\""),
        "not both",
    );
    assert_error(
        &MINIMAL.replace("trials = 5", "duration = \"3 weeks\""),
        "3 weeks",
    );
    assert_error(&format!("{MINIMAL}cycles = 0\n"), "cycles");
    assert_error(&format!("{MINIMAL}bugs = [\"typo\"]\n"), "typo");
    assert_error(
        &format!("{MINIMAL}[workload]\nops_per_txn = [5, 1]\n"),
        "min > max",
    );
    assert_error(
        &format!("{MINIMAL}[workload]\nvalue_size = [4, 100]\n"),
        "tag",
    );
    assert_error(
        &format!("{MINIMAL}[workload]\nvalue_size = [16, 5000]\n"),
        "value_len_max",
    );
    assert_error(
        &format!("{MINIMAL}[workload]\ndelete_ratio = 1.5\n"),
        "delete_ratio",
    );
    assert_error(
        &format!("{MINIMAL}[crash]\nsector_size = 500\n"),
        "sector_size",
    );
    assert_error(
        &MINIMAL.replace("policies = [\"always\", \"interval:10\"]", "policies = []"),
        "policies",
    );
    assert_error("name = \"x\"\n", "missing field");
}

#[test]
fn resolve_takes_a_path_or_a_builtin_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(Scenario::resolve(path.to_str().unwrap()).unwrap().name, "t");
    assert_eq!(Scenario::resolve("bank").unwrap().name, "bank");
    let error = Scenario::resolve("nowhere.toml").unwrap_err().to_string();
    assert!(
        error.contains("nowhere.toml") && error.contains("smoke"),
        "{error}"
    );
    std::fs::write(&path, "name = [").unwrap();
    let error = Scenario::resolve(path.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("mine.toml") && !error.contains('\n'),
        "{error}"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
    for bad in [
        "",
        "s",
        "10",
        "1.5s",
        "-1s",
        "3 s",
        "10d",
        "99999999999999999999h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn every_builtin_gives_an_engine_config_the_engine_accepts() {
    // An invalid engine config makes every recovery fail: each crash state
    // would be reported as a violation (checkpoint-storm once had 8 KiB
    // segments, less than two 4 KiB full-page images).
    for name in Scenario::builtin_names() {
        let scenario = Scenario::builtin(name).unwrap();
        for policy in &scenario.policies {
            let config = scenario.engine_config(*policy, BugSet::default());
            let storage: std::sync::Arc<dyn engine::storage::Storage> =
                std::sync::Arc::new(engine::storage::MemStorage::new());
            let clock = std::sync::Arc::new(engine::VirtualClock::new(0));
            if let Err(error) = engine::Engine::open(storage, config, clock) {
                panic!("{name} under {policy}: {error}");
            }
        }
    }
}

#[test]
fn scenarios_list_targets_and_the_engine_needs_its_policies() {
    let sqlite = Scenario::builtin("sqlite").unwrap();
    assert_eq!(sqlite.targets.len(), 8);
    assert!(sqlite.policies.is_empty());
    assert!(
        sqlite
            .combos()
            .iter()
            .all(|combo| combo.target.kind().name() == "sqlite")
    );
    let base = "name = \"t\"\nworkloads = [\"kv-churn\"]\nfaults = [\"power-loss\"]\ntrials = 1\n";
    let mixed = Scenario::from_toml(
        &format!("{base}targets = [\"engine\", \"sqlite:wal-full\"]\npolicies = [\"always\"]\n"),
        "t",
    )
    .unwrap();
    let names: Vec<String> = mixed.targets.iter().map(|t| t.to_string()).collect();
    assert_eq!(names, ["always", "sqlite:wal-full"]);
    for bad in [
        "targets = [\"engine\"]\n",
        "targets = [\"sqlite:wal-sometimes\"]\n",
        "targets = [\"nosuch\"]\n",
    ] {
        let error = Scenario::from_toml(&format!("{base}{bad}"), "t").unwrap_err();
        assert!(!error.to_string().contains('\n'), "{error}");
    }
}

/// `threaded_policies` narrows the policies of threaded workloads only;
/// a policy outside `policies` is refused; `--policy` overrides it.
#[test]
fn threaded_policies_narrow_threaded_workloads_only() {
    let text = r#"
name = "t"
workloads = ["kv-churn", "kv-threads"]
policies = ["always", "interval:10"]
threaded_policies = ["always"]
faults = ["power-loss"]
trials = 1
"#;
    let mut scenario = parse(text).unwrap();
    let pairs = |scenario: &Scenario| -> Vec<(WorkloadKind, String)> {
        scenario
            .combos()
            .iter()
            .map(|combo| (combo.workload, combo.target.to_string()))
            .collect()
    };
    let interval =
        harness::target::TargetMode::Engine(FsyncPolicy::Interval { ms: 10 }).to_string();
    let combos = pairs(&scenario);
    assert_eq!(combos.len(), 3, "{combos:?}");
    assert!(combos.contains(&(WorkloadKind::KvChurn, interval.clone())));
    assert!(!combos.contains(&(WorkloadKind::KvThreads, interval.clone())));
    scenario.select(&[], &["interval:10".to_string()]).unwrap();
    assert!(pairs(&scenario).contains(&(WorkloadKind::KvThreads, interval)));
    assert_error(
        &text.replace(
            r#"threaded_policies = ["always"]"#,
            r#"threaded_policies = ["none"]"#,
        ),
        "`threaded_policies`: `none` is not one of the scenario's `policies`",
    );
    let nightly = Scenario::builtin("nightly").unwrap();
    assert!(nightly.combos().iter().all(|combo| {
        !(combo.workload.threaded()
            && matches!(
                combo.target,
                harness::target::TargetMode::Engine(FsyncPolicy::Interval { .. })
            ))
    }));
    assert!(
        nightly
            .combos()
            .iter()
            .any(|combo| combo.workload.threaded())
    );
}
