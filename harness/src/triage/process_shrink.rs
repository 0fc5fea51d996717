//! `powercut shrink BUNDLE` for a process target: the workload cannot be
//! run again, so only what the recorded trace allows shrinks — the crash
//! point (earlier points just after an acknowledgement or a sync, earliest
//! first) and the fault choices (each persisted or torn change dropped, each
//! torn one made whole), then the crash point once more, to just after the
//! last change that still persists (the dropped changes after it and the
//! events between them tell nothing), keeping every step that still fails
//! with the same violation kind. Each candidate starts the program on its
//! image, as the run did.
//!
//! Why the last step: a torn AOF tail (a command written as two FUSE
//! writes, the second kept and the first dropped) happens between two
//! promise points, so no earlier promise point fails; the crash point
//! stays where the run put it, after other writes that were all dropped.
//! Cutting right after the kept write leaves only the changes that matter.

use super::replay::{self, Replayed, Resolved};
use crate::case::bundle::{self, Bundle, RecordedCycle};
use crate::case::id::{CaseId, Crash, FaultSeed};
use crate::fault::image::{ChangeFate, ExplicitFates};
use crate::fault::trace::Event;
use std::path::Path;
use std::time::{Duration, Instant};

/// Crash points tried at most.
pub const POINTS_TRIED_MAX: usize = 64;

/// The minimal case found and how it was found.
pub struct ProcessShrunk {
    pub case: CaseId,
    pub kind: String,
    pub replayed: Replayed,
    pub candidates: u64,
    pub original_point: u64,
    pub original_changes: usize,
}

fn first_kind(replayed: &Replayed) -> Option<String> {
    replayed
        .result
        .violations
        .first()
        .map(|(kind, _)| kind.clone())
}

/// Changes that persisted whole or torn.
fn kept_changes(fates: &ExplicitFates) -> usize {
    fates.changes.len()
}

/// `case` with its last crash replaced.
fn with_crash(case: &CaseId, crash: Crash) -> CaseId {
    let mut case = case.clone();
    *case.crashes.last_mut().expect("a case has a crash") = crash;
    case
}

/// Shrinks `resolved` (a process target's bundle) within `budget`.
pub fn shrink(
    resolved: Resolved,
    recorded: &RecordedCycle,
    budget: Duration,
) -> Result<Option<ProcessShrunk>, String> {
    let started = Instant::now();
    let first = replay::rebuild(&resolved, false)?;
    let Some(kind) = first_kind(&first) else {
        return Ok(None);
    };
    let original = resolved.case.crashes.last().expect("a crash").clone();
    let mut best_case = with_crash(
        &resolved.case,
        Crash {
            point: original.point,
            faults: FaultSeed::Explicit(first.image.fates.to_explicit()),
        },
    );
    let mut best = first;
    let original_changes = kept_changes(&best.image.fates.to_explicit());
    let mut candidates = 0u64;
    let try_case = |case: &CaseId, candidates: &mut u64| -> Option<Replayed> {
        if started.elapsed() > budget {
            return None;
        }
        *candidates += 1;
        let attempt = Resolved {
            case: case.clone(),
            plan: replay::plan_for(case, resolved.plan.setup.scenario_toml.clone()).ok()?,
            recorded: Some(recorded.clone()),
        };
        let replayed = replay::rebuild(&attempt, false).ok()?;
        (first_kind(&replayed).as_ref() == Some(&kind)).then_some(replayed)
    };

    // Crash point: earlier promise points (after an acknowledgement or a
    // sync), earliest first, with the fates of changes still pending there.
    let point = usize::try_from(original.point).map_err(|_| "crash point too large")?;
    let points: Vec<usize> = recorded.events[..point.min(recorded.events.len())]
        .iter()
        .enumerate()
        .filter(|(_, event)| {
            matches!(
                event,
                Event::Acked { .. }
                    | Event::SyncData { .. }
                    | Event::SyncAll { .. }
                    | Event::SyncDir { .. }
            )
        })
        .map(|(index, _)| index + 1)
        .take(POINTS_TRIED_MAX)
        .collect();
    for candidate in points {
        let FaultSeed::Explicit(fates) = &best_case.crashes.last().expect("a crash").faults else {
            unreachable!("explicit from here on");
        };
        let mut fates = fates.clone();
        fates.changes.retain(|index, _| *index < candidate);
        let case = with_crash(
            &best_case,
            Crash {
                point: candidate as u64,
                faults: FaultSeed::Explicit(fates),
            },
        );
        if let Some(replayed) = try_case(&case, &mut candidates) {
            best_case = case;
            best = replayed;
            break;
        }
    }

    // Fault choices: drop each kept change; make each torn one whole.
    let FaultSeed::Explicit(fates) = best_case.crashes.last().expect("a crash").faults.clone()
    else {
        unreachable!("explicit from here on");
    };
    let mut fates = fates;
    for index in fates.changes.keys().copied().collect::<Vec<_>>() {
        let mut fewer = fates.clone();
        fewer.changes.remove(&index);
        let crash = Crash {
            point: best_case.crashes.last().expect("a crash").point,
            faults: FaultSeed::Explicit(fewer.clone()),
        };
        let case = with_crash(&best_case, crash);
        if let Some(replayed) = try_case(&case, &mut candidates) {
            fates = fewer;
            best_case = case;
            best = replayed;
            continue;
        }
        if matches!(fates.changes.get(&index), Some(ChangeFate::Torn(_))) {
            let mut whole = fates.clone();
            whole.changes.insert(index, ChangeFate::Persisted);
            let crash = Crash {
                point: best_case.crashes.last().expect("a crash").point,
                faults: FaultSeed::Explicit(whole.clone()),
            };
            let case = with_crash(&best_case, crash);
            if let Some(replayed) = try_case(&case, &mut candidates) {
                fates = whole;
                best_case = case;
                best = replayed;
            }
        }
    }

    // Crash point again: just after the last change that persists.
    let point = best_case.crashes.last().expect("a crash").point;
    if let Some(tight) = tight_point(&fates, point) {
        let crash = Crash {
            point: tight,
            faults: FaultSeed::Explicit(fates.clone()),
        };
        let case = with_crash(&best_case, crash);
        if let Some(replayed) = try_case(&case, &mut candidates) {
            best_case = case;
            best = replayed;
        }
    }
    Ok(Some(ProcessShrunk {
        case: best_case,
        kind,
        replayed: best,
        candidates,
        original_point: original.point,
        original_changes,
    }))
}

