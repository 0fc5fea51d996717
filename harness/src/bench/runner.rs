//! The one measurement loop shared by every system under test.
//!
//! `threads` threads each build their own committer (a closure that runs one
//! whole transaction: begin, one write, commit, and returns whether it
//! committed), wait at a barrier, then call it until the deadline. Each
//! committed transaction's latency, begin to acknowledgement, goes into the
//! thread's own [`LatencyHistogram`]; aborted ones are counted apart and not
//! timed. The first error stops every thread.

use super::BenchError;
use crate::report::latency::LatencyHistogram;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Transactions one thread runs at most in one measurement (a named bound on
/// the loop; at ~1 µs per transaction it is hours away).
pub const TRANSACTIONS_PER_THREAD_MAX: u64 = 1 << 32;

/// What one transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Committed and acknowledged.
    Committed,
    /// Committed and acknowledged while something the measurement singles
    /// out was going on (the engine: a checkpoint under way at the
    /// transaction's begin or its acknowledgement); timed twice, in the
    /// whole histogram and in the marked one.
    CommittedMarked,
    /// Rolled back (write conflict, full page, busy database): counted, not
    /// timed, and not a commit.
    Aborted,
}

/// Totals of one measurement, over all threads.
#[derive(Clone, Debug)]
pub struct RunTotals {
    pub commits: u64,
    pub aborts: u64,
    /// The longest thread's time from the barrier to its last transaction.
    pub elapsed: Duration,
    pub latency: LatencyHistogram,
    /// The latency of the [`TxnOutcome::CommittedMarked`] commits alone.
    pub marked: LatencyHistogram,
}

impl RunTotals {
    /// Nothing measured yet.
    pub fn empty() -> RunTotals {
        RunTotals {
            commits: 0,
            aborts: 0,
            elapsed: Duration::ZERO,
            latency: LatencyHistogram::new(),
            marked: LatencyHistogram::new(),
        }
    }

    /// Adds a later, separate measurement (another round): counts and
    /// measured time add up.
    pub fn add_round(&mut self, round: &RunTotals) {
        self.commits += round.commits;
        self.aborts += round.aborts;
        self.elapsed += round.elapsed;
        self.latency.merge(&round.latency);
        self.marked.merge(&round.marked);
    }

    pub fn commits_per_s(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        self.commits as f64 / seconds
    }
}

/// Runs `threads` committers for `duration`. `make_committer(thread_index)`
/// runs on the thread that will use the committer (a SQLite connection need
/// not be `Send`).
pub fn run_committers<Make, Commit>(
    threads: usize,
    duration: Duration,
    make_committer: Make,
) -> Result<RunTotals, BenchError>
where
    Make: Fn(usize) -> Result<Commit, BenchError> + Sync,
    Commit: FnMut() -> Result<TxnOutcome, BenchError>,
{
    let span = Span {
        duration,
        cap: duration,
        enough: &|| true,
    };
    run_committers_for(threads, &span, make_committer)
}

/// How long a measurement runs: at least `duration`, then on until
/// `enough()` holds (a run must contain what it measures, e.g. a
/// checkpoint), `cap` at most.
pub struct Span<'a> {
    pub duration: Duration,
    pub cap: Duration,
    pub enough: &'a (dyn Fn() -> bool + Sync),
}

/// [`run_committers`] for a [`Span`].
pub fn run_committers_for<Make, Commit>(
    threads: usize,
    span: &Span<'_>,
    make_committer: Make,
) -> Result<RunTotals, BenchError>
where
    Make: Fn(usize) -> Result<Commit, BenchError> + Sync,
    Commit: FnMut() -> Result<TxnOutcome, BenchError>,
{
    assert!(threads > 0, "at least one committing thread");
    assert!(
        span.cap >= span.duration,
        "a span's cap is at least its duration"
    );
    let barrier = Barrier::new(threads);
    let stop = AtomicBool::new(false);
    let results: Vec<Result<RunTotals, BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let (barrier, stop, make) = (&barrier, &stop, &make_committer);
                scope.spawn(move || {
                    let committer = make(index);
                    barrier.wait();
                    let result = committer.and_then(|c| commit_until(c, span, stop));
                    if result.is_err() {
                        stop.store(true, Ordering::Release);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(Err(BenchError::ThreadPanicked)))
            .collect()
    });
    merge_totals(results)
}

