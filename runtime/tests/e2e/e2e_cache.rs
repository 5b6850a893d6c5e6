//! The cache under real use: damaged files are named and made again, concurrent runs with
//! different environments never break each other, `provium fixture clean` cannot break a build
//! in progress, a read-only cache is used, a full one is said. Each test has a private
//! `PROVIUM_HOME` with only the kernels linked in.

use crate::common::{fresh_home, show};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn provium(home: &Path, dir: &Path) -> Command {
    let mut c = crate::common::provium_in(dir);
    c.env("PROVIUM_HOME", home);
    c
}

const PREPARED: &str = r#"
local vm = provium.fixture("prepared")
test("answers", function()
  assert_eq("ready", vm:exec("cat /srv-ready").stdout:trim())
  assert_eq("prepared", vm.info.fixture)
end)
"#;

const BOOTS: &str = r#"
local vm = provium.create()
vm:boot()
test("answers", function()
  assert(vm:syscall(provium.nr.getpid) > 0)
  assert_eq("minimal", vm.info.fixture)
end)
"#;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn passes(out: &Output) -> String {
    assert!(out.status.success(), "{}", show(out));
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The newest build of the shared `minimal` fixture.
fn boot_build(home: &Path) -> PathBuf {
    newest_build(&[home.join("fixtures/boot")], "minimal")
}

/// The newest build of a project's fixture `name` (in the project's store: any but `boot`).
fn project_build(home: &Path, name: &str) -> PathBuf {
    let stores: Vec<PathBuf> = std::fs::read_dir(home.join("fixtures"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "boot" && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    newest_build(&stores, name)
}

fn newest_build(stores: &[PathBuf], name: &str) -> PathBuf {
    let mut builds: Vec<PathBuf> = stores
        .iter()
        .flat_map(|store| std::fs::read_dir(store).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(&format!("{name}-")) && p.join("meta.json").exists()
        })
        .collect();
    builds.sort_by_key(|p| {
        std::fs::metadata(p.join("meta.json"))
            .unwrap()
            .modified()
            .unwrap()
    });
    builds
        .pop()
        .unwrap_or_else(|| panic!("a build of `{name}`"))
}

fn only_file(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
}

fn damage(path: &Path, how: &str) {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match how {
        "empty" => std::fs::write(path, b"").unwrap(),
        "truncate" => {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(len / 2).unwrap();
        }
        "garble" => {
            let mut data = std::fs::read(path).unwrap();
            for b in data.iter_mut().step_by(7) {
                *b ^= 0x5a;
            }
            std::fs::write(path, data).unwrap();
        }
        "delete" => std::fs::remove_file(path).unwrap(),
        "directory" => {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
        }
        other => panic!("{other}"),
    }
}

/// Damage that keeps what a build records of a file (size, inode, mtime): `bytes` written over
/// `path` at `offset`, and the mtime put back.
fn overwrite_keeping_identity(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, Write};
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
}

