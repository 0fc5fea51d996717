//! Real time and the harness's virtual clock, for a program that counts
//! real seconds (Redis's `everysec`, PostgreSQL's `wal_writer_delay`).
//!
//! The oracle judges a `window:MS` promise on the virtual clock, so for such
//! a program virtual time must *be* real time since the open: if the virtual
//! clock ran ahead (the workload driver advances it by its step time), a
//! commit acknowledged 300 real ms before the crash could look 1,000 ms old
//! and its loss be blamed on the program. [`RealTimeOrigin::align`] moves
//! the virtual clock up to real time, and waits out real time when the
//! virtual clock is ahead, so after it the two agree.

use engine::Clock;
use std::time::{Duration, Instant};

/// How far the virtual clock may run ahead of real time before `align`
/// waits: one wait covers at most this much (a driver step).
const AHEAD_WAIT_MAX: Duration = Duration::from_secs(10);

/// The moment a program was opened, on both clocks.
#[derive(Clone, Copy, Debug)]
pub struct RealTimeOrigin {
    real: Instant,
    virtual_us: u64,
}

impl RealTimeOrigin {
    /// Now, on `clock` and in real time.
    pub fn now(clock: &dyn Clock) -> RealTimeOrigin {
        RealTimeOrigin {
            real: Instant::now(),
            virtual_us: clock.now_us(),
        }
    }

    /// Brings `clock` and real time since the origin to the same instant:
    /// the virtual clock is moved up if behind; if ahead, this thread
    /// sleeps in real time until real time catches up.
    pub fn align(&self, clock: &dyn Clock) {
        let real_us = |origin: &RealTimeOrigin| {
            origin.virtual_us + u64::try_from(origin.real.elapsed().as_micros()).unwrap_or(u64::MAX)
        };
        let now_us = clock.now_us();
        let real = real_us(self);
        if real > now_us {
            clock.sleep_us(real - now_us);
        } else if now_us > real {
            let ahead = Duration::from_micros(now_us - real);
            assert!(
                ahead <= AHEAD_WAIT_MAX,
                "virtual clock {ahead:?} ahead of real time: a driver step longer than {AHEAD_WAIT_MAX:?}"
            );
            std::thread::sleep(ahead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::VirtualClock;

    /// A virtual clock that ran ahead is waited for in real time; one behind
    /// is moved up: afterwards the virtual time since the origin is the real
    /// time since it (within scheduling noise).
    #[test]
    fn align_makes_virtual_time_real_time_both_ways() {
        let clock = VirtualClock::new(5_000_000);
        let origin = RealTimeOrigin::now(&clock);
        clock.sleep_us(30_000); // the driver stepped 30 ms ahead
        origin.align(&clock);
        let real_us = origin.real.elapsed().as_micros() as u64;
        assert!(
            real_us >= 30_000,
            "waited out the virtual lead: {real_us} µs"
        );
        std::thread::sleep(Duration::from_millis(20));
        origin.align(&clock);
        let virtual_since = clock.now_us() - 5_000_000;
        let real_since = origin.real.elapsed().as_micros() as u64;
        assert!(
            virtual_since >= 50_000,
            "moved up to real time: {virtual_since} µs"
        );
        assert!(
            real_since + 1_000 >= virtual_since,
            "never ahead after align"
        );
    }
}
