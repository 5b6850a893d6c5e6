//! Parallel and sharded runs against the real kernel: `-j2` reports what `-j1` reports, shards
//! cover every file once and merge back into the whole, a file that hangs is killed at its
//! timeout while the others complete, and `--rerun-failed` runs only what failed.

use crate::common::{provium_in as provium, root, show};

use std::collections::BTreeSet;
use std::path::Path;

/// A JUnit report without what legitimately differs between runs: times, timestamps and the
/// boot (or resume) time property.
fn normalized(path: &Path) -> String {
    normalized_xml(&std::fs::read_to_string(path).unwrap())
}

fn normalized_xml(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    for attr in [" time=\"", " timestamp=\""] {
        out.clear();
        while let Some(at) = rest.find(attr) {
            out.push_str(&rest[..at]);
            let after = &rest[at + attr.len()..];
            let end = after.find('"').unwrap();
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        let owned = out.clone();
        rest = Box::leak(owned.into_boxed_str());
    }
    // Timings differ between runs; so does the time a file waited at the machine-wide gate
    // (`queued.ms`, present only when another provium on the machine held it).
    out.lines()
        .filter(|l| !l.contains("name=\"boot.ms\"") && !l.contains("name=\"queued.ms\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn two_jobs_report_what_one_job_reports_and_shards_merge_into_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], junit: &str| {
        let path = dir.path().join(junit);
        let out = provium(&root())
            .args(["test", "specs/", "--junit"])
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}\n{}", show(&out));
        path
    };
    // The whole suite at -j 2 (the run e2e_specs reads too), against its two halves each run
    // by one job: every file's report must be the same whichever way it ran.
    let shared = crate::common::bundled_specs_at_j2();
    assert!(shared.output.status.success(), "{}", show(&shared.output));
    let two = normalized_xml(&shared.junit);
    assert!(two.matches("<testcase ").count() >= 150);

    let a = run(&["-j", "1", "--partition", "count:1/2"], "a.xml");
    let b = run(&["-j", "1", "--partition", "count:2/2"], "b.xml");
    let merged = dir.path().join("merged.xml");
    let out = provium(dir.path())
        .args(["junit", "merge", "-o"])
        .arg(&merged)
        .args([&b, &a])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // `merge shard-*.xml` without -o would name a shard as the output: refused, shard intact.
    let before = std::fs::read(&a).unwrap();
    let clash = provium(dir.path())
        .args(["junit", "merge", "-o"])
        .args([&a, &a, &b])
        .output()
        .unwrap();
    assert_eq!(clash.status.code(), Some(2), "{}", show(&clash));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("is also an input"));
    assert_eq!(std::fs::read(&a).unwrap(), before);
    let no_output = provium(dir.path())
        .args(["junit", "merge"])
        .args([&a, &b])
        .output()
        .unwrap();
    assert_eq!(no_output.status.code(), Some(2), "{}", show(&no_output));
    assert_eq!(std::fs::read(&a).unwrap(), before);
    assert_eq!(
        normalized(&merged),
        two,
        "the shards, one job each, merge into the whole run at -j 2"
    );
}

