//! Group commit for threads: the `group` policy through [`crate::Engine::commit`].
//!
//! One waiting committer leads a round (write the WAL out, fsync it,
//! acknowledge what it covers); the others wait for the round's end. The
//! trap is alternation: the committers a round covers return to their
//! callers while the ones that arrived during its fsync wait; the next
//! leader then flushes at once, covering only those, and the first set
//! arrives during *that* fsync — two half groups per fsync pair, never one
//! whole group. So a leader (under `group`, no fixed delay) first *gathers*:
//! it waits until as many commits are pending as the last round saw in all
//! (those it covered plus those that arrived during its fsync), or until
//! half the last fsync's time has passed, whichever comes first. A lone
//! committer gathers nothing (one expected), so its latency is unchanged.
//! Only the arrival that completes the gathering wakes the leader: a
//! wake-up per arrival costs the leader a context switch on the cores the
//! late committers need. Followers wait for the round's end on a futex word
//! (the count of rounds ended), first yielding the CPU in a loop while it
//! stays the same, then sleeping (see [`Group::wait_round`]).
//!
//! The gathering wait and the followers' yield loop read real time: this
//! path exists only for threads; the deterministic single-threaded API
//! (`commit_enqueue`, `group_flush_*`) never enters it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest a leader gathers, whatever the last fsync took.
pub const GATHER_US_MAX: u64 = 1000;
/// Waits of one gathering at most (each ends at an arrival or the timeout).
pub const GATHER_WAITS_MAX: usize = 1 << 12;
/// The longest a follower yields the CPU in a loop, watching for the
/// round's end, before it sleeps (see [`Group::wait_round`]).
pub const SPIN_US_MAX: u64 = 1000;
/// Yields of one such wait at most.
pub const SPIN_YIELDS_MAX: usize = 1 << 16;

/// Round bookkeeping, behind the group lock.
#[derive(Default)]
pub struct GroupState {
    /// A leader is running a round.
    pub leading: bool,
    /// ... and is still gathering (arrivals wake it).
    pub gathering: bool,
    /// Commits the next round expects: the last round's whole group.
    expected: u64,
    /// `enqueued` as the last round took its flush target.
    flushed_count: u64,
    /// The last round's fsync time (the engine's clock).
    last_sync_us: u64,
}

/// Group-commit coordination and its counters.
#[derive(Default)]
pub struct Group {
    state: Mutex<GroupState>,
    /// Rounds ended: followers sleep on it (a futex word), so a round's end
    /// wakes them without handing the group lock from one to the next.
    epoch: AtomicU32,
    /// A committer arrived while the leader gathers.
    arrived: Condvar,
    /// Commit records appended under `group` (counted after the append).
    pub enqueued: AtomicU64,
    pub rounds: AtomicU64,
    /// Commits covered by rounds (as counted at their flush targets).
    pub covered: AtomicU64,
    pub gather_us: AtomicU64,
    /// Writing the WAL out to the OS (the leader's work before its fsync).
    pub write_us: AtomicU64,
    pub sync_us: AtomicU64,
}

/// What one round measured, in the engine clock's microseconds.
pub struct RoundTimes {
    pub gather_us: u64,
    pub write_us: u64,
    pub sync_us: u64,
}

impl Group {
    pub fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().expect("group lock poisoned")
    }

    /// A follower arrived (its commit already counted in `enqueued`): wakes
    /// a gathering leader if its gathering is now complete — only then, so
    /// a round costs the leader one wake-up, not one per arrival.
    pub fn arrive(&self, state: &GroupState) {
        if state.gathering && self.pending(state) >= state.expected {
            self.arrived.notify_one();
        }
    }

    fn pending(&self, state: &GroupState) -> u64 {
        self.enqueued.load(Ordering::Acquire) - state.flushed_count
    }

    /// The leader's gathering (see the module header): returns the group
    /// lock once enough commits are pending or the time is up.
    pub fn gather<'a>(
        &'a self,
        mut state: MutexGuard<'a, GroupState>,
    ) -> MutexGuard<'a, GroupState> {
        let budget_us = (state.last_sync_us / 2).min(GATHER_US_MAX);
        if budget_us == 0 || state.expected <= 1 {
            return state;
        }
        let deadline = Instant::now() + Duration::from_micros(budget_us);
        state.gathering = true;
        for _ in 0..GATHER_WAITS_MAX {
            let pending = self.pending(&state);
            let now = Instant::now();
            if pending >= state.expected || now >= deadline {
                break;
            }
            state = self
                .arrived
                .wait_timeout(state, deadline - now)
                .expect("group lock poisoned")
                .0;
        }
        state.gathering = false;
        state
    }

    /// A follower's wait for the end of the current round: takes the epoch
    /// under the group lock (so a round ending after it is seen), then,
    /// without the lock, yields the CPU in a loop watching the epoch for up
    /// to twice the last fsync's time, and only then sleeps on it. As
    /// MySQL 8.0's committers spin on the redo flush while flushes are
    /// short: a round's end then needs no wake-up before its followers go
    /// on (on this 2-core VM a wake-up costs the leader ~4 µs and its
    /// follower a scheduling delay), and the yields leave the cores to any
    /// thread with work, the leader coming back from its fsync first.
    pub fn wait_round(&self, state: MutexGuard<'_, GroupState>) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let spin_us = (state.last_sync_us * 2).min(SPIN_US_MAX);
        drop(state);
        if spin_us > 0 {
            let deadline = Instant::now() + Duration::from_micros(spin_us);
            for _ in 0..SPIN_YIELDS_MAX {
                if self.epoch.load(Ordering::Acquire) != epoch || Instant::now() >= deadline {
                    break;
                }
                std::thread::yield_now();
            }
        }
        futex_wait(&self.epoch, epoch);
    }

    /// Ends a round that took its flush target when `target_count` commits
    /// were enqueued: sets the next round's expectation, and wakes everyone.
    pub fn end_round(&self, target_count: u64, times: &RoundTimes) {
        let mut state = self.lock();
        let covered = target_count.saturating_sub(state.flushed_count);
        let arrived = self
            .enqueued
            .load(Ordering::Acquire)
            .saturating_sub(target_count);
        state.expected = (covered + arrived).max(1);
        state.flushed_count = state.flushed_count.max(target_count);
        state.last_sync_us = times.sync_us;
        state.leading = false;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        drop(state);
        futex_wake_all(&self.epoch);
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.covered.fetch_add(covered, Ordering::Relaxed);
        self.gather_us.fetch_add(times.gather_us, Ordering::Relaxed);
        self.write_us.fetch_add(times.write_us, Ordering::Relaxed);
        self.sync_us.fetch_add(times.sync_us, Ordering::Relaxed);
    }
}

/// Sleeps while `word` holds `expected` (returns at once if it does not, on a
/// wake-up, or spuriously: callers re-check their condition).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: the futex word is a live, aligned u32 for the whole call; a
    // null timeout waits without a time limit.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes every thread sleeping on `word`.
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: as for `futex_wait`; a wake touches no memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}
