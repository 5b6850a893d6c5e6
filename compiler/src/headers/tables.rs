//! Syscall numbers (`asm/unistd_64.h`) and errno names (`asm-generic/errno-base.h`, `errno.h`),
//! and the Rust source of the checked-in tables generated from them.

use super::defines::{self, Define};
use std::collections::BTreeMap;

/// `__NR_name N` definitions, in number order. A number given by another macro, as the
/// asm-generic table does (`#define __NR_fcntl __NR3264_fcntl`), is followed; the table's
/// bookkeeping (`__NR_syscalls`, `__NR_arch_specific_syscall`) is not a syscall.
pub fn syscalls(unistd: &str) -> Vec<(String, u32)> {
    let defs = defines::parse(unistd);
    let bodies: BTreeMap<&str, &str> = defs
        .iter()
        .map(|d| (d.name.as_str(), d.body.trim()))
        .collect();
    fn value<'a>(bodies: &BTreeMap<&'a str, &'a str>, mut body: &'a str) -> Option<u32> {
        for _ in 0..4 {
            let b = body.trim_matches(|c| c == '(' || c == ')' || c == ' ');
            if let Ok(n) = b.parse() {
                return Some(n);
            }
            body = bodies.get(b)?;
        }
        None
    }
    let mut out: Vec<(String, u32)> = defs
        .iter()
        .filter_map(|d| {
            let name = d.name.strip_prefix("__NR_")?;
            if matches!(name, "syscalls" | "arch_specific_syscall") {
                return None;
            }
            Some((name.to_string(), value(&bodies, &d.body)?))
        })
        .collect();
    out.sort_by_key(|(_, nr)| *nr);
    out.dedup();
    out
}

/// One errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errno {
    /// `EBADF`.
    pub name: String,
    /// Its number.
    pub number: i32,
    /// The header's comment for it.
    pub description: String,
    /// For aliases such as `EWOULDBLOCK`, the name it stands for.
    pub alias_of: Option<String>,
}

/// Errno definitions from the given headers (in include order), aliases resolved.
pub fn errnos(headers: &[&str]) -> Vec<Errno> {
    let defs: Vec<Define> = headers.iter().flat_map(|h| defines::parse(h)).collect();
    let mut by_name: BTreeMap<String, i32> = BTreeMap::new();
    let mut out = Vec::new();
    for d in defs {
        if !d.name.starts_with('E') || d.params.is_some() {
            continue;
        }
        let (number, alias_of) = match d.body.parse::<i32>() {
            Ok(n) => (n, None),
            Err(_) => match by_name.get(&d.body) {
                Some(&n) => (n, Some(d.body.clone())),
                None => continue,
            },
        };
        by_name.insert(d.name.clone(), number);
        out.push(Errno {
            name: d.name,
            number,
            description: d.comment.unwrap_or_default(),
            alias_of,
        });
    }
    out
}

/// The Rust source of the syscall table for one arch.
pub fn render_syscalls(arch: &str, source: &str, table: &[(String, u32)]) -> String {
    let mut s = format!(
        "// Generated from {source}. Do not edit:\n\
         // `cargo test -p provium-compiler` checks it against the system headers, and\n\
         // PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Syscall names and numbers for {arch}, in number order.\n\
         pub const SYSCALLS: &[(&str, u32)] = &[\n"
    );
    for (name, nr) in table {
        s.push_str(&format!("    (\"{name}\", {nr}),\n"));
    }
    s.push_str("];\n");
    s
}

/// The Rust source of the errno table.
pub fn render_errnos(source: &str, table: &[Errno]) -> String {
    let mut s = format!(
        "// Generated from {source}. Do not edit:\n\
         // `cargo test -p provium-compiler` checks it against the system headers, and\n\
         // PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Errno name, number, description, and the name an alias stands for.\n\
         pub const ERRNOS: &[(&str, i32, &str, Option<&str>)] = &[\n"
    );
    for e in table {
        let alias = match &e.alias_of {
            Some(a) => format!("Some(\"{a}\")"),
            None => "None".into(),
        };
        s.push_str(&format!(
            "    (\"{}\", {}, {:?}, {alias}),\n",
            e.name, e.number, e.description
        ));
    }
    s.push_str("];\n");
    s
}

