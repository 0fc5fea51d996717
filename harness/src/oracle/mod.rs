//! The oracle: what a recovered state must be (SPEC §4.2, §4.3).
//!
//! [`check`] compares a recovered state against the [`History`] of one crash
//! prefix, the `BTreeMap` model that knows which commits were issued and
//! acknowledged. The state must equal the model after a prefix P of the
//! commit-issue order (so P holds only issued transactions, has no hole and
//! every transaction is all or nothing) that keeps every acknowledged commit
//! the [`Promise`] keeps; the invariants must hold. Losses the promise
//! permits are counted in the [`Verdict`]. When no prefix matches, the value
//! tags ([`tag`]) say who wrote each recovered value, and the
//! violations name the transactions, keys and LSNs involved.
//!
//! What this checker does NOT check:
//! - recovery itself (panic, hang, error, idempotence, writability after
//!   recovery, clean close/reopen): the supervisor runs those and reports
//!   them with the recovery kinds of [`ViolationKind`];
//! - reads through the engine (`get`) as opposed to the scanned state;
//! - deletes of a transaction that was never issued (a phantom delete shows
//!   only as a missing value, so it is reported as a hole or a lost commit);
//! - which of two prefixes with identical states was recovered (the largest
//!   is assumed: the fewest losses);
//! - whether a failed commit (`CommitFailed`) survives: it may or may not;
//! - that acknowledgements themselves were legitimate (acknowledged before
//!   the data was durable): only their consequence after a crash is checked;
//! - events of more than one cycle: the caller passes one cycle's events and
//!   its base (the previous cycle's recovered state, wholly required).

pub mod history;
pub mod tag;
pub mod violation;

pub use history::{Ack, CommittedTxn, DurablePoint, History, state_hash};
pub use violation::{Violation, ViolationKind, display_key, display_keys};

use crate::fault::FaultProfile;
use crate::fault::trace::{TxnName, WorkloadTxnId};
use crate::target::{PromiseKind, State};
use std::collections::{BTreeMap, BTreeSet};

/// Violations of one kind reported individually; more are summarised.
pub const VIOLATIONS_PER_KIND_MAX: usize = 8;

/// A workload invariant checked on every recovered state.
pub trait Invariant {
    fn name(&self) -> &str;
    fn check(&self, state: &State) -> Result<(), InvariantBreach>;
}

/// How an invariant failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantBreach {
    pub message: String,
    pub keys: Vec<Vec<u8>>,
}

/// What the target mode under test promises for this crash (SPEC §4.3,
/// §9): its [`PromiseKind`] under `fault` (`TargetMode::promise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    pub kind: PromiseKind,
    pub fault: FaultProfile,
    /// Time of the crash (at least the last acknowledgement's): the last
    /// recorded event's in a timed trace, else the last acknowledgement's
    /// (`supervisor::verify::crash_time_us`).
    pub crash_time_us: u64,
    /// One fsync's duration, added to an `interval:MS` loss window.
    pub fsync_allowance_us: u64,
}

/// Whether an acknowledged commit may be lost in this crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LossRule {
    Permitted,
    /// Losing it is a violation of this kind.
    Forbidden(ViolationKind),
}

impl Promise {
    fn loss_rule(&self, history: &History, txn: &CommittedTxn) -> LossRule {
        let Some(ack) = txn.ack else {
            return LossRule::Permitted;
        };
        if self.fault == FaultProfile::Media || self.kind == PromiseKind::None {
            // A state equal to some prefix is acceptable under media.
            return LossRule::Permitted;
        }
        if history.acked_before_durable_point(txn) {
            return LossRule::Forbidden(ViolationKind::LostAck);
        }
        // A crash that keeps the page cache loses nothing a target wrote;
        // a window promise (PostgreSQL's asynchronous commit) also covers
        // buffers in the target's own memory, which die with its process.
        let window = matches!(self.kind, PromiseKind::Window { .. });
        if !self.fault.loses_volatile_data() && !window {
            return LossRule::Forbidden(ViolationKind::LostAck);
        }
        match self.kind {
            PromiseKind::Durable => LossRule::Forbidden(ViolationKind::LostAck),
            PromiseKind::Window { ms } => {
                let crash_us = self.crash_time_us.max(history.last_ack_us().unwrap_or(0));
                let window_us = ms * 1000 + self.fsync_allowance_us;
                if ack.now_us.saturating_add(window_us) >= crash_us {
                    LossRule::Permitted
                } else {
                    LossRule::Forbidden(ViolationKind::BeyondWindow)
                }
            }
            PromiseKind::Prefix | PromiseKind::None => LossRule::Permitted,
        }
    }
}

