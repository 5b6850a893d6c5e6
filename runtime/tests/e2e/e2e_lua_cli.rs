//! `provium test` on Lua files against the real kernel: the issue's example passes, a failing
//! assertion names both values at its line, a syntax error does not stop the other files, and
//! the JUnit report validates with junitparser.

use std::process::Command;

use crate::common::{provium, write_file as write};

const EXAMPLE: &str = include_str!("../../../examples/syscalls.lua");

#[test]
fn a_run_with_a_pass_a_failure_and_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a_example.lua", EXAMPLE);
    write(
        dir.path(),
        "b_failing.lua",
        "local vm = provium.create()\nvm:boot()\n\ntest(\"close(-1)\", function()\n  local ret = vm:syscall(3, -1)\n  assert_eq(-22, ret, \"close(-1)\")\nend)\n\ntest(\"still runs\", function() assert(true) end)\n",
    );
    write(
        dir.path(),
        "c_broken.lua",
        "test('x', function()\n  local = 1\nend)\n",
    );
    let junit = dir.path().join("report.xml");
    let out = provium()
        .current_dir(dir.path())
        .args(["test", ".", "--junit"])
        .arg(&junit)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "PASS",
        "a_example.lua::pipe round trip",
        "FAIL",
        "b_failing.lua::close(-1)",
        "close(-1): expected -22 (EINVAL), got -9 (EBADF)",
        "at b_failing.lua:6",
        "b_failing.lua::still runs",
        "ERROR",
        "c_broken.lua",
        "syntax error",
        "at c_broken.lua:2",
        "7 tests run: 5 passed, 1 failed, 1 errored",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let expected = serde_json::json!({
        "a_example.lua": {"tests": 4, "failures": 0, "errors": 0, "skipped": 0, "vm": ["kernel.release", "arch", "accelerator", "transport", "profile"],
            "cases": {"getpid is positive": "passed", "pipe round trip": "passed"}},
        "b_failing.lua": {"tests": 2, "failures": 1, "errors": 0, "skipped": 0,
            "cases": {"close(-1)": "failure", "still runs": "passed"}},
        "c_broken.lua": {"tests": 1, "failures": 0, "errors": 1, "skipped": 0, "cases": {"(file)": "error"}},
    });
    let check = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/validate_junit.py"
        ))
        .arg(&junit)
        .arg(expected.to_string())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "junitparser rejected the report:\n{}{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&junit).unwrap()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"line="6""#) || xml.contains("b_failing.lua:6"),
        "{xml}"
    );
}

/// Every example but the custom kernel's, which needs that kernel (e2e_custom_kernel runs it).
fn examples_without_their_own_kernel() -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    std::fs::read_dir(format!("{root}/examples"))
        .unwrap()
        .flatten()
        .map(|e| format!("examples/{}", e.file_name().to_string_lossy()))
        .filter(|p| p != "examples/custom-syscall")
        .collect()
}

#[test]
fn the_examples_pass() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let examples = examples_without_their_own_kernel();
    let out = provium()
        .current_dir(root)
        .args(["test", "-j", "2"])
        .args(&examples)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("examples/workers.lua::uid 1000 gets EACCES"),
        "{stdout}"
    );
}

#[test]
fn list_and_filter_do_not_boot() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // Every VM gets a run directory here: listing must leave it empty.
    let runtime = tempfile::tempdir().unwrap();
    let out = provium()
        .current_dir(root)
        .env("PROVIUM_RUNTIME_DIR", runtime.path())
        .args(["test", "--list", "--filter", "pipe round"])
        .args(examples_without_their_own_kernel())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.trim(), "examples/syscalls.lua::pipe round trip");
    let started: Vec<_> = std::fs::read_dir(runtime.path()).unwrap().collect();
    assert!(started.is_empty(), "listing must not boot VMs: {started:?}");
}

