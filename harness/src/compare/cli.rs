//! The `powercut compare` command line: parses into [`CompareOptions`],
//! runs, prints the failed checks, and maps the outcome to an exit code.

use super::{CompareError, CompareOptions, run_compare};
use crate::exit;
use std::path::PathBuf;

/// `powercut compare [--policy P,...] [--threads N,...] [--duration D] [--out DIR]`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Targets, comma-separated: NAME (every mode; `engine`: its --policy list) or NAME:MODE [default: engine,sqlite:wal-full,sqlite:wal-normal].
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// Fsync policies of the engine, comma-separated [default: always,group,interval:10,interval:1000,none].
    #[arg(long, value_delimiter = ',')]
    pub policy: Vec<String>,
    /// Committing thread counts of the throughput side, comma-separated [default: 1,8].
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Wall-clock budget of the whole run, half throughput, half crashes [default: 60s].
    #[arg(long)]
    pub duration: Option<String>,
    /// Directory for fsync-policies.csv and fsync-policies.svg [default: reports].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the crash side.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Crash-side worker processes [default: all cores].
    #[arg(long)]
    pub jobs: Option<u32>,
    /// Where the throughput side's temporary databases go (a real disk, not tmpfs) [default: .].
    #[arg(long)]
    pub bench_dir: Option<PathBuf>,
    /// Canary: plant an engine bug in the crash side; the checks must then fail.
    #[arg(long = "bug", hide = true)]
    pub bugs: Vec<String>,
}

/// Runs `powercut compare`; returns the exit code (1: a check failed).
pub fn main(args: CompareArgs) -> i32 {
    let options = match options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    match run_compare(&options, &mut std::io::stdout()) {
        Ok(report) if report.failed_checks.is_empty() => {
            println!("powercut compare: every policy check passed");
            exit::OK
        }
        Ok(report) => {
            for check in &report.failed_checks {
                println!("CHECK FAILED: {check}");
            }
            println!(
                "powercut compare: {} check(s) failed",
                report.failed_checks.len()
            );
            exit::VIOLATIONS
        }
        Err(CompareError::Usage(message)) => {
            eprintln!("powercut: {message}");
            exit::USAGE
        }
        Err(error) => {
            eprintln!("powercut: {error}");
            exit::HARNESS_FAILED
        }
    }
}

fn options(args: CompareArgs) -> Result<CompareOptions, String> {
    let mut options = CompareOptions::default();
    if !args.target.is_empty() {
        options.targets = args.target;
    }
    if !args.policy.is_empty() {
        options.policies = args
            .policy
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, String>>()?;
    }
    if !args.threads.is_empty() {
        options.threads = args.threads;
    }
    if let Some(text) = args.duration.as_deref() {
        options.duration = crate::workload::scenario::parse_duration(text)?;
    }
    if let Some(out) = args.out {
        options.out = out;
    }
    options.seed = args.seed;
    options.jobs = args.jobs;
    options.bench_dir = args.bench_dir;
    options.bugs = args.bugs;
    Ok(options)
}
