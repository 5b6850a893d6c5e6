//! A run does what it says, once: `--kernel` plans without running anything and starts the
//! QEMUs a plain run starts; a test body runs once per kernel; a fixture script's column runs on
//! its own kernel; `--filter` boots only files with a selected test; planning has a time limit
//! and a file whose tests depend on VM answers still runs; a wait at the machine-wide gate is
//! never charged to a file's time limit.

use crate::common::{
    lines_in, provium_in as provium, qemu_counter, show, warm_fixture, write_file as write,
};
use std::path::Path;

/// A test whose body appends a line to a host file each time it runs.
fn marking(marker: &Path) -> String {
    format!(
        r#"
local vm = provium.create()
vm:boot()
test("marks", function()
  local f = assert(io.open("{}", "a"))
  f:write("ran\n")
  f:close()
  assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
end)
"#,
        marker.display()
    )
}

#[test]
fn kernel_starts_the_qemus_a_plain_run_starts_and_runs_each_test_once() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    write(dir.path(), "t/mark.lua", &marking(&marker));
    write(
        dir.path(),
        "t/close.yaml",
        "cases:\n  - {name: close, syscall: close, args: [-1], expect: EBADF}\n",
    );
    let (qemu, starts) = qemu_counter(dir.path());
    // A cache of its own: another test's `provium fixture clean` in the shared one could remove
    // a build between two runs, and a rebuild would count as a start.
    let home = crate::common::fresh_home();
    let run = |extra: &[&str]| {
        let _ = std::fs::remove_file(&starts);
        let _ = std::fs::remove_file(&marker);
        let out = provium(dir.path())
            .args(["test", "t", "-j", "1"])
            .args(extra)
            .env("PROVIUM_HOME", home.path())
            .env("PROVIUM_QEMU", &qemu)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        (lines_in(&starts), lines_in(&marker))
    };
    let default = provium::machine::kernels::default_target()
        .unwrap()
        .image
        .display()
        .to_string();
    // Warm: fixtures are built by the first run of each kind.
    run(&[]);
    run(&["--kernel", &default]);
    let plain = run(&[]);
    let on_default = run(&["--kernel", &default]);
    assert_eq!(plain.1, 1, "the body runs once");
    assert_eq!(
        on_default, plain,
        "--kernel <default> starts the QEMUs a plain run starts, and runs the body once"
    );
    let two = run(&["--kernel", "6.1", "--kernel", "6.12"]);
    assert_eq!(two.1, 2, "once per kernel");

    // Listing boots nothing and runs no body, on any number of kernels.
    let _ = std::fs::remove_file(&starts);
    let _ = std::fs::remove_file(&marker);
    let out = provium(dir.path())
        .args(["test", "t", "--list", "--kernel", "6.1", "--kernel", "6.12"])
        .env("PROVIUM_HOME", home.path())
        .env("PROVIUM_QEMU", &qemu)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert_eq!(lines_in(&starts), 0, "--list starts no QEMU");
    assert_eq!(lines_in(&marker), 0, "--list runs no test body");
}

#[test]
fn a_fixture_script_runs_each_kernels_column_on_that_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = crate::common::FixtureCleanup(dir.path());
    write(
        dir.path(),
        "fixtures/prepared.lua",
        "local vm = provium.create(\"minimal\")\nvm:boot()\nvm:write_file(\"/tmp/ready\", \"yes\")\nreturn vm\n",
    );
    write(
        dir.path(),
        "uname.lua",
        r#"
local vm = provium.fixture("prepared")
test("uname", function()
  assert_eq("yes", vm:read_file("/tmp/ready"))
  print(vm:exec("uname -r").stdout:trim())
end)
"#,
    );
    // Twice: the second run resumes what the first built, and must still pick per kernel.
    for _ in 0..2 {
        let out = provium(dir.path())
            .args([
                "test",
                "uname.lua",
                "--kernel",
                "6.1",
                "--kernel",
                "6.12",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let mut columns = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            if e["type"] == "test" {
                let kernel = e["kernel"].as_str().unwrap();
                let uname = e["output"].as_str().unwrap().trim();
                assert_eq!(kernel, uname, "the {kernel} column ran on {uname}");
                columns += 1;
            }
        }
        assert_eq!(columns, 2, "{}", show(&out));
    }
}

