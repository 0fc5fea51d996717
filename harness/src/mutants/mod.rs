//! `powercut mutants`: proves the harness catches real mistakes (SPEC §6).
//!
//! For each planted bug, runs the torture loop with the scenario, fsync
//! policies and fault profiles best suited to it, until the first violation
//! or the budget; then runs the correct engine (bug `none`) for the same
//! budget on the `nightly` scenario: every workload, every policy, every
//! fault profile. A bug is *caught* when its run reports a
//! violation; the correct engine must report none. Each caught row carries
//! the case id `powercut run` prints, so `powercut replay` reproduces it.
//!
//! What this does not check: that the violation found is *the* consequence
//! the bug is named for (a bug may first show as a recovery error rather
//! than a lost commit); that bugs are caught under every policy or profile
//! (only where the hunt looks).

pub mod vfs;

use crate::exit;
use crate::fault::FaultProfile;
use crate::report::RunReport;
use crate::supervisor::run::{self, RunError, RunRequest};
use engine::Bug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The budget per bug when `--budget` is not given.
pub const BUDGET_DEFAULT: &str = "10s";

/// The CSV header, exactly (the `none` row is the correct engine).
pub const CSV_HEADER: [&str; 6] = [
    "bug",
    "caught",
    "seconds",
    "crash_states",
    "violation_kind",
    "case_id",
];

/// Where a planted bug is hunted: a built-in scenario (its workloads,
/// parameters and crash cycles) narrowed to the policies and fault profiles
/// under which the mistake can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hunt {
    /// `None`: the correct engine.
    pub bug: Option<Bug>,
    pub scenario: &'static str,
    pub policies: &'static [&'static str],
    pub faults: &'static [&'static str],
    /// Why this is where the bug shows.
    pub why: &'static str,
}

/// One hunt per planted bug, in SPEC order.
pub const HUNTS: [Hunt; 18] = [
    Hunt {
        bug: Some(Bug::AckBeforeFsync),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["power-loss"],
        why: "an acknowledged commit whose fsync had not happened is lost at a power cut",
    },
    Hunt {
        bug: Some(Bug::SkipFsync),
        scenario: "smoke",
        policies: &["always"],
        faults: &["power-loss"],
        why: "`always` never fsyncs at commit: acknowledged commits sit in the page cache",
    },
    Hunt {
        bug: Some(Bug::GroupAckBeyondFlush),
        scenario: "smoke",
        policies: &["group"],
        faults: &["power-loss"],
        why: "commits appended during a group fsync are acknowledged by it, unflushed",
    },
    Hunt {
        bug: Some(Bug::NoDirFsync),
        scenario: "smoke",
        policies: &["always"],
        faults: &["power-loss"],
        why: "a new segment or the renamed control file vanishes at a power cut",
    },
    Hunt {
        bug: Some(Bug::NoCrcCheck),
        scenario: "smoke",
        policies: &["always", "group", "interval:10", "none"],
        faults: &["power-loss", "torn-garbage"],
        why: "a torn record is accepted and replayed (or undone) with the wrong bytes",
    },
    Hunt {
        bug: Some(Bug::ReplayPastTorn),
        scenario: "kv-churn",
        policies: &["interval:10", "none"],
        faults: &["power-loss"],
        why: "records after a torn one are replayed: holes and half-applied transactions",
    },
    Hunt {
        bug: Some(Bug::NoTailTruncate),
        scenario: "smoke",
        policies: &["interval:10", "none"],
        faults: &["power-loss"],
        why: "appends after a torn tail or into a stale later segment: the next recovery stops at the garbage",
    },
    Hunt {
        bug: Some(Bug::EarlyCheckpoint),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["power-loss"],
        why: "control names a checkpoint whose pages were not yet durable",
    },
    Hunt {
        bug: Some(Bug::EarlyWalRemoval),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["power-loss", "process-crash"],
        why: "segments an active transaction (undo) or the old checkpoint still needs are removed",
    },
    Hunt {
        bug: Some(Bug::NoFullPageImages),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["power-loss"],
        why: "a torn page write cannot be repaired",
    },
    Hunt {
        bug: Some(Bug::RedoNoPageLsnCheck),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["power-loss", "process-crash"],
        why: "redo re-applies changes a page already holds",
    },
    Hunt {
        bug: Some(Bug::NoUndo),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["process-crash", "power-loss"],
        why: "stolen pages of uncommitted transactions stay after recovery",
    },
    Hunt {
        bug: Some(Bug::IgnoreFsyncError),
        scenario: "smoke",
        policies: &["always", "group"],
        faults: &["fsync-error"],
        why: "a commit is acknowledged after a failed fsync dropped its data",
    },
    Hunt {
        bug: Some(Bug::RedoFromCheckpoint),
        scenario: "checkpoint-storm",
        policies: &["always", "group"],
        faults: &["process-crash", "power-loss"],
        why: "a page dirty since before the checkpoint began, not written by it, loses its older changes",
    },
    Hunt {
        bug: Some(Bug::StaleRecycledRecord),
        scenario: "bank",
        policies: &["interval:10", "none"],
        faults: &["process-crash", "power-loss"],
        why: "past the end of the log in a recycled segment, its old records (same sizes: bank) are replayed as new",
    },
    Hunt {
        bug: Some(Bug::ReleaseIgnoresRecLsn),
        scenario: "checkpoint-storm",
        policies: &["always", "group"],
        faults: &["process-crash", "power-loss"],
        why: "a segment redo still needs (below the begin, above the oldest recLSN) is recycled",
    },
    Hunt {
        bug: Some(Bug::RecLsnSkipsImage),
        scenario: "kv-churn",
        policies: &["always", "group"],
        faults: &["torn-garbage", "power-loss"],
        why: "a page written and dirtied again in one interval gets a recLSN after its full-page image; redo skips the image and cannot repair its torn write",
    },
    Hunt {
        bug: Some(Bug::GroupAckAtSyncReturn),
        scenario: "kv-threads",
        policies: &["group"],
        faults: &["power-loss", "process-crash"],
        why: "only threads run Engine::commit's group leader: a commit appended during its fsync is acknowledged, still in the WAL buffer",
    },
];

