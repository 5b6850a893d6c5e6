//! Turning a bare initramfs into a usable userland: file systems, kernel modules, loopback.

use super::sys;
use provium_agent::protocol::{MODPROBE_DEFERRED_PATH as MODPROBE_DEFERRED, MODULE_LIST_PATH};
use std::collections::HashMap;
use std::io;

/// Where `modprobe` goes once the kernel has booted.
const MODPROBE: &str = "/sbin/modprobe";

/// Puts `modprobe` in place, so that the kernel loads modules on demand from here on (a socket
/// of a family built as a module, say) as on any system. One the initramfs already has at
/// `/sbin/modprobe` (a user's archive, a pushed file) is kept.
pub fn install_modprobe() {
    if std::fs::symlink_metadata(MODPROBE).is_ok()
        || std::fs::symlink_metadata(MODPROBE_DEFERRED).is_err()
    {
        return;
    }
    let _ = std::fs::create_dir_all("/sbin");
    if let Err(e) = std::fs::rename(MODPROBE_DEFERRED, MODPROBE) {
        super::log(format_args!("modprobe: {e}"));
    }
}

/// Makes room at the top of the descriptor table for the agent's own descriptors: the hard
/// limit becomes at least 4096 (the kernel's default for init), the soft limit stays 1024, where
/// tests allocate from.
pub fn raise_descriptor_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers; PID 1 may raise its hard limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_max < 4096 {
            l.rlim_max = 4096;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

pub fn mount_filesystems() {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    let mounts: [(&str, &str, &str, libc::c_ulong); 7] = [
        ("proc", "/proc", "proc", nosuid_nodev | libc::MS_NOEXEC),
        ("sysfs", "/sys", "sysfs", nosuid_nodev | libc::MS_NOEXEC),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID),
        ("tmpfs", "/tmp", "tmpfs", nosuid_nodev),
        ("tmpfs", "/run", "tmpfs", nosuid_nodev),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
        ),
        ("tmpfs", "/dev/shm", "tmpfs", nosuid_nodev),
    ];
    for (source, target, fstype, flags) in mounts {
        if let Err(e) = sys::mount(source, target, fstype, flags) {
            // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
            if e.raw_os_error() != Some(libc::EBUSY) {
                super::log(format_args!("mount {target}: {e}"));
            }
        }
    }
    // /tmp is world-writable with the sticky bit, as on any distribution, so that worker
    // processes with other credentials behave as they would on a real system.
    let _ = std::fs::set_permissions("/tmp", std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    let _ = sys::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0);
}

/// Loads the modules the host listed. Returns one line per module that failed.
pub fn load_modules() -> Vec<String> {
    let Ok(list) = std::fs::read_to_string(MODULE_LIST_PATH) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match sys::finit_module(path) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => errors.push(format!("{path}: {e}")),
        }
    }
    errors
}

/// `provium.*` settings from the kernel command line.
pub fn kernel_settings() -> HashMap<String, String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    parse_settings(&cmdline)
}

fn parse_settings(cmdline: &str) -> HashMap<String, String> {
    cmdline
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("provium."))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Brings `lo` up so that socket tests on 127.0.0.1 work.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket; closed below.
    let fd =
        sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain old data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS on an open socket.
    let result = unsafe {
        sys::cvt(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr)).and_then(|_| {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            sys::cvt(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr))
        })
    };
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(fd) };
    result.map(|_| ())
}

/// Sets the console log level (`dmesg -n`).
pub fn console_loglevel(level: i32) {
    const SYSLOG_ACTION_CONSOLE_LEVEL: libc::c_int = 8;
    // SAFETY: CONSOLE_LEVEL takes no buffer.
    unsafe { libc::klogctl(SYSLOG_ACTION_CONSOLE_LEVEL, std::ptr::null_mut(), level) };
}

pub fn set_hostname(name: &str) {
    // SAFETY: valid pointer and length.
    unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) };
}

/// Sets the wall clock (never backwards) and mixes `seed` into the entropy pool.
pub fn sync_clock(unix_ns: u64, seed: &[u8]) -> io::Result<()> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointers.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let current = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    if unix_ns > current {
        let ts = libc::timespec {
            tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: valid timespec.
        sys::cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })?;
    }
    if !seed.is_empty() {
        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
        let mut info = Vec::with_capacity(8 + seed.len());
        info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
        info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
        info.extend_from_slice(seed);
        let random = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
        // SAFETY: the ioctl reads `info`, which is laid out as rand_pool_info.
        sys::cvt(unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&random),
                RNDADDENTROPY,
                info.as_ptr(),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_provium_words_only() {
        let s = parse_settings(
            "console=ttyS0 provium.transport=vsock provium.port=5 quiet provium.debug",
        );
        assert_eq!(s.get("transport").map(String::as_str), Some("vsock"));
        assert_eq!(s.get("port").map(String::as_str), Some("5"));
        assert_eq!(s.get("debug").map(String::as_str), Some("1"));
        assert_eq!(s.len(), 3);
    }
}
