//! `redis:always|everysec|no`: redis-server with its append-only file on a
//! FUSE mount.
//!
//! The server runs with `appendonly yes`, `appendfsync MODE`, no RDB
//! snapshots (`save ""`), no automatic AOF rewrite, no TCP port (a Unix
//! socket in the session directory) and `--dir` on the mount. A
//! transaction is `MULTI`, `SET`/`DEL`..., `EXEC`, sent as one pipeline; it
//! is acknowledged when the `EXEC` reply arrives. The state is `KEYS *` and
//! `MGET`. A clean close is `SHUTDOWN` (which syncs the AOF).
//!
//! Promises, from Redis's persistence documentation
//! (<https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/>,
//! quoted in docs/process-targets.md): the AOF survives a process crash in
//! every mode (the data is in the kernel once written); under power loss
//! `always` keeps every acknowledged write ("fsync every time new commands
//! are appended to the AOF ... before sending the replies"), `everysec` may
//! lose "1 second of data", and `no` promises nothing ("Never fsync, just put
//! your data in the hands of the Operating System").
//!
//! Time: Redis's `everysec` counts real seconds, so the target keeps the
//! harness's virtual clock equal to real time since it opened
//! ([`super::real_time`], before each acknowledgement); windows are judged
//! on it.

use super::program::{ProgramSpec, wait_ready};
use super::real_time::RealTimeOrigin;
use super::resp::{Reply, RespClient};
use super::session::Session;
use super::txns::OpenTxns;
use crate::fault::FaultProfile;
use crate::fault::trace::Write as TxnWrite;
use crate::target::{
    PromiseKind, State, Target, TargetError, TargetErrorKind, TargetFactory, TargetKind,
    TargetMode, TargetResult, TxnHandle,
};
use engine::Clock;
use engine::storage::Storage;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long the server may take to accept connections (it loads the AOF
/// first).
pub const READY_TIME_MAX: Duration = Duration::from_secs(30);
/// How long one reply may take.
pub const REPLY_TIME_MAX: Duration = Duration::from_secs(30);
/// Keys fetched per `MGET`.
const MGET_BATCH: usize = 512;
/// How long a clean shutdown may take.
const SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(10);
/// The documented loss window of `everysec` ("1 second of data").
pub const EVERYSEC_WINDOW_MS: u64 = 1000;

/// `appendfsync` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RedisMode {
    Always,
    Everysec,
    No,
}

impl RedisMode {
    pub const ALL: [RedisMode; 3] = [RedisMode::Always, RedisMode::Everysec, RedisMode::No];

    pub fn name(self) -> &'static str {
        match self {
            RedisMode::Always => "always",
            RedisMode::Everysec => "everysec",
            RedisMode::No => "no",
        }
    }
}

impl fmt::Display for RedisMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RedisMode {
    type Err = String;

    fn from_str(text: &str) -> Result<RedisMode, String> {
        RedisMode::ALL
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| format!("unknown redis mode `{text}` (always, everysec, no)"))
    }
}

/// The promise of `mode` under `fault` (Redis's persistence documentation).
pub fn promise(mode: RedisMode, fault: FaultProfile) -> PromiseKind {
    if !fault.loses_volatile_data() {
        return PromiseKind::Durable;
    }
    match mode {
        RedisMode::Always => PromiseKind::Durable,
        RedisMode::Everysec => PromiseKind::Window {
            ms: EVERYSEC_WINDOW_MS,
        },
        RedisMode::No => PromiseKind::None,
    }
}

/// The `redis` entry of the target registry.
pub struct RedisKind;

pub static REDIS_KIND: RedisKind = RedisKind;

impl TargetKind for RedisKind {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn description(&self) -> &'static str {
        "redis-server with appendonly yes, appendfsync MODE, no RDB snapshots, on a FUSE mount"
    }

    fn modes(&self) -> Vec<TargetMode> {
        RedisMode::ALL.into_iter().map(TargetMode::Redis).collect()
    }

    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String> {
        mode.parse().map(TargetMode::Redis)
    }

    fn deterministic(&self) -> bool {
        false
    }

    fn parts_installed(&self) -> Result<(), String> {
        super::namespace::check_fuse_available()?;
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            Ok(())
        } else {
            Err("redis-server is missing: install it with `apt-get install -y redis-server`".into())
        }
    }

    fn promises_source(&self) -> &'static str {
        "https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/ (docs/process-targets.md)"
    }
}

/// Opens `redis:MODE` targets.
pub struct RedisFactory {
    pub mode: RedisMode,
}

fn error(kind: TargetErrorKind, message: String) -> TargetError {
    TargetError { kind, message }
}

impl TargetFactory for RedisFactory {
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        let mode = self.mode;
        let mut socket = PathBuf::new();
        let mut session = Session::start(storage, |datadir, dir| {
            socket = dir.join("redis.sock");
            ProgramSpec {
                argv: server_argv(mode, &datadir.display().to_string(), &socket),
                cwd: dir.to_path_buf(),
                stderr_path: dir.join("output"),
                stdout_path: Some(dir.join("output")),
                stdin_pipe: false,
            }
        })
        .map_err(|e| {
            error(
                TargetErrorKind::Other,
                format!("cannot start redis-server on its mount: {e}"),
            )
        })?;
        let ready = wait_ready(session.program(), READY_TIME_MAX, || {
            let mut client = RespClient::connect(&socket, REPLY_TIME_MAX).ok()?;
            match client.call(&[b"PING"]).ok()? {
                Reply::Status(pong) if pong == "PONG" => Some(client),
                _ => None,
            }
        });
        let client = match ready {
            Ok(client) => client,
            Err(why) => {
                let output = session.output_tail("output");
                return Err(error(
                    TargetErrorKind::Fatal,
                    format!(
                        "redis-server did not start on the image: {why}; its log ends: {}",
                        output.trim()
                    ),
                ));
            }
        };
        Ok(Box::new(RedisTarget {
            session,
            client,
            origin: RealTimeOrigin::now(clock.as_ref()),
            clock,
            txns: OpenTxns::default(),
            acks: Vec::new(),
        }))
    }
}

