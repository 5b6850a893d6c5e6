//! Dropping an executor to a worker's credentials.

use super::sys::cvt;
use provium_agent::protocol::{Credentials, ProcessSetup};
use std::io;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Takes the settings that are given (the rest stay as they are): the working directory, the
/// umask, then the limits.
pub fn set_up(s: &ProcessSetup) -> Result<(), String> {
    if let Some(cwd) = s.cwd.as_deref() {
        let path = std::ffi::CString::new(cwd).map_err(|_| format!("cwd {cwd:?} holds a NUL"))?;
        // SAFETY: a valid C string.
        if unsafe { libc::chdir(path.as_ptr()) } != 0 {
            return Err(format!("chdir {cwd}: {}", io::Error::last_os_error()));
        }
    }
    if let Some(mask) = s.umask {
        // SAFETY: umask takes a plain value.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    for &(resource, soft, hard) in &s.rlimits {
        let l = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit.
        if unsafe { libc::setrlimit(resource as _, &l) } != 0 {
            return Err(format!(
                "setrlimit({resource}, {soft}, {hard}): {}",
                io::Error::last_os_error()
            ));
        }
    }
    for &(signal, restart) in &s.catch {
        catch(signal, restart).map_err(|e| format!("a handler for signal {signal}: {e}"))?;
    }
    if let Some((signal, after_us)) = s.timer {
        arm_timer(signal, after_us).map_err(|e| format!("a timer for signal {signal}: {e}"))?;
    }
    Ok(())
}

/// The handler of caught signals: it only interrupts.
extern "C" fn interrupted(_: libc::c_int) {}

/// Catches `signal` with [`interrupted`] (the C library's `sigaction` supplies the restorer).
fn catch(signal: i32, restart: bool) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid empty one; the handler is an extern "C" function
    // that touches nothing.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut action.sa_mask);
        cvt(libc::sigaction(signal, &action, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Arms a one-shot timer that sends `signal` to this (single-threaded) process.
fn arm_timer(signal: i32, after_us: u64) -> io::Result<()> {
    // SAFETY: a zeroed sigevent with SIGEV_SIGNAL and a number is a valid request; the timer id
    // and the itimerspec are valid for the calls.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = signal;
        let mut id: libc::timer_t = std::mem::zeroed();
        cvt(libc::timer_create(
            libc::CLOCK_MONOTONIC,
            &mut event,
            &mut id,
        ))?;
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (after_us / 1_000_000) as libc::time_t,
                tv_nsec: (after_us % 1_000_000 * 1000) as libc::c_long,
            },
        };
        cvt(libc::timer_settime(id, 0, &value, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Takes `creds`: its process settings first, then its ids, keeping exactly the listed
/// capabilities.
pub fn apply(creds: &Credentials) -> io::Result<()> {
    set_up(&creds.setup).map_err(io::Error::other)?;
    let root = creds.uid == 0
        && creds.gid == 0
        && creds.caps.is_empty()
        && creds.euid.is_none()
        && creds.egid.is_none();
    if root {
        // Root worker with full capabilities: only the groups change.
        // SAFETY: valid pointer and length.
        cvt(unsafe { libc::setgroups(creds.groups.len(), creds.groups.as_ptr()) })?;
        return Ok(());
    }
    // SAFETY: prctl/set*id with plain integer arguments; pointers are valid.
    unsafe {
        cvt(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        cvt(libc::setgroups(creds.groups.len(), creds.groups.as_ptr()))?;
        let egid = creds.egid.unwrap_or(creds.gid);
        cvt(libc::setresgid(creds.gid, egid, creds.gid))?;
        let euid = creds.euid.unwrap_or(creds.uid);
        cvt(libc::setresuid(creds.uid, euid, creds.uid))?;
    }
    let mut data = [CapData::default(); 2];
    for &cap in &creds.caps {
        if cap >= 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("capability {cap} out of range"),
            ));
        }
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
        data[word].inheritable |= bit;
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and two data words as capset(2) requires for version 3.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    for &cap in &creds.caps {
        // Ambient capabilities survive execve, so `exec` in a worker keeps them too.
        // SAFETY: plain prctl.
        cvt(unsafe {
            libc::prctl(
                PR_CAP_AMBIENT,
                PR_CAP_AMBIENT_RAISE,
                cap as libc::c_ulong,
                0,
                0,
            )
        })?;
    }
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // A dumpable process lets /proc/self be owned by the worker, as for any user process.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    Ok(())
}

/// A session of its own (a test's kill(0, …) or setpgid reaches only the executor), or a process
/// group of its own in the agent's session.
pub fn take_place(place: provium_agent::protocol::SessionPlace) {
    // SAFETY: setsid and setpgid have no preconditions; in a fresh child neither fails.
    unsafe {
        match place {
            provium_agent::protocol::SessionPlace::Leader => libc::setsid(),
            provium_agent::protocol::SessionPlace::Member => libc::setpgid(0, 0),
        };
    }
}
