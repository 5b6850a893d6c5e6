//! Linux tables: syscall numbers per architecture and errno names, generated from kernel headers
//! and checked in (see `headers::tables`), so that nothing at run time depends on the host's
//! headers.

mod caps;
#[rustfmt::skip]
mod headers_version;
// Generated tables: rustfmt must not reflow them, or they stop matching their generator.
#[rustfmt::skip]
mod errno_table;
#[rustfmt::skip]
mod uapi_constants;
#[rustfmt::skip]
mod x86_64_syscalls;
#[rustfmt::skip]
mod i386_syscalls;
#[rustfmt::skip]
mod later_syscalls;
#[rustfmt::skip]
mod aarch64_syscalls;
#[rustfmt::skip]
mod aarch64_constants;

pub use headers_version::HEADERS_VERSION;
use std::fmt;
use std::str::FromStr;

/// A system call ABI: a guest's own (x86_64's, aarch64's), or i386's on an x86_64 guest
/// (`int $0x80`, the compat table, ILP32 layouts) with `CONFIG_IA32_EMULATION`. It decides the
/// syscall table, the layouts and the constants a spec compiles with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Abi {
    /// x86_64's `syscall`.
    #[default]
    X86_64,
    /// i386's `int $0x80`.
    I386,
    /// arm64's `svc 0` (the asm-generic table, LP64).
    Aarch64,
}

impl Abi {
    /// Every ABI, native ones first.
    pub const ALL: [Abi; 3] = [Abi::X86_64, Abi::Aarch64, Abi::I386];

    /// `x86_64`, `i386`, `aarch64`.
    pub fn name(self) -> &'static str {
        match self {
            Abi::X86_64 => "x86_64",
            Abi::I386 => "i386",
            Abi::Aarch64 => "aarch64",
        }
    }

    /// The architecture whose guests have this ABI.
    pub fn arch(self) -> Arch {
        match self {
            Abi::X86_64 | Abi::I386 => Arch::X86_64,
            Abi::Aarch64 => Arch::Aarch64,
        }
    }

    /// Whether this is its architecture's own ABI (not a compat one).
    pub fn is_native(self) -> bool {
        self == self.arch().native_abi()
    }

    /// Syscall names and numbers, in number order.
    pub fn syscalls(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => x86_64_syscalls::SYSCALLS,
            Abi::I386 => i386_syscalls::SYSCALLS,
            Abi::Aarch64 => aarch64_syscalls::SYSCALLS,
        }
    }

    /// A uapi constant as this ABI's headers define it: most are the same everywhere, but
    /// arm64's `fcntl.h` moves `O_DIRECTORY`, `O_NOFOLLOW`, `O_DIRECT` and `O_LARGEFILE`, and
    /// some names exist on one architecture only (`MAP_32BIT`).
    pub fn constant(self, name: &str) -> Option<i64> {
        self.own_value(name, constant(name))
    }

    /// Every uapi constant as this ABI's headers define it, each name once with what
    /// [`Abi::constant`] answers for it, in the table's order: one pass, where asking
    /// [`Abi::constant`] name by name searched the whole table for each (1,700 names, every
    /// process that builds `provium.c`).
    pub fn constants(self) -> Vec<(&'static str, i64)> {
        let mut seen = std::collections::HashSet::new();
        uapi_constants::CONSTANTS
            .iter()
            .filter(|(name, _, _)| seen.insert(*name))
            .filter_map(|&(name, value, _)| self.own_value(name, Some(value)).map(|v| (name, v)))
            .collect()
    }

    /// `name`'s value for this ABI, given x86_64's: aarch64 differs for a few (or lacks them).
    fn own_value(self, name: &str, x86_64: Option<i64>) -> Option<i64> {
        match self {
            Abi::Aarch64 => match aarch64_constants::DIFFERENT
                .iter()
                .find(|(n, _)| *n == name)
            {
                Some((_, v)) => *v,
                None => x86_64,
            },
            Abi::X86_64 | Abi::I386 => x86_64,
        }
    }

    /// A syscall's number by name.
    pub fn syscall_number(self, name: &str) -> Option<u32> {
        self.syscalls()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr)
    }

    /// A syscall's name by number (x86_64's also knows the syscalls newer than the headers).
    pub fn syscall_name(self, nr: i64) -> Option<&'static str> {
        match self {
            Abi::X86_64 => Arch::X86_64.syscall_name(nr),
            Abi::I386 | Abi::Aarch64 => self
                .syscalls()
                .iter()
                .find(|(_, n)| *n as i64 == nr)
                .map(|(name, _)| *name),
        }
    }

    /// The size of a pointer and of `long`.
    pub fn pointer_size(self) -> u64 {
        match self {
            Abi::X86_64 | Abi::Aarch64 => 8,
            Abi::I386 => 4,
        }
    }
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Abi {
    type Err = String;
    fn from_str(s: &str) -> Result<Abi, String> {
        match s {
            "x86_64" | "amd64" | "64" => Ok(Abi::X86_64),
            "i386" | "x86" | "ia32" | "32" => Ok(Abi::I386),
            "aarch64" | "arm64" => Ok(Abi::Aarch64),
            other => Err(format!(
                "unknown ABI `{other}` (expected x86_64, i386 or aarch64)"
            )),
        }
    }
}

