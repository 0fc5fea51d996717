//! `line:COMMAND`: a user's own program, driven through the line protocol
//! of SPEC §9 on its stdin and stdout.
//!
//! The harness runs `COMMAND DATADIR` (COMMAND split on spaces, DATADIR the
//! FUSE mount) and speaks one request a line: `BEGIN`, `PUT <hex key> <hex
//! value>`, `DEL <hex key>`, `COMMIT`, `ABORT`, `SCAN`; the program answers
//! `OK` or `ERR <text>`, and `SCAN` with `KV <hex key> <hex value>` lines
//! then `END`. A transaction's writes are sent together when it commits
//! (the driver may keep several open; the program sees one at a time). The
//! commit is acknowledged the instant its `OK` arrives.
//!
//! The program's promise is taken to be `durable` under every fault
//! profile: a program that answers `OK` to a commit says it is kept.
//! `appendkv` (harness/examples/appendkv.rs) is the example.

use super::program::ProgramSpec;
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
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::{ChildStdin, ChildStdout};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a program may take to answer one request (its first answer
/// includes its start and recovery).
pub const REPLY_TIME_MAX: Duration = Duration::from_secs(30);
/// The longest reply line accepted.
pub const LINE_BYTES_MAX: usize = 64 << 20;
/// The most `KV` lines one `SCAN` may return.
pub const SCAN_ENTRIES_MAX: usize = 1 << 22;
/// How long a clean close waits for the program to exit.
const CLOSE_TIME_MAX: Duration = Duration::from_secs(10);

/// The `line` entry of the target registry.
pub struct LineKind;

pub static LINE_KIND: LineKind = LineKind;

/// The name of the example program, built next to `powercut`.
pub const EXAMPLE_PROGRAM: &str = "appendkv";

impl TargetKind for LineKind {
    fn name(&self) -> &'static str {
        "line"
    }

    fn description(&self) -> &'static str {
        "a program of your own speaking the line protocol on stdin/stdout (SPEC §9); \
         MODE is its command, run with its data directory appended"
    }

    fn modes(&self) -> Vec<TargetMode> {
        vec![TargetMode::Line(example_command())]
    }

    fn parse_mode(&self, mode: &str) -> Result<TargetMode, String> {
        if mode.split(' ').all(str::is_empty) {
            return Err("line: needs a command, e.g. `line:appendkv`".to_string());
        }
        let program = argv(mode, "").remove(0);
        // The bare example name stays as it is where it is not built (a
        // test binary's directory): starting it then says what is missing.
        if program != EXAMPLE_PROGRAM && !program_exists(&program) {
            return Err(format!(
                "line: program `{program}` not found (give a path, or a name on PATH)"
            ));
        }
        Ok(TargetMode::Line(Box::leak(
            mode.to_string().into_boxed_str(),
        )))
    }

    fn deterministic(&self) -> bool {
        false
    }

    fn parts_installed(&self) -> Result<(), String> {
        super::namespace::check_fuse_available()
    }

    fn promises_source(&self) -> &'static str {
        "the program's own answer: OK to COMMIT means kept (SPEC §9)"
    }
}

/// `appendkv`, resolved next to the running executable when it is there.
fn example_command() -> &'static str {
    let path = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(EXAMPLE_PROGRAM)))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| EXAMPLE_PROGRAM.to_string());
    Box::leak(path.into_boxed_str())
}

/// The promise of a line program under `fault`.
pub fn promise(_fault: FaultProfile) -> PromiseKind {
    PromiseKind::Durable
}

/// True if `program` names an existing file (a path) or a file on `PATH`.
fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Resolves a bare `appendkv` to the example built next to `powercut`.
pub fn argv(command: &str, datadir: &str) -> Vec<String> {
    let mut argv: Vec<String> = command
        .split(' ')
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect();
    if argv.first().map(String::as_str) == Some(EXAMPLE_PROGRAM) {
        argv[0] = example_command()
            .split(' ')
            .next()
            .unwrap_or(EXAMPLE_PROGRAM)
            .to_string();
    }
    argv.push(datadir.to_string());
    argv
}

