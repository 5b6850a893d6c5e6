//! The descriptors an executor keeps for the agent (its channel to PID 1 and, for the front, the
//! link to the host), where they live, and the check that a test's syscall left them alone.
//!
//! They sit at the top of the descriptor table, above the soft `RLIMIT_NOFILE` that new
//! descriptors are allocated under: tests that `dup2` onto "every descriptor up to the limit"
//! (LTP's dup205) or count descriptors from 0 never meet them, and `dup2` onto them fails with
//! `EBADF` unless a test raises its own limit first. They are close-on-exec, so commands never
//! inherit them. A test can still name them on purpose (`close(4094)`, `close_range(3, ~0U, 0)`,
//! `fcntl(F_SETFL)`): after every call that can change the descriptor table, the executor
//! compares them with what it recorded and, when one was closed, replaced or changed, ends
//! itself with [`EXIT_BROKEN`] after saying why. PID 1 answers for the call (the case that made
//! it fails with that reason) and the next request gets a fresh executor.

use std::io;
use std::os::fd::RawFd;

/// Exit status of an executor that found its descriptors disturbed by the call it just made.
pub const EXIT_BROKEN: i32 = 91;

/// Where an executor keeps the agent's descriptors.
#[derive(Debug, Clone, Copy)]
pub struct AgentFds {
    /// The link from the host (the front only).
    pub link_read: RawFd,
    /// The link to the host (the front only).
    pub link_write: RawFd,
    /// The socket pair to PID 1.
    pub channel: RawFd,
}

impl AgentFds {
    /// The top three slots under the hard descriptor limit, capped at 4096 (the kernel's default
    /// hard limit for init, so the table stays small).
    pub fn at_top() -> AgentFds {
        let hard = nofile().map(|l| l.rlim_max).unwrap_or(1024);
        let top = hard.clamp(64, 4096) as RawFd - 1;
        AgentFds {
            link_read: top - 2,
            link_write: top - 1,
            channel: top,
        }
    }

    /// What a descriptor is, in a message.
    pub fn describe(&self, fd: RawFd) -> &'static str {
        if fd == self.channel {
            "the executor's channel to the agent"
        } else if fd == self.link_read {
            "the executor's link from the host"
        } else {
            "the executor's link to the host"
        }
    }
}

fn nofile() -> Option<libc::rlimit> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit pointer.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0).then_some(l)
}

/// Runs `f` with the soft descriptor limit raised to the hard one, so that `dup2` can place
/// descriptors above the usual soft limit; the soft limit is put back afterwards.
///
/// # Safety
/// Only in a freshly forked, single-threaded child.
pub unsafe fn with_raised_limit<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let Some(saved) = nofile() else {
        return f();
    };
    let raised = libc::rlimit {
        rlim_cur: saved.rlim_max,
        rlim_max: saved.rlim_max,
    };
    // SAFETY: setrlimit with valid pointers; the caller guarantees no other thread allocates
    // descriptors meanwhile.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    result
}

/// A descriptor as the executor took it.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    fd: RawFd,
    dev: u64,
    ino: u64,
    fd_flags: i32,
    status_flags: i32,
}

fn read(fd: RawFd) -> Result<Recorded, i32> {
    // SAFETY: fcntl and fstat on a descriptor number; a closed one answers EBADF.
    unsafe {
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        if fd_flags < 0 {
            return Err(*libc::__errno_location());
        }
        let status_flags = libc::fcntl(fd, libc::F_GETFL);
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(*libc::__errno_location());
        }
        Ok(Recorded {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            fd_flags,
            status_flags,
        })
    }
}

/// The agent's descriptors of one executor, as recorded when it started serving.
pub struct Guard {
    fds: AgentFds,
    recorded: Vec<Recorded>,
}

impl Guard {
    /// The descriptors it watches.
    pub fn fds(&self) -> AgentFds {
        self.fds
    }

    pub fn record(fds: AgentFds, which: &[RawFd]) -> io::Result<Guard> {
        let recorded = which
            .iter()
            .map(|&fd| read(fd).map_err(io::Error::from_raw_os_error))
            .collect::<io::Result<_>>()?;
        Ok(Guard { fds, recorded })
    }

    /// Whether a call with these arguments can close, replace or change one of the watched
    /// descriptors. Cheap, and most descriptor calls name other descriptors (`close(-1)`, a
    /// test's own `dup2`): the check after them costs several syscalls, which under TCG made a
    /// batch of `close(-1)` six times slower than one of `getpid`.
    pub fn may_be_touched_by(&self, nr: i64, args: &[i64; 6]) -> bool {
        if !may_touch_descriptors(nr) {
            return false;
        }
        // The kernel reads descriptor arguments as `unsigned int`: 4095 + 2^32 is 4095.
        let ours = |fd: i64| self.recorded.iter().any(|r| r.fd as u32 == fd as u32);
        match nr {
            libc::SYS_close | libc::SYS_fcntl | libc::SYS_ioctl => ours(args[0]),
            // dup2/dup3 change only their target.
            libc::SYS_dup3 => ours(args[1]),
            #[cfg(target_arch = "x86_64")]
            libc::SYS_dup2 => ours(args[1]),
            libc::SYS_close_range => {
                // Unsigned bounds, as the kernel reads them.
                let (first, last) = (args[0] as u32, args[1] as u32);
                self.recorded
                    .iter()
                    .any(|r| (first..=last).contains(&(r.fd as u32)))
            }
            _ => true,
        }
    }

