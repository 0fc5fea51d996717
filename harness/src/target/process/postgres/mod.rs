//! `postgres:sync|async|no-fpw|no-fsync`: PostgreSQL 15 as a process
//! target (SPEC §9, issue 13), its data directory on the FUSE mount.
//!
//! - **The cluster**: `initdb -k --wal-segsize=1` (data checksums, 1 MiB
//!   WAL segments) runs once per process on a real directory, and the table
//!   `kv(key bytea primary key, value bytea)` is created in single-user
//!   mode; the files are every trial's starting image
//!   ([`TargetFactory::starting_image`]). Each start passes the settings on
//!   the command line: a tiny `shared_buffers` and `max_wal_size` (so page
//!   evictions and checkpoints happen inside a short trial), no TCP, a Unix
//!   socket in the session's private directory, and the mode's setting.
//! - **Who runs it**: PostgreSQL refuses to run as root. It runs as the
//!   `postgres` user (`setpriv`), and the mount says that user owns every
//!   file, directories 0700, as PostgreSQL checks.
//! - **The whole cluster dies at a crash**: its backends call `setsid`, so
//!   a process group does not hold them. The postmaster runs as process 1 of
//!   its own PID namespace (`unshare --pid --fork`), so when it is killed
//!   the kernel kills and reaps every process of the cluster before the
//!   postmaster's exit is reported; `--kill-child` and `setpriv
//!   --pdeathsig` carry the death of the harness process down to it. Its
//!   own IPC namespace (`--ipc`) with `dynamic_shared_memory_type=sysv`
//!   takes every shared memory segment with it: nothing is left in
//!   `/dev/shm`. A stale `postmaster.pid` names process 1, which the next
//!   postmaster (process 1 of its own namespace) knows to be itself.
//! - **Workload and scan over SQL** ([`wire`]): a transaction is sent as one
//!   `BEGIN; ...; COMMIT` query when the driver commits it and is
//!   acknowledged when the `COMMIT` tag comes back. The scan reads the table
//!   twice, once sequentially and once through the primary key index, and
//!   the two must agree. SQLSTATE class `XX001`/`XX002` (data or index
//!   corrupted, e.g. a checksum failure) is a corruption; a server that
//!   does not start is a recovery error; both quote PostgreSQL's own log.
//! - **Clock**: the driver's clock is virtual, PostgreSQL's is not; the
//!   target keeps the virtual clock at least as far as the real time since
//!   it started, so acknowledgement times (and the `async` window) are in
//!   real time.
//!
//! Promises (quoted and linked in `docs/targets.md`): `sync` durable; `async`
//! may lose the commits of the last three `wal_writer_delay`s (its WAL
//! buffers die with the server, so also under `process-crash`); `no-fpw`
//! and `no-fsync` keep everything the operating system kept (`process-crash`)
//! and promise nothing under power loss; `media` is outside every mode's
//! assumptions (checksums detect, never repair).

pub mod wire;

use self::wire::{Connection, WireError, bytea_literal, parse_bytea};
use super::fuse::Owner;
use super::program::{NotReady, Program, ProgramSpec, die_with_this_thread, wait_ready};
use super::real_time::RealTimeOrigin;
use super::session::{self, Session};
use super::txns::OpenTxns;
use crate::fault::FaultProfile;
use crate::target::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetFactory, TargetKind,
    TargetMode, TargetResult, TxnHandle,
};
use engine::Clock;
use engine::storage::{Storage, read_exact_at};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where PostgreSQL 15 lives (the Debian package `postgresql-15`).
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The operating system user and the database role the cluster runs as.
pub const USER: &str = "postgres";
/// How long a start (with crash recovery) may take.
pub const START_TIME_MAX: Duration = Duration::from_secs(60);
/// How long one query may take.
pub const QUERY_TIME_MAX: Duration = Duration::from_secs(60);
/// How long a clean (fast) shutdown may take.
pub const STOP_TIME_MAX: Duration = Duration::from_secs(30);
/// PostgreSQL's default `wal_writer_delay` (kept), in milliseconds.
pub const WAL_WRITER_DELAY_MS: u64 = 200;
/// The most bytes of PostgreSQL's log a message quotes.
pub const LOG_QUOTE_BYTES_MAX: usize = 2048;
/// The server log's name in the session directory.
const LOG_FILE: &str = "postgres.log";
const SOCKET_DIR: &str = "socket";
const SOCKET_NAME: &str = ".s.PGSQL.5432";
/// How often a start is checked for readiness.
const READY_POLL: Duration = Duration::from_millis(3);

