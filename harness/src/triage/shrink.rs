//! `powercut shrink CASE`: reduce a failing case while the same violation
//! kind persists.
//!
//! Every candidate is judged by [`replay::rebuild`] (the real workload killed
//! at its crash point, the real image builder, recovery in a verifier child)
//! and is kept only if its *first* violation has the original's kind and it
//! is strictly smaller by [`Size::key`]: fewer crash cycles, then fewer
//! transactions issued in the last cycle, then fewer operations (crash points
//! summed over cycles), then fewer persisted or torn volatile changes at the
//! final crash, then fewer torn ones, then no media fault. The search is
//! greedy and bounded: at most [`CANDIDATES_MAX`] candidates within the time
//! budget, each scan by its own `*_MAX`.
//!
//! Steps, in order, repeated while they help (at most [`ROUNDS_MAX`]):
//! 1. the last crash's seeded fault choices become explicit ones (the same
//!    image, now editable);
//! 2. fewer cycles: a prefix of the crash list whose last crash is re-chosen
//!    (points scanned, all-dropped and seeded fates);
//! 3. a smaller workload: `txns=` and `value=` limits halved while the case
//!    still fails; the changed trace gets its crash re-chosen the same way;
//! 4. an earlier crash point in the last cycle (big steps back first), fates
//!    of events at or after the new point removed;
//! 5. fewer fates: persisted and torn changes removed in batches, then one
//!    by one (delta debugging), torn writes made whole, the media fault
//!    removed;
//! 6. earlier crash points in earlier cycles.
//!
//! Not done: shrinking earlier cycles' fault choices (only the last crash's
//! fates are made explicit), sector-level edits inside a torn write
//! (garbage to lost), and fewer operations inside one transaction.

use crate::case::bundle::{self, Bundle};
use crate::case::explain::describe_event;
use crate::case::id::{CaseId, Crash, FaultSeed};
use crate::exit;
use crate::fault::image::{ChangeFate, ExplicitFates};
use crate::fault::trace::Event;
use crate::supervisor::trial::mix;
use crate::triage::replay::{self, Replayed, Resolved};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The time budget unless `--budget` says otherwise.
pub const BUDGET_DEFAULT: Duration = Duration::from_secs(60);
/// Candidates judged (replays) at most.
pub const CANDIDATES_MAX: usize = 5_000;
/// Crash points scanned when a crash must be re-chosen.
pub const POINT_SCAN_MAX: u64 = 32;
/// Fault seeds tried at each scanned point (besides all-dropped).
pub const SEEDS_PER_POINT_MAX: u64 = 2;
/// Halvings of one workload limit at most.
pub const HALVINGS_MAX: usize = 16;
/// Passes of the point/fates/earlier-cycles steps at most.
pub const ROUNDS_MAX: usize = 4;
/// Steps back from one crash point at most (a guard on the ladder loop).
pub const STEPS_BACK_MAX: usize = 4_096;

/// `powercut shrink` arguments.
#[derive(clap::Args, Debug)]
pub struct ShrinkArgs {
    /// A failing case id (as `powercut run` prints it) or a failure bundle directory.
    pub case: String,
    /// Time to spend judging candidates, e.g. 30s, 2m.
    #[arg(long, default_value = "60s")]
    pub budget: String,
    /// Directory for the minimal case's bundle [default: shrunk/<bundle-name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Shrink under this target mode (NAME:MODE) instead of the case's own.
    #[arg(long)]
    pub target: Option<String>,
}

/// How big a case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub cycles: usize,
    /// Transactions issued in the last cycle before its crash.
    pub txns: usize,
    /// Crash points summed over cycles.
    pub ops_total: u64,
    /// The last cycle's crash point.
    pub ops_last: u64,
    /// Volatile changes persisted whole or torn at the final crash.
    pub volatile_writes: usize,
    pub torn: usize,
    pub media: bool,
    /// Bytes of values written by the last cycle's transactions.
    pub value_bytes: usize,
    /// The case's workload limits (`u32::MAX`: the scenario's own); a
    /// lower limit that keeps the same trace prefix is still smaller.
    pub txns_limit: u32,
    pub value_limit: u32,
}