#[test]
fn usage_errors_exit_2() {
    let out = provium().args(["test", "/no/such/dir"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or directory"));
    let out = provium().args(["test", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_lines_for_tools() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t.lua",
        "test('a', function() end)\ntest('b', function() skip('later') end)\n",
    );
    let out = provium()
        .current_dir(dir.path())
        .args(["test", "t.lua", "--format", "json"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "run-started",
            "test",
            "test",
            "file-finished",
            "run-finished"
        ]
    );
    assert_eq!(lines[0]["format"], 1);
    assert!(lines[0]["environment"]["provium"]
        .as_str()
        .is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))));
    assert_eq!(lines[1]["status"], "passed");
    assert_eq!(lines[2]["status"], "skipped");
    assert_eq!(lines[4]["success"], true);
    // The list, as one object.
    let out = provium()
        .current_dir(dir.path())
        .args(["test", "t.lua", "--list", "--format", "json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(list["type"], "list");
    assert_eq!(list["files"][0]["tests"][1]["name"], "b");
}

#[test]
fn doctor_reports_what_this_host_has() {
    let out = provium()
        .args(["doctor"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for item in [
        "qemu",
        "kernel",
        "accelerator",
        "gcc",
        "busybox",
        "agent",
        "fixtures",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(item)),
            "no `ok {item}` line in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("Provium can boot VMs on this host."),
        "{stdout}"
    );
    // A profile that does not exist is a usage error, with a suggestion.
    let out = provium()
        .args(["doctor", "--profile", "minmal"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `minimal`?"), "{stderr}");
}

/// Completions and the manual page come from the command line definition: bash offers every
/// subcommand, the installed kernels for `--kernel` (and paths), the project's profiles for
/// `--profile`; the page renders with groff without a warning.
#[test]
fn completions_and_manual_cover_every_subcommand() {
    let subcommands = [
        "init",
        "test",
        "check",
        "fixture",
        "junit",
        "compile",
        "gen",
        "record",
        "headers",
        "doctor",
        "bench",
        "completions",
        "man",
    ];
    // What bash offers at a TAB, through the registration script `completions bash` prints:
    // the script runs provium itself, so values come from the machine and the project.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    write(&home, "kernels/6.3.7-test/boot/vmlinuz-6.3.7-test", "");
    write(&home, "kernels/default", "6.3.7-test\n");
    write(
        dir.path(),
        "proj/provium.toml",
        "[profile.next]\nmemory = \"1G\"\n",
    );
    write(dir.path(), "proj/linux-tree/Makefile", "");
    let tab = |line: &str| -> Vec<String> {
        let script = format!(
            r#"source <({bin} completions bash) || exit 9
read -ra COMP_WORDS <<< "$LINE"
[[ $LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE=$LINE; COMP_POINT=${{#LINE}}; COMP_TYPE=9
_clap_complete_provium provium "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            bin = env!("CARGO_BIN_EXE_provium")
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path().join("proj"))
            .env("PROVIUM_HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("LINE", line)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let top = tab("provium ");
    for s in subcommands {
        assert!(top.iter().any(|c| c == s), "{s} not offered: {top:?}");
    }
    assert_eq!(tab("provium test --kernel "), ["6.3", "6.3.7-test"]);
    assert_eq!(tab("provium test --kernel 6.3."), ["6.3.7-test"]);
    assert_eq!(tab("provium doctor --kernel lin"), ["linux-tree/"]);
    assert!(tab("provium shell --profile ").contains(&"next".to_string()));
    assert!(tab("provium test --fo").contains(&"--format".to_string()));
    for shell in ["zsh", "fish"] {
        let out = provium().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }

    let man = provium().args(["man"]).output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout).to_string();
    assert!(page.contains(".TH provium 1"), "{page}");
    assert!(
        page.contains(".SH \"EXIT STATUS\"") && page.contains(".SH ENVIRONMENT"),
        "{page}"
    );
    assert!(
        !page.contains("provium-help"),
        "a page that is never written: {page}"
    );
    for s in subcommands {
        assert!(page.contains(s), "man: {s}");
    }
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(page.as_bytes())?;
            c.wait_with_output()
        })
        .expect("groff (Debian's man-db depends on it)");
    assert!(rendered.status.success());
    assert!(
        rendered.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("Tests Linux kernels"));
    // One page per subcommand.
    let pages = provium()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(pages.status.success());
    assert!(dir.path().join("provium-test.1").is_file());
}

/// `--color` decides for every command, `check` included; without it, CLICOLOR_FORCE and
/// NO_COLOR are honoured.
#[test]
fn color_is_one_choice_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.yaml",
        "cases:\n  - name: x\n    syscall: clsoe\n",
    );
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provium"));
        c.current_dir(dir.path())
            .args(["check", "bad.yaml"])
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let all = [out.stdout, out.stderr].concat();
        all.contains(&0x1b)
    };
    assert!(!check(&[], &[]), "not a terminal: no colour");
    assert!(check(&["--color", "always"], &[]));
    assert!(check(&[], &[("CLICOLOR_FORCE", "1")]));
    assert!(!check(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]));
    write(dir.path(), "ok.lua", "test('passes', function() end)\n");
    let test = Command::new(env!("CARGO_BIN_EXE_provium"))
        .current_dir(dir.path())
        .args(["test", "--color", "always", "ok.lua"])
        .output()
        .unwrap();
    assert!(
        [test.stdout, test.stderr].concat().contains(&0x1b),
        "test --color always"
    );
}

/// `--keep` keeps every VM's run directory, resumed ones too, says where, and later runs do
/// not sweep it away.
#[test]
fn keep_prints_the_directories_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "k.lua",
        "local vm = provium.create()\nvm:boot()\ntest('t', function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n",
    );
    let run = |keep: bool| {
        let mut c = provium();
        c.current_dir(dir.path())
            .env("PROVIUM_RUNTIME_DIR", runtime.path())
            .args(["test", "k.lua"]);
        if keep {
            c.arg("--keep");
        }
        c.output().unwrap()
    };
    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("KEPT "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no KEPT line in:\n{stdout}"))
        .to_string();
    let kept = std::path::Path::new(&kept);
    assert!(kept.starts_with(runtime.path()), "{}", kept.display());
    assert!(kept.join("console.log").is_file());
    let again = run(false);
    assert!(again.status.success());
    assert!(kept.join("console.log").is_file(), "swept by the next run");
    // A failure with --keep says how to get a shell in a VM like it.
    write(
        dir.path(),
        "k.lua",
        "local vm = provium.create()\nvm:boot()\ntest('t', function() assert_eq(1, 2) end)\n",
    );
    let failed = run(true);
    let stdout = String::from_utf8_lossy(&failed.stdout).to_string();
    assert!(
        stdout.contains("provium shell --profile minimal"),
        "{stdout}"
    );
}
