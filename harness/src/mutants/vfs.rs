//! `powercut mutants --target sqlite`: the planted bugs of SQLite's VFS,
//! hunted in the modes that promise `durable`, then the correct VFS under
//! every SQLite mode and every fault profile but `fsync-error` (no
//! violation allowed; what modes promising `none` show is counted, not a
//! failure). `fsync-error` is left out of the clean run because SQLite
//! itself breaks its promises there (docs/targets.md, "Findings"): the
//! unix VFS ignores a failed directory fsync, which no VFS bug is needed to
//! show.
//!
//! What this does not check: that SQLite's own code is right (the bugs are
//! in the VFS, the layer the harness supplies); that the bugs are caught in
//! modes that promise less than `durable` (there, losing a commit is
//! allowed).

use super::{MutantsRequest, Row, header_line, row_of, table_line, write_csv};
use crate::exit;
use crate::fault::FaultProfile;
use crate::supervisor::run::{self, RunRequest};
use crate::target::sqlite::vfs::VfsBug;

/// Where a VFS bug is hunted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfsHunt {
    pub bug: VfsBug,
    pub scenario: &'static str,
    pub targets: &'static [&'static str],
    pub faults: &'static [&'static str],
    pub why: &'static str,
}

/// One hunt per VFS bug.
pub const VFS_HUNTS: [VfsHunt; 2] = [
    VfsHunt {
        bug: VfsBug::SyncNoop,
        scenario: "smoke",
        targets: &["sqlite:wal-full", "sqlite:delete-extra"],
        faults: &["power-loss"],
        why: "a commit SQLite fsynced is acknowledged, but nothing reached the disk",
    },
    VfsHunt {
        bug: VfsBug::NoDeleteDirSync,
        scenario: "smoke",
        targets: &["sqlite:delete-extra"],
        faults: &["power-loss"],
        why: "the deleted journal (DELETE mode's commit point) comes back after a power cut and rolls the commit back",
    },
];

/// The correct VFS's run: every workload of this scenario, every mode,
/// every fault profile.
pub const CLEAN_SCENARIO: &str = "smoke";

fn request_for(
    scenario: &str,
    targets: &[&str],
    faults: Vec<String>,
    bugs: Vec<String>,
    budget: &str,
    request: &MutantsRequest,
) -> RunRequest {
    RunRequest {
        scenario: Some(scenario.to_string()),
        seed: request.seed,
        duration: Some(budget.to_string()),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        faults,
        stop_on_first_violation: !bugs.is_empty(),
        bugs,
        jobs: request.jobs,
        quiet: true,
        ..RunRequest::default()
    }
}

/// Runs the VFS hunts and the clean run; returns the exit code.
pub fn run(request: &MutantsRequest, budget: &str) -> i32 {
    let mut wanted = Vec::new();
    for name in &request.bugs {
        match name.parse::<VfsBug>() {
            Ok(bug) => wanted.push(bug),
            Err(message) => {
                eprintln!("powercut: {message} (with --target sqlite)");
                return exit::USAGE;
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    println!("{}", header_line());
    let hunts = VFS_HUNTS
        .iter()
        .filter(|hunt| wanted.is_empty() || wanted.contains(&hunt.bug));
    let clean_faults: Vec<String> = super::clean_faults()
        .into_iter()
        .filter(|fault| fault != FaultProfile::FsyncError.name())
        .collect();
    let runs = hunts
        .map(|hunt| {
            (
                hunt.bug.name(),
                request_for(
                    hunt.scenario,
                    hunt.targets,
                    hunt.faults.iter().map(|f| f.to_string()).collect(),
                    vec![hunt.bug.name().to_string()],
                    budget,
                    request,
                ),
            )
        })
        .chain(std::iter::once((
            "none",
            request_for(
                CLEAN_SCENARIO,
                &["sqlite"],
                clean_faults,
                Vec::new(),
                budget,
                request,
            ),
        )));
    for (name, run_request) in runs {
        let report = match run::run_to_report(run_request) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("powercut: {}", error.message());
                return error.exit_code();
            }
        };
        if run::interrupted() {
            eprintln!("powercut: interrupted; {} row(s) kept", rows.len());
            return exit::HARNESS_FAILED;
        }
        let row = row_of(name, &report);
        println!("{}", table_line(&row));
        if name == "none" {
            println!(
                "  correct VFS, every SQLite mode x every fault profile but fsync-error: {} observation(s) where the promise is none (not failures): {}",
                report.summary.unpromised,
                report
                    .summary
                    .unpromised_by_kind
                    .iter()
                    .map(|(kind, count)| format!("{kind} {count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        rows.push(row);
    }
    let caught = rows.iter().filter(|r| r.bug != "none" && r.caught).count();
    let hunted = rows.iter().filter(|r| r.bug != "none").count();
    println!(
        "powercut: {caught} of {hunted} planted VFS bugs caught; correct VFS: {}",
        match rows.iter().find(|r| r.bug == "none") {
            Some(row) if !row.caught =>
                format!("no violation in {} crash states", row.crash_states),
            Some(row) => format!("VIOLATION {} ({})", row.violation_kind, row.case_id),
            None => "not run".to_string(),
        }
    );
    if let Some(path) = &request.csv
        && let Err(error) = write_csv(path, &rows)
    {
        eprintln!("powercut: cannot write {}: {error}", path.display());
        return exit::HARNESS_FAILED;
    }
    if super::passed(&rows) {
        exit::OK
    } else {
        exit::VIOLATIONS
    }
}