#[test]
fn filter_boots_only_the_files_with_a_selected_test() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        write(
            dir.path(),
            &format!("t/{name}.yaml"),
            &format!(
                "cases:\n  - {{name: {name} close, syscall: close, args: [-1], expect: EBADF}}\n"
            ),
        );
    }
    let (qemu, starts) = qemu_counter(dir.path());
    // Its own cache, as above: starts are counted.
    let home = crate::common::fresh_home();
    let run = |args: &[&str]| {
        let _ = std::fs::remove_file(&starts);
        let out = provium(dir.path())
            .args(["test", "-j", "1", "--junit", "r.xml"])
            .args(args)
            .env("PROVIUM_HOME", home.path())
            .env("PROVIUM_QEMU", &qemu)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
        (lines_in(&starts), xml.matches("<testsuite ").count())
    };
    run(&["t/b.yaml"]);
    let one_file = run(&["t/b.yaml"]);
    let filtered = run(&["t", "--filter", "b close"]);
    assert_eq!(one_file.1, 1);
    assert_eq!(
        filtered, one_file,
        "a filter selecting one file's test boots and reports that file only"
    );
}

#[test]
fn planning_has_a_time_limit_and_files_whose_tests_depend_on_the_vm_still_run() {
    let dir = tempfile::tempdir().unwrap();
    // Planning answers every call with 0: the loop never ends there, and no test is defined.
    write(
        dir.path(),
        "dynamic.lua",
        r#"
local vm = provium.create()
vm:boot()
repeat until vm:syscall(provium.nr.getpid) > 0
for i = 1, vm:syscall(provium.nr.getpid) do
  test("defined from an answer " .. i, function()
    assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
  end)
end
"#,
    );
    // `--plan-timeout 1` rather than the default 10 s, which a test need not wait out.
    let started = std::time::Instant::now();
    let out = provium(dir.path())
        .args(["test", "dynamic.lua", "--list", "--plan-timeout", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Under the default limit (10 s) it would not have stopped yet.
    assert!(
        started.elapsed() < provium::lua::PLAN_TIME_LIMIT,
        "planning stopped at --plan-timeout"
    );

    assert!(
        String::from_utf8_lossy(&out.stderr).contains("depend on what its VMs answer"),
        "{}",
        show(&out)
    );
    // The agent is PID 1: one test, defined from the answer, runs and passes.
    let out = provium(dir.path())
        .args([
            "test",
            "dynamic.lua",
            "--filter",
            "answer",
            "--plan-timeout",
            "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("PASS") && stdout.contains("dynamic.lua::defined from an answer 1"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_wait_at_the_gate_is_not_charged_to_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    write(
        dir.path(),
        "t.lua",
        r#"
provium.timeout(3)
local vm = provium.create()
vm:boot()
test("close(-1)", function() assert_errno(vm:syscall(provium.nr.close, -1), "EBADF") end)
"#,
    );
    // Warm the fixture outside the gate under test.
    warm_fixture(dir.path());
    // Another "run" holds every CPU of the machine for 6 s (its ticket, flocked by a child).
    let ticket = gate.join("1-0");
    std::fs::write(&ticket, "100000 4096\n").unwrap();
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9<'{}'; flock 9; exec sleep 6",
            ticket.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = provium(dir.path())
        .args(["test", "t.lua", "--format", "json"])
        .env("PROVIUM_GATE_DIR", &gate)
        .output()
        .unwrap();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let finished: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["type"] == "file-finished")
        .unwrap();
    let queued = finished["queued"].as_f64().unwrap();
    assert!(queued > 3.0, "the wait is reported: {finished}");
    let test: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["type"] == "test")
        .unwrap();
    assert!(test["duration"].as_f64().unwrap() < 3.0, "{test}");

    // The terminal says so as the wait starts, without a TTY. (The gate swept the ticket of
    // the holder that ended.)
    std::fs::write(&ticket, "100000 4096\n").unwrap();
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9<'{}'; flock 9; exec sleep 2",
            ticket.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = provium(dir.path())
        .args(["test", "t.lua"])
        .env("PROVIUM_GATE_DIR", &gate)
        .output()
        .unwrap();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("WAITING t.lua waiting for room"),
        "{}",
        show(&out)
    );
}

