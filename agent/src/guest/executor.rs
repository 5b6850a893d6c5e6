//! Executor processes: where raw syscalls, commands and file operations actually run.
//!
//! PID 1 forks one executor per worker. The executor moves its end of the channel (and, for the
//! front, the link) to the top of its descriptor table (see [`guard`](super::guard)), drops to
//! the worker's credentials and serves [`Operation`]s one at a time, answering each with a
//! [`Response`]. If a syscall ends the process, PID 1 sees the channel close and reports the
//! death; if it disturbs the agent's descriptors, the executor ends itself and PID 1 says how.

use super::clean;
use super::control::Control;
use super::guard::{self, AgentFds, Guard};
use super::reply::{bad_request, os_error};
use super::{creds, exec, front, jobs, raw, sys};
use provium_agent::protocol::{
    read_message, write_message, Credentials, FrameError, Operation, Response, SyscallOutcome,
};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

/// PID 1's handle on one executor process.
pub struct Executor {
    pub pid: libc::pid_t,
    pub chan: File,
}

/// What the forked process becomes.
pub enum Role<'a> {
    /// A worker: operations arrive from PID 1 over the channel.
    Worker(&'a Credentials),
    /// The front executor: requests arrive straight from the host on `link`.
    Front {
        link: (RawFd, RawFd),
        control: &'a Control,
        serial: bool,
    },
}

/// Forks an executor. The child keeps only its channel (and, for the front, the link), drops to
/// the worker's credentials, reports success or failure over the channel, then serves.
pub fn spawn(role: Role<'_>) -> io::Result<Executor> {
    // A test may have lowered PID 1's limits from outside (`prlimit64(1, RLIMIT_NOFILE, …)`):
    // the new executor starts from the boot limits, and PID 1 can make its socket pair.
    clean::restore_own_limits();
    let (parent_end, child_end) = sys::socketpair()?;
    let fds = AgentFds::at_top();
    // SAFETY: PID 1 is single-threaded, so the child may allocate and run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(parent_end);
        let setup = prepare_child(child_end.into_raw_fd(), &role, fds);
        // SAFETY: the channel was moved to this descriptor by prepare_child (or, if that
        // failed early, the write below fails harmlessly).
        let mut chan = unsafe { File::from_raw_fd(fds.channel) };
        let kept: Vec<RawFd> = match role {
            Role::Worker(_) => vec![fds.channel],
            Role::Front { .. } => vec![fds.channel, fds.link_read, fds.link_write],
        };
        let setup = setup.and_then(|()| Guard::record(fds, &kept));
        let report = setup.as_ref().map_err(|e| e.to_string()).map(|_| ());
        let _ = write_message(&mut chan, &report);
        let Ok(guard) = setup else {
            // SAFETY: leaving the forked child without running PID 1's destructors.
            unsafe { libc::_exit(127) };
        };
        match role {
            Role::Worker(_) => serve(chan, &guard),
            Role::Front {
                control, serial, ..
            } => front::serve(chan, fds, &guard, control, serial),
        }
    }
    drop(child_end);
    let mut chan = File::from(parent_end);
    let report: Result<Result<(), String>, FrameError> = read_message(&mut chan);
    match report {
        Ok(Ok(())) => Ok(Executor { pid, chan }),
        Ok(Err(why)) => {
            let _ = sys::waitpid(pid, 0);
            Err(io::Error::new(io::ErrorKind::PermissionDenied, why))
        }
        Err(e) => {
            let _ = sys::waitpid(pid, 0);
            Err(io::Error::other(format!("executor failed to start: {e}")))
        }
    }
}

fn prepare_child(chan_fd: RawFd, role: &Role<'_>, fds: AgentFds) -> io::Result<()> {
    let mut keep = vec![fds.channel];
    // SAFETY: descriptor juggling in a freshly forked child.
    unsafe {
        guard::with_raised_limit(|| {
            move_fd(chan_fd, fds.channel)?;
            if let Role::Front { link, .. } = role {
                // The link's read and write ends may be one descriptor (a serial port).
                sys::cvt(libc::dup2(link.0, fds.link_read))?;
                sys::cvt(libc::dup2(link.1, fds.link_write))?;
                keep.extend([fds.link_read, fds.link_write]);
            }
            Ok(())
        })?;
        for &fd in &keep {
            sys::cvt(libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        }
        close_all_but(&keep);
        let null = sys::cvt(libc::open(c"/dev/null".as_ptr(), libc::O_RDWR))?;
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
        clean::reset_signals(true);
        // Its own session: a test's kill(0, …) or setpgid reaches only the executor.
        libc::setsid();
        libc::chdir(c"/".as_ptr());
    }
    match role {
        Role::Worker(creds) => creds::apply(creds),
        Role::Front { .. } => Ok(()),
    }
}

/// # Safety
/// Only in a freshly forked child.
unsafe fn move_fd(from: RawFd, to: RawFd) -> io::Result<()> {
    if from != to {
        // SAFETY: dup2 and close on descriptor numbers the caller owns.
        unsafe {
            sys::cvt(libc::dup2(from, to))?;
            libc::close(from);
        }
    }
    Ok(())
}

/// Closes every descriptor from 0 up except `keep` (stdio is reopened on /dev/null after).
///
/// # Safety
/// Only in a freshly forked child.
unsafe fn close_all_but(keep: &[RawFd]) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut from: u32 = 3;
    for &k in &keep {
        if (k as u32) > from {
            // SAFETY: the caller guarantees a freshly forked child owning every descriptor.
            unsafe { close_range(from, k as u32 - 1) };
        }
        from = k as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { close_range(from, u32::MAX) };
}

/// # Safety
/// Only in a freshly forked child: it closes descriptors others may think they own.
unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: close_range and close on descriptor numbers; the caller owns them all.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, last, 0) != 0 {
            // Kernels before 5.9: close one by one up to the usual limit.
            for fd in first..=last.min(4095) {
                libc::close(fd as RawFd);
            }
        }
    }
}

