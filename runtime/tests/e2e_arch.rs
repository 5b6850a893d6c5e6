//! aarch64 guests from this x86_64 host: Debian's arm64 kernel on QEMU's `virt` board, the
//! aarch64 agent, arm64's syscall table and constants. `scripts/setup --arch arm64` (which
//! `.ci/run` and the README's test command run) installs what they need; a missing part fails
//! here with the command that installs it, as `provium doctor --arch aarch64` says.
//!
//! Emulated arm64 guests are slow under TCG: these tests are ignored by a plain `cargo test` and
//! run as their own step (`cargo test --workspace --test e2e_arch -- --ignored`, README, .ci/run).

mod common;

use common::{provium_in as provium, root, show, write_file as write};
use serde_json::Value;
use std::collections::BTreeMap;

/// `provium test ARGS --format json`: its events.
fn events(args: &[&str]) -> Vec<Value> {
    let out = provium(&root())
        .arg("test")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn doctor_finds_what_aarch64_guests_need() {
    let out = provium(&root())
        .args(["doctor", "--arch", "aarch64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "qemu-system-aarch64",
        "for aarch64",
        "kernels/aarch64/busybox",
        "cloud-arm64",
    ] {
        assert!(text.contains(part), "{part}:\n{text}");
    }
}

/// Provium's own specs and the LTP-derived ones on the arm64 kernel: what applies passes, what
/// arm64 lacks (`dup2`, `epoll_wait`, numbers given for x86_64) skips with that reason, and
/// nothing errors. The VM is arm64's: virt, an Image, resumed from its own fixture.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn specs_run_on_an_arm64_kernel() {
    let events = events(&["specs/", "--arch", "aarch64"]);
    let mut statuses = BTreeMap::<String, usize>::new();
    let mut reasons = Vec::new();
    for e in events.iter().filter(|e| e["type"] == "test") {
        assert!(
            e["kernel"]
                .as_str()
                .unwrap()
                .ends_with("-cloud-arm64 aarch64"),
            "{e}"
        );
        let status = e["status"].as_str().unwrap().to_string();
        if status == "skipped" {
            reasons.push(e["reason"].to_string());
        }
        *statuses.entry(status).or_default() += 1;
    }
    assert!(statuses["passed"] > 350, "{statuses:?}");
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        ["passed", "skipped"],
        "{statuses:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("aarch64 has no `dup2` syscall")),
        "{reasons:?}"
    );
    let vms: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "file-finished")
        .flat_map(|e| e["vms"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!vms.is_empty());
    for vm in &vms {
        assert_eq!(vm["arch"], "aarch64", "{vm}");
        assert_eq!(vm["machine"], "virt", "{vm}");
        assert_eq!(vm["loaded_as"], "image", "{vm}");
    }
    // The default path on arm64 too: VMs resume from the fixture, not boot.
    assert!(vms.iter().any(|vm| vm["fixture"] == "minimal"), "{vms:?}");
}

#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn shell_runs_a_command_in_an_arm64_guest() {
    let out = provium(&root())
        .args(["shell", "--arch", "aarch64", "-c", "uname -m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "aarch64");
}

/// In Lua, `provium.nr` is the guest's own table: arm64's close is 57 (x86_64's 3 is
/// io_cancel there), and a name arm64 never had skips the test instead of calling a wrong
/// number.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn lua_calls_arm64_numbers_through_provium_nr() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "arm.lua",
        r#"
local vm = provium.create("minimal")
vm:boot()
test("close is 57 and answers EBADF", function()
  assert_eq("aarch64", provium.arch)
  assert_eq(57, provium.nr.close)
  assert_eq(3, provium.nr_x86_64.close)
  assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
  assert_eq(provium.c.O_DIRECTORY, 16384)
  local ret, data = vm:syscall_buf(provium.nr.uname, 0, 390)
  assert_eq(0, ret)
  -- struct new_utsname: machine is the fifth 65-byte field
  assert_eq("aarch64", data:sub(4 * 65 + 1, 4 * 65 + 7))
end)
test("open is not an arm64 syscall", function()
  vm:syscall(provium.nr.open, 0, 0)
end)
"#,
    );
    let out = provium(dir.path())
        .args(["test", "arm.lua", "--arch", "aarch64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 passed, 1 skipped"), "{text}");
    assert!(text.contains("aarch64 has no `open` syscall"), "{text}");
}

