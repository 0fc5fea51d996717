//! Time, injected: the engine never reads the system clock directly.
//!
//! Everything time-driven (the `interval:MS` flusher, the group-commit delay)
//! asks a [`Clock`]. Benchmarks use [`SystemClock`]; the harness uses
//! [`VirtualClock`], whose time moves only when told to, so a run replays
//! exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A source of monotonic time in microseconds.
pub trait Clock: Send + Sync {
    /// Microseconds since an arbitrary, fixed origin. Never decreases.
    fn now_us(&self) -> u64;
    /// Waits `us` microseconds (a virtual clock advances instead).
    fn sleep_us(&self, us: u64);
}

/// Real time.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).expect("clock overflow")
    }

    fn sleep_us(&self, us: u64) {
        std::thread::sleep(std::time::Duration::from_micros(us));
    }
}

/// Time that moves only when advanced (or slept on): deterministic.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now_us: AtomicU64,
}

impl VirtualClock {
    pub fn new(start_us: u64) -> VirtualClock {
        VirtualClock {
            now_us: AtomicU64::new(start_us),
        }
    }

    /// Moves time forward by `us` microseconds.
    pub fn advance_us(&self, us: u64) {
        self.now_us.fetch_add(us, Ordering::AcqRel);
    }
}

impl Clock for VirtualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::Acquire)
    }

    fn sleep_us(&self, us: u64) {
        self.advance_us(us);
    }
}
