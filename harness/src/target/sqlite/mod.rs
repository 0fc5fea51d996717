//! SQLite as a target: rusqlite's bundled SQLite, in-process, on the
//! harness [`Storage`] through the [`vfs`].
//!
//! Modes `sqlite:<journal>-<sync>`: `journal_mode` WAL or DELETE ×
//! `synchronous` OFF, NORMAL, FULL or EXTRA. The database is one table
//! `kv(key BLOB PRIMARY KEY, value BLOB)`. A transaction is `BEGIN`, its
//! writes, `COMMIT`, acknowledged when `COMMIT` returns OK; the workload's
//! open transactions are buffered here and reach SQLite whole at commit
//! (SQLite has one writer at a time), and an abort runs its writes and
//! `ROLLBACK`, so the rollback path is exercised too. A checkpoint is
//! `PRAGMA wal_checkpoint(TRUNCATE)` (nothing in DELETE mode).
//!
//! In WAL mode the connection is opened with `locking_mode=EXCLUSIVE` (WAL
//! mode then needs no shared memory, which the VFS does not provide); in
//! DELETE mode it keeps `locking_mode=NORMAL`, because in exclusive mode
//! SQLite zeroes the rollback journal's header at commit instead of
//! deleting the journal (`pager_end_transaction`): that is PERSIST's commit,
//! not DELETE's. Always `temp_store=MEMORY` (no temporary files). SQLite's PRNG is seeded before
//! each open from a hash of the files there ([`prng_seed`]), so a case
//! replays byte for byte.
//!
//! Promises (docs/targets.md quotes and links SQLite's documentation):
//! every mode is durable under `process-crash`; under power loss (and
//! `fsync-error`, where the documentation is silent and SQLite is held to
//! its power-loss row) `wal-full`, `wal-extra` and `delete-extra` are
//! durable, `wal-normal` and `delete-full` keep a prefix, and
//! `delete-normal`, `wal-off` and `delete-off` promise nothing.
//! `torn-garbage` and `media` break SQLite's stated assumptions (powersafe
//! overwrite, no bit rot): no promise, counts reported as outside them.

pub mod vfs;

use self::vfs::{Mount, VfsBugSet};
use super::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetFactory, TargetKind,
    TargetMode, TargetResult, TxnHandle,
};
use crate::fault::FaultProfile;
use ::engine::Clock;
use ::engine::storage::Storage;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The database file's name; SQLite derives `-journal` and `-wal` from it.
pub const DATABASE_FILE: &str = "main.db";

/// Bytes of the files hashed for the PRNG seed at most (the harness's
/// images are far smaller).
const SEED_BYTES_MAX: u64 = 64 << 20;

/// The seed given to SQLite's PRNG before an open on `storage`: a hash of
/// the files there. Deterministic (a case replays byte for byte), yet
/// different for different disk contents, as a real process's random seed
/// would be: SQLite's WAL salts come from this PRNG, and a seed repeated
/// across the workload's open and the verifier's would let WAL frames of
/// one generation pass for another's, which real SQLite sees only with
/// probability 2^-32.
fn prng_seed(storage: &dyn Storage) -> std::ffi::c_int {
    let mut hash = 0x5EED_u32;
    let mut left = SEED_BYTES_MAX;
    for name in storage.list().unwrap_or_default() {
        hash = crc32c::crc32c_append(hash, name.as_bytes());
        let Ok(file) = storage.open(&name) else {
            continue;
        };
        let len = file.len().unwrap_or(0).min(left);
        let mut bytes = vec![0; len as usize];
        if ::engine::storage::read_exact_at(file.as_ref(), 0, &mut bytes).is_ok() {
            hash = crc32c::crc32c_append(hash, &bytes);
        }
        left -= len;
    }
    // 0 would mean "no fixed seed" to SQLite.
    (hash | 1) as std::ffi::c_int
}

/// Transactions open at once at most (the driver's `open_txns` bound).
const OPEN_TXNS_MAX: usize = 1024;

/// `journal_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Journal {
    Wal,
    Delete,
}

/// `synchronous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sync {
    Off,
    Normal,
    Full,
    Extra,
}

/// One SQLite mode: `<journal>-<sync>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SqliteMode {
    pub journal: Journal,
    pub sync: Sync,
}

