//! The spec language end to end: Provium's own suite passes with a JUnit case per case and row,
//! a wrong expectation fails at its YAML line, typos are caught without booting, and compiled
//! Lua can be taken over by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

fn provium() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provium"));
    c.env("NO_COLOR", "1");
    c
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Writes `text` as `file` in `dir` and runs `provium COMMAND file` there: its exit code and
/// what it printed (stdout, then stderr).
fn run_spec(dir: &Path, file: &str, text: &str, command: &str) -> (Option<i32>, String) {
    std::fs::write(dir.join(file), text).unwrap();
    let out = provium()
        .current_dir(dir)
        .args([command, file])
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), printed)
}

/// The cases of every spec under `dir`, subdirectories included (`specs/ltp/`).
fn cases_in(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += cases_in(&path);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let src = std::fs::read_to_string(&path).unwrap();
            let display = path.strip_prefix(root()).unwrap().display().to_string();
            // The runtime's options: specs may read kernel headers (`headers:`).
            n += provium_compiler::compile(&src, &provium::run::specs::options(&path, &display))
                .unwrap_or_else(|d| panic!("{}", d[0]))
                .model
                .cases
                .len();
        }
    }
    n
}

#[test]
fn the_bundled_specs_pass_with_one_junit_case_per_case() {
    let run = crate::common::bundled_specs_at_j2();
    let out = &run.output;
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("out.xml");
    std::fs::write(&junit, &run.junit).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = cases_in(&root().join("specs"));
    assert!(expected >= 150, "the suite has {expected} cases");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(
        xml.matches("<testcase ").count(),
        expected,
        "one JUnit case per case and row"
    );
    let script = r#"
import sys
from junitparser import JUnitXml
r = JUnitXml.fromfile(sys.argv[1])
names = set()
for s in r:
    for c in s:
        assert (s.name, c.name) not in names, c.name
        names.add((s.name, c.name))
        assert c._elem.get("file", "").endswith(".yaml"), c._elem.get("file")
        assert int(c._elem.get("line")) > 0
print(r.tests, r.failures, r.errors)
"#;
    let check = Command::new("python3")
        .args(["-c", script])
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        format!("{expected} 0 0")
    );
}

#[test]
fn a_wrong_expectation_fails_at_its_yaml_line_naming_both_errnos() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "suite: wrong\ncases:\n  - name: close(-1) is EINVAL\n    syscall: close\n    args: [-1]\n    expect: EINVAL\n  - name: fine\n    syscall: close\n    args: [-1]\n    expect: EBADF\n",
    )
    .unwrap();
    let junit = dir.path().join("w.xml");
    let out = provium()
        .current_dir(dir.path())
        .args(["test", "wrong.yaml", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("expected -22 (EINVAL), got -9 (EBADF)"),
        "{stdout}"
    );
    assert!(stdout.contains("at wrong.yaml:6"), "{stdout}");
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"file="wrong.yaml" line="3""#), "{xml}");
    assert!(
        xml.contains("expected -22 (EINVAL), got -9 (EBADF) (wrong.yaml:6)"),
        "{xml}"
    );
}

#[test]
fn typos_are_rejected_without_booting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (
            "errno.yaml",
            "cases:\n  - name: x\n    syscall: close\n    args: [-1]\n    expect: EINVLA\n",
            "errno.yaml:5:13: unknown errno `EINVLA`",
            "did you mean `EINVAL`?",
        ),
        (
            "syscall.yaml",
            "cases:\n  - name: x\n    syscall: clsoe\n    args: [-1]\n    expect: EBADF\n",
            "syscall.yaml:3:14: unknown syscall `clsoe`",
            "did you mean `close`?",
        ),
        (
            "key.yaml",
            "cases:\n  - name: x\n    syscall: close\n    args: [-1]\n    expcet: EBADF\n",
            "key.yaml:5:5: unknown field `expcet`",
            "did you mean `expect`?",
        ),
    ];
    for (name, text, headline, hint) in bad {
        std::fs::write(dir.path().join(name), text).unwrap();
        // Every VM gets a run directory here: checking must leave it empty.
        let runtime = tempfile::tempdir().unwrap();
        let out = provium()
            .current_dir(dir.path())
            .env("PROVIUM_RUNTIME_DIR", runtime.path())
            .args(["check", name])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(headline), "{name}: {stderr}");
        assert!(stderr.contains(hint), "{name}: {stderr}");
        let started: Vec<_> = std::fs::read_dir(runtime.path()).unwrap().collect();
        assert!(started.is_empty(), "check must not boot: {started:?}");
        // `provium test` reports the same problem as a file error, and boots nothing for it.
        let out = provium()
            .current_dir(dir.path())
            .args(["test", name])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout.contains(hint), "{stdout}");
    }
}

