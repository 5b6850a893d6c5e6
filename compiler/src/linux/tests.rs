use super::*;
use crate::headers::tables;
use std::path::Path;

fn system_header(candidates: &[&str]) -> Option<(String, String)> {
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|text| (p.to_string(), text))
    })
}

fn check_or_bless(path: &str, generated: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("PROVIUM_BLESS").is_some() {
        std::fs::write(&file, generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&file).unwrap();
    assert!(
        current == generated,
        "{path} differs from what the system headers generate; run \
         `PROVIUM_BLESS=1 cargo test -p provium-compiler` and review the diff"
    );
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
    check_or_bless(
        "src/linux/x86_64_syscalls.rs",
        &tables::render_syscalls("x86_64", "asm/unistd_64.h", &table),
    );
}

#[test]
fn errno_table_matches_system_headers() {
    let base = std::fs::read_to_string("/usr/include/asm-generic/errno-base.h")
        .expect("asm-generic/errno-base.h: install linux-libc-dev");
    let more = std::fs::read_to_string("/usr/include/asm-generic/errno.h")
        .expect("asm-generic/errno.h: install linux-libc-dev");
    let table = tables::errnos(&[&base, &more]);
    assert!(table.len() > 130, "parsed only {} errnos", table.len());
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