/// The correct engine's run: every workload (`nightly`), every policy, and
/// the fault profiles of [`clean_faults`].
pub const CLEAN_SCENARIO: &str = "nightly";

/// One row of the table and the CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// A bug name, or `none` for the correct engine.
    pub bug: String,
    pub caught: bool,
    /// Time to the first violation, or the whole run when none was found.
    pub seconds: f64,
    /// Crash states verified until then.
    pub crash_states: u64,
    pub violation_kind: String,
    pub case_id: String,
}

/// What the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct MutantsRequest {
    pub budget: Option<String>,
    pub jobs: Option<u32>,
    pub csv: Option<PathBuf>,
    pub seed: u64,
    /// Only these bugs (empty: all of them); the correct engine always runs.
    pub bugs: Vec<String>,
    /// `sqlite`: hunt the planted bugs of SQLite's VFS instead ([`vfs`]).
    pub target: Option<String>,
}

/// The correct engine's fault profiles: every one.
pub fn clean_faults() -> Vec<String> {
    FaultProfile::ALL
        .into_iter()
        .map(|fault| fault.name().to_string())
        .collect()
}

fn request_for(hunt: &Hunt, budget: &str, request: &MutantsRequest) -> RunRequest {
    let (scenario, policies, faults, stop) = match hunt.bug {
        Some(_) => (
            hunt.scenario,
            hunt.policies.iter().map(|p| p.to_string()).collect(),
            hunt.faults.iter().map(|f| f.to_string()).collect(),
            true,
        ),
        None => (CLEAN_SCENARIO, Vec::new(), clean_faults(), false),
    };
    RunRequest {
        scenario: Some(scenario.to_string()),
        seed: request.seed,
        duration: Some(budget.to_string()),
        policies,
        faults,
        bugs: hunt.bug.iter().map(|bug| bug.name().to_string()).collect(),
        jobs: request.jobs,
        stop_on_first_violation: stop,
        quiet: true,
        ..RunRequest::default()
    }
}

fn row_of(name: &str, report: &RunReport) -> Row {
    let summary = &report.summary;
    let first = report.failures.first().map(|(_, failure)| failure);
    Row {
        bug: name.to_string(),
        caught: summary.violations > 0,
        seconds: summary.elapsed_s,
        crash_states: summary.crash_states,
        violation_kind: first.map(|f| f.kind.clone()).unwrap_or_default(),
        case_id: first.map(|f| f.case_id.clone()).unwrap_or_default(),
    }
}