#[test]
fn compiled_lua_can_be_taken_over_by_hand() {
    let out = provium()
        .current_dir(root())
        .args(["compile", "specs/close.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lua = String::from_utf8(out.stdout).unwrap();
    assert!(lua.contains("-- specs/close.yaml:"), "markers");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("close_by_hand.lua"), &lua).unwrap();
    let run = provium()
        .current_dir(dir.path())
        .args(["test", "close_by_hand.lua"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.contains("close_by_hand.lua::close(-1) is EBADF"),
        "{stdout}"
    );
}

/// The newer expectations can fail too: a signal that was not raised, an answer outside
/// `one_of`, a promised `lua:` save that was not set, a repetition that never hits its errno;
/// each at its YAML line.
#[test]
fn raises_one_of_and_lua_saves_fail_when_they_do_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "suite: wrong\ncases:\n  - name: nothing raised\n    syscall: getpid\n    expect: { ok: true, raises: SIGPIPE }\n  - name: outside one_of\n    syscall: close\n    args: [-1]\n    expect: { one_of: [0, EINTR] }\n  - name: promise broken\n    steps:\n      - lua: 'local x = 1'\n        save: pid\n      - { syscall: kill, args: [$pid, 0], expect: ok }\n  - name: too few repetitions\n    as: { uid: 0, rlimits: { RLIMIT_NOFILE: 64 } }\n    syscall: dup\n    args: [0]\n    repeat: { until: EMFILE, at_most: 10 }\n    expect: EMFILE\n  - name: raised\n    steps:\n      - { syscall: getpid, save: me }\n      - { syscall: kill, args: [$me, SIGUSR2], expect: { ret: 0, raises: [SIGUSR2] } }\n",
    )
    .unwrap();
    let out = provium()
        .current_dir(dir.path())
        .args(["test", "wrong.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for wanted in [
        "expected the call to raise SIGPIPE, but it was not pending after the call",
        "at wrong.yaml:5",
        "none of the 2 alternatives held",
        "at wrong.yaml:9",
        "promises `save: pid` but did not set saved.pid",
        "at wrong.yaml:12",
        "the call did not fail with EMFILE within 10 calls (the last answered ",
        "at wrong.yaml:20",
        "1 passed, 3 failed, 1 errored",
    ] {
        assert!(stdout.contains(wanted), "{wanted}:\n{stdout}");
    }
}

/// `finally:` runs whatever happened to its case: after a failed step (the next case sees no
/// leftover), and a failing clean-up step fails its own case, at its line; the body's failure
/// is the one reported when both fail.
#[test]
fn finally_cleans_up_after_a_failed_case_and_its_own_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: finally
cases:
  - name: fails then cleans up
    steps:
      - syscall: mkdirat
        args: [AT_FDCWD, {cstr: /tmp/provium-fin}, 0o700]
        expect: ok
      - syscall: close
        args: [-1]
        expect: ok
    finally:
      - syscall: unlinkat
        args: [AT_FDCWD, {cstr: /tmp/provium-fin}, AT_REMOVEDIR]
  - name: starts clean
    syscall: mkdirat
    args: [AT_FDCWD, {cstr: /tmp/provium-fin}, 0o700]
    expect: ok
  - name: passes but its clean-up fails
    syscall: getpid
    expect: ok
    finally:
      - syscall: unlinkat
        args: [AT_FDCWD, {cstr: /tmp/provium-not-there}, 0]
"#;
    let (code, stdout) = run_spec(dir.path(), "fin.yaml", spec, "test");
    assert_eq!(code, Some(1), "{stdout}");
    // The first case fails at its own step, not at its clean-up; the second finds no leftover.
    assert!(
        stdout.contains("fin.yaml::fails then cleans up")
            && stdout.contains("close (3): expected success"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS") && stdout.contains("fin.yaml::starts clean"),
        "{stdout}"
    );
    // The third passed its call; its clean-up's failure is its failure, at the step's line.
    assert!(
        stdout.contains("unlinkat (263): expected success (>= 0), got -2 (ENOENT)"),
        "{stdout}"
    );
    assert!(stdout.contains("at fin.yaml:22"), "{stdout}");
    assert!(stdout.contains("1 passed, 2 failed"), "{stdout}");
}

/// `as: {drop_caps: [...]}` keeps every capability but the dropped ones: root without
/// CAP_SYS_ADMIN cannot set the hostname, root without another one still can.
#[test]
fn dropped_capabilities_are_gone_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: caps
cases:
  - name: without CAP_SYS_ADMIN
    as: {uid: 0, drop_caps: [CAP_SYS_ADMIN, CAP_SETPCAP]}
    syscall: sethostname
    args: [{str: provium}, 7]
    expect: EPERM
  - name: without CAP_NET_ADMIN
    as: {uid: 0, drop_caps: [NET_ADMIN]}
    syscall: sethostname
    args: [{str: provium}, 7]
    expect: ok
"#;
    let (code, stdout) = run_spec(dir.path(), "caps.yaml", spec, "test");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("2 passed"), "{stdout}");
    let (code, text) = run_spec(
        dir.path(),
        "both.yaml",
        "cases:\n  - name: x\n    as: {uid: 0, caps: [CAP_KILL], drop_caps: [CAP_SYS_ADMIN]}\n    syscall: getpid\n    expect: ok\n",
        "check",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("use one"), "{text}");
}

