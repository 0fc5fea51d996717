//! A fixed-size, log-linear latency histogram (HDR-style).
//!
//! Recording is one array increment: no allocation per commit, so the
//! recorder does not disturb what it measures. Values are nanoseconds. Below
//! [`SUB_BUCKETS`] ns every value has its own bucket; above, each power of
//! two is split into [`SUB_BUCKETS`] equal buckets, so a reported percentile
//! is within 1/32 (about 3 %) of the true value. Minimum and maximum are kept
//! exactly and bound every percentile.
//!
//! Not checked here: coordinated omission. A stalled commit delays the next
//! one, which is then not recorded at all (closed-loop load, as in the
//! benchmark's committing threads).

use std::time::Duration;

/// Buckets per power of two (and the count of exact buckets below it).
const SUB_BUCKETS: u64 = 32;
const SUB_BUCKET_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Enough buckets for every `u64` nanosecond value.
const BUCKET_COUNT: usize = ((64 - SUB_BUCKET_BITS as usize) + 1) * SUB_BUCKETS as usize;

/// Counts of latencies per bucket.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Box<[u64; BUCKET_COUNT]>,
    count: u64,
    min_ns: u64,
    max_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram (one allocation, here, of about 15 KiB).
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: Box::new([0; BUCKET_COUNT]),
            count: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.record_ns(ns);
    }

    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        let index = bucket_index(ns);
        debug_assert!(bucket_low_ns(index) <= ns && ns <= bucket_high_ns(index));
        self.counts[index] += 1;
        self.count += 1;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at `quantile` (0.0..=1.0) in nanoseconds: the smallest
    /// recorded value `v` such that at least `quantile` of all values are
    /// `<= v`, up to the bucket's width (the bucket's midpoint, clamped to
    /// the exact minimum and maximum). `None` when empty.
    pub fn quantile_ns(&self, quantile: f64) -> Option<u64> {
        assert!((0.0..=1.0).contains(&quantile), "quantile {quantile}");
        if self.count == 0 {
            return None;
        }
        let rank = rank_of(quantile, self.count);
        let mut seen = 0u64;
        for (index, &bucket_count) in self.counts.iter().enumerate() {
            seen += bucket_count;
            if seen >= rank {
                let mid = bucket_low_ns(index) + (bucket_high_ns(index) - bucket_low_ns(index)) / 2;
                return Some(mid.clamp(self.min_ns, self.max_ns));
            }
        }
        unreachable!("rank {rank} beyond count {}", self.count)
    }

    /// [`LatencyHistogram::quantile_ns`] in microseconds.
    pub fn quantile_us(&self, quantile: f64) -> Option<f64> {
        self.quantile_ns(quantile).map(|ns| ns as f64 / 1_000.0)
    }
}

/// The 1-based rank of the value at `quantile` among `count` values.
fn rank_of(quantile: f64, count: u64) -> u64 {
    let rank = (quantile * count as f64).ceil() as u64;
    rank.clamp(1, count)
}

fn bucket_index(ns: u64) -> usize {
    if ns < SUB_BUCKETS {
        return ns as usize;
    }
    let shift = (63 - ns.leading_zeros()) - SUB_BUCKET_BITS;
    let mantissa = (ns >> shift) - SUB_BUCKETS;
    ((shift as u64 + 1) * SUB_BUCKETS + mantissa) as usize
}

fn bucket_low_ns(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index % SUB_BUCKETS + SUB_BUCKETS;
    mantissa << shift
}

fn bucket_high_ns(index: usize) -> u64 {
    let low = bucket_low_ns(index);
    let index = index as u64;
    if index < SUB_BUCKETS {
        return low;
    }
    let width = 1u64 << (index / SUB_BUCKETS - 1);
    low + (width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentile of 1..=1000 µs, recorded in shuffled order, is within
    /// one bucket (1/32) of the exact order statistic.
    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut histogram = LatencyHistogram::new();
        for step in 0..1000u64 {
            let us = (step * 617) % 1000 + 1;
            histogram.record(Duration::from_micros(us));
        }
        assert_eq!(histogram.count(), 1000);
        for (quantile, exact_us) in [(0.5, 500.0), (0.99, 990.0), (0.999, 999.0)] {
            let got_us = histogram.quantile_us(quantile).unwrap();
            let error = (got_us - exact_us).abs() / exact_us;
            assert!(error <= 1.0 / 32.0, "p{quantile}: {got_us} vs {exact_us}");
        }
        assert_eq!(histogram.quantile_us(1.0), Some(1000.0));
        assert_eq!(histogram.quantile_us(0.0), Some(1.0));
    }

    #[test]
    fn small_values_are_exact_and_empty_has_no_percentile() {
        let mut histogram = LatencyHistogram::new();
        assert_eq!(histogram.quantile_ns(0.5), None);
        for ns in [3, 7, 7, 9] {
            histogram.record_ns(ns);
        }
        assert_eq!(histogram.quantile_ns(0.25), Some(3));
        assert_eq!(histogram.quantile_ns(0.5), Some(7));
        assert_eq!(histogram.quantile_ns(0.75), Some(7));
        assert_eq!(histogram.quantile_ns(0.99), Some(9));
    }

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut left = LatencyHistogram::new();
        let mut right = LatencyHistogram::new();
        left.record_ns(100);
        right.record_ns(5_000_000);
        left.merge(&right);
        assert_eq!(left.count(), 2);
        assert_eq!(left.quantile_ns(1.0), Some(5_000_000));
        assert_eq!(left.quantile_ns(0.5), Some(100));
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        let mut ns = 1u64;
        while ns < u64::MAX / 3 {
            for value in [ns - 1, ns, ns + 1, ns * 3 / 2] {
                let index = bucket_index(value);
                assert!(index < BUCKET_COUNT);
                assert!(bucket_low_ns(index) <= value, "{value}");
                assert!(value <= bucket_high_ns(index), "{value}");
            }
            ns *= 2;
        }
        assert!(bucket_index(u64::MAX) < BUCKET_COUNT);
    }
}