    /// Whether the descriptors are as recorded; otherwise what the call did to which one.
    pub fn check(&self) -> Result<(), String> {
        for r in &self.recorded {
            let what = self.fds.describe(r.fd);
            let fd = r.fd;
            match read(r.fd) {
                Err(libc::EBADF) => return Err(format!("the call closed descriptor {fd}, {what}")),
                Err(e) => {
                    return Err(format!(
                        "descriptor {fd}, {what}, cannot be checked after the call (errno {e})"
                    ))
                }
                Ok(now) if (now.dev, now.ino) != (r.dev, r.ino) => {
                    return Err(format!(
                        "the call replaced descriptor {fd}, {what}, with another file"
                    ))
                }
                Ok(now) if now.fd_flags != r.fd_flags => {
                    return Err(format!(
                        "the call changed the close-on-exec flag of descriptor {fd}, {what}"
                    ))
                }
                Ok(now) if now.status_flags != r.status_flags => {
                    return Err(format!(
                        "the call changed the status flags of descriptor {fd}, {what} \
                         ({:#o} to {:#o})",
                        r.status_flags, now.status_flags
                    ))
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// Syscalls that can close, replace or change a descriptor by number; only after these does the
/// executor look at its own (a check costs a few syscalls, and most calls cannot do it).
pub fn may_touch_descriptors(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    const NRS: &[i64] = &[
        libc::SYS_close,
        libc::SYS_dup2,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_close_range,
        libc::SYS_io_uring_enter,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const NRS: &[i64] = &[
        libc::SYS_close,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_close_range,
        libc::SYS_io_uring_enter,
    ];
    NRS.contains(&nr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A guard watching one end of a fresh socket pair as the channel (both ends returned,
    /// to keep them open).
    fn watching_a_socket() -> (Guard, RawFd, [std::os::unix::net::UnixStream; 2]) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let fds = AgentFds {
            link_read: -1,
            link_write: -1,
            channel: fd,
        };
        (Guard::record(fds, &[fd]).unwrap(), fd, [a, b])
    }

    #[test]
    fn closing_replacing_and_flag_changes_are_seen() {
        let (guard, fd, _ends) = watching_a_socket();
        assert_eq!(guard.check(), Ok(()));
        // SAFETY: flag changes on a descriptor this test owns.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            assert!(guard.check().unwrap_err().contains("status flags"));
            libc::fcntl(fd, libc::F_SETFL, flags);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            // Same close-on-exec flag: only the identity tells.
            let cloexec = libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0;
            let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
            assert_eq!(libc::dup3(null, fd, flags), fd);
            libc::close(null);
        }
        let e = guard.check().unwrap_err();
        assert!(e.contains("replaced descriptor"), "{e}");
        assert!(e.contains("channel to the agent"), "{e}");
    }

    #[test]
    fn only_calls_that_name_a_watched_descriptor_are_checked() {
        let (guard, fd, _ends) = watching_a_socket();
        let f = i64::from(fd);
        let args = |a: i64, b: i64| [a, b, 0, 0, 0, 0];
        assert!(guard.may_be_touched_by(libc::SYS_close, &args(f, 0)));
        assert!(!guard.may_be_touched_by(libc::SYS_close, &args(-1, 0)));
        assert!(guard.may_be_touched_by(libc::SYS_close, &args(f + (1 << 32), 0)));
        assert!(guard.may_be_touched_by(libc::SYS_dup3, &args(0, f)));
        // Reading the watched descriptor is harmless; the new one is never the watched one
        // (a fixed number could be: tests run in parallel and take descriptors as they come).
        assert!(!guard.may_be_touched_by(libc::SYS_dup3, &args(f, f + 1)));
        assert!(guard.may_be_touched_by(libc::SYS_fcntl, &args(f, 4)));
        assert!(guard.may_be_touched_by(libc::SYS_close_range, &args(3, -1)));
        assert!(!guard.may_be_touched_by(libc::SYS_close_range, &args(3, f - 1)));
        assert!(guard.may_be_touched_by(libc::SYS_io_uring_enter, &args(0, 0)));
        assert!(!guard.may_be_touched_by(libc::SYS_getpid, &args(f, f)));
    }

    #[test]
    fn descriptor_calls_are_watched_and_others_are_not() {
        assert!(may_touch_descriptors(libc::SYS_close_range));
        assert!(may_touch_descriptors(libc::SYS_dup3));
        assert!(!may_touch_descriptors(libc::SYS_getpid));
        assert!(!may_touch_descriptors(libc::SYS_write));
    }
}
