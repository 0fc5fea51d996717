//! Engine configuration: fsync policy, sizes, and the planted bugs.

use std::fmt;
use std::str::FromStr;

/// When the WAL is fsynced, and so when a commit is acknowledged (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// Write and fsync the WAL before acknowledging each commit.
    Always,
    /// Group commit: one fsync covers every waiting commit; the leader first
    /// waits `delay_us` to gather more. A commit is acknowledged only after an
    /// fsync that covers its commit record.
    Group { delay_us: u64 },
    /// Write to the OS on commit; fsync in the background every `ms`.
    Interval { ms: u64 },
    /// Write to the OS on commit; fsync the WAL only at checkpoints.
    None,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Group { delay_us: 0 } => f.write_str("group"),
            FsyncPolicy::Group { delay_us } => write!(f, "group:{delay_us}"),
            FsyncPolicy::Interval { ms } => write!(f, "interval:{ms}"),
            FsyncPolicy::None => f.write_str("none"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<FsyncPolicy, String> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (text, None),
        };
        let number = |what: &str| -> Result<u64, String> {
            let arg =
                arg.ok_or_else(|| format!("policy `{text}` needs {what}, e.g. `{name}:10`"))?;
            arg.parse::<u64>()
                .map_err(|_| format!("policy `{text}`: `{arg}` is not a whole number of {what}"))
        };
        match name {
            "always" if arg.is_none() => Ok(FsyncPolicy::Always),
            "none" if arg.is_none() => Ok(FsyncPolicy::None),
            "group" if arg.is_none() => Ok(FsyncPolicy::Group { delay_us: 0 }),
            "group" => Ok(FsyncPolicy::Group {
                delay_us: number("microseconds")?,
            }),
            "interval" => {
                let ms = number("milliseconds")?;
                if ms == 0 {
                    return Err(format!(
                        "policy `{text}`: the interval must be at least 1 ms"
                    ));
                }
                Ok(FsyncPolicy::Interval { ms })
            }
            _ => Err(format!(
                "unknown fsync policy `{text}` (expected always, group[:DELAY_US], interval:MS or none)"
            )),
        }
    }
}

/// A planted bug (SPEC §6): a real mistake, off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    AckBeforeFsync,
    SkipFsync,
    GroupAckBeyondFlush,
    NoDirFsync,
    NoCrcCheck,
    ReplayPastTorn,
    NoTailTruncate,
    EarlyCheckpoint,
    EarlyWalRemoval,
    NoFullPageImages,
    RedoNoPageLsnCheck,
    NoUndo,
    IgnoreFsyncError,
    /// Redo starts at the checkpoint's begin record, not at the oldest
    /// recLSN of its dirty page table.
    RedoFromCheckpoint,
    /// Recovery does not check a record's LSN field against its position,
    /// so a recycled segment's old records pass for new ones.
    StaleRecycledRecord,
    /// Segments are released below the checkpoint's begin record, though
    /// redo starts at an older recLSN.
    ReleaseIgnoresRecLsn,
    /// A page's recLSN is the update that dirtied it, even when its
    /// full-page image of the interval came earlier.
    RecLsnSkipsImage,
    /// The group-commit leader of [`crate::Engine::commit`] acknowledges
    /// every commit appended before its fsync *returned*, not only those
    /// its flush (taken before the fsync *began*) covered. Only threads
    /// show it: the single-threaded ticket API never runs that path.
    GroupAckAtSyncReturn,
}

