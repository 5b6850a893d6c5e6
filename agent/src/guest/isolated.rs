//! Isolated cases: each runs in a child of its own, so that it costs about a `fork()`, not a new
//! executor and host round trips. The executor forks a zygote, which puts itself in the boot
//! state once (`clean::reset_process_state`) and drops the agent's descriptors; for each case it
//! forks a child that takes the case's working directory, umask, limits and credentials, makes
//! the calls and sends each outcome back over a pipe, and kills a child that overstays the
//! case's deadline.
//!
//! A case costs only itself, whatever it does:
//! - the machinery's pipes sit near the top of the descriptor table and are close-on-exec, so a
//!   case that writes onto (or closes, or `fcntl`s) descriptors 3, 4, 5… meets what a worker or
//!   the shared executor would (EBADF), never another case's answers;
//! - the zygote sends each case's outcomes as soon as the case ends: a case that kills or stops
//!   the zygote (`kill(getppid(), …)`, `kill(-1, SIGKILL)` as root) loses only its own outcome,
//!   reported as what happened to the zygote; the cases after it run in a new zygote;
//! - whatever a case leaves running (a fork bomb's children) is killed with its process group
//!   when the case ends, so it cannot exhaust the process table for the next ones;
//! - descriptors for the machinery are made under the limits PID 1 booted with, so a lowered
//!   `RLIMIT_NOFILE` in the executor (a test's `setrlimit`) does not stop the batch.

use super::{clean, creds, guard, raw, sys};
use provium_agent::protocol::{
    read_message, write_message, IsolatedCase, ProcessSetup, SyscallOutcome, Termination,
};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

/// Exit status of a child that could not send an outcome (the case closed or replaced its
/// result pipe).
const EXIT_NO_PIPE: i32 = 92;
/// Exit status of a child whose set-up failed (the message went over the pipe first).
const EXIT_SETUP: i32 = 93;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// What the zygote itself may take beyond a case's own deadline (forking, sending).
const ZYGOTE_SLACK: Duration = Duration::from_secs(5);

/// A pipe whose two ends sit high in the descriptor table (below the agent's own descriptors),
/// close-on-exec: out of the way of a case's descriptor numbers.
fn high_pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let base = guard::AgentFds::at_top().link_read - 16;
    let moved = |fd: RawFd| -> io::Result<RawFd> {
        // SAFETY: the executor is single-threaded while it serves a request; the limit is put
        // back at once.
        let high = unsafe {
            guard::with_raised_limit(|| {
                let n = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base);
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n)
                }
            })
        };
        // SAFETY: closing the low descriptor we own; the high copy stays.
        unsafe { libc::close(fd) };
        high
    };
    let read = moved(fds[0]);
    let write = moved(fds[1]);
    match (read, write) {
        // SAFETY: we own both new descriptors.
        (Ok(r), Ok(w)) => Ok(unsafe { (File::from_raw_fd(r), File::from_raw_fd(w)) }),
        (Ok(fd), Err(e)) | (Err(e), Ok(fd)) => {
            // SAFETY: closing a descriptor we own.
            unsafe { libc::close(fd) };
            Err(e)
        }
        (Err(e), Err(_)) => Err(e),
    }
}

/// Runs the cases from zygotes: a child of the executor, put in the boot state once, forks a
/// child per case and sends each case's outcomes as the case ends. A zygote that dies or stops
/// costs the case that was running; a new one runs the rest.
pub fn run(cases: &[IsolatedCase], agent: guard::AgentFds) -> Vec<Vec<SyscallOutcome>> {
    let mut results: Vec<Vec<SyscallOutcome>> = Vec::with_capacity(cases.len());
    while results.len() < cases.len() {
        let from = results.len();
        match run_zygote(&cases[from..], from, agent, &mut results) {
            Ok(()) => {}
            Err(why) => {
                // The zygote could not even start: nothing after this can run either.
                while results.len() < cases.len() {
                    results.push(vec![SyscallOutcome::Rejected(why.clone())]);
                }
            }
        }
    }
    results
}