/// Headers whose constants specs can use by name without listing them, in include order.
pub const BUILTIN_HEADERS: &[&str] = &[
    "asm-generic/fcntl.h",
    "linux/fcntl.h",
    "linux/openat2.h",
    "linux/stat.h",
    "asm-generic/mman-common.h",
    "asm-generic/mman.h",
    "linux/mman.h",
    "linux/memfd.h",
    "linux/fs.h",
    "asm/signal.h",
    "linux/sched.h",
    "asm-generic/socket.h",
    "bits/socket.h",
    "linux/in.h",
    "linux/wait.h",
    "asm-generic/resource.h",
    "linux/prctl.h",
    "linux/capability.h",
    "linux/eventpoll.h",
    "linux/inotify.h",
    "linux/xattr.h",
    "linux/limits.h",
    "linux/falloc.h",
    "linux/close_range.h",
    "linux/mount.h",
    "linux/futex.h",
    "linux/time.h",
    "linux/random.h",
    "asm-generic/ioctl.h",
    "asm-generic/ioctls.h",
    "linux/pidfd.h",
    "linux/signalfd.h",
    "linux/userfaultfd.h",
    "linux/keyctl.h",
    "linux/seccomp.h",
    "linux/fanotify.h",
    "linux/utsname.h",
    "linux/if_ether.h",
    "linux/resource.h",
    "asm-generic/signal-defs.h",
    "linux/timerfd.h",
];

