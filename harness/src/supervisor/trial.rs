//! One trial: a chain of crash cycles of one workload × policy × fault.
//!
//! Cycle `c` runs the workload in a forked child on the recording storage,
//! starting from the crash image the previous cycle left (so its trace
//! begins with recovery, and crashes during recovery are part of the mix).
//! Because the workload is deterministic, every prefix of the trace is
//! exactly what a kill at that operation index would leave: the trial
//! samples many crash points (biased toward syncs, checkpoints and recovery)
//! and several fault choices per point from one run, and verifies each crash
//! state in isolated verifier children. One of the states, chosen by the
//! seed, becomes the next cycle's starting image.

use super::protocol::{TrialOutcome, WorkerSetup};
use super::verify::{self, BundleBudget, CycleInput, StateResult};
use super::workload_child::{self, WorkloadRun};
use crate::case::id::{CaseId, Crash, FaultSeed, WorkloadLimits};
use crate::fault::FaultProfile;
use crate::fault::exhaustive::{Exhaustive, sync_windows};
use crate::fault::image::build_image;
use crate::fault::points::choose_crash_points;
use crate::oracle::ViolationKind;
use crate::report::{Failure, TrialRow};
use crate::target::sqlite::vfs::VfsBugSet;
use crate::target::{PlantedBug, Start, State, TargetFactory, TargetSettings};
use crate::workload::scenario::{Combo, Scenario};
use engine::BugSet;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Instant;

/// A trial's seed-derived streams are kept apart by these salts.
const SALT_CRASH_POINTS: u64 = 0xC4A5_0001;
const SALT_FAIL_SYNC: u64 = 0xC4A5_0002;
const SALT_CONTINUE: u64 = 0xC4A5_0003;
const SALT_EXHAUSTIVE: u64 = 0xC4A5_0004;
const SALT_STEADY: u64 = 0xC4A5_0005;

/// Exhaustive crash states verified per cycle at most.
pub const EXHAUSTIVE_STATES_MAX: usize = 1 << 14;

/// Under `fsync-error`, the sync that fails is drawn from `0..FAIL_SYNC_RANGE`.
pub const FAIL_SYNC_RANGE: u64 = 48;

/// Mixes two numbers into a well-spread seed (SplitMix64 finaliser).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The workload txn ids of cycle `cycle` start here (cycles never share ids).
pub fn txn_id_base(cycle: usize) -> u64 {
    (cycle as u64 + 1) << 32
}

/// Virtual time at which cycle `cycle` starts.
pub fn cycle_start_us(cycle: usize) -> u64 {
    (cycle as u64 + 1) * 1_000_000_000
}

/// What the previous cycles left: the durable image and its validated state.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    pub image: BTreeMap<String, Vec<u8>>,
    pub state: State,
    pub crashes: Vec<Crash>,
}

/// The run's scenario with the command line's overrides applied.
pub struct TrialPlan {
    pub setup: WorkerSetup,
    pub scenario: Scenario,
    pub combos: Vec<Combo>,
    pub bugs: BugSet,
    /// Planted bugs of SQLite's VFS.
    pub vfs_bugs: VfsBugSet,
    pub cycles: u32,
    /// Workload reductions a shrunk case carries (none in a run).
    pub limits: WorkloadLimits,
}

/// One crash state to verify: a crash point and its fault choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashState {
    pub point: usize,
    pub faults: FaultSeed,
}