/// Opens `line:COMMAND` targets.
pub struct LineFactory {
    pub command: String,
}

impl TargetFactory for LineFactory {
    fn open(
        &self,
        storage: Arc<dyn Storage>,
        _clock: Arc<dyn Clock>,
    ) -> TargetResult<Box<dyn Target>> {
        let command = self.command.clone();
        let mut session = Session::start(storage, |datadir, dir| ProgramSpec {
            argv: argv(&command, &datadir.display().to_string()),
            cwd: dir.to_path_buf(),
            stderr_path: dir.join("stderr"),
            stdout_path: None,
            stdin_pipe: true,
        })
        .map_err(|e| other(format!("cannot start `{command}` on its mount: {e}")))?;
        let stdin = session.program().take_stdin().expect("piped stdin");
        let stdout = session.program().take_stdout().expect("piped stdout");
        let mut target = LineTarget {
            session,
            client: Some(LineClient::new(stdin, stdout)),
            txns: OpenTxns::default(),
            acks: Vec::new(),
        };
        // The first answer says the program started and recovered.
        target.scan().map_err(|e| target.with_stderr(e))?;
        Ok(Box::new(target))
    }
}

fn other(message: String) -> TargetError {
    TargetError {
        kind: TargetErrorKind::Other,
        message,
    }
}

/// The harness's end of the line protocol.
pub struct LineClient {
    stdin: ChildStdin,
    stdout: ChildStdout,
    buffer: Vec<u8>,
}

impl LineClient {
    pub fn new(stdin: ChildStdin, stdout: ChildStdout) -> LineClient {
        LineClient {
            stdin,
            stdout,
            buffer: Vec::new(),
        }
    }

