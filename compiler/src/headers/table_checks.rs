//! The checked-in Linux tables (`crate::linux`: syscall numbers per ABI, errnos, constants,
//! arm64's differences) against the system's headers, read by this module's parsers; here
//! rather than beside the tables so that `linux`, the lowest layer, imports nothing above it.

use super::tables;
use crate::linux::*;
use std::path::Path;

fn system_header(candidates: &[&str]) -> Option<(String, String)> {
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|text| (p.to_string(), text))
    })
}

/// The host's uapi headers version (`6.1.187` from `linux/version.h`).
fn host_headers_version() -> Option<String> {
    let text = std::fs::read_to_string("/usr/include/linux/version.h").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .map(|v| v.trim().to_string())
    };
    Some(format!(
        "{}.{}.{}",
        field("LINUX_VERSION_MAJOR")?,
        field("LINUX_VERSION_PATCHLEVEL")?,
        field("LINUX_VERSION_SUBLEVEL")?
    ))
}

/// The tables are pinned to the headers they were generated from ([`HEADERS_VERSION`]). On a
/// host with exactly those headers the generated text must match byte for byte (so a generator
/// change is caught); on any other host only what the two have in common is compared, since a
/// newer or older linux-libc-dev adds or lacks names but never renumbers the ABI. Blessing
/// regenerates the tables and the pinned version from the host's headers.
fn pinned() -> bool {
    host_headers_version().as_deref() == Some(HEADERS_VERSION)
}

fn check_or_bless(path: &str, generated: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("PROVIUM_BLESS").is_some() {
        std::fs::write(&file, generated).unwrap();
        let version = host_headers_version().expect("linux/version.h");
        let pin = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/linux/headers_version.rs");
        std::fs::write(
            pin,
            format!(
                "// Generated with the tables: the linux-libc-dev headers they were made from.\n\n\
                 /// The uapi headers version the checked-in tables were generated from.\n\
                 pub const HEADERS_VERSION: &str = \"{version}\";\n"
            ),
        )
        .unwrap();
        return;
    }
    if !pinned() {
        return;
    }
    let current = std::fs::read_to_string(&file).unwrap();
    assert!(
        current == generated,
        "{path} differs from what the system headers generate; run \
         `PROVIUM_BLESS=1 cargo test -p provium-compiler` and review the diff"
    );
}

/// Names both sides define must have the same value; returns the disagreements.
fn disagreements<'a>(
    host: impl Iterator<Item = (&'a str, i64)>,
    table: impl Fn(&str) -> Option<i64>,
) -> (usize, Vec<String>) {
    let mut shared = 0;
    let mut wrong = Vec::new();
    for (name, value) in host {
        if let Some(ours) = table(name) {
            shared += 1;
            if ours != value {
                wrong.push(format!("{name}: table {ours}, headers {value}"));
            }
        }
    }
    (shared, wrong)
}

/// The checked-in x86_64 syscall table is what the system's `asm/unistd_64.h` says.
#[test]
fn syscall_table_matches_system_headers() {
    let Some((_, text)) = system_header(&[
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
    ]) else {
        panic!("asm/unistd_64.h not found: install linux-libc-dev (scripts/setup does)");
    };
    let table = tables::syscalls(&text);
    assert!(table.len() > 300, "parsed only {} syscalls", table.len());
    let (shared, wrong) =
        disagreements(table.iter().map(|(n, nr)| (n.as_str(), *nr as i64)), |n| {
            Arch::X86_64.syscall_number(n).map(i64::from)
        });
    assert!(
        shared > 300 && wrong.is_empty(),
        "{shared} shared; {wrong:?}"
    );
    check_or_bless(
        "src/linux/x86_64_syscalls.rs",
        &tables::render_syscalls("x86_64", "asm/unistd_64.h", &table),
    );
}