impl SqliteMode {
    pub const ALL: [SqliteMode; 8] = {
        let j = [Journal::Wal, Journal::Delete];
        let s = [Sync::Off, Sync::Normal, Sync::Full, Sync::Extra];
        [
            SqliteMode {
                journal: j[0],
                sync: s[0],
            },
            SqliteMode {
                journal: j[0],
                sync: s[1],
            },
            SqliteMode {
                journal: j[0],
                sync: s[2],
            },
            SqliteMode {
                journal: j[0],
                sync: s[3],
            },
            SqliteMode {
                journal: j[1],
                sync: s[0],
            },
            SqliteMode {
                journal: j[1],
                sync: s[1],
            },
            SqliteMode {
                journal: j[1],
                sync: s[2],
            },
            SqliteMode {
                journal: j[1],
                sync: s[3],
            },
        ]
    };

    /// `locking_mode`: EXCLUSIVE in WAL mode (no shared memory needed),
    /// NORMAL in DELETE mode (in exclusive mode SQLite would zero the
    /// journal's header at commit instead of deleting it).
    pub fn locking_pragma(self) -> &'static str {
        match self.journal {
            Journal::Wal => "EXCLUSIVE",
            Journal::Delete => "NORMAL",
        }
    }

    /// `journal_mode`'s value.
    pub fn journal_pragma(self) -> &'static str {
        match self.journal {
            Journal::Wal => "WAL",
            Journal::Delete => "DELETE",
        }
    }

    /// `synchronous`'s value.
    pub fn sync_pragma(self) -> &'static str {
        match self.sync {
            Sync::Off => "OFF",
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
            Sync::Extra => "EXTRA",
        }
    }

    /// SQLite's promise under `fault` (module header; docs/targets.md).
    pub fn promise(self, fault: FaultProfile) -> PromiseKind {
        if !fault.loses_volatile_data() {
            return PromiseKind::Durable;
        }
        if self.outside_assumptions(fault) {
            return PromiseKind::None;
        }
        match (self.journal, self.sync) {
            (Journal::Wal, Sync::Full | Sync::Extra) | (Journal::Delete, Sync::Extra) => {
                PromiseKind::Durable
            }
            (Journal::Wal, Sync::Normal) | (Journal::Delete, Sync::Full) => PromiseKind::Prefix,
            (Journal::Delete, Sync::Normal) | (_, Sync::Off) => PromiseKind::None,
        }
    }

    /// `torn-garbage` (bytes never written may change: no powersafe
    /// overwrite) and `media` (bit rot, misdirected writes) break what
    /// SQLite documents it assumes of the disk.
    pub fn outside_assumptions(self, fault: FaultProfile) -> bool {
        matches!(fault, FaultProfile::TornGarbage | FaultProfile::Media)
    }

    /// `wal_checkpoint(TRUNCATE)` syncs the WAL and the database unless
    /// `synchronous=OFF`; in DELETE mode a checkpoint does nothing.
    pub fn checkpoint_is_durable(self) -> bool {
        self.journal == Journal::Wal && self.sync != Sync::Off
    }
}

impl fmt::Display for SqliteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let journal = match self.journal {
            Journal::Wal => "wal",
            Journal::Delete => "delete",
        };
        let sync = match self.sync {
            Sync::Off => "off",
            Sync::Normal => "normal",
            Sync::Full => "full",
            Sync::Extra => "extra",
        };
        write!(f, "{journal}-{sync}")
    }
}

impl std::str::FromStr for SqliteMode {
    type Err = String;

    fn from_str(text: &str) -> Result<SqliteMode, String> {
        SqliteMode::ALL
            .into_iter()
            .find(|mode| mode.to_string() == text)
            .ok_or_else(|| {
                format!(
                    "unknown SQLite mode `{text}` (JOURNAL-SYNC: journal wal or delete, sync off, normal, full or extra)"
                )
            })
    }
}

/// SQLite in the registry.
pub struct SqliteKind;

pub static SQLITE_KIND: SqliteKind = SqliteKind;

impl TargetKind for SqliteKind {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn description(&self) -> &'static str {
        "SQLite (rusqlite's bundled build), in-process through a VFS on the harness storage; modes JOURNAL-SYNC"
    }

    fn modes(&self) -> Vec<TargetMode> {
        SqliteMode::ALL
            .into_iter()
            .map(TargetMode::Sqlite)
            .collect()
    }

    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String> {
        mode.parse().map(TargetMode::Sqlite)
    }

    fn deterministic(&self) -> bool {
        true
    }

    fn parts_installed(&self) -> Result<(), String> {
        // Bundled: compiled into this binary.
        vfs::register().map_err(|code| format!("the SQLite VFS did not register (code {code})"))
    }

    fn promises_source(&self) -> &'static str {
        "docs/targets.md (SQLite's pragma synchronous, WAL and atomic-commit pages)"
    }
}

