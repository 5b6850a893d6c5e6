//! Reports as the tools that read them see them. A run with every outcome kind (pass, failure,
//! error, skip, todo, xfail, a kernel panic, a timeout, tests never reached, batched spec cases,
//! output with tabs and escape sequences) is read by junitparser and rendered by junit2html
//! (JUnit), validated against the events schema by check-jsonschema (`--format json`, the same
//! run) and parsed by the kernel's own KTAP parser (`--format ktap`).

use crate::common::{provium_in as provium, show, write_file as write};
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
provium.timeout(4)
local vm = provium.create()
vm:boot()
test("blocks", function() vm:call{nr = provium.nr.pause, timeout = 600} end)
test("never reached", function() end)
"#;

const FILES: [&str; 3] = ["a_outcomes.lua", "specs/b_spec.yaml", "c_timeout.lua"];

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), FILES[0], OUTCOMES);
    write(dir.path(), FILES[1], SPEC);
    write(dir.path(), FILES[2], TIMEOUT);
    // The timeout file allows itself 4 s: its VM must not have to be built within them.
    crate::common::warm_fixture(dir.path());
    dir
}

#[test]
fn a_junit_report_and_json_events_with_every_outcome_read_right_in_real_consumers() {
    // One run writes both (the timeout file waits out 4 s: one wait, not two).
    let dir = project();
    let junit = dir.path().join("report.xml");
    let out = crate::common::own_gate(&mut provium(dir.path()), dir.path())
        .args(["test", "-j", "2", "--format", "json", "--junit"])
        .arg(&junit)
        .args(FILES)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    json_events_validate_against_their_schema(dir.path(), &out.stdout);
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
        "Kernel panic - not syncing: sysrq triggered crash (",
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

/// Where scripts/setup put the kernel's KTAP parser (tools/testing/kunit of linux-source-6.1).
fn kunit_dir() -> std::path::PathBuf {
    let tools = std::env::var_os("PROVIUM_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(&std::env::var_os("HOME").unwrap()).join(".cache")
                });
            cache.join("provium-tools")
        });
    let dir = tools.join("kunit");
    assert!(
        dir.join("kunit_parser.py").is_file(),
        "the kernel's KTAP parser is not in {}: run scripts/setup (step kunit)",
        dir.display()
    );
    dir
}

#[test]
fn ktap_output_passes_the_kernels_own_parser() {
    let dir = project();
    let out = provium(dir.path())
        .args(["test", "-j", "2", "--format", "ktap"])
        .args(FILES)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let ktap = dir.path().join("report.ktap");
    std::fs::write(&ktap, &out.stdout).unwrap();
    let parsed = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ktap_check.py"
        ))
        .arg(kunit_dir())
        .arg(&ktap)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&parsed.stdout);
    let json = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| {
        panic!(
            "kunit_parser: {e}\n{stdout}\n{}",
            String::from_utf8_lossy(&parsed.stderr)
        )
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(v["errors"], 0, "the parser found errors in:\n{text}\n{v:#}");
    assert_eq!(v["status"], "FAILURE", "{v:#}");
    let o = &v["files"]["a_outcomes.lua"];
    assert_eq!(o["status"], "FAILURE", "{v:#}");
    for (name, status) in [
        ("passes", "SUCCESS"),
        ("fails", "FAILURE"),
        ("errors", "FAILURE"),
        ("skips", "SKIPPED"),
        ("todos", "SKIPPED"),
        ("xfails", "SUCCESS"),
        ("crashes the kernel", "FAILURE"),
        ("after the crash", "FAILURE"),
    ] {
        assert_eq!(o["tests"][name], status, "{name}\n{text}\n{v:#}");
    }
    let spec = &v["files"]["specs/b_spec.yaml"];
    assert_eq!(spec["status"], "SUCCESS", "{v:#}");
    assert_eq!(spec["tests"].as_object().map(|t| t.len()), Some(4), "{v:#}");
    assert_eq!(
        v["files"]["c_timeout.lua"]["tests"]["blocks"], "FAILURE",
        "{v:#}"
    );
    for line in [
        "  not ok 7 crashes the kernel # ERROR Kernel panic - not syncing: sysrq triggered crash",
        "  # --- kernel panic: guest console ---",
        "  ok 5 todos # SKIP todo: write it",
        "  ok 6 xfails # XFAIL known bug",
        "  not ok 1 blocks # TIMEOUT ",
        "  not ok 8 after the crash # ERROR not run: ",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// The events of a run of the project (`stdout`), and of its `--list`, are what the schema says
/// and what happened.
fn json_events_validate_against_their_schema(dir: &std::path::Path, stdout: &[u8]) {
    let listed = provium(dir)
        .args(["test", "--list", "--format", "json"])
        .args(FILES)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(stdout).to_string() + &String::from_utf8_lossy(&listed.stdout);
    let mut instances = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let path = dir.join(format!("event-{i:03}.json"));
        std::fs::write(&path, line).unwrap();
        instances.push(path);
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run-started"), "{text}");
    assert_eq!(kinds.iter().filter(|k| **k == "test").count(), 14, "{text}");
    assert_eq!(kinds.last(), Some(&"list"), "{text}");
    let finished = lines.iter().find(|l| l["type"] == "run-finished").unwrap();
    assert_eq!(finished["counts"]["not_run"], 2, "{finished}");
    assert_eq!(finished["success"], false);
    let crash = lines
        .iter()
        .find(|l| l["name"] == "crashes the kernel")
        .unwrap();
    assert_eq!(crash["console"]["event"], "kernel_panic", "{crash}");
    // The kernel's own line leads the message, before what Provium saw.
    assert!(
        crash["message"]
            .as_str()
            .unwrap()
            .starts_with("Kernel panic - not syncing: sysrq triggered crash ("),
        "{crash}"
    );
    // Each VM record says where its boot (or resume) time went.
    let vms: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "file-finished")
        .flat_map(|l| l["vms"].as_array().into_iter().flatten())
        .collect();
    assert!(!vms.is_empty(), "{text}");
    for vm in vms {
        let phases: Vec<&str> = vm["phases"]
            .as_array()
            .unwrap_or_else(|| panic!("no phases in {vm}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            phases.contains(&"kernel to init") || phases.contains(&"QMP: incoming migration"),
            "{vm}"
        );
    }
    let schema = crate::common::root().join("schemas/events.schema.json");
    let check = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(&instances)
        .output()
        .expect("check-jsonschema (scripts/setup installs it)");
    assert!(
        check.status.success(),
        "events do not match schemas/events.schema.json:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