/// [`BUILTIN_HEADERS`] as a C file can include them together (for struct layouts): glibc's
/// `bits/` headers are read directly for their constants but may only be included through the
/// header that owns them.
pub fn builtin_includes() -> Vec<String> {
    BUILTIN_HEADERS
        .iter()
        .map(|h| match *h {
            "bits/socket.h" => "sys/socket.h".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Socket types live in an enum in glibc's headers, not in a uapi `#define`; their values are
/// part of the syscall ABI.
pub const SOCKET_TYPES: &[(&str, i64)] = &[
    ("SOCK_STREAM", 1),
    ("SOCK_DGRAM", 2),
    ("SOCK_RAW", 3),
    ("SOCK_RDM", 4),
    ("SOCK_SEQPACKET", 5),
    ("SOCK_NONBLOCK", 0o4000),
    ("SOCK_CLOEXEC", 0o2000000),
];

/// Constants of the C library's API that the kernel's ABI fixes but no uapi header defines
/// (LTP's tests use them): `access(2)` modes and eventfd flags.
pub const LIBC_ABI: &[(&str, i64, &str)] = &[
    ("F_OK", 0, "unistd.h (access)"),
    ("X_OK", 1, "unistd.h (access)"),
    ("W_OK", 2, "unistd.h (access)"),
    ("R_OK", 4, "unistd.h (access)"),
    ("EFD_SEMAPHORE", 1, "sys/eventfd.h"),
    ("EFD_NONBLOCK", 0o4000, "sys/eventfd.h"),
    ("EFD_CLOEXEC", 0o2000000, "sys/eventfd.h"),
];

/// Finds a header under an include root, looking in the multiarch directory for `asm/` and
/// `bits/` as the compiler does.
pub fn find_header(
    root: &std::path::Path,
    arch_triple: &str,
    header: &str,
) -> Option<std::path::PathBuf> {
    [root.join(arch_triple).join(header), root.join(header)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Every constant of [`BUILTIN_HEADERS`] that evaluates, with the header it comes from.
pub fn builtin_constants(
    root: &std::path::Path,
    arch_triple: &str,
) -> Result<Vec<(String, i64, String)>, String> {
    let mut table = super::constants::MacroTable::default();
    let mut sources: Vec<(String, Vec<String>)> = Vec::new();
    for header in BUILTIN_HEADERS {
        // glibc's `bits/socket.h` is the generic Linux one on every architecture Provium
        // supports; another architecture's uapi headers (linux-libc-dev:arm64) come without
        // it, so the host's is read.
        let path = find_header(root, arch_triple, header)
            .or_else(|| {
                header
                    .starts_with("bits/")
                    .then(|| find_header(root, crate::linux::Arch::X86_64.multiarch(), header))
                    .flatten()
            })
            .ok_or_else(|| format!("{header} not found under {}", root.display()))?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Enumerators first: they give self-referring defines (`#define X X`) their value.
        let enums = super::enums::parse(&text);
        let defs = super::defines::parse(&text);
        let mut names: Vec<String> = enums.iter().map(|d| d.name.clone()).collect();
        names.extend(defs.iter().map(|d| d.name.clone()));
        sources.push((header.to_string(), names));
        table.add(header, enums);
        table.add(header, defs);
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let none = |_: &str| None;
    for (header, names) in &sources {
        for name in names {
            let public = name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !name.starts_with('_')
                && !name.ends_with("_H")
                && name.len() > 1;
            if !public || !seen.insert(name.clone()) {
                continue;
            }
            if table
                .get(name)
                .is_some_and(|(d, src)| d.params.is_some() || src != header)
            {
                continue;
            }
            if let Ok(v) = table.eval(name, &none) {
                out.push((name.clone(), v, header.clone()));
            }
        }
    }
    for (name, v) in SOCKET_TYPES {
        if seen.insert(name.to_string()) {
            out.push((name.to_string(), *v, "linux/net.h (enum sock_type)".into()));
        }
    }
    for (name, v, origin) in LIBC_ABI {
        if seen.insert(name.to_string()) {
            out.push((name.to_string(), *v, origin.to_string()));
        }
    }
    Ok(out)
}

/// The Rust source of the built-in constant table.
pub fn render_constants(table: &[(String, i64, String)]) -> String {
    let mut s = String::from(
        "// Generated from the kernel's uapi headers (see headers::tables::BUILTIN_HEADERS).\n\
         // Do not edit: `cargo test -p provium-compiler` checks it against the system headers,\n\
         // and PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Name, value, and the header that defines it.\n\
         pub const CONSTANTS: &[(&str, i64, &str)] = &[\n",
    );
    for (name, v, header) in table {
        s.push_str(&format!("    (\"{name}\", {v}, \"{header}\"),\n"));
    }
    s.push_str("];\n");
    s
}

/// The Rust source of an architecture's differences from x86_64's constants: each name whose
/// value differs there, or that it lacks (`None`).
pub fn render_constant_differences(arch: &str, differences: &[(String, Option<i64>)]) -> String {
    let mut s = format!(
        "// Generated from {arch}'s uapi headers (see headers::tables::BUILTIN_HEADERS) against\n\
         // x86_64's. Do not edit: `cargo test -p provium-compiler` checks it against the system\n\
         // headers, and PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Name and {arch}'s value, where it differs from x86_64's (`None`: {arch} lacks it).\n\
         pub const DIFFERENT: &[(&str, Option<i64>)] = &[\n"
    );
    for (name, v) in differences {
        s.push_str(&format!("    (\"{name}\", {v:?}),\n"));
    }
    s.push_str("];\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_sorted_by_number() {
        let t = syscalls("#define __NR_write 1\n#define __NR_read 0\n#define __X 5\n");
        assert_eq!(t, vec![("read".to_string(), 0), ("write".to_string(), 1)]);
    }

    #[test]
    fn errno_aliases_resolve() {
        let base = "#define\tEAGAIN\t\t11\t/* Try again */\n";
        let more = "#define\tEWOULDBLOCK\tEAGAIN\t/* Operation would block */\n#define EDEADLOCK EDEADLK\n";
        let e = errnos(&[base, more]);
        assert_eq!(
            e.len(),
            2,
            "EDEADLOCK's target is unknown here and is skipped"
        );
        assert_eq!(e[1].name, "EWOULDBLOCK");
        assert_eq!(e[1].number, 11);
        assert_eq!(e[1].alias_of.as_deref(), Some("EAGAIN"));
        assert_eq!(e[0].description, "Try again");
    }
}
