//! The JUnit report as dashboards show it: a run with every outcome kind (pass, failure, error,
//! skip, todo, xfail, a kernel panic, a timeout, tests never reached, batched spec cases,
//! output with tabs and escape sequences) is read by junitparser and rendered by junit2html,
//! and what they show is checked.

mod common;

use common::{provium_in as provium, show, write_file as write};
use std::process::Command;

const OUTCOMES: &str = r#"
local vm = provium.create()
vm:boot()
test("passes", function() print("col1\tcol2 \27[1mbold\27[0m") end)
test("fails", function() assert_eq(1, 2) end)
test("errors", function() error("boom") end)
test("skips", function() skip("not here") end)
test("todos", function() todo("write it") end)
test("xfails", function() xfail("known bug", function() assert_eq(1, 2) end) end)
test("crashes the kernel", function() vm:write_file("/proc/sysrq-trigger", "c") end)
test("after the crash", function() vm:syscall(provium.nr.getpid) end)
"#;

const SPEC: &str = r#"
suite: my suite
cases:
  - name: "close({{ fd }}) is EBADF"
    table:
      - { fd: -1 }
      - { fd: 9999 }
      - { fd: 1000 }
      - { fd: 4000 }
    syscall: close
    args: ["{{ fd }}"]
    expect: EBADF
"#;

const TIMEOUT: &str = r#"
provium.timeout(8)
local vm = provium.create()
vm:boot()
test("blocks", function() vm:call{nr = provium.nr.pause, timeout = 600} end)
test("never reached", function() end)
"#;

#[test]
fn a_report_with_every_outcome_reads_right_in_real_consumers() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a_outcomes.lua", OUTCOMES);
    write(dir.path(), "specs/b_spec.yaml", SPEC);
    write(dir.path(), "c_timeout.lua", TIMEOUT);
    let junit = dir.path().join("report.xml");
    let out = provium(dir.path())
        .args(["test", "-j", "2", "--junit"])
        .arg(&junit)
        .args(["a_outcomes.lua", "specs/b_spec.yaml", "c_timeout.lua"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let check = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/junit_outcomes.py"
        ))
        .arg(&junit)
        .output()
        .expect("python3 (scripts/setup installs junitparser)");
    assert!(
        check.status.success(),
        "junitparser:\n{}{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&junit).unwrap()
    );

    // junit2html renders it; the page shows each outcome with its message.
    let html = dir.path().join("report.html");
    let render = Command::new("junit2html")
        .arg(&junit)
        .arg(&html)
        .output()
        .expect("junit2html (scripts/setup installs it)");
    assert!(
        render.status.success(),
        "junit2html failed:\n{}",
        String::from_utf8_lossy(&render.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    for shown in [
        "my suite",
        "a_outcomes_lua",
        "kernel panic: ",
        "--- kernel panic: guest console ---",
        "todo: write it",
        "xfail: known bug",
        "not run: ",
        "--- timed out: guest console ---",
        "col1\tcol2",
    ] {
        assert!(page.contains(shown), "junit2html does not show {shown:?}");
    }
}