impl Size {
    fn of(case: &CaseId, replayed: &Replayed) -> Size {
        let fates = &replayed.image.fates;
        let kept = || {
            fates
                .changes
                .iter()
                .filter(|record| record.fate != ChangeFate::Dropped)
        };
        Size {
            cycles: case.crashes.len(),
            txns: replayed
                .events
                .iter()
                .filter(|event| matches!(event, Event::CommitIssued { .. }))
                .count(),
            ops_total: case.crashes.iter().map(|crash| crash.point).sum(),
            ops_last: case.crash().point,
            volatile_writes: kept().count(),
            torn: kept()
                .filter(|record| matches!(record.fate, ChangeFate::Torn(_)))
                .count(),
            media: fates.media.is_some(),
            txns_limit: case.limits.txns_max.unwrap_or(u32::MAX),
            value_limit: case.limits.value_len_max.unwrap_or(u32::MAX),
            value_bytes: replayed
                .events
                .iter()
                .map(|event| match event {
                    Event::CommitIssued { writes, .. } => writes
                        .iter()
                        .map(|(_, value)| value.as_ref().map_or(0, Vec::len))
                        .sum(),
                    _ => 0,
                })
                .sum(),
        }
    }

    /// The order candidates are compared in (smaller is better).
    pub fn key(&self) -> (usize, usize, u64, usize, usize, bool, usize, u32, u32) {
        (
            self.cycles,
            self.txns,
            self.ops_total,
            self.volatile_writes,
            self.torn,
            self.media,
            self.value_bytes,
            self.txns_limit,
            self.value_limit,
        )
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "{} ops, {}, {}, {}",
            self.ops_total,
            plural(self.cycles, "cycle"),
            plural(self.txns, "txn"),
            plural(self.volatile_writes, "volatile write"),
        )?;
        if self.torn > 0 {
            write!(f, " ({} torn)", self.torn)?;
        }
        if self.media {
            write!(f, ", a media fault")?;
        }
        write!(f, ", {} value bytes", self.value_bytes)?;
        if self.txns_limit != u32::MAX {
            write!(f, ", txns={}", self.txns_limit)?;
        }
        if self.value_limit != u32::MAX {
            write!(f, ", value={}", self.value_limit)?;
        }
        Ok(())
    }
}

/// A judged case that fails the original way.
pub struct Candidate {
    pub case: CaseId,
    pub replayed: Replayed,
    pub size: Size,
}

/// The greedy search state.
pub struct Shrinker {
    scenario_toml: String,
    kind: String,
    deadline: Instant,
    pub candidates: usize,
    pub best: Candidate,
}

/// The outcome of a shrink.
pub struct Shrunk {
    pub kind: String,
    pub original: Size,
    pub best: Candidate,
    pub candidates: usize,
}

/// Shrinks a resolved case; `Ok(None)` if it does not fail at all.
pub fn shrink(resolved: Resolved, budget: Duration) -> Result<Option<Shrunk>, String> {
    let replayed = replay::rebuild(&resolved, false)?;
    let Some((kind, _)) = replayed.result.violations.first() else {
        return Ok(None);
    };
    let kind = kind.clone();
    let size = Size::of(&resolved.case, &replayed);
    let mut shrinker = Shrinker {
        scenario_toml: resolved.plan.setup.scenario_toml.clone(),
        kind: kind.clone(),
        deadline: Instant::now() + budget,
        candidates: 0,
        best: Candidate {
            case: resolved.case,
            replayed,
            size,
        },
    };
    shrinker.make_explicit();
    shrinker.fewer_cycles();
    shrinker.smaller_workload(true);
    for _ in 0..ROUNDS_MAX {
        let before = shrinker.best.size;
        shrinker.smaller_workload(false);
        shrinker.earlier_point();
        shrinker.fewer_fates();
        shrinker.earlier_cycles_points();
        if shrinker.best.size == before || shrinker.exhausted() {
            break;
        }
    }
    Ok(Some(Shrunk {
        kind,
        original: size,
        candidates: shrinker.candidates,
        best: shrinker.best,
    }))
}