/// The oracle's judgement of one recovered state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The prefix of the commit order the state equals (`None`: no prefix).
    pub prefix_len: Option<usize>,
    /// Acknowledged commits lost as the promise permits (counted, not hidden).
    pub acked_lost_permitted: u64,
    /// The widest permitted loss: crash time minus the oldest lost ack's.
    pub loss_window_max_us: u64,
    pub violations: Vec<Violation>,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The kinds found, without repeats, in order.
    pub fn kinds(&self) -> BTreeSet<ViolationKind> {
        self.violations.iter().map(|v| v.kind).collect()
    }
}

/// Judges `recovered` against `history` under `promise`.
pub fn check(
    history: &History,
    recovered: &State,
    promise: Promise,
    invariants: &[Box<dyn Invariant>],
) -> Verdict {
    let mut verdict = Verdict::default();
    let matches = history.matching_prefixes(recovered);
    match matches.last() {
        Some(&prefix_len) => {
            verdict.prefix_len = Some(prefix_len);
            check_losses(history, prefix_len, promise, &BTreeSet::new(), &mut verdict);
        }
        None => {
            let diagnosis = diagnose(history, recovered);
            verdict.violations.extend(diagnosis.violations);
            let reported: BTreeSet<usize> = diagnosis.holes.iter().copied().collect();
            check_losses(
                history,
                diagnosis.implied_prefix,
                promise,
                &reported,
                &mut verdict,
            );
            if verdict.violations.is_empty() {
                verdict.violations.push(no_prefix_fallback(
                    history,
                    recovered,
                    diagnosis.implied_prefix,
                ));
            }
            if promise.fault == FaultProfile::Media {
                for violation in &mut verdict.violations {
                    violation.message = format!(
                        "under media a wrong value must be a corruption error ({}: {})",
                        violation.kind, violation.message
                    );
                    violation.kind = ViolationKind::SilentCorruption;
                }
            }
        }
    }
    for invariant in invariants {
        if let Err(breach) = invariant.check(recovered) {
            verdict.violations.push(Violation {
                kind: ViolationKind::Invariant,
                message: format!(
                    "invariant {} broken: {} (keys {})",
                    invariant.name(),
                    breach.message,
                    display_keys(&breach.keys)
                ),
                txns: Vec::new(),
                keys: breach.keys,
                lsns: Vec::new(),
            });
        }
    }
    verdict.violations = cap_per_kind(std::mem::take(&mut verdict.violations));
    verdict
}

/// Acknowledged commits at positions `>= prefix_len` are lost: each is
/// permitted (counted) or a violation. `skip`: positions already reported.
fn check_losses(
    history: &History,
    prefix_len: usize,
    promise: Promise,
    skip: &BTreeSet<usize>,
    verdict: &mut Verdict,
) {
    let crash_us = promise
        .crash_time_us
        .max(history.last_ack_us().unwrap_or(0));
    let issued = history.txns().len();
    for (position, txn) in history.txns().iter().enumerate().skip(prefix_len) {
        let Some(ack) = txn.ack else { continue };
        if skip.contains(&position) || is_empty_at(history, position) {
            continue;
        }
        match promise.loss_rule(history, txn) {
            LossRule::Permitted => {
                verdict.acked_lost_permitted += 1;
                verdict.loss_window_max_us = verdict
                    .loss_window_max_us
                    .max(crash_us.saturating_sub(ack.now_us));
            }
            LossRule::Forbidden(kind) => {
                let why = if history.acked_before_durable_point(txn) {
                    "it was acknowledged before a completed checkpoint".to_string()
                } else {
                    format!(
                        "the promise under {} is {}, which keeps it",
                        promise.fault, promise.kind
                    )
                };
                let keys = txn_keys(txn);
                verdict.violations.push(Violation {
                    kind,
                    message: format!(
                        "{} ({}, acknowledged at event {} t={}us, crash at t={}us) lost: \
                         recovery kept {} of {} issued commits; {}; its keys: {}",
                        TxnName(txn.txn),
                        lsn_text(txn.lsn),
                        ack.event_index,
                        ack.now_us,
                        crash_us,
                        prefix_len,
                        issued,
                        why,
                        display_keys(&keys)
                    ),
                    txns: vec![txn.txn],
                    keys,
                    lsns: txn.lsn.into_iter().collect(),
                });
            }
        }
    }
}