/// Runs one hunt (or the correct engine) to its row.
pub fn hunt(hunt: &Hunt, budget: &str, request: &MutantsRequest) -> Result<Row, RunError> {
    let name = hunt.bug.map_or("none", Bug::name);
    let report = run::run_to_report(request_for(hunt, budget, request))?;
    Ok(row_of(name, &report))
}

/// Runs `powercut mutants`; returns the exit code.
pub fn run(request: MutantsRequest) -> i32 {
    let budget = request
        .budget
        .clone()
        .unwrap_or_else(|| BUDGET_DEFAULT.to_string());
    match request.target.as_deref() {
        None | Some("engine") => {}
        Some("sqlite") => return vfs::run(&request, &budget),
        Some(other) => {
            eprintln!("powercut: mutants --target: `{other}` has no planted bugs (engine, sqlite)");
            return exit::USAGE;
        }
    }
    let hunts = match select(&request, &budget) {
        Ok(hunts) => hunts,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    // Fail before the hunts, not after them, when the CSV cannot be written.
    if let Some(path) = &request.csv
        && let Err(error) = write_csv(path, &[])
    {
        eprintln!("powercut: cannot write {}: {error}", path.display());
        return exit::HARNESS_FAILED;
    }
    let mut rows = Vec::with_capacity(hunts.len());
    println!("{}", header_line());
    for hunt_plan in &hunts {
        let row = match hunt(hunt_plan, &budget, &request) {
            Ok(row) => row,
            Err(error) => {
                eprintln!("powercut: {}", error.message());
                return error.exit_code();
            }
        };
        if run::interrupted() {
            // The interrupted hunt proves nothing; the rows before it stand.
            let _ = request.csv.as_deref().map(|path| write_csv(path, &rows));
            eprintln!("powercut: interrupted; {} row(s) written", rows.len());
            return exit::HARNESS_FAILED;
        }
        println!("{}", table_line(&row));
        rows.push(row);
    }
    println!("{}", verdict_line(&rows));
    if let Some(path) = &request.csv
        && let Err(error) = write_csv(path, &rows)
    {
        eprintln!("powercut: cannot write {}: {error}", path.display());
        return exit::HARNESS_FAILED;
    }
    if passed(&rows) {
        exit::OK
    } else {
        exit::VIOLATIONS
    }
}

/// Validates the request; returns the hunts to run, the correct engine last.
fn select(request: &MutantsRequest, budget: &str) -> Result<Vec<Hunt>, String> {
    let limit: Duration = crate::workload::scenario::parse_duration(budget)
        .map_err(|e| format!("invalid --budget: {e}"))?;
    if limit.is_zero() {
        return Err("--budget must be more than 0".into());
    }
    if request.jobs == Some(0) {
        return Err("--jobs must be at least 1".into());
    }
    let mut wanted = Vec::new();
    for name in &request.bugs {
        wanted.push(name.parse::<Bug>()?);
    }
    let mut hunts: Vec<Hunt> = HUNTS
        .iter()
        .filter(|hunt| wanted.is_empty() || hunt.bug.is_some_and(|bug| wanted.contains(&bug)))
        .copied()
        .collect();
    hunts.push(Hunt {
        bug: None,
        scenario: CLEAN_SCENARIO,
        policies: &[],
        faults: &[],
        why: "the correct engine: no violation allowed",
    });
    Ok(hunts)
}

/// Every bug caught and the correct engine clean.
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|row| {
        row.caught == (row.bug != "none") && (row.bug != "none" || row.case_id.is_empty())
    })
}

fn header_line() -> String {
    format!(
        "{:<24} {:>6} {:>8} {:>12}  {:<18} case id",
        "bug", "caught", "seconds", "crash states", "violation"
    )
}

fn table_line(row: &Row) -> String {
    let caught = match (row.bug.as_str(), row.caught) {
        ("none", false) => "clean",
        ("none", true) => "FAIL",
        (_, true) => "yes",
        (_, false) => "MISSED",
    };
    format!(
        "{:<24} {:>6} {:>8.2} {:>12}  {:<18} {}",
        row.bug,
        caught,
        row.seconds,
        row.crash_states,
        if row.violation_kind.is_empty() {
            "-"
        } else {
            &row.violation_kind
        },
        row.case_id
    )
}

