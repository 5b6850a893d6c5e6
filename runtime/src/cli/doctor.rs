//! `provium doctor`: what this host has, what is missing, and the command that fixes it.

use crate::machine::profile::Profiles;
use crate::machine::transport::vsock;
use crate::report::style::{paint, BOLD, DIM, FAIL, OK, WARN};
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile to check (its kernel and modules).
    #[arg(add = crate::cli::complete::profile(), long, default_value = "minimal")]
    profile: String,
    /// Check this kernel instead of the profile's: an installed release (`6.12`), an image, or
    /// a build tree, as `provium test --kernel` takes it.
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Option<String>,
    /// Also check what guests of this architecture need (aarch64: its QEMU, agent, busybox
    /// and kernel).
    #[arg(long, value_parser = super::parse_arch)]
    arch: Option<provium_compiler::linux::Arch>,
}

/// What a guest of another architecture than the host's needs, each with the command that
/// installs it.
fn arch_findings(arch: provium_compiler::linux::Arch) -> Vec<Finding> {
    let setup = format!("scripts/setup --arch {}", arch.debian_name());
    let mut f = Vec::new();
    f.push(match crate::machine::qemu::find_qemu_for(arch.name()) {
        Ok(path) => ok("qemu", path.display().to_string()),
        Err(e) => bad("qemu", Level::Missing, e.to_string(), setup.clone()),
    });
    f.push(match crate::machine::agent_binary::bytes_for(arch) {
        Ok(bytes) => ok("agent", format!("{} KiB, for {arch}", bytes.len() / 1024)),
        Err(e) => bad("agent", Level::Missing, e.to_string(), setup.clone()),
    });
    f.push(
        match crate::machine::initramfs::find_static_busybox_for(arch) {
            Some(path) => ok("busybox", path.display().to_string()),
            None => bad(
                "busybox",
                Level::Missing,
                format!("no static busybox for {arch}"),
                setup.clone(),
            ),
        },
    );
    f.push(match crate::machine::kernels::default_target_for(arch) {
        Ok(t) => ok("kernel", format!("{} ({})", t.label, t.image.display())),
        Err(e) => bad("kernel", Level::Missing, e.to_string(), setup),
    });
    f
}

#[derive(PartialEq)]
enum Level {
    Ok,
    Warn,
    Missing,
}

struct Finding {
    what: &'static str,
    level: Level,
    detail: String,
    fix: Option<String>,
}

fn ok(what: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        what,
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(
    what: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        what,
        level,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    // A profile that does not exist is a mistake on the command line, not a missing part.
    let profiles = project_profiles();
    if !profiles.names().contains(&args.profile) {
        super::say(&format!(
            "error: unknown profile `{}`{} (profiles here: {})",
            args.profile,
            provium_compiler::diag::did_you_mean_suffix(
                &args.profile,
                profiles.names().iter().map(String::as_str)
            ),
            profiles.names().join(", ")
        ));
        return Ok(super::EXIT_USAGE);
    }
    let findings = collect(&args);
    let mut out = anstream::stdout();
    for f in &findings {
        let mark = match f.level {
            Level::Ok => paint(OK, "ok     "),
            Level::Warn => paint(WARN, "warn   "),
            Level::Missing => paint(FAIL, "missing"),
        };
        writeln!(
            out,
            "{mark} {} {}",
            paint(BOLD, &format!("{:<12}", f.what)),
            f.detail
        )?;
        if let Some(fix) = &f.fix {
            writeln!(out, "        {:<12} {} {fix}", "", paint(DIM, "fix:"))?;
        }
    }
    let missing = findings
        .iter()
        .filter(|f| f.level == Level::Missing)
        .count();
    writeln!(out)?;
    if missing == 0 {
        writeln!(out, "{}", paint(OK, "Provium can boot VMs on this host."))?;
        Ok(super::EXIT_OK)
    } else {
        writeln!(
            out,
            "{}",
            paint(
                FAIL,
                &format!("{missing} problem(s); `scripts/setup` fixes the usual ones.")
            )
        )?;
        Ok(super::EXIT_FAILED)
    }
}

/// The profiles of the project in the current directory.
fn project_profiles() -> Profiles {
    std::env::current_dir()
        .ok()
        .and_then(|d| Profiles::discover(&d).ok())
        .unwrap_or_else(Profiles::builtin)
}

/// gcc preprocesses kernel headers (`headers:` in specs, `provium gen`, `provium headers`).
fn gcc() -> Finding {
    let program = std::env::var("PROVIUM_CC").unwrap_or_else(|_| "gcc".into());
    let version = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string));
    match version {
        Some(v) => ok("gcc", format!("{program} ({v})")),
        None => bad(
            "gcc",
            Level::Warn,
            format!("`{program}` cannot be run: specs with `headers:`, `provium gen` and `provium headers` need it"),
            "sudo apt-get install gcc",
        ),
    }
}

