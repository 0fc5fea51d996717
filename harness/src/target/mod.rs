//! The target seam (SPEC §9): how the harness drives a system under test.
//!
//! The workload driver and the verifier talk to the system only through
//! [`Target`], so another system can be tortured by implementing it and
//! [`TargetFactory`]. All of an in-process target's file I/O must go
//! through the [`Storage`] it is opened on: that is where the harness
//! records, injects faults and builds crash images.
//!
//! Which targets exist is [`TARGET_KINDS`], the registry: each
//! [`TargetKind`] has a name, its modes, whether it is deterministic (an
//! in-process target replays from the case id; a process target would
//! replay from the trace its bundle stores) and whether the parts it needs
//! are installed. A [`TargetMode`] is one target in one mode (the
//! reference engine under one fsync policy, ...): it says, per fault
//! profile, the [`PromiseKind`] taken from that system's documentation, and
//! opens the target through [`TargetMode::factory`].

mod engine;
pub mod list;
pub mod process;
pub mod sqlite;

pub use self::engine::{ENGINE_KIND, EngineFactory, EngineKind, EngineTarget};
pub use self::sqlite::{SQLITE_KIND, SqliteFactory, SqliteKind, SqliteMode};

use crate::fault::FaultProfile;
use ::engine::storage::Storage;
use ::engine::{Clock, Config, FsyncPolicy};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// What a target mode promises under one fault profile (SPEC §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PromiseKind {
    /// No acknowledged commit is lost.
    Durable,
    /// Only commits acknowledged in the last `ms` milliseconds may be lost.
    Window { ms: u64 },
    /// A consistent prefix: acknowledged commits may be lost, never with a
    /// hole, a half transaction or a corruption.
    Prefix,
    /// No promise: losses and corruption are counted and reported by kind,
    /// never failures.
    None,
}

impl fmt::Display for PromiseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromiseKind::Durable => f.write_str("durable"),
            PromiseKind::Window { ms } => write!(f, "window:{ms}"),
            PromiseKind::Prefix => f.write_str("prefix"),
            PromiseKind::None => f.write_str("none"),
        }
    }
}

impl FromStr for PromiseKind {
    type Err = String;

    fn from_str(text: &str) -> Result<PromiseKind, String> {
        match text {
            "durable" => Ok(PromiseKind::Durable),
            "prefix" => Ok(PromiseKind::Prefix),
            "none" => Ok(PromiseKind::None),
            _ => text
                .strip_prefix("window:")
                .and_then(|ms| ms.parse().ok())
                .map(|ms| PromiseKind::Window { ms })
                .ok_or_else(|| {
                    format!("unknown promise `{text}` (durable, window:MS, prefix, none)")
                }),
        }
    }
}

/// One kind of target: the registry entry `powercut targets` lists.
pub trait TargetKind: Sync {
    /// The name `--target NAME[:MODE]` uses.
    fn name(&self) -> &'static str;
    /// One line on what it is.
    fn description(&self) -> &'static str;
    /// Every mode it has (the engine: its common policies; any `group:US`
    /// and `interval:MS` also parse).
    fn modes(&self) -> Vec<TargetMode>;
    /// Parses the `MODE` of `NAME:MODE`.
    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String>;
    /// Same storage contents and calls give the same operations: a case
    /// replays from its id. A process target is not, and replays from the
    /// trace its bundle stores.
    fn deterministic(&self) -> bool;
    /// `Ok` when every part it needs is installed here; else which part is
    /// missing and how to install it, in one line.
    fn parts_installed(&self) -> Result<(), String>;
    /// Where its promises come from (a documentation link).
    fn promises_source(&self) -> &'static str;
    /// Why a crash state's outcome happened, as a short name read from the
    /// program's own words in the outcome's `message` (PostgreSQL: its
    /// `PANIC`/`FATAL` log line); `None` where the target says nothing.
    fn cause(&self, _message: &str) -> Option<String> {
        None
    }
}

/// Every target, in the order `powercut targets` lists them.
pub static TARGET_KINDS: &[&dyn TargetKind] = &[
    &ENGINE_KIND,
    &SQLITE_KIND,
    &process::redis::REDIS_KIND,
    &process::line::LINE_KIND,
    &process::postgres::POSTGRES_KIND,
];

/// The registry entry called `name`.
pub fn target_kind(name: &str) -> Option<&'static dyn TargetKind> {
    TARGET_KINDS
        .iter()
        .copied()
        .find(|kind| kind.name() == name)
}

/// What a trial's first cycle starts from (SPEC §9): an empty data
/// directory (the program's first start), or one the target initialised,
/// wrote a few transactions to and closed cleanly in an earlier, uncrashed
/// run (steady state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Start {
    #[default]
    Empty,
    Steady,
}