/// The closing line: caught count, median and worst time to detect, the
/// correct engine's crash states.
pub fn verdict_line(rows: &[Row]) -> String {
    let bugs: Vec<&Row> = rows.iter().filter(|row| row.bug != "none").collect();
    let caught = bugs.iter().filter(|row| row.caught).count();
    let mut seconds: Vec<f64> = bugs
        .iter()
        .filter(|row| row.caught)
        .map(|row| row.seconds)
        .collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0);
    let worst = seconds.last().copied().unwrap_or(0.0);
    let clean = rows.iter().find(|row| row.bug == "none");
    format!(
        "powercut: {caught} of {} planted bugs caught (median {median:.2}s, worst {worst:.2}s); correct engine: {}",
        bugs.len(),
        match clean {
            Some(row) if !row.caught => format!(
                "no violation in {} crash states ({:.1}s)",
                row.crash_states, row.seconds
            ),
            Some(row) => format!("VIOLATION {} ({})", row.violation_kind, row.case_id),
            None => "not run".to_string(),
        }
    )
}

/// Writes the rows as CSV with [`CSV_HEADER`].
pub fn write_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for row in rows {
        writer.write_record([
            row.bug.clone(),
            row.caught.to_string(),
            format!("{:.3}", row.seconds),
            row.crash_states.to_string(),
            row.violation_kind.clone(),
            row.case_id.clone(),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|e| e.into_error())?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_planted_bug_has_one_hunt_in_spec_order() {
        let bugs: Vec<Bug> = HUNTS.iter().filter_map(|hunt| hunt.bug).collect();
        assert_eq!(bugs, Bug::ALL.to_vec());
        for hunt in &HUNTS {
            assert!(!hunt.policies.is_empty() && !hunt.faults.is_empty());
            for policy in hunt.policies {
                policy
                    .parse::<engine::FsyncPolicy>()
                    .expect("policy parses");
            }
            for fault in hunt.faults {
                fault
                    .parse::<crate::fault::FaultProfile>()
                    .expect("fault parses");
            }
            crate::workload::scenario::resolve(Some(hunt.scenario)).expect("built-in");
        }
        let clean = clean_faults();
        assert_eq!(clean.len(), FaultProfile::ALL.len());
        for hunt in &HUNTS {
            for fault in hunt.faults {
                assert!(clean.contains(&fault.to_string()), "{fault}");
            }
        }
    }

    #[test]
    fn the_verdict_needs_every_bug_caught_and_a_clean_engine() {
        let row = |bug: &str, caught: bool| Row {
            bug: bug.to_string(),
            caught,
            seconds: 0.5,
            crash_states: 10,
            violation_kind: if caught {
                "lost-ack".into()
            } else {
                String::new()
            },
            case_id: if caught {
                "pc1:x".into()
            } else {
                String::new()
            },
        };
        assert!(passed(&[row("skip-fsync", true), row("none", false)]));
        assert!(!passed(&[row("skip-fsync", false), row("none", false)]));
        assert!(!passed(&[row("skip-fsync", true), row("none", true)]));
        let line = verdict_line(&[row("skip-fsync", true), row("none", false)]);
        assert!(line.contains("1 of 1"), "{line}");
    }

    #[test]
    fn the_csv_has_the_exact_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.csv");
        let rows = [Row {
            bug: "none".into(),
            caught: false,
            seconds: 1.0,
            crash_states: 5,
            violation_kind: String::new(),
            case_id: String::new(),
        }];
        write_csv(&path, &rows).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "bug,caught,seconds,crash_states,violation_kind,case_id\nnone,false,1.000,5,,\n"
        );
    }

    #[test]
    fn bad_budgets_and_bug_names_are_one_line_errors() {
        for (budget, bugs) in [("0s", vec![]), ("soon", vec![]), ("1s", vec!["nope"])] {
            let request = MutantsRequest {
                bugs: bugs.into_iter().map(String::from).collect(),
                ..MutantsRequest::default()
            };
            let error = select(&request, budget).unwrap_err();
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