/// The default (6.1) kernel copied with its config into `dir`, without its modules.
fn modular_kernel_without_modules(dir: &Path) -> std::path::PathBuf {
    let target = provium::machine::kernels::resolve("6.1").unwrap();
    let release = provium::machine::kernel::release_of(&target.image).unwrap();
    let image = dir.join(format!("vmlinuz-{release}"));
    std::fs::copy(&target.image, &image).unwrap();
    std::fs::copy(
        target.config.expect("the package's config"),
        dir.join(format!("config-{release}")),
    )
    .unwrap();
    image
}

#[test]
fn a_kernel_that_cannot_run_the_agent_is_refused_before_anything_boots() {
    let dir = tempfile::tempdir().unwrap();
    let image = modular_kernel_without_modules(dir.path());
    write(
        dir.path(),
        "close.yaml",
        "cases:\n  - {name: close, syscall: close, args: [-1], expect: EBADF}\n  - {name: dup, syscall: dup, args: [-1], expect: EBADF}\n",
    );
    let (qemu, starts) = qemu_counter(dir.path());
    // Debian's 6.1 builds virtio_console as a module: named, with what to do, at once.
    let started = std::time::Instant::now();
    let out = provium(dir.path())
        .args(["test", "close.yaml"])
        .env("PROVIUM_KERNEL", &image)
        .env("PROVIUM_QEMU", &qemu)
        .output()
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout.contains("virtio_console") && stdout.contains("PROVIUM_MODULES"),
        "{}",
        show(&out)
    );
    assert_eq!(lines_in(&starts), 0, "no QEMU started");
    // doctor runs the same checks.
    let out = provium(dir.path())
        .args(["doctor", "--kernel"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("missing boot plan"),
        "{}",
        show(&out)
    );

    // A damaged image beside a good kernel: its column reports every planned test as not run,
    // with why, and only that column.
    let mut bytes = std::fs::read(&image).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b ^= 0x5a;
    }
    let garbled = dir.path().join("garbled");
    std::fs::write(&garbled, bytes).unwrap();
    let out = provium(dir.path())
        .args(["test", "close.yaml", "--kernel", "6.1", "--kernel"])
        .arg(&garbled)
        .args(["--format", "json"])
        .env("PROVIUM_QEMU", &qemu)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let mut by_status = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["type"] == "test" {
            *by_status
                .entry(e["status"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        if e["type"] == "file-finished" && e["kernel"].as_str().unwrap().contains("garbled") {
            let why = e["file_error"]["message"].as_str().unwrap();
            assert!(why.contains("damaged"), "{why}");
        }
    }
    assert_eq!(by_status.get("passed"), Some(&2), "{by_status:?}");
    assert_eq!(by_status.get("not_run"), Some(&2), "{by_status:?}");
}

/// Fault drills on isolated cases: each one costs only the case that did it.
const ISOLATED_DRILLS: &str = r#"
local vm = provium.create()
vm:boot()
local nr = provium.nr
local three = provium.pack("u64 u64", 3, 3)

test("the machinery's descriptors are not the case's", function()
  local calls = {}
  for fd = 3, 8 do calls[#calls + 1] = {nr = nr.fcntl, args = {fd, 1}} end
  local r = vm:isolated{{calls = calls}}
  for i = 1, #calls do assert_errno(r[1][i], "EBADF", "descriptor " .. (i + 2)) end
end)

test("garbage on descriptors 3..20 costs its batch mates nothing", function()
  local calls = {}
  for fd = 3, 20 do calls[#calls + 1] = {nr = nr.write, args = {fd, 0, 8}, bufs = {[1] = "garbage!"}} end
  local r = vm:isolated{{nr = nr.getpid}, {calls = calls}, {nr = nr.getpid}}
  assert(r[1][1].ret > 0 and r[3][1].ret > 0)
end)

-- Pids are allocated in sequence in a quiet guest: the next batch's zygote is the last case's
-- pid + 1. The drill checks it before trusting it.
local function next_zygote() return vm:isolated{{nr = nr.getppid}}[1][1].ret + 2 end

test("a case that kills its zygote costs only itself", function()
  local z = next_zygote()
  local r = vm:isolated{{nr = nr.getppid}, {calls = {{nr = nr.kill, args = {z, 9}}, {nr = nr.getpid}}}, {nr = nr.getpid}}
  if r[1][1].ret ~= z then skip("pids were not allocated in sequence") end
  assert(r[2][1].broken:find("killed by signal 9 during this case"), r[2][1].broken)
  assert(r[3][1].ret > 0, "the case after it ran")
end)

test("a case that stops its zygote costs only itself", function()
  local z = next_zygote()
  local r = vm:isolated{{nr = nr.getppid}, {calls = {{nr = nr.kill, args = {z, 19}}}, timeout = 1}, {nr = nr.getpid}}
  if r[1][1].ret ~= z then skip("pids were not allocated in sequence") end
  assert(r[2][1].broken:find("stopped answering"), r[2][1].broken)
  assert(r[3][1].ret > 0, "the case after it ran")
end)

test("PID 1's limits lowered from a case do not stop new workers", function()
  local r = vm:isolated{{calls = {{nr = nr.prlimit64, args = {1, 7, 0, 0}, bufs = {[2] = three}}}}}
  assert_eq(0, r[1][1].ret)
  assert_eq(1000, vm:spawn{uid = 1000, gid = 1000}:syscall(nr.getuid))
end)

test("a fork bomb in a case leaves nothing behind", function()
  local calls = {}
  for _ = 1, 11 do calls[#calls + 1] = {nr = nr.fork} end
  calls[#calls + 1] = {nr = nr.pause}
  vm:isolated{{calls = calls, timeout = 3}}
  assert(vm:exec("true").ok)
end)

test("a root case that kills every process costs only itself", function()
  local r = vm:isolated{{nr = nr.getpid}, {calls = {{nr = nr.kill, args = {-1, 9}}, {nr = nr.getpid}}}, {nr = nr.getpid}}
  assert(r[1][1].ret > 0 and r[3][1].ret > 0, "its batch mates ran")
  assert(r[2][1].died and r[2][1].signal == 9, "it took its executor with it")
  assert(vm:syscall(nr.getpid) > 0, "the VM goes on")
end)

test("a lowered limit in the shared executor does not fail isolated cases or commands", function()
  assert_eq(0, vm:syscall_buf(nr.setrlimit, 1, three, 7, 0))
  local r = vm:isolated{{nr = nr.getpid}, {nr = nr.getpid}}
  assert(r[1][1].ret > 0 and r[2][1].ret > 0)
  assert(vm:exec("true").ok)
end)
"#;

#[test]
fn an_isolated_case_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "drills.lua", ISOLATED_DRILLS);
    let out = provium(dir.path())
        .args(["test", "drills.lua"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("8 tests run: 8 passed"), "{}", show(&out));
}

#[test]
fn a_failed_test_has_one_location_in_json_and_says_where_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "f.lua",
        "test(\"fails\", function()\n  assert_eq(1, 2)\nend)\n",
    );
    let out = provium(dir.path())
        .args(["test", "f.lua", "--format", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("\"type\":\"test\""))
        .unwrap_or_else(|| panic!("{}", show(&out)));
    // serde_json keeps the last of two equal keys: count them in the text.
    assert_eq!(line.matches("\"location\"").count(), 1, "{line}");
    let e: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(e["location"]["line"], 1, "the test is defined on line 1");
    assert_eq!(e["failure_location"]["line"], 2, "it failed on line 2");
}

#[test]
fn an_uncompilable_spec_on_two_kernels_has_a_distinct_junit_case_per_kernel() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "cases:\n  - {name: c, syscall: clsoe, args: [-1], expect: EBADF}\n",
    );
    let out = provium(dir.path())
        .args([
            "test", "bad.yaml", "--kernel", "6.1", "--kernel", "6.12", "--junit", "r.xml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    let names: std::collections::BTreeSet<&str> = xml
        .split("<testcase name=\"")
        .skip(1)
        .filter_map(|c| c.split('"').next())
        .collect();
    assert_eq!(names.len(), 2, "GitLab keeps one of equal names: {xml}");
}

#[test]
fn outputs_never_replace_inputs_each_other_or_the_terminal_log() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "cases:\n  - {name: c, syscall: close, args: [-1], expect: EBADF}\n";
    write(dir.path(), "c.yaml", spec);
    let refused = |args: &[&str], says: &str| {
        let out = provium(dir.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            show(&out)
        );
    };
    refused(
        &["test", "c.yaml", "--junit", "c.yaml"],
        "one of the test files",
    );
    refused(
        &["test", "c.yaml", "--html", "./c.yaml"],
        "one of the test files",
    );
    refused(
        &["test", "c.yaml", "--junit", "r.xml", "--html", "r.xml"],
        "both name r.xml",
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("c.yaml")).unwrap(),
        spec
    );
    // `--junit /dev/stdout > log`: the report would replace the log.
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let out = provium(dir.path())
        .args(["test", "c.yaml", "--junit", "/dev/stdout"])
        .stdout(log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // A FIFO whose reader comes late gets the whole report.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let child = provium(dir.path())
        .args(["test", "c.yaml", "--junit", "fifo"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let xml = std::fs::read_to_string(&fifo).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(xml.contains("<testsuites") && xml.ends_with(">\n"), "{xml}");
}

#[test]
fn shell_says_when_a_commands_output_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = provium(dir.path())
        .args(["shell", "-c", "head -c 17000000 /dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), provium::protocol::EXEC_OUTPUT_LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("output was cut"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Before killing the VMs of a file that timed out, Provium asks each for its tasks' states and
/// kernel stacks: the excerpt says where the test hangs, in the front executor and in a worker
/// (whose PID 1 is itself blocked waiting for it).
#[test]
fn a_file_that_times_out_shows_where_its_vm_hangs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a_front.lua",
        r#"
provium.timeout(4)
local vm = provium.create()
vm:boot()
test("pauses", function() vm:call{nr = provium.nr.pause, timeout = 600} end)
"#,
    );
    write(
        dir.path(),
        "b_worker.lua",
        r#"
provium.timeout(4)
local vm = provium.create()
vm:boot()
local w = vm:spawn{uid = 65534}
test("waits in a worker", function()
  w:call{nr = provium.nr.pause, timeout = 600}
end)
"#,
    );
    warm_fixture(dir.path());
    let junit = dir.path().join("out.xml");
    let out = crate::common::own_gate(&mut provium(dir.path()), dir.path())
        .args(["test", "-j", "1", "a_front.lua", "b_worker.lua", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let xml = std::fs::read_to_string(&junit).unwrap();
    for text in [&*stdout, &*xml] {
        assert!(
            text.contains("TIMED OUT") || text.contains("timed out"),
            "{text}"
        );
        // The front executor of one file and the worker of the other, each in pause(2).
        assert!(
            text.matches("waiting in __do_sys_pause").count() >= 2,
            "{text}"
        );
        for wanted in [
            "pid 1 (init, Provium",
            "sysrq: Show Blocked State",
            "end of the task dump",
        ] {
            assert!(text.contains(wanted), "{wanted} missing in:\n{text}");
        }
    }
}
