//! Fixtures against the real kernel: a fixture's writes are seen by every file that resumes it,
//! each resume is private, a resumed VM answers syscalls, commands and file operations, and an
//! edited fixture script is rebuilt.

use crate::common::{provium_in as provium, show, write_file as write, FixtureCleanup as Cleanup};

const FIXTURE: &str = r#"
-- A VM prepared once: a file written, a directory made, a worker-visible mode.
local vm = provium.create()
vm:boot()
vm:write_file("/srv/marker", "VERSION\n")
local r = vm:exec("mkdir -p /srv/data && echo hello > /srv/data/greeting")
assert(r.ok, r.stderr.value)
assert(vm:exec("echo base-console-mark > /dev/console").ok)
return vm
"#;

fn resumer(me: &str, other: &str) -> String {
    format!(
        r#"
local vm = provium.fixture("base")
test("sees the fixture's files", function()
  assert_eq("v1\n", vm:read_file("/srv/marker"))
  assert_eq("hello", vm:exec("cat /srv/data/greeting").stdout:trim())
end)
test("writes its own file", function()
  vm:write_file("/srv/{me}", "{me}")
  assert_eq("{me}", vm:read_file("/srv/{me}"))
end)
test("never sees the other file's writes", function()
  local r = vm:exec("ls /srv")
  assert(r.ok)
  assert(not r.stdout:contains("{other}"), "saw {other}'s write: " .. r.stdout.value)
end)
test("answers syscalls", function()
  assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
  assert(vm:syscall(provium.nr.getpid) > 0)
end)
test("was resumed", function()
  assert_eq("base", vm.info.fixture)
end)
test("has the fixture's boot console, then its own", function()
  vm:exec("echo after-resume-{me} > /dev/console")
  local console = vm:console(1000)
  local boot = console:find("base-console-mark", 1, true)
  local resumed = console:find("resumed from the snapshot of `base`", 1, true)
  local own = console:find("after-resume-{me}", 1, true)
  assert(boot and resumed and own and boot < resumed and resumed < own, console)
end)
"#
    )
}