/// Opens SQLite in one mode, with planted VFS bugs.
#[derive(Clone, Debug)]
pub struct SqliteFactory {
    pub mode: SqliteMode,
    pub bugs: VfsBugSet,
}

impl TargetFactory for SqliteFactory {
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        _clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        let files_at_open = files_text(storage.as_ref());
        let seed = prng_seed(storage.as_ref());
        let mount = Mount::new(storage, self.bugs).map_err(|e| TargetError {
            kind: TargetErrorKind::Other,
            message: e.to_string(),
        })?;
        // SAFETY: a plain test-control call; it reseeds the process-wide
        // PRNG, which only this thread uses between here and the open.
        unsafe {
            rusqlite::ffi::sqlite3_test_control(
                rusqlite::ffi::SQLITE_TESTCTRL_PRNG_SEED,
                seed,
                std::ptr::null_mut::<rusqlite::ffi::sqlite3>(),
            );
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags_and_vfs(mount.path(DATABASE_FILE), flags, vfs::VFS_NAME)
                .map_err(sqlite_error("open"))?;
        let mut target = SqliteTarget {
            connection: Some(connection),
            mount,
            mode: self.mode,
            next_handle: 1,
            open: BTreeMap::new(),
            acked: Vec::new(),
            recovery: String::new(),
        };
        target.setup()?;
        target.recovery = format!(
            "SQLite {} opened on files {files_at_open}; after recovery: {}",
            self.mode,
            files_text(target.mount_storage().as_ref())
        );
        Ok(Box::new(target))
    }
}

/// `name (size), ...` of the files in `storage`.
fn files_text(storage: &dyn Storage) -> String {
    let Ok(names) = storage.list() else {
        return "(unlistable)".to_string();
    };
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|name| {
            let len = storage
                .open(name)
                .and_then(|file| file.len())
                .map_or("?".to_string(), |len| len.to_string());
            format!("{name} ({len} bytes)")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One write of a buffered transaction: `None` deletes.
type BufferedWrite = (Vec<u8>, Option<Vec<u8>>);

/// SQLite behind the [`Target`] seam.
pub struct SqliteTarget {
    /// `None` once closed.
    connection: Option<Connection>,
    mount: Mount,
    mode: SqliteMode,
    next_handle: TxnHandle,
    /// Open transactions' writes, in order.
    open: BTreeMap<TxnHandle, Vec<BufferedWrite>>,
    acked: Vec<TxnHandle>,
    recovery: String,
}

fn sqlite_error(during: &'static str) -> impl Fn(rusqlite::Error) -> TargetError {
    move |error| {
        let kind = match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                TargetErrorKind::Corruption
            }
            Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::CannotOpen) => {
                TargetErrorKind::Fatal
            }
            Some(ErrorCode::TooBig) => TargetErrorKind::Rejected,
            _ => TargetErrorKind::Other,
        };
        TargetError {
            kind,
            message: format!("SQLite {during}: {error}"),
        }
    }
}

impl SqliteTarget {
    fn connection(&self) -> &Connection {
        self.connection
            .as_ref()
            .expect("a closed SQLite target is never used (Box<Self> is consumed)")
    }

    fn mount_storage(&self) -> Arc<dyn Storage> {
        self.mount.storage()
    }