/// The checked-in i386 syscall table is what the system's `asm/unistd_32.h` says (the amd64
/// uapi headers carry it: no multilib needed).
#[test]
fn i386_syscall_table_matches_system_headers() {
    let Some((_, text)) = system_header(&[
        "/usr/include/x86_64-linux-gnu/asm/unistd_32.h",
        "/usr/include/asm/unistd_32.h",
    ]) else {
        panic!("asm/unistd_32.h not found: install linux-libc-dev (scripts/setup does)");
    };
    let table = tables::syscalls(&text);
    assert!(table.len() > 400, "parsed only {} syscalls", table.len());
    let (shared, wrong) =
        disagreements(table.iter().map(|(n, nr)| (n.as_str(), *nr as i64)), |n| {
            Abi::I386.syscall_number(n).map(i64::from)
        });
    assert!(
        shared > 400 && wrong.is_empty(),
        "{shared} shared; {wrong:?}"
    );
    check_or_bless(
        "src/linux/i386_syscalls.rs",
        &tables::render_syscalls("i386", "asm/unistd_32.h", &table),
    );
    // Where the ABIs differ: names only one has, numbers that differ.
    assert_eq!(Abi::I386.syscall_number("getpid"), Some(20));
    assert_eq!(Abi::I386.syscall_number("stat64"), Some(195));
    assert_eq!(Abi::I386.syscall_number("newfstatat"), None);
    assert_eq!(Abi::X86_64.syscall_number("stat64"), None);
    assert_eq!(Abi::I386.syscall_name(6), Some("close"));
}