#[test]
fn a_fixture_is_built_once_and_each_file_resumes_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path());
    write(
        dir.path(),
        "fixtures/base.lua",
        &FIXTURE.replace("VERSION", "v1"),
    );
    write(dir.path(), "a.lua", &resumer("only-a", "only-b"));
    write(dir.path(), "b.lua", &resumer("only-b", "only-a"));
    // A spec selects the fixture too (and sets its own timeout).
    write(
        dir.path(),
        "c.yaml",
        r#"
fixture: base
timeout: 120
cases:
  - name: the fixture's file opens
    steps:
      - exec: "test -s /srv/marker && test -s /srv/data/greeting"
      - { syscall: openat, args: [AT_FDCWD, {cstr: /srv/marker}, O_RDONLY], save: fd, expect: ok }
      - { syscall: close, args: [$fd], expect: 0 }
  - name: close(-1) is EBADF in a resumed VM
    syscall: close
    args: [-1]
    expect: EBADF
"#,
    );

    let out = provium(dir.path())
        .args(["test", "-j", "2", "-v"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("14 tests run: 14 passed"), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("building the fixture").count(),
        1,
        "two parallel files build the fixture once\n{}",
        show(&out)
    );

    let list = provium(dir.path())
        .args(["fixture", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listed.contains("base") && listed.contains("built"),
        "{listed}"
    );

    // The cached fixture was not changed by the files' writes: a third run sees none of them.
    let again = provium(dir.path()).args(["test", "-v"]).output().unwrap();
    assert!(again.status.success(), "{}", show(&again));
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("building the fixture"),
        "a current fixture is resumed, not rebuilt\n{}",
        show(&again)
    );

    // Pasting the provium.toml example of docs/profiles.md (profiles this fixture does not
    // boot, one with a kernel that does not exist here) rebuilds nothing: a fixture depends
    // only on the profile it boots.
    let profiles_doc =
        std::fs::read_to_string(crate::common::root().join("docs/profiles.md")).unwrap();
    let example = profiles_doc
        .split("```toml example\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/profiles.md has a toml example");
    write(dir.path(), "provium.toml", example);
    let pasted = provium(dir.path()).args(["test", "-v"]).output().unwrap();
    assert!(pasted.status.success(), "{}", show(&pasted));
    assert!(
        !String::from_utf8_lossy(&pasted.stderr).contains("building the fixture"),
        "other profiles in provium.toml do not make the fixture stale\n{}",
        show(&pasted)
    );
    std::fs::remove_file(dir.path().join("provium.toml")).unwrap();

    // Editing the script rebuilds the fixture, and the files see the new version.
    write(
        dir.path(),
        "fixtures/base.lua",
        &FIXTURE.replace("VERSION", "v2"),
    );
    let stale = provium(dir.path())
        .args(["fixture", "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&stale.stdout).contains("not built"),
        "{}",
        show(&stale)
    );
    for f in ["a.lua", "b.lua"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        write(dir.path(), f, &text.replace("v1", "v2"));
    }
    // Superseded builds nobody uses go after PROVIUM_FIXTURE_KEEP_SECS (an hour by default, so
    // that runs with different kernels do not remove each other's).
    let rebuilt = provium(dir.path())
        .args(["test", "-v"])
        .env("PROVIUM_FIXTURE_KEEP_SECS", "0")
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{}", show(&rebuilt));
    assert!(
        String::from_utf8_lossy(&rebuilt.stderr).contains("building the fixture"),
        "{}",
        show(&rebuilt)
    );
    let stale = provium(dir.path())
        .args(["fixture", "stale"])
        .output()
        .unwrap();
    // Only `base` is this test's to judge: shared plain-boot builds of other runs (an older
    // agent's) may be stale here too.
    assert!(
        !String::from_utf8_lossy(&stale.stdout)
            .lines()
            .any(|l| l.starts_with("base ")),
        "the old build was removed\n{}",
        show(&stale)
    );
}

#[test]
fn cold_runs_prepare_the_fixture_without_snapshots_and_bad_fixtures_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path());
    write(
        dir.path(),
        "provium.toml",
        r#"
[fixture.prepared]
profile = "minimal"
setup = ["mkdir -p /srv && echo table > /srv/from-table"]

[fixture.broken]
setup = ["exit 3"]
"#,
    );
    write(
        dir.path(),
        "fixtures/noreturn.lua",
        "local vm = provium.create()\nvm:boot()\n",
    );
    write(
        dir.path(),
        "t.lua",
        r#"
local vm = provium.fixture("prepared")
test("table fixture", function()
  assert_eq("table", vm:exec("cat /srv/from-table").stdout:trim())
end)
test("unknown fixture", function()
  local ok, err = pcall(provium.fixture, "prepraed")
  assert(not ok)
  assert_contains(tostring(err), "did you mean `prepared`")
end)
test("failing setup", function()
  local ok, err = pcall(provium.fixture, "broken")
  assert(not ok)
  assert_contains(tostring(err), "`exit 3` failed (exited with status 3)")
end)
test("script that returns no VM", function()
  local ok, err = pcall(provium.fixture, "noreturn")
  assert(not ok)
  assert_contains(tostring(err), "must return the VM it prepared")
end)
"#,
    );
    for mode in [&["test"][..], &["test", "--cold"][..]] {
        let out = provium(dir.path()).args(mode).output().unwrap();
        assert!(out.status.success(), "{mode:?}\n{}", show(&out));
    }
    // The run above built `prepared`; `build` keeps a current build, `--force` replaces it.
    let build = |args: &[&str]| {
        let out = provium(dir.path())
            .args(["fixture", "build"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(build(&["prepared"]).contains("current prepared"));
    assert!(build(&["--force", "prepared"]).contains("built prepared"));
    let out = provium(dir.path())
        .args(["fixture", "build", "broken"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`exit 3` failed"));
}

/// Under TCG an x86_64 guest's CPU is `max` without the ERMS and FSRM speed hints, resumed or
/// booted: a fixture taken under older launch defaults is not resumed in its place.
#[test]
fn the_default_tcg_cpu_hides_only_erms_and_fsrm_resumed_or_booted() {
    if provium::machine::accel::detect().0 != provium::machine::accel::Accel::Tcg {
        return; // under KVM the guest gets the host's CPU
    }
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cpu.lua",
        r#"
local vm = provium.create("minimal")
vm:boot()
test("flags", function()
  local flags = " " .. vm:exec("grep -m1 '^flags' /proc/cpuinfo").stdout:trim() .. " "
  for _, hidden in ipairs({"erms", "fsrm"}) do
    assert_eq(nil, string.find(flags, " " .. hidden .. " ", 1, true), hidden)
  end
  -- what makes `max` max is still there
  for _, kept in ipairs({"avx2", "pku", "rep_good"}) do
    assert(string.find(flags, " " .. kept .. " ", 1, true), kept .. " missing: " .. flags)
  end
end)
"#,
    );
    for args in [&["test", "cpu.lua"][..], &["test", "--cold", "cpu.lua"]] {
        let out = provium(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}\n{}", show(&out));
    }
}

/// A table fixture and a fixture script that prepare a plain boot are built on the profile's
/// plain boot build: QEMU starts for them resume that build (`-incoming`) instead of booting
/// the kernel again, and each build holds what it prepared on top of the whole boot. A fixture
/// with files of its own (another initramfs) still boots.
#[test]
fn fixtures_that_prepare_a_plain_boot_start_from_its_build_instead_of_a_boot() {
    let home = crate::common::fresh_home();
    let dir = tempfile::tempdir().unwrap();
    let (qemu, starts) = crate::common::qemu_counter(home.path());
    write(dir.path(), "payload.txt", "from the host\n");
    write(
        dir.path(),
        "provium.toml",
        r#"
[fixture.prepared]
setup = ["mkdir -p /srv && echo table > /srv/from-table"]

[fixture.with-files]
files = { "/srv/payload.txt" = "payload.txt" }
"#,
    );
    write(
        dir.path(),
        "fixtures/scripted.lua",
        "local vm = provium.create()\nvm:boot()\nassert(vm:exec('echo script > /root/from-script').ok)\nreturn vm\n",
    );
    write(
        dir.path(),
        "t.lua",
        r#"
local table_vm = provium.fixture("prepared")
local script_vm = provium.fixture("scripted")
local files_vm = provium.fixture("with-files")
test("each build holds what it prepared", function()
  assert_eq("table", table_vm:exec("cat /srv/from-table").stdout:trim())
  assert_eq("script", script_vm:exec("cat /root/from-script").stdout:trim())
  assert_eq("from the host", files_vm:exec("cat /srv/payload.txt").stdout:trim())
end)
test("under it is the whole boot", function()
  for _, vm in ipairs({table_vm, script_vm}) do
    assert(#vm:dmesg("Linux version") > 0, "no boot in the kernel log")
    assert(vm:exec("test -e /dev/null && test -d /proc/self").ok)
    assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
  end
end)
"#,
    );
    let run = || {
        provium(dir.path())
            .args(["test", "-v", "t.lua"])
            .env("PROVIUM_HOME", home.path())
            .env("PROVIUM_QEMU", &qemu)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", show(&out));
    let said = show(&out);
    for name in ["prepared", "scripted", "with-files", "minimal"] {
        assert!(
            said.contains(&format!("fixture `{name}`")),
            "{name} was not built\n{}",
            show(&out)
        );
    }
    let started = std::fs::read_to_string(&starts).unwrap();
    let boots: Vec<&str> = started
        .lines()
        .filter(|l| !l.contains(" -incoming "))
        .collect();
    // The plain boot's build and the fixture with files of its own; nothing else boots.
    assert_eq!(boots.len(), 2, "{started}");
    // Three builds' resumes plus the test file's three.
    assert_eq!(started.lines().count(), 2 + 2 + 3, "{started}");
    // Built once: a second run resumes all three.
    let again = run();
    assert!(again.status.success(), "{}", show(&again));
    assert!(!show(&again).contains("BUILDING"), "{}", show(&again));
}

/// QEMU processes whose command line names `path`.
fn qemus_naming(path: &std::path::Path) -> Vec<u32> {
    let needle = path.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (text.contains("qemu-system") && text.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// The run directories (`provium-run-*`) in `dir`.
fn run_dirs_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("provium-run-")
        })
        .collect()
}

/// A build keeps its guest's RAM in a RAM-backed directory while the guest runs (`/dev/shm`,
/// here one of the test's own in it) and copies it into the cache without its blocks of zeros;
/// a build killed outright leaves its RAM there only until the next run sweeps it; where the
/// directory is no tmpfs, the build keeps its RAM in the cache from the start.
#[test]
fn builds_keep_their_ram_in_dev_shm_until_saved_and_a_killed_one_is_swept() {
    assert!(
        provium::machine::paths::ram_backed_with_room(std::path::Path::new("/dev/shm"), 256)
            .is_some(),
        "this machine has no tmpfs /dev/shm with room for a 256 MiB guest"
    );
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path());
    write(
        dir.path(),
        "provium.toml",
        // Each with a file of its own: they boot (a table without files is built on the plain
        // boot's build, whose RAM stays in the cache).
        "[fixture.slow]\nfiles = { \"/srv-ready\" = \"ready.txt\" }\nsetup = [\"sleep 600\"]\n\n\
         [fixture.quick]\nfiles = { \"/srv-ready\" = \"ready.txt\" }\n\n\
         [fixture.on-disk]\nfiles = { \"/srv-ready\" = \"ready.txt\" }\nsetup = [\"true\"]\n",
    );
    write(dir.path(), "ready.txt", "ready\n");
    write(
        dir.path(),
        "t.lua",
        "for _, name in ipairs({'quick', 'on-disk'}) do\n  local vm = provium.fixture(name)\n  test(name, function() assert(#vm:read_file('/srv-ready') > 0) end)\nend\n",
    );
    let build = |name: &str, ram_dir: &std::path::Path| {
        let mut c = provium(dir.path());
        c.args(["fixture", "build", name])
            .env("PROVIUM_RAM_DIR", ram_dir);
        c
    };

    // Killed while its guest runs: no destructor and no handler, so its RAM stays behind.
    let mut slow = build("slow", shm.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let guest_ram_there = || {
        !qemus_naming(shm.path()).is_empty()
            && run_dirs_in(shm.path())
                .iter()
                .any(|d| d.join("ram").is_file())
    };
    while !guest_ram_there() {
        assert!(
            std::time::Instant::now() < deadline,
            "no QEMU with its RAM in {}",
            shm.path().display()
        );
        assert!(slow.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    slow.kill().unwrap();
    slow.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !qemus_naming(shm.path()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU outlived its killed build"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let orphans = run_dirs_in(shm.path());
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(orphans[0].join("ram").is_file(), "{:?}", orphans[0]);

    // The next build sweeps it and leaves nothing of its own.
    let out = build("quick", shm.path()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let left = run_dirs_in(shm.path());
    assert!(
        left.is_empty(),
        "left in {}: {left:?}",
        shm.path().display()
    );

    // Where the directory is no tmpfs, the build keeps its RAM in the cache from the start.
    let out = build("on-disk", dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(run_dirs_in(dir.path()).is_empty());

    // Both builds resume, and the copied RAM left its blocks of zeros out.
    let out = provium(dir.path())
        .args(["test", "t.lua"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let listed = provium(dir.path())
        .args(["fixture", "list"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", show(&listed));
    let ram = ram_of_build(&String::from_utf8_lossy(&listed.stdout), "quick");
    let (data, zero_blocks) = data_and_zero_blocks(&ram);
    assert!(
        data > 16 << 20,
        "{} holds {data} bytes of data",
        ram.display()
    );
    assert_eq!(zero_blocks, 0, "{} keeps blocks of zeros", ram.display());

    // Cleaning the project's fixtures by name leaves nothing of the project in the cache: no
    // build, no lock file, no store directory.
    let store = ram.parent().and_then(|b| b.parent()).unwrap().to_path_buf();
    let out = provium(dir.path())
        .args(["fixture", "clean", "slow", "quick", "on-disk"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(!store.exists(), "{} is left", store.display());
}

/// The RAM file of the current build of `fixture`, from `provium fixture list`'s lines (name,
/// kind, state, directory).
fn ram_of_build(listed: &str, fixture: &str) -> std::path::PathBuf {
    let line = listed
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() == 4 && w[0] == fixture && w[2] == "built")
        .unwrap_or_else(|| panic!("no current build of {fixture}:\n{listed}"));
    std::path::Path::new(line[3]).join("ram")
}

/// Bytes in the data extents of `path`, and how many of their 4 KiB blocks are all zeros.
fn data_and_zero_blocks(path: &std::path::Path) -> (u64, usize) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let (mut at, mut data, mut zeros) = (0i64, 0u64, 0usize);
    let mut block = vec![0u8; 4096];
    while at < len {
        // SAFETY: lseek on an open descriptor.
        let start = unsafe { libc::lseek(f.as_raw_fd(), at, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_HOLE) };
        let mut b = start;
        while b < end {
            f.read_exact_at(&mut block, b as u64).unwrap();
            zeros += block.iter().all(|&x| x == 0) as usize;
            b += 4096;
        }
        data += (end - start) as u64;
        at = end;
    }
    (data, zeros)
}
