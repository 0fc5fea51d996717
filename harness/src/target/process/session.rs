//! One start of a program on a FUSE mount: the private namespace, a scratch
//! directory, the mount over the storage, and the program itself.
//!
//! The first session in a process moves that process into a private mount
//! namespace (it must then be single-threaded: a forked workload or
//! verifier child, before it starts threads) and mounts a private tmpfs on
//! [`SCRATCH_DIR`], where every session keeps its mount point and the
//! program's output files. Nothing of it is visible outside, and all of it
//! is gone when the last process of the namespace (the child, its FUSE
//! thread, the program it started) dies, even by SIGKILL.

use super::fuse::{FsControl, Mount, Owner};
use super::namespace::enter_private_mount_namespace;
use super::program::{Program, ProgramSpec};
use engine::storage::Storage;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The directory a private tmpfs covers inside each namespace. Outside any
/// namespace it stays an empty directory.
pub const SCRATCH_DIR: &str = "/tmp/.powercut-process-targets";
/// The most bytes of a program's output a report quotes.
pub const OUTPUT_QUOTE_BYTES_MAX: usize = 4096;

/// The pid that entered its private namespace (0: none yet). A forked child
/// has another pid, so it enters its own.
static NAMESPACE_PID: AtomicI32 = AtomicI32::new(0);
static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Enters this process's private namespace and scratch tmpfs, once (the
/// process must be single-threaded the first time).
pub fn ensure_private_scratch() -> io::Result<()> {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    if NAMESPACE_PID.load(Ordering::SeqCst) == pid {
        return Ok(());
    }
    std::fs::create_dir_all(SCRATCH_DIR)?;
    enter_private_mount_namespace().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot enter a private mount namespace (a process target must run in a single-threaded forked child, as root): {e}"),
        )
    })?;
    let source = CString::new("powercut-scratch").expect("no NUL");
    let target = CString::new(SCRATCH_DIR).expect("no NUL");
    let fstype = CString::new("tmpfs").expect("no NUL");
    let options = CString::new("mode=0755").expect("no NUL");
    // SAFETY: valid C strings for mount(2).
    let status = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    NAMESPACE_PID.store(pid, Ordering::SeqCst);
    Ok(())
}

/// A program running on a mount of a storage.
pub struct Session {
    // Field order is drop order: the program dies before its mount goes.
    program: Program,
    mount: Option<Mount>,
    dir: PathBuf,
}

impl Session {
    /// Mounts `storage` and starts the program `spec_for(mountpoint,
    /// session_dir)` returns.
    pub fn start(
        storage: Arc<dyn Storage>,
        spec_for: impl FnOnce(&Path, &Path) -> ProgramSpec,
    ) -> io::Result<Session> {
        Session::start_owned(storage, None, |datadir, dir| Ok(spec_for(datadir, dir)))
    }

    /// As [`Session::start`], with the mount's files owned by `owner` when
    /// given; `spec_for` may fail.
    pub fn start_owned(
        storage: Arc<dyn Storage>,
        owner: Option<Owner>,
        spec_for: impl FnOnce(&Path, &Path) -> io::Result<ProgramSpec>,
    ) -> io::Result<Session> {
        ensure_private_scratch()?;
        let number = SESSION_COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = Path::new(SCRATCH_DIR).join(format!("session-{number}"));
        let mountpoint = dir.join("data");
        std::fs::create_dir_all(&mountpoint)?;
        let mount = Mount::owned_by(storage, &mountpoint, owner)?;
        let spec = spec_for(&mountpoint, &dir)?;
        let program = Program::start(&spec)?;
        Ok(Session {
            program,
            mount: Some(mount),
            dir,
        })
    }

    pub fn program(&mut self) -> &mut Program {
        &mut self.program
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn control(&self) -> Option<&Arc<FsControl>> {
        self.mount.as_ref().map(Mount::control)
    }

    /// The last bytes of a file the program wrote in the session directory.
    pub fn output_tail(&self, name: &str) -> String {
        let bytes = std::fs::read(self.dir.join(name)).unwrap_or_default();
        let start = bytes.len().saturating_sub(OUTPUT_QUOTE_BYTES_MAX);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Kills the program (SIGKILL to its group), then unmounts. Returns the
    /// changes that reached the mount after the kill.
    pub fn kill(&mut self) -> u64 {
        if let Some(control) = self.control() {
            control.mark_killed();
        }
        let _ = self.program.kill();
        let late = self.control().map_or(0, |c| c.late_changes());
        if let Some(mount) = self.mount.take() {
            let _ = mount.unmount();
        }
        late
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
