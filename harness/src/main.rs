//! `powercut`: a thin command line over the harness library.
//!
//! Parses arguments, calls the library, prints one clear line on bad input,
//! and maps outcomes to the exit codes of [`harness::exit`].

use clap::{Args, Parser, Subcommand};
use harness::exit;
use std::path::PathBuf;

/// `powercut --version`: the package version and the commit it was built
/// from (`harness/build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("POWERCUT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "powercut",
    version = VERSION,
    about = "Crash-consistency torture harness: kills, tears and recovers a WAL engine, then checks every acknowledged commit survived."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Torture the engine: run trials of a scenario, crash them, recover, check.
    Run(RunArgs),
    /// Planted-bug detection table: hunt each of the 13 bugs, then run the correct engine.
    Mutants(MutantsArgs),
    /// Rebuild one crash state from its case id (or bundle directory), recover and judge it again.
    Replay(ReplayArgs),
    /// Reduce a failing case while the same violation kind persists; writes the minimal bundle.
    Shrink(harness::triage::shrink::ShrinkArgs),
    /// List every target, its modes, its promise per fault profile and whether its parts are installed.
    Targets,
    /// Measure the engine (commits/s per fsync policy, against SQLite) or the harness (crash states/s).
    Bench(BenchArgs),
    /// The fsync-policy report: throughput and crash losses per policy, as CSV and SVG.
    Compare(harness::compare::cli::CompareArgs),
    /// Join the reports of `run --shard K/N` into the report of the whole run.
    Merge(MergeArgs),
    /// Internal: a worker process of `powercut run` (reads trials on stdin).
    #[command(name = "__worker", hide = true)]
    Worker,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario file (TOML) or built-in scenario name [default: smoke].
    #[arg(long)]
    scenario: Option<String>,
    /// The run seed: every random choice flows from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Wall-clock budget, e.g. 30s, 5m (default: the scenario's).
    #[arg(long, conflicts_with = "trials")]
    duration: Option<String>,
    /// Number of trials instead of a time budget.
    #[arg(long)]
    trials: Option<u64>,
    /// Targets, comma-separated: NAME (every mode) or NAME:MODE, e.g. engine, sqlite:wal-full (default: the scenario's; see `powercut targets`).
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// Fsync policies of the engine target, comma-separated (default: the scenario's).
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// Fault profiles, comma-separated (default: the scenario's).
    #[arg(long, value_delimiter = ',')]
    fault: Vec<String>,
    /// Planted bugs to switch on in the engine (repeatable).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Parallel worker processes [default: all cores].
    #[arg(long)]
    jobs: Option<u32>,
    /// Crash cycles per trial (default: the scenario's).
    #[arg(long)]
    cycles: Option<u32>,
    /// Run only shard K of N (K/N, K from 1 to N): shards 1/N..N/N split the trials between them.
    #[arg(long)]
    shard: Option<String>,
    /// Directory for summary.json, trials.csv, junit.xml and failure bundles.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Kill workloads at random wall-clock moments instead of seeded points.
    #[arg(long)]
    chaos: bool,
    /// Also enumerate every crash point between two syncs and every subset of the last K volatile writes.
    #[arg(long, value_name = "K")]
    exhaustive: Option<u32>,
}

