//! Bad command lines, bad files and bad environments: each ends within seconds with exit 1 or 2
//! and says what is wrong and where, never a panic or a hang; a bad file costs only itself.

use crate::common::{provium_in as provium, show};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `c`, which must end within `limit` with `code` and say `says` (stdout or stderr).
fn expect(mut c: Command, code: i32, says: &str, limit: Duration) {
    let started = Instant::now();
    let out = c.output().unwrap();
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{c:?}\n{}", show(&out));
    assert_eq!(out.status.code(), Some(code), "{c:?}\n{}", show(&out));
    assert!(
        text.contains(says),
        "{c:?}: expected {says:?}\n{}",
        show(&out)
    );
    assert!(took < limit, "{c:?} took {took:?}");
}

const FAST: Duration = Duration::from_secs(5);

#[test]
fn bad_command_lines_and_files_say_what_and_where() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo.yaml").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();
    let mut big = b"cases:\n".to_vec();
    big.resize(9 << 20, b'#');
    std::fs::write(dir.join("big.yaml"), big).unwrap();
    let args = |a: &[&str]| {
        let mut c = provium(dir);
        c.args(a);
        c
    };
    expect(args(&["test", "missing"]), 2, "missing: no such file", FAST);
    expect(
        args(&["test", "notes.txt"]),
        2,
        "notes.txt: not a test file",
        FAST,
    );
    expect(args(&["test", "empty"]), 4, "no tests selected", FAST);
    expect(args(&["test", "fifo.yaml"]), 1, "not a regular file", FAST);
    expect(args(&["test", "zero.yaml"]), 1, "not a regular file", FAST);
    expect(
        args(&["test", "big.yaml"]),
        1,
        "over the limit of 8 MiB",
        FAST,
    );
    expect(
        args(&["check", "fifo.yaml", "big.yaml"]),
        1,
        "fifo.yaml",
        FAST,
    );
    expect(
        args(&["compile", "empty"]),
        2,
        "empty: not a spec file",
        FAST,
    );
    expect(args(&["test", "-j", "0", "empty"]), 2, "at least 1", FAST);
    expect(
        args(&["test", "--partition", "count:0/0"]),
        2,
        "count:K/N",
        FAST,
    );
    expect(args(&["test", "--timeout", "abc"]), 2, "--timeout", FAST);
    expect(
        args(&["test", "--timeout=1e300", "empty"]),
        2,
        "a week",
        FAST,
    );
    expect(
        args(&["junit", "merge", "-o", "out.xml", "missing.xml"]),
        2,
        "missing.xml",
        FAST,
    );
    expect(
        args(&["fixture", "build", "nope"]),
        2,
        "unknown fixture `nope`",
        FAST,
    );
    expect(
        args(&["no-such-command"]),
        2,
        "unrecognized subcommand",
        FAST,
    );
}

#[test]
fn bad_configurations_and_environments_are_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("ok.yaml"),
        "cases:\n  - {name: x, syscall: close, args: [-1], expect: EBADF}\n",
    )
    .unwrap();
    for (toml, says) in [
        (
            "[profile.minimal\n",
            "provium.toml: TOML parse error at line 1",
        ),
        ("[profile.x]\nmemroy = \"1G\"\n", "unknown field `memroy`"),
        (
            "bogus = 1\n",
            "unknown field `bogus`, expected `profile` or `fixture`",
        ),
    ] {
        std::fs::write(dir.join("provium.toml"), toml).unwrap();
        let mut c = provium(dir);
        c.args(["test", "ok.yaml"]);
        expect(c, 2, says, FAST);
    }
    std::fs::remove_file(dir.join("provium.toml")).unwrap();
    let hang = dir.join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (var, value, says) in [
        (
            "PROVIUM_KERNEL",
            "/nonexistent",
            "PROVIUM_KERNEL=/nonexistent is not a file",
        ),
        (
            "PROVIUM_KERNEL",
            "/etc/passwd",
            "/etc/passwd is neither a bzImage, an ELF kernel nor an arm64 Image",
        ),
        ("PROVIUM_QEMU", "/nonexistent", "/nonexistent"),
        (
            "PROVIUM_QEMU",
            hang.to_str().unwrap(),
            "did not answer `--version` within 2 s",
        ),
        ("PROVIUM_QEMU", "/bin/true", "is not QEMU"),
    ] {
        let mut c = provium(dir);
        c.args(["test", "--cold", "ok.yaml"]).env(var, value);
        expect(c, 1, says, Duration::from_secs(10));
    }
}

