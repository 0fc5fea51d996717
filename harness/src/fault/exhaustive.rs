//! Bounded exhaustive mode (SPEC §3): every crash point of one window
//! between two consecutive syncs, and at each point every subset of the last
//! K volatile changes.
//!
//! Fault model enumerated: `power-loss` without tearing. At a crash point
//! with P pending changes, the last `min(K, P)` of them are each persisted or
//! dropped (all `2^min(K, P)` subsets, as explicit fates); older pending
//! changes are dropped. Tears, garbage and media faults are left to the
//! seeded mode. A window with P pending at each of its points yields
//! `sum(2^min(K, P))` states; [`Exhaustive::states_total`] says how many.

use super::FaultProfile;
use super::image::{ChangeFate, CrashImage, ExplicitFates, FaultChoices, ImageBuilder, ImageError};
use super::trace::Event;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// The largest K (subsets of the last K pending changes).
pub const EXHAUSTIVE_SUBSET_CHANGES_MAX: usize = 12;

/// One crash state of the exhaustive mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExhaustiveState {
    pub crash_point: usize,
    pub choices: ExplicitFates,
}

fn is_sync(event: &Event) -> bool {
    matches!(
        event,
        Event::SyncData { .. } | Event::SyncAll { .. } | Event::SyncDir { .. }
    )
}

/// The windows of crash points between consecutive syncs: the first runs
/// from 0 to just before the first sync, each next from just after a sync to
/// just before the next one, the last from just after the last sync to the
/// end of the trace.
pub fn sync_windows(events: &[Event]) -> Vec<RangeInclusive<usize>> {
    let mut windows = Vec::new();
    let mut start = 0;
    for (i, event) in events.iter().enumerate() {
        if is_sync(event) {
            windows.push(start..=i);
            start = i + 1;
        }
    }
    windows.push(start..=events.len());
    windows
}

/// Walks one window, yielding every state; build each state's image with
/// [`Exhaustive::image`] before asking for the next state.
pub struct Exhaustive<'a> {
    builder: ImageBuilder<'a>,
    window: RangeInclusive<usize>,
    subset_changes: usize,
    /// The current crash point, its subset candidates and the next mask.
    current: Option<(usize, Vec<usize>, u64)>,
    states_yielded: u64,
}

impl<'a> Exhaustive<'a> {
    pub fn new(
        base: &BTreeMap<String, Vec<u8>>,
        events: &'a [Event],
        window: RangeInclusive<usize>,
        subset_changes: usize,
        sector_size: u64,
    ) -> Result<Exhaustive<'a>, ImageError> {
        assert!(
            subset_changes <= EXHAUSTIVE_SUBSET_CHANGES_MAX,
            "K = {subset_changes} exceeds {EXHAUSTIVE_SUBSET_CHANGES_MAX}"
        );
        assert!(!window.is_empty(), "empty crash-point window");
        let mut builder = ImageBuilder::new(base, events, sector_size);
        builder.advance_to(*window.start())?;
        Ok(Exhaustive {
            builder,
            window,
            subset_changes,
            current: None,
            states_yielded: 0,
        })
    }

    /// How many states the whole window holds (walks a second builder).
    pub fn states_total(
        base: &BTreeMap<String, Vec<u8>>,
        events: &[Event],
        window: RangeInclusive<usize>,
        subset_changes: usize,
        sector_size: u64,
    ) -> Result<u64, ImageError> {
        let mut builder = ImageBuilder::new(base, events, sector_size);
        let mut total = 0u64;
        for point in window {
            builder.advance_to(point)?;
            let pending = builder.pending_event_indexes().len();
            total += 1u64 << pending.min(subset_changes);
        }
        Ok(total)
    }

    /// States yielded so far.
    pub fn states_yielded(&self) -> u64 {
        self.states_yielded
    }

    /// The next state, or `None` when the window is exhausted.
    pub fn next_state(&mut self) -> Result<Option<ExhaustiveState>, ImageError> {
        loop {
            if let Some((point, candidates, mask)) = &mut self.current
                && *mask < 1u64 << candidates.len()
            {
                let changes = candidates
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| *mask & (1 << bit) != 0)
                    .map(|(_, &event_index)| (event_index, ChangeFate::Persisted))
                    .collect();
                *mask += 1;
                self.states_yielded += 1;
                return Ok(Some(ExhaustiveState {
                    crash_point: *point,
                    choices: ExplicitFates {
                        changes,
                        media: None,
                    },
                }));
            }
            let point = match &self.current {
                None => *self.window.start(),
                Some((point, _, _)) => point + 1,
            };
            if point > *self.window.end() {
                return Ok(None);
            }
            self.builder.advance_to(point)?;
            let pending = self.builder.pending_event_indexes();
            let last = pending[pending.len().saturating_sub(self.subset_changes)..].to_vec();
            self.current = Some((point, last, 0));
        }
    }

    /// The image of `state` (the state last returned by `next_state`).
    pub fn image(&mut self, state: &ExhaustiveState) -> Result<CrashImage, ImageError> {
        assert_eq!(
            state.crash_point,
            self.builder.cursor(),
            "image of a past state"
        );
        let choices = FaultChoices::Explicit(state.choices.clone());
        self.builder
            .image_at(state.crash_point, FaultProfile::PowerLoss, &choices)
    }
}
