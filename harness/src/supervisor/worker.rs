//! A worker process of `powercut run`: single-threaded, so it may fork
//! workload and verifier children safely. Reads a [`WorkerSetup`] line, then
//! one [`TrialJob`] per line; answers each with a [`WorkerMessage`] line.
//! End of input means stop. The worker is its descendants' subreaper: the
//! program of a SIGKILLed child is reaped here, not left a zombie.

use super::protocol::{TrialJob, WorkerMessage, WorkerSetup};
use super::trial::TrialPlan;
use super::verify::BundleBudget;
use crate::exit;
use std::io::{BufRead, Write};

/// The worker's main loop; returns the process exit code.
pub fn main() -> i32 {
    // Programs of killed children are orphans: adopt and reap them.
    if let Err(error) = super::child::become_subreaper() {
        return fatal(&format!("cannot become a child subreaper: {error}"));
    }
    let code = serve();
    super::child::reap_orphans_until_none(ORPHANS_WAIT_MAX);
    code
}

/// How long a worker that is done waits for adopted orphans still dying.
const ORPHANS_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

fn serve() -> i32 {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let setup: WorkerSetup = match lines.next() {
        Some(Ok(line)) => match serde_json::from_str(&line) {
            Ok(setup) => setup,
            Err(error) => return fatal(&format!("unreadable worker setup: {error}")),
        },
        _ => return exit::OK,
    };
    let plan = match TrialPlan::new(&setup) {
        Ok(plan) => plan,
        Err(message) => return fatal(&message),
    };
    let mut bundles = BundleBudget::new(setup.bundles_max);
    for line in lines {
        let Ok(line) = line else { break };
        let job: TrialJob = match serde_json::from_str(&line) {
            Ok(job) => job,
            Err(error) => return fatal(&format!("unreadable trial job: {error}")),
        };
        let outcome = match plan.run_trial(job.trial, &mut bundles) {
            Ok(outcome) => outcome,
            Err(message) => return fatal(&message),
        };
        if !send(&WorkerMessage::Done(Box::new(outcome))) {
            break;
        }
    }
    exit::OK
}

fn send(message: &WorkerMessage) -> bool {
    let line = serde_json::to_string(message).expect("worker message serialises");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_ok()
}

fn fatal(message: &str) -> i32 {
    send(&WorkerMessage::Fatal(message.to_string()));
    exit::HARNESS_FAILED
}
