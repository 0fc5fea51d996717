//! SQLite, the point of comparison, in any of its target modes
//! ([`SqliteMode`]; `bench engine` measures `wal-full`, whose WAL is fsynced
//! at every commit, and `wal-normal`, fsynced only at checkpoints), on real
//! files with real fsyncs, through the harness's own
//! SQLite VFS ([`crate::target::sqlite::vfs`], the one `--target sqlite`
//! runs on) over a [`RealStorage`] directory, so the syncs are counted
//! where they happen: `fsyncs_per_commit` is the WAL file's syncs in WAL
//! mode (as the engine's is its WAL's) and every sync in DELETE mode (the
//! journal and the database are synced at each commit); the table also
//! shows all.
//!
//! That VFS has no shared memory, so the database is opened once, in
//! `locking_mode=EXCLUSIVE`, and the committing threads share that one
//! connection behind a mutex: SQLite serialises writers anyway (one write
//! transaction at a time), which is what the comparison with the engine's
//! concurrent commits is about.
//!
//! Each transaction is `BEGIN IMMEDIATE; INSERT OR REPLACE` one 100-byte
//! value at a random key of the thread's own range; `COMMIT`. Defaults are
//! SQLite's own otherwise (`wal_autocheckpoint=1000` pages, page cache).

use super::runner::{TxnOutcome, run_committers};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use crate::target::sqlite::vfs::{self, Mount, VfsBugSet};
use crate::target::sqlite::{Journal, SqliteMode};
use engine::storage::RealStorage;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The modes `bench engine` measures by default.
pub const DEFAULT_MODES: [&str; 2] = ["wal-full", "wal-normal"];

const INSERT: &str = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)";

/// Measures one configuration in its database file under `root` (created by
/// the first round, reopened by later ones).
pub fn bench_sqlite(root: &Path, mode: SqliteMode, spec: RunSpec) -> Result<Measured, BenchError> {
    vfs::register().map_err(|code| BenchError::SqliteVfs { code })?;
    let storage = RealStorage::new(root)?;
    let mount = Mount::new(Arc::new(storage), VfsBugSet::NONE)?;
    let path = mount.path(&format!("sqlite-{mode}-{}t.db", spec.threads));
    let connection = Mutex::new(open(&path, mode)?);
    let _only_measurement = vfs::exclusive();
    let syncs_before = vfs::sync_counts();
    let totals = run_committers(spec.threads, spec.duration, |index| {
        let connection = &connection;
        let mut inputs = TxnInputs::for_thread(spec, index);
        Ok(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            sqlite_txn(&connection, &mut inputs)
        })
    })?;
    let connection = connection.into_inner().unwrap_or_else(|p| p.into_inner());
    connection
        .close()
        .map_err(|(_, source)| BenchError::Sqlite {
            during: "close",
            source,
        })?;
    let syncs = vfs::sync_counts().since(syncs_before);
    Ok(Measured {
        totals,
        // The log's syncs: the WAL's in WAL mode; in DELETE mode the
        // rollback journal and the database are synced together at each
        // commit, so all of them.
        wal_syncs: match mode.journal {
            Journal::Wal => syncs.wal,
            Journal::Delete => syncs.wal + syncs.other,
        },
        all_file_syncs: Some(syncs.wal + syncs.other),
        wal_bytes: None,
        engine: None,
    })
}

fn open(path: &str, mode: SqliteMode) -> Result<Connection, BenchError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags_and_vfs(path, flags, vfs::VFS_NAME)
        .map_err(sqlite_error("open"))?;
    connection
        .execute_batch(&format!(
            "PRAGMA locking_mode={}; PRAGMA temp_store=MEMORY;",
            mode.locking_pragma()
        ))
        .map_err(sqlite_error("locking_mode"))?;
    let journal: String = connection
        .pragma_update_and_check(None, "journal_mode", mode.journal_pragma(), |row| {
            row.get(0)
        })
        .map_err(sqlite_error("journal_mode"))?;
    if !journal.eq_ignore_ascii_case(mode.journal_pragma()) {
        return Err(BenchError::SqliteSetup(format!(
            "journal_mode is {journal}, not {}",
            mode.journal_pragma()
        )));
    }
    connection
        .pragma_update(None, "synchronous", mode.sync_pragma())
        .map_err(sqlite_error("synchronous"))?;
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .map_err(sqlite_error("create table"))?;
    Ok(connection)
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
