//! A clean process for commands and file helpers.
//!
//! Executors are where tests make their syscalls, so their state is whatever the last test left:
//! a umask, lowered limits, another working directory, a blocked or ignored signal, a
//! personality. Commands (`exec`, background jobs) and the file helpers (`read_file`,
//! `write_file`) must not inherit that: they start from the state PID 1 had at boot, as a
//! command would from a login shell. See "The command environment" in docs/lua-api.md.

use super::reply::{bad_request, os_error};
use provium_agent::protocol::{read_message, write_message, Response};
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

/// Linux's resource limits, RLIMIT_CPU (0) to RLIMIT_RTTIME (15); libc's RLIM_NLIMITS is
/// deprecated as "not stable across OS versions", and Linux has had 16 since 2.6.25.
const LIMIT_COUNT: u32 = 16;

/// Every resource limit of PID 1 at boot.
static LIMITS: OnceLock<Vec<(u32, libc::rlimit)>> = OnceLock::new();

/// Records the limits commands start with; called by PID 1 before it forks anything.
pub fn capture_defaults() {
    let limits = (0..LIMIT_COUNT)
        .filter_map(|r| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid rlimit pointer.
            (unsafe { libc::getrlimit(r as _, &mut l) } == 0).then_some((r, l))
        })
        .collect();
    let _ = LIMITS.set(limits);
}

/// Runs `f` with the descriptor limit PID 1 booted with (when the process lowered its own, a
/// test's `setrlimit(RLIMIT_NOFILE)`), then puts the process's limit back: the agent's own
/// pipes (commands, file helpers, isolated cases) must not fail for a limit a test set for its
/// calls.
pub fn with_boot_limits<T>(f: impl FnOnce() -> T) -> T {
    let boot = LIMITS.get().and_then(|l| {
        l.iter()
            .find(|(r, _)| *r == libc::RLIMIT_NOFILE)
            .map(|(_, l)| *l)
    });
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit pointer.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) } == 0;
    let lowered = match boot {
        Some(b) if known => now.rlim_cur < b.rlim_cur || now.rlim_max < b.rlim_max,
        _ => false,
    };
    if !lowered {
        return f();
    }
    if let Some(b) = boot {
        // SAFETY: setrlimit with a valid pointer; it may fail (no CAP_SYS_RESOURCE to raise the
        // hard limit again), and then `f` meets the lowered limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &b) };
    }
    let result = f();
    // SAFETY: as above, putting back what the process had.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &now) };
    result
}

/// Puts PID 1's own resource limits back to what it booted with: a test may lower them from
/// outside (`prlimit64(1, …)`), and every process PID 1 forks afterwards would inherit them.
pub fn restore_own_limits() {
    if let Some(limits) = LIMITS.get() {
        for (resource, limit) in limits {
            // SAFETY: setrlimit with a valid pointer; PID 1 runs as root.
            unsafe { libc::setrlimit(*resource as _, limit) };
        }
    }
}

/// Default dispositions for every signal and an empty mask, as a freshly exec'd process has
/// (the Rust runtime's SIGSEGV/SIGBUS handlers would otherwise swallow a `kill(getpid(),
/// SIGSEGV)`); SIGPIPE ignored when `ignore_sigpipe` (executors, so that writes to a broken
/// pipe are observable as `EPIPE`), default otherwise (commands); no alternate signal stack.
///
/// # Safety
/// Only in a freshly forked child: it changes process-wide signal state.
pub unsafe fn reset_signals(ignore_sigpipe: bool) {
    // SAFETY: signal, sigprocmask and sigaltstack with valid arguments; the caller guarantees
    // nothing else in the process relies on the dispositions.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if ignore_sigpipe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        libc::sigaltstack(&disable, std::ptr::null_mut());
    }
}

/// Puts the calling process into the boot state: umask 022, default dispositions for every
/// signal (SIGPIPE too), an empty signal mask, PID 1's resource limits (as far as they can be
/// raised again), the default personality, and every descriptor above stderr close-on-exec.
///
/// # Safety
/// Only in a freshly forked child (it is async-signal-safe: syscalls only, no allocation).
pub unsafe fn reset_process_state() {
    // SAFETY: the caller guarantees a freshly forked child.
    unsafe { reset_signals(false) };
    // SAFETY: plain syscalls with valid arguments; LIMITS was filled before the fork and is
    // only read.
    unsafe {
        libc::umask(0o022);
        if let Some(limits) = LIMITS.get() {
            for (resource, limit) in limits {
                libc::setrlimit(*resource as _, limit);
            }
        }
        libc::personality(0);
        // CLOSE_RANGE_CLOEXEC (4): inherited descriptors go at exec, while the ones the process
        // still needs until then (std's exec-error pipe) keep working.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
            for fd in 3..4096 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

/// Runs `f` in a forked child in the boot state, with `/` as its working directory, and returns
/// its answer. An executor's state cannot change what a file helper does, and a helper that
/// dies (a lowered file-size limit) costs only its answer.
pub fn in_child(what: &str, f: impl FnOnce() -> Response) -> Response {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return os_error(what, &io::Error::last_os_error());
    }
    // SAFETY: we own both new descriptors.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: executors are single-threaded when they serve a request, so the child may run
    // ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return os_error(what, &io::Error::last_os_error());
    }
    if pid == 0 {
        drop(reader);
        // SAFETY: in the freshly forked child.
        unsafe {
            reset_process_state();
            libc::chdir(c"/".as_ptr());
        }
        let mut writer = writer;
        let _ = write_message(&mut writer, &f());
        // SAFETY: leaving the child without running the executor's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(writer);
    let answer = read_message::<_, Response>(&mut reader);
    let status = super::sys::waitpid(pid, 0);
    match answer {
        Ok(r) => r,
        Err(e) => bad_request(match status {
            Ok(Some((_, t))) => format!("{what}: the helper process {t}"),
            _ => format!("{what}: the helper process sent no answer: {e}"),
        }),
    }
}
