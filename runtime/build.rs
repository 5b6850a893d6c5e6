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
    println!("cargo:rerun-if-env-changed=PROVIUM_AGENT_AARCH64_PREBUILT");
    // The aarch64 toolchain appearing (scripts/setup --arch arm64) makes the next build add
    // the aarch64 agent.
    for path in [AARCH64_RUSTC, AARCH64_STD, AARCH64_LINKER_PATH] {
        println!("cargo:rerun-if-changed={path}");
    }

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let agent = match std::env::var_os("PROVIUM_AGENT_PREBUILT") {
        Some(path) => PathBuf::from(path),
        None => build_agent(&workspace, &out_dir),
    };
    println!("cargo:rustc-env=PROVIUM_AGENT_PATH={}", agent.display());
    let aarch64 = match std::env::var_os("PROVIUM_AGENT_AARCH64_PREBUILT") {
        Some(path) => Ok(PathBuf::from(path)),
        None => build_aarch64_agent(&workspace, &out_dir),
    };
    // Without the toolchain the x86_64 agent still works: the host says what is missing when
    // an aarch64 guest is asked for.
    let (path, missing) = match aarch64 {
        Ok(p) => (p, String::new()),
        Err(why) => {
            println!("cargo:warning=no aarch64 guest agent: {why}");
            let empty = out_dir.join("no-aarch64-agent");
            std::fs::write(&empty, b"").expect("OUT_DIR is writable");
            (empty, why)
        }
    };
    println!(
        "cargo:rustc-env=PROVIUM_AGENT_AARCH64_PATH={}",
        path.display()
    );
    println!("cargo:rustc-env=PROVIUM_AGENT_AARCH64_MISSING={missing}");
    commit_info(&workspace);
}

/// Debian's rustc (`rustc-web`) with its arm64 standard library (`libstd-rust-web-dev:arm64`):
/// rustup's toolchain cannot use Debian's std, and its own arm64 std needs the network.
const AARCH64_RUSTC: &str = "/usr/bin/rustc";
const AARCH64_STD: &str = "/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib";
const AARCH64_LINKER: &str = "aarch64-linux-gnu-gcc";
const AARCH64_LINKER_PATH: &str = "/usr/bin/aarch64-linux-gnu-gcc";
const AARCH64_LIBC: &str = "/usr/aarch64-linux-gnu/lib/crt1.o";

/// The agent for aarch64 guests, or what is missing to build it.
fn build_aarch64_agent(
    workspace: &std::path::Path,
    out_dir: &std::path::Path,
) -> Result<PathBuf, String> {
    let packages = [
        (AARCH64_RUSTC, "rustc-web"),
        (AARCH64_STD, "libstd-rust-web-dev:arm64"),
        (AARCH64_LINKER_PATH, "gcc-aarch64-linux-gnu"),
        (AARCH64_LIBC, "libc6-dev-arm64-cross"),
    ];
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(path, _)| !std::path::Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} not installed (scripts/setup --arch arm64 installs them)",
            missing.join(", ")
        ));
    }
    let target = "aarch64-unknown-linux-gnu";
    // Its own directory: another rustc's artifacts would make each build undo the other's.
    let target_dir = out_dir.join("agent-target-aarch64");
    let mut cmd = agent_cargo(workspace, target, &target_dir);
    cmd.env("RUSTC", AARCH64_RUSTC).env(
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
        AARCH64_LINKER,
    );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the aarch64 agent: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the aarch64 agent with {AARCH64_RUSTC} failed ({status}); see the output above"
        ));
    }
    Ok(target_dir.join(target).join("agent").join("provium-agent"))
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
    let status = agent_cargo(workspace, &target, &target_dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guest agent: {e}"));
    if !status.success() {
        panic!("building the guest agent failed ({status}); see the output above");
    }
    target_dir.join(&target).join("agent").join("provium-agent")
}

/// A nested cargo building the static agent for `target`.
fn agent_cargo(workspace: &std::path::Path, target: &str, target_dir: &std::path::Path) -> Command {
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
        .arg(target)
        .arg("--target-dir")
        .arg(target_dir)
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
    cmd
}