#[test]
fn damaged_cache_files_are_named_and_made_again() {
    let home = fresh_home();
    // A plain boot, and a table fixture built on the plain boot's build: damage to either is
    // named and made again (the table's rebuilds resume the plain build instead of booting).
    let dir = project(&[
        ("p.lua", BOOTS),
        ("t.lua", PREPARED),
        (
            "provium.toml",
            "[fixture.prepared]\nsetup = [\"echo ready > /srv-ready\"]\n",
        ),
    ]);
    passes(
        &provium(home.path(), dir.path())
            .args(["test"])
            .output()
            .unwrap(),
    );
    // Every kind of cache file, each damaged a different way (the ways are all checked on
    // every kind by the unit tests of `Identity` and `cached_intact`).
    let cases: [(&str, &str, &str); 9] = [
        ("plain", "ram", "truncate"),
        ("table", "state", "empty"),
        ("table", "ram", "truncate"),
        ("table", "console.log", "garble"),
        ("table", "meta.json", "garble"),
        ("table", "lock", "delete"),
        ("table", "state", "directory"),
        ("", "vmlinux", "truncate"),
        ("", "initramfs", "garble"),
    ];
    for (build, kind, how) in cases {
        let path = match (build, kind) {
            (_, "vmlinux") => only_file(&home.path().join("vmlinux"), "elf"),
            (_, "initramfs") => only_file(&home.path().join("initramfs"), "cpio"),
            ("plain", file) => boot_build(home.path()).join(file),
            (_, file) => project_build(home.path(), "prepared").join(file),
        };
        damage(&path, how);
        let out = provium(home.path(), dir.path())
            .args(["test", "-v"])
            .output()
            .unwrap();
        let stderr = passes(&out);
        match kind {
            // Without readable metadata or a lock, the directory is no usable build at all.
            "meta.json" | "lock" => assert!(
                stderr.contains("building the fixture"),
                "{build} {kind} {how}\n{}",
                show(&out)
            ),
            _ => assert!(
                stderr.contains(&path.display().to_string()),
                "{build} {kind} {how}: the message names the file\n{}",
                show(&out)
            ),
        }
    }

    // Damage that keeps size, inode and mtime is not seen before the resume: the resume fails,
    // and the build is set aside and made again.
    let ram = project_build(home.path(), "prepared").join("ram");
    overwrite_keeping_identity(&ram, 0, &vec![0xf4u8; 64 << 20]); // hlt, everywhere
    let started = std::time::Instant::now();
    let out = provium(home.path(), dir.path())
        .args(["test"])
        .output()
        .unwrap();
    let stderr = passes(&out);
    assert!(stderr.contains("did not resume"), "{}", show(&out));
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());

    // The extracted kernel damaged the same way: a resume does not need it (the guest's kernel
    // is in its RAM) and does not read it; a boot checks its content first and makes it again.
    let vmlinux = only_file(&home.path().join("vmlinux"), "elf");
    overwrite_keeping_identity(&vmlinux, 1 << 20, &[0xccu8; 4096]);
    let named = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stderr).contains(&vmlinux.display().to_string())
    };
    let resumed = provium(home.path(), dir.path())
        .args(["test", "-v"])
        .output()
        .unwrap();
    passes(&resumed);
    assert!(!named(&resumed), "{}", show(&resumed));
    // (t.lua checks that its VM was resumed; this one boots.)
    std::fs::write(
        dir.path().join("cold.lua"),
        "local vm = provium.create()\nvm:boot()\ntest('boots', function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n",
    )
    .unwrap();
    let booted = provium(home.path(), dir.path())
        .args(["test", "-v", "--cold", "cold.lua"])
        .output()
        .unwrap();
    passes(&booted);
    assert!(
        named(&booted),
        "a boot checks the kernel it loads\n{}",
        show(&booted)
    );
}

/// The host's TSC frequency (every microvm guest's `tsc_early_khz`) is measured once per host
/// boot and kept in the cache: a later boot takes the kept value instead of measuring again.
#[test]
fn the_host_tsc_frequency_is_measured_once_per_host_boot() {
    let home = fresh_home();
    let dir = project(&[(
        "cold.lua",
        "local vm = provium.create()\nvm:boot()\ntest('boots', function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n",
    )]);
    let cold = |file: &str| {
        passes(
            &provium(home.path(), dir.path())
                .args(["test", "--cold", file])
                .output()
                .unwrap(),
        )
    };
    cold("cold.lua");
    let file = home.path().join("host").join("tsc_khz");
    let kept = std::fs::read_to_string(&file).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let (id, khz) = kept.trim_end().split_once(' ').unwrap();
    assert_eq!(id, boot.trim(), "{kept:?}");
    // One kHz more than measured: only the kept value can reach the guest's command line.
    let planted = khz.parse::<u64>().unwrap() + 1;
    std::fs::write(&file, format!("{id} {planted}\n")).unwrap();
    std::fs::write(
        dir.path().join("cmdline.lua"),
        format!(
            "local vm = provium.create()\nvm:boot()\ntest('the kept frequency', function()\n  \
             assert_eq('{planted}', vm:exec('cat /proc/cmdline').stdout.value:match('tsc_early_khz=(%d+)'))\n\
             end)\n"
        ),
    )
    .unwrap();
    cold("cmdline.lua");
}

