//! The shared-memory trace survives a SIGKILLed writer: the parent reads an
//! intact prefix, whatever instant the child died at. One test per file (and
//! no other threads started by it) because the child of a fork must not need
//! locks another thread may hold.

use harness::fault::shm::SharedTrace;
use harness::fault::trace::{Event, EventSink};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use std::time::Duration;

/// The i-th event the child records: its content depends on i only, so the
/// parent can check every event of the prefix.
fn event(i: u64) -> Event {
    match i % 3 {
        0 => Event::Write {
            file: (i % 5) as u32,
            offset: i * 7,
            data: vec![i as u8; (i % 700) as usize],
        },
        1 => Event::Acked {
            txn: i,
            now_us: i * 3,
        },
        _ => Event::SyncData {
            file: (i % 5) as u32,
            failed: i.is_multiple_of(2),
        },
    }
}

fn check_prefix(events: &[Event]) {
    for (i, got) in events.iter().enumerate() {
        assert_eq!(*got, event(i as u64), "event {i} of the prefix");
    }
}

/// Forks a child that runs `child` against the trace; returns once it died.
fn run_child(
    trace: &SharedTrace,
    child: impl FnOnce(&SharedTrace),
    kill_after: Option<Duration>,
) -> WaitStatus {
    // SAFETY: the child only records into the trace (allocation is
    // fork-safe with glibc) and then dies by a signal or `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            child(trace);
            // SAFETY: ends the child without running the parent's atexit
            // handlers or the test harness.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            if let Some(delay) = kill_after {
                std::thread::sleep(delay);
                kill(child, Signal::SIGKILL).expect("kill our own child");
            }
            waitpid(child, None).expect("waitpid")
        }
    }
}

#[test]
fn a_sigkilled_writer_leaves_an_intact_prefix() {
    let trace = SharedTrace::new(64 << 20).expect("map the trace");

    // The child kills itself right after event 999.
    let status = run_child(
        &trace,
        |trace| {
            for i in 0..1000 {
                trace.record(event(i));
            }
            raise(Signal::SIGKILL).expect("raise");
        },
        None,
    );
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "{status:?}"
    );
    let events = trace.events();
    assert_eq!(events.len(), 1000);
    check_prefix(&events);

    // The parent kills a child that records without end, at random moments
    // (mid-copy or between the copy and the publish, some of the time).
    for round in 0..20u64 {
        trace.reset();
        let status = run_child(
            &trace,
            |trace| {
                for i in 0.. {
                    trace.record(event(i));
                }
            },
            Some(Duration::from_micros(200 + round * 150)),
        );
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
            "{status:?}"
        );
        let events = trace
            .try_events()
            .expect("a killed writer leaves a decodable prefix");
        assert!(!trace.overflowed());
        check_prefix(&events);
    }
}
