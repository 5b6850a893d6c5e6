//! The i386 compat ABI as a run dimension: `--abi x86_64 --abi i386` runs every spec under
//! both (`int $0x80` in the guest, i386's syscall numbers), each column named by kernel and
//! ABI; a kernel built without CONFIG_IA32_EMULATION (the kacs tinyconfig tree `scripts/setup`
//! builds) skips the i386 half with why, and still runs the x86_64 one.

use crate::common::{kacs_tree, provium_in as provium, root, show};

#[test]
fn a_spec_runs_under_both_abis_in_one_run() {
    let out = provium(&root())
        .args([
            "test",
            "specs/close.yaml",
            "--abi",
            "x86_64",
            "--abi",
            "i386",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut columns = std::collections::BTreeMap::<String, usize>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if event["type"] == "test" {
            assert_eq!(event["status"], "passed", "{event}");
            let kernel = event["kernel"].as_str().unwrap_or_default().to_string();
            *columns.entry(kernel).or_default() += 1;
        }
    }
    let labels: Vec<&String> = columns.keys().collect();
    assert_eq!(labels.len(), 2, "{columns:?}");
    assert!(
        labels[1].ends_with(" i386") && !labels[0].ends_with(" i386"),
        "{columns:?}"
    );
    assert_eq!(columns[labels[0]], columns[labels[1]], "{columns:?}");
    // An unknown ABI is refused before anything boots.
    let out = provium(&root())
        .args(["test", "specs/close.yaml", "--abi", "x32"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected x86_64, i386 or aarch64"));
}

#[test]
fn a_kernel_without_ia32_emulation_skips_the_i386_half() {
    let tree = kacs_tree();
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    assert!(config.contains("# CONFIG_IA32_EMULATION is not set"));
    let out = provium(&root())
        .args([
            "test",
            "specs/close.yaml",
            "--abi",
            "x86_64",
            "--abi",
            "i386",
            "--kernel",
        ])
        .arg(&tree)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("16 passed, 16 skipped"), "{}", show(&out));
    assert!(
        stdout.contains("needs the i386 ABI, which this kernel lacks"),
        "{}",
        show(&out)
    );
}

/// The manual's example: passes under both ABIs, the x86_64-only name skipped under i386.
#[test]
fn the_manual_example_runs_under_both_abis() {
    let out = provium(&root())
        .args([
            "test",
            "examples/specs/abi.yaml",
            "--abi",
            "x86_64",
            "--abi",
            "i386",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("7 tests run: 7 passed, 1 skipped"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("`newfstatat` is not in the i386 syscall table"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("differ between 2 kernels and ABIs"),
        "{}",
        show(&out)
    );

    // The HTML matrix has a column per kernel × ABI, as a browser renders it.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("abi.html");
    let out = provium(&root())
        .args([
            "test",
            "examples/specs/abi.yaml",
            "--abi",
            "x86_64",
            "--abi",
            "i386",
        ])
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let dom = crate::common::rendered_dom(&html);
    assert!(dom.contains(r#"<b id="differing">1</b>"#), "{dom}");
    assert!(
        dom.contains(r#" i386<span class="counts">3 passed · 0 failed · 1 skipped"#),
        "{dom}"
    );
}

/// Provium's own specs (specs/ and specs/ltp) under both ABIs: nothing fails or errors; what
/// i386 cannot do as written (old_mmap, a number) skips with its reason; a
/// 64-bit offset is split in two registers (pread64 with -1 is EINVAL there too).
#[test]
fn the_bundled_specs_pass_or_skip_with_why_under_i386() {
    let out = provium(&root())
        .args([
            "test", "specs/", "-j", "2", "--abi", "x86_64", "--abi", "i386",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    let summary = stdout
        .lines()
        .find(|l| l.contains("Summary"))
        .unwrap_or_default();
    assert!(
        !summary.contains("failed") && !summary.contains("errored"),
        "{summary}"
    );
    for why in [
        "`mmap` under i386 is old_mmap",
        "is not in the i386 syscall table",
    ] {
        assert!(stdout.contains(why), "no skip says {why:?}:\n{stdout}");
    }
    let passed = |name: &str| {
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("PASS") && l.contains(name))
    };
    assert!(
        passed("i386]::pread with a negative offset is EINVAL"),
        "{stdout}"
    );
    // The i386 half really ran: fstat64's struct stat64 (st_size at 44) passed there.
    assert!(
        passed("i386]::fstat64 reports the size in i386's struct stat64"),
        "{stdout}"
    );
}

/// A profile written for i386 (`abi = "i386"`) makes its specs' calls under i386 without
/// `--abi`; a bad value is refused, naming the profile.
#[test]
fn a_profile_can_be_written_for_i386() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("provium.toml"),
        "[profile.compat]\nabi = \"i386\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("stat64.yaml"),
        "profile: compat\ncases:\n  - name: stat64 of / succeeds\n    syscall: stat64\n    args: [{cstr: /}, {out: 96}]\n    expect: 0\n",
    )
    .unwrap();
    let out = provium(dir.path())
        .args(["test", "stat64.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 test run: 1 passed"),
        "{}",
        show(&out)
    );
    std::fs::write(
        dir.path().join("provium.toml"),
        "[profile.compat]\nabi = \"i686\"\n",
    )
    .unwrap();
    let out = provium(dir.path())
        .args(["test", "stat64.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("profile `compat`: bad abi `i686`"),
        "{}",
        show(&out)
    );
}

/// `gen --abi i386` writes i386's whole suite (its table, the headers read with -m32), every
/// spec marked `abi: i386`, and `check` accepts every one (the docs' block records and re-runs
/// a part of it on a VM).
#[test]
fn gen_for_i386_covers_its_table_and_every_spec_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = provium(dir.path())
        .args(["gen", "--abi", "i386", "--out", "gen32"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stat64 = std::fs::read_to_string(dir.path().join("gen32/stat64.yaml")).unwrap();
    assert!(stat64.contains("\nabi: i386\n"), "{stat64}");
    assert!(dir.path().join("gen32/fstatat64.yaml").is_file());
    assert!(!dir.path().join("gen32/newfstatat.yaml").exists());
    let specs = std::fs::read_dir(dir.path().join("gen32")).unwrap().count();
    assert!(specs > 300, "{specs} specs");
    let out = provium(dir.path())
        .args(["check", "gen32"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" 0 problems"),
        "{}",
        show(&out)
    );
}
