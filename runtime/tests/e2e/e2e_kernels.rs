//! One suite on two kernels in one run: the cached default (Debian's 6.1) and Debian's 6.12,
//! which scripts/setup installs beside it. The JUnit names are distinct per kernel, the terminal
//! ends with the table of differing tests, and the HTML report, rendered in headless chromium,
//! shows the differing row first.

use crate::common::{provium_in as provium, show, write_file as write};
use std::process::Command;

/// 451 became cachestat in 6.5: ENOSYS on 6.1, a real answer on 6.12.
const SPEC: &str = r#"
suite: kernels
cases:
  - name: close(-1) is EBADF
    syscall: close
    args: [-1]
    expect: EBADF
  - name: syscall 451 exists
    syscall: 451
    args: [-1, 0, 0, 0]
    expect: { ret: { ne: -38 } }
"#;

#[test]
fn one_suite_on_two_kernels_shows_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "specs/k.yaml", SPEC);
    let listed = provium(dir.path()).args(["kernels"]).output().unwrap();
    let kernels = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        kernels.contains("6.1.") && kernels.contains("6.12."),
        "scripts/setup installs both kernels:\n{kernels}"
    );
    let out = provium(dir.path())
        .args([
            "test",
            "specs",
            "--kernel",
            "6.1",
            "--kernel",
            "6.12",
            "-j",
            "2",
            "--junit",
            "report.xml",
            "--html",
            "report.html",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // 6.1 has no syscall 451: one failure, on 6.1 only.
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout.contains("4 tests run: 3 passed, 1 failed"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("Differences 1 of 2 tests differ between 2 kernels"),
        "{stdout}"
    );
    let table_row = stdout
        .lines()
        .find(|l| l.contains("specs/k.yaml::syscall 451 exists"))
        .unwrap_or_else(|| panic!("no row for 451:\n{stdout}"));
    assert!(table_row.contains("FAIL ENOSYS"), "{table_row}");

    // JUnit: the same test on two kernels is two names, each suite says its kernel.
    let xml = std::fs::read_to_string(dir.path().join("report.xml")).unwrap();
    let names: Vec<&str> = xml
        .split("<testcase name=\"")
        .skip(1)
        .filter_map(|c| c.split('"').next())
        .collect();
    assert_eq!(names.len(), 4, "{xml}");
    let unique: std::collections::BTreeSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), 4, "names are distinct per kernel: {names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("syscall 451 exists [6.12.")),
        "{names:?}"
    );
    assert!(
        xml.contains(r#"<property name="kernel" value="6.1."#),
        "{xml}"
    );

    // The HTML report as a browser renders it: the differing row first, highlighted, and the
    // page's script ran (it fills in how many rows are shown).
    let html = dir.path().join("report.html");
    let dom = crate::common::rendered_dom(&html);
    assert!(dom.contains(r#"<b id="differing">1</b>"#), "{dom}");
    assert!(
        dom.contains(r#"<span id="shown">2</span>"#),
        "the script did not run:\n{dom}"
    );
    let first_row = dom
        .split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tr>").next())
        .unwrap_or_default();
    assert!(
        first_row.contains(r#"class="differs bad""#) && first_row.contains("syscall 451 exists"),
        "{first_row}"
    );
    // Each kernel's column says its own counts.
    assert!(
        dom.contains("1 passed · 1 failed · 0 skipped · 0 not run")
            && dom.contains("2 passed · 0 failed · 0 skipped · 0 not run"),
        "{dom}"
    );
    assert!(first_row.contains("FAIL ENOSYS"), "{first_row}");
    // The failure names the call: 451 is cachestat (a syscall newer than the headers' table).
    assert!(dom.contains("cachestat (451): expected"), "{dom}");
    assert!(stdout.contains("cachestat (451): expected"), "{stdout}");
    // Each cell links to its details, which exist.
    let link = first_row
        .split("href=\"#")
        .nth(1)
        .and_then(|l| l.split('"').next())
        .unwrap();
    assert!(dom.contains(&format!("id=\"{link}\"")), "{link}");
    // And it renders to pixels.
    let png = dir.path().join("report.png");
    let shot = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1000,700",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(shot.status.success());
    assert!(std::fs::metadata(&png)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
}

/// On one kernel the page is a plain report: nothing about differences between kernels, the
/// failures first, a failed Lua test's cell says why, and a signal is named.
#[test]
fn the_html_report_on_one_kernel_puts_failures_first() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "cases:\n  - {name: passes, syscall: close, args: [-1], expect: EBADF}\n  - {name: dies of SIGILL, syscall: kill, args: [0, SIGILL], expect: ok}\n",
    );
    write(
        dir.path(),
        "b.lua",
        "test(\"asserts\", function() assert_eq(1, 2) end)\n",
    );
    let out = provium(dir.path())
        .args(["test", "a.yaml", "b.lua", "--html", "r.html"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let dom = crate::common::rendered_dom(&dir.path().join("r.html"));
    assert!(!dom.contains("differ between the kernels"), "{dom}");
    assert!(dom.contains(r#"<b id="bad">2</b> of 3 tests"#), "{dom}");
    let body = dom.split("<tbody>").nth(1).unwrap_or_default();
    let rows: Vec<&str> = body.split("</tr>").collect();
    assert!(
        rows[0].contains("dies of SIGILL") && rows[0].contains("died: SIGILL"),
        "{body}"
    );
    assert!(
        rows[1].contains("asserts") && rows[1].contains("expected 1, got 2"),
        "{body}"
    );
    assert!(rows[2].contains("passes"), "{body}");
}

/// A test during which the kernel becomes tainted fails with the taint letters (root can OR a
/// taint bit into /proc/sys/kernel/tainted); `taint = "flag"` keeps it passing with a note.
#[test]
fn a_test_that_taints_the_kernel_fails_or_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let file = |profile: &str| {
        format!(
            "local vm = provium.create('{profile}')\nvm:boot()\n\
             test('before', function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n\
             test('taints the kernel', function() vm:write_file('/proc/sys/kernel/tainted', '64') end)\n\
             test('after', function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n"
        )
    };
    write(
        dir.path(),
        "provium.toml",
        "[profile.lenient]\ntaint = \"flag\"\n",
    );
    write(dir.path(), "strict.lua", &file("minimal"));
    write(dir.path(), "lenient.lua", &file("lenient"));
    let out = provium(dir.path())
        .args(["test", "strict.lua", "--junit", "r.xml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout.contains("FAIL [") && stdout.contains("strict.lua::taints the kernel"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the kernel became tainted during this test: U (taint requested by userspace)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 tests run: 2 passed, 1 failed"),
        "only that test: {stdout}"
    );
    let out = provium(dir.path())
        .args(["test", "lenient.lua", "-v"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("provium: the kernel became tainted during this test: U"),
        "{stdout}"
    );
}

/// `requires: {config: …}` reads each kernel's own config; `requires: {path: …}` looks in the
/// guest. Unmet conditions skip with the reason.
#[test]
fn config_and_path_conditions_are_read_per_kernel() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        r#"
cases:
  - name: needs KSM
    requires: { config: CONFIG_KSM }
    syscall: getpid
    expect: ok
  - name: needs lkdtm
    requires: { config: [CONFIG_KSM, CONFIG_LKDTM] }
    syscall: getpid
    expect: ok
  - name: needs no KASAN
    requires: { config: "!CONFIG_KASAN" }
    syscall: getpid
    expect: ok
  - name: needs ksm in sysfs
    requires: { path: /sys/kernel/mm/ksm }
    syscall: getpid
    expect: ok
  - name: needs a missing path
    requires: { path: [/proc, /no/such/path] }
    syscall: getpid
    expect: ok
"#,
    );
    write(
        dir.path(),
        "c.lua",
        "local vm = provium.create()\nvm:boot()\n\
         test('lua sees the config', function()\n\
           assert_eq(nil, provium.requires(vm, {config = 'CONFIG_KSM=y'}))\n\
           assert_contains(provium.requires(vm, {config = {'CONFIG_LKDTM'}}), 'needs CONFIG_LKDTM')\n\
         end)\n",
    );
    let out = provium(dir.path())
        .args(["test", "--kernel", "6.1", "--kernel", "6.12"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("8 tests run: 8 passed, 4 skipped"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("(needs CONFIG_LKDTM in the kernel's config)")
            .count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("(needs /no/such/path in the guest)").count(),
        2,
        "{stdout}"
    );
    // A bad condition is a spec error, found without booting.
    write(
        dir.path(),
        "bad.yaml",
        "cases:\n  - name: x\n    requires: { config: \"CONFIG X\" }\n    syscall: getpid\n",
    );
    let checked = provium(dir.path())
        .args(["check", "bad.yaml"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("bad config condition"),
        "{}",
        show(&checked)
    );
}

/// A build tree that lacks what Provium needs is refused before anything boots, naming the
/// options.
#[test]
fn a_build_tree_without_the_needed_options_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("linux");
    write(&tree, "Makefile", "");
    write(&tree, "arch/x86/boot/bzImage", "not a kernel");
    write(
        &tree,
        ".config",
        "CONFIG_BLK_DEV_INITRD=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_PROC_FS=y\n# CONFIG_DEVTMPFS is not set\n",
    );
    write(dir.path(), "t.lua", "test('t', function() end)\n");
    // Every VM gets a run directory here: a refusal "at once" leaves it empty.
    let runtime = tempfile::tempdir().unwrap();
    let out = provium(dir.path())
        .env("PROVIUM_RUNTIME_DIR", runtime.path())
        .args(["test", "t.lua", "--kernel"])
        .arg(&tree)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr.contains("CONFIG_VIRTIO_CONSOLE or CONFIG_VIRTIO_VSOCKETS")
            && stderr.contains("CONFIG_DEVTMPFS")
            && stderr.contains("docs/profiles.md"),
        "{stderr}"
    );
    let started: Vec<_> = std::fs::read_dir(runtime.path()).unwrap().collect();
    assert!(started.is_empty(), "no VM was started: {started:?}");
}
