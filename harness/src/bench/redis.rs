//! The throughput side of `redis:MODE` (for `powercut compare`):
//! `redis-server` with the same arguments the target uses, on a real
//! directory (no FUSE), one connection per committing thread, each
//! transaction one `MULTI`, `SET`, `EXEC` pipeline acknowledged by its
//! `EXEC` reply — the transaction every other row of the benchmark runs.
//!
//! Redis's own fsyncs are not counted (no recording storage in between):
//! `fsyncs_per_commit` stays empty; the AOF bytes per commit are measured
//! from the files' sizes.

use super::runner::{TxnOutcome, run_committers};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use crate::target::process::program::{Program, ProgramSpec, wait_ready};
use crate::target::process::redis::{READY_TIME_MAX, REPLY_TIME_MAX, RedisMode, server_argv};
use crate::target::process::resp::{Reply, RespClient};
use std::path::Path;

/// Measures `mode` under `spec` in a fresh directory under `root`.
pub fn bench_redis(root: &Path, mode: RedisMode, spec: RunSpec) -> Result<Measured, BenchError> {
    let failed = |what: String| BenchError::Redis(what);
    let dir = tempfile::Builder::new()
        .prefix(&format!("redis-{mode}-{}t-", spec.threads))
        .tempdir_in(root)
        .map_err(|e| failed(format!("cannot make its directory: {e}")))?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)
        .map_err(|e| failed(format!("cannot make its data directory: {e}")))?;
    let socket = dir.path().join("redis.sock");
    let mut program = Program::start(&ProgramSpec {
        argv: server_argv(mode, &data.display().to_string(), &socket),
        cwd: dir.path().to_path_buf(),
        stderr_path: dir.path().join("output"),
        stdout_path: Some(dir.path().join("output")),
        stdin_pipe: false,
    })
    .map_err(|e| failed(format!("cannot start redis-server: {e}")))?;
    let connect = || RespClient::connect(&socket, REPLY_TIME_MAX);
    let result = wait_ready(&mut program, READY_TIME_MAX, || {
        let mut client = connect().ok()?;
        matches!(client.call(&[b"PING"]).ok()?, Reply::Status(pong) if pong == "PONG").then_some(())
    })
    .map_err(|why| failed(format!("redis-server did not start: {why}")))
    .and_then(|()| {
        let before = aof_bytes(&data);
        let totals = run_committers(spec.threads, spec.duration, |index| {
            let mut client =
                connect().map_err(|e| failed(format!("cannot connect to redis-server: {e}")))?;
            let mut inputs = TxnInputs::for_thread(spec, index);
            Ok(move || {
                let (key, value) = inputs.next_write();
                let replies = client
                    .pipeline(&[vec![b"MULTI"], vec![b"SET", &key, value], vec![b"EXEC"]])
                    .map_err(|e| failed(format!("a transaction failed: {e}")))?;
                match replies.last() {
                    Some(Reply::Array(Some(_))) => Ok(TxnOutcome::Committed),
                    other => Err(failed(format!("EXEC answered {other:?}"))),
                }
            })
        })?;
        Ok(Measured {
            totals,
            wal_syncs: 0,
            all_file_syncs: None,
            wal_bytes: Some(aof_bytes(&data).saturating_sub(before)),
            engine: None,
        })
    });
    let _ = program.kill();
    result
}

/// The bytes of every file in the AOF directory.
fn aof_bytes(data: &Path) -> u64 {
    std::fs::read_dir(data.join("appendonlydir"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}