/// The arm64 uapi headers (linux-libc-dev:arm64, which `scripts/setup --arch arm64` installs)
/// as gcc sees them for that target: `asm/unistd.h` includes the asm-generic table under
/// arm64's `__ARCH_WANT_*` choices.
fn arm64_macros() -> Option<String> {
    let dir = Path::new("/usr/include/aarch64-linux-gnu");
    if !dir.join("asm/unistd.h").is_file() {
        return None;
    }
    let out = std::process::Command::new("gcc")
        .args([
            "-E",
            "-dM",
            "-nostdinc",
            "-U__x86_64__",
            "-D__aarch64__",
            "-I",
        ])
        .arg(dir)
        .args([
            "-I",
            "/usr/include",
            "-include",
            "asm/unistd.h",
            "-x",
            "c",
            "/dev/null",
        ])
        .output()
        .expect("gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The checked-in arm64 syscall table is what arm64's headers say; without them (no
/// `--arch arm64` setup) the table is only checked for what arm64 is known to have.
#[test]
fn aarch64_syscall_table_matches_arm64_headers() {
    let a = Abi::Aarch64;
    if let Some(text) = arm64_macros() {
        let table = tables::syscalls(&text);
        check_or_bless(
            "src/linux/aarch64_syscalls.rs",
            &tables::render_syscalls(
                "aarch64",
                "arm64's asm/unistd.h (asm-generic/unistd.h)",
                &table,
            ),
        );
        assert!(table.len() > 300, "parsed only {} syscalls", table.len());
        let (shared, wrong) =
            disagreements(table.iter().map(|(n, nr)| (n.as_str(), *nr as i64)), |n| {
                a.syscall_number(n).map(i64::from)
            });
        assert!(
            shared > 300 && wrong.is_empty(),
            "{shared} shared; {wrong:?}"
        );
    } else {
        eprintln!("linux-libc-dev:arm64 is not installed: the table is not compared");
    }
    assert_eq!(a.syscall_number("close"), Some(57));
    assert_eq!(a.syscall_number("openat"), Some(56));
    assert_eq!(a.syscall_number("getpid"), Some(172));
    assert_eq!(a.syscall_number("newfstatat"), Some(79));
    assert_eq!(a.syscall_number("clone3"), Some(435));
    // What arm64 never had: the old calls the *at family replaced.
    for old in ["open", "stat", "fork", "dup2", "pipe", "poll", "select"] {
        assert_eq!(a.syscall_number(old), None, "{old}");
    }
    assert_eq!(Arch::Aarch64.native_abi(), a);
}

/// arm64's constants are x86_64's but where its headers say otherwise (the checked-in
/// differences, regenerated from linux-libc-dev:arm64).
#[test]
fn aarch64_constants_match_arm64_headers() {
    let a = Abi::Aarch64;
    let root = Path::new("/usr/include");
    if root.join("aarch64-linux-gnu/asm/unistd.h").is_file() {
        aarch64_constants_against(root);
    } else {
        eprintln!("linux-libc-dev:arm64 is not installed: the differences are not compared");
    }
    assert_eq!(a.constant("O_DIRECTORY"), Some(0o40000));
    assert_eq!(Abi::X86_64.constant("O_DIRECTORY"), Some(0o200000));
    assert_eq!(a.constant("O_NOFOLLOW"), Some(0o100000));
    assert_eq!(a.constant("O_CREAT"), Some(0o100));
    assert_eq!(a.constant("AT_FDCWD"), Some(-100));
    assert_eq!(a.constant("MAP_32BIT"), None);
}

/// The built-in constants as gcc sees them on one architecture: its own `asm/` headers first
/// (they define what differs, then include asm-generic's), then the built-in list. glibc's
/// `bits/` headers are left out: arm64's uapi package has none, and they are the generic Linux
/// files on both.
fn gcc_constants(
    root: &Path,
    multiarch: &str,
    flags: &[&str],
) -> crate::headers::constants::MacroTable {
    let mut cmd = std::process::Command::new("gcc");
    cmd.args(["-E", "-dM", "-nostdinc"])
        .args(flags)
        .arg("-I")
        .arg(root.join(multiarch))
        .arg("-I")
        .arg(root);
    for h in [
        "asm/fcntl.h",
        "asm/mman.h",
        "asm/signal.h",
        "asm/socket.h",
        "asm/sockios.h",
    ]
    .into_iter()
    .chain(tables::BUILTIN_HEADERS.iter().copied())
    .filter(|h| !h.starts_with("bits/"))
    {
        cmd.args(["-include", h]);
    }
    let out = cmd.args(["-x", "c", "/dev/null"]).output().expect("gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut macros = crate::headers::constants::MacroTable::default();
    macros.add(
        multiarch,
        crate::headers::defines::parse(&String::from_utf8_lossy(&out.stdout)),
    );
    macros
}

/// arm64's differences: each built-in constant whose value gcc gives differently for arm64's
/// headers than for x86_64's, both preprocessed alike (a name one header `#undef`s or an
/// enumerator is absent from both, so it is not a difference).
fn aarch64_constants_against(root: &Path) {
    let a = Abi::Aarch64;
    let x86 = gcc_constants(root, "x86_64-linux-gnu", &[]);
    let arm = gcc_constants(
        root,
        "aarch64-linux-gnu",
        &["-U__x86_64__", "-D__aarch64__"],
    );
    let none = |_: &str| None;
    let mut differences: Vec<(String, Option<i64>)> = Vec::new();
    for (name, _, _) in constants() {
        let theirs = arm.eval(name, &none).ok();
        if x86.eval(name, &none).ok() != theirs {
            differences.push((name.to_string(), theirs));
        }
    }
    check_or_bless(
        "src/linux/aarch64_constants.rs",
        &tables::render_constant_differences("aarch64", &differences),
    );
    for (name, v) in &differences {
        assert_eq!(a.constant(name), *v, "{name}");
    }
}

#[test]
fn errno_table_matches_system_headers() {
    let base = std::fs::read_to_string("/usr/include/asm-generic/errno-base.h")
        .expect("asm-generic/errno-base.h: install linux-libc-dev");
    let more = std::fs::read_to_string("/usr/include/asm-generic/errno.h")
        .expect("asm-generic/errno.h: install linux-libc-dev");
    let table = tables::errnos(&[&base, &more]);
    assert!(table.len() > 130, "parsed only {} errnos", table.len());
    let (shared, wrong) = disagreements(
        table.iter().map(|e| (e.name.as_str(), e.number as i64)),
        |n| errno_number(n).map(i64::from),
    );
    assert!(
        shared > 130 && wrong.is_empty(),
        "{shared} shared; {wrong:?}"
    );
    check_or_bless(
        "src/linux/errno_table.rs",
        &tables::render_errnos("asm-generic/errno-base.h and asm-generic/errno.h", &table),
    );
}

#[test]
fn lookups() {
    let a = Arch::X86_64;
    assert_eq!(a.syscall_number("close"), Some(3));
    assert_eq!(a.syscall_number("openat2"), Some(437));
    assert_eq!(a.syscall_name(39), Some("getpid"));
    assert_eq!(errno_number("EINVAL"), Some(22));
    assert_eq!(errno_name(-11), Some("EAGAIN"));
    assert_eq!(errno_number("EWOULDBLOCK"), Some(11));
    assert_eq!(describe_ret(-38), "-38 (ENOSYS)");
    assert_eq!(describe_ret(5), "5");
    assert_eq!(errno_for(i64::MIN), None);
}

#[test]
fn constant_table_matches_system_headers() {
    let table = tables::builtin_constants(Path::new("/usr/include"), "x86_64-linux-gnu")
        .expect("kernel headers: install linux-libc-dev (scripts/setup does)");
    assert!(table.len() > 500, "only {} constants", table.len());
    // Counts and bounds (`…_MAX`, `…_LAST`, `…_CNT`) grow as the kernel adds members; every
    // other uapi value is ABI and must agree whatever the headers' version.
    let grows = |n: &str| {
        ["_MAX", "_LAST", "_CNT", "_COUNT"]
            .iter()
            .any(|s| n.ends_with(s))
    };
    let (shared, wrong) = disagreements(
        table
            .iter()
            .filter(|(n, _, _)| !grows(n))
            .map(|(n, v, _)| (n.as_str(), *v)),
        constant,
    );
    assert!(
        shared > 500 && wrong.is_empty(),
        "{shared} shared; {wrong:?}"
    );
    check_or_bless(
        "src/linux/uapi_constants.rs",
        &tables::render_constants(&table),
    );
}

#[test]
fn well_known_constants() {
    for (name, value) in [
        ("AT_FDCWD", -100),
        ("O_CREAT", 0o100),
        ("O_RDWR", 2),
        ("O_CLOEXEC", 0o2000000),
        ("O_DIRECTORY", 0o200000),
        ("RESOLVE_BENEATH", 8),
        ("PROT_READ", 1),
        ("MAP_PRIVATE", 2),
        ("CLONE_NEWNS", 0x20000),
        ("FIONREAD", 0x541b),
        ("SOCK_STREAM", 1),
        ("AF_INET", 2),
        ("SIGKILL", 9),
        ("EPOLL_CLOEXEC", 0o2000000),
        ("PATH_MAX", 4096),
    ] {
        assert_eq!(constant(name), Some(value), "{name}");
    }
}

/// `schemas/spec.schema.json` is generated from the spec types; a stale copy fails here.
#[test]
fn spec_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/spec.schema.json");
    let generated = crate::schema();
    if std::env::var_os("PROVIUM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "schemas/spec.schema.json is stale; run `PROVIUM_BLESS=1 cargo test -p provium-compiler`"
    );
    let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(v["title"], "Provium spec");
    assert!(v["properties"]["cases"].is_object());
}

/// The later syscalls that only name numbers in reports are what linux 6.12's syscall table says
/// (the kconfig tree scripts/setup unpacks), and start where the headers' table ends.
#[test]
fn later_syscall_names_match_linux_6_12() {
    let tools = std::env::var_os("PROVIUM_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/provium-tools")
        });
    let tbl = tools.join("kconfig/linux-source-6.12/arch/x86/entry/syscalls/syscall_64.tbl");
    let text = std::fs::read_to_string(&tbl)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", tbl.display()));
    let last = Arch::X86_64.syscalls().last().unwrap().1;
    let mut later = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [nr, abi, name, ..] = f[..] else { continue };
        let nr: u32 = nr.parse().unwrap();
        if nr > last && nr < 512 && (abi == "common" || abi == "64") {
            later.push((name, nr));
        }
    }
    // The later table holds exactly these: every number it names is past the headers' table.
    let named = (last as i64 + 1..512)
        .filter(|nr| Arch::X86_64.syscall_name(*nr).is_some())
        .count();
    assert_eq!(later.len(), named, "{later:?}");
    for (name, nr) in &later {
        assert_eq!(Arch::X86_64.syscall_name(*nr as i64), Some(*name));
        assert_eq!(
            Arch::X86_64.syscall_number(name),
            None,
            "{name} must not compile"
        );
    }
    assert_eq!(Arch::X86_64.syscall_name(451), Some("cachestat"));
}

#[test]
fn each_abis_constants_are_what_it_answers_name_by_name() {
    for abi in [Abi::X86_64, Abi::I386, Abi::Aarch64] {
        let all = abi.constants();
        let names: std::collections::BTreeSet<&str> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), all.len(), "{abi:?}: a name twice");
        for (name, value) in &all {
            assert_eq!(abi.constant(name), Some(*value), "{abi:?} {name}");
        }
        for (name, _, _) in constants() {
            assert_eq!(
                names.contains(name),
                abi.constant(name).is_some(),
                "{abi:?} {name}"
            );
        }
    }
}