fn collect(args: &Args) -> Vec<Finding> {
    let mut f = Vec::new();
    if let Some(arch) = args
        .arch
        .filter(|a| Some(*a) != provium_compiler::linux::Arch::host())
    {
        return arch_findings(arch);
    }
    f.push(match crate::machine::qemu::find_qemu() {
        Ok(path) => {
            let version = std::process::Command::new(&path)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.lines().next().map(str::to_string))
                .unwrap_or_default();
            ok("qemu", format!("{} ({version})", path.display()))
        }
        Err(_) => bad(
            "qemu",
            Level::Missing,
            "qemu-system-x86_64 not found",
            "sudo apt-get install qemu-system-x86",
        ),
    });

    let mut profiles = project_profiles();
    if let Some(k) = &args.kernel {
        match crate::machine::kernels::resolve(k) {
            Ok(t) => profiles = profiles.with_kernel(&t.image, t.modules.as_deref()),
            Err(e) => {
                f.push(bad(
                    "kernel",
                    Level::Missing,
                    format!("--kernel {k}: {e:#}"),
                    "`provium kernels` lists the installed ones; `scripts/setup --kernel VERSION` fetches Debian's",
                ));
                return f;
            }
        }
    }
    let configured = profiles
        .get(&args.profile)
        .ok()
        .and_then(|p| p.kernel.clone())
        .filter(|_| args.kernel.is_none());
    match profiles.get(&args.profile).and_then(|p| {
        let (k, m) = p.resolve_kernel()?;
        Ok((p, k, m))
    }) {
        Ok((profile, kernel, modules)) => {
            if !kernel.is_file() {
                f.push(bad(
                    "kernel",
                    Level::Missing,
                    format!("{} does not exist", kernel.display()),
                    format!(
                        "fix the `kernel =` line of profile `{}` in provium.toml",
                        profile.name
                    ),
                ));
            } else {
                kernel_findings(&mut f, &profile, &kernel, modules);
            }
        }
        Err(e) => f.push(bad(
            "kernel",
            Level::Missing,
            format!("{e:#}"),
            match configured {
                Some(k) => format!(
                    "fix the `kernel =` line of profile `{}` in provium.toml (it names {})",
                    args.profile,
                    k.display()
                ),
                None => "scripts/setup (fetches a Debian kernel into the cache), or PROVIUM_KERNEL=/path/to/bzImage".into(),
            },
        )),
    }

    let (accel, why) = crate::machine::accel::detect();
    f.push(ok("accelerator", format!("{accel}: {why}")));

    f.push(match vsock::detect_backend() {
        Some(b) => ok("vsock", b.describe()),
        None => bad(
            "vsock",
            Level::Warn,
            "no /dev/vhost-vsock and no vhost-device-vsock (virtio-serial still works)",
            "cargo install vhost-device-vsock   (or: sudo modprobe vhost_vsock)",
        ),
    });

    f.push(gcc());

    f.push(match crate::machine::initramfs::find_static_busybox() {
        Some(p) => ok("busybox", format!("{} (static)", p.display())),
        None => bad(
            "busybox",
            Level::Warn,
            "no static busybox: exec works only with argv of programs in the initramfs",
            "sudo apt-get install busybox-static",
        ),
    });

    f.push(match crate::machine::tsc::host_tsc_khz() {
        Some(khz) => ok("tsc", format!("{khz} kHz (passed to microvm guests)")),
        None => bad(
            "tsc",
            Level::Warn,
            "TSC frequency unknown: microvm boots may hang under TCG",
            "use `machine = \"q35\"` in the profile",
        ),
    });

    match crate::machine::agent_binary::bytes() {
        Ok(bytes) => {
            let tmp = tempfile::NamedTempFile::new().ok();
            let is_static = tmp.as_ref().is_some_and(|t| {
                std::fs::write(t.path(), &bytes).is_ok()
                    && crate::machine::initramfs::is_static_elf(t.path())
            });
            f.push(if is_static {
                ok(
                    "agent",
                    format!("{} KiB, statically linked", bytes.len() / 1024),
                )
            } else {
                bad(
                    "agent",
                    Level::Missing,
                    "the agent is not a static binary",
                    "rebuild: cargo build --release",
                )
            });
        }
        Err(e) => f.push(bad(
            "agent",
            Level::Missing,
            format!("{e:#}"),
            "unset PROVIUM_AGENT",
        )),
    }
    f.push(ok(
        "cache",
        crate::machine::paths::home().display().to_string(),
    ));
    let (builds, bytes) = fixture_cache_usage(&crate::fixture::cache_dir());
    f.push(ok(
        "fixtures",
        format!(
            "{builds} snapshot(s), {} MiB on disk in {} (`provium fixture clean` in a project frees its own)",
            bytes >> 20,
            crate::fixture::cache_dir().display()
        ),
    ));
    f
}

