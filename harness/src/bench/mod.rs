//! `powercut bench engine [--recovery]`: the reference engine's fsync
//! policies against SQLite, on real files with real fsyncs.
//!
//! - [`run_engine_bench`] is the entry point for the command line: it
//!   measures every engine policy × thread count, then SQLite
//!   (`synchronous=FULL|NORMAL`) × thread count, printing a table row as each
//!   finishes, and writes the CSV (columns [`CSV_COLUMNS`]);
//! - with `recovery`, it also measures recovery speed and memory
//!   ([`recovery`]).
//!
//! Every configuration runs the same transaction (one 100-byte value put at
//! a random key of the thread's own key range, then commit) through the one
//! measurement loop in [`runner`], timed with one [`latency`] histogram.
//! Each configuration's time is split into rounds run round-robin over all
//! configurations, so a drift in the disk's fsync latency (other tenants)
//! weighs on every row alike.
//!
//! Not measured: durability (that is the torture loop's job), reads, large
//! transactions, and anything under a fault. Numbers from a machine shared
//! with other work are noisy (fsync-bound rows moved 2-20x between runs on
//! the shared 2-core development machine); compare rows of one run, not
//! runs.

pub mod engine;
pub mod harness;
pub mod line;
pub mod postgres;
pub mod process;
pub mod recovery;
pub mod redis;
pub mod runner;
pub mod sqlite;

use crate::target::process::postgres::PgMode;
use crate::target::process::redis::RedisMode;
use crate::target::sqlite::SqliteMode;
use ::engine::FsyncPolicy;
use runner::RunTotals;
use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use recovery::{RecoveryMeasurement, RecoveryOptions};

/// Bytes of the value every transaction writes.
pub const VALUE_BYTES: usize = 100;
/// The CSV header, in order.
pub const CSV_COLUMNS: [&str; 7] = [
    "system",
    "policy",
    "threads",
    "commits_per_s",
    "fsyncs_per_commit",
    "p50_us",
    "p99_us",
];
/// Most committing threads in one configuration.
pub const THREADS_MAX: usize = 256;
/// Longest measurement of one configuration.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most rounds per configuration.
pub const ROUNDS_MAX: u32 = 1000;

/// What `powercut bench engine` measures.
#[derive(Clone, Debug)]
pub struct EngineBenchOptions {
    /// Engine policies to measure (may be empty).
    pub policies: Vec<FsyncPolicy>,
    /// Committing thread counts, each measured with every policy.
    pub threads: Vec<usize>,
    /// Measurement time of each configuration (all rounds together).
    pub duration: Duration,
    /// Each configuration's time is split into this many rounds, run
    /// round-robin over all configurations, so a disk whose fsync latency
    /// drifts (other tenants) weighs on every row alike rather than on
    /// whichever ran at the bad moment.
    pub rounds: u32,
    /// Also measure SQLite, in `sqlite_modes`.
    pub sqlite: bool,
    /// The SQLite modes measured (default `wal-full`, `wal-normal`).
    pub sqlite_modes: Vec<SqliteMode>,
    /// `redis-server` modes measured (`powercut compare --target redis`).
    pub redis_modes: Vec<RedisMode>,
    /// PostgreSQL modes measured (`powercut compare --target postgres`).
    pub postgres_modes: Vec<PgMode>,
    /// Commands of `line:` programs measured (`powercut compare --target
    /// line:COMMAND`).
    pub line_commands: Vec<&'static str>,
    /// Write the rows here as CSV.
    pub csv: Option<PathBuf>,
    /// Also measure recovery speed and memory, with these options.
    pub recovery: Option<RecoveryOptions>,
    /// Where the temporary database directory is made (default: the current
    /// directory; it must be on a real disk, not tmpfs).
    pub dir: Option<PathBuf>,
    /// Seeds the random keys.
    pub seed: u64,
}