/// Settings of every mode: small, fast, local. `recovery_init_sync_method
/// = syncfs` (PostgreSQL's own alternative to fsyncing every file before
/// crash recovery) is a no-op on the FUSE mount, which is right here: a
/// trial's starting image is durable by construction, so the fsync of
/// every file would only cost time (about 0.13 s of a 0.23 s start).
const COMMON_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", ""),
    ("max_connections", "5"),
    ("shared_buffers", "256kB"),
    ("max_wal_size", "2MB"),
    ("min_wal_size", "2MB"),
    ("dynamic_shared_memory_type", "sysv"),
    ("log_min_messages", "warning"),
    ("recovery_init_sync_method", "syncfs"),
];

/// One setting of PostgreSQL's durability trade-offs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PgMode {
    /// The defaults: `synchronous_commit=on`, `fsync=on`,
    /// `full_page_writes=on`.
    Sync,
    /// `synchronous_commit=off`.
    Async,
    /// `full_page_writes=off`.
    NoFpw,
    /// `fsync=off`.
    NoFsync,
}

impl PgMode {
    pub const ALL: [PgMode; 4] = [PgMode::Sync, PgMode::Async, PgMode::NoFpw, PgMode::NoFsync];

    pub fn name(self) -> &'static str {
        match self {
            PgMode::Sync => "sync",
            PgMode::Async => "async",
            PgMode::NoFpw => "no-fpw",
            PgMode::NoFsync => "no-fsync",
        }
    }

    /// The settings that make this mode (on top of [`COMMON_SETTINGS`]).
    pub fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            PgMode::Sync => &[
                ("synchronous_commit", "on"),
                ("fsync", "on"),
                ("full_page_writes", "on"),
            ],
            PgMode::Async => &[("synchronous_commit", "off")],
            PgMode::NoFpw => &[("full_page_writes", "off")],
            PgMode::NoFsync => &[("fsync", "off")],
        }
    }
}

impl fmt::Display for PgMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `postgres` entry of the target registry.
pub struct PostgresKind;

pub static POSTGRES_KIND: PostgresKind = PostgresKind;

impl TargetKind for PostgresKind {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn description(&self) -> &'static str {
        "PostgreSQL 15 on the FUSE mount, driven over SQL; MODE is sync (the defaults), \
         async (synchronous_commit=off), no-fpw (full_page_writes=off) or no-fsync (fsync=off)"
    }

    fn modes(&self) -> Vec<TargetMode> {
        PgMode::ALL.into_iter().map(TargetMode::Postgres).collect()
    }

    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String> {
        PgMode::ALL
            .into_iter()
            .find(|m| m.name() == mode)
            .map(TargetMode::Postgres)
            .ok_or_else(|| {
                format!("unknown postgres mode `{mode}` (sync, async, no-fpw, no-fsync)")
            })
    }

    fn deterministic(&self) -> bool {
        false
    }

    fn parts_installed(&self) -> Result<(), String> {
        super::namespace::check_fuse_available()?;
        for program in ["postgres", "initdb"] {
            let path = Path::new(BIN_DIR).join(program);
            if !path.exists() {
                return Err(format!(
                    "PostgreSQL 15 is missing: {} does not exist (install it: \
                     `apt-get install postgresql-15`)",
                    path.display()
                ));
            }
        }
        for tool in ["unshare", "setpriv"] {
            if !["/usr/bin", "/bin"]
                .iter()
                .any(|dir| Path::new(dir).join(tool).exists())
            {
                return Err(format!(
                    "`{tool}` is missing (install it: `apt-get install util-linux`)"
                ));
            }
        }
        postgres_user().map(|_| ())
    }

    fn promises_source(&self) -> &'static str {
        "https://www.postgresql.org/docs/15/wal-reliability.html, \
         https://www.postgresql.org/docs/15/wal-async-commit.html, \
         https://www.postgresql.org/docs/15/runtime-config-wal.html"
    }

    fn cause(&self, message: &str) -> Option<String> {
        cause(message)
    }
}