impl Start {
    pub const ALL: [Start; 2] = [Start::Empty, Start::Steady];

    pub fn name(self) -> &'static str {
        match self {
            Start::Empty => "empty",
            Start::Steady => "steady",
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Start {
    type Err = String;

    fn from_str(text: &str) -> Result<Start, String> {
        Start::ALL
            .into_iter()
            .find(|start| start.name() == text)
            .ok_or_else(|| format!("unknown start `{text}` (expected empty or steady)"))
    }
}

/// One target in one mode: what a trial runs.
///
/// Text form: `NAME:MODE` (`sqlite:wal-full`); the reference engine's modes
/// are its fsync policies and are written bare (`always`, `group:200`), as
/// before targets existed, so `engine:group` and `group` are the same mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetMode {
    /// The reference engine under an fsync policy.
    Engine(FsyncPolicy),
    /// SQLite in one journal mode × synchronous level.
    Sqlite(SqliteMode),
    /// `line:COMMAND`: a program speaking the line protocol (SPEC §9). The
    /// command is parsed once per run and kept for its life.
    Line(&'static str),
    /// `redis:MODE`: redis-server under an `appendfsync` mode.
    Redis(process::redis::RedisMode),
    /// `postgres:MODE`: PostgreSQL 15 under one durability setting.
    Postgres(process::postgres::PgMode),
}

impl TargetMode {
    /// The registry entry of this mode's target.
    pub fn kind(&self) -> &'static dyn TargetKind {
        match self {
            TargetMode::Engine(_) => &ENGINE_KIND,
            TargetMode::Sqlite(_) => &SQLITE_KIND,
            TargetMode::Line(_) => &process::line::LINE_KIND,
            TargetMode::Redis(_) => &process::redis::REDIS_KIND,
            TargetMode::Postgres(_) => &process::postgres::POSTGRES_KIND,
        }
    }

    /// What this mode promises under `fault` (SPEC §4.3, §9).
    pub fn promise(&self, fault: FaultProfile) -> PromiseKind {
        match self {
            TargetMode::Engine(policy) => self::engine::promise(*policy, fault),
            TargetMode::Sqlite(mode) => mode.promise(fault),
            TargetMode::Line(_) => process::line::promise(fault),
            TargetMode::Redis(mode) => process::redis::promise(*mode, fault),
            TargetMode::Postgres(mode) => process::postgres::promise(*mode, fault),
        }
    }

    /// True when `fault` breaks an assumption the system states it makes
    /// (so its promise there is `none`, and the counts are reported as
    /// outside its assumptions).
    pub fn outside_assumptions(&self, fault: FaultProfile) -> bool {
        match self {
            TargetMode::Engine(_) | TargetMode::Line(_) | TargetMode::Redis(_) => {
                let _ = fault;
                false
            }
            TargetMode::Sqlite(mode) => mode.outside_assumptions(fault),
            TargetMode::Postgres(_) => process::postgres::outside_assumptions(fault),
        }
    }

    /// The driver plays the group-commit leader (`flush_begin`/`finish`).
    pub fn leads_group_commit(&self) -> bool {
        match self {
            TargetMode::Engine(policy) => matches!(policy, FsyncPolicy::Group { .. }),
            TargetMode::Sqlite(_)
            | TargetMode::Line(_)
            | TargetMode::Redis(_)
            | TargetMode::Postgres(_) => false,
        }
    }

    /// A successful [`Target::checkpoint`] is a durable point: every commit
    /// acknowledged before it survives any later crash.
    pub fn checkpoint_is_durable(&self) -> bool {
        match self {
            TargetMode::Engine(_) => true,
            TargetMode::Sqlite(mode) => mode.checkpoint_is_durable(),
            // A line program has no checkpoint request.
            TargetMode::Line(_) | TargetMode::Redis(_) => false,
            TargetMode::Postgres(mode) => process::postgres::checkpoint_is_durable(*mode),
        }
    }

    /// Opens targets of this mode with `settings`.
    pub fn factory(&self, settings: &TargetSettings) -> Box<dyn TargetFactory> {
        match self {
            TargetMode::Engine(policy) => Box::new(EngineFactory {
                config: Config {
                    policy: *policy,
                    ..settings.engine.clone()
                },
            }),
            TargetMode::Sqlite(mode) => Box::new(SqliteFactory {
                mode: *mode,
                bugs: settings.vfs_bugs,
            }),
            TargetMode::Line(command) => Box::new(process::line::LineFactory {
                command: command.to_string(),
            }),
            TargetMode::Redis(mode) => Box::new(process::redis::RedisFactory { mode: *mode }),
            TargetMode::Postgres(mode) => {
                Box::new(process::postgres::PostgresFactory { mode: *mode })
            }
        }
    }
}

/// What opening a target needs besides its mode: the scenario's engine
/// configuration (policy aside) with its planted bugs, and the planted
/// bugs of SQLite's VFS.
#[derive(Clone, Debug, Default)]
pub struct TargetSettings {
    pub engine: Config,
    pub vfs_bugs: sqlite::vfs::VfsBugSet,
}

impl fmt::Display for TargetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetMode::Engine(policy) => write!(f, "{policy}"),
            TargetMode::Sqlite(mode) => write!(f, "{}:{mode}", SQLITE_KIND.name()),
            TargetMode::Line(command) => write!(f, "line:{command}"),
            TargetMode::Redis(mode) => write!(f, "redis:{mode}"),
            TargetMode::Postgres(mode) => write!(f, "postgres:{mode}"),
        }
    }
}

