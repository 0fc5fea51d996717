//! The cost of each step of a process target's crash state: mount, start
//! (to the first answer), scan, commit, kill and unmount, clean close,
//! measured in a forked child (the private namespace needs a
//! single-threaded process) on an in-memory storage holding a small, synced
//! data directory.

use crate::supervisor::child::{self, Received};
use crate::target::{TargetMode, TargetSettings};
use engine::storage::{MemStorage, Storage};
use engine::{Config, VirtualClock};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds measured (each one full open, scan, commit, kill).
pub const ROUNDS_DEFAULT: u32 = 20;
/// How long the profiling child may take.
const PROFILE_TIME_MAX: Duration = Duration::from_secs(300);

/// Mean microseconds per step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCosts {
    pub rounds: u32,
    /// Mount, program start and its first answer (recovery included).
    pub open_us: f64,
    /// The harness's own part of a start, measured with `true` as the
    /// program: mount, start of `true`, its exit seen, kill and unmount.
    pub mount_us: f64,
    /// Of which: the FUSE mount and the fork and exec of the program.
    #[serde(default)]
    pub mount_spawn_us: f64,
    /// Of which: the unmount (after the program is gone).
    #[serde(default)]
    pub unmount_us: f64,
    pub scan_us: f64,
    /// One transaction of one write, to its acknowledgement.
    pub commit_us: f64,
    /// SIGKILL of the program and unmount.
    pub kill_us: f64,
    /// A clean close (Redis: `SHUTDOWN`, its exit seen) and unmount.
    #[serde(default)]
    pub close_us: f64,
}

/// Profiles `mode` for `rounds` rounds.
pub fn profile(mode: TargetMode, rounds: u32) -> Result<StepCosts, String> {
    let mut child = child::spawn(|out| {
        let costs = measure(mode, rounds);
        let frame = serde_json::to_vec(&costs).expect("costs serialise");
        match out.send(&frame) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    })
    .map_err(|e| format!("cannot fork a profiling child: {e}"))?;
    let frame = match child.recv(PROFILE_TIME_MAX) {
        Ok(Received::Frame(frame)) => frame,
        Ok(other) => {
            return Err(format!(
                "the profiling child ended without a result: {other:?}"
            ));
        }
        Err(e) => return Err(format!("profiling child: {e}")),
    };
    let _ = child.wait();
    let costs: Result<StepCosts, String> =
        serde_json::from_slice(&frame).map_err(|e| format!("profiling result: {e}"))?;
    costs
}

fn measure(mode: TargetMode, rounds: u32) -> Result<StepCosts, String> {
    let factory = mode.factory(&TargetSettings {
        engine: Config::default(),
        ..TargetSettings::default()
    });
    // A target that needs an initialised data directory (PostgreSQL) starts
    // from it, as a trial does.
    let storage = MemStorage::from_files(factory.starting_image()?);
    let clock = Arc::new(VirtualClock::new(0));
    let mut costs = StepCosts {
        rounds,
        ..StepCosts::default()
    };
    for round in 0..rounds {
        let started = Instant::now();
        let mut target = factory
            .open(Arc::new(storage.clone()) as Arc<dyn Storage>, clock.clone())
            .map_err(|e| format!("open: {e}"))?;
        let opened = Instant::now();
        target.scan().map_err(|e| format!("scan: {e}"))?;
        let scanned = Instant::now();
        let txn = target.begin().map_err(|e| format!("begin: {e}"))?;
        let key = format!("key{round}");
        target
            .put(txn, key.as_bytes(), b"value")
            .map_err(|e| format!("put: {e}"))?;
        target.commit(txn).map_err(|e| format!("commit: {e}"))?;
        let committed = Instant::now();
        drop(target);
        let killed = Instant::now();
        costs.open_us += (opened - started).as_micros() as f64;
        costs.scan_us += (scanned - opened).as_micros() as f64;
        costs.commit_us += (committed - scanned).as_micros() as f64;
        costs.kill_us += (killed - committed).as_micros() as f64;
        let target = factory
            .open(Arc::new(storage.clone()) as Arc<dyn Storage>, clock.clone())
            .map_err(|e| format!("open: {e}"))?;
        let closing = Instant::now();
        target.close().map_err(|e| format!("close: {e}"))?;
        costs.close_us += closing.elapsed().as_micros() as f64;
    }
    for _ in 0..rounds {
        let started = Instant::now();
        let mut session = crate::target::process::session::Session::start(
            Arc::new(storage.clone()) as Arc<dyn Storage>,
            |_, dir| crate::target::process::program::ProgramSpec {
                argv: vec!["true".to_string()],
                cwd: dir.to_path_buf(),
                stderr_path: dir.join("stderr"),
                stdout_path: Some(dir.join("stdout")),
                stdin_pipe: false,
            },
        )
        .map_err(|e| format!("session: {e}"))?;
        let spawned = Instant::now();
        session
            .program()
            .wait_or_kill(PROFILE_TIME_MAX)
            .map_err(|e| format!("waiting for `true`: {e}"))?;
        let exited = Instant::now();
        drop(session);
        let unmounted = Instant::now();
        costs.mount_us += (unmounted - started).as_micros() as f64;
        costs.mount_spawn_us += (spawned - started).as_micros() as f64;
        costs.unmount_us += (unmounted - exited).as_micros() as f64;
    }
    let n = f64::from(rounds.max(1));
    costs.mount_us /= n;
    costs.mount_spawn_us /= n;
    costs.unmount_us /= n;
    costs.open_us /= n;
    costs.scan_us /= n;
    costs.commit_us /= n;
    costs.kill_us /= n;
    costs.close_us /= n;
    Ok(costs)
}