pub fn serve(mut chan: File, guard: &Guard) -> ! {
    let me = std::process::id();
    loop {
        let response = match read_message::<_, Operation>(&mut chan) {
            Ok(op) => {
                let watched = matches!(&op, Operation::Syscall(c)
                    if guard.may_be_touched_by(c.nr, &c.args));
                let response = run(op, me, guard.fds());
                if watched && guard.check().is_err() {
                    // The answer could go anywhere now: PID 1 reports the call from the exit
                    // status.
                    // SAFETY: immediate exit of the child.
                    unsafe { libc::_exit(guard::EXIT_BROKEN) }
                }
                response
            }
            Err(FrameError::Io(_)) => {
                // PID 1 closed the channel: this executor is no longer wanted.
                // SAFETY: immediate exit of the child.
                unsafe { libc::_exit(0) }
            }
            Err(e) => bad_request(e.to_string()),
        };
        if let Err(e) = write_message(&mut chan, &response) {
            let _ = write_message(
                &mut chan,
                &bad_request(format!("cannot send the result: {e}")),
            );
        }
    }
}

pub fn run(op: Operation, me: u32, agent: guard::AgentFds) -> Response {
    // A test's calls see the limits it set; the agent's own work (pipes, children) runs under
    // the boot limits.
    if matches!(op, Operation::Syscall(_) | Operation::Batch(_)) {
        return run_op(op, me, agent);
    }
    clean::with_boot_limits(|| run_op(op, me, agent))
}

fn run_op(op: Operation, me: u32, agent: guard::AgentFds) -> Response {
    match op {
        Operation::Isolated(cases) => Response::Isolated(super::isolated::run(&cases, agent)),
        Operation::Syscall(call) => Response::Syscall(raw::perform(&call, me)),
        Operation::Batch(calls) => Response::Batch(
            calls
                .iter()
                .map(|c| raw::perform(c, me))
                .collect::<Vec<SyscallOutcome>>(),
        ),
        Operation::Exec(call) => match exec::run(&call) {
            Ok(result) => Response::Exec(result),
            Err(e) => os_error(&format!("exec {:?}", call.argv.first()), &e),
        },
        Operation::ReadFile { path, max_len } => {
            let what = format!("read {path}");
            clean::in_child(&what, || match read_file(&path, max_len) {
                Ok(data) => Response::File(data),
                Err(e) => os_error(&what, &e),
            })
        }
        Operation::WriteFile {
            path,
            data,
            mode,
            append,
        } => {
            let what = format!("write {path}");
            clean::in_child(&what, || match write_file(&path, &data, mode, append) {
                Ok(()) => Response::Done,
                Err(e) => os_error(&what, &e),
            })
        }
        Operation::Background(call) => match jobs::start(&call) {
            Ok(job) => Response::Job(job),
            Err(e) => os_error(&format!("background {:?}", call.argv.first()), &e),
        },
        Operation::JobWait { job, timeout_ms } => {
            match jobs::wait(job, std::time::Duration::from_millis(timeout_ms as u64)) {
                Ok(r) => Response::Exec(r),
                Err(e) => os_error(&format!("job {job}"), &e),
            }
        }
        Operation::JobKill { job } => match jobs::kill(job) {
            Ok(()) => Response::Done,
            Err(e) => os_error(&format!("job {job}"), &e),
        },
    }
}

fn read_file(path: &str, max_len: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    File::open(path)?.take(max_len).read_to_end(&mut data)?;
    Ok(data)
}

fn write_file(path: &str, data: &[u8], mode: u32, append: bool) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(if mode == 0 { 0o644 } else { mode })
        .open(path)?;
    file.write_all(data)?;
    if mode != 0 {
        // An explicit mode applies to an existing file too, not only at creation.
        // SAFETY: fchmod on an open descriptor.
        sys::cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode) })?;
    }
    Ok(())
}