/// PostgreSQL's messages that name why a crash state failed, and the short
/// cause each counts under ([`cause`]); the first that matches wins.
pub const CAUSES: &[(&str, &str)] = &[
    ("lock file \"postmaster.pid\" is empty", "lock-file-empty"),
    (
        "could not locate a valid checkpoint record",
        "no-valid-checkpoint",
    ),
    (
        "could not locate required checkpoint record",
        "no-valid-checkpoint",
    ),
    ("invalid checkpoint record", "no-valid-checkpoint"),
    ("checkpoint record is at", "no-valid-checkpoint"),
    (
        "invalid resource manager ID in checkpoint record",
        "no-valid-checkpoint",
    ),
    ("control file", "control-file"),
    ("pg_control", "control-file"),
    (
        "WAL contains references to invalid pages",
        "wal-references-invalid-pages",
    ),
    ("page verification failed", "checksum-failure"),
    ("invalid page in block", "invalid-page"),
    ("could not read block", "could-not-read-block"),
    ("could not read file", "could-not-read-file"),
    ("could not open file", "missing-file"),
    ("could not access status of transaction", "missing-clog"),
    ("uncommitted xmin", "visibility-corruption"),
    ("xmin", "visibility-corruption"),
    ("unexpected zero page", "zero-page"),
    ("unexpected data beyond EOF", "data-beyond-eof"),
    ("index", "index-corruption"),
];

/// What the scan finds without a word from PostgreSQL, and its cause name.
const HARNESS_CAUSES: &[(&str, &str)] = &[
    (TABLE_AND_INDEX_DISAGREE, "index-disagrees-with-table"),
    (NOT_TWO_BYTEA, "malformed-row"),
];
const TABLE_AND_INDEX_DISAGREE: &str = "the table and its primary key index disagree";
const NOT_TWO_BYTEA: &str = "a row that is not two bytea values";

/// The most severe problem line of a message that quotes PostgreSQL's log:
/// the first `PANIC`, else `FATAL`, else `ERROR`, else `WARNING`; the text
/// after the level.
pub fn worst_log_message(message: &str) -> Option<&str> {
    ["PANIC:", "FATAL:", "ERROR:", "WARNING:"]
        .iter()
        .find_map(|level| {
            let at = message.find(level)?;
            let rest = message[at + level.len()..].trim_start();
            Some(rest.split(" | ").next().unwrap_or(rest).trim())
        })
}

/// Why a PostgreSQL crash state failed, from the log line its message
/// quotes: a name from [`CAUSES`], or `other: ` and the line itself (its
/// numbers as `N`, at most 80 characters) for a message not listed;
/// `None` when the message quotes no problem line (a loss, a hole or a
/// half transaction the oracle found in the scanned rows).
pub fn cause(message: &str) -> Option<String> {
    let Some(line) = worst_log_message(message) else {
        // The scan's own findings, which PostgreSQL did not log.
        return HARNESS_CAUSES
            .iter()
            .find(|(text, _)| message.contains(text))
            .map(|(_, name)| name.to_string());
    };
    if let Some((_, name)) = CAUSES.iter().find(|(text, _)| line.contains(text)) {
        return Some(name.to_string());
    }
    let mut generic = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !generic.ends_with('N') {
                generic.push('N');
            }
        } else {
            generic.push(c);
        }
        if generic.chars().count() >= 80 {
            break;
        }
    }
    Some(format!("other: {generic}"))
}

/// What `postgres:MODE` promises under `fault`.
pub fn promise(mode: PgMode, fault: FaultProfile) -> PromiseKind {
    if outside_assumptions(fault) {
        return PromiseKind::None;
    }
    match mode {
        PgMode::Sync => PromiseKind::Durable,
        PgMode::Async => PromiseKind::Window {
            ms: 3 * WAL_WRITER_DELAY_MS,
        },
        PgMode::NoFpw | PgMode::NoFsync if fault == FaultProfile::ProcessCrash => {
            PromiseKind::Durable
        }
        PgMode::NoFpw | PgMode::NoFsync => PromiseKind::None,
    }
}

/// PostgreSQL assumes storage that returns what was written: data checksums
/// detect a flipped bit, they do not repair it.
pub fn outside_assumptions(fault: FaultProfile) -> bool {
    fault == FaultProfile::Media
}

/// A `CHECKPOINT` flushes the WAL and the data files and fsyncs them,
/// unless `fsync=off`.
pub fn checkpoint_is_durable(mode: PgMode) -> bool {
    mode != PgMode::NoFsync
}

/// The uid and gid of [`USER`], from `/etc/passwd`.
pub fn postgres_user() -> Result<(u32, u32), String> {
    let missing = || {
        format!(
            "the user `{USER}` is missing (the package postgresql-15 creates it: \
             `apt-get install postgresql-15`)"
        )
    };
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|_| missing())?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&USER))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(missing)
}

/// The files and directories `initdb` left, with the table `kv`.
#[derive(Debug)]
pub struct StartingImage {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every directory, also the empty ones a file map cannot hold.
    pub dirs: BTreeSet<String>,
    /// How long making it took.
    pub made_in: Duration,
}