impl Bug {
    /// Every planted bug, in SPEC order.
    pub const ALL: [Bug; 18] = [
        Bug::AckBeforeFsync,
        Bug::SkipFsync,
        Bug::GroupAckBeyondFlush,
        Bug::NoDirFsync,
        Bug::NoCrcCheck,
        Bug::ReplayPastTorn,
        Bug::NoTailTruncate,
        Bug::EarlyCheckpoint,
        Bug::EarlyWalRemoval,
        Bug::NoFullPageImages,
        Bug::RedoNoPageLsnCheck,
        Bug::NoUndo,
        Bug::IgnoreFsyncError,
        Bug::RedoFromCheckpoint,
        Bug::StaleRecycledRecord,
        Bug::ReleaseIgnoresRecLsn,
        Bug::RecLsnSkipsImage,
        Bug::GroupAckAtSyncReturn,
    ];

    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::SkipFsync => "skip-fsync",
            Bug::GroupAckBeyondFlush => "group-ack-beyond-flush",
            Bug::NoDirFsync => "no-dir-fsync",
            Bug::NoCrcCheck => "no-crc-check",
            Bug::ReplayPastTorn => "replay-past-torn",
            Bug::NoTailTruncate => "no-tail-truncate",
            Bug::EarlyCheckpoint => "early-checkpoint",
            Bug::EarlyWalRemoval => "early-wal-removal",
            Bug::NoFullPageImages => "no-full-page-images",
            Bug::RedoNoPageLsnCheck => "redo-no-pagelsn-check",
            Bug::NoUndo => "no-undo",
            Bug::IgnoreFsyncError => "ignore-fsync-error",
            Bug::RedoFromCheckpoint => "redo-from-checkpoint",
            Bug::StaleRecycledRecord => "stale-recycled-record",
            Bug::ReleaseIgnoresRecLsn => "release-ignores-reclsn",
            Bug::RecLsnSkipsImage => "reclsn-skips-image",
            Bug::GroupAckAtSyncReturn => "group-ack-at-sync-return",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(text: &str) -> Result<Bug, String> {
        Bug::ALL
            .into_iter()
            .find(|bug| bug.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
                format!(
                    "unknown planted bug `{text}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// A set of planted bugs switched on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BugSet {
    bits: u32,
}

impl BugSet {
    pub const NONE: BugSet = BugSet { bits: 0 };

    pub fn with(mut self, bug: Bug) -> BugSet {
        self.bits |= bug.bit();
        self
    }

    pub fn has(self, bug: Bug) -> bool {
        self.bits & bug.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |bug| self.has(*bug))
    }

    /// The raw bit set, for compact encodings (case ids).
    pub fn bits(self) -> u32 {
        self.bits
    }

    /// The inverse of [`BugSet::bits`]; `None` if an unknown bit is set.
    pub fn from_bits(bits: impl Into<u32>) -> Option<BugSet> {
        let bits: u32 = bits.into();
        let known = Bug::ALL.iter().fold(0u32, |acc, bug| acc | bug.bit());
        (bits & !known == 0).then_some(BugSet { bits })
    }
}

impl FromIterator<Bug> for BugSet {
    fn from_iter<I: IntoIterator<Item = Bug>>(bugs: I) -> BugSet {
        bugs.into_iter().fold(BugSet::NONE, BugSet::with)
    }
}

/// Sizes and behaviour of one engine instance. The on-disk geometry
/// (`page_size`, `page_count`, `segment_size`) is fixed when the directory is
/// created and recorded in the control file; opening with a different one is
/// an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub policy: FsyncPolicy,
    /// Bytes per data page (a multiple of 512, at least 1024).
    pub page_size: u32,
    /// Number of pages in the page file (keys hash to pages).
    pub page_count: u32,
    /// Buffer pool capacity in pages: the bound on cached data.
    pub pool_pages: u32,
    /// Bytes per WAL segment file.
    pub segment_size: u64,
    /// Take a checkpoint automatically once this many WAL bytes were written
    /// since the last one (0: only when asked).
    pub checkpoint_wal_bytes: u64,
    /// Largest accepted key in bytes.
    pub key_len_max: u32,
    /// Largest accepted value in bytes.
    pub value_len_max: u32,
    /// Planted bugs switched on (none in production).
    pub bugs: BugSet,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            policy: FsyncPolicy::Group { delay_us: 0 },
            page_size: 4096,
            page_count: 1024,
            pool_pages: 256,
            segment_size: 4 << 20,
            checkpoint_wal_bytes: 64 << 20,
            key_len_max: 128,
            value_len_max: 1024,
            bugs: BugSet::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for text in ["always", "group", "group:200", "interval:10", "none"] {
            let policy: FsyncPolicy = text.parse().unwrap();
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "sometimes",
            "interval",
            "interval:0",
            "interval:x",
            "always:3",
            "",
        ] {
            assert!(bad.parse::<FsyncPolicy>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bug_names_round_trip_and_bits_are_distinct() {
        let all: BugSet = Bug::ALL.into_iter().collect();
        assert_eq!(all.iter().count(), Bug::ALL.len());
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        assert_eq!(BugSet::from_bits(all.bits()), Some(all));
        assert_eq!(BugSet::from_bits(1u32 << 31), None);
        assert!("no-such-bug".parse::<Bug>().is_err());
    }
}
