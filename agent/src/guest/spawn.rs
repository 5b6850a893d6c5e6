//! Starting executor processes: PID 1 forks one per worker (and the front), moves the child's
//! end of the channel (and, for the front, the link) to the top of its descriptor table (see
//! [`guard`](super::guard)), drops to the worker's credentials and hands the child to the front's
//! loop or the worker's (`executor::serve`). Above both in the folder's order: supervisor →
//! spawn → front → executor.

use super::clean;
use super::control::Control;
use super::guard::{self, AgentFds, Guard};
use super::{creds, executor, front, inherit, sys};
use provium_agent::protocol::{
    read_message, write_message, Credentials, Descriptors, FrameError, SessionPlace,
};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

/// PID 1's handle on one executor process.
pub struct Executor {
    pub pid: libc::pid_t,
    pub chan: File,
}

/// What the forked process becomes.
pub enum Role<'a> {
    /// A worker: operations arrive from PID 1 over the channel. `front` is the front
    /// executor's pid, whose descriptors it takes when its credentials ask for them.
    Worker {
        creds: &'a Credentials,
        front: Option<libc::pid_t>,
    },
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
            Role::Worker { .. } => vec![fds.channel],
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
            Role::Worker { .. } => executor::serve(chan, &guard),
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
        libc::chdir(c"/".as_ptr());
    }
    match role {
        Role::Worker { creds, front } => {
            if creds.descriptors == Descriptors::Inherit {
                let front = front.ok_or_else(|| io::Error::other("no executor to inherit from"))?;
                inherit::descriptors_from(front, &[fds.link_read, fds.link_write, fds.channel])?;
            }
            creds::take_place(creds.session);
            creds::apply(creds)
        }
        Role::Front { .. } => {
            creds::take_place(SessionPlace::Leader);
            Ok(())
        }
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