impl Default for EngineBenchOptions {
    fn default() -> EngineBenchOptions {
        EngineBenchOptions {
            policies: vec![
                FsyncPolicy::Always,
                FsyncPolicy::Group { delay_us: 0 },
                FsyncPolicy::Interval { ms: 10 },
                FsyncPolicy::None,
            ],
            threads: vec![1, 8],
            duration: Duration::from_secs(3),
            rounds: 3,
            sqlite: true,
            sqlite_modes: sqlite::DEFAULT_MODES
                .iter()
                .map(|mode| mode.parse().expect("built-in SQLite mode"))
                .collect(),
            redis_modes: Vec::new(),
            postgres_modes: Vec::new(),
            line_commands: Vec::new(),
            csv: None,
            recovery: None,
            dir: None,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// Which system a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Engine,
    Sqlite,
    Redis,
    Postgres,
    Line,
}

/// One configuration's result. Serialises to exactly [`CSV_COLUMNS`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchRow {
    pub system: System,
    /// An engine policy name, or SQLite's `full` / `normal`.
    pub policy: String,
    pub threads: usize,
    pub commits_per_s: f64,
    /// WAL fsyncs per commit (empty if there were no commits).
    pub fsyncs_per_commit: Option<f64>,
    /// Transaction latency, begin to acknowledged commit.
    pub p50_us: f64,
    pub p99_us: f64,
    #[serde(skip)]
    pub commits: u64,
    /// Transactions rolled back (conflict, full page, busy) — not commits.
    #[serde(skip)]
    pub aborts: u64,
    /// SQLite only: syncs of every file (WAL and database) per commit.
    #[serde(skip)]
    pub syncs_all_files_per_commit: Option<f64>,
    /// Latency, 99.9th percentile (not in [`CSV_COLUMNS`]).
    #[serde(skip)]
    pub p999_us: f64,
    /// WAL bytes written per commit, where counted (the engine).
    #[serde(skip)]
    pub wal_bytes_per_commit: Option<f64>,
    /// Engine under `group`: commits per group-commit round (per fsync a
    /// committing thread led), and a round's time outside and inside its
    /// fsync, µs.
    #[serde(skip)]
    pub commits_per_round: Option<f64>,
    #[serde(skip)]
    pub outside_fsync_us_per_round: Option<f64>,
    #[serde(skip)]
    pub fsync_us_per_round: Option<f64>,
}

/// The p99 commit latency while a checkpoint runs next to the p99 without
/// checkpoints, for one engine policy and thread count, measured in one run
/// with their rounds interleaved.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointRow {
    pub policy: String,
    pub threads: usize,
    /// p99 of the run without checkpoints.
    pub p99_us_without: f64,
    /// p99 of the commits of the run with checkpoints whose transaction
    /// began or was acknowledged while one was under way (0 if none was).
    pub p99_us_during: f64,
    pub commits_during: u64,
    /// Checkpoints completed in the run with checkpoints.
    pub checkpoints: u64,
}

impl CheckpointRow {
    /// `p99_us_during / p99_us_without` (`None` without both).
    pub fn ratio(&self) -> Option<f64> {
        (self.p99_us_without > 0.0 && self.commits_during > 0)
            .then(|| round_to(self.p99_us_during / self.p99_us_without, 2))
    }
}

impl BenchRow {
    pub fn from_measured(
        system: System,
        policy: &str,
        threads: usize,
        measured: &Measured,
    ) -> Self {
        let totals = &measured.totals;
        let group = measured.engine.as_ref();
        let quantile = |q: f64| totals.latency.quantile_us(q).unwrap_or(0.0);
        let per_commit = |count: u64| {
            (totals.commits > 0).then(|| round_to(count as f64 / totals.commits as f64, 4))
        };
        BenchRow {
            system,
            policy: policy.to_string(),
            threads,
            commits_per_s: round_to(totals.commits_per_s(), 1),
            fsyncs_per_commit: per_commit(measured.wal_syncs),
            p50_us: round_to(quantile(0.50), 1),
            p99_us: round_to(quantile(0.99), 1),
            commits: totals.commits,
            aborts: totals.aborts,
            syncs_all_files_per_commit: measured.all_file_syncs.and_then(per_commit),
            p999_us: round_to(quantile(0.999), 1),
            wal_bytes_per_commit: measured.wal_bytes.and_then(per_commit),
            commits_per_round: group
                .and_then(|g| g.commits_per_group_round())
                .map(|v| round_to(v, 2)),
            outside_fsync_us_per_round: group
                .and_then(|g| g.outside_fsync_us_per_group_round())
                .map(|v| round_to(v, 1)),
            fsync_us_per_round: group
                .and_then(|g| g.fsync_us_per_group_round())
                .map(|v| round_to(v, 1)),
        }
    }
}