/// One bad file costs only itself: the run goes on and reports the others.
#[test]
fn a_file_that_breaks_its_parser_costs_only_itself() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let deep = "(".repeat(800) + "1" + &")".repeat(800);
    std::fs::write(
        dir.join("a_parens.yaml"),
        format!("cases:\n  - {{name: x, syscall: close, args: [\"{deep}\"], expect: EBADF}}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("b_nested.yaml"),
        format!(
            "cases:\n  - {{name: x, syscall: close, args: {}-1{}, expect: EBADF}}\n",
            "[".repeat(200),
            "]".repeat(200)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("c_deep.lua"), format!("local x = {deep}\n")).unwrap();
    std::fs::write(
        dir.join("d_ok.yaml"),
        "cases:\n  - {name: passes, syscall: close, args: [-1], expect: EBADF}\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = provium(dir).args(["test"]).output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    for says in [
        "at a_parens.yaml:2",
        "nests more than 32 levels",
        "b_nested.yaml",
        "too large or too deeply nested",
        "c_deep.lua",
        "PASS [",
        "d_ok.yaml::passes",
    ] {
        assert!(stdout.contains(says), "missing {says:?}\n{}", show(&out));
    }
}

/// `provium check` knows the profiles of the project a spec belongs to: the `provium.toml`
/// nearest to the spec, wherever check is run from.
#[test]
fn check_knows_the_profiles_of_the_specs_own_project() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let spec = |profile: &str| {
        format!("profile: {profile}\ncases:\n  - name: c\n    syscall: close\n    args: [-1]\n    expect: EBADF\n")
    };
    write("proj/provium.toml", "[profile.big]\nmemory = \"1G\"\n");
    write("proj/specs/typo.yaml", &spec("bgi"));
    write("proj/specs/good.yaml", &spec("big"));
    write("other/specs/own.yaml", &spec("net"));
    write("other/provium.toml", "[profile.net]\ncpus = 2\n");
    // Run from the parent of both projects: each spec is checked against its own profiles.
    let out = provium(dir.path())
        .args(["check", "proj/specs", "other/specs"])
        .output()
        .unwrap();
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("proj/specs/typo.yaml:1:10") && text.contains("unknown profile `bgi`"),
        "{text}"
    );
    assert!(text.contains("did you mean `big`?"), "{text}");
    assert!(text.contains("ok proj/specs/good.yaml"), "{text}");
    assert!(text.contains("ok other/specs/own.yaml"), "{text}");
    assert!(text.contains("1 problem"), "{text}");
}

/// A kernel whose virtio drivers are modules, given without its modules, is refused before QEMU
/// starts, naming PROVIUM_MODULES (it used to hang for the boot timeout).
#[test]
fn a_kernel_without_its_modules_is_refused_at_once() {
    let (kernel, modules) = provium::machine::profile::cached_kernel()
        .expect("scripts/setup installs the Debian kernel in the cache");
    assert!(modules.is_some(), "the Debian kernel's drivers are modules");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.lua"),
        "local vm = provium.create()\nvm:boot()\ntest('t', function() end)\n",
    )
    .unwrap();
    let mut c = provium(dir.path());
    c.args(["test", "t.lua"])
        .env("PROVIUM_KERNEL", &kernel)
        .env_remove("PROVIUM_MODULES");
    expect(c, 1, "set PROVIUM_MODULES", FAST);
}

/// Calls are counted against the kernel's own declarations (`include/linux/syscalls.h` of the
/// headers tree `scripts/setup` unpacks beside the kernel), and messages name the parameter.
#[test]
fn check_counts_arguments_against_the_kernels_declarations() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("arity.yaml"),
        "cases:\n  - name: a\n    syscall: close\n    args: [3, 4, 5]\n    expect: any\n  - name: b\n    syscall: stat\n    args: [{cstr: /}, {out: 144}, 0]\n    expect: any\n  - name: c\n    syscall: write\n    args: [1, 1.5, 2]\n    expect: any\n  - name: d\n    syscall: openat\n    args: [AT_FDCWD, {cstr: /}, O_RDONLY]\n    expect: any\n",
    )
    .unwrap();
    let out = provium(dir.path())
        .args(["check", "--color", "never", "arity.yaml"])
        .output()
        .unwrap();
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for says in [
        "arity.yaml:4:15: `close` takes 1 argument (fd) in include/linux/syscalls.h; 3 are given",
        // x86_64's stat is the kernel's sys_newstat.
        "arity.yaml:8:35: `stat` takes 2 arguments (filename, statbuf)",
        "arity.yaml:12:15: argument 2 (buf): expected an integer, got 1.5",
        "3 problems",
    ] {
        assert!(text.contains(says), "missing {says:?}\n{text}");
    }
}

/// A constant a uapi header defines is not called a typo: the hint names the header to add.
/// The C library's spellings LTP uses (`ENOTSUP`, `UTIME_NOW`, `MNT_DETACH`, `SCHED_OTHER`)
/// are known as they are.
#[test]
fn a_name_from_a_header_says_which_header_and_libc_spellings_work() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_file(
        dir.path(),
        "ipc.yaml",
        "cases:\n  - name: shmget\n    syscall: shmget\n    args: [IPC_PRIVATE, 4096, 0]\n    expect: ok\n",
    );
    let mut c = provium(dir.path());
    c.args(["check", "ipc.yaml"]);
    expect(
        c,
        1,
        "`IPC_PRIVATE` is defined in linux/ipc.h: add `headers: [linux/ipc.h]`",
        FAST,
    );
    crate::common::write_file(
        dir.path(),
        "libc.yaml",
        "cases:\n  - name: libc\n    syscall: close\n    args: [\"UTIME_NOW + UTIME_OMIT + MNT_FORCE + MNT_DETACH + MNT_EXPIRE + UMOUNT_NOFOLLOW + SCHED_OTHER\"]\n    expect: [EBADF, ENOTSUP]\n",
    );
    let out = provium(dir.path())
        .args(["compile", "libc.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let lua = String::from_utf8_lossy(&out.stdout);
    // (2^30 - 1) + (2^30 - 2) + 1 + 2 + 4 + 8 + 0, and ENOTSUP as the kernel's EOPNOTSUPP.
    assert!(lua.contains(&((1i64 << 31) - 3 + 15).to_string()), "{lua}");
    assert!(lua.contains("ENOTSUP"), "{lua}");
}
