//! Thin, checked wrappers around the libc calls the agent needs.

use provium_agent::protocol::Termination;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (cstring(source)?, cstring(target)?, cstring(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    cvt(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) })?;
    Ok(())
}

/// Loads a kernel module from a file; compressed modules are handed to the kernel as they are.
pub fn finit_module(path: &str) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    let params = cstring("")?;
    let compressed = path.ends_with(".xz") || path.ends_with(".zst") || path.ends_with(".gz");
    // MODULE_INIT_COMPRESSED_FILE: let the kernel decompress (CONFIG_MODULE_DECOMPRESS).
    let flags: libc::c_long = if compressed { 4 } else { 0 };
    // SAFETY: the fd is open and `params` is a valid empty C string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Clears `O_NONBLOCK` on a descriptor.
pub fn set_blocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor number; errors are ignored (the link is then lost anyway).
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
}

pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() };
}

/// Powers the VM off. QEMU runs with `-no-reboot`, so the reboot fallback also ends it.
pub fn power_off() -> ! {
    sync();
    // A kernel that cannot power off (x86 without ACPI) halts on RB_POWER_OFF and never comes
    // back; the host then says so with `INIT_ARG_REBOOT` (the kernel hands init the word), and a
    // reboot, which QEMU runs with -no-reboot, ends the VM instead.
    let reboot = std::env::args().any(|a| a == provium_agent::protocol::INIT_ARG_REBOOT);
    // SAFETY: plain reboot(2) commands; PID 1 holds CAP_SYS_BOOT.
    unsafe {
        if !reboot {
            libc::reboot(libc::RB_POWER_OFF);
        }
        libc::reboot(libc::RB_AUTOBOOT);
    }
    // Only reached outside a VM (the --stdio mode).
    std::process::exit(0)
}

pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.release), field(&u.machine))
}

pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Converts a `waitpid` status word.
pub fn termination(status: libc::c_int) -> Termination {
    if libc::WIFSIGNALED(status) {
        Termination::Signaled(libc::WTERMSIG(status))
    } else {
        Termination::Exited(libc::WEXITSTATUS(status))
    }
}

pub fn waitpid(
    pid: libc::pid_t,
    flags: libc::c_int,
) -> io::Result<Option<(libc::pid_t, Termination)>> {
    let mut status = 0;
    loop {
        // SAFETY: valid status pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Ok(None);
        }
        return Ok(Some((ret, termination(status))));
    }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety implications.
    unsafe { libc::kill(pid, sig) };
}

/// Waits until `fd` is readable or `timeout` passes; `None` waits forever.
pub fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    Ok(wait_readable_or(fd, None, timeout)? == Ready::Main)
}

/// What [`wait_readable_or`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Main,
    Other,
    Timeout,
}

/// Waits until `fd` is readable (`Main`), `other` is (`Other`), or `timeout` passes; `None`
/// waits forever.
pub fn wait_readable_or(
    fd: RawFd,
    other: Option<RawFd>,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pfds = [fd, other.unwrap_or(-1)].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let count = if other.is_some() { 2 } else { 1 };
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `count` valid pollfds.
        let ret = unsafe { libc::poll(pfds.as_mut_ptr(), count, ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if pfds[0].revents != 0 {
            return Ok(Ready::Main);
        }
        if pfds[1].revents != 0 {
            return Ok(Ready::Other);
        }
        if ms == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Ready::Timeout);
        }
    }
}

pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn errno_of(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

/// Reads the whole kernel log ring buffer.
/// The kernel's taint bits, from `/proc/sys/kernel/tainted`.
pub fn tainted() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/sys/kernel/tainted")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("tainted: {text:?}")))
}

pub fn kernel_log() -> io::Result<String> {
    const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
    const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;
    // SAFETY: SIZE_BUFFER ignores the buffer arguments.
    let size = cvt(unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) })?;
    let mut buf = vec![0u8; size.max(4096) as usize];
    // SAFETY: the buffer is valid for `buf.len()` bytes.
    let n = cvt(unsafe {
        libc::klogctl(
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len() as libc::c_int,
        )
    })?;
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