fn commit_until<Commit>(
    mut commit: Commit,
    span: &Span<'_>,
    stop: &AtomicBool,
) -> Result<RunTotals, BenchError>
where
    Commit: FnMut() -> Result<TxnOutcome, BenchError>,
{
    let mut totals = RunTotals::empty();
    let start = Instant::now();
    let mut now = start;
    for _ in 0..TRANSACTIONS_PER_THREAD_MAX {
        let elapsed = now.duration_since(start);
        let over = elapsed >= span.cap || (elapsed >= span.duration && (span.enough)());
        if over || stop.load(Ordering::Acquire) {
            break;
        }
        let outcome = commit()?;
        let done = Instant::now();
        match outcome {
            TxnOutcome::Committed => {
                totals.commits += 1;
                totals.latency.record(done.duration_since(now));
            }
            TxnOutcome::CommittedMarked => {
                totals.commits += 1;
                totals.latency.record(done.duration_since(now));
                totals.marked.record(done.duration_since(now));
            }
            TxnOutcome::Aborted => totals.aborts += 1,
        }
        now = done;
    }
    totals.elapsed = now.duration_since(start);
    Ok(totals)
}

fn merge_totals(results: Vec<Result<RunTotals, BenchError>>) -> Result<RunTotals, BenchError> {
    let mut merged = RunTotals::empty();
    for result in results {
        let totals = result?;
        merged.commits += totals.commits;
        merged.aborts += totals.aborts;
        merged.elapsed = merged.elapsed.max(totals.elapsed);
        merged.latency.merge(&totals.latency);
        merged.marked.merge(&totals.marked);
    }
    assert_eq!(merged.latency.count(), merged.commits);
    assert!(merged.marked.count() <= merged.commits);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_commits_and_aborts_from_every_thread() {
        let totals = run_committers(2, Duration::from_millis(20), |_| {
            let mut step = 0u64;
            Ok(move || {
                step += 1;
                std::thread::sleep(Duration::from_micros(50));
                Ok(if step.is_multiple_of(4) {
                    TxnOutcome::Aborted
                } else {
                    TxnOutcome::Committed
                })
            })
        })
        .unwrap();
        assert!(totals.commits > 0 && totals.aborts > 0);
        assert_eq!(totals.latency.count(), totals.commits);
        assert!(totals.elapsed >= Duration::from_millis(20));
        assert!(totals.latency.quantile_us(0.5).unwrap() >= 50.0);
    }

    #[test]
    fn a_span_runs_on_until_enough_and_no_longer_than_its_cap() {
        let calls = std::sync::atomic::AtomicU64::new(0);
        let enough_after = 40;
        let enough = || calls.load(Ordering::Relaxed) >= enough_after;
        let span = Span {
            duration: Duration::ZERO,
            cap: Duration::from_secs(60),
            enough: &enough,
        };
        let totals = run_committers_for(1, &span, |_| {
            Ok(|| {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok(TxnOutcome::Committed)
            })
        })
        .unwrap();
        assert_eq!(totals.commits, enough_after);
        let never = || false;
        let capped = Span {
            duration: Duration::ZERO,
            cap: Duration::from_millis(20),
            enough: &never,
        };
        let totals = run_committers_for(2, &capped, |_| Ok(|| Ok(TxnOutcome::Committed))).unwrap();
        assert!(totals.elapsed >= Duration::from_millis(20));
        assert!(totals.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let result = run_committers(2, Duration::from_secs(60), |index| {
            Ok(move || {
                if index == 1 {
                    Err(BenchError::InvalidOptions("planted".into()))
                } else {
                    Ok(TxnOutcome::Committed)
                }
            })
        });
        assert!(matches!(result, Err(BenchError::InvalidOptions(_))));
    }
}