static STARTING_IMAGE: OnceLock<Result<StartingImage, String>> = OnceLock::new();

/// The starting image, made once per process.
pub fn starting_image() -> Result<&'static StartingImage, String> {
    STARTING_IMAGE
        .get_or_init(make_starting_image)
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `command` as `(uid, gid)`, its output into `log`; fails with the
/// log's tail.
fn run_as(mut command: Command, user: (u32, u32), log: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log).map_err(|e| format!("{what}: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("{what}: {e}"))?;
    // A killed harness takes initdb with it.
    die_with_this_thread(&mut command);
    let status = command
        .uid(user.0)
        .gid(user.1)
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{what} failed ({status}): {}",
            quote_log(&std::fs::read(log).unwrap_or_default())
        ));
    }
    Ok(())
}

/// Where `initdb` makes the cluster: in this process's private scratch
/// tmpfs ([`session::ensure_private_scratch`]) when it can enter one (a
/// single-threaded worker or child), so that a process SIGKILLed during
/// `initdb` leaves nothing behind (the tmpfs dies with its namespace's last
/// process, and `initdb` dies with its parent); else (a process with
/// threads: a test, `compare`) a directory in the temporary directory,
/// removed when the image is read.
fn initdb_dir() -> PathBuf {
    match session::ensure_private_scratch() {
        Ok(()) => Path::new(session::SCRATCH_DIR).join(INITDB_DIR),
        Err(_) => std::env::temp_dir().join(format!("{INITDB_DIR}-{}", std::process::id())),
    }
}

/// The name of `initdb`'s directory.
pub const INITDB_DIR: &str = "powercut-postgres-initdb";