impl TrialPlan {
    /// Parses the scenario and applies the overrides (already validated by
    /// the dispatcher, so an error here is a harness failure).
    pub fn new(setup: &WorkerSetup) -> Result<TrialPlan, String> {
        let mut scenario = Scenario::from_toml(&setup.scenario_toml, &setup.scenario_label)
            .map_err(|e| e.to_string())?;
        scenario.select(&setup.targets, &setup.policies)?;
        if !setup.faults.is_empty() {
            scenario.faults = setup
                .faults
                .iter()
                .map(|f| f.parse())
                .collect::<Result<_, _>>()?;
        }
        let mut bugs = scenario.bugs;
        let mut vfs_bugs = VfsBugSet::NONE;
        for bug in &setup.bugs {
            match bug.parse::<PlantedBug>()? {
                PlantedBug::Engine(bug) => bugs = bugs.with(bug),
                PlantedBug::Vfs(bug) => vfs_bugs = vfs_bugs.with(bug),
            }
        }
        let cycles = setup.cycles.unwrap_or(scenario.cycles);
        Ok(TrialPlan {
            setup: setup.clone(),
            combos: scenario.combos(),
            scenario,
            bugs,
            vfs_bugs,
            cycles,
            limits: WorkloadLimits::default(),
        })
    }

    pub fn combo(&self, trial: u64) -> Combo {
        self.combos[(trial % self.combos.len() as u64) as usize]
    }

    /// The case id of crash `crash` after the chain's earlier crashes.
    pub fn case_id(&self, trial: u64, chain: &Chain, crash: Crash) -> CaseId {
        let combo = self.combo(trial);
        let mut crashes = chain.crashes.clone();
        crashes.push(crash);
        CaseId {
            scenario: self.setup.scenario_label.clone(),
            workload: combo.workload.name().to_string(),
            target: combo.target,
            fault: combo.fault,
            bugs: self.bugs,
            vfs_bugs: self.vfs_bugs,
            seed: self.setup.seed,
            trial,
            crashes,
            limits: self.limits,
            start: combo.start,
        }
    }

    /// Crash cycles a trial of `fault` runs. A media fault destroys durable
    /// history, which may legitimately take earlier cycles' commits with it;
    /// the oracle judges one cycle's history at a time and could not tell
    /// that loss from a wrong value, so media trials crash once.
    pub fn cycles_for(&self, fault: FaultProfile) -> usize {
        if fault == FaultProfile::Media {
            1
        } else {
            self.cycles as usize
        }
    }

    /// Opens the target every cycle of the trial runs.
    pub fn factory(&self, trial: u64) -> Box<dyn TargetFactory> {
        let combo = self.combo(trial);
        combo.target.factory(&self.target_settings())
    }

    /// What opening the trial's target needs: the engine's configuration
    /// and every planted bug.
    pub fn target_settings(&self) -> TargetSettings {
        TargetSettings {
            vfs_bugs: self.vfs_bugs,
            ..self.scenario.target_settings(self.bugs)
        }
    }

    /// Which sync fails in this cycle (`fsync-error` only).
    pub fn fail_sync(&self, fault: FaultProfile, cycle_seed: u64) -> Option<u64> {
        (fault == FaultProfile::FsyncError)
            .then(|| mix(cycle_seed, SALT_FAIL_SYNC) % FAIL_SYNC_RANGE)
    }

    pub fn cycle_seed(&self, trial: u64, cycle: usize) -> u64 {
        mix(mix(self.setup.seed, trial), cycle as u64)
    }

    /// What trial `trial`'s first cycle starts from: nothing, or the disk
    /// and state of a clean steady-state run (see [`super::steady`]).
    pub fn start_chain(&self, trial: u64) -> Result<Chain, String> {
        let combo = self.combo(trial);
        match combo.start {
            Start::Empty => Ok(Chain {
                image: self.factory(trial).starting_image()?,
                ..Chain::default()
            }),
            Start::Steady => super::steady::steady_chain(
                self.factory(trial).as_ref(),
                &self.scenario.cycle_spec(combo),
                mix(mix(self.setup.seed, trial), SALT_STEADY),
            ),
        }
    }