/// `skip_if:` on a call skips its case when the answer meets it (LTP's TCONF), naming the call
/// and the answer; an answer that does not meet it goes on to `expect`.
#[test]
fn skip_if_skips_on_the_answer_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: skip_if
cases:
  - name: a setup step the kernel cannot do
    steps:
      - syscall: close
        args: [-1]
        skip_if: [EBADF, EOPNOTSUPP]
      - syscall: getpid
        expect: {ret: {lt: 0}}
  - name: an answer that does not meet it
    syscall: close
    args: [-1]
    skip_if: ENOTTY
    expect: EBADF
"#;
    let (code, stdout) = run_spec(dir.path(), "s.yaml", spec, "test");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("close answered EBADF (skip_if)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 skipped"), "{stdout}");
}

/// `$repeat` counts a repetition's calls from 0, so each call can differ (msgget with keys
/// `key + n`): dup2 onto the last three descriptor numbers succeeds, the next number is past
/// the table. Identical calls would never fail. Outside `repeat:` it is an error.
#[test]
fn a_repetition_counts_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: counter
cases:
  - name: dup2 onto each number up to the end of the table
    syscall: dup2
    args: [0, "$fd_table_size - 3 + $repeat"]
    repeat: {until: EBADF, at_most: 10}
    expect: EBADF
"#;
    let (code, stdout) = run_spec(dir.path(), "c.yaml", spec, "test");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    let (code, text) = run_spec(
        dir.path(),
        "bad.yaml",
        "cases:\n  - name: x\n    syscall: close\n    args: [\"$repeat\"]\n    expect: EBADF\n",
        "check",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("goes in a case with `repeat:`"), "{text}");
}

/// An `exec:` step saves integers from its output by pattern (LTP's tst_ncpus_max() reads
/// /sys/devices/system/cpu/possible): the value is usable as `$name` and in `lua:`; a pattern
/// that finds nothing errors, showing the output.
#[test]
fn an_exec_step_saves_from_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: from_output
cases:
  - name: the possible CPUs
    steps:
      - exec: cat /sys/devices/system/cpu/possible
        save: {last_cpu: "(%d+)%s*$"}
      - lua: assert_eq(0, saved.last_cpu)
      - syscall: close
        args: ["$last_cpu - 1"]
        expect: EBADF
  - name: nothing to find
    steps:
      - exec: echo none
        save: {n: "(%d+)"}
"#;
    let (code, stdout) = run_spec(dir.path(), "o.yaml", spec, "test");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("PASS") && stdout.contains("o.yaml::the possible CPUs"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"`echo none`: save n: pattern (%d+) found no integer in "none\n""#),
        "{stdout}"
    );
}

/// `store:` at an address nothing maps fails its own case with EFAULT, and the executor (and
/// the next case) goes on; a `store:` missing a key is refused at check time.
#[test]
fn a_store_at_a_bad_address_costs_only_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"suite: stores
cases:
  - name: bad address
    steps:
      - store: {at: 16, type: u64, value: 1}
  - name: the next case runs
    syscall: getpid
    expect: {ret: {gt: 0}}
"#;
    let (code, text) = run_spec(dir.path(), "stores.yaml", spec, "test");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("EFAULT"), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let (code, text) = run_spec(
        dir.path(),
        "half.yaml",
        "cases:\n  - name: x\n    steps:\n      - store: {at: 16, typ: u32}\n",
        "check",
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("did you mean `type`"), "{text}");
    assert!(text.contains("needs `value`"), "{text}");
}