fn with_last(case: &CaseId, crash: Crash) -> CaseId {
    let mut case = case.clone();
    *case.crashes.last_mut().expect("a case has a crash") = crash;
    case
}

/// The crash moved to `point`: explicit fates of events at or after it go.
fn crash_at(crash: &Crash, point: u64) -> Crash {
    let faults = match &crash.faults {
        FaultSeed::Seeded(seed) => FaultSeed::Seeded(*seed),
        FaultSeed::Explicit(fates) => FaultSeed::Explicit(ExplicitFates {
            changes: fates
                .changes
                .iter()
                .filter(|(event, _)| (**event as u64) < point)
                .map(|(event, fate)| (*event, fate.clone()))
                .collect(),
            media: fates.media.clone(),
        }),
    };
    Crash { point, faults }
}

impl Shrinker {
    fn exhausted(&self) -> bool {
        self.candidates >= CANDIDATES_MAX || Instant::now() >= self.deadline
    }

    /// Replays `case`; `Some` if its first violation has the original kind.
    fn judge(&mut self, case: CaseId) -> Option<Candidate> {
        if self.exhausted() {
            return None;
        }
        self.candidates += 1;
        let plan = replay::plan_for(&case, self.scenario_toml.clone()).ok()?;
        let resolved = Resolved {
            case,
            plan,
            recorded: None,
        };
        let replayed = replay::rebuild(&resolved, false).ok()?;
        let first = replayed.result.violations.first().map(|(kind, _)| kind);
        if first != Some(&self.kind) {
            return None;
        }
        let size = Size::of(&resolved.case, &replayed);
        Some(Candidate {
            case: resolved.case,
            replayed,
            size,
        })
    }

    /// Takes `case` as the best if it fails the same way and is smaller.
    fn accept(&mut self, case: CaseId) -> bool {
        match self.judge(case) {
            Some(candidate) if candidate.size.key() < self.best.size.key() => {
                assert!(candidate.size.cycles <= self.best.size.cycles);
                self.best = candidate;
                self.make_explicit();
                true
            }
            _ => false,
        }
    }

    /// Step 1: the last crash's seeded choices, as explicit fates.
    fn make_explicit(&mut self) {
        if !matches!(self.best.case.crash().faults, FaultSeed::Seeded(_)) {
            return;
        }
        let explicit = Crash {
            point: self.best.case.crash().point,
            faults: FaultSeed::Explicit(self.best.replayed.image.fates.to_explicit()),
        };
        let case = with_last(&self.best.case, explicit);
        // The same image by construction; judged anyway, as the proof.
        if let Some(candidate) = self.judge(case) {
            assert_eq!(
                candidate.replayed.image.files,
                self.best.replayed.image.files
            );
            self.best = candidate;
        }
    }

    /// Re-chooses the last crash of `template`: the points of a grid over
    /// `1..=point_max`, ascending, each with all changes dropped, with the
    /// best case's fates before the point, and with seeded fates. Stops at the first smaller failing case.
    fn rechoose_crash(&mut self, template: &CaseId, point_max: u64, seed: u64) -> bool {
        let point_max = point_max.max(1);
        let step = point_max.div_ceil(POINT_SCAN_MAX).max(1);
        let mut point = step.min(point_max);
        loop {
            let mut choices = vec![
                FaultSeed::Explicit(ExplicitFates::default()),
                crash_at(self.best.case.crash(), point).faults,
            ];
            choices.extend((0..SEEDS_PER_POINT_MAX).map(|i| FaultSeed::Seeded(mix(seed, i))));
            for faults in choices {
                if self.accept(with_last(template, Crash { point, faults })) {
                    return true;
                }
            }
            if point >= point_max || self.exhausted() {
                return false;
            }
            point = (point + step).min(point_max);
        }
    }

