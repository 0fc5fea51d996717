//! Crash points: where in a trace to cut the power, biased toward the places
//! where crash-consistency bugs live (SPEC §3).
//!
//! A crash point `k` keeps events `0..k`; it ranges over `0..=events.len()`.
//! The places, each a set of candidate ranges:
//! - around each sync: just before it, just after it, and during it (right
//!   after any write or size change issued since the previous sync, so that
//!   the write is in the cache but not yet covered);
//! - right after each `Acked`;
//! - inside each checkpoint (`CheckpointIssued` .. `CheckpointAcked`);
//! - during recovery (`OpenIssued` .. `Opened`);
//! - anywhere, uniformly.
//!
//! Each pick draws a place by weight (among those with candidates), then a
//! candidate range, then a point in it. Deterministic for a given generator.

use super::trace::Event;
use rand::{Rng, RngExt};
use std::collections::BTreeSet;
use std::ops::Range;

/// Draws per requested point before giving up on finding distinct ones.
pub const CRASH_POINT_DRAWS_PER_POINT_MAX: usize = 8;

/// The places crash points are drawn from, with their weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPlace {
    AroundSync,
    AfterAck,
    InCheckpoint,
    InRecovery,
    Uniform,
}

impl CrashPlace {
    pub const ALL: [CrashPlace; 5] = [
        CrashPlace::AroundSync,
        CrashPlace::AfterAck,
        CrashPlace::InCheckpoint,
        CrashPlace::InRecovery,
        CrashPlace::Uniform,
    ];

    fn weight(self) -> u32 {
        match self {
            CrashPlace::AroundSync => 4,
            CrashPlace::AfterAck => 2,
            CrashPlace::InCheckpoint => 1,
            CrashPlace::InRecovery => 1,
            CrashPlace::Uniform => 2,
        }
    }
}

/// Candidate crash-point ranges of one place (each range non-empty).
pub fn candidates(events: &[Event], place: CrashPlace) -> Vec<Range<usize>> {
    match place {
        CrashPlace::AroundSync => around_syncs(events),
        CrashPlace::AfterAck => events
            .iter()
            .enumerate()
            .filter(|(_, event)| matches!(event, Event::Acked { .. }))
            .map(|(i, _)| i + 1..i + 2)
            .collect(),
        CrashPlace::InCheckpoint => spans(
            events,
            |e| matches!(e, Event::CheckpointIssued),
            |e| matches!(e, Event::CheckpointAcked),
        ),
        CrashPlace::InRecovery => spans(
            events,
            |e| matches!(e, Event::OpenIssued),
            |e| matches!(e, Event::Opened),
        ),
        CrashPlace::Uniform => std::iter::once(0..events.len() + 1).collect(),
    }
}

/// Up to `count` distinct crash points, sorted (fewer if the trace has
/// fewer distinct candidates).
pub fn choose_crash_points(events: &[Event], rng: &mut impl Rng, count: usize) -> Vec<usize> {
    let places: Vec<(CrashPlace, Vec<Range<usize>>)> = CrashPlace::ALL
        .into_iter()
        .map(|place| (place, candidates(events, place)))
        .filter(|(_, ranges)| !ranges.is_empty())
        .collect();
    let total_weight: u32 = places.iter().map(|(place, _)| place.weight()).sum();
    assert!(total_weight > 0, "the uniform place always has a candidate");
    let mut points = BTreeSet::new();
    let draws_max = count.saturating_mul(CRASH_POINT_DRAWS_PER_POINT_MAX);
    for _ in 0..draws_max {
        if points.len() == count {
            break;
        }
        let ranges = pick_place(&places, rng.random_range(0..total_weight));
        let range = &ranges[rng.random_range(0..ranges.len())];
        let point = rng.random_range(range.clone());
        assert!(point <= events.len(), "crash point beyond the trace");
        points.insert(point);
    }
    points.into_iter().collect()
}

fn pick_place(places: &[(CrashPlace, Vec<Range<usize>>)], mut ticket: u32) -> &[Range<usize>] {
    for (place, ranges) in places {
        if ticket < place.weight() {
            return ranges;
        }
        ticket -= place.weight();
    }
    unreachable!("ticket below the total weight")
}

fn is_sync(event: &Event) -> bool {
    matches!(
        event,
        Event::SyncData { .. } | Event::SyncAll { .. } | Event::SyncDir { .. }
    )
}

fn around_syncs(events: &[Event]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut unsynced_changes: Vec<usize> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Write { .. } | Event::SetLen { .. } => unsynced_changes.push(i),
            event if is_sync(event) => {
                ranges.push(i..i + 1);
                ranges.push(i + 1..i + 2);
                ranges.extend(unsynced_changes.drain(..).map(|j| j + 1..j + 2));
            }
            _ => {}
        }
    }
    ranges
}

/// Crash points strictly after each `start` event up to and including its
/// matching `end` event (or the end of the trace).
fn spans(
    events: &[Event],
    start: impl Fn(&Event) -> bool,
    end: impl Fn(&Event) -> bool,
) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut open: Option<usize> = None;
    for (i, event) in events.iter().enumerate() {
        if start(event) {
            open = Some(i);
        } else if end(event)
            && let Some(s) = open.take()
        {
            ranges.push(s + 1..i + 1);
        }
    }
    if let Some(s) = open {
        ranges.push(s + 1..events.len() + 1);
    }
    ranges
}