/// Why `abi`'s syscall of the same name as x86_64's cannot be called as a spec writes it: its
/// arguments differ (i386's `mmap` is `old_mmap`). Only i386's old calls do.
pub fn differs_under(abi: Abi, name: &str) -> Option<&'static str> {
    if abi != Abi::I386 {
        return None;
    }
    match name {
        "mmap" => Some("is old_mmap, which takes one pointer to its six arguments (mmap2 takes them, its offset in pages)"),
        "select" => Some("is the old select, which takes one pointer to its five arguments (_newselect takes them)"),
        _ => None,
    }
}

/// The arguments (by their x86_64 index) that are 64 bits wide in a syscall i386 passes them to
/// in two registers, low half first (`pread64(fd, buf, count, pos)` is `pread64(fd, buf,
/// count, pos_lo, pos_hi)` there; arch/x86/kernel/sys_ia32.c). `preadv` and its kin split
/// their offset on x86_64 too, so a spec already writes both halves.
pub fn i386_wide_args(name: &str) -> &'static [usize] {
    match name {
        "pread64" | "pwrite64" => &[3],
        "truncate64" | "ftruncate64" | "readahead" | "fadvise64" => &[1],
        "fallocate" => &[2, 3],
        "fadvise64_64" | "sync_file_range" => &[1, 2],
        "fanotify_mark" => &[2],
        _ => &[],
    }
}

/// A guest architecture. Syscall numbers differ per architecture; errnos do not (on the
/// architectures Provium supports, which use `asm-generic/errno.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Arch {
    /// x86-64.
    #[default]
    X86_64,
    /// arm64.
    Aarch64,
}

impl Arch {
    /// Every architecture, the host's first.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// `x86_64`, `aarch64` (as `uname -m` says).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Debian's name for it (`amd64`, `arm64`): its packages' and kernels' suffix.
    pub fn debian_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// Debian's multiarch include directory (`x86_64-linux-gnu`): its `asm/` headers.
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
        }
    }

    /// Its own system call ABI.
    pub fn native_abi(self) -> Abi {
        match self {
            Arch::X86_64 => Abi::X86_64,
            Arch::Aarch64 => Abi::Aarch64,
        }
    }

    /// The ABIs its guests can call: its own, then compat ones.
    pub fn abis(self) -> &'static [Abi] {
        match self {
            Arch::X86_64 => &[Abi::X86_64, Abi::I386],
            Arch::Aarch64 => &[Abi::Aarch64],
        }
    }

    /// Syscall names and numbers, in number order.
    pub fn syscalls(self) -> &'static [(&'static str, u32)] {
        self.native_abi().syscalls()
    }

    /// A syscall's number by name.
    pub fn syscall_number(self, name: &str) -> Option<u32> {
        self.native_abi().syscall_number(name)
    }

    /// A syscall's name by number.
    /// Also names the syscalls of kernels newer than the headers the table comes from (451 is
    /// `cachestat`): reports name what a test called on any kernel, while specs compile only
    /// with the table (or the kernel's own).
    pub fn syscall_name(self, nr: i64) -> Option<&'static str> {
        let later = match self {
            Arch::X86_64 => later_syscalls::LATER_SYSCALLS,
            Arch::Aarch64 => &[],
        };
        self.syscalls()
            .iter()
            .chain(later)
            .find(|(_, n)| *n as i64 == nr)
            .map(|(name, _)| *name)
    }

    /// The arch of the host this was compiled for, if Provium supports it.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(format!(
                "unsupported architecture `{other}` (supported: x86_64, aarch64)"
            )),
        }
    }
}

/// One errno as in the kernel's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno {
    /// `EBADF`.
    pub name: &'static str,
    /// Its number.
    pub number: i32,
    /// The header's comment for it.
    pub description: &'static str,
    /// The errno it is another name for (`EWOULDBLOCK` is `EAGAIN`).
    pub alias_of: Option<&'static str>,
}

/// Every errno, by number.
pub fn errnos() -> impl Iterator<Item = Errno> {
    errno_table::ERRNOS
        .iter()
        .map(|&(name, number, description, alias_of)| Errno {
            name,
            number,
            description,
            alias_of,
        })
}

/// An errno's number by name; the C library's own spellings too (`ENOTSUP` is glibc's and
/// musl's name for the kernel's `EOPNOTSUPP`).
pub fn errno_number(name: &str) -> Option<i32> {
    let name = match name {
        "ENOTSUP" => "EOPNOTSUPP",
        other => other,
    };
    errnos().find(|e| e.name == name).map(|e| e.number)
}