/// The raw result of measuring one configuration, one round or several.
#[derive(Clone, Debug)]
pub struct Measured {
    pub totals: RunTotals,
    /// WAL syncs during the measurement.
    pub wal_syncs: u64,
    /// Syncs of every file, where counted (SQLite).
    pub all_file_syncs: Option<u64>,
    /// WAL bytes written during the measurement, where counted (the engine).
    pub wal_bytes: Option<u64>,
    /// The engine's own counters over the measurement (checkpoints,
    /// group-commit rounds).
    pub engine: Option<::engine::EngineStats>,
}

impl Measured {
    fn empty() -> Measured {
        Measured {
            totals: RunTotals::empty(),
            wal_syncs: 0,
            all_file_syncs: None,
            wal_bytes: None,
            engine: None,
        }
    }

    fn add_round(&mut self, round: &Measured) {
        self.totals.add_round(&round.totals);
        self.wal_syncs += round.wal_syncs;
        self.all_file_syncs = match (self.all_file_syncs, round.all_file_syncs) {
            (None, None) => None,
            (mine, theirs) => Some(mine.unwrap_or(0) + theirs.unwrap_or(0)),
        };
        self.wal_bytes = match (self.wal_bytes, round.wal_bytes) {
            (None, None) => None,
            (mine, theirs) => Some(mine.unwrap_or(0) + theirs.unwrap_or(0)),
        };
        if let Some(theirs) = &round.engine {
            self.engine = Some(self.engine.unwrap_or_default().plus(theirs));
        }
    }
}

/// What [`run_engine_bench`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    pub rows: Vec<BenchRow>,
    /// One per engine policy and thread count.
    pub checkpoints: Vec<CheckpointRow>,
    pub recovery: Option<RecoveryMeasurement>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid benchmark options: {0}")]
    InvalidOptions(String),
    #[error("benchmark directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error(
        "benchmark directory {dir} is on {fs_type} (memory): fsync would cost nothing; use --dir on a disk"
    )]
    MemoryFileSystem { dir: PathBuf, fs_type: String },
    #[error("engine failed during {during}: {source}")]
    Engine {
        during: &'static str,
        source: ::engine::Error,
    },
    #[error("SQLite failed during {during}: {source}")]
    Sqlite {
        during: &'static str,
        source: rusqlite::Error,
    },
    #[error("redis-server: {0}")]
    Redis(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("line program {0}")]
    Line(String),
    #[error("SQLite set-up: {0}")]
    SqliteSetup(String),
    #[error("registering the sync-counting SQLite VFS failed with code {code}")]
    SqliteVfs { code: i32 },
    #[error("writing the CSV {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("writing the report: {0}")]
    Output(#[from] io::Error),
    #[error("reading {what}: {source}")]
    Proc {
        what: &'static str,
        source: io::Error,
    },
    #[error("a benchmark thread panicked")]
    ThreadPanicked,
    #[error("the engine's warm-up completed no checkpoint in {0:?}")]
    WarmUp(std::time::Duration),
    /// The harness benchmark's run failed (not the user's options).
    #[error("{0}")]
    Run(String),
}

/// One configuration's shape, handed to the system-specific runners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub threads: usize,
    pub duration: Duration,
    pub seed: u64,
    /// Keys shared out in disjoint ranges among the threads.
    pub key_space: u64,
}

/// The inputs of one thread's transactions: a random key (8 bytes,
/// big-endian) from the thread's own range of the key space, so threads never
/// conflict on a key, and a value stamped with the thread and a serial
/// number, so no write is a no-op (SQLite skips rewriting a row whose new
/// content equals the old; the engine would log it anyway). SplitMix64:
/// seeded, no allocation.
#[derive(Clone, Debug)]
pub struct TxnInputs {
    state: u64,
    first: u64,
    span: u64,
    serial: u64,
    value: [u8; VALUE_BYTES],
}

impl TxnInputs {
    pub fn for_thread(spec: RunSpec, index: usize) -> TxnInputs {
        assert!(index < spec.threads);
        let span = spec.key_space / spec.threads as u64;
        assert!(
            span > 0,
            "key space {} for {} threads",
            spec.key_space,
            spec.threads
        );
        let mut value = [0x5a_u8; VALUE_BYTES];
        value[..8].copy_from_slice(&(index as u64).to_be_bytes());
        TxnInputs {
            state: spec.seed ^ (index as u64).wrapping_mul(0xd1b5_4a32_d192_ed03),
            first: span * index as u64,
            span,
            serial: 0,
            value,
        }
    }