/// One zygote for `cases` (the rest of the batch, starting at `first`): pushes the outcomes of
/// the cases it finished, and of the case it was running if it died or stopped.
fn run_zygote(
    cases: &[IsolatedCase],
    first: usize,
    agent: guard::AgentFds,
    results: &mut Vec<Vec<SyscallOutcome>>,
) -> Result<(), String> {
    let (mut reader, writer) =
        high_pipe().map_err(|e| format!("pipe for the process that runs isolated cases: {e}"))?;
    // SAFETY: the executor is single-threaded while it serves a request.
    let zygote = unsafe { libc::fork() };
    if zygote < 0 {
        return Err(format!(
            "fork of the process that runs isolated cases: {}",
            io::Error::last_os_error()
        ));
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
        let mut writer = writer;
        for (i, case) in cases.iter().enumerate() {
            let outcomes = run_case(case, writer.as_raw_fd());
            if write_message(&mut writer, &(first + i, outcomes)).is_err() {
                // SAFETY: leaving the zygote without the executor's destructors.
                unsafe { libc::_exit(EXIT_NO_PIPE) };
            }
        }
        // SAFETY: leaving the zygote without the executor's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(writer);
    let mut done = 0;
    let mut gone: Option<String> = None;
    while done < cases.len() {
        let allowed = case_timeout(&cases[done]) + ZYGOTE_SLACK;
        if !readable(&reader, allowed) {
            // Stopped (SIGSTOP from its case) or stuck: it cannot be waited for.
            sys::kill(zygote, libc::SIGKILL);
            gone = Some(format!(
                "stopped answering for {} s (the case stopped or stalled it), and was killed",
                allowed.as_secs()
            ));
            break;
        }
        match read_message::<_, (usize, Vec<SyscallOutcome>)>(&mut reader) {
            Ok((index, outcomes)) if index == first + done => {
                results.push(outcomes);
                done += 1;
            }
            Ok(_) => {
                sys::kill(zygote, libc::SIGKILL);
                gone = Some("sent the outcomes of another case".into());
                break;
            }
            Err(_) => break,
        }
    }
    let status = sys::waitpid(zygote, 0).ok().flatten().map(|(_, t)| t);
    if done < cases.len() {
        // The case that was running when its zygote went is the one that cost it.
        let why = gone.unwrap_or_else(|| match status {
            Some(t) => t.to_string(),
            None => "ended without a word".into(),
        });
        results.push(vec![SyscallOutcome::ExecutorBroken(format!(
            "the process that runs isolated cases {why} during this case"
        ))]);
    }
    Ok(())
}

fn case_timeout(case: &IsolatedCase) -> Duration {
    match case.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms as u64),
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
        catch: s.catch.clone(),
        timer: s.timer,
    })?;
    if let Some(c) = &case.creds {
        creds::apply(c).map_err(|e| format!("taking uid {} gid {}: {e}", c.uid, c.gid))?;
    }
    Ok(())
}

/// In the case's child (forked from the zygote, already in the boot state): never returns.
fn child(case: &IsolatedCase, mut out: File, zygote_out: RawFd) -> ! {
    // The zygote's own pipe to the executor is not the case's to see.
    // SAFETY: closing an inherited descriptor this process does not use.
    unsafe { libc::close(zygote_out) };
    // Where a worker with the same credentials would stand (a session of its own by default:
    // setpgid on it is EPERM, kill(0, ...) reaches only it), so isolated and worker runs of a
    // case answer alike. Either way it leads its process group, which is killed after it.
    creds::take_place(case.creds.as_ref().map(|c| c.session).unwrap_or_default());
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

fn run_case(case: &IsolatedCase, zygote_out: RawFd) -> Vec<SyscallOutcome> {
    let (mut reader, writer) = match high_pipe() {
        Ok(p) => p,
        Err(e) => return vec![SyscallOutcome::Rejected(format!("pipe: {e}"))],
    };
    // SAFETY: the zygote is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return vec![SyscallOutcome::Rejected(format!(
            "fork: {}",
            io::Error::last_os_error()
        ))];
    }
    if pid == 0 {
        drop(reader);
        child(case, writer, zygote_out);
    }
    drop(writer);
    let deadline = Instant::now() + case_timeout(case);
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
    // What the case left running in its session (children it forked) goes with it.
    sys::kill(-pid, libc::SIGKILL);
    while sys::waitpid(-1, libc::WNOHANG).ok().flatten().is_some() {}
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
