//! Forked children: a message pipe, a time limit, and certain reaping.
//!
//! Workload runs and recoveries happen in children forked from a
//! single-threaded worker process, so a crash, abort, hang or memory blow-up
//! in the engine is a finding about that child, never a harness failure.
//! A child sends length-prefixed frames up its pipe; the parent waits for
//! each frame with a deadline and kills the child (SIGKILL) when it passes.
//! Every child is reaped: dropping a [`Child`] kills and waits for it.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The largest frame a child may send (a recovered state, a verdict).
pub const FRAME_BYTES_MAX: usize = 256 << 20;

/// The exit code of a child whose body panicked outside its own handling.
pub const EXIT_PANIC: i32 = 101;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(Signal),
}

impl std::fmt::Display for ChildEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildEnd::Exited(code) => write!(f, "exited with code {code}"),
            ChildEnd::Signaled(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// What waiting for a frame gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Frame(Vec<u8>),
    /// The child closed its pipe (it exited or died).
    Closed,
    TimedOut,
}

/// The child's end of the pipe.
pub struct FrameWriter {
    pipe: File,
}

impl FrameWriter {
    /// Sends one frame to the parent.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        assert!(
            frame.len() <= FRAME_BYTES_MAX,
            "frame of {} bytes",
            frame.len()
        );
        let len = u32::try_from(frame.len()).expect("frame length fits u32");
        self.pipe.write_all(&len.to_le_bytes())?;
        self.pipe.write_all(frame)
    }

    /// A second writer on the same pipe (for a hook that must own one).
    pub fn try_clone(&self) -> io::Result<FrameWriter> {
        Ok(FrameWriter {
            pipe: self.pipe.try_clone()?,
        })
    }
}

/// A running (or ended, not yet reaped) child.
pub struct Child {
    pid: Pid,
    pipe: File,
    buffer: Vec<u8>,
    end: Option<ChildEnd>,
}

/// Whether this process adopts its descendants' orphans (see
/// [`become_subreaper`]).
static SUBREAPER: AtomicBool = AtomicBool::new(false);
/// Children of [`spawn`] not yet reaped, in this process.
static UNREAPED: AtomicUsize = AtomicUsize::new(0);

/// How long reaping a child waits for the orphans it left to die.
const ORPHANS_GRACE: Duration = Duration::from_millis(100);

/// Makes this process the reaper of its descendants' orphans
/// (`PR_SET_CHILD_SUBREAPER`), so that [`reap_orphans`] can reap them.
///
/// A program that a workload or verifier child started outlives that child
/// when the child is SIGKILLed (it then dies of its own death signal, but
/// it is an orphan): without a subreaper it goes to the machine's init,
/// which in a container may never reap it, and one zombie was left per
/// killed cycle. For single-threaded processes that fork with [`spawn`] and
/// nothing else (the workers).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// In a subreaper, reaps every child that has ended while no child of
/// [`spawn`] is unreaped (so none of those is ever taken from its
/// [`Child`]): the adopted orphans. Does nothing in other processes, whose
/// children may belong to other owners (threads of a test harness).
/// Returns how many it reaped.
pub fn reap_orphans() -> usize {
    let mut reaped = 0;
    while SUBREAPER.load(Ordering::SeqCst) && UNREAPED.load(Ordering::SeqCst) == 0 {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    reaped
}

/// Reaps adopted orphans for up to `limit` while any is left alive (a
/// program still dying of its death signal). Returns how many it reaped.
pub fn reap_orphans_until_none(limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut reaped = reap_orphans();
    while SUBREAPER.load(Ordering::SeqCst)
        && UNREAPED.load(Ordering::SeqCst) == 0
        && Instant::now() < deadline
    {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(1)),
            Err(Errno::ECHILD) => break,
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    reaped
}

/// Forks a child that runs `body` and exits with its return value. The child
/// dies with the parent (PR_SET_PDEATHSIG) and never returns into the
/// caller's code. Call only from a single-threaded process. In a subreaper,
/// first reaps the orphans adopted since the last child (those that took
/// longer than [`Child::wait`]'s grace to die).
pub fn spawn(body: impl FnOnce(&mut FrameWriter) -> i32) -> io::Result<Child> {
    reap_orphans();
    let (read_end, write_end) = pipe().map_err(io::Error::from)?;
    // SAFETY: the worker processes that call this are single-threaded, so
    // the child starts with consistent locks and allocator state.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            drop(read_end);
            // Not inherited by a fork: this child adopts nothing, and its
            // own children belong to their owners.
            SUBREAPER.store(false, Ordering::SeqCst);
            UNREAPED.store(0, Ordering::SeqCst);
            // SAFETY: plain prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let mut writer = FrameWriter {
                pipe: File::from(write_end),
            };
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut writer)))
                .unwrap_or(EXIT_PANIC);
            let _ = writer.pipe.flush();
            // SAFETY: leave without running the parent's destructors or
            // atexit handlers, which belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            UNREAPED.fetch_add(1, Ordering::SeqCst);
            Ok(Child {
                pid: child,
                pipe: File::from(read_end),
                buffer: Vec::new(),
                end: None,
            })
        }
    }
}