    fn seed(&self) -> u64 {
        match self.best.case.crash().faults {
            FaultSeed::Seeded(seed) => seed,
            FaultSeed::Explicit(_) => mix(self.best.case.seed, self.best.case.trial),
        }
    }

    /// Step 2: an earlier cycle's crash state that fails the same way.
    fn fewer_cycles(&mut self) {
        for cycles in 1..self.best.case.crashes.len() {
            let mut template = self.best.case.clone();
            template.crashes.truncate(cycles);
            let point_max = template.crash().point.max(self.best.case.crash().point);
            if self.rechoose_crash(&template, point_max, self.seed()) {
                return;
            }
        }
    }

    /// Step 3: fewer transactions, then smaller values (halved, else cut by
    /// a quarter, while the case fails); with `rechoose`, a
    /// changed trace gets its last crash re-chosen.
    fn smaller_workload(&mut self, rechoose: bool) {
        let Ok(plan) = replay::plan_for(&self.best.case, self.scenario_toml.clone()) else {
            return;
        };
        let workload = &plan.scenario.workload;
        let (txns, value) = (workload.txns_per_cycle, workload.value_size.max);
        let tag = crate::oracle::tag::TAG_LEN as u32;
        for _ in 0..HALVINGS_MAX {
            let current = self.best.case.limits.txns_max.unwrap_or(txns).min(txns);
            let smaller = [current / 2, current - current / 4]
                .into_iter()
                .filter(|target| (1..current).contains(target))
                .any(|target| self.limit_step(rechoose, |limits| limits.txns_max = Some(target)));
            if !smaller {
                break;
            }
        }
        for _ in 0..HALVINGS_MAX {
            let current = self
                .best
                .case
                .limits
                .value_len_max
                .unwrap_or(value)
                .min(value);
            let smaller = [current / 2, current - current / 4]
                .into_iter()
                .filter(|target| (tag..current).contains(target))
                .any(|target| {
                    self.limit_step(rechoose, |limits| limits.value_len_max = Some(target))
                });
            if !smaller {
                break;
            }
        }
    }

    /// One limit change: the same crash first (the trace prefix may not
    /// change), then every earlier cycle kept and the last crash re-chosen.
    fn limit_step(
        &mut self,
        rechoose: bool,
        change: impl Fn(&mut crate::case::id::WorkloadLimits),
    ) -> bool {
        let mut case = self.best.case.clone();
        change(&mut case.limits);
        if self.accept(case.clone()) {
            return true;
        }
        if !rechoose {
            return false;
        }
        let (point_max, seed) = (case.crash().point, self.seed());
        self.rechoose_crash(&case, point_max, seed)
    }

    /// Step 4: an earlier crash point in the last cycle: big steps back
    /// first, then the points just after an acknowledgment or a sync (where
    /// a promise starts), earliest first.
    fn earlier_point(&mut self) {
        for _ in 0..STEPS_BACK_MAX {
            let point = self.best.case.crash().point;
            let mut step = point / 2;
            let mut moved = false;
            while step >= 1 && !moved {
                let crash = crash_at(self.best.case.crash(), point - step);
                moved = self.accept(with_last(&self.best.case, crash));
                step /= 2;
            }
            for after in self.promise_points() {
                if moved {
                    break;
                }
                let crash = crash_at(self.best.case.crash(), after);
                moved = self.accept(with_last(&self.best.case, crash));
            }
            if !moved {
                return;
            }
        }
    }

    /// Points just after an acknowledgment or a sync in the last cycle,
    /// before its crash, earliest first; at most [`POINT_SCAN_MAX`].
    fn promise_points(&self) -> Vec<u64> {
        let point = self.best.case.crash().point;
        (1u64..)
            .zip(&self.best.replayed.events)
            .filter(|(_, event)| {
                matches!(
                    event,
                    Event::Acked { .. }
                        | Event::CheckpointAcked
                        | Event::SyncData { .. }
                        | Event::SyncAll { .. }
                        | Event::SyncDir { .. }
                )
            })
            .map(|(after, _)| after)
            .filter(|after| *after < point)
            .take(POINT_SCAN_MAX as usize)
            .collect()
    }