    /// The next transaction's key and value.
    pub fn next_write(&mut self) -> ([u8; 8], &[u8; VALUE_BYTES]) {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let key = self.first + z % self.span;
        debug_assert!(key >= self.first && key < self.first + self.span);
        self.serial += 1;
        self.value[8..16].copy_from_slice(&self.serial.to_be_bytes());
        (key.to_be_bytes(), &self.value)
    }
}

/// One configuration: a system's setting and a thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Engine(FsyncPolicy),
    /// The engine with a checkpoint every
    /// [`engine::CHECKPOINT_EVERY_BYTES`] of WAL (for the checkpoint table).
    EngineCheckpoints(FsyncPolicy),
    Sqlite(SqliteMode),
    Redis(RedisMode),
    Postgres(PgMode),
    Line(&'static str),
}

impl Target {
    /// One round; an engine stays open in `slot` between rounds.
    fn measure(
        self,
        root: &Path,
        spec: RunSpec,
        slot: &mut Option<::engine::Engine>,
    ) -> Result<Measured, BenchError> {
        match self {
            Target::Engine(policy) => engine::bench_engine(root, policy, spec, false, slot),
            Target::EngineCheckpoints(policy) => {
                engine::bench_engine(root, policy, spec, true, slot)
            }
            Target::Sqlite(mode) => sqlite::bench_sqlite(root, mode, spec),
            Target::Redis(mode) => redis::bench_redis(root, mode, spec),
            Target::Postgres(mode) => postgres::bench_postgres(root, mode, spec),
            Target::Line(command) => line::bench_line(root, command, spec),
        }
    }

    /// The table row, for all but the runs with checkpoints.
    fn row(self, threads: usize, measured: &Measured) -> Option<BenchRow> {
        match self {
            Target::Engine(policy) => Some(BenchRow::from_measured(
                System::Engine,
                &policy.to_string(),
                threads,
                measured,
            )),
            Target::EngineCheckpoints(_) => None,
            Target::Sqlite(mode) => Some(BenchRow::from_measured(
                System::Sqlite,
                &mode.to_string(),
                threads,
                measured,
            )),
            // Redis's and PostgreSQL's fsyncs are not counted (no recording
            // storage between).
            Target::Redis(mode) => Some(BenchRow {
                fsyncs_per_commit: None,
                ..BenchRow::from_measured(System::Redis, &mode.to_string(), threads, measured)
            }),
            Target::Postgres(mode) => Some(BenchRow {
                fsyncs_per_commit: None,
                ..BenchRow::from_measured(System::Postgres, &mode.to_string(), threads, measured)
            }),
            Target::Line(command) => Some(BenchRow {
                fsyncs_per_commit: None,
                ..BenchRow::from_measured(System::Line, command, threads, measured)
            }),
        }
    }
}

/// The checkpoint table: each run with checkpoints next to the same
/// policy's run without.
fn checkpoint_rows(
    configurations: &[(Target, usize)],
    measured: &[Measured],
) -> Vec<CheckpointRow> {
    let without = |policy: FsyncPolicy, threads: usize| {
        configurations
            .iter()
            .zip(measured)
            .find(|((target, t), _)| *target == Target::Engine(policy) && *t == threads)
            .map(|(_, sum)| sum)
    };
    configurations
        .iter()
        .zip(measured)
        .filter_map(|(&(target, threads), with)| {
            let Target::EngineCheckpoints(policy) = target else {
                return None;
            };
            let plain = without(policy, threads)?;
            let p99 = |histogram: &crate::report::latency::LatencyHistogram| {
                round_to(histogram.quantile_us(0.99).unwrap_or(0.0), 1)
            };
            Some(CheckpointRow {
                policy: policy.to_string(),
                threads,
                p99_us_without: p99(&plain.totals.latency),
                p99_us_during: p99(&with.totals.marked),
                commits_during: with.totals.marked.count(),
                checkpoints: with.engine.map_or(0, |counters| counters.checkpoints),
            })
        })
        .collect()
}

