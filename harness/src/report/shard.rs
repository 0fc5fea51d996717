//! `--shard K/N`: which part of a run a report covers.
//!
//! Shards count from 1, as every CI tool that writes a shard as `K/N` does
//! (nextest `--partition count:1/2`, Playwright and Jest `--shard=1/3`):
//! shard `K/N` runs the global trials `t` with `t % N == K - 1`, so shards
//! `1/N` to `N/N` together run each trial of the unsharded run exactly once.

use std::fmt;

/// Shard counts accepted at most (a run is split over this many machines at
/// most; it bounds the loops over all shards of a merge).
pub const SHARDS_MAX: u64 = 1 << 20;

/// Shard `number` of `count`, `1 <= number <= count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    number: u64,
    count: u64,
}

impl Shard {
    /// The whole run: what an unsharded report covers.
    pub const WHOLE: Shard = Shard {
        number: 1,
        count: 1,
    };

    /// Shard `number` of `count`; `None` unless `1 <= number <= count <= SHARDS_MAX`.
    pub fn new(number: u64, count: u64) -> Option<Shard> {
        (number >= 1 && number <= count && count <= SHARDS_MAX).then_some(Shard { number, count })
    }

    /// Parses `K/N` with `1 <= K <= N`; the error is one line that says
    /// what was expected (and, for `0/N`, that shards count from 1).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let parsed = text
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        let expected = "expected K/N with 1 <= K <= N, e.g. 1/4";
        match parsed {
            Some((0, n)) if n > 0 => Err(format!(
                "invalid --shard `{text}`: shards count from 1 (the first of {n} is 1/{n})"
            )),
            Some((k, n)) if n > SHARDS_MAX => Err(format!(
                "invalid --shard `{text}`: at most {SHARDS_MAX} shards (K/N = {k}/{n})"
            )),
            Some((k, n)) => {
                Shard::new(k, n).ok_or_else(|| format!("invalid --shard `{text}`: {expected}"))
            }
            None => Err(format!("invalid --shard `{text}`: {expected}")),
        }
    }

    /// K, from 1.
    pub fn number(self) -> u64 {
        self.number
    }

    /// N.
    pub fn count(self) -> u64 {
        self.count
    }

    /// The first global trial this shard runs; the next ones follow every
    /// [`Shard::count`] trials.
    pub fn first_trial(self) -> u64 {
        self.number - 1
    }

    /// Whether this shard runs global trial `trial`.
    pub fn runs(self, trial: u64) -> bool {
        trial % self.count == self.first_trial()
    }

    /// Every shard of a run split `count` ways, `1/count` first.
    pub fn all(count: u64) -> impl Iterator<Item = Shard> {
        assert!((1..=SHARDS_MAX).contains(&count), "shard count {count}");
        (1..=count).map(move |number| Shard { number, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shards_parse_from_one_and_bad_ones_are_refused() {
        assert_eq!(Shard::parse("1/4"), Ok(Shard::new(1, 4).unwrap()));
        assert_eq!(Shard::parse("4/4").unwrap().to_string(), "4/4");
        assert_eq!(Shard::parse("1/1"), Ok(Shard::WHOLE));
        for bad in ["3/2", "5/4", "1/0", "0/0", "x/2", "1", "-1/2", "1/2/3", ""] {
            let error = Shard::parse(bad).unwrap_err();
            assert!(error.starts_with("invalid --shard"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let error = Shard::parse("0/2").unwrap_err();
        assert!(error.contains("shards count from 1"), "{error}");
        let error = Shard::parse(&format!("1/{}", SHARDS_MAX + 1)).unwrap_err();
        assert!(error.contains("at most"), "{error}");
    }

    proptest! {
        /// Shards `1/N` to `N/N` partition the trials: each trial is run by
        /// exactly one shard, and the hand-out order (first trial, then
        /// steps of N) reaches exactly the trials the shard runs.
        #[test]
        fn shards_partition_the_trials(count in 1u64..40, trials in 0u64..200) {
            for trial in 0..trials {
                let owners: Vec<Shard> =
                    Shard::all(count).filter(|shard| shard.runs(trial)).collect();
                prop_assert_eq!(owners.len(), 1);
            }
            for shard in Shard::all(count) {
                let handed_out: Vec<u64> =
                    (shard.first_trial()..trials).step_by(count as usize).collect();
                let runs: Vec<u64> = (0..trials).filter(|&t| shard.runs(t)).collect();
                prop_assert_eq!(handed_out, runs);
                prop_assert_eq!(Shard::parse(&shard.to_string()), Ok(shard));
            }
        }
    }
}