pub fn server_argv(mode: RedisMode, datadir: &str, socket: &std::path::Path) -> Vec<String> {
    [
        "redis-server",
        "--port",
        "0",
        "--unixsocket",
        &socket.display().to_string(),
        "--unixsocketperm",
        "700",
        "--dir",
        datadir,
        "--appendonly",
        "yes",
        "--appendfsync",
        mode.name(),
        "--save",
        "",
        "--auto-aof-rewrite-percentage",
        "0",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// redis-server behind the [`Target`] seam.
pub struct RedisTarget {
    session: Session,
    client: RespClient,
    clock: Arc<dyn Clock>,
    origin: RealTimeOrigin,
    txns: OpenTxns,
    acks: Vec<TxnHandle>,
}

impl RedisTarget {
    /// Makes the virtual clock real time since the open.
    fn keep_clock_real(&self) {
        self.origin.align(self.clock.as_ref());
    }

    fn failed(&self, what: &str, e: impl fmt::Display) -> TargetError {
        let output = self.session.output_tail("output");
        error(
            TargetErrorKind::Fatal,
            format!("{what}: {e}; redis-server's log ends: {}", output.trim()),
        )
    }

    fn exec(&mut self, writes: &[TxnWrite]) -> io::Result<Result<(), String>> {
        let mut commands: Vec<Vec<&[u8]>> = vec![vec![b"MULTI"]];
        for (key, value) in writes {
            commands.push(match value {
                Some(value) => vec![b"SET", key, value],
                None => vec![b"DEL", key],
            });
        }
        commands.push(vec![b"EXEC"]);
        let replies = self.client.pipeline(&commands)?;
        if let Some(Reply::Error(text)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Ok(Err(text.clone()));
        }
        match replies.last() {
            Some(Reply::Array(Some(_))) => Ok(Ok(())),
            other => Ok(Err(format!("EXEC answered {other:?}"))),
        }
    }

    fn keys_and_values(&mut self) -> io::Result<State> {
        let keys = match self.client.call(&[b"KEYS", b"*"])? {
            Reply::Array(Some(keys)) => keys,
            other => return Err(io::Error::other(format!("KEYS answered {other:?}"))),
        };
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|key| match key {
                Reply::Bulk(Some(key)) => Ok(key),
                other => Err(io::Error::other(format!("a key {other:?}"))),
            })
            .collect::<io::Result<_>>()?;
        let mut state = State::new();
        for batch in keys.chunks(MGET_BATCH) {
            let mut command: Vec<&[u8]> = vec![b"MGET"];
            command.extend(batch.iter().map(Vec::as_slice));
            let values = match self.client.call(&command)? {
                Reply::Array(Some(values)) => values,
                other => return Err(io::Error::other(format!("MGET answered {other:?}"))),
            };
            for (key, value) in batch.iter().zip(values) {
                if let Reply::Bulk(Some(value)) = value {
                    state.insert(key.clone(), value);
                }
            }
        }
        Ok(state)
    }
}

impl Target for RedisTarget {
    crate::target::process::txns::buffered_transactions!();

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        let writes = self.txns.take(txn)?;
        match self.exec(&writes) {
            Ok(Ok(())) => {
                self.keep_clock_real();
                self.acks.push(txn);
                Ok(None)
            }
            Ok(Err(text)) => Err(self.failed("redis-server refused the transaction", text)),
            Err(e) => Err(self.failed("MULTI/EXEC", e)),
        }
    }

    fn tick(&mut self) -> TargetResult<()> {
        self.keep_clock_real();
        Ok(())
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        Ok(())
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acks)
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        match self.client.call(&[b"GET", key]) {
            Ok(Reply::Bulk(value)) => Ok(value),
            Ok(other) => Err(self.failed("GET", format!("{other:?}"))),
            Err(e) => Err(self.failed("GET", e)),
        }
    }

    fn scan(&mut self) -> TargetResult<State> {
        self.keys_and_values()
            .map_err(|e| self.failed("KEYS/MGET", e))
    }

    fn recovery_summary(&self) -> String {
        let output = self.session.output_tail("output");
        if output.trim().is_empty() {
            "redis-server loaded the image and answered PING".to_string()
        } else {
            format!(
                "redis-server loaded the image and answered PING; its log: {}",
                output.trim()
            )
        }
    }

    fn close(mut self: Box<Self>) -> TargetResult<()> {
        // SHUTDOWN syncs the AOF and exits; the connection closes unanswered.
        let _ = self.client.call(&[b"SHUTDOWN"]);
        let status = self
            .session
            .program()
            .wait_or_kill(SHUTDOWN_TIME_MAX)
            .map_err(|e| self.failed("waiting for redis-server to exit", e))?;
        if !status.success() {
            return Err(self.failed("redis-server did not shut down cleanly", status));
        }
        Ok(())
    }
}
