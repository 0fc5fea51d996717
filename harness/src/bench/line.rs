//! The throughput side of `line:COMMAND` (for `powercut compare`): the
//! user's program started as the target starts it (`COMMAND DATADIR`), its
//! data directory a real directory (no FUSE), each transaction `BEGIN`, one
//! `PUT` of the benchmark's 100-byte value, `COMMIT`, acknowledged by the
//! `OK` to `COMMIT` — the transaction every other row of the benchmark runs.
//!
//! The program has one input and one output and serves one request at a
//! time (SPEC §9), so committing threads take turns on its pipe: more
//! threads measure the queue, not parallel commits. Its fsyncs and log
//! bytes are not counted (no recording storage in between): both columns
//! stay empty.

use super::runner::{TxnOutcome, run_committers};
use super::{BenchError, Measured, RunSpec, TxnInputs};
use crate::target::process::line::{LineClient, argv};
use crate::target::process::program::{Program, ProgramSpec};
use std::path::Path;
use std::sync::Mutex;

/// Measures `line:command` under `spec` in a fresh directory under `root`.
pub fn bench_line(root: &Path, command: &str, spec: RunSpec) -> Result<Measured, BenchError> {
    let failed = |what: String| BenchError::Line(format!("`{command}`: {what}"));
    let dir = tempfile::Builder::new()
        .prefix(&format!("line-{}t-", spec.threads))
        .tempdir_in(root)
        .map_err(|e| failed(format!("cannot make its directory: {e}")))?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)
        .map_err(|e| failed(format!("cannot make its data directory: {e}")))?;
    let stderr = dir.path().join("stderr");
    let mut program = Program::start(&ProgramSpec {
        argv: argv(command, &data.display().to_string()),
        cwd: dir.path().to_path_buf(),
        stderr_path: stderr.clone(),
        stdout_path: None,
        stdin_pipe: true,
    })
    .map_err(|e| failed(format!("cannot start it: {e}")))?;
    let with_stderr = |what: String| {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        failed(format!("{what}; its stderr: {}", text.trim()))
    };
    let stdin = program.take_stdin().expect("piped stdin");
    let stdout = program.take_stdout().expect("piped stdout");
    let mut client = LineClient::new(stdin, stdout);
    // The first answer says it started.
    client
        .scan()
        .map_err(|e| with_stderr(format!("its first SCAN: {e}")))?;
    let client = Mutex::new(client);
    let result = run_committers(spec.threads, spec.duration, |index| {
        let mut inputs = TxnInputs::for_thread(spec, index);
        let client = &client;
        Ok(move || {
            let (key, value) = inputs.next_write();
            let mut client = client.lock().expect("no committer panics holding the pipe");
            match client.transaction([(&key[..], Some(&value[..]))]) {
                Ok(Ok(())) => Ok(TxnOutcome::Committed),
                Ok(Err(text)) => Err(failed(format!("it refused a commit: {text}"))),
                Err(e) => Err(with_stderr(format!("a commit failed: {e}"))),
            }
        })
    });
    let _ = program.kill();
    Ok(Measured {
        totals: result?,
        wal_syncs: 0,
        all_file_syncs: None,
        wal_bytes: None,
        engine: None,
    })
}
