//! SQLite, the point of comparison: WAL mode, `synchronous=FULL` (the WAL
//! is fsynced at every commit) and `synchronous=NORMAL` (fsynced only at
//! checkpoints), one connection per thread. SQLite serialises writers
//! (`BEGIN IMMEDIATE` takes the write lock; the others wait in
//! `busy_timeout`), which is what the comparison with the engine's
//! concurrent commits is about.
//!
//! Each transaction is `BEGIN IMMEDIATE; INSERT OR REPLACE` one 100-byte
//! value at a random key of the thread's own range; `COMMIT`. Defaults are
//! SQLite's own otherwise (`wal_autocheckpoint=1000` pages, page cache).
//! Syncs are counted by [`crate::target::sqlite::vfs`]; `fsyncs_per_commit` is the WAL
//! file's syncs (as the engine's is its WAL's), the table also shows all.

use super::runner::{TxnOutcome, run_committers};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use crate::target::sqlite::vfs;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// How long a writer waits for the write lock before its transaction counts
/// as aborted.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `synchronous` setting measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteSync {
    Full,
    Normal,
}

impl SqliteSync {
    pub const ALL: [SqliteSync; 2] = [SqliteSync::Full, SqliteSync::Normal];

    /// The `policy` column and the pragma's value.
    pub fn name(self) -> &'static str {
        match self {
            SqliteSync::Full => "full",
            SqliteSync::Normal => "normal",
        }
    }
}

const INSERT: &str = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)";

/// Measures one configuration in its database file under `root` (created by
/// the first round, reopened by later ones).
pub fn bench_sqlite(root: &Path, sync: SqliteSync, spec: RunSpec) -> Result<Measured, BenchError> {
    let path = root.join(format!("sqlite-{}-{}t.db", sync.name(), spec.threads));
    vfs::register().map_err(|code| BenchError::SqliteVfs { code })?;
    create_schema(&path, sync)?;
    let _only_measurement = vfs::exclusive();
    let syncs_before = vfs::sync_counts();
    let totals = run_committers(spec.threads, spec.duration, |index| {
        let connection = open(&path, sync)?;
        let mut inputs = TxnInputs::for_thread(spec, index);
        Ok(move || sqlite_txn(&connection, &mut inputs))
    })?;
    let syncs = vfs::sync_counts().since(syncs_before);
    Ok(Measured {
        totals,
        wal_syncs: syncs.wal,
        all_file_syncs: Some(syncs.wal + syncs.other),
        wal_bytes: None,
        engine: None,
    })
}

fn open(path: &Path, sync: SqliteSync) -> Result<Connection, BenchError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags_and_vfs(path, flags, vfs::VFS_NAME)
        .map_err(sqlite_error("open"))?;
    connection
        .busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error("busy_timeout"))?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite_error("journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BenchError::SqliteSetup(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    connection
        .pragma_update(None, "synchronous", sync.name())
        .map_err(sqlite_error("synchronous"))?;
    Ok(connection)
}

fn create_schema(path: &Path, sync: SqliteSync) -> Result<(), BenchError> {
    let connection = open(path, sync)?;
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .map_err(sqlite_error("create table"))
}

fn sqlite_txn(connection: &Connection, inputs: &mut TxnInputs) -> Result<TxnOutcome, BenchError> {
    let (key, value) = inputs.next_write();
    let result = (|| {
        connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        connection
            .prepare_cached(INSERT)?
            .execute((&key[..], &value[..]))?;
        connection.prepare_cached("COMMIT")?.execute([])
    })();
    if result.is_err() && !connection.is_autocommit() {
        connection
            .execute_batch("ROLLBACK")
            .map_err(sqlite_error("rollback"))?;
    }
    match result {
        Ok(_) => Ok(TxnOutcome::Committed),
        Err(error) if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
            Ok(TxnOutcome::Aborted)
        }
        Err(error) => Err(sqlite_error("transaction")(error)),
    }
}

fn sqlite_error(during: &'static str) -> impl Fn(rusqlite::Error) -> BenchError {
    move |source| BenchError::Sqlite { during, source }
}
