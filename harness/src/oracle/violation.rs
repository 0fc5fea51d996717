//! The violation kinds (SPEC §4.4) and a violation with its evidence.

use crate::fault::trace::WorkloadTxnId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What went wrong. The names are the contract: reports, case ids, the
/// mutants table and `--explain` use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// An acknowledged commit the policy promises to keep is missing.
    LostAck,
    /// `interval:MS` under power loss lost a commit acknowledged before the
    /// loss window.
    BeyondWindow,
    /// A transaction is missing while a later one (in commit-issue order)
    /// is visible.
    Hole,
    /// Part of a transaction is visible and part is not.
    Atomicity,
    /// A value from a transaction that never issued its commit (aborted or
    /// unissued).
    Phantom,
    /// A workload invariant (the bank total) does not hold.
    Invariant,
    /// Recovery panicked or aborted.
    RecoveryPanic,
    /// Recovery did not finish within its time limit.
    RecoveryHang,
    /// Recovery returned an error (not acceptable under this fault profile).
    RecoveryError,
    /// Recovering twice, or crashing during recovery, changed the result.
    NotIdempotent,
    /// The recovered engine does not accept new commits, or a clean
    /// close/reopen changed the state.
    NotWritable,
    /// A value no transaction wrote.
    SilentCorruption,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 12] = [
        ViolationKind::LostAck,
        ViolationKind::BeyondWindow,
        ViolationKind::Hole,
        ViolationKind::Atomicity,
        ViolationKind::Phantom,
        ViolationKind::Invariant,
        ViolationKind::RecoveryPanic,
        ViolationKind::RecoveryHang,
        ViolationKind::RecoveryError,
        ViolationKind::NotIdempotent,
        ViolationKind::NotWritable,
        ViolationKind::SilentCorruption,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::LostAck => "lost-ack",
            ViolationKind::BeyondWindow => "beyond-window",
            ViolationKind::Hole => "hole",
            ViolationKind::Atomicity => "atomicity",
            ViolationKind::Phantom => "phantom",
            ViolationKind::Invariant => "invariant",
            ViolationKind::RecoveryPanic => "recovery-panic",
            ViolationKind::RecoveryHang => "recovery-hang",
            ViolationKind::RecoveryError => "recovery-error",
            ViolationKind::NotIdempotent => "not-idempotent",
            ViolationKind::NotWritable => "not-writable",
            ViolationKind::SilentCorruption => "silent-corruption",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ViolationKind {
    type Err = String;

    fn from_str(text: &str) -> Result<ViolationKind, String> {
        ViolationKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown violation kind `{text}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// One violation: its kind, a sentence naming the transactions, keys and
/// LSNs, and those as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub message: String,
    pub txns: Vec<WorkloadTxnId>,
    pub keys: Vec<Vec<u8>>,
    pub lsns: Vec<u64>,
}

impl Violation {
    /// A violation with no transaction, key or LSN attached (the recovery
    /// kinds the supervisor reports).
    pub fn new(kind: ViolationKind, message: impl Into<String>) -> Violation {
        Violation {
            kind,
            message: message.into(),
            txns: Vec::new(),
            keys: Vec::new(),
            lsns: Vec::new(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// A key for a message: as text if printable ASCII, else hex.
pub fn display_key(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }
}

/// Keys for a message: at most a few, then a count.
pub fn display_keys(keys: &[Vec<u8>]) -> String {
    const SHOWN_MAX: usize = 4;
    let mut shown: Vec<String> = keys
        .iter()
        .take(SHOWN_MAX)
        .map(|k| display_key(k))
        .collect();
    if keys.len() > SHOWN_MAX {
        shown.push(format!("and {} more", keys.len() - SHOWN_MAX));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ViolationKind::ALL {
            assert_eq!(kind.to_string().parse::<ViolationKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert!("lost".parse::<ViolationKind>().is_err());
    }
}
