//! Isolated cases: each runs in a child of its own, so that it costs about a `fork()`, not a new
//! executor and host round trips. The executor forks a zygote, which puts itself in the boot
//! state once (`clean::reset_process_state`) and drops the agent's descriptors; for each case it
//! forks a child that takes the case's working directory, umask, limits and credentials, makes
//! the calls and sends each outcome back over a pipe, and kills a child that overstays the
//! case's deadline. Nothing a case does to its process reaches the zygote, the next case or the
//! executor.

use super::{clean, creds, guard, raw, sys};
use provium_agent::protocol::{
    read_message, write_message, IsolatedCase, ProcessSetup, SyscallOutcome, Termination,
};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

/// Exit status of a child that could not send an outcome (the case closed or replaced its
/// result pipe).
const EXIT_NO_PIPE: i32 = 92;
/// Exit status of a child whose set-up failed (the message went over the pipe first).
const EXIT_SETUP: i32 = 93;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the cases from a zygote: one child of the executor, put in the boot state once, that
/// forks a child per case (so a case costs a fork, not a fork and a reset), waits for it, and
/// sends every case's outcomes back in one message.
pub fn run(cases: &[IsolatedCase], agent: guard::AgentFds) -> Vec<Vec<SyscallOutcome>> {
    let lost = |why: String| -> Vec<Vec<SyscallOutcome>> {
        cases
            .iter()
            .map(|_| vec![SyscallOutcome::Rejected(why.clone())])
            .collect()
    };
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return lost(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: we own both new descriptors.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: the executor is single-threaded while it serves a request.
    let zygote = unsafe { libc::fork() };
    if zygote < 0 {
        return lost(format!("fork: {}", io::Error::last_os_error()));
    }
    if zygote == 0 {
        drop(reader);
        // SAFETY: in a freshly forked, single-threaded child; the agent's descriptors are
        // closed so that no case can reach the executor's channel or the host link.
        unsafe {
            clean::reset_process_state();
            clean::reset_signals(true);
            for fd in [agent.link_read, agent.link_write, agent.channel] {
                libc::close(fd);
            }
        }
        let results: Vec<Vec<SyscallOutcome>> = cases.iter().map(run_case).collect();
        let mut writer = writer;
        let code = if write_message(&mut writer, &results).is_ok() {
            0
        } else {
            EXIT_NO_PIPE
        };
        // SAFETY: leaving the zygote without the executor's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(writer);
    let answer = read_message::<_, Vec<Vec<SyscallOutcome>>>(&mut reader);
    let status = sys::waitpid(zygote, 0).ok().flatten().map(|(_, t)| t);
    match answer {
        Ok(r) if r.len() == cases.len() => r,
        _ => lost(format!(
            "the process that runs isolated cases {}",
            status
                .map(|t| t.to_string())
                .unwrap_or_else(|| "sent no answer".into())
        )),
    }
}

/// The case's settings (the boot state's working directory and umask unless it says
/// otherwise), then its credentials (last: they may take away what the others need).
fn set_up(case: &IsolatedCase) -> Result<(), String> {
    let s = &case.setup;
    creds::set_up(&ProcessSetup {
        cwd: Some(s.cwd.clone().unwrap_or_else(|| "/".into())),
        umask: Some(s.umask.unwrap_or(0o022)),
        rlimits: s.rlimits.clone(),
    })?;
    if let Some(c) = &case.creds {
        creds::apply(c).map_err(|e| format!("taking uid {} gid {}: {e}", c.uid, c.gid))?;
    }
    Ok(())
}

/// In the case's child (forked from the zygote, already in the boot state): never returns.
fn child(case: &IsolatedCase, mut out: File) -> ! {
    // A session of its own, as every executor has: the case's process is then the same kind
    // of process a fresh worker is (setpgid on it is EPERM, kill(0, ...) reaches only it), so
    // isolated and worker runs of a case answer alike.
    // SAFETY: setsid has no preconditions.
    unsafe { libc::setsid() };
    if let Err(why) = set_up(case) {
        let _ = write_message(&mut out, &SyscallOutcome::Rejected(why));
        // SAFETY: leaving the child.
        unsafe { libc::_exit(EXIT_SETUP) };
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    for call in &case.calls {
        let outcome = raw::perform(call, me);
        if write_message(&mut out, &outcome).is_err() {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(EXIT_NO_PIPE) };
        }
    }
    // SAFETY: leaving the child without the executor's destructors.
    unsafe { libc::_exit(0) }
}

fn run_case(case: &IsolatedCase) -> Vec<SyscallOutcome> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return vec![SyscallOutcome::Rejected(format!(
            "pipe: {}",
            io::Error::last_os_error()
        ))];
    }
    // SAFETY: we own both new descriptors.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: the executor is single-threaded while it serves a request.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return vec![SyscallOutcome::Rejected(format!(
            "fork: {}",
            io::Error::last_os_error()
        ))];
    }
    if pid == 0 {
        drop(reader);
        child(case, writer);
    }
    drop(writer);
    let timeout = match case.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms as u64),
    };
    let deadline = Instant::now() + timeout;
    let mut outcomes = Vec::with_capacity(case.calls.len());
    let mut timed_out = false;
    while outcomes.len() < case.calls.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !readable(&reader, left) {
            timed_out = true;
            break;
        }
        match read_message::<_, SyscallOutcome>(&mut reader) {
            Ok(o) => outcomes.push(o),
            // The child ended (or closed its pipe) before sending every outcome.
            Err(_) => break,
        }
    }
    if timed_out {
        sys::kill(pid, libc::SIGKILL);
    }
    let status = sys::waitpid(pid, 0).ok().flatten().map(|(_, t)| t);
    if timed_out {
        outcomes.push(SyscallOutcome::TimedOut);
        return outcomes;
    }
    match status {
        Some(Termination::Exited(EXIT_SETUP)) => outcomes.truncate(1),
        Some(Termination::Exited(0)) if outcomes.len() == case.calls.len() => {}
        Some(Termination::Exited(EXIT_NO_PIPE)) | Some(Termination::Exited(0)) => {
            outcomes.push(SyscallOutcome::ExecutorBroken(
                "the case closed or replaced the pipe its outcomes go back through".into(),
            ))
        }
        Some(t) if outcomes.len() < case.calls.len() => {
            outcomes.push(SyscallOutcome::ExecutorDied(t))
        }
        _ => {}
    }
    outcomes
}

/// Waits until `reader` has data or hangs up, for at most `left`.
fn readable(reader: &File, left: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: reader.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = left.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return n > 0;
    }
}
