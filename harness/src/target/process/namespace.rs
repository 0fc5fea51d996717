//! A private mount namespace: mounts made inside it never show outside and
//! vanish with its last process, so no FUSE mount outlives a run even when
//! the harness is SIGKILLed (a dead FUSE daemon would otherwise leave a
//! mount that answers "Transport endpoint is not connected").

use std::ffi::CString;
use std::io;
use std::path::Path;

/// What a process target needs from this machine, checked before a run.
pub fn check_fuse_available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "FUSE is missing: /dev/fuse does not exist (load the fuse module: `modprobe fuse`, \
             or give the container the device)"
                .to_string(),
        );
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "process targets mount FUSE with mount(2) and need root (run powercut as root)"
                .to_string(),
        );
    }
    Ok(())
}

/// Moves the calling process into a new mount namespace whose mounts are
/// all private (no propagation to or from the parent namespace). The caller
/// must be single-threaded (the kernel refuses `CLONE_NEWNS` to a process
/// whose threads share its file-system information).
pub fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: unshare with a constant flag; no memory is passed.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let root = CString::new("/").expect("no NUL");
    // SAFETY: a valid C string and null pointers where mount(2) allows them.
    let status = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The mount namespace of process `pid` (`/proc/PID/ns/mnt`'s target).
pub fn mount_namespace_of(pid: u32) -> io::Result<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))?;
    Ok(link.to_string_lossy().into_owned())
}

/// True if `/proc/self/mountinfo` lists a mount at `mountpoint`.
pub fn is_mounted(mountpoint: &Path) -> io::Result<bool> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = mountpoint.to_string_lossy();
    Ok(mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point == wanted))
}
