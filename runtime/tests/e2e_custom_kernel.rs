//! Your kernel, your syscalls: the founding example on a kernel built from Debian's
//! linux-source-6.1 with examples/custom-syscall/kacs.patch (`scripts/setup` builds it, cached by
//! content, through `examples/custom-syscall/build.sh`): the Lua snippets by number and the spec
//! by the tree's own names pass on it, the same spec on Debian's kernel in the same run skips
//! with why and the matrix shows the difference, `gen --kernel` generates cases for the new
//! syscalls; Provium's kernel fragment survives kconfig on the 6.1 and 6.12 sources; a tree that
//! lacks what Provium needs is refused at once, naming the option.
//!
//! Ignored by a plain `cargo test`: they run as their own step, after the kernel build
//! (`cargo test --workspace --test e2e_custom_kernel -- --ignored`, README, .ci/run).

mod common;

use common::{kacs_tree, provium_in as provium, root, show, write_file as write};
use std::path::PathBuf;

#[test]
#[ignore = "the custom kernel: its own step, --test e2e_custom_kernel -- --ignored (README)"]
fn the_founding_example_passes_on_its_kernel_and_skips_elsewhere() {
    let tree = kacs_tree();
    let example = root().join("examples/custom-syscall");
    let out = provium(&root())
        .arg("test")
        .arg("--kernel")
        .arg(&tree)
        .arg(&example)
        .env("PROVIUM_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("15 tests run: 15 passed"), "{}", show(&out));
    // The tree has no ACPI, so it cannot power off: its VMs reboot out of QEMU instead of
    // waiting to be stopped (an agent that powers off there makes this warning appear).
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("did not power off"),
        "{}",
        show(&out)
    );

    // The spec on Debian's kernel and the tree in one run: skipped there, with why; the
    // terminal table and the HTML matrix show the difference.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("kacs.html");
    let out = provium(&root())
        .args(["test", "--kernel", "6.1", "--kernel"])
        .arg(&tree)
        .arg(example.join("kacs.yaml"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("is not among 6.1.0-")
            && stdout.contains("Differences 10 of 10 tests differ between 2 kernels"),
        "{}",
        show(&out)
    );
    let dom = common::rendered_dom(&html);
    assert!(dom.contains(r#"<b id="differing">10</b>"#), "{dom}");

    // A spec that names only the tree's syscalls, without its header: skipped on Debian's
    // because the name is not in its syscall table.
    write(
        dir.path(),
        "names.yaml",
        "cases:\n  - {name: token, syscall: kacs_open_self_token, args: [0, 8], expect: {ret: {ge: 0}}}\n",
    );
    let out = provium(dir.path())
        .args(["test", "names.yaml", "--kernel", "6.1", "--kernel"])
        .arg(&tree)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("`kacs_open_self_token` is not in 6.1.0-") && stdout.contains("PASS ok"),
        "{}",
        show(&out)
    );
}

#[test]
#[ignore = "the custom kernel: its own step, --test e2e_custom_kernel -- --ignored (README)"]
fn gen_and_headers_read_the_trees_new_syscalls() {
    let tree = kacs_tree();
    let dir = tempfile::tempdir().unwrap();
    let out = provium(dir.path())
        .args(["headers", "signatures", "--kernel"])
        .arg(&tree)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kacs_set_sd(int dfd, const char __user * path"),
        "{}",
        show(&out)
    );
    let out = provium(dir.path())
        .args([
            "gen",
            "--out",
            "gen",
            "--syscalls",
            "kacs_open_self_token,kacs_set_sd",
            "--kernel",
        ])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = provium(dir.path())
        .args(["record", "gen", "--update", "--runs", "1", "--kernel"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = provium(dir.path())
        .args(["test", "gen", "--kernel"])
        .arg(&tree)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains("kacs_open_self_token with baseline arguments"),
        "{stdout}"
    );
}

/// The kconfig files of a Debian source package, as scripts/setup unpacks them.
fn kconfig_tree(version: &str) -> PathBuf {
    let tools = std::env::var_os("PROVIUM_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/provium-tools")
        });
    let t = tools.join(format!("kconfig/linux-source-{version}"));
    assert!(
        t.join("scripts/kconfig/merge_config.sh").is_file(),
        "{} is missing: run scripts/setup",
        t.display()
    );
    t
}

#[test]
#[ignore = "the custom kernel: its own step, --test e2e_custom_kernel -- --ignored (README)"]
fn the_fragment_survives_kconfig_on_6_1_and_6_12_and_a_tree_lacking_an_option_is_refused() {
    for version in ["6.1", "6.12"] {
        let source = kconfig_tree(version);
        let out_dir = tempfile::tempdir().unwrap();
        let out = provium(out_dir.path())
            .args(["kernel", "config"])
            .arg(&source)
            .arg("--out")
            .arg(out_dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{version}: {}", show(&out));
        let config = std::fs::read_to_string(out_dir.path().join(".config")).unwrap();
        for line in include_str!("../kernel/provium.config")
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
        {
            assert!(
                config.lines().any(|l| l == line),
                "{version}: kconfig dropped {line}"
            );
        }
        assert!(
            !config.contains("\nCONFIG_ACPI=y"),
            "{version}: the fragment builds without ACPI"
        );
    }
    // A tree whose .config lacks the transport: refused before anything boots, naming it.
    let tree = kacs_tree();
    let broken = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(broken.path().join("arch/x86/boot")).unwrap();
    std::fs::copy(
        tree.join("arch/x86/boot/bzImage"),
        broken.path().join("arch/x86/boot/bzImage"),
    )
    .unwrap();
    let config = std::fs::read_to_string(tree.join(".config")).unwrap();
    std::fs::write(
        broken.path().join(".config"),
        config.replace(
            "CONFIG_VIRTIO_CONSOLE=y",
            "# CONFIG_VIRTIO_CONSOLE is not set",
        ),
    )
    .unwrap();
    write(
        broken.path(),
        "c.yaml",
        "cases:\n  - {name: c, syscall: close, args: [-1], expect: EBADF}\n",
    );
    let started = std::time::Instant::now();
    let out = provium(broken.path())
        .args(["test", "c.yaml", "--kernel", "."])
        .output()
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once"
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CONFIG_VIRTIO_CONSOLE"),
        "{}",
        show(&out)
    );
}