    fn fates(&self) -> Option<ExplicitFates> {
        match &self.best.case.crash().faults {
            FaultSeed::Explicit(fates) => Some(fates.clone()),
            FaultSeed::Seeded(_) => None,
        }
    }

    fn accept_fates(&mut self, fates: ExplicitFates) -> bool {
        let point = self.best.case.crash().point;
        let crash = Crash {
            point,
            faults: FaultSeed::Explicit(fates),
        };
        self.accept(with_last(&self.best.case, crash))
    }

    /// Step 5: fewer persisted and torn changes, no tears, no media fault.
    fn fewer_fates(&mut self) {
        let Some(fates) = self.fates() else {
            return;
        };
        if fates.media.is_some() {
            self.accept_fates(ExplicitFates {
                media: None,
                ..fates
            });
        }
        let events: Vec<usize> = self
            .fates()
            .map_or(Vec::new(), |f| f.changes.keys().copied().collect());
        let mut chunk = events.len().div_ceil(2).max(1);
        while !events.is_empty() && !self.exhausted() {
            for batch in events.chunks(chunk) {
                let Some(mut fates) = self.fates() else {
                    return;
                };
                let before = fates.changes.len();
                fates.changes.retain(|event, _| !batch.contains(event));
                if fates.changes.len() < before {
                    self.accept_fates(fates);
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        let torn: Vec<usize> = self.fates().map_or(Vec::new(), |f| {
            f.changes
                .iter()
                .filter(|(_, fate)| matches!(fate, ChangeFate::Torn(_)))
                .map(|(event, _)| *event)
                .collect()
        });
        for event in torn {
            if let Some(mut fates) = self.fates() {
                fates.changes.insert(event, ChangeFate::Persisted);
                self.accept_fates(fates);
            }
        }
    }

    /// Step 6: earlier crash points in the earlier cycles (their traces
    /// change what follows, so this rarely keeps the failure; bounded).
    fn earlier_cycles_points(&mut self) {
        for cycle in 0..self.best.case.crashes.len().saturating_sub(1) {
            let point = self.best.case.crashes[cycle].point;
            let mut step = point / 2;
            while step >= 1 && !self.exhausted() {
                let mut case = self.best.case.clone();
                case.crashes[cycle] = crash_at(&case.crashes[cycle], point - step);
                if self.accept(case) {
                    break;
                }
                step /= 2;
            }
        }
    }
}

/// The `--explain` story (headed by the full case id, limits included).
fn story_of(replayed: &Replayed) -> String {
    replayed.result.explanation.clone().unwrap_or_default()
}

/// The minimal case's bundle: case id, scenario, verdict, story, trace, image.
fn bundle_of(case: &CaseId, scenario_toml: &str, replayed: &Replayed) -> Bundle {
    let violations: Vec<String> = replayed
        .result
        .violations
        .iter()
        .map(|(kind, message)| format!("{kind}: {message}"))
        .collect();
    Bundle {
        case_id: case.to_string(),
        scenario_toml: scenario_toml.to_string(),
        verdict_json: serde_json::to_string_pretty(&violations).expect("serialises"),
        explanation: story_of(replayed),
        trace: replayed
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| format!("{index:>6} {}\n", describe_event(event)))
            .collect(),
        image: replayed.image.files.clone(),
        recovered: None,
        expected: None,
        recorded: None,
    }
}

/// Bundle names stay well below file-name limits (explicit fates are long).
pub const BUNDLE_NAME_LEN_MAX: usize = 120;

fn short_bundle_name(case: &CaseId) -> String {
    let name = case.bundle_name();
    if name.len() <= BUNDLE_NAME_LEN_MAX {
        return name;
    }
    let head: String = name.chars().take(BUNDLE_NAME_LEN_MAX - 9).collect();
    format!("{head}_{:08x}", crc32c::crc32c(name.as_bytes()))
}

/// `powercut shrink`; returns the exit code.
pub fn main(args: &ShrinkArgs) -> i32 {
    let budget = match crate::workload::scenario::parse_duration(&args.budget) {
        Ok(budget) => budget,
        Err(message) => {
            eprintln!("powercut: --budget: {message}");
            return exit::USAGE;
        }
    };
    let resolved = match replay::resolve(&args.case, args.target.as_deref()) {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::USAGE;
        }
    };
    if let Some(recorded) = resolved.recorded.clone() {
        return shrink_recorded(args, resolved, &recorded, budget);
    }
    let scenario_toml = resolved.plan.setup.scenario_toml.clone();
    let started = Instant::now();
    let shrunk = match shrink(resolved, budget) {
        Ok(Some(shrunk)) => shrunk,
        Ok(None) => {
            println!(
                "did not reproduce: case {} recovers to a valid state",
                args.case
            );
            return exit::OK;
        }
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::HARNESS_FAILED;
        }
    };
    match report(args, &scenario_toml, &shrunk, started.elapsed()) {
        Ok(()) => exit::VIOLATIONS,
        Err(message) => {
            eprintln!("powercut: {message}");
            exit::HARNESS_FAILED
        }
    }
}