fn make_starting_image() -> Result<StartingImage, String> {
    let started = Instant::now();
    let user = postgres_user()?;
    let dir = initdb_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = (|| {
        std::os::unix::fs::chown(&dir, Some(user.0), Some(user.1))
            .map_err(|e| format!("cannot give {} to {USER}: {e}", dir.display()))?;
        let data = dir.join("data");
        let mut initdb = Command::new(Path::new(BIN_DIR).join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-k", "--wal-segsize=1", "-A", "trust", "-U", USER])
            .args([
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null());
        run_as(initdb, user, &dir.join("initdb.log"), "initdb")?;
        let mut single = Command::new(Path::new(BIN_DIR).join("postgres"));
        single
            .args(["--single", "-D"])
            .arg(&data)
            .args(["-c", "fsync=off", "postgres"])
            .current_dir(&dir)
            .stdin(Stdio::piped());
        let sql = std::fs::File::create(dir.join("create.sql"))
            .and_then(|mut file| {
                use std::io::Write;
                file.write_all(b"CREATE TABLE kv (key bytea PRIMARY KEY, value bytea);\n")
                    .map(|()| file)
            })
            .map_err(|e| format!("cannot write the table's SQL: {e}"))?;
        drop(sql);
        single.stdin(
            std::fs::File::open(dir.join("create.sql"))
                .map_err(|e| format!("cannot read the table's SQL: {e}"))?,
        );
        run_as(
            single,
            user,
            &dir.join("single.log"),
            "creating the table kv",
        )?;
        let log = std::fs::read(dir.join("single.log")).unwrap_or_default();
        if String::from_utf8_lossy(&log).contains("ERROR") {
            return Err(format!("creating the table kv failed: {}", quote_log(&log)));
        }
        let mut image = StartingImage {
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            made_in: Duration::ZERO,
        };
        read_tree(&data, "", &mut image)
            .map_err(|e| format!("cannot read the initdb image: {e}"))?;
        image.made_in = started.elapsed();
        Ok(image)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn read_tree(root: &Path, prefix: &str, image: &mut StartingImage) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(prefix))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            image.dirs.insert(path.clone());
            read_tree(root, &path, image)?;
        } else if kind.is_file() {
            image.files.insert(path, std::fs::read(entry.path())?);
        } else {
            return Err(io::Error::other(format!(
                "{path}: not a file or a directory"
            )));
        }
    }
    Ok(())
}

/// Creates the starting image's directories that `storage` lacks. A file
/// map (the harness's crash images) cannot hold an empty directory, and
/// PostgreSQL will not start without `pg_tblspc`, `pg_twophase`, ...; a
/// directory made by `initdb` and synced never vanishes on a real disk, so
/// the ones recreated are synced into their parents at once (else a power
/// cut could drop them, a loss no real disk would show).
fn ensure_dirs(storage: &dyn Storage, dirs: &BTreeSet<String>) -> io::Result<()> {
    let mut parents = BTreeSet::new();
    for dir in dirs {
        match storage.create_dir(dir) {
            Ok(()) => {
                parents.insert(dir.rsplit_once('/').map_or("", |(parent, _)| parent));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for parent in parents {
        storage.sync_dir_at(parent)?;
    }
    Ok(())
}

/// The last [`LOG_QUOTE_BYTES_MAX`] bytes of a log, its lines joined by
/// ` | `.
pub fn quote_log(log: &[u8]) -> String {
    let start = log.len().saturating_sub(LOG_QUOTE_BYTES_MAX);
    String::from_utf8_lossy(&log[start..])
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The lines of a server log that tell a problem (`WARNING`, `ERROR`,
/// `FATAL`, `PANIC`, with their `DETAIL` and `HINT`), or its tail when there
/// is none.
pub fn problem_lines(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let problems: Vec<&str> = text
        .lines()
        .filter(|line| {
            ["WARNING:", "ERROR:", "FATAL:", "PANIC:", "DETAIL:", "HINT:"]
                .iter()
                .any(|level| line.contains(level))
        })
        .collect();
    if problems.is_empty() {
        return quote_log(log);
    }
    let joined = problems.join(" | ");
    let start = joined.len().saturating_sub(LOG_QUOTE_BYTES_MAX);
    let start = (start..=joined.len())
        .find(|i| joined.is_char_boundary(*i))
        .unwrap_or(joined.len());
    joined[start..].to_string()
}

/// Whether a server message tells corrupted data.
fn tells_corruption(code: &str, text: &str) -> bool {
    code == "XX001"
        || code == "XX002"
        || text.contains("checksum verification failed")
        || text.contains("invalid page in block")
}

/// Opens `postgres:MODE` targets.
pub struct PostgresFactory {
    pub mode: PgMode,
}

impl TargetFactory for PostgresFactory {
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        PostgresTarget::start(self.mode, storage, clock).map(|t| Box::new(t) as Box<dyn Target>)
    }

    fn starting_image(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Ok(starting_image()?.files.clone())
    }
}

fn error(kind: TargetErrorKind, message: String) -> TargetError {
    TargetError { kind, message }
}

/// A running cluster behind the [`Target`] seam.
pub struct PostgresTarget {
    mode: PgMode,
    /// `None` once closed.
    connection: Option<Connection>,
    session: Session,
    clock: Arc<dyn Clock>,
    origin: RealTimeOrigin,
    txns: OpenTxns,
    acks: Vec<TxnHandle>,
    /// What the log said about recovery, read once it accepted connections.
    recovery: String,
}

/// The command that starts the postmaster as process 1 of its own PID and
/// IPC namespaces, as [`USER`].
pub fn command(mode: PgMode, user: (u32, u32), datadir: &Path, socket_dir: &Path) -> Vec<String> {
    let mut argv: Vec<String> = [
        "unshare",
        "--pid",
        "--ipc",
        "--fork",
        "--kill-child=SIGKILL",
        "setpriv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.push(format!("--reuid={}", user.0));
    argv.push(format!("--regid={}", user.1));
    argv.push("--clear-groups".to_string());
    argv.push("--pdeathsig=SIGKILL".to_string());
    argv.push(format!("{BIN_DIR}/postgres"));
    argv.push("-D".to_string());
    argv.push(datadir.display().to_string());
    let socket = ("unix_socket_directories", socket_dir.to_str().unwrap_or(""));
    for (key, value) in COMMON_SETTINGS
        .iter()
        .chain(mode.settings())
        .chain([&socket])
    {
        argv.push("-c".to_string());
        argv.push(format!("{key}={value}"));
    }
    argv
}

impl PostgresTarget {
    fn start(
        mode: PgMode,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<PostgresTarget> {
        let other = |message: String| error(TargetErrorKind::Other, message);
        let user = postgres_user().map_err(other)?;
        let image = starting_image().map_err(other)?;
        ensure_dirs(storage.as_ref(), &image.dirs)
            .map_err(|e| other(format!("cannot recreate the data directory's folders: {e}")))?;
        let owner = Owner {
            uid: user.0,
            gid: user.1,
            dir_perm: 0o700,
            file_perm: 0o600,
        };
        let mut socket_dir = PathBuf::new();
        let session = Session::start_owned(storage.clone(), Some(owner), |datadir, dir| {
            socket_dir = dir.join(SOCKET_DIR);
            std::fs::create_dir(&socket_dir)?;
            std::os::unix::fs::chown(&socket_dir, Some(user.0), Some(user.1))?;
            std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))?;
            Ok(ProgramSpec {
                argv: command(mode, user, datadir, &socket_dir),
                cwd: dir.to_path_buf(),
                stderr_path: dir.join(LOG_FILE),
                stdout_path: Some(dir.join(LOG_FILE)),
                stdin_pipe: false,
            })
        })
        .map_err(|e| other(format!("cannot start PostgreSQL on its mount: {e}")))?;
        let mut target = PostgresTarget {
            mode,
            connection: None,
            session,
            origin: RealTimeOrigin::now(clock.as_ref()),
            clock,
            txns: OpenTxns::default(),
            acks: Vec::new(),
            recovery: String::new(),
        };
        let socket = socket_dir.join(SOCKET_NAME);
        let ready = wait_ready(target.session.program(), START_TIME_MAX, || {
            std::thread::sleep(READY_POLL);
            (socket.exists() && pid_file_says_ready(storage.as_ref())).then_some(())
        });
        if let Err(why) = ready {
            let log = target.log();
            let kind = if tells_corruption("", &String::from_utf8_lossy(&log)) {
                TargetErrorKind::Corruption
            } else {
                TargetErrorKind::Other
            };
            let what = match why {
                NotReady::Exited(status) => format!("PostgreSQL did not start ({status})"),
                other => format!("PostgreSQL did not start: {other}"),
            };
            return Err(error(
                kind,
                format!("{what}; its log: {}", problem_lines(&log)),
            ));
        }
        let connection = Connection::connect(&socket, USER, QUERY_TIME_MAX)
            .map_err(|e| target.failure("connecting", e))?;
        target.connection = Some(connection);
        target.recovery = recovery_lines(&target.log());
        Ok(target)
    }

    /// The server's log so far.
    pub fn log(&self) -> Vec<u8> {
        std::fs::read(self.session.dir().join(LOG_FILE)).unwrap_or_default()
    }

    /// A failed request as a target error, with the log's problem lines.
    fn failure(&self, what: &str, e: WireError) -> TargetError {
        let log = self.log();
        let kind = match &e {
            WireError::Server(server) if tells_corruption(&server.code, &server.message) => {
                TargetErrorKind::Corruption
            }
            _ if tells_corruption("", &String::from_utf8_lossy(&log)) => {
                TargetErrorKind::Corruption
            }
            _ => TargetErrorKind::Fatal,
        };
        error(
            kind,
            format!("{what}: {e}; PostgreSQL's log: {}", problem_lines(&log)),
        )
    }

    /// Makes the virtual clock real time since the start
    /// ([`super::real_time`]): `async`'s window counts real time.
    fn follow_real_time(&self) {
        self.origin.align(self.clock.as_ref());
    }

    fn query(&mut self, what: &str, sql: &str) -> TargetResult<wire::QueryResult> {
        self.follow_real_time();
        let result = match self.connection.as_mut() {
            Some(connection) => connection.query(sql),
            None => Err(WireError::Io(io::Error::other("the target was closed"))),
        };
        self.follow_real_time();
        result.map_err(|e| self.failure(what, e))
    }

    fn rows(&mut self, what: &str, sql: &str) -> TargetResult<State> {
        let result = self.query(what, sql)?;
        let mut state = State::new();
        for row in result.rows {
            let pair = match row.as_slice() {
                [Some(key), Some(value)] => parse_bytea(key).zip(parse_bytea(value)),
                _ => None,
            };
            let (key, value) = pair.ok_or_else(|| {
                error(
                    TargetErrorKind::Corruption,
                    format!("{what}: {NOT_TWO_BYTEA}"),
                )
            })?;
            state.insert(key, value);
        }
        Ok(state)
    }

    fn postmaster_pid(&mut self) -> Option<i32> {
        postmaster_of(self.session.program())
    }

    fn kill_cluster(&mut self) {
        drop(self.connection.take());
        kill_cluster(self.session.program());
    }
}

/// One transaction as one simple query: `BEGIN`, each write (a put is an
/// upsert, `None` a delete), `COMMIT`.
pub fn transaction_sql<'a>(
    writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> String {
    let mut sql = String::from("BEGIN;");
    for (key, value) in writes {
        match value {
            Some(value) => sql.push_str(&format!(
                "INSERT INTO kv VALUES ({}, {}) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;",
                bytea_literal(key),
                bytea_literal(value)
            )),
            None => sql.push_str(&format!("DELETE FROM kv WHERE key = {};", bytea_literal(key))),
        }
    }
    sql.push_str("COMMIT");
    sql
}

/// The postmaster's pid (outside its namespace) of a cluster [`command`]
/// started: the child of the `unshare` process.
pub fn postmaster_of(program: &Program) -> Option<i32> {
    let unshare = program.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Kills the whole cluster [`command`] started: the postmaster is process 1
/// of its PID namespace, so its death kills and reaps every backend;
/// `unshare` exits after it.
pub fn kill_cluster(program: &mut Program) {
    if let Some(pid) = postmaster_of(program) {
        // SAFETY: a plain signal to the postmaster this program started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = program.wait_or_kill(STOP_TIME_MAX);
}

/// `postmaster.pid`'s eighth line says `ready` once the server accepts
/// connections.
fn pid_file_says_ready(storage: &dyn Storage) -> bool {
    let Ok(file) = storage.open("postmaster.pid") else {
        return false;
    };
    let len = file.len().unwrap_or(0).min(4096) as usize;
    let mut bytes = vec![0u8; len];
    if read_exact_at(file.as_ref(), 0, &mut bytes).is_err() {
        return false;
    }
    String::from_utf8_lossy(&bytes)
        .lines()
        .nth(7)
        .is_some_and(|status| status.trim() == "ready")
}

/// The log lines that tell what recovery did.
fn recovery_lines(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| {
            [
                "database system was",
                "redo ",
                "invalid record",
                "automatic recovery",
                "checkpoint starting: end-of-recovery",
                "WARNING:",
                "ERROR:",
            ]
            .iter()
            .any(|phrase| line.contains(phrase))
        })
        .map(|line| line.split_once("LOG:  ").map_or(line, |(_, rest)| rest))
        .collect();
    lines.join("; ")
}

impl Target for PostgresTarget {
    crate::target::process::txns::buffered_transactions!();

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        let writes = self.txns.take(txn)?;
        let sql = transaction_sql(
            writes
                .iter()
                .map(|(key, value)| (key.as_slice(), value.as_deref())),
        );
        let result = self.query("commit", &sql)?;
        if result.tags.last().map(String::as_str) != Some("COMMIT") {
            return Err(error(
                TargetErrorKind::Fatal,
                format!(
                    "the commit was answered {:?}, not COMMIT",
                    result.tags.last()
                ),
            ));
        }
        self.acks.push(txn);
        Ok(None)
    }

    fn tick(&mut self) -> TargetResult<()> {
        self.follow_real_time();
        Ok(())
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        self.query("CHECKPOINT", "CHECKPOINT").map(|_| ())
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acks)
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        let sql = format!(
            "SELECT key, value FROM kv WHERE key = {}",
            bytea_literal(key)
        );
        Ok(self.rows("get", &sql)?.remove(key))
    }

    /// Every row, read twice: by a sequential scan of the table and through
    /// the primary key index; they must agree.
    fn scan(&mut self) -> TargetResult<State> {
        let table = self.rows(
            "scanning the table",
            "SET enable_indexscan = off; SET enable_indexonlyscan = off; \
             SET enable_bitmapscan = off; SELECT key, value FROM kv; RESET ALL",
        )?;
        let index = self.rows(
            "scanning through the primary key",
            "SET enable_seqscan = off; SET enable_bitmapscan = off; \
             SELECT key, value FROM kv ORDER BY key; RESET ALL",
        )?;
        if table != index {
            return Err(error(
                TargetErrorKind::Corruption,
                format!(
                    "{TABLE_AND_INDEX_DISAGREE}: {} rows in the table, {} through the index",
                    table.len(),
                    index.len()
                ),
            ));
        }
        Ok(table)
    }

    fn recovery_summary(&self) -> String {
        if self.recovery.is_empty() {
            format!("PostgreSQL ({}) started on the image", self.mode)
        } else {
            format!(
                "PostgreSQL ({}) started on the image: {}",
                self.mode, self.recovery
            )
        }
    }

    /// A fast shutdown (SIGINT): PostgreSQL ends its sessions, writes a
    /// shutdown checkpoint and exits 0.
    fn close(mut self: Box<Self>) -> TargetResult<()> {
        if let Some(connection) = self.connection.take() {
            connection.terminate();
        }
        let pid = self.postmaster_pid().ok_or_else(|| {
            self.failure(
                "closing",
                WireError::Io(io::Error::other("the postmaster is gone")),
            )
        })?;
        // SAFETY: a plain signal to the postmaster this target started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = self
            .session
            .program()
            .wait_or_kill(STOP_TIME_MAX)
            .map_err(|e| {
                error(
                    TargetErrorKind::Other,
                    format!("waiting for the shutdown: {e}"),
                )
            })?;
        if !status.success() {
            return Err(error(
                TargetErrorKind::Fatal,
                format!(
                    "PostgreSQL did not shut down cleanly ({status}); its log: {}",
                    problem_lines(&self.log())
                ),
            ));
        }
        Ok(())
    }
}

impl Drop for PostgresTarget {
    fn drop(&mut self) {
        self.kill_cluster();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_states_its_documented_promise() {
        use FaultProfile::*;
        for fault in FaultProfile::ALL {
            let lossy = fault != ProcessCrash;
            let media = fault == Media;
            let expect = |promise: PromiseKind| if media { PromiseKind::None } else { promise };
            assert_eq!(promise(PgMode::Sync, fault), expect(PromiseKind::Durable));
            assert_eq!(
                promise(PgMode::Async, fault),
                expect(PromiseKind::Window { ms: 600 })
            );
            for mode in [PgMode::NoFpw, PgMode::NoFsync] {
                let kept = if lossy {
                    PromiseKind::None
                } else {
                    PromiseKind::Durable
                };
                assert_eq!(promise(mode, fault), expect(kept));
            }
        }
    }

    #[test]
    fn modes_parse_and_set_what_their_names_say() {
        for mode in PgMode::ALL {
            assert_eq!(
                POSTGRES_KIND.parse_mode(mode.name()),
                Ok(TargetMode::Postgres(mode))
            );
        }
        assert!(POSTGRES_KIND.parse_mode("fast").is_err());
        let argv = command(
            PgMode::NoFsync,
            (101, 104),
            Path::new("/d"),
            Path::new("/s"),
        );
        assert!(argv.contains(&"fsync=off".to_string()), "{argv:?}");
        assert!(argv.contains(&"unix_socket_directories=/s".to_string()));
        assert!(argv.contains(&"listen_addresses=".to_string()));
    }

    #[test]
    fn logs_are_quoted_by_their_problem_lines() {
        let log = b"2026 LOG:  database system was interrupted\n\
                    2026 LOG:  redo starts at 0/1000\n\
                    2026 PANIC:  could not locate a valid checkpoint record\n";
        assert_eq!(
            problem_lines(log),
            "2026 PANIC:  could not locate a valid checkpoint record"
        );
        assert_eq!(
            recovery_lines(log),
            "database system was interrupted; redo starts at 0/1000"
        );
        assert!(tells_corruption("XX001", ""));
        assert!(tells_corruption(
            "",
            "WARNING:  page verification failed, calculated checksum 1 but expected 2; \
             invalid page in block 0"
        ));
        assert!(!tells_corruption(
            "57P03",
            "the database system is starting up"
        ));
    }

    #[test]
    fn causes_are_read_from_the_worst_log_line() {
        let empty_pid = "PostgreSQL did not start (exit status: 1); its log: \
            2026-12-01 13:00:00.000 UTC [1] FATAL:  lock file \"postmaster.pid\" is empty | \
            2026-12-01 13:00:00.000 UTC [1] HINT:  Either another server is starting, or the lock file is the remnant of a previous server startup crash.";
        assert_eq!(cause(empty_pid).as_deref(), Some("lock-file-empty"));
        let checkpoint = "PostgreSQL did not start; its log: \
            [1] LOG:  invalid primary checkpoint record | \
            [1] WARNING:  something first | \
            [1] PANIC:  could not locate a valid checkpoint record";
        assert_eq!(cause(checkpoint).as_deref(), Some("no-valid-checkpoint"));
        let checksum = "scanning the table: ERROR XX001: invalid page in block 3 of relation base/5/16384; \
            PostgreSQL's log: [7] WARNING:  page verification failed, calculated checksum 1 but expected 2 | \
            [7] ERROR:  invalid page in block 3 of relation base/5/16384";
        assert_eq!(cause(checksum).as_deref(), Some("invalid-page"));
        assert_eq!(
            cause("its log: [1] FATAL:  something new at 0/1A2B3C").as_deref(),
            Some("other: something new at N/NANBNC")
        );
        assert_eq!(cause("key 0x01 lost: acknowledged at 12 ms"), None);
        assert_eq!(
            cause("the table and its primary key index disagree: 3 rows in the table, 2 through the index")
                .as_deref(),
            Some("index-disagrees-with-table")
        );
        assert_eq!(
            POSTGRES_KIND.cause(empty_pid).as_deref(),
            Some("lock-file-empty")
        );
    }
}