/// True if the transaction at `position` changes nothing where it stands in
/// the commit order (say, it only deletes an absent key). An engine may
/// acknowledge such a commit without logging anything, so losing it loses
/// nothing and it binds no earlier commit.
fn is_empty_at(history: &History, position: usize) -> bool {
    history.prefix_hash(position) == history.prefix_hash(position + 1)
        && history.state_after(position) == history.state_after(position + 1)
}

/// What the tags say about a state that matches no prefix.
struct Diagnosis {
    violations: Vec<Violation>,
    /// Positions reported as holes (not reported again as losses).
    holes: Vec<usize>,
    /// One past the last transaction seen applied.
    implied_prefix: usize,
}

/// Who wrote the recovered value of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Absent,
    Base,
    /// The effective write of the txn at this position.
    Txn(usize),
    /// No transaction of the history nor the base: explained separately.
    Foreign,
}

/// Effective writes (last per key) of each transaction, by key.
type Writers<'h> = BTreeMap<&'h [u8], Vec<(usize, Option<&'h [u8]>)>>;

fn writers(history: &History) -> Writers<'_> {
    let mut writers: Writers<'_> = BTreeMap::new();
    for (position, txn) in history.txns().iter().enumerate() {
        for (key, value) in effective_writes(txn) {
            writers.entry(key).or_default().push((position, value));
        }
    }
    writers
}

fn effective_writes(txn: &CommittedTxn) -> BTreeMap<&[u8], Option<&[u8]>> {
    txn.writes
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_deref()))
        .collect()
}

fn source(history: &History, writers: &Writers<'_>, key: &[u8], value: Option<&[u8]>) -> Source {
    let Some(value) = value else {
        return Source::Absent;
    };
    if let Some(position) = writers
        .get(key)
        .and_then(|list| list.iter().find(|(_, written)| *written == Some(value)))
        .map(|(position, _)| *position)
    {
        return Source::Txn(position);
    }
    if history.base().get(key).map(Vec::as_slice) == Some(value) {
        return Source::Base;
    }
    Source::Foreign
}

fn diagnose(history: &History, recovered: &State) -> Diagnosis {
    let writers = writers(history);
    let mut violations = foreign_values(history, &writers, recovered);
    violations.extend(missing_base_keys(history, &writers, recovered));
    // Per transaction: keys seen applied, keys seen missing.
    let mut applied: Vec<Vec<Vec<u8>>> = vec![Vec::new(); history.txns().len()];
    let mut missing: Vec<Vec<Vec<u8>>> = vec![Vec::new(); history.txns().len()];
    for (position, txn) in history.txns().iter().enumerate() {
        for (key, written) in effective_writes(txn) {
            let value = recovered.get(key).map(Vec::as_slice);
            let later = || writers[key].iter().filter(move |(p, _)| *p > position);
            let seen = match (written, source(history, &writers, key, value)) {
                (Some(_), Source::Txn(p)) if p == position => Some(true),
                (None, Source::Absent) => None,
                (_, Source::Txn(p)) if p > position => None,
                (_, Source::Absent) if later().any(|(_, v)| v.is_none()) => None,
                (_, Source::Foreign) => None,
                _ => Some(false),
            };
            match seen {
                Some(true) => applied[position].push(key.to_vec()),
                Some(false) => missing[position].push(key.to_vec()),
                None => {}
            }
        }
    }
    let implied_prefix = applied
        .iter()
        .rposition(|keys| !keys.is_empty())
        .map_or(0, |p| p + 1);
    let mut holes = Vec::new();
    for (position, txn) in history.txns().iter().enumerate() {
        if missing[position].is_empty() {
            continue;
        }
        if !applied[position].is_empty() {
            violations.push(atomicity(txn, &applied[position], &missing[position]));
        } else if position < implied_prefix {
            let later = (position + 1..history.txns().len())
                .find(|&p| !applied[p].is_empty())
                .expect("a later txn is applied");
            holes.push(position);
            violations.push(hole(
                history,
                position,
                later,
                &missing[position],
                &applied[later],
            ));
        }
    }
    Diagnosis {
        violations,
        holes,
        implied_prefix,
    }
}

