//! Case ids: one printable line that rebuilds one crash state exactly.
//!
//! A case id names the scenario (a built-in name, or a file name with a hash
//! of its contents) and carries everything else: the workload kind, the
//! target mode (`sqlite:wal-full`; the reference engine's fsync policy is
//! written bare, so ids from before targets existed still parse), fault profile, planted bugs, run seed and trial number, and for
//! every crash cycle up to the failing one the crash point (an operation
//! index in that cycle's trace) and the fault choices (a seed, or an explicit
//! list of volatile-write fates after shrinking). Optional workload limits
//! written by `shrink` follow. `start=steady` says the trial started from a
//! disk the target initialised in an earlier, uncrashed run (absent: from an
//! empty directory).
//!
//! Text form, fields separated by `:`:
//!
//! ```text
//! pc1:smoke:kv-churn:group:power-loss:s42:t17:812.9a3b:1234.77f1[:bugs=no-undo,skip-fsync][:start=steady][:txns=6][:value=16]
//! ```
//!
//! A SQLite case: `pc1:smoke:kv-churn:sqlite:wal-full:power-loss:s42:t17:812.9a3b`.
//!
//! `812.9a3b` is cycle 0 crashed at operation 812 with fault seed 0x9a3b;
//! the last crash is the case's own. A crash written `812.xBASE64` carries
//! explicit fates instead of a seed (every volatile change that persisted,
//! whole or torn sector by sector, and any media fault; see
//! [`encode_fates`]), as `shrink` writes them.

use crate::fault::FaultProfile;
use crate::fault::image::{ChangeFate, ExplicitFates, FaultChoices, MediaFault, SectorFate};
use crate::target::sqlite::vfs::{VfsBug, VfsBugSet};
use crate::target::{PlantedBug, Start, TargetMode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use engine::{Bug, BugSet};
use std::fmt;
use std::str::FromStr;

/// The version tag every case id starts with.
pub const CASE_ID_VERSION: &str = "pc1";

/// Bounds on what a case id may ask for (a malformed id must not make the
/// harness allocate or loop without limit).
pub const CYCLES_MAX: usize = 64;
pub const FATES_MAX: usize = 1 << 16;
pub const SECTORS_PER_FATE_MAX: usize = 1 << 16;
pub const FILE_NAME_LEN_MAX: usize = 255;
/// Fields a target mode spans at most (`sqlite:wal-full` is two).
pub const TARGET_FIELDS_MAX: usize = 4;

/// How the fault choices of one crash are made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultSeed {
    /// Every choice drawn from a ChaCha stream seeded with this.
    Seeded(u64),
    /// The fate of each volatile change, explicitly.
    Explicit(ExplicitFates),
}

impl FaultSeed {
    /// The image builder's form of these choices.
    pub fn to_choices(&self) -> FaultChoices {
        match self {
            FaultSeed::Seeded(seed) => FaultChoices::Seeded(*seed),
            FaultSeed::Explicit(fates) => FaultChoices::Explicit(fates.clone()),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// Encodes explicit fates compactly (varints, then base64url).
pub fn encode_fates(fates: &ExplicitFates) -> String {
    let mut out = Vec::new();
    put_varint(&mut out, fates.changes.len() as u64);
    let mut previous = 0usize;
    for (&event, fate) in &fates.changes {
        put_varint(&mut out, (event - previous) as u64);
        previous = event;
        match fate {
            ChangeFate::Dropped => out.push(0),
            ChangeFate::Persisted => out.push(1),
            ChangeFate::Torn(sectors) => {
                out.push(2);
                put_varint(&mut out, sectors.len() as u64);
                for sector in sectors {
                    match sector {
                        SectorFate::Kept => out.push(0),
                        SectorFate::Lost => out.push(1),
                        SectorFate::Garbage(seed) => {
                            out.push(2);
                            put_varint(&mut out, *seed);
                        }
                    }
                }
            }
        }
    }
    match &fates.media {
        None => out.push(0),
        Some(MediaFault::BitFlip { file, offset, bit }) => {
            out.push(1);
            put_name(&mut out, file);
            put_varint(&mut out, *offset);
            out.push(*bit);
        }
        Some(MediaFault::Misdirected {
            file,
            source_sector,
            target_sector,
        }) => {
            out.push(2);
            put_name(&mut out, file);
            put_varint(&mut out, *source_sector);
            put_varint(&mut out, *target_sector);
        }
    }
    URL_SAFE_NO_PAD.encode(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CaseIdError> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| bad("explicit fates end early"))?;
        self.bytes = rest;
        Ok(first)
    }

    fn varint(&mut self) -> Result<u64, CaseIdError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("explicit fates hold an overlong number"))
    }

