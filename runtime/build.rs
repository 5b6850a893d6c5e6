//! Builds the guest agent as a static binary and embeds it in the host, so that a `provium`
//! binary always carries the agent that speaks its protocol version.
//!
//! The agent needs `crt-static` and static relocation, which must not leak into the host build
//! (proc macros cannot be linked statically). A nested cargo with its own target directory and
//! an explicit `--target` keeps the flags on the agent alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("runtime/ lives inside the workspace")
        .to_path_buf();
    for path in ["agent/src", "agent/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=PROVIUM_AGENT_PREBUILT");

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let agent = match std::env::var_os("PROVIUM_AGENT_PREBUILT") {
        Some(path) => PathBuf::from(path),
        None => build_agent(&workspace, &out_dir),
    };
    println!("cargo:rustc-env=PROVIUM_AGENT_PATH={}", agent.display());
    commit_info(&workspace);
}

/// The commit and its date, for `provium --version` and reports: `PROVIUM_COMMIT` (short hash)
/// and `PROVIUM_COMMIT_DATE`; "unknown" outside a git checkout (a source tarball). Uncommitted
/// changes are not tracked: that would rebuild the crate on every `git add`.
fn commit_info(workspace: &std::path::Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=10", "HEAD"]);
    let date = git(&["log", "-1", "--format=%cs"]);
    println!(
        "cargo:rustc-env=PROVIUM_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!(
        "cargo:rustc-env=PROVIUM_COMMIT_DATE={}",
        date.unwrap_or_else(|| "unknown".into())
    );
    // A new commit or checkout moves HEAD or a ref.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = workspace.join(dir);
        for f in ["HEAD", "refs/heads", "packed-refs"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

fn build_agent(workspace: &std::path::Path, out_dir: &std::path::Path) -> PathBuf {
    let target = env("TARGET");
    let target_dir = out_dir.join("agent-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--profile",
            "agent",
            "-p",
            "provium-agent",
            "--bin",
            "provium-agent",
        ])
        .arg("--target")
        .arg(&target)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    // The outer build's flags and wrappers (clippy-driver, coverage) are not for the agent.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-Ctarget-feature=+crt-static\u{1f}-Crelocation-model=static",
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guest agent: {e}"));
    if !status.success() {
        panic!("building the guest agent failed ({status}); see the output above");
    }
    target_dir.join(&target).join("agent").join("provium-agent")
}