#[derive(Args, Debug)]
struct MutantsArgs {
    /// Wall-clock budget per bug, and for the correct engine, e.g. 10s.
    #[arg(long)]
    budget: Option<String>,
    /// Parallel worker processes [default: all cores].
    #[arg(long)]
    jobs: Option<u32>,
    /// Write the table as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The run seed of every hunt.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hunt only these bugs (repeatable; default: all 13).
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// `sqlite`: hunt the planted bugs of SQLite's VFS in its durable modes instead of the engine's.
    #[arg(long)]
    target: Option<String>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// A case id (as `powercut run` prints it) or a failure bundle directory.
    case: String,
    /// Tell the failure in words: transactions, lost commit records, dropped and torn writes, where recovery stopped.
    #[arg(long)]
    explain: bool,
    /// Leave the crash image as ordinary files in this directory.
    #[arg(long, value_name = "DIR")]
    keep_image: Option<PathBuf>,
    /// Replay N times and report how often the violation reproduces.
    #[arg(long, value_name = "N")]
    flaky: Option<u32>,
    /// Replay under this target mode (NAME:MODE) instead of the case's own.
    #[arg(long)]
    target: Option<String>,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Report directories written by `powercut run --shard K/N --out DIR`.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Write the merged summary.json, trials.csv, junit.xml and bundles here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Merge even if some shards are missing (the result is marked interrupted).
    #[arg(long)]
    partial: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// What to measure: `engine` or `harness`.
    target: String,
    /// Write the rows as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// (engine) Measure recovery speed and memory instead of commit throughput.
    #[arg(long)]
    recovery: bool,
    /// Time per configuration (engine, default 3s) or in all (harness, default 20s).
    #[arg(long)]
    duration: Option<String>,
    /// (engine) Fsync policies, comma-separated [default: always,group,interval:10,none].
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// (engine) Committing thread counts, comma-separated [default: 1,8].
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// (engine) Rounds each configuration's time is split into, run
    /// round-robin over all configurations [default: 3].
    #[arg(long)]
    rounds: Option<u32>,
    /// (harness) Worker processes [default: all cores].
    #[arg(long)]
    jobs: Option<u32>,
    /// (harness) Targets to measure, e.g. redis:always [default: the engine].
    /// A process target also gets the cost of each step of a crash state.
    #[arg(long = "target", value_delimiter = ',')]
    targets: Vec<String>,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                std::process::exit(exit::OK);
            }
            let rendered = error.render().to_string();
            let line = rendered
                .lines()
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ");
            eprintln!("powercut: {line} (see powercut --help)");
            std::process::exit(exit::USAGE);
        }
    };
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Mutants(args) => harness::mutants::run(harness::mutants::MutantsRequest {
            budget: args.budget,
            jobs: args.jobs,
            csv: args.csv,
            seed: args.seed,
            bugs: args.bugs,
            target: args.target,
        }),
        Command::Replay(args) => {
            harness::triage::replay::main(&harness::triage::replay::ReplayRequest {
                case: &args.case,
                target: args.target.as_deref(),
                explain: args.explain,
                keep_image: args.keep_image.as_deref(),
                flaky: args.flaky,
            })
        }
        Command::Targets => harness::target::list::main(),
        Command::Shrink(args) => harness::triage::shrink::main(&args),
        Command::Bench(args) => bench(args),
        Command::Compare(args) => harness::compare::cli::main(args),
        Command::Merge(args) => {
            harness::report::merge::main(&args.dirs, args.out.as_deref(), args.partial)
        }
        Command::Worker => harness::supervisor::worker::main(),
    };
    std::process::exit(code);
}

fn run(args: RunArgs) -> i32 {
    use harness::supervisor::run::{RunRequest, run};
    let request = RunRequest {
        scenario: args.scenario,
        seed: args.seed,
        duration: args.duration,
        trials: args.trials,
        targets: args.target,
        policies: args.policy,
        faults: args.fault,
        bugs: args.bugs,
        jobs: args.jobs,
        cycles: args.cycles,
        shard: args.shard,
        out: args.out,
        chaos: args.chaos,
        exhaustive: args.exhaustive,
        stop_on_first_violation: false,
        quiet: false,
    };
    run(request)
}

fn usage(message: impl std::fmt::Display) -> i32 {
    eprintln!("powercut: {message}");
    exit::USAGE
}

fn bench(args: BenchArgs) -> i32 {
    let duration = match args
        .duration
        .as_deref()
        .map(harness::workload::scenario::parse_duration)
    {
        None => None,
        Some(Ok(duration)) => Some(duration),
        Some(Err(message)) => return usage(message),
    };
    match args.target.as_str() {
        "engine" => bench_engine(args, duration),
        "harness" => {
            let duration = duration.unwrap_or(std::time::Duration::from_secs(20));
            match harness::bench::harness::run_harness_bench(
                duration,
                args.jobs,
                &args.targets,
                &mut std::io::stdout(),
            ) {
                Ok(_) => exit::OK,
                Err(error @ harness::bench::BenchError::InvalidOptions(_)) => usage(error),
                Err(error) => {
                    eprintln!("powercut: {error}");
                    exit::HARNESS_FAILED
                }
            }
        }
        other => usage(format!(
            "unknown bench target `{other}` (expected engine or harness)"
        )),
    }
}

fn bench_engine(args: BenchArgs, duration: Option<std::time::Duration>) -> i32 {
    use harness::bench::{BenchError, EngineBenchOptions, RecoveryOptions, run_engine_bench};
    let mut options = EngineBenchOptions::default();
    if !args.policy.is_empty() {
        match args
            .policy
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<_>, String>>()
        {
            Ok(policies) => options.policies = policies,
            Err(message) => return usage(message),
        }
    }
    if !args.threads.is_empty() {
        options.threads = args.threads;
    }
    if let Some(duration) = duration {
        options.duration = duration;
    }
    if let Some(rounds) = args.rounds {
        options.rounds = rounds;
    }
    options.csv = args.csv;
    if args.recovery {
        options.policies.clear();
        options.threads.clear();
        options.sqlite = false;
        options.recovery = Some(RecoveryOptions::default());
    }
    match run_engine_bench(&options, &mut std::io::stdout()) {
        Ok(_) => exit::OK,
        Err(error @ BenchError::InvalidOptions(_)) => usage(error),
        Err(error) => {
            eprintln!("powercut: {error}");
            exit::HARNESS_FAILED
        }
    }
}