    /// The pragmas, then the table; recovery (hot journal rollback, WAL
    /// replay) happens at the first read of the database, here.
    fn setup(&mut self) -> TargetResult<()> {
        let connection = self.connection();
        let locking = self.mode.locking_pragma();
        connection
            .execute_batch(&format!(
                "PRAGMA locking_mode={locking}; PRAGMA temp_store=MEMORY;"
            ))
            .map_err(sqlite_error("locking_mode"))?;
        let journal: String = connection
            .pragma_update_and_check(None, "journal_mode", self.mode.journal_pragma(), |row| {
                row.get(0)
            })
            .map_err(sqlite_error("journal_mode"))?;
        if !journal.eq_ignore_ascii_case(self.mode.journal_pragma()) {
            return Err(TargetError {
                kind: TargetErrorKind::Other,
                message: format!(
                    "SQLite journal_mode is {journal}, not {}",
                    self.mode.journal_pragma()
                ),
            });
        }
        connection
            .pragma_update(None, "synchronous", self.mode.sync_pragma())
            .map_err(sqlite_error("synchronous"))?;
        connection
            .execute_batch("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
            .map_err(sqlite_error("create table"))
    }

    /// `BEGIN`, the writes, then `end` (`COMMIT` or `ROLLBACK`).
    fn run(&self, writes: &[BufferedWrite], end: &'static str) -> TargetResult<()> {
        let connection = self.connection();
        let result = (|| {
            connection.prepare_cached("BEGIN")?.execute([])?;
            for (key, value) in writes {
                match value {
                    Some(value) => connection
                        .prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
                        .execute((&key[..], &value[..]))?,
                    None => connection
                        .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                        .execute([&key[..]])?,
                };
            }
            connection.prepare_cached(end)?.execute([])
        })();
        if let Err(error) = result {
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            return Err(sqlite_error(end)(error));
        }
        Ok(())
    }

    fn take(&mut self, txn: TxnHandle) -> TargetResult<Vec<BufferedWrite>> {
        self.open.remove(&txn).ok_or_else(|| TargetError {
            kind: TargetErrorKind::Other,
            message: format!("no open transaction {txn}"),
        })
    }

    fn buffer(&mut self, txn: TxnHandle, write: BufferedWrite) -> TargetResult<()> {
        match self.open.get_mut(&txn) {
            Some(writes) => {
                writes.push(write);
                Ok(())
            }
            None => Err(TargetError {
                kind: TargetErrorKind::Other,
                message: format!("no open transaction {txn}"),
            }),
        }
    }
}

impl Target for SqliteTarget {
    fn begin(&mut self) -> TargetResult<TxnHandle> {
        if self.open.len() >= OPEN_TXNS_MAX {
            return Err(TargetError {
                kind: TargetErrorKind::Rejected,
                message: format!("more than {OPEN_TXNS_MAX} open transactions"),
            });
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        self.open.insert(handle, Vec::new());
        Ok(handle)
    }

    fn put(&mut self, txn: TxnHandle, key: &[u8], value: &[u8]) -> TargetResult<()> {
        self.buffer(txn, (key.to_vec(), Some(value.to_vec())))
    }

    fn delete(&mut self, txn: TxnHandle, key: &[u8]) -> TargetResult<()> {
        self.buffer(txn, (key.to_vec(), None))
    }

    fn abort(&mut self, txn: TxnHandle) -> TargetResult<()> {
        let writes = self.take(txn)?;
        self.run(&writes, "ROLLBACK")
    }

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        let writes = self.take(txn)?;
        self.run(&writes, "COMMIT")?;
        self.acked.push(txn);
        Ok(None)
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        if self.mode.journal != Journal::Wal {
            return Ok(());
        }
        let (busy, _, _): (i64, i64, i64) = self
            .connection()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(sqlite_error("wal_checkpoint"))?;
        if busy != 0 {
            return Err(TargetError {
                kind: TargetErrorKind::Fatal,
                message: "SQLite wal_checkpoint(TRUNCATE) was busy with one connection".into(),
            });
        }
        Ok(())
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acked)
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension;
        self.connection()
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut statement| {
                statement
                    .query_row([key], |row| row.get::<_, Option<Vec<u8>>>(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(sqlite_error("get"))
    }

    fn scan(&mut self) -> TargetResult<State> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT key, value FROM kv")
            .map_err(sqlite_error("scan"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                ))
            })
            .map_err(sqlite_error("scan"))?;
        let mut state = State::new();
        for row in rows {
            let (key, value) = row.map_err(sqlite_error("scan"))?;
            state.insert(key, value);
        }
        Ok(state)
    }

    fn recovery_summary(&self) -> String {
        self.recovery.clone()
    }

    fn close(mut self: Box<Self>) -> TargetResult<()> {
        let connection = self.connection.take().expect("open until closed");
        connection
            .close()
            .map_err(|(_, error)| sqlite_error("close")(error))
    }
}

impl Drop for SqliteTarget {
    /// Dropped without `close`: as a killed process, nothing SQLite does
    /// while its connection is torn down reaches the storage.
    fn drop(&mut self) {
        if self.connection.is_some() {
            self.mount.detach();
            self.connection = None;
        }
    }
}