/// The crash point just after the last change that persists (whole or
/// torn), if that is earlier than `point`; none if nothing persists.
pub fn tight_point(fates: &ExplicitFates, point: u64) -> Option<u64> {
    let last = *fates.changes.keys().next_back()?;
    let tight = u64::try_from(last).ok()? + 1;
    (tight < point).then_some(tight)
}

/// Prints the minimal case and writes its bundle (which keeps the same
/// recorded cycle, so it replays) under `out`.
pub fn report(
    shrunk: &ProcessShrunk,
    scenario_toml: &str,
    recorded: &RecordedCycle,
    out: &Path,
    elapsed: Duration,
) -> Result<(), String> {
    let resolved = Resolved {
        case: shrunk.case.clone(),
        plan: replay::plan_for(&shrunk.case, scenario_toml.to_string())?,
        recorded: Some(recorded.clone()),
    };
    let replayed = replay::rebuild(&resolved, true)?;
    if first_kind(&replayed).as_ref() != Some(&shrunk.kind) {
        return Err(format!(
            "the minimal case did not fail with {} again (the program is not deterministic on this image)",
            shrunk.kind
        ));
    }
    if let Some(story) = &replayed.result.explanation {
        println!("{story}");
    }
    let point = shrunk.case.crashes.last().expect("a crash").point;
    let changes = kept_changes(&replayed.image.fates.to_explicit());
    println!(
        "minimal case ({}): crash point {} → {point}, volatile changes kept {} → {changes} ({} candidates judged in {:.1}s)",
        shrunk.kind,
        shrunk.original_point,
        shrunk.original_changes,
        shrunk.candidates,
        elapsed.as_secs_f64()
    );
    let violations: Vec<String> = replayed
        .result
        .violations
        .iter()
        .map(|(kind, message)| format!("{kind}: {message}"))
        .collect();
    let contents = Bundle {
        case_id: shrunk.case.to_string(),
        scenario_toml: scenario_toml.to_string(),
        verdict_json: serde_json::to_string_pretty(&violations).expect("serialises"),
        explanation: replayed.result.explanation.clone().unwrap_or_default(),
        trace: replayed
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                format!(
                    "{index:>6} {}\n",
                    crate::case::explain::describe_event(event)
                )
            })
            .collect(),
        image: replayed.image.files.clone(),
        recovered: None,
        expected: None,
        recorded: Some(recorded.clone()),
    };
    let name = out
        .file_name()
        .ok_or_else(|| format!("--out {} names no directory", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = out.parent().unwrap_or(Path::new("."));
    let dir = bundle::write(parent, &name, &contents).map_err(|e| e.to_string())?;
    println!("minimal bundle written to {}", dir.display());
    println!(
        "  powercut replay {}",
        crate::supervisor::process::shell_quote(&dir.to_string_lossy())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn kept(indexes: &[usize]) -> ExplicitFates {
        ExplicitFates {
            changes: indexes
                .iter()
                .map(|index| (*index, ChangeFate::Persisted))
                .collect::<BTreeMap<_, _>>(),
            media: None,
        }
    }

    /// The finding-3 shape: a write kept at 12 of a crash at 16 whose
    /// other pending changes were dropped; the tight point is 13.
    #[test]
    fn the_tight_point_is_just_after_the_last_kept_change() {
        assert_eq!(tight_point(&kept(&[1, 12]), 16), Some(13));
        assert_eq!(tight_point(&kept(&[15]), 16), None, "already tight");
        assert_eq!(tight_point(&kept(&[]), 16), None, "nothing persists");
    }
}