/// Several processes at once, each with another environment (another QEMU), sharing one cache,
/// with superseded builds removed as soon as they are unused: not one error.
#[test]
fn concurrent_runs_with_different_environments_never_break_each_other() {
    let home = fresh_home();
    let tools = tempfile::tempdir().unwrap();
    let qemu = which::which("qemu-system-x86_64").unwrap();
    let wrappers: Vec<Option<PathBuf>> = (0..3)
        .map(|i| {
            (i > 0).then(|| {
                let w = tools.path().join(format!("qemu-{i}"));
                std::fs::write(
                    &w,
                    format!("#!/bin/sh\n# wrapper {i}\nexec {} \"$@\"\n", qemu.display()),
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
                w
            })
        })
        .collect();
    let dirs: Vec<_> = (0..3)
        .map(|_| project(&[("a.lua", BOOTS), ("b.lua", BOOTS)]))
        .collect();
    let runs = 3;
    let handles: Vec<_> = wrappers
        .into_iter()
        .zip(&dirs)
        .map(|(wrapper, dir)| {
            let (home, dir) = (home.path().to_path_buf(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for _ in 0..runs {
                    let mut c = provium(&home, &dir);
                    c.args(["test", "-j", "2"])
                        .env("PROVIUM_FIXTURE_KEEP_SECS", "0");
                    if let Some(w) = &wrapper {
                        c.env("PROVIUM_QEMU", w);
                    }
                    let out = c.output().unwrap();
                    if !out.status.success() {
                        failures.push(show(&out));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_missing_fixture_is_built_once_and_clean_cannot_break_a_build() {
    let home = fresh_home();
    let slow = r#"
local vm = provium.create()
vm:boot()
assert(vm:exec("sleep 3; echo ready > /srv-ready").ok)
return vm
"#;
    let user = r#"
local vm = provium.fixture("slow")
test("prepared", function() assert_eq("ready", vm:exec("cat /srv-ready").stdout:trim()) end)
"#;
    let dir = project(&[("t.lua", user)]);
    std::fs::create_dir(dir.path().join("fixtures")).unwrap();
    std::fs::write(dir.path().join("fixtures/slow.lua"), slow).unwrap();
    // Two processes that need the same missing build: one builds, the other waits and uses it.
    let spawn = || {
        provium(home.path(), dir.path())
            .args(["test", "-v"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    // While they build, `fixture clean` removes nothing of it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let building = loop {
        let found = std::fs::read_dir(home.path().join("fixtures"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name() != "boot")
            .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains(".building-"));
        if let Some(p) = found {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no build started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let clean = provium(home.path(), dir.path())
        .args(["fixture", "clean"])
        .output()
        .unwrap();
    assert!(clean.status.success(), "{}", show(&clean));
    assert!(
        building.exists(),
        "the build in progress is left alone\n{}",
        show(&clean)
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ea, eb) = (passes(&a), passes(&b));
    // `slow` is built once (on the plain boot's build, which one of them made on the way).
    let built = |e: &str, what: &str| {
        e.matches(&format!("building the fixture fixture={what}"))
            .count()
    };
    assert_eq!(
        built(&ea, "slow") + built(&eb, "slow"),
        1,
        "built once\n{}\n{}",
        show(&a),
        show(&b)
    );
    assert_eq!(
        built(&ea, "minimal") + built(&eb, "minimal"),
        1,
        "{}\n{}",
        show(&a),
        show(&b)
    );
}

fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Needs root (mounts); CI and this project's machines run as root.
fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a read-only or full cache needs root");
        return false;
    }
    true
}

#[test]
fn a_read_only_cache_is_used_and_a_full_one_is_said() {
    if !can_mount() {
        return;
    }
    // A cache that holds the build, mounted read-only: resumed, not rebuilt.
    let home = fresh_home();
    let dir = project(&[("t.lua", BOOTS)]);
    passes(
        &provium(home.path(), dir.path())
            .args(["test"])
            .output()
            .unwrap(),
    );
    let ro = tempfile::tempdir().unwrap();
    assert!(mount(&[
        "--bind",
        &home.path().to_string_lossy(),
        &ro.path().to_string_lossy()
    ]));
    let _bound = Mounted(ro.path().to_path_buf());
    assert!(mount(&[
        "-o",
        "remount,ro,bind",
        &ro.path().to_string_lossy()
    ]));
    let out = provium(ro.path(), dir.path())
        .args(["test", "-v"])
        .output()
        .unwrap();
    let stderr = passes(&out);
    assert!(!stderr.contains("building the fixture"), "{}", show(&out));
    assert!(stderr.contains("read-only"), "{}", show(&out));

    // A 100 MiB cache: no room for a build; the file boots without snapshots and says why.
    let full = tempfile::tempdir().unwrap();
    assert!(mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=100M",
        "tmpfs",
        &full.path().to_string_lossy()
    ]));
    let _tmpfs = Mounted(full.path().to_path_buf());
    crate::common::link_kernels(full.path());
    let cold = r#"
local vm = provium.create()
vm:boot()
test("answers", function() assert(vm:syscall(provium.nr.getpid) > 0) end)
"#;
    let dir = project(&[("t.lua", cold)]);
    let out = provium(full.path(), dir.path())
        .args(["test"])
        .output()
        .unwrap();
    let stderr = passes(&out);
    assert!(stderr.contains("MiB free"), "{}", show(&out));
    assert!(
        stderr.contains("booting without snapshots"),
        "{}",
        show(&out)
    );
}