/// Runs the benchmark, printing a table to `out` as rows complete (in the
/// last round).
pub fn run_engine_bench(
    options: &EngineBenchOptions,
    out: &mut dyn Write,
) -> Result<BenchReport, BenchError> {
    validate(options)?;
    let temporary = bench_tempdir(options.dir.as_deref())?;
    let root = temporary.path();
    writeln!(
        out,
        "benchmark directory: {} (removed afterwards)",
        root.display()
    )?;
    writeln!(
        out,
        "seed: {:#x}, {:?} per configuration in {} round-robin rounds",
        options.seed, options.duration, options.rounds
    )?;
    let configurations = configurations(options);
    let mut measured = vec![Measured::empty(); configurations.len()];
    let mut engines: Vec<Option<::engine::Engine>> = configurations.iter().map(|_| None).collect();
    let round_duration = options.duration / options.rounds;
    for round in 0..options.rounds {
        let last = round + 1 == options.rounds;
        if last {
            write_table_header(out)?;
        }
        let each = configurations
            .iter()
            .zip(measured.iter_mut())
            .zip(engines.iter_mut());
        for ((&(target, threads), sum), slot) in each {
            let spec = RunSpec {
                threads,
                duration: round_duration,
                seed: options.seed.wrapping_add(u64::from(round)),
                key_space: engine::KEY_SPACE,
            };
            sum.add_round(&target.measure(root, spec, slot)?);
            if last && let Some(row) = target.row(threads, sum) {
                write_table_row(out, &row)?;
            }
        }
    }
    for engine in engines.into_iter().flatten() {
        engine.close().map_err(|source| BenchError::Engine {
            during: "close",
            source,
        })?;
    }
    let rows: Vec<BenchRow> = configurations
        .iter()
        .zip(&measured)
        .filter_map(|(&(target, threads), sum)| target.row(threads, sum))
        .collect();
    write_group_table(out, &rows)?;
    let checkpoints = checkpoint_rows(&configurations, &measured);
    write_checkpoint_table(out, &checkpoints)?;
    if let Some(path) = &options.csv {
        write_csv(path, &rows)?;
        writeln!(out, "CSV: {}", path.display())?;
    }
    let recovery = match &options.recovery {
        Some(recovery_options) => Some(recovery::run(root, recovery_options, out)?),
        None => None,
    };
    Ok(BenchReport {
        rows,
        checkpoints,
        recovery,
    })
}

fn configurations(options: &EngineBenchOptions) -> Vec<(Target, usize)> {
    let sqlite = options.sqlite_modes.iter().filter(|_| options.sqlite);
    let targets: Vec<Target> = options
        .policies
        .iter()
        .flat_map(|&policy| [Target::Engine(policy), Target::EngineCheckpoints(policy)])
        .chain(sqlite.map(|&mode| Target::Sqlite(mode)))
        .chain(options.redis_modes.iter().map(|&mode| Target::Redis(mode)))
        .chain(
            options
                .postgres_modes
                .iter()
                .map(|&mode| Target::Postgres(mode)),
        )
        .chain(
            options
                .line_commands
                .iter()
                .map(|&command| Target::Line(command)),
        )
        .collect();
    options
        .threads
        .iter()
        .flat_map(|&threads| targets.iter().map(move |&target| (target, threads)))
        .collect()
}

fn validate(options: &EngineBenchOptions) -> Result<(), BenchError> {
    let invalid = |what: String| Err(BenchError::InvalidOptions(what));
    if let Some(&bad) = options.threads.iter().find(|&&t| t == 0 || t > THREADS_MAX) {
        return invalid(format!("{bad} threads (1..={THREADS_MAX})"));
    }
    if options.rounds == 0 || options.rounds > ROUNDS_MAX {
        return invalid(format!("{} rounds (1..={ROUNDS_MAX})", options.rounds));
    }
    if options.duration.is_zero() || options.duration > DURATION_MAX {
        return invalid(format!(
            "duration {:?} (up to {DURATION_MAX:?})",
            options.duration
        ));
    }
    let measures_rows = !options.threads.is_empty()
        && (options.sqlite
            || !options.policies.is_empty()
            || !options.redis_modes.is_empty()
            || !options.postgres_modes.is_empty()
            || !options.line_commands.is_empty());
    if !measures_rows && options.recovery.is_none() {
        return invalid("nothing to measure".to_string());
    }
    Ok(())
}