    fn count(&mut self, max: usize, what: &str) -> Result<usize, CaseIdError> {
        let count = self.varint()?;
        usize::try_from(count)
            .ok()
            .filter(|count| *count <= max)
            .ok_or_else(|| bad(format!("explicit fates list too many {what}")))
    }

    fn name(&mut self) -> Result<String, CaseIdError> {
        let len = self.count(FILE_NAME_LEN_MAX, "name bytes")?;
        if self.bytes.len() < len {
            return Err(bad("explicit fates end early"));
        }
        let (name, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        String::from_utf8(name.to_vec()).map_err(|_| bad("explicit fates hold a bad file name"))
    }
}

/// The inverse of [`encode_fates`].
pub fn decode_fates(text: &str) -> Result<ExplicitFates, CaseIdError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad(format!("explicit fates `{text}` are not base64url")))?;
    let mut reader = Reader { bytes: &bytes };
    let mut fates = ExplicitFates::default();
    let count = reader.count(FATES_MAX, "changes")?;
    let mut event = 0usize;
    for _ in 0..count {
        event = event
            .checked_add(
                usize::try_from(reader.varint()?).map_err(|_| bad("event index too large"))?,
            )
            .ok_or_else(|| bad("event index too large"))?;
        let fate = match reader.byte()? {
            0 => ChangeFate::Dropped,
            1 => ChangeFate::Persisted,
            2 => {
                let sectors = reader.count(SECTORS_PER_FATE_MAX, "sectors")?;
                let mut torn = Vec::with_capacity(sectors);
                for _ in 0..sectors {
                    torn.push(match reader.byte()? {
                        0 => SectorFate::Kept,
                        1 => SectorFate::Lost,
                        2 => SectorFate::Garbage(reader.varint()?),
                        _ => return Err(bad("unknown sector fate")),
                    });
                }
                ChangeFate::Torn(torn)
            }
            _ => return Err(bad("unknown change fate")),
        };
        fates.changes.insert(event, fate);
    }
    fates.media = match reader.byte()? {
        0 => None,
        1 => Some(MediaFault::BitFlip {
            file: reader.name()?,
            offset: reader.varint()?,
            bit: reader.byte()?,
        }),
        2 => Some(MediaFault::Misdirected {
            file: reader.name()?,
            source_sector: reader.varint()?,
            target_sector: reader.varint()?,
        }),
        _ => return Err(bad("unknown media fault")),
    };
    if !reader.bytes.is_empty() {
        return Err(bad("explicit fates have trailing bytes"));
    }
    Ok(fates)
}

/// Where one cycle crashed, and how.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Crash {
    /// Events `0..point` of the cycle's trace happened.
    pub point: u64,
    pub faults: FaultSeed,
}

/// Reductions `shrink` applies to the workload (absent: the scenario's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WorkloadLimits {
    /// Transactions per cycle at most.
    pub txns_max: Option<u32>,
    /// Value size in bytes at most.
    pub value_len_max: Option<u32>,
}

/// Everything that identifies one crash state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaseId {
    /// A built-in scenario name, or `NAME@HASH` for a scenario file.
    pub scenario: String,
    pub workload: String,
    pub target: TargetMode,
    pub fault: FaultProfile,
    pub bugs: BugSet,
    /// Planted bugs of SQLite's VFS (written in `bugs=` with the engine's).
    pub vfs_bugs: VfsBugSet,
    pub seed: u64,
    pub trial: u64,
    /// One crash per cycle; the last one is this case's crash state.
    pub crashes: Vec<Crash>,
    pub limits: WorkloadLimits,
    /// What the trial started from (written `:start=steady`; absent: empty).
    pub start: Start,
}