/// `shrink` of a process target's bundle ([`super::process_shrink`]).
fn shrink_recorded(
    args: &ShrinkArgs,
    resolved: Resolved,
    recorded: &crate::case::bundle::RecordedCycle,
    budget: Duration,
) -> i32 {
    let scenario_toml = resolved.plan.setup.scenario_toml.clone();
    let started = Instant::now();
    let shrunk = match super::process_shrink::shrink(resolved, recorded, budget) {
        Ok(Some(shrunk)) => shrunk,
        Ok(None) => {
            println!("the case does not fail: nothing to shrink");
            return exit::OK;
        }
        Err(message) => {
            eprintln!("powercut: {message}");
            return exit::HARNESS_FAILED;
        }
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("shrunk").join(short_bundle_name(&shrunk.case)));
    match super::process_shrink::report(&shrunk, &scenario_toml, recorded, &out, started.elapsed())
    {
        Ok(()) => exit::VIOLATIONS,
        Err(message) => {
            eprintln!("powercut: {message}");
            exit::HARNESS_FAILED
        }
    }
}

fn report(
    args: &ShrinkArgs,
    scenario_toml: &str,
    shrunk: &Shrunk,
    elapsed: Duration,
) -> Result<(), String> {
    let case = &shrunk.best.case;
    let plan = replay::plan_for(case, scenario_toml.to_string())?;
    let resolved = Resolved {
        case: case.clone(),
        plan,
        recorded: None,
    };
    let replayed = replay::rebuild(&resolved, true)?;
    let first = replayed.result.violations.first().map(|(kind, _)| kind);
    if first != Some(&shrunk.kind) {
        return Err(format!(
            "the minimal case {case} did not fail with {} again: the harness is not deterministic",
            shrunk.kind
        ));
    }
    let story = story_of(&replayed);
    println!("{story}");
    println!("minimal case ({}):", shrunk.kind);
    println!("  powercut replay {case}");
    println!(
        "reduction: {} → {} (ops = crash points summed over cycles; last cycle {} → {} ops; {} candidates judged in {:.1}s)",
        shrunk.original,
        shrunk.best.size,
        shrunk.original.ops_last,
        shrunk.best.size.ops_last,
        shrunk.candidates,
        elapsed.as_secs_f64()
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("shrunk").join(short_bundle_name(case)));
    let name = out
        .file_name()
        .ok_or_else(|| format!("--out {} names no directory", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = out.parent().unwrap_or(Path::new("."));
    let dir = bundle::write(parent, &name, &bundle_of(case, scenario_toml, &replayed))
        .map_err(|e| e.to_string())?;
    println!("minimal bundle written to {}", dir.display());
    Ok(())
}