/// Names the C library defines that the kernel's uapi headers do not (or names otherwise), as
/// LTP and man pages spell them: name, value, where it comes from. Specs may use them like the
/// uapi constants.
pub const LIBC_CONSTANTS: &[(&str, i64, &str)] = &[
    (
        "SCHED_OTHER",
        0,
        "glibc's <sched.h>: the kernel's SCHED_NORMAL",
    ),
    (
        "UTIME_NOW",
        (1 << 30) - 1,
        "<sys/stat.h> (the kernel's include/linux/stat.h)",
    ),
    (
        "UTIME_OMIT",
        (1 << 30) - 2,
        "<sys/stat.h> (the kernel's include/linux/stat.h)",
    ),
    (
        "MNT_FORCE",
        1,
        "<sys/mount.h> (the kernel's include/linux/fs.h)",
    ),
    (
        "MNT_DETACH",
        2,
        "<sys/mount.h> (the kernel's include/linux/fs.h)",
    ),
    (
        "MNT_EXPIRE",
        4,
        "<sys/mount.h> (the kernel's include/linux/fs.h)",
    ),
    (
        "UMOUNT_NOFOLLOW",
        8,
        "<sys/mount.h> (the kernel's include/linux/fs.h)",
    ),
];

/// The canonical errno for a number (positive or negated): `EAGAIN`, never its alias.
pub fn errno_for(number: i64) -> Option<Errno> {
    let n = number.checked_abs()?;
    errnos().find(|e| e.number as i64 == n && e.alias_of.is_none())
}

/// `-22` or `22` → `"EINVAL"`.
pub fn errno_name(number: i64) -> Option<&'static str> {
    errno_for(number).map(|e| e.name)
}

/// A capability's number by name (`CAP_NET_ADMIN` → 12).
pub fn capability(name: &str) -> Option<u8> {
    caps::number(name)
}

/// Every capability name (`CAP_CHOWN`…).
pub fn capabilities() -> impl Iterator<Item = &'static str> {
    caps::names()
}

/// A constant from the kernel's uapi headers (`O_CREAT`, `AT_FDCWD`, `FIONREAD`, …).
pub fn constant(name: &str) -> Option<i64> {
    uapi_constants::CONSTANTS
        .iter()
        .chain(LIBC_CONSTANTS)
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| *v)
}

/// The name of signal `n` (`SIGPIPE`), from the built-in constants (`SIGIO` and `SIGPOLL`
/// share 29: the first defined wins).
pub fn signal_name(n: i64) -> Option<&'static str> {
    uapi_constants::CONSTANTS
        .iter()
        .find(|(name, v, h)| {
            *v == n && *h == "asm/signal.h" && name.starts_with("SIG") && !name.starts_with("SIG_")
        })
        .map(|(name, _, _)| *name)
}

/// Constant families that belong to one API each: a suggestion for a misspelled name in a call
/// to another syscall never offers them (`EFD_CLOEXC` in `eventfd2` suggests `EFD_CLOEXEC`,
/// not `TFD_CLOEXEC` or `SFD_CLOEXEC`, which are the same number for other calls).
pub const API_FAMILIES: &[(&str, &[&str])] = &[
    ("EFD_", &["eventfd", "eventfd2"]),
    (
        "TFD_",
        &["timerfd_create", "timerfd_settime", "timerfd_gettime"],
    ),
    ("SFD_", &["signalfd", "signalfd4"]),
    ("MFD_", &["memfd_create"]),
    (
        "IN_",
        &["inotify_init1", "inotify_add_watch", "inotify_rm_watch"],
    ),
    ("FAN_", &["fanotify_init", "fanotify_mark"]),
    (
        "EPOLL",
        &[
            "epoll_create1",
            "epoll_ctl",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
        ],
    ),
    (
        "PIDFD_",
        &["pidfd_open", "pidfd_send_signal", "pidfd_getfd"],
    ),
    ("UFFD", &["userfaultfd"]),
];

/// Whether constant `name` may be suggested in a call to `syscall` (`None`: outside a call).
pub fn suggestible_in(name: &str, syscall: Option<&str>) -> bool {
    let Some(syscall) = syscall else { return true };
    API_FAMILIES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .is_none_or(|(_, calls)| calls.contains(&syscall))
}

/// Every built-in constant: name, value, header.
pub fn constants() -> &'static [(&'static str, i64, &'static str)] {
    uapi_constants::CONSTANTS
}

/// `"-22 (EINVAL)"` for negative errno-looking values, the plain number otherwise.
pub fn describe_ret(ret: i64) -> String {
    if (-4095..0).contains(&ret) {
        if let Some(name) = errno_name(ret) {
            return format!("{ret} ({name})");
        }
    }
    ret.to_string()
}

// Checked against the system's headers by `headers::table_checks`.
