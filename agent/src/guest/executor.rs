//! Executor processes: where raw syscalls, commands and file operations actually run.
//!
//! PID 1 forks one executor per worker. The executor moves its end of the channel (and, for the
//! front, the link) to the top of its descriptor table (see [`guard`](super::guard)), drops to
//! the worker's credentials and serves [`Operation`]s one at a time, answering each with a
//! [`Response`]. If a syscall ends the process, PID 1 sees the channel close and reports the
//! death; if it disturbs the agent's descriptors, the executor ends itself and PID 1 says how.

use super::clean;
use super::guard::{self, Guard};
use super::reply::{bad_request, os_error};
use super::{exec, jobs, raw, sys};
use provium_agent::protocol::{
    read_message, write_message, FrameError, Operation, Response, SyscallOutcome,
};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

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