impl Child {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits up to `timeout` for the next frame.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Received::Frame(frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Received::TimedOut);
            }
            let millis = u16::try_from(left.as_millis().clamp(1, 10_000)).expect("clamped");
            let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(errno.into()),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.pipe.read(&mut chunk) {
                Ok(0) => return Ok(Received::Closed),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.buffer.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(io::Error::other(format!(
                "child sent a frame of {len} bytes"
            )));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let frame = self.buffer[4..4 + len].to_vec();
        self.buffer.drain(..4 + len);
        Ok(Some(frame))
    }

    /// Sends SIGKILL (if the child has not been reaped yet).
    pub fn kill(&self) {
        if self.end.is_none() {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }

    /// Waits for the child to end and reaps it.
    pub fn wait(&mut self) -> io::Result<ChildEnd> {
        if let Some(end) = self.end {
            return Ok(end);
        }
        loop {
            let end = match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => ChildEnd::Exited(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => ChildEnd::Signaled(signal),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            };
            UNREAPED.fetch_sub(1, Ordering::SeqCst);
            // A killed child's programs are dying of their death signal:
            // reap them now rather than leave them zombies until the next
            // fork.
            reap_orphans_until_none(ORPHANS_GRACE);
            return Ok(*self.end.insert(end));
        }
    }

    /// Kills the child and reaps it.
    pub fn kill_and_wait(&mut self) -> io::Result<ChildEnd> {
        self.kill();
        self.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.kill_and_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_order_and_the_exit_code_is_seen() {
        let mut child = spawn(|out| {
            out.send(b"one").unwrap();
            out.send(&[7u8; 100_000]).unwrap();
            3
        })
        .unwrap();
        assert_eq!(
            child.recv(Duration::from_secs(10)).unwrap(),
            Received::Frame(b"one".to_vec())
        );
        assert_eq!(
            child.recv(Duration::from_secs(10)).unwrap(),
            Received::Frame(vec![7u8; 100_000])
        );
        assert_eq!(
            child.recv(Duration::from_secs(10)).unwrap(),
            Received::Closed
        );
        assert_eq!(child.wait().unwrap(), ChildEnd::Exited(3));
    }

    #[test]
    fn a_hanging_child_times_out_and_is_killed() {
        let mut child = spawn(|_| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .unwrap();
        assert_eq!(
            child.recv(Duration::from_millis(50)).unwrap(),
            Received::TimedOut
        );
        assert_eq!(
            child.kill_and_wait().unwrap(),
            ChildEnd::Signaled(Signal::SIGKILL)
        );
    }

    #[test]
    fn a_panicking_child_exits_with_the_panic_code() {
        let mut child = spawn(|_| panic!("planted")).unwrap();
        assert_eq!(
            child.recv(Duration::from_secs(10)).unwrap(),
            Received::Closed
        );
        assert_eq!(child.wait().unwrap(), ChildEnd::Exited(EXIT_PANIC));
    }

    #[test]
    fn an_aborting_child_is_seen_as_signaled() {
        let mut child = spawn(|_| std::process::abort()).unwrap();
        assert_eq!(
            child.recv(Duration::from_secs(10)).unwrap(),
            Received::Closed
        );
        assert_eq!(child.wait().unwrap(), ChildEnd::Signaled(Signal::SIGABRT));
    }
}
