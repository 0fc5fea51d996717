//! Recovery speed and memory bound.
//!
//! 1. Build a WAL of a known size: one thread commits under `none` with
//!    automatic checkpoints off and one large segment, over a page file
//!    [`PAGE_FILE_TO_POOL`] times larger than the buffer pool.
//! 2. Drop the engine without `close` — a crash as far as the engine knows.
//!    The OS page cache still holds the WAL (nothing is lost and nothing is
//!    read from the device): this measures the engine's replay, not the disk.
//! 3. Time [`Engine::open`] and report `wal_bytes_replayed / seconds`.
//!
//! Memory: the peak resident set (`VmHWM`, reset through
//! `/proc/self/clear_refs` where the kernel allows) is read after the build
//! and after recovery, and compared with the resident set before: growth
//! should stay within the pool plus one WAL segment (redo reads the log a
//! segment at a time; analysis reads 1 MiB windows) plus [`RSS_SLACK_BYTES`], whatever the size of
//! the WAL or of the page file. The reading is
//! process-wide, so anything else running in the process (parallel tests)
//! shows up in it too.

use super::engine::{engine_txn, open_real};
use super::runner::TxnOutcome;
use super::{BenchError, RunSpec, TxnInputs, VALUE_BYTES};
use engine::{Config, Engine, FsyncPolicy, RecoveryTimings};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The page file is this many times the buffer pool.
pub const PAGE_FILE_TO_POOL: u32 = 16;
/// Resident-set growth allowed beyond the buffer pool (code, thread stacks,
/// allocator slack, the engine's small tables).
pub const RSS_SLACK_BYTES: u64 = 32 << 20;
/// The target the engine's recovery should reach.
pub const REPLAY_TARGET_MB_PER_S: f64 = 300.0;

/// What the recovery measurement does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// WAL bytes written before the crash.
    pub wal_bytes: u64,
    /// Buffer pool pages (the page file is [`PAGE_FILE_TO_POOL`] times more).
    pub pool_pages: u32,
    /// WAL segment size (recovery's memory holds one segment at a time).
    pub segment_size: u64,
}

impl Default for RecoveryOptions {
    fn default() -> RecoveryOptions {
        RecoveryOptions {
            wal_bytes: 256 << 20,
            pool_pages: 256,
            // PostgreSQL's segment size. Recovery reads the log a segment
            // at a time, so its memory is the pool plus one segment.
            segment_size: 16 << 20,
        }
    }
}

/// What it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryMeasurement {
    pub build_commits: u64,
    pub wal_bytes_written: u64,
    pub wal_bytes_replayed: u64,
    pub records_scanned: u64,
    pub records_redone: u64,
    /// All of `Engine::open`, including the checkpoint that ends recovery.
    pub open_seconds: f64,
    /// `wal_bytes_replayed / open_seconds`, in MB (10^6 bytes) per second.
    pub replay_mb_per_s: f64,
    /// Where the engine says the time went.
    pub timings: RecoveryTimings,
    pub pool_bytes: u64,
    pub page_file_bytes: u64,
    pub segment_bytes: u64,
    pub rss_before_bytes: u64,
    /// Peak resident set during the build, and during recovery.
    pub rss_peak_build_bytes: u64,
    pub rss_peak_recovery_bytes: u64,
    /// False if the kernel refused to reset the peak: then both peaks are
    /// the process's peak so far.
    pub rss_peak_was_reset: bool,
}

impl RecoveryMeasurement {
    /// The larger peak's growth over the resident set before the build.
    pub fn rss_growth_bytes(&self) -> u64 {
        let peak = self.rss_peak_build_bytes.max(self.rss_peak_recovery_bytes);
        peak.saturating_sub(self.rss_before_bytes)
    }

    /// The bound: the pool, one WAL segment and [`RSS_SLACK_BYTES`].
    pub fn memory_bound_bytes(&self) -> u64 {
        self.pool_bytes + self.segment_bytes + RSS_SLACK_BYTES
    }

    /// Growth within [`RecoveryMeasurement::memory_bound_bytes`].
    pub fn memory_bounded(&self) -> bool {
        self.rss_growth_bytes() <= self.memory_bound_bytes()
    }
}

/// The configuration of the recovery measurement.
pub fn recovery_config(options: &RecoveryOptions) -> Config {
    Config {
        policy: FsyncPolicy::None,
        page_count: options.pool_pages * PAGE_FILE_TO_POOL,
        pool_pages: options.pool_pages,
        segment_size: options.segment_size,
        checkpoint_wal_bytes: 0,
        ..Config::default()
    }
}

