//! The simulated disk: recording storage, the trace, and crash images.
//!
//! Fault model (SPEC §3). Every storage operation of the workload is recorded
//! in order in a [`trace`], with the workload's acknowledgements interleaved
//! at the exact point the engine returned OK. A crash at any point of the
//! trace yields a crash image: what a disk could hold after the power is cut
//! there. A write, size change, create, rename or remove is volatile until a
//! sync covers it (`sync_data`/`sync_all` of that file: its data and size;
//! `sync_dir`: the entries created, renamed or removed before it). What
//! survives depends on the [`FaultProfile`].

pub mod exhaustive;
pub mod image;
pub mod points;
pub mod recording;
pub mod shm;
pub mod trace;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

/// What a crash may do to volatile and durable data (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultProfile {
    /// Every completed operation survives (the page cache outlives a
    /// SIGKILL); nothing is torn.
    ProcessCrash,
    /// Synced state, plus any subset of volatile changes, each possibly torn
    /// at sector granularity.
    PowerLoss,
    /// Synced state, plus a prefix of the volatile changes in issue order
    /// (the last one possibly torn).
    PowerLossOrdered,
    /// As `power-loss`; a torn sector may hold garbage.
    TornGarbage,
    /// A chosen sync fails with EIO: its data is dropped from the cache and
    /// marked clean (Linux ext4/xfs); then a power cut.
    FsyncError,
    /// As `power-loss`, plus a flipped bit or a misdirected write in
    /// already-durable data.
    Media,
}

impl FaultProfile {
    pub const ALL: [FaultProfile; 6] = [
        FaultProfile::ProcessCrash,
        FaultProfile::PowerLoss,
        FaultProfile::PowerLossOrdered,
        FaultProfile::TornGarbage,
        FaultProfile::FsyncError,
        FaultProfile::Media,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultProfile::ProcessCrash => "process-crash",
            FaultProfile::PowerLoss => "power-loss",
            FaultProfile::PowerLossOrdered => "power-loss-ordered",
            FaultProfile::TornGarbage => "torn-garbage",
            FaultProfile::FsyncError => "fsync-error",
            FaultProfile::Media => "media",
        }
    }

    /// True if un-synced data may be lost (a power cut, not just a kill).
    pub fn loses_volatile_data(self) -> bool {
        self != FaultProfile::ProcessCrash
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultProfile {
    type Err = String;

    fn from_str(text: &str) -> Result<FaultProfile, String> {
        FaultProfile::ALL
            .into_iter()
            .find(|profile| profile.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultProfile::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown fault profile `{text}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}