/// A temporary directory under `dir` (default: the current directory),
/// refused on a memory file system.
pub fn bench_tempdir(dir: Option<&Path>) -> Result<tempfile::TempDir, BenchError> {
    let parent = match dir {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir().map_err(|source| BenchError::Dir {
            dir: PathBuf::from("."),
            source,
        })?,
    };
    let fs_error = |source: io::Error| BenchError::Dir {
        dir: parent.clone(),
        source,
    };
    let stat = nix::sys::statfs::statfs(&parent).map_err(|e| fs_error(e.into()))?;
    if stat.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        return Err(BenchError::MemoryFileSystem {
            dir: parent,
            fs_type: "tmpfs".to_string(),
        });
    }
    tempfile::Builder::new()
        .prefix(".powercut-bench-")
        .tempdir_in(&parent)
        .map_err(fs_error)
}

fn write_table_header(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<7} {:<12} {:>7} {:>12} {:>11} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "system",
        "policy",
        "threads",
        "commits/s",
        "fsync/commit",
        "p50 µs",
        "p99 µs",
        "commits",
        "aborts",
        "all syncs"
    )
}

fn write_table_row(out: &mut dyn Write, row: &BenchRow) -> io::Result<()> {
    let optional = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.4}"));
    let system = match row.system {
        System::Engine => "engine",
        System::Sqlite => "sqlite",
        System::Redis => "redis",
        System::Postgres => "postgres",
        System::Line => "line",
    };
    writeln!(
        out,
        "{:<7} {:<12} {:>7} {:>12.1} {:>12} {:>10.1} {:>10.1} {:>10} {:>8} {:>10}",
        system,
        row.policy,
        row.threads,
        row.commits_per_s,
        optional(row.fsyncs_per_commit),
        row.p50_us,
        row.p99_us,
        row.commits,
        row.aborts,
        optional(row.syncs_all_files_per_commit),
    )?;
    out.flush()
}

/// The group-commit table: for each engine row with group-commit rounds,
/// commits per round (per fsync a committing thread led) and where a
/// round's time went.
fn write_group_table(out: &mut dyn Write, rows: &[BenchRow]) -> io::Result<()> {
    let grouped: Vec<&BenchRow> = rows
        .iter()
        .filter(|row| row.commits_per_round.is_some())
        .collect();
    if grouped.is_empty() {
        return Ok(());
    }
    writeln!(out, "group commit rounds (led by committing threads):")?;
    writeln!(
        out,
        "{:<12} {:>7} {:>16} {:>22} {:>16}",
        "policy", "threads", "commits/round", "outside fsync µs/round", "fsync µs/round"
    )?;
    for row in grouped {
        let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        writeln!(
            out,
            "{:<12} {:>7} {:>16} {:>22} {:>16}",
            row.policy,
            row.threads,
            row.commits_per_round
                .map_or("-".to_string(), |v| format!("{v:.2}")),
            value(row.outside_fsync_us_per_round),
            value(row.fsync_us_per_round),
        )?;
    }
    out.flush()
}

/// The checkpoint table (see [`CheckpointRow`]).
fn write_checkpoint_table(out: &mut dyn Write, rows: &[CheckpointRow]) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "p99 commit latency while a checkpoint runs (one every {} MiB of WAL) and without checkpoints:",
        engine::CHECKPOINT_EVERY_BYTES >> 20
    )?;
    writeln!(
        out,
        "{:<12} {:>7} {:>14} {:>14} {:>7} {:>15} {:>12}",
        "policy",
        "threads",
        "p99 µs without",
        "p99 µs during",
        "ratio",
        "commits during",
        "checkpoints"
    )?;
    for row in rows {
        writeln!(
            out,
            "{:<12} {:>7} {:>14.1} {:>14.1} {:>7} {:>15} {:>12}",
            row.policy,
            row.threads,
            row.p99_us_without,
            row.p99_us_during,
            row.ratio().map_or("-".to_string(), |r| format!("{r:.2}")),
            row.commits_during,
            row.checkpoints,
        )?;
    }
    out.flush()
}

/// Writes `rows` with the header [`CSV_COLUMNS`].
pub fn write_csv(path: &Path, rows: &[BenchRow]) -> Result<(), BenchError> {
    let csv_error = |source: csv::Error| BenchError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    if rows.is_empty() {
        writer.write_record(CSV_COLUMNS).map_err(csv_error)?;
    }
    for row in rows {
        writer.serialize(row).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| csv_error(source.into()))
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