    /// Runs trial `trial`; `bundles` says which bundles it may write.
    pub fn run_trial(
        &self,
        trial: u64,
        bundles: &mut BundleBudget,
    ) -> Result<TrialOutcome, String> {
        let started = Instant::now();
        let combo = self.combo(trial);
        let mut outcome = TrialOutcome {
            row: TrialRow {
                trial,
                scenario: self.setup.scenario_label.clone(),
                workload: combo.workload.name().to_string(),
                policy: combo.target.to_string(),
                fault: combo.fault.to_string(),
                start: combo.start.to_string(),
                ..TrialRow::default()
            },
            ..TrialOutcome::default()
        };
        let mut chain = self.start_chain(trial)?;
        for cycle in 0..self.cycles_for(combo.fault) {
            outcome.row.cycles += 1;
            let Some(next) = self.run_cycle(trial, cycle, &chain, &mut outcome, bundles)? else {
                break;
            };
            chain = next;
        }
        if outcome.row.case_id.is_empty() {
            outcome.row.case_id = chain
                .crashes
                .last()
                .map(|_| {
                    let mut earlier = chain.clone();
                    let last = earlier.crashes.pop().expect("non-empty");
                    self.case_id(trial, &earlier, last).to_string()
                })
                .unwrap_or_default();
        }
        outcome.row.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(outcome)
    }

    /// Runs and verifies cycle `cycle`; returns the chain for the next
    /// cycle, or `None` when the trial should stop (a failure was found).
    fn run_cycle(
        &self,
        trial: u64,
        cycle: usize,
        chain: &Chain,
        outcome: &mut TrialOutcome,
        bundles: &mut BundleBudget,
    ) -> Result<Option<Chain>, String> {
        let combo = self.combo(trial);
        let cycle_seed = self.cycle_seed(trial, cycle);
        let factory = self.factory(trial);
        let run = workload_child::run(&workload_child::WorkloadRequest {
            factory: factory.as_ref(),
            spec: &self.scenario.cycle_spec(combo),
            chain,
            cycle,
            seed: cycle_seed,
            fail_sync: self.fail_sync(combo.fault, cycle_seed),
            stop_at: None,
            chaos_seed: self.setup.chaos.then_some(cycle_seed),
        })?;
        let states = self.choose_states(&run, combo.fault, cycle_seed);
        let continue_at =
            ChaCha8Rng::seed_from_u64(mix(cycle_seed, SALT_CONTINUE)).random_range(0..states.len());
        let input = CycleInput {
            plan: self,
            trial,
            cycle,
            chain,
            events: &run.events,
            times: &run.times,
            factory: factory.as_ref(),
            explain: false,
        };
        let results = verify::verify_states(&input, &states, Some(continue_at), bundles)?;
        let mut next = None;
        for (state, result) in states.iter().zip(&results) {
            self.record(trial, chain, state, result, outcome);
            if results.iter().all(|r| r.violations.is_empty()) && result.continuation.is_some() {
                next = result.continuation.clone();
            }
        }
        if let Some(k) = self.setup.exhaustive {
            let exhaustive = self.exhaustive_states(chain, &run, combo.fault, k, cycle_seed)?;
            let results = verify::verify_states(&input, &exhaustive, None, bundles)?;
            outcome.exhaustive_states += exhaustive.len() as u64;
            for (state, result) in exhaustive.iter().zip(&results) {
                self.record(trial, chain, state, result, outcome);
                if !result.violations.is_empty() {
                    next = None;
                }
            }
        }
        if let Some(problem) = &run.problem {
            // The workload itself died or hung (an engine panic outside
            // recovery, or recovery of a verified image failing): a finding.
            let crash = Crash {
                point: run.events.len() as u64,
                faults: FaultSeed::Seeded(0),
            };
            let unpromised = combo.target.promise(combo.fault) == crate::target::PromiseKind::None;
            count_cause(
                combo.target,
                problem.kind.name(),
                &problem.message,
                if unpromised {
                    &mut outcome.unpromised_causes
                } else {
                    &mut outcome.violation_causes
                },
            );
            if unpromised {
                outcome.row.unpromised += 1;
                *outcome
                    .unpromised_by_kind
                    .entry(problem.kind.name().to_string())
                    .or_insert(0) += 1;
                return Ok(None);
            }
            outcome.failures.push(Failure {
                case_id: self.case_id(trial, chain, crash).to_string(),
                kind: problem.kind.name().to_string(),
                message: problem.message.clone(),
                no_bundle: Some(
                    "the workload process itself failed, before any crash state of its cycle was verified"
                        .into(),
                ),
            });
            outcome.row.violations += 1;
            return Ok(None);
        }
        let Some(continuation) = next else {
            return Ok(None);
        };
        let chosen = &states[continue_at];
        let image = build_image(
            &chain.image,
            &run.events,
            chosen.point,
            combo.fault,
            u64::from(self.scenario.crash.sector_size),
            &chosen.faults.to_choices(),
        )
        .map_err(|e| format!("cannot rebuild the continuation image: {e}"))?;
        let mut crashes = chain.crashes.clone();
        crashes.push(Crash {
            point: chosen.point as u64,
            faults: chosen.faults.clone(),
        });
        Ok(Some(Chain {
            image: image.files,
            state: continuation.state(),
            crashes,
        }))
    }