impl CaseId {
    /// The cycle whose crash this case is (0-based).
    pub fn cycle(&self) -> usize {
        self.crashes.len() - 1
    }

    /// This case's own crash.
    pub fn crash(&self) -> &Crash {
        self.crashes
            .last()
            .expect("a case id has at least one crash")
    }

    /// A short file-system-safe name for the case's bundle directory.
    pub fn bundle_name(&self) -> String {
        self.to_string()
            .replace([':', '@', ',', '=', '/', ' '], "_")
    }
}

impl fmt::Display for FaultSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSeed::Seeded(seed) => write!(f, "{seed:x}"),
            FaultSeed::Explicit(fates) => write!(f, "x{}", encode_fates(fates)),
        }
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CASE_ID_VERSION}:{}:{}:{}:{}:s{}:t{}",
            self.scenario, self.workload, self.target, self.fault, self.seed, self.trial
        )?;
        for crash in &self.crashes {
            write!(f, ":{}.{}", crash.point, crash.faults)?;
        }
        if !self.bugs.is_empty() || !self.vfs_bugs.is_empty() {
            let names: Vec<&str> = self
                .bugs
                .iter()
                .map(Bug::name)
                .chain(self.vfs_bugs.iter().map(VfsBug::name))
                .collect();
            write!(f, ":bugs={}", names.join(","))?;
        }
        if self.start != Start::Empty {
            write!(f, ":start={}", self.start)?;
        }
        if let Some(txns) = self.limits.txns_max {
            write!(f, ":txns={txns}")?;
        }
        if let Some(value) = self.limits.value_len_max {
            write!(f, ":value={value}")?;
        }
        Ok(())
    }
}

/// Why a case id did not parse: one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed case id: {0}")]
pub struct CaseIdError(String);

fn bad(what: impl Into<String>) -> CaseIdError {
    CaseIdError(what.into())
}

fn parse_prefixed_number(field: &str, prefix: char, what: &str) -> Result<u64, CaseIdError> {
    field
        .strip_prefix(prefix)
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or_else(|| bad(format!("expected {what} as `{prefix}N`, found `{field}`")))
}

fn parse_crash(field: &str) -> Result<Crash, CaseIdError> {
    let (point, faults) = field.split_once('.').ok_or_else(|| {
        bad(format!(
            "expected a crash as `POINT.FAULTS`, found `{field}`"
        ))
    })?;
    let point = point
        .parse::<u64>()
        .map_err(|_| bad(format!("crash point `{point}` is not a number")))?;
    let faults = match faults.strip_prefix('x') {
        Some(encoded) => FaultSeed::Explicit(decode_fates(encoded)?),
        None => FaultSeed::Seeded(
            u64::from_str_radix(faults, 16)
                .map_err(|_| bad(format!("fault seed `{faults}` is not hex")))?,
        ),
    };
    Ok(Crash { point, faults })
}

fn parse_option(field: &str, case: &mut CaseId) -> Result<(), CaseIdError> {
    let (key, value) = field
        .split_once('=')
        .ok_or_else(|| bad(format!("unexpected field `{field}`")))?;
    let number = || {
        value
            .parse::<u32>()
            .map_err(|_| bad(format!("`{key}={value}` is not a number")))
    };
    match key {
        "bugs" => {
            for name in value.split(',') {
                match name.parse::<PlantedBug>().map_err(bad)? {
                    PlantedBug::Engine(bug) => case.bugs = case.bugs.with(bug),
                    PlantedBug::Vfs(bug) => case.vfs_bugs = case.vfs_bugs.with(bug),
                }
            }
        }
        "start" => case.start = value.parse().map_err(bad)?,
        "txns" => case.limits.txns_max = Some(number()?),
        "value" => case.limits.value_len_max = Some(number()?),
        _ => return Err(bad(format!("unknown option `{key}`"))),
    }
    Ok(())
}