    /// Sends one request line.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        assert!(!line.contains('\n'), "one request a line");
        self.stdin.write_all(format!("{line}\n").as_bytes())?;
        self.stdin.flush()
    }

    /// The next reply line, waiting at most [`REPLY_TIME_MAX`].
    pub fn recv(&mut self) -> io::Result<String> {
        let deadline = Instant::now() + REPLY_TIME_MAX;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return String::from_utf8(line[..end].to_vec())
                    .map_err(|_| io::Error::other("a reply line is not UTF-8"));
            }
            if self.buffer.len() > LINE_BYTES_MAX {
                return Err(io::Error::other("a reply line is too long"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply within {REPLY_TIME_MAX:?}"),
                ));
            }
            let millis = u16::try_from(left.as_millis().clamp(1, 10_000)).expect("clamped");
            let mut fds = [nix::poll::PollFd::new(
                self.stdout.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(errno.into()),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stdout.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the program closed its output (it exited or died)",
                    ));
                }
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `line` and expects `OK`; `ERR text` comes back as `Err(text)`.
    pub fn request(&mut self, line: &str) -> io::Result<Result<(), String>> {
        self.send(line)?;
        let reply = self.recv()?;
        if reply == "OK" {
            return Ok(Ok(()));
        }
        match reply.strip_prefix("ERR") {
            Some(text) => Ok(Err(text.trim().to_string())),
            None => Err(io::Error::other(format!(
                "expected OK or ERR to {line:?}, got {reply:?}"
            ))),
        }
    }

    /// One transaction: `BEGIN`, a `PUT` (or `DEL` for `None`) per write,
    /// `COMMIT`; `Ok(Err(text))` if the program said `ERR` (after an `ERR`
    /// to a write, the transaction is aborted).
    pub fn transaction<'a>(
        &mut self,
        writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> io::Result<Result<(), String>> {
        if let Err(text) = self.request("BEGIN")? {
            return Ok(Err(text));
        }
        for (key, value) in writes {
            let line = match value {
                Some(value) => format!("PUT {} {}", hex(key), hex(value)),
                None => format!("DEL {}", hex(key)),
            };
            if let Err(text) = self.request(&line)? {
                let _ = self.request("ABORT")?;
                return Ok(Err(text));
            }
        }
        self.request("COMMIT")
    }

    /// `SCAN`: every key and value.
    pub fn scan(&mut self) -> io::Result<State> {
        self.send("SCAN")?;
        let mut state = State::new();
        loop {
            let reply = self.recv()?;
            if reply == "END" {
                return Ok(state);
            }
            if state.len() >= SCAN_ENTRIES_MAX {
                return Err(io::Error::other("SCAN returned too many entries"));
            }
            let words: Vec<&str> = reply.split(' ').collect();
            let entry = match words.as_slice() {
                ["KV", key, value] => unhex(key).zip(unhex(value)),
                _ => None,
            };
            let (key, value) =
                entry.ok_or_else(|| io::Error::other(format!("bad SCAN line {reply:?}")))?;
            state.insert(key, value);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A line program behind the [`Target`] seam.
pub struct LineTarget {
    session: Session,
    /// `None` once closed.
    client: Option<LineClient>,
    /// Open transactions: their writes, in order (`None` deletes).
    txns: OpenTxns,
    acks: Vec<TxnHandle>,
}

impl LineTarget {
    /// Adds the tail of the program's stderr to an error.
    fn with_stderr(&self, mut error: TargetError) -> TargetError {
        let stderr = self.session.output_tail("stderr");
        if !stderr.trim().is_empty() {
            error.message = format!("{}; its stderr ends: {}", error.message, stderr.trim());
        }
        error
    }

    fn io_error(&self, what: &str, e: io::Error) -> TargetError {
        self.with_stderr(TargetError {
            kind: TargetErrorKind::Fatal,
            message: format!("{what}: {e}"),
        })
    }

    fn client(&mut self) -> io::Result<&mut LineClient> {
        self.client
            .as_mut()
            .ok_or_else(|| io::Error::other("the target was closed"))
    }

    /// Sends one transaction; `Ok(Err(text))` if the program said `ERR`.
    fn send_txn(&mut self, writes: &[TxnWrite]) -> io::Result<Result<(), String>> {
        self.client()?.transaction(
            writes
                .iter()
                .map(|(key, value)| (key.as_slice(), value.as_deref())),
        )
    }
}

impl Target for LineTarget {
    crate::target::process::txns::buffered_transactions!();

    fn commit(&mut self, txn: TxnHandle) -> TargetResult<Option<u64>> {
        let writes = self.txns.take(txn)?;
        match self.send_txn(&writes) {
            Ok(Ok(())) => {
                self.acks.push(txn);
                Ok(None)
            }
            Ok(Err(text)) => Err(self.with_stderr(TargetError {
                kind: TargetErrorKind::Fatal,
                message: format!("the program refused the commit: {text}"),
            })),
            Err(e) => Err(self.io_error("commit", e)),
        }
    }

    fn checkpoint(&mut self) -> TargetResult<()> {
        Ok(())
    }

    fn take_acks(&mut self) -> Vec<TxnHandle> {
        std::mem::take(&mut self.acks)
    }

    fn get(&mut self, key: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        Ok(self.scan()?.remove(key))
    }

    fn scan(&mut self) -> TargetResult<State> {
        match self.client().and_then(LineClient::scan) {
            Ok(state) => Ok(state),
            Err(e) => Err(self.io_error("SCAN", e)),
        }
    }

    fn recovery_summary(&self) -> String {
        let stderr = self.session.output_tail("stderr");
        if stderr.trim().is_empty() {
            "the program started on the image and answered".to_string()
        } else {
            format!(
                "the program started on the image and answered; its stderr: {}",
                stderr.trim()
            )
        }
    }

    fn close(mut self: Box<Self>) -> TargetResult<()> {
        // Closing its input asks the program to exit.
        drop(self.client.take());
        let status = self
            .session
            .program()
            .wait_or_kill(CLOSE_TIME_MAX)
            .map_err(|e| other(format!("waiting for the program to exit: {e}")))?;
        if !status.success() {
            return Err(self.with_stderr(other(format!(
                "the program did not exit cleanly after its input closed ({status})"
            ))));
        }
        Ok(())
    }
}
