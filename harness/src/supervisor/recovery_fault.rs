//! TEST-ONLY: make recovery misbehave, to prove the harness survives it.
//!
//! SPEC §8 says a hung or crashing recovery is a finding, never a harness
//! hang. The correct engine never hangs or crashes, so the harness's own
//! tests need a recovery that does — without weakening the engine. When the
//! environment variable [`TEST_RECOVERY_FAULT_ENV`] is set, the verifier
//! child (and nothing else: not the workload child, not `replay`) wraps the
//! target factory so that opening the engine for the FIRST crash state of
//! the FIRST cycle of every trial misbehaves:
//!
//! - `hang`:  sleeps forever (the verifier must kill it at the scenario's
//!   `crash.recovery_time_limit` and report `recovery-hang`);
//! - `spin`:  loops on the CPU forever (same verdict);
//! - `abort`: `abort()` (SIGABRT, reported as `recovery-panic`);
//! - `segv`:  raises SIGSEGV (reported as `recovery-panic`);
//! - `oom`:   allocates until the verifier's address-space limit refuses
//!   (the allocator aborts; reported as `recovery-panic`).
//!
//! Every other state recovers normally, so a run under a fault finds exactly
//! one violation per trial and must go on to the end of its budget. Never set
//! this outside tests: the findings it produces are planted.

use crate::target::{Target, TargetError, TargetErrorKind, TargetFactory, TargetResult};
use engine::Clock;
use engine::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// The test-only environment variable (see the module header).
pub const TEST_RECOVERY_FAULT_ENV: &str = "POWERCUT_TEST_RECOVERY_FAULT";

/// Allocation step of the `oom` fault; the limit is the verifier's
/// `RLIMIT_AS` ([`super::verify::VERIFIER_ADDRESS_SPACE_MAX`]).
const OOM_CHUNK_BYTES: usize = 64 << 20;

/// How recovery misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryFault {
    Hang,
    Spin,
    Abort,
    Segv,
    Oom,
}

impl std::str::FromStr for RecoveryFault {
    type Err = String;
    fn from_str(text: &str) -> Result<RecoveryFault, String> {
        match text {
            "hang" => Ok(RecoveryFault::Hang),
            "spin" => Ok(RecoveryFault::Spin),
            "abort" => Ok(RecoveryFault::Abort),
            "segv" => Ok(RecoveryFault::Segv),
            "oom" => Ok(RecoveryFault::Oom),
            other => Err(format!(
                "unknown {TEST_RECOVERY_FAULT_ENV} `{other}` (expected hang, spin, abort, segv or oom)"
            )),
        }
    }
}

/// The fault asked for by the environment, if any (read in the verifier
/// child only).
pub fn from_env() -> Result<Option<RecoveryFault>, String> {
    match std::env::var(TEST_RECOVERY_FAULT_ENV) {
        Ok(text) if !text.is_empty() => text.parse().map(Some),
        _ => Ok(None),
    }
}

/// Whether the fault fires for this crash state: the first state of the
/// first cycle of each trial.
pub fn fires_at(cycle: usize, state_index: usize) -> bool {
    cycle == 0 && state_index == 0
}

/// A factory whose `open` misbehaves; it never returns a target.
pub struct MisbehavingFactory {
    pub fault: RecoveryFault,
}

impl TargetFactory for MisbehavingFactory {
    fn open(
        &self,
        _storage: Arc<dyn Storage>,
        _clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        misbehave(self.fault);
        Err(TargetError {
            kind: TargetErrorKind::Other,
            message: "the planted recovery fault did not take effect".into(),
        })
    }
}

fn misbehave(fault: RecoveryFault) {
    match fault {
        RecoveryFault::Hang => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        RecoveryFault::Spin => {
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        RecoveryFault::Abort => std::process::abort(),
        RecoveryFault::Segv => {
            // The Rust runtime's SIGSEGV handler (stack-overflow detection)
            // ignores a raised SIGSEGV; a real fault re-executes and dies.
            // Restore the default action so the raise kills like a fault.
            // SAFETY: resetting a disposition and raising a signal have no
            // memory-safety preconditions.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        }
        RecoveryFault::Oom => {
            // Untouched zeroed chunks cost address space, not memory, so the
            // address-space limit trips long before the machine feels it.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0u8; OOM_CHUNK_BYTES]);
                std::hint::black_box(&hoard);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_unknown_ones_are_refused() {
        assert_eq!("hang".parse(), Ok(RecoveryFault::Hang));
        assert_eq!("oom".parse(), Ok(RecoveryFault::Oom));
        let error = "melt".parse::<RecoveryFault>().unwrap_err();
        assert!(error.contains(TEST_RECOVERY_FAULT_ENV), "{error}");
        assert!(fires_at(0, 0));
        assert!(!fires_at(0, 1) && !fires_at(1, 0));
    }
}