    /// Every crash point of one sync window (chosen by the seed) and every
    /// subset of the last `k` volatile changes at each, as explicit fates
    /// (power loss without tearing; none under `process-crash` or `media`).
    fn exhaustive_states(
        &self,
        chain: &Chain,
        run: &WorkloadRun,
        fault: FaultProfile,
        k: u32,
        cycle_seed: u64,
    ) -> Result<Vec<CrashState>, String> {
        if matches!(fault, FaultProfile::ProcessCrash | FaultProfile::Media) {
            return Ok(Vec::new());
        }
        let windows: Vec<_> = sync_windows(&run.events)
            .into_iter()
            .filter(|window| !window.is_empty())
            .collect();
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(cycle_seed, SALT_EXHAUSTIVE));
        let window = windows[rng.random_range(0..windows.len())].clone();
        let sector_size = u64::from(self.scenario.crash.sector_size);
        let mut enumeration =
            Exhaustive::new(&chain.image, &run.events, window, k as usize, sector_size)
                .map_err(|e| format!("exhaustive mode: {e}"))?;
        let mut states = Vec::new();
        while let Some(state) = enumeration
            .next_state()
            .map_err(|e| format!("exhaustive mode: {e}"))?
        {
            if states.len() == EXHAUSTIVE_STATES_MAX {
                break;
            }
            states.push(CrashState {
                point: state.crash_point,
                faults: FaultSeed::Explicit(state.choices),
            });
        }
        Ok(states)
    }

    /// The crash states of one cycle: biased crash points, several fault
    /// choices each (one for `process-crash`, which has no choices).
    fn choose_states(
        &self,
        run: &WorkloadRun,
        fault: FaultProfile,
        cycle_seed: u64,
    ) -> Vec<CrashState> {
        let crash = &self.scenario.crash;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(cycle_seed, SALT_CRASH_POINTS));
        let mut points =
            choose_crash_points(&run.events, &mut rng, crash.points_per_trial as usize);
        points.sort_unstable();
        points.dedup();
        if points.is_empty() {
            points.push(run.events.len());
        }
        let per_point = if fault == FaultProfile::ProcessCrash {
            1
        } else {
            crash.states_per_point as usize
        };
        let mut states = Vec::with_capacity(points.len() * per_point);
        for point in points {
            for _ in 0..per_point {
                states.push(CrashState {
                    point,
                    faults: FaultSeed::Seeded(rng.random::<u64>()),
                });
            }
        }
        states
    }

    fn record(
        &self,
        trial: u64,
        chain: &Chain,
        state: &CrashState,
        result: &StateResult,
        outcome: &mut TrialOutcome,
    ) {
        let row = &mut outcome.row;
        row.crash_states += 1;
        row.acked += result.acked;
        row.acked_lost_permitted += result.acked_lost_permitted;
        outcome.loss_window_max_us = outcome.loss_window_max_us.max(result.loss_window_max_us);
        outcome.states_covering_promise += u64::from(result.covers_promise);
        if result.recovery_us > 0 {
            // 0: recovery did not finish (hang, panic, error), a violation.
            outcome.recovery_us.push(result.recovery_us);
        }
        if let Some(bundle) = &result.bundle {
            outcome.bundles.push(bundle.clone());
        }
        // A hang or crash of recovery is found in the worker, after the
        // verifier's own reclassification.
        let mut result = result.clone();
        result.set_promise(self.combo(trial).target.promise(self.combo(trial).fault));
        let loss_only = |kind: &str| {
            kind == ViolationKind::LostAck.name() || kind == ViolationKind::BeyondWindow.name()
        };
        if result
            .violations
            .iter()
            .chain(&result.unpromised)
            .any(|(kind, _)| !loss_only(kind))
        {
            row.corrupt_states += 1;
        }
        let target = self.combo(trial).target;
        for (kind, message) in &result.unpromised {
            count_cause(target, kind, message, &mut outcome.unpromised_causes);
        }
        for (kind, message) in &result.violations {
            count_cause(target, kind, message, &mut outcome.violation_causes);
        }
        let row = &mut outcome.row;
        for (kind, _) in &result.unpromised {
            row.unpromised += 1;
            *outcome.unpromised_by_kind.entry(kind.clone()).or_insert(0) += 1;
            if !outcome.unpromised_cases.contains_key(kind) {
                let crash = Crash {
                    point: state.point as u64,
                    faults: state.faults.clone(),
                };
                let case_id = self.case_id(trial, chain, crash).to_string();
                outcome.unpromised_cases.insert(kind.clone(), case_id);
            }
        }
        row.unpromised_kinds = outcome
            .unpromised_by_kind
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect::<Vec<_>>()
            .join(";");
        let Some((kind, message)) = result.violations.first() else {
            return;
        };
        let case_id = self
            .case_id(
                trial,
                chain,
                Crash {
                    point: state.point as u64,
                    faults: state.faults.clone(),
                },
            )
            .to_string();
        row.violations += result.violations.len() as u64;
        if row.violation_kind.is_empty() {
            row.violation_kind = kind.clone();
            row.case_id = case_id.clone();
        }
        outcome.failures.push(Failure {
            case_id,
            kind: kind.clone(),
            message: message.clone(),
            no_bundle: result.no_bundle.clone(),
        });
    }
}