/// Flushes the crashed directory's files to disk before recovery is timed,
/// as a reboot finds them: otherwise recovery's sync of the log tail would
/// pay for writing back the whole WAL the benchmark left dirty in the page
/// cache, which no real crash leaves behind.
fn write_back(dir: &Path) -> Result<(), BenchError> {
    let failed = |source| BenchError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|file| file.sync_all())
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// Runs the measurement in a fresh directory under `root`, printing it.
pub fn run(
    root: &Path,
    options: &RecoveryOptions,
    out: &mut dyn Write,
) -> Result<RecoveryMeasurement, BenchError> {
    assert!(options.pool_pages > 0 && options.wal_bytes > 0);
    let config = recovery_config(options);
    let dir = root.join("engine-recovery");
    let rss_before_bytes = read_status_kib("VmRSS")? * 1024;
    let rss_peak_was_reset = reset_peak_rss();
    let (build_commits, wal_bytes_written) = build_wal(&dir, &config, options.wal_bytes)?;
    let rss_peak_build_bytes = read_status_kib("VmHWM")? * 1024;
    write_back(&dir)?;
    reset_peak_rss();
    let started = Instant::now();
    let engine = open_real(&dir, config.clone())?;
    let open_seconds = started.elapsed().as_secs_f64();
    let rss_peak_recovery_bytes = read_status_kib("VmHWM")? * 1024;
    let report = engine.recovery_report().clone();
    let timings = engine.recovery_timings();
    engine
        .close()
        .map_err(super::engine::engine_error("close"))?;
    let measurement = RecoveryMeasurement {
        build_commits,
        wal_bytes_written,
        wal_bytes_replayed: report.wal_bytes_replayed,
        records_scanned: report.records_scanned,
        records_redone: report.records_redone,
        open_seconds,
        replay_mb_per_s: report.wal_bytes_replayed as f64 / 1e6 / open_seconds.max(1e-9),
        timings,
        pool_bytes: u64::from(config.pool_pages) * u64::from(config.page_size),
        page_file_bytes: u64::from(config.page_count) * u64::from(config.page_size),
        segment_bytes: config.segment_size,
        rss_before_bytes,
        rss_peak_build_bytes,
        rss_peak_recovery_bytes,
        rss_peak_was_reset,
    };
    write_measurement(out, &measurement)?;
    Ok(measurement)
}

/// Commits until the engine has written `wal_bytes`, then drops it without
/// closing. Returns the commits and the WAL bytes written.
fn build_wal(dir: &Path, config: &Config, wal_bytes: u64) -> Result<(u64, u64), BenchError> {
    // Every transaction writes more than its value to the WAL: a bound.
    let transactions_max = wal_bytes / VALUE_BYTES as u64 + 1;
    let engine = open_real(dir, config.clone())?;
    let spec = RunSpec {
        threads: 1,
        duration: Duration::MAX,
        seed: 0x5eed,
        key_space: u64::from(config.page_count) * super::engine::KEYS_PER_PAGE,
    };
    let mut inputs = TxnInputs::for_thread(spec, 0);
    let mut commits = 0u64;
    for step in 0..transactions_max {
        if step.is_multiple_of(1024) && engine.stats().wal_bytes_written >= wal_bytes {
            break;
        }
        if engine_txn(&engine, &mut inputs)? == TxnOutcome::Committed {
            commits += 1;
        }
    }
    let written = engine.stats().wal_bytes_written;
    crash(engine);
    Ok((commits, written))
}

/// Ends the engine without `close`: no final checkpoint, no clean shutdown
/// (the engine is dropped when this returns).
fn crash(_engine: Engine) {}

fn write_measurement(out: &mut dyn Write, m: &RecoveryMeasurement) -> std::io::Result<()> {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    writeln!(out, "recovery:")?;
    writeln!(
        out,
        "  built {:.1} MiB of WAL in {} commits under `none`, then dropped the engine without close",
        mib(m.wal_bytes_written),
        m.build_commits
    )?;
    writeln!(
        out,
        "  open replayed {:.1} MiB ({} records scanned, {} redone) in {:.3} s: {:.0} MB/s (target >= {REPLAY_TARGET_MB_PER_S})",
        mib(m.wal_bytes_replayed),
        m.records_scanned,
        m.records_redone,
        m.open_seconds,
        m.replay_mb_per_s
    )?;
    let ms = |us: u64| us as f64 / 1000.0;
    writeln!(
        out,
        "  phases (engine's timings): analysis {:.0} ms, tail cut {:.0} ms, redo {:.0} ms, undo {:.0} ms, final checkpoint {:.0} ms",
        ms(m.timings.analysis_us),
        ms(m.timings.truncate_us),
        ms(m.timings.redo_us),
        ms(m.timings.undo_us),
        ms(m.timings.checkpoint_us)
    )?;
    writeln!(
        out,
        "  memory: pool {:.1} MiB, page file {:.1} MiB, WAL segment {:.1} MiB; RSS before {:.1} MiB, peak during build {:.1} MiB, during recovery {:.1} MiB{}",
        mib(m.pool_bytes),
        mib(m.page_file_bytes),
        mib(m.segment_bytes),
        mib(m.rss_before_bytes),
        mib(m.rss_peak_build_bytes),
        mib(m.rss_peak_recovery_bytes),
        if m.rss_peak_was_reset {
            ""
        } else {
            " (peak not resettable: process-wide peak)"
        }
    )?;
    writeln!(
        out,
        "  RSS growth {:.1} MiB: {} {:.0} MiB = the pool + one WAL segment + {:.0} MiB",
        mib(m.rss_growth_bytes()),
        if m.memory_bounded() {
            "within"
        } else {
            "BEYOND"
        },
        mib(m.memory_bound_bytes()),
        mib(RSS_SLACK_BYTES)
    )
}

/// A `kB` field of `/proc/self/status`.
pub fn read_status_kib(field: &'static str) -> Result<u64, BenchError> {
    let proc_error = |source| BenchError::Proc {
        what: "/proc/self/status",
        source,
    };
    let status = std::fs::read_to_string("/proc/self/status").map_err(proc_error)?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
        .ok_or_else(|| {
            proc_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no `{field}: N kB` line"),
            ))
        })
}

/// Resets the peak resident set to the current one (Linux `clear_refs` 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