fn listed_files(args: &[&str]) -> Vec<String> {
    let out = provium(&root())
        .args(["test", "specs/", "--list"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let files: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("::").next())
        .map(str::to_string)
        .collect();
    files.into_iter().collect()
}

#[test]
fn partitions_cover_every_file_exactly_once() {
    let all = listed_files(&[]);
    assert!(all.len() >= 10, "{all:?}");
    for kind in ["count", "hash"] {
        let mut seen = Vec::new();
        for k in 1..=3 {
            let shard = listed_files(&["--partition", &format!("{kind}:{k}/3")]);
            if kind == "count" {
                assert!(!shard.is_empty(), "count shards are never empty here");
            }
            seen.extend(shard);
        }
        seen.sort();
        assert_eq!(seen, all, "{kind}: every file in exactly one shard");
    }
    let out = provium(&root())
        .args(["test", "specs/", "--list", "--partition", "count:4/3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("count:K/N"));
}

#[test]
fn a_hanging_file_is_killed_at_its_timeout_while_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "a_hangs.lua",
        r#"
local vm = provium.create()
vm:boot()
test("first passes", function() assert_errno(vm:syscall(provium.nr.close, -1), "EBADF") end)
test("pause blocks", function()
  print("about to block")
  vm:call{nr = provium.nr.pause, timeout = 600}
end)
test("never reached", function() assert(true) end)
"#,
    );
    write(
        "b_spins.lua",
        r#"
provium.timeout(2)
test("spins in Lua", function() while true do end end)
test("after the spin", function() assert(true) end)
"#,
    );
    write(
        "c_passes.lua",
        r#"
local vm = provium.create()
vm:boot()
test("works", function() assert(vm:syscall(provium.nr.getpid) > 0) end)
"#,
    );
    let junit = dir.path().join("out.xml");
    let started = std::time::Instant::now();
    let out = crate::common::own_gate(&mut provium(dir.path()), dir.path())
        .args(["test", "-j", "2", "--timeout", "6", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    for line in [
        "PASS [",
        "a_hangs.lua::first passes",
        "a_hangs.lua::pause blocks",
        "the file timed out after 6 s; its VM was killed",
        "NOT RUN [   0.000s] a_hangs.lua::never reached (the file timed out after 6 s)",
        "b_spins.lua::spins in Lua",
        "the file timed out after 2 s",
        "NOT RUN [   0.000s] b_spins.lua::after the spin (the file timed out after 2 s)",
        "c_passes.lua::works",
        // One timeout is one error: the test that was running carries it.
        "4 tests run: 2 passed, 2 errored, 2 not run",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{}", show(&out));
    }
    // The agent's own limit for the pause was 600 s: only the file timeout can have ended it.
    assert!(
        took.as_secs() < 120,
        "the run took {took:?}\n{}",
        show(&out)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    // The console excerpt is on the test that was running when the file timed out.
    let pause = xml
        .split("<testcase ")
        .find(|c| c.starts_with("name=\"pause blocks\""))
        .unwrap_or_else(|| panic!("no pause testcase\n{xml}"));
    assert!(
        pause.contains("<error")
            && pause.contains("--- timed out: guest console ---")
            && pause.contains("<system-out>"),
        "the console excerpt is on the running test, headed by what happened\n{xml}"
    );
    assert!(
        xml.contains("<skipped message=\"not run: the file timed out after 6 s\""),
        "{xml}"
    );
    let passed = xml.contains("name=\"works\"")
        && !xml.contains("c_passes.lua\" tests=\"1\" failures=\"1\"");
    assert!(passed, "{xml}");
}

#[test]
fn rerun_failed_runs_only_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "t.lua",
        r#"
test("passes", function() assert(true) end)
test("fails", function() assert_eq(1, 2) end)
"#,
    );
    write("u.lua", "test('also passes', function() end)\n");
    let first = provium(dir.path()).args(["test"]).output().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", show(&first));
    let again = provium(dir.path())
        .args(["test", "--rerun-failed"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));
    assert!(
        stdout.contains("1 test run: 0 passed, 1 failed") || stdout.contains("1 tests run"),
        "{}",
        show(&again)
    );
    assert!(!stdout.contains("also passes"), "{}", show(&again));
    write(
        "t.lua",
        "test('passes', function() end)\ntest('fails', function() end)\n",
    );
    let fixed = provium(dir.path())
        .args(["test", "--rerun-failed"])
        .output()
        .unwrap();
    assert!(fixed.status.success(), "{}", show(&fixed));
    let clean = provium(dir.path())
        .args(["test", "--rerun-failed"])
        .output()
        .unwrap();
    assert!(clean.status.success());
    assert!(String::from_utf8_lossy(&clean.stderr).contains("nothing failed in the last run"));
}

#[test]
fn fail_fast_starts_no_file_after_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "a.lua",
        "local vm = provium.create()\nvm:boot()\ntest('fails', function() assert_errno(vm:syscall(provium.nr.close, -1), 'EINVAL') end)\n",
    );
    write("b.lua", "test('b', function() end)\n");
    write("c.lua", "test('c', function() end)\n");
    let out = provium(dir.path())
        .args(["test", "-j", "1", "--fail-fast"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout.contains("a.lua::fails"), "{}", show(&out));
    // The files after the failure never start; their tests are reported as not run.
    assert!(
        stdout
            .contains("NOT RUN [   0.000s] b.lua::b (--fail-fast stopped the run after a failure)"),
        "{}",
        show(&out)
    );
    assert!(!stdout.contains("PASS"), "{}", show(&out));
    assert!(
        stdout.contains("0 passed, 1 failed, 2 not run"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_stopped_test_cannot_hide_in_pcall_and_huge_timeouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "a_pcall.lua",
        r#"
provium.timeout(2)
test("loops in pcall", function()
  while true do pcall(function() while true do end end) end
end)
test("after the loop", function() end)
"#,
    );
    write(
        "b_huge.lua",
        r#"
test("before", function() end)
provium.timeout(1e308)
test("after", function() end)
"#,
    );
    let junit = dir.path().join("out.xml");
    let started = std::time::Instant::now();
    let out = provium(dir.path())
        .args(["test", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    assert!(started.elapsed().as_secs() < 20, "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "ERROR [",
        "a_pcall.lua::loops in pcall",
        "the file timed out after 2 s",
        "NOT RUN [   0.000s] a_pcall.lua::after the loop (the file timed out after 2 s)",
        "PASS [",
        "b_huge.lua::before",
        "provium.timeout: 1e308 s is more than the limit of 604800 s (a week)",
        "NOT RUN [   0.000s] b_huge.lua::after (the file stopped early",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{}", show(&out));
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    for name in ["loops in pcall", "after the loop", "before", "after"] {
        assert!(xml.contains(&format!("name=\"{name}\"")), "{name}\n{xml}");
    }
    for flag in ["1e300", "inf", "-1", "0"] {
        let bad = provium(dir.path())
            .args(["test", &format!("--timeout={flag}")])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{flag}\n{}", show(&bad));
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("--timeout"),
            "{}",
            show(&bad)
        );
    }
}

#[test]
fn the_tests_after_a_lost_vm_are_reported_as_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "crash.lua",
        r#"
local vm = provium.create()
vm:boot()
test("works", function() assert(vm:syscall(provium.nr.getpid) > 0) end)
test("crashes the kernel", function() vm:write_file("/proc/sysrq-trigger", "c") end)
test("needs the VM", function() vm:syscall(provium.nr.getpid) end)
test("needs it too", function() vm:syscall(provium.nr.getpid) end)
"#,
    );
    write(
        "garbage.lua",
        r#"
local vm = provium.create()
vm:boot()
-- A raw write of garbage onto the agent's link to the host: the stream cannot be trusted
-- any more, so the VM is given up, and the file's other tests are not run.
test("writes garbage to the link", function()
  vm:syscall_buf(provium.nr.write, 1, "garbage!", 4094, 0, 8)
end)
test("after the garbage", function() vm:syscall(provium.nr.getpid) end)
"#,
    );
    let junit = dir.path().join("out.xml");
    let out = provium(dir.path())
        .args(["test", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "PASS [",
        "crash.lua::works",
        "ERROR [",
        "crash.lua::crashes the kernel",
        "NOT RUN [   0.000s] crash.lua::needs the VM (vm:syscall: the VM was lost in an earlier call",
        "crash.lua::needs it too",
        "garbage.lua::writes garbage to the link",
        "NOT RUN [   0.000s] garbage.lua::after the garbage",
        "2 errored, 3 not run",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{}", show(&out));
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 6, "{xml}");
    // The panic's console is on the test that crashed the kernel, in the error and in the
    // test case's own output (which GitLab shows), headed by what happened.
    let crash = xml
        .split("<testcase ")
        .find(|c| c.starts_with("name=\"crashes the kernel\""))
        .unwrap_or_else(|| panic!("no crash testcase\n{xml}"));
    assert!(
        crash.contains("message=\"Kernel panic - not syncing: ")
            && crash.contains("<system-out>--- kernel panic: guest console ---")
            && crash.contains("sysrq"),
        "the console of the crash is on its test case\n{xml}"
    );
}

#[test]
fn reports_go_where_users_point_them_and_nothing_selected_runs_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.lua"), "test('passes', function() end)\n").unwrap();
    // An existing report keeps its mode; the record of the run gets the umask's.
    let kept = dir.path().join("kept.xml");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = provium(dir.path())
        .args(["test", "--junit"])
        .arg(&kept)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kept), 0o644);
    assert!(std::fs::read_to_string(&kept).unwrap().contains("passes"));
    assert_eq!(mode(&dir.path().join(".provium/last-run.json")), 0o644);

    // A FIFO is written through, not replaced by a file.
    let fifo = dir.path().join("report.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = provium(dir.path())
        .args(["test", "--junit"])
        .arg(&fifo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(reader.join().unwrap().contains("<testsuites"));
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(&fifo).unwrap().file_type()
    ));

    // A spec that does not compile is dated like any file, not 1970.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("x.yaml"),
        "cases:\n  - name: x\n    syscal: close\n",
    )
    .unwrap();
    let report = dir.path().join("bad.xml");
    let out = provium(bad.path())
        .args(["test", "--junit"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.contains("timestamp=\"20"), "{xml}");
    assert!(!xml.contains("1970-01-01"), "{xml}");

    // A filter that selects nothing, or a directory without tests: exit 4, no VM, no report.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in [
        &["test", "--filter", "no such test"][..],
        &["test", "empty"][..],
    ] {
        let report = dir.path().join("nothing.xml");
        let out = provium(dir.path())
            .args(args)
            .arg("--junit")
            .arg(&report)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{args:?}\n{}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no tests selected"));
        assert!(!report.exists(), "no empty report is written");
    }
}
