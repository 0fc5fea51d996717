//! A program under control: started in its own process group, with its
//! output in files, a time limit to become ready, and a certain death.
//!
//! - The program is the leader of a new process group, so a SIGKILL to the
//!   group reaches every process it forked (Redis's background children).
//! - It dies with the thread that started it (`PR_SET_PDEATHSIG`), so when
//!   the harness process that serves its FUSE mount dies, so does it; the
//!   pre-exec hook checks that this parent is still alive after setting it.
//!   Start programs from a thread that lives as long as they do (the main
//!   thread of a workload or verifier child).
//! - Dropping a [`Program`] kills its group and reaps it.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The first pause between two probes of [`wait_ready`] (and between two
/// looks at a program that should exit); each pause doubles, up to
/// [`POLL_MAX`]. A program is found ready (or gone) at most one pause late:
/// with a fixed 2 ms pause that was about 1 ms of every start of a crash
/// state; a probe (a `connect`, a `waitpid`) costs microseconds.
const POLL_MIN: Duration = Duration::from_micros(100);
const POLL_MAX: Duration = Duration::from_millis(1);

/// Pauses that grow from [`POLL_MIN`] to [`POLL_MAX`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(POLL_MIN)
    }

    fn pause(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(POLL_MAX);
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Where its standard error goes (appended).
    pub stderr_path: PathBuf,
    /// Where its standard output goes (appended), or `None` for a pipe the
    /// caller reads (the line protocol).
    pub stdout_path: Option<PathBuf>,
    /// Whether its standard input is a pipe the caller writes.
    pub stdin_pipe: bool,
}

/// A running program.
pub struct Program {
    child: Child,
    reaped: Option<ExitStatus>,
}

fn append(path: &Path) -> io::Result<File> {
    File::options().create(true).append(true).open(path)
}

impl Program {
    /// Starts the program described by `spec`.
    pub fn start(spec: &ProgramSpec) -> io::Result<Program> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&spec.cwd)
            .stderr(append(&spec.stderr_path)?)
            .stdin(if spec.stdin_pipe {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .process_group(0);
        match &spec.stdout_path {
            Some(path) => command.stdout(append(path)?),
            None => command.stdout(Stdio::piped()),
        };
        die_with_this_thread(&mut command);
        let child = command.spawn()?;
        Ok(Program {
            child,
            reaped: None,
        })
    }

    /// The program's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pipe to its standard input, if asked for.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The pipe from its standard output, if asked for.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// How it ended, if it has (reaping it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait()?;
        }
        Ok(self.reaped)
    }

    /// SIGKILLs the whole process group (the group id stays reserved until
    /// the leader is reaped, so only this program's processes are hit) and
    /// reaps the leader.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let group = i32::try_from(self.child.id()).expect("pids fit in i32");
        // SAFETY: a plain signal to a process group this program leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let status = self.child.wait()?;
        self.reaped = Some(status);
        Ok(status)
    }

    /// Waits up to `limit` for it to exit by itself; kills it after that.
    pub fn wait_or_kill(&mut self, limit: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        let mut backoff = Backoff::new();
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            backoff.pause();
        }
        self.kill()
    }
}

/// Makes the command's process die (SIGKILL) with the thread that starts
/// it, and not start at all if that thread is already gone. The hook runs
/// after a change of identity (`Command::uid`), which would clear it.
pub fn die_with_this_thread(command: &mut Command) {
    // SAFETY: getpid before the fork; in the child only async-signal-safe
    // calls (prctl, getppid, _exit).
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            Ok(())
        });
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Why a program did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first.
    Exited(ExitStatus),
    /// The time limit passed.
    TimedOut(Duration),
    Io(io::Error),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "it exited before it was ready ({status})"),
            NotReady::TimedOut(limit) => write!(f, "it was not ready within {limit:?}"),
            NotReady::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Calls `probe` until it gives a value, the program exits, or `limit`
/// passes.
pub fn wait_ready<T>(
    program: &mut Program,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, NotReady> {
    let deadline = Instant::now() + limit;
    let mut backoff = Backoff::new();
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if let Some(status) = program.try_wait().map_err(NotReady::Io)? {
            return Err(NotReady::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(limit));
        }
        backoff.pause();
    }
}
