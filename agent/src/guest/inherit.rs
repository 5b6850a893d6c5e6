//! A new worker takes the front executor's descriptors (`Descriptors::Inherit`): each one the
//! front has, at the same number, sharing its open file (`pidfd_getfd`, Linux 5.6), with its
//! close-on-exec flag. A worker is forked from PID 1, not from the front, so this is how an `as:`
//! case with several steps sees what the file's setup opened, exactly as a one-call case forked
//! from the executor does. Above nothing in the folder's order: spawn calls it.

use super::sys;
use std::io;
use std::os::fd::RawFd;

/// Copies the descriptors of process `front` into this one, except the numbers in `skip` (the
/// agent's own, at the top of the table). Only in a freshly forked child, before it drops its
/// credentials (taking another process's descriptors needs the right to trace it).
pub fn descriptors_from(front: libc::pid_t, skip: &[RawFd]) -> io::Result<()> {
    let dir = format!("/proc/{front}/fd");
    let mut wanted: Vec<RawFd> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| !skip.contains(fd))
        .collect();
    wanted.sort_unstable();
    let Some(&highest) = wanted.last() else {
        return Ok(());
    };
    // SAFETY: pidfd_open with a pid and no flags.
    let pidfd = sys::cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, front, 0) } as i32)
        .map_err(|e| io::Error::new(e.kind(), format!("pidfd_open of the executor: {e}")))?;
    // Moved above every number being filled, so that no copy lands on it.
    // SAFETY: fcntl and close on a descriptor this process owns.
    let high = unsafe {
        let high = libc::fcntl(pidfd, libc::F_DUPFD_CLOEXEC, highest + 1);
        libc::close(pidfd);
        high
    };
    let pidfd = sys::cvt(high)?;
    let result = copy_all(pidfd, front, &wanted);
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(pidfd) };
    result
}

fn copy_all(pidfd: RawFd, front: libc::pid_t, wanted: &[RawFd]) -> io::Result<()> {
    for &n in wanted {
        // SAFETY: pidfd_getfd with a pidfd this process owns and no flags.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, n, 0) } as i32;
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBADF) {
                continue; // closed since the listing
            }
            return Err(io::Error::new(
                e.kind(),
                format!("taking descriptor {n} of the executor: {e}"),
            ));
        }
        let cloexec = close_on_exec(front, n);
        // SAFETY: dup3/fcntl/close on descriptors this process owns.
        unsafe {
            if got != n {
                let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
                let placed = sys::cvt(libc::dup3(got, n, flags));
                libc::close(got);
                placed?;
            } else if !cloexec {
                sys::cvt(libc::fcntl(n, libc::F_SETFD, 0))?;
            }
        }
    }
    Ok(())
}

/// Whether the front's descriptor `n` is close-on-exec (`flags:` in its fdinfo, octal).
fn close_on_exec(front: libc::pid_t, n: RawFd) -> bool {
    std::fs::read_to_string(format!("/proc/{front}/fdinfo/{n}"))
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("flags:"))?;
            u32::from_str_radix(line.trim_start_matches("flags:").trim(), 8).ok()
        })
        .is_some_and(|flags| flags & libc::O_CLOEXEC as u32 != 0)
}