/// Both architectures in one run over specs/: each spec once per architecture, columns named
/// by kernel and arch, the differences being what arm64 lacks; one HTML matrix of them, as a
/// browser renders it, and one terminal table.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn both_architectures_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("arch.html");
    let events = events(&[
        "specs/",
        "examples/specs/arch.yaml",
        "-j",
        "2",
        "--arch",
        "x86_64",
        "--arch",
        "aarch64",
        "--html",
        html.to_str().unwrap(),
    ]);
    let mut columns = BTreeMap::<String, BTreeMap<String, usize>>::new();
    for e in events.iter().filter(|e| e["type"] == "test") {
        *columns
            .entry(e["kernel"].as_str().unwrap().to_string())
            .or_default()
            .entry(e["status"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let labels: Vec<&String> = columns.keys().collect();
    assert_eq!(labels.len(), 2, "{columns:?}");
    assert!(
        labels.iter().any(|l| l.ends_with("-cloud-amd64")),
        "{columns:?}"
    );
    assert!(
        labels.iter().any(|l| l.ends_with("-cloud-arm64 aarch64")),
        "{columns:?}"
    );
    for (label, statuses) in &columns {
        assert!(
            statuses.keys().all(|s| s == "passed" || s == "skipped"),
            "{label}: {statuses:?}"
        );
    }
    // The documented example: every case passes on x86_64; on arm64 the one that needs dup2
    // skips, and the one naming epoll_pwait for arm64 passes.
    for e in events
        .iter()
        .filter(|e| e["type"] == "test" && e["file"] == "examples/specs/arch.yaml")
    {
        let arm = e["kernel"].as_str().unwrap().ends_with(" aarch64");
        let dup2 = e["name"].as_str().unwrap().contains("never had");
        let expected = if arm && dup2 { "skipped" } else { "passed" };
        assert_eq!(e["status"], expected, "{e}");
    }
    let dom = common::rendered_dom(&html);
    assert!(
        dom.contains(r#"-cloud-arm64 aarch64<span class="counts">"#)
            && dom.contains(r#"-cloud-amd64<span class="counts">"#),
        "{dom}"
    );
    assert!(!dom.contains(r#"<b id="differing">0</b>"#), "{dom}");
    // The terminal's table of what differs, a column per architecture.
    let out = provium(&root())
        .args([
            "test",
            "examples/specs/arch.yaml",
            "--arch",
            "x86_64",
            "--arch",
            "aarch64",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("Differences"))
        .collect();
    assert!(
        table
            .iter()
            .any(|l| l.contains("-cloud-amd64") && l.contains("-cloud-arm64 aarch64")),
        "{text}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.contains("never had") && l.contains("PASS 0") && l.contains("SKIP")),
        "{text}"
    );
}

/// A regression suite generated from arm64's table and headers, recorded on the arm64 kernel
/// and checked on it; on an x86_64 run the same specs skip, saying for which guests they are.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn a_generated_suite_for_arm64_records_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("gen");
    let run = |args: &[&str]| {
        let out = provium(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let suite_arg = suite.to_str().unwrap();
    run(&[
        "gen",
        "--arch",
        "aarch64",
        "--syscalls",
        "close,dup3,openat,fstat",
        "--out",
        suite_arg,
    ]);
    let close = std::fs::read_to_string(suite.join("close.yaml")).unwrap();
    assert!(close.contains("abi: aarch64"), "{close}");
    run(&["record", suite_arg, "--update", "--arch", "aarch64"]);
    let text = run(&["test", suite_arg, "--arch", "aarch64"]);
    let summary = text
        .lines()
        .find(|l| l.contains("Summary"))
        .unwrap_or_default();
    let (run_n, passed) = summary
        .split_once("] ")
        .and_then(|(_, r)| r.split_once(" tests run: "))
        .and_then(|(n, rest)| {
            Some((
                n.parse::<usize>().ok()?,
                rest.split(' ').next()?.parse::<usize>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(run_n > 10 && run_n == passed, "{summary}");
    let text = run(&["test", suite_arg]);
    assert!(text.contains("written for aarch64 guests"), "{text}");
}

/// `vm:abi` names only the guest's own ABIs: i386's on an arm64 guest skips the test that
/// asks for it, rather than sending i386's numbers to arm64's entry.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn an_abi_of_another_architecture_skips() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "abi.lua",
        r#"
local vm = provium.create("minimal")
vm:boot()
test("i386 on arm64", function()
  local i386 = vm:abi("i386")
  i386:syscall(provium.nr_i386.getpid)
end)
"#,
    );
    let out = provium(dir.path())
        .args(["test", "abi.lua", "--arch", "aarch64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("i386 is not an ABI of this aarch64 guest") && text.contains("1 skipped"),
        "{text}"
    );
}

/// Without the arm64 parts, an aarch64 run stops before anything boots and says what installs
/// them; an architecture Provium does not know is a usage error naming the ones it does.
#[test]
#[ignore = "arm64 guests: their own step, --test e2e_arch -- --ignored (README)"]
fn a_missing_or_unknown_architecture_is_said_at_once() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("kernels")).unwrap();
    let out = provium(&root())
        .env("PROVIUM_HOME", home.path())
        .args(["test", "specs/close.yaml", "--arch", "aarch64"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("scripts/setup --arch arm64"), "{text}");
    let out = provium(&root())
        .env("PROVIUM_HOME", home.path())
        .args(["doctor", "--arch", "aarch64"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no aarch64 kernel is installed"),
        "{}",
        show(&out)
    );
    let out = provium(&root())
        .args(["test", "specs/close.yaml", "--arch", "sparc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("supported: x86_64, aarch64"),
        "{}",
        show(&out)
    );
}