impl FromStr for TargetMode {
    type Err = String;

    /// `NAME:MODE`, or a bare engine policy.
    fn from_str(text: &str) -> Result<TargetMode, String> {
        let (name, mode) = text.split_once(':').unwrap_or((text, ""));
        match target_kind(name) {
            Some(kind) if mode.is_empty() => Err(format!(
                "target `{name}` needs a mode here, e.g. `{}`",
                kind.modes()
                    .first()
                    .map(|mode| mode.to_string())
                    .unwrap_or_default()
            )),
            Some(kind) => kind.parse_mode(mode),
            None => text
                .parse::<FsyncPolicy>()
                .map(TargetMode::Engine)
                .map_err(|_| {
                    format!(
                        "unknown target `{text}` (targets: {}; or an engine policy)",
                        TARGET_KINDS
                            .iter()
                            .map(|kind| kind.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }),
        }
    }
}

/// Expands `--target` selectors into modes: `NAME:MODE` is one mode, a
/// bare `NAME` every mode of it (`engine` alone: `engine_policies`, the
/// scenario's or `--policy`'s), a bare policy the engine under it. Repeats
/// are dropped; the order is kept.
pub fn expand_targets(
    selectors: &[String],
    engine_policies: &[FsyncPolicy],
) -> Result<Vec<TargetMode>, String> {
    let mut modes: Vec<TargetMode> = Vec::new();
    for selector in selectors {
        let selector = selector.trim();
        let expanded = match target_kind(selector) {
            Some(kind) if kind.name() == ENGINE_KIND.name() => engine_policies
                .iter()
                .map(|policy| TargetMode::Engine(*policy))
                .collect(),
            Some(kind) => kind.modes(),
            None => vec![selector.parse::<TargetMode>()?],
        };
        for mode in expanded {
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
    }
    if modes.is_empty() {
        return Err("no target selected".to_string());
    }
    Ok(modes)
}

/// A planted bug of any target: the engine's, or SQLite's VFS's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    Engine(::engine::Bug),
    Vfs(sqlite::vfs::VfsBug),
}

impl FromStr for PlantedBug {
    type Err = String;

    fn from_str(name: &str) -> Result<PlantedBug, String> {
        if let Ok(bug) = name.parse::<sqlite::vfs::VfsBug>() {
            return Ok(PlantedBug::Vfs(bug));
        }
        name.parse::<::engine::Bug>()
            .map(PlantedBug::Engine)
            .map_err(|_| {
                let vfs: Vec<&str> = sqlite::vfs::VfsBug::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown planted bug `{name}` (the engine's, or SQLite's VFS's: {})",
                    vfs.join(", ")
                )
            })
    }
}

/// Fails with the one-line reason when a selected target's parts are
/// missing here (SPEC §9: exit 2, never a silent skip).
pub fn check_parts(modes: &[TargetMode]) -> Result<(), String> {
    for mode in modes {
        mode.kind()
            .parts_installed()
            .map_err(|missing| format!("target `{}`: {missing}", mode.kind().name()))?;
    }
    Ok(())
}

/// The target's name for an open transaction.
pub type TxnHandle = u64;

/// The recovered (or current) contents: key → value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// How a target operation failed, as far as the driver and the oracle care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetErrorKind {
    /// The transaction cannot go on (write conflict, full page, too large):
    /// the driver aborts it and carries on.
    Rejected,
    /// On-disk data failed a check: a clear corruption error.
    Corruption,
    /// The target stopped (a failed fsync, an I/O error): it accepts nothing
    /// more until reopened.
    Fatal,
    /// Anything else (misuse, invalid configuration, locked directory).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetError {
    pub kind: TargetErrorKind,
    pub message: String,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TargetError {}

pub type TargetResult<T> = Result<T, TargetError>;

/// An open engine under test. One thread drives it; every call is
/// deterministic given the same storage contents and call sequence.
pub trait Target {
    fn begin(&mut self) -> TargetResult<TxnHandle>;
    fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()>;
    fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()>;
    fn abort(&mut self, txn: TxnHandle) -> TargetResult<()>;
    /// Issues the commit: after this returns the commit is "issued"; it is
    /// acknowledged when [`Target::take_acks`] reports it. Returns the
    /// position of the commit record (an LSN), if the target has one.
    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>>;
    /// Group commit leader, step 1 (capture what the flush covers). A
    /// no-op for targets without group commit.
    fn flush_begin(&mut self) -> TargetResult<()> {
        Ok(())
    }
    /// Group commit leader, step 2 (fsync, acknowledge what it covered). A
    /// no-op for targets without group commit.
    fn flush_finish(&mut self) -> TargetResult<()> {
        Ok(())
    }
    /// Lets time-driven work run at the clock's current time (a no-op for
    /// targets with none).
    fn tick(&mut self) -> TargetResult<()> {
        Ok(())
    }
    /// A durable point: when this returns Ok, every commit acknowledged
    /// before the call survives any later crash, whatever the policy.
    fn checkpoint(&mut self) -> TargetResult<()>;
    /// Commits acknowledged since the last call, each reported exactly once,
    /// in the order they became acknowledged.
    fn take_acks(&mut self) -> Vec<TxnHandle>;
    /// Reads one committed key (no transaction active).
    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>>;
    /// Every committed key and value (no transaction active).
    fn scan(&mut self) -> TargetResult<State>;
    /// What recovery found and did when this target was opened, in words.
    fn recovery_summary(&self) -> String;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> TargetResult<()>;
}

/// Opens targets: the workload's, and the verifier's after each crash.
pub trait TargetFactory: Send + Sync {
    /// Opens (creating or recovering) a target on `storage`.
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>>;

    /// The files every trial starts from (a process target's initialised
    /// data directory); empty unless the target needs one.
    fn starting_image(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Ok(BTreeMap::new())
    }

    /// The reference engine's configuration, for drivers that run the
    /// engine's own threaded API (kv-threads); `None` for other targets.
    fn engine_config(&self) -> Option<Config> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_modes_parse_bare_or_named_and_print_bare() {
        let group: TargetMode = "engine:group:200".parse().unwrap();
        assert_eq!(group, "group:200".parse().unwrap());
        assert_eq!(group.to_string(), "group:200");
        for bad in ["engine", "engine:sometimes", "nosuch:mode", "sometimes", ""] {
            let error = bad.parse::<TargetMode>().expect_err(bad);
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn the_engine_keeps_its_section_4_3_promises() {
        use FaultProfile::*;
        let mode = |text: &str| text.parse::<TargetMode>().unwrap();
        for fault in FaultProfile::ALL {
            let lossy = fault != ProcessCrash;
            assert_eq!(mode("always").promise(fault), PromiseKind::Durable);
            assert_eq!(mode("group").promise(fault), PromiseKind::Durable);
            assert_eq!(
                mode("interval:10").promise(fault),
                if lossy {
                    PromiseKind::Window { ms: 10 }
                } else {
                    PromiseKind::Durable
                }
            );
            assert_eq!(
                mode("none").promise(fault),
                if lossy {
                    PromiseKind::Prefix
                } else {
                    PromiseKind::Durable
                }
            );
        }
    }

    #[test]
    fn selectors_expand_in_order_without_repeats() {
        let policies = [FsyncPolicy::Always, FsyncPolicy::None];
        let selectors = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let modes =
            expand_targets(&selectors(&["engine", "always", "engine:group"]), &policies).unwrap();
        let texts: Vec<String> = modes.iter().map(|m| m.to_string()).collect();
        assert_eq!(texts, ["always", "none", "group"]);
        assert!(expand_targets(&[], &policies).is_err());
        assert!(expand_targets(&selectors(&["nosuch"]), &policies).is_err());
    }

    #[test]
    fn promises_print_and_parse_back() {
        for promise in [
            PromiseKind::Durable,
            PromiseKind::Window { ms: 250 },
            PromiseKind::Prefix,
            PromiseKind::None,
        ] {
            assert_eq!(promise.to_string().parse::<PromiseKind>(), Ok(promise));
        }
        assert!("window:x".parse::<PromiseKind>().is_err());
    }

    #[test]
    fn every_registered_mode_prints_and_parses_back_and_states_every_promise() {
        for kind in TARGET_KINDS {
            assert!(target_kind(kind.name()).is_some());
            for mode in kind.modes() {
                assert_eq!(mode.to_string().parse::<TargetMode>(), Ok(mode));
                assert!(std::ptr::addr_eq(mode.kind(), *kind));
                for fault in FaultProfile::ALL {
                    if mode.outside_assumptions(fault) {
                        assert_eq!(mode.promise(fault), PromiseKind::None);
                    }
                }
            }
        }
        let listing = list::table();
        for kind in TARGET_KINDS {
            assert!(listing.contains(kind.name()), "{listing}");
        }
    }
}