fn atomicity(txn: &CommittedTxn, applied: &[Vec<u8>], missing: &[Vec<u8>]) -> Violation {
    let mut keys = applied.to_vec();
    keys.extend_from_slice(missing);
    Violation {
        kind: ViolationKind::Atomicity,
        message: format!(
            "{} ({}) is half applied: its writes to {} are visible, to {} are not",
            TxnName(txn.txn),
            lsn_text(txn.lsn),
            display_keys(applied),
            display_keys(missing)
        ),
        txns: vec![txn.txn],
        keys,
        lsns: txn.lsn.into_iter().collect(),
    }
}

fn hole(
    history: &History,
    position: usize,
    later: usize,
    missing: &[Vec<u8>],
    visible: &[Vec<u8>],
) -> Violation {
    let txn = &history.txns()[position];
    let next = &history.txns()[later];
    let acked = match txn.ack {
        Some(ack) => format!("acknowledged at event {}", ack.event_index),
        None => "not acknowledged".to_string(),
    };
    let mut keys = missing.to_vec();
    keys.extend_from_slice(visible);
    Violation {
        kind: ViolationKind::Hole,
        message: format!(
            "{} ({}, {acked}; commit #{} of {}) is missing (keys {}) while the later {} \
             ({}, commit #{}) is visible (keys {})",
            TxnName(txn.txn),
            lsn_text(txn.lsn),
            position + 1,
            history.txns().len(),
            display_keys(missing),
            TxnName(next.txn),
            lsn_text(next.lsn),
            later + 1,
            display_keys(visible)
        ),
        txns: vec![txn.txn, next.txn],
        keys,
        lsns: txn.lsn.into_iter().chain(next.lsn).collect(),
    }
}

/// Recovered values no effective write of the history nor the base holds.
fn foreign_values(history: &History, writers: &Writers<'_>, recovered: &State) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, value) in recovered {
        if source(history, writers, key, Some(value)) != Source::Foreign {
            continue;
        }
        let key_text = display_key(key);
        let violation = match tag::read_tag(value) {
            None => Violation {
                kind: ViolationKind::SilentCorruption,
                message: format!(
                    "key {key_text} holds {} bytes no transaction wrote (too short for a tag)",
                    value.len()
                ),
                txns: Vec::new(),
                keys: vec![key.clone()],
                lsns: Vec::new(),
            },
            Some(found) => match history.position(found.txn) {
                Some(position) => {
                    let txn = &history.txns()[position];
                    let intermediate = txn
                        .writes
                        .iter()
                        .any(|(k, v)| k == key && v.as_deref() == Some(value.as_slice()));
                    let (kind, what) = if intermediate {
                        (
                            ViolationKind::Atomicity,
                            "an intermediate value it overwrote within the transaction",
                        )
                    } else {
                        (
                            ViolationKind::SilentCorruption,
                            "a value it never wrote (corrupted)",
                        )
                    };
                    Violation {
                        kind,
                        message: format!(
                            "key {key_text} holds {what}: tag says {} ({}) write #{}",
                            TxnName(found.txn),
                            lsn_text(txn.lsn),
                            found.write_index
                        ),
                        txns: vec![found.txn],
                        keys: vec![key.clone()],
                        lsns: txn.lsn.into_iter().collect(),
                    }
                }
                None if found.txn >= history.txn_id_base() => Violation {
                    kind: ViolationKind::Phantom,
                    message: format!(
                        "key {key_text} holds a value of {} (write #{}), whose commit was \
                         never issued before the crash (aborted, rejected or unissued)",
                        TxnName(found.txn),
                        found.write_index
                    ),
                    txns: vec![found.txn],
                    keys: vec![key.clone()],
                    lsns: Vec::new(),
                },
                None => {
                    let durable = history.base().get(key).and_then(|v| tag::read_tag(v));
                    Violation {
                        kind: ViolationKind::LostAck,
                        message: format!(
                            "key {key_text} reverted to an older value of {} from an earlier \
                             cycle; the durable base {}",
                            TxnName(found.txn),
                            match durable {
                                Some(d) => format!("value of {} was lost", TxnName(d.txn)),
                                None => "had deleted it".to_string(),
                            }
                        ),
                        txns: std::iter::once(found.txn)
                            .chain(durable.map(|d| d.txn))
                            .collect(),
                        keys: vec![key.clone()],
                        lsns: Vec::new(),
                    }
                }
            },
        };
        violations.push(violation);
    }
    violations
}