/// Fixture builds (directories with a `meta.json`) under `dir`, and their disk usage.
fn fixture_cache_usage(dir: &std::path::Path) -> (usize, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut builds = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if e.path().join("meta.json").is_file() {
                    builds += 1;
                }
                stack.push(e.path());
            } else {
                // Blocks actually used: RAM files are sparse.
                bytes += m.blocks() * 512;
            }
        }
    }
    (builds, bytes)
}

fn kernel_findings(
    f: &mut Vec<Finding>,
    profile: &crate::machine::profile::Profile,
    kernel: &std::path::Path,
    modules: Option<std::path::PathBuf>,
) {
    let image = match crate::machine::vm::plan::open_kernel(kernel) {
        Ok(i) => i,
        Err(e) => {
            f.push(bad(
                "kernel",
                Level::Missing,
                format!("{e:#}"),
                if profile.name == "minimal" {
                    "point PROVIUM_KERNEL at a bzImage".to_string()
                } else {
                    format!(
                        "point the `kernel =` line of profile `{}` at a bzImage",
                        profile.name
                    )
                },
            ));
            return;
        }
    };
    f.push(ok(
        "kernel",
        format!(
            "{} ({}, profile `{}`)",
            kernel.display(),
            image.release.as_deref().unwrap_or("release unknown"),
            profile.name
        ),
    ));
    let pvh = match image.pvh() {
        Ok(pvh) => pvh,
        Err(e) => crate::machine::kernel::PvhBoot {
            elf: None,
            unavailable: Some(e.to_string()),
        },
    };
    f.push(match &pvh.elf {
        Some(p) => ok("pvh", format!("fast boot through {}", p.display())),
        None => bad(
            "pvh",
            Level::Warn,
            pvh.unavailable.clone().unwrap_or_default(),
            "boots the bzImage instead (slower under TCG); a kernel with CONFIG_PVH=y boots faster",
        ),
    });
    let dir = modules.or_else(|| {
        image
            .release
            .as_ref()
            .map(|r| std::path::PathBuf::from(format!("/lib/modules/{r}")))
            .filter(|p| p.is_dir())
    });
    match dir.map(|d| (crate::machine::vm::plan::open_modules(&d), d)) {
        Some((Ok(tree), d)) => {
            let needed = [
                "virtio_mmio",
                "virtio_pci",
                "virtio_console",
                "vmw_vsock_virtio_transport",
            ];
            let absent: Vec<&str> = needed.iter().copied().filter(|m| !tree.has(m)).collect();
            f.push(if absent.is_empty() {
                ok(
                    "modules",
                    format!("{} (virtio, console and vsock present)", d.display()),
                )
            } else {
                bad(
                    "modules",
                    Level::Warn,
                    format!("{}: missing {}", d.display(), absent.join(", ")),
                    "use a kernel with these drivers built in or as modules",
                )
            });
        }
        Some((Err(e), _)) => f.push(bad(
            "modules",
            Level::Missing,
            format!("{e:#}"),
            "fix the profile's modules path",
        )),
        None => f.push(bad(
            "modules",
            Level::Warn,
            "no modules directory: drivers must be built into the kernel",
            "set `modules = \"/lib/modules/<release>\"` in the profile",
        )),
    }
    // The checks every boot makes before QEMU starts (configuration, drivers, machine).
    let opts = crate::machine::vm::BootOptions::default();
    f.push(match crate::machine::vm::plan::plan(profile, &opts) {
        Ok(plan) => ok(
            "boot plan",
            format!(
                "{} machine, {} transport, loaded as {:?}",
                plan.machine, plan.transport, plan.loaded_as
            ),
        ),
        Err(e) => bad(
            "boot plan",
            Level::Missing,
            format!("{e:#}"),
            "see docs/profiles.md for what a kernel needs",
        ),
    });
}