/// Counts an outcome under `kind: cause` when its target names a cause.
fn count_cause(
    target: crate::target::TargetMode,
    kind: &str,
    message: &str,
    causes: &mut std::collections::BTreeMap<String, u64>,
) {
    if let Some(cause) = target.kind().cause(message) {
        *causes.entry(format!("{kind}: {cause}")).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_counted_by_kind_where_the_target_names_them() {
        use crate::target::process::postgres::PgMode;
        let mut causes = std::collections::BTreeMap::new();
        let postgres = crate::target::TargetMode::Postgres(PgMode::Sync);
        let empty =
            "PostgreSQL did not start; its log: [1] FATAL:  lock file \"postmaster.pid\" is empty";
        count_cause(postgres, "recovery-error", empty, &mut causes);
        count_cause(postgres, "recovery-error", empty, &mut causes);
        count_cause(postgres, "lost-ack", "key 0x01 lost", &mut causes);
        let engine = crate::target::TargetMode::Engine(engine::FsyncPolicy::Always);
        count_cause(engine, "recovery-error", empty, &mut causes);
        assert_eq!(
            causes.into_iter().collect::<Vec<_>>(),
            [("recovery-error: lock-file-empty".to_string(), 2)]
        );
        let mut summary = crate::report::Summary::default();
        let pair = "postgres:sync × power-loss";
        let one = [("recovery-error: lock-file-empty".to_string(), 2)].into();
        crate::report::Summary::add_causes(&mut summary.violation_causes, pair, &one);
        crate::report::Summary::add_causes(&mut summary.violation_causes, pair, &one);
        assert_eq!(
            summary.violation_causes[pair]["recovery-error: lock-file-empty"],
            4
        );
    }

    #[test]
    fn seeds_mix_apart() {
        assert_ne!(mix(1, 2), mix(2, 1));
        assert_ne!(mix(0, 0), mix(0, 1));
        assert_eq!(mix(7, 9), mix(7, 9));
    }
}