/// Base keys gone although no transaction of the history wrote them.
fn missing_base_keys(
    history: &History,
    writers: &Writers<'_>,
    recovered: &State,
) -> Vec<Violation> {
    history
        .base()
        .iter()
        .filter(|(key, _)| !recovered.contains_key(*key) && !writers.contains_key(key.as_slice()))
        .map(|(key, value)| {
            let txn = tag::read_tag(value).map(|t| t.txn);
            Violation {
                kind: ViolationKind::LostAck,
                message: format!(
                    "key {} of the durable base (written by {}) is missing; no transaction \
                     of this cycle wrote it",
                    display_key(key),
                    txn.map_or("txn ?".to_string(), |t| TxnName(t).to_string())
                ),
                txns: txn.into_iter().collect(),
                keys: vec![key.clone()],
                lsns: Vec::new(),
            }
        })
        .collect()
}

fn no_prefix_fallback(history: &History, recovered: &State, prefix_len: usize) -> Violation {
    let model = history.state_after(prefix_len);
    let keys: Vec<Vec<u8>> = model
        .keys()
        .chain(recovered.keys())
        .filter(|key| model.get(*key) != recovered.get(*key))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Violation {
        kind: ViolationKind::SilentCorruption,
        message: format!(
            "the recovered state equals no prefix of the {} issued commits; against the closest \
             ({} commits) keys {} differ",
            history.txns().len(),
            prefix_len,
            display_keys(&keys)
        ),
        txns: Vec::new(),
        keys,
        lsns: Vec::new(),
    }
}

fn cap_per_kind(violations: Vec<Violation>) -> Vec<Violation> {
    let mut counts: BTreeMap<ViolationKind, usize> = BTreeMap::new();
    let mut kept = Vec::new();
    for violation in violations {
        let count = counts.entry(violation.kind).or_default();
        *count += 1;
        if *count <= VIOLATIONS_PER_KIND_MAX {
            kept.push(violation);
        }
    }
    for (kind, count) in counts {
        if count > VIOLATIONS_PER_KIND_MAX {
            kept.push(Violation::new(
                kind,
                format!(
                    "and {} more {kind} violations",
                    count - VIOLATIONS_PER_KIND_MAX
                ),
            ));
        }
    }
    kept
}

fn txn_keys(txn: &CommittedTxn) -> Vec<Vec<u8>> {
    effective_writes(txn)
        .keys()
        .map(|key| key.to_vec())
        .collect()
}

fn lsn_text(lsn: Option<u64>) -> String {
    match lsn {
        Some(lsn) => format!("commit LSN {lsn}"),
        None => "no LSN".to_string(),
    }
}

/// The acknowledged transactions of `history`, in commit order.
pub fn acknowledged(history: &History) -> impl Iterator<Item = WorkloadTxnId> + '_ {
    history
        .txns()
        .iter()
        .filter(|txn| txn.ack.is_some())
        .map(|txn| txn.txn)
}
