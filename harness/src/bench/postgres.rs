//! The throughput side of `postgres:MODE` (for `powercut compare`):
//! PostgreSQL 15 started with the same command and settings the target
//! uses ([`command`]), on a copy of the target's starting image in a real
//! directory (no FUSE), one connection per committing thread, each
//! transaction one `BEGIN; INSERT ... ON CONFLICT ...; COMMIT` query
//! acknowledged by its `COMMIT` tag — the transaction every other row of
//! the benchmark runs.
//!
//! The one setting changed: `max_connections` is raised to the thread
//! count (the target keeps 5). PostgreSQL's own fsyncs are not counted (no
//! recording storage in between): `fsyncs_per_commit` stays empty; the WAL
//! bytes per commit are PostgreSQL's own count (`pg_current_wal_insert_lsn`
//! before and after), since its WAL segments are recycled.

use super::runner::{TxnOutcome, run_committers};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use crate::target::process::postgres::wire::Connection;
use crate::target::process::postgres::{
    PgMode, QUERY_TIME_MAX, START_TIME_MAX, USER, command, kill_cluster, postgres_user,
    starting_image, transaction_sql,
};
use crate::target::process::program::{Program, ProgramSpec, wait_ready};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

/// Connections the benchmark leaves free beside its committing threads.
const SPARE_CONNECTIONS: usize = 3;
const SOCKET_NAME: &str = ".s.PGSQL.5432";

/// Measures `mode` under `spec` in a fresh directory under `root`.
pub fn bench_postgres(root: &Path, mode: PgMode, spec: RunSpec) -> Result<Measured, BenchError> {
    let failed = |what: String| BenchError::Postgres(what);
    let user = postgres_user().map_err(failed)?;
    let image = starting_image().map_err(failed)?;
    // The benchmark's own directory: the postgres user must pass through it.
    let mode_bits = std::fs::metadata(root)
        .map_err(|e| failed(format!("{}: {e}", root.display())))?
        .permissions()
        .mode();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode_bits | 0o711))
        .map_err(|e| failed(format!("{}: {e}", root.display())))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("postgres-{mode}-{}t-", spec.threads))
        .tempdir_in(root)
        .map_err(|e| failed(format!("cannot make its directory: {e}")))?;
    reachable_by(user, dir.path()).map_err(failed)?;
    let data = dir.path().join("data");
    let socket_dir = dir.path().join("socket");
    let give = |path: &Path, perm: u32| -> std::io::Result<()> {
        chown(path, Some(user.0), Some(user.1))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))
    };
    let copy = || -> std::io::Result<()> {
        give(dir.path(), 0o755)?;
        for path in [&data, &socket_dir] {
            std::fs::create_dir(path)?;
            give(path, 0o700)?;
        }
        for sub in &image.dirs {
            let path = data.join(sub);
            std::fs::create_dir_all(&path)?;
            give(&path, 0o700)?;
        }
        for (name, bytes) in &image.files {
            let path = data.join(name);
            std::fs::write(&path, bytes)?;
            give(&path, 0o600)?;
        }
        Ok(())
    };
    copy().map_err(|e| failed(format!("cannot copy the starting image: {e}")))?;
    let mut argv = command(mode, user, &data, &socket_dir);
    argv.push("-c".to_string());
    argv.push(format!(
        "max_connections={}",
        spec.threads + SPARE_CONNECTIONS
    ));
    let mut program = Program::start(&ProgramSpec {
        argv,
        cwd: dir.path().to_path_buf(),
        stderr_path: dir.path().join("postgres.log"),
        stdout_path: Some(dir.path().join("postgres.log")),
        stdin_pipe: false,
    })
    .map_err(|e| failed(format!("cannot start PostgreSQL: {e}")))?;
    let socket = socket_dir.join(SOCKET_NAME);
    let connect = || Connection::connect(&socket, USER, QUERY_TIME_MAX);
    let result = wait_ready(&mut program, START_TIME_MAX, || {
        connect().ok()?.query("SELECT 1").ok().map(|_| ())
    })
    .map_err(|why| {
        let log = std::fs::read(dir.path().join("postgres.log")).unwrap_or_default();
        failed(format!(
            "PostgreSQL did not start: {why}; its log: {}",
            crate::target::process::postgres::problem_lines(&log)
        ))
    })
    .and_then(|()| {
        let mut control = connect().map_err(|e| failed(format!("cannot connect: {e}")))?;
        let before = wal_position(&mut control).map_err(failed)?;
        let totals = run_committers(spec.threads, spec.duration, |index| {
            let mut connection = connect().map_err(|e| failed(format!("cannot connect: {e}")))?;
            let mut inputs = TxnInputs::for_thread(spec, index);
            Ok(move || {
                let (key, value) = inputs.next_write();
                let sql = transaction_sql([(&key[..], Some(&value[..]))]);
                let result = connection
                    .query(&sql)
                    .map_err(|e| failed(format!("a transaction failed: {e}")))?;
                match result.tags.last().map(String::as_str) {
                    Some("COMMIT") => Ok(TxnOutcome::Committed),
                    other => Err(failed(format!("the commit was answered {other:?}"))),
                }
            })
        })?;
        let after = wal_position(&mut control).map_err(failed)?;
        Ok(Measured {
            totals,
            wal_syncs: 0,
            all_file_syncs: None,
            wal_bytes: Some(after.saturating_sub(before)),
            engine: None,
        })
    });
    kill_cluster(&mut program);
    result
}

/// Where PostgreSQL inserts its next WAL record, in bytes from the start.
fn wal_position(connection: &mut Connection) -> Result<u64, String> {
    let result = connection
        .query("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
        .map_err(|e| format!("reading the WAL position: {e}"))?;
    result
        .rows
        .first()
        .and_then(|row| row.first())
        .and_then(|cell| cell.as_deref())
        .and_then(|text| std::str::from_utf8(text).ok()?.parse().ok())
        .ok_or_else(|| "reading the WAL position: no number came back".to_string())
}

/// Whether `user` may pass through every directory above `path` (mode
/// bits: owner, group or others may search); else why not, in one line.
fn reachable_by(user: (u32, u32), path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in path.ancestors().skip(1) {
        let metadata =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        let mode = metadata.mode();
        let searchable = if metadata.uid() == user.0 {
            mode & 0o100 != 0
        } else if metadata.gid() == user.1 {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(format!(
                "the user `{USER}` cannot pass through {} (mode {:o}): give --bench-dir a directory every user may search",
                ancestor.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}
