//! Executor processes: where raw syscalls, commands and file operations actually run.
//!
//! PID 1 forks one executor per worker. The executor moves its end of the channel to
//! [`EXECUTOR_CHANNEL_FD`], drops to the worker's credentials and serves [`Operation`]s one at a
//! time, answering each with a [`Response`]. If a syscall ends the process, PID 1 sees the
//! channel close and reports the death.

use super::{creds, exec, raw, sys};
use provium_agent::protocol::{
    read_message, write_message, AgentError, Credentials, ErrorKind, FrameError, Operation,
    Response, SyscallOutcome, EXECUTOR_CHANNEL_FD,
};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

/// PID 1's handle on one executor process.
pub struct Executor {
    pub pid: libc::pid_t,
    pub chan: File,
}

/// Forks an executor with `creds`. `close_in_child` are descriptors (the host transport) the
/// executor must not inherit.
pub fn spawn(creds: &Credentials, close_in_child: &[RawFd]) -> io::Result<Executor> {
    let (parent_end, child_end) = sys::socketpair()?;
    // SAFETY: PID 1 is single-threaded, so the child may allocate and run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        for &fd in close_in_child {
            // SAFETY: closing inherited descriptors in the child only.
            unsafe { libc::close(fd) };
        }
        drop(parent_end);
        let setup = prepare_child(child_end.into_raw_fd(), creds);
        // SAFETY: the channel was moved to this fixed descriptor by prepare_child.
        let mut chan = unsafe { File::from_raw_fd(EXECUTOR_CHANNEL_FD) };
        let report = setup.as_ref().map_err(|e| e.to_string()).map(|_| ());
        let _ = write_message(&mut chan, &report);
        if setup.is_err() {
            // SAFETY: leaving the forked child without running PID 1's destructors.
            unsafe { libc::_exit(127) };
        }
        serve(chan);
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

fn prepare_child(chan_fd: RawFd, creds: &Credentials) -> io::Result<()> {
    // SAFETY: descriptor juggling in a freshly forked child.
    unsafe {
        if chan_fd != EXECUTOR_CHANNEL_FD {
            sys::cvt(libc::dup2(chan_fd, EXECUTOR_CHANNEL_FD))?;
            libc::close(chan_fd);
        }
        let null = sys::cvt(libc::open(c"/dev/null".as_ptr(), libc::O_RDWR))?;
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
        // Its own session: a test's kill(0, …) or setpgid reaches only the executor.
        libc::setsid();
        libc::chdir(c"/".as_ptr());
    }
    creds::apply(creds)
}

fn serve(mut chan: File) -> ! {
    let me = std::process::id();
    loop {
        let response = match read_message::<_, Operation>(&mut chan) {
            Ok(op) => run(op, me),
            Err(FrameError::Io(_)) => {
                // PID 1 closed the channel: this executor is no longer wanted.
                // SAFETY: immediate exit of the child.
                unsafe { libc::_exit(0) }
            }
            Err(e) => Response::Error(AgentError {
                kind: ErrorKind::BadRequest,
                message: e.to_string(),
            }),
        };
        if let Err(e) = write_message(&mut chan, &response) {
            let _ = write_message(
                &mut chan,
                &Response::Error(AgentError {
                    kind: ErrorKind::BadRequest,
                    message: format!("cannot send the result: {e}"),
                }),
            );
        }
    }
}

fn os_error(context: &str, e: &io::Error) -> Response {
    Response::Error(AgentError {
        kind: ErrorKind::Os(sys::errno_of(e)),
        message: format!("{context}: {e}"),
    })
}

fn run(op: Operation, me: u32) -> Response {
    match op {
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
        Operation::ReadFile { path, max_len } => match read_file(&path, max_len) {
            Ok(data) => Response::File(data),
            Err(e) => os_error(&format!("read {path}"), &e),
        },
        Operation::WriteFile {
            path,
            data,
            mode,
            append,
        } => match write_file(&path, &data, mode, append) {
            Ok(()) => Response::Done,
            Err(e) => os_error(&format!("write {path}"), &e),
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