impl FromStr for CaseId {
    type Err = CaseIdError;

    fn from_str(text: &str) -> Result<CaseId, CaseIdError> {
        let text = text.trim();
        let fields: Vec<&str> = text.split(':').collect();
        if fields.first() != Some(&CASE_ID_VERSION) {
            return Err(bad(format!("it must start with `{CASE_ID_VERSION}:`")));
        }
        if fields.len() < 8 {
            return Err(bad(
                "too few fields (expected pc1:SCENARIO:WORKLOAD:TARGET:FAULT:sSEED:tTRIAL:CRASH...)",
            ));
        }
        let scenario = fields[1].to_string();
        let workload = fields[2].to_string();
        if scenario.is_empty() || workload.is_empty() {
            return Err(bad("empty scenario or workload name"));
        }
        // A target mode may contain ':' (sqlite:wal-full, interval:10):
        // it runs up to the first field that names a fault profile.
        let fault_at = (4..fields.len().min(4 + TARGET_FIELDS_MAX))
            .find(|&i| fields[i].parse::<FaultProfile>().is_ok())
            .ok_or_else(|| bad("missing fault profile"))?;
        let target = fields[3..fault_at]
            .join(":")
            .parse::<TargetMode>()
            .map_err(bad)?;
        let fault = fields[fault_at].parse::<FaultProfile>().map_err(bad)?;
        let rest = fault_at + 1;
        let field = |i: usize| {
            fields
                .get(i)
                .copied()
                .ok_or_else(|| bad("missing seed or trial"))
        };
        let seed = parse_prefixed_number(field(rest)?, 's', "the seed")?;
        let trial = parse_prefixed_number(field(rest + 1)?, 't', "the trial")?;
        let mut case = CaseId {
            scenario,
            workload,
            target,
            fault,
            bugs: BugSet::NONE,
            vfs_bugs: VfsBugSet::NONE,
            seed,
            trial,
            crashes: Vec::new(),
            limits: WorkloadLimits::default(),
            start: Start::Empty,
        };
        for field in &fields[rest + 2..] {
            if field.contains('=') {
                parse_option(field, &mut case)?;
            } else if case.limits == WorkloadLimits::default()
                && case.start == Start::Empty
                && case.bugs.is_empty()
                && case.vfs_bugs.is_empty()
            {
                if case.crashes.len() == CYCLES_MAX {
                    return Err(bad(format!("more than {CYCLES_MAX} crash cycles")));
                }
                case.crashes.push(parse_crash(field)?);
            } else {
                return Err(bad(format!("crash `{field}` after the options")));
            }
        }
        if case.crashes.is_empty() {
            return Err(bad("no crash point"));
        }
        Ok(case)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_fates() -> ExplicitFates {
        let mut fates = ExplicitFates::default();
        fates.changes.insert(3, ChangeFate::Persisted);
        fates.changes.insert(
            700,
            ChangeFate::Torn(vec![
                SectorFate::Kept,
                SectorFate::Lost,
                SectorFate::Garbage(99),
            ]),
        );
        fates.media = Some(MediaFault::BitFlip {
            file: "wal-0000000000000000".into(),
            offset: 4097,
            bit: 3,
        });
        fates
    }

    #[test]
    fn explicit_fates_round_trip_and_garbage_is_refused() {
        let fates = sample_fates();
        assert_eq!(decode_fates(&encode_fates(&fates)).unwrap(), fates);
        for bad in ["!!", "", "AQ", "_w"] {
            assert!(decode_fates(bad).is_err(), "{bad}");
        }
    }

    fn sample() -> CaseId {
        CaseId {
            scenario: "smoke".into(),
            workload: "kv-churn".into(),
            target: TargetMode::Engine(engine::FsyncPolicy::Interval { ms: 10 }),
            fault: FaultProfile::PowerLoss,
            bugs: BugSet::NONE.with(Bug::NoUndo).with(Bug::SkipFsync),
            vfs_bugs: VfsBugSet::NONE,
            seed: 42,
            trial: 17,
            crashes: vec![
                Crash {
                    point: 812,
                    faults: FaultSeed::Seeded(0x9a3b),
                },
                Crash {
                    point: 1234,
                    faults: FaultSeed::Explicit(sample_fates()),
                },
            ],
            limits: WorkloadLimits {
                txns_max: Some(6),
                value_len_max: None,
            },
            start: Start::Empty,
        }
    }

    #[test]
    fn a_steady_start_is_written_and_read_back() {
        let case = CaseId {
            start: Start::Steady,
            ..sample()
        };
        let text = case.to_string();
        assert!(text.contains(":start=steady:txns=6"), "{text}");
        assert_eq!(text.parse::<CaseId>().unwrap(), case);
        assert!(
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5.1:start=warm"
                .parse::<CaseId>()
                .is_err()
        );
    }

    #[test]
    fn case_id_round_trips_through_text() {
        let case = sample();
        let text = case.to_string();
        let fates = encode_fates(&sample_fates());
        assert_eq!(
            text,
            format!(
                "pc1:smoke:kv-churn:interval:10:power-loss:s42:t17:812.9a3b:1234.x{fates}:bugs=skip-fsync,no-undo:txns=6"
            )
        );
        assert_eq!(text.parse::<CaseId>().unwrap(), case);
        assert_eq!(case.cycle(), 1);
    }

    #[test]
    fn ids_from_before_targets_are_the_engine() {
        let old = "pc1:smoke:kv-churn:group:200:power-loss:s1:t1:5.1";
        let named = "pc1:smoke:kv-churn:engine:group:200:power-loss:s1:t1:5.1";
        let case = old.parse::<CaseId>().unwrap();
        assert_eq!(
            case.target,
            TargetMode::Engine(engine::FsyncPolicy::Group { delay_us: 200 })
        );
        assert_eq!(named.parse::<CaseId>().unwrap(), case);
        assert_eq!(case.to_string(), old);
    }

    #[test]
    fn malformed_case_ids_are_refused_with_a_reason() {
        for bad in [
            "",
            "garbage",
            "pc2:smoke:kv-churn:group:power-loss:s1:t1:5.1",
            "pc1:smoke:kv-churn:sometimes:power-loss:s1:t1:5.1",
            "pc1:smoke:kv-churn:group:meteor:s1:t1:5.1",
            "pc1:smoke:kv-churn:group:power-loss:1:t1:5.1",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5.zz",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5.x!",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5.1:bugs=typo",
            "pc1:smoke:kv-churn:group:power-loss:s1:t1:5.1:txns=1:6.1",
            "pc1:smoke:kv-churn:engine:power-loss:s1:t1:5.1",
            "pc1:smoke:kv-churn:nosuch:mode:power-loss:s1:t1:5.1",
        ] {
            let error = bad.parse::<CaseId>().expect_err(bad);
            assert!(!error.to_string().contains('\n'), "{error}");
        }
    }

    proptest! {
        #[test]
        fn any_case_id_round_trips(
            seed in any::<u64>(),
            trial in any::<u64>(),
            points in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..5),
            bug_bits in 0u16..(1 << 13),
            txns in proptest::option::of(any::<u32>()),
            steady in any::<bool>(),
        ) {
            let case = CaseId {
                scenario: "nightly".into(),
                workload: "bank".into(),
                target: TargetMode::Engine(engine::FsyncPolicy::Group { delay_us: 200 }),
                fault: FaultProfile::TornGarbage,
                bugs: BugSet::from_bits(bug_bits).unwrap(),
                vfs_bugs: VfsBugSet::NONE.with(VfsBug::SyncNoop),
                seed,
                trial,
                crashes: points
                    .into_iter()
                    .map(|(point, seed)| Crash { point, faults: FaultSeed::Seeded(seed) })
                    .collect(),
                limits: WorkloadLimits { txns_max: txns, value_len_max: None },
                start: if steady { Start::Steady } else { Start::Empty },
            };
            prop_assert_eq!(case.to_string().parse::<CaseId>().unwrap(), case);
        }
    }
}
