//! From a profile and boot options to a concrete plan: which kernel file, machine, transport,
//! accelerator, modules and initramfs.

pub use crate::event::LoadedAs;
use crate::machine::accel::{self, Accel};
use crate::machine::error::IoError;
use crate::machine::initramfs::InitramfsError;
use crate::machine::initramfs::{self, ExtraFile, InitramfsSpec};
use crate::machine::kernel::KernelImageError;
use crate::machine::kernel::{KernelImage, PvhBoot};
use crate::machine::modules::ModuleError;
use crate::machine::modules::ModuleTree;
use crate::machine::profile::ProfileError;
use crate::machine::profile::{BootMethod, Machine, Profile, TransportChoice};
use crate::machine::qemu::QemuError;
use crate::machine::qemu::{self, MachineKind};
use crate::machine::requirements::Missing;
use crate::machine::tools::ToolError;
use crate::machine::transport::TransportKind;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The CPU an x86_64 guest gets under TCG: `max` without the ERMS and FSRM speed hints (why:
/// at its use in `plan`).
pub const TCG_X86_64_CPU: &str = "max,-erms,-fsrm";
/// The CPU an arm64 guest gets under TCG: `max` with QEMU's cheaper pointer authentication.
pub const TCG_AARCH64_CPU: &str = "max,pauth-impdef=on";

/// The launch settings the host chooses where a profile is silent (CPU models, boot
/// arguments), as one string: fixtures are keyed by it, so that changing a default rebuilds
/// the snapshots taken under the old one.
pub fn launch_defaults() -> String {
    use crate::machine::qemu::{base_kernel_args, fast_kernel_args};
    let args = |m| (base_kernel_args(m, None), fast_kernel_args(m));
    format!(
        "cpu tcg x86_64={TCG_X86_64_CPU} aarch64={TCG_AARCH64_CPU}; args {:?} {:?}",
        args(MachineKind::Microvm),
        args(MachineKind::Virt),
    )
}

/// Why a profile and options give no machine to boot; found before QEMU starts.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Kernel(#[from] KernelImageError),
    #[error(transparent)]
    Modules(#[from] ModuleError),
    #[error("resolving the modules profile `{profile}` needs: {cause}")]
    ProfileModules { profile: String, cause: ModuleError },
    #[error("the tools of profile `{profile}`: {cause}")]
    Tools { profile: String, cause: ToolError },
    #[error("the agent: {0}")]
    Agent(IoError),
    #[error(transparent)]
    NoAgent(#[from] crate::machine::agent_binary::AgentMissing),
    #[error(
        "profile `{profile}` asks for the {machine:?} machine, which is x86's: an {arch} kernel \
         boots on `virt` (leave `machine` unset)"
    )]
    MachineForArch {
        profile: String,
        machine: Machine,
        arch: provium_compiler::linux::Arch,
    },
    #[error(
        "profile `{profile}` puts host tools ({tools}) into an {arch} guest, whose binaries \
         they are not: give them with `files` built for {arch}"
    )]
    ForeignTools {
        profile: String,
        tools: String,
        arch: provium_compiler::linux::Arch,
    },
    #[error("building the initramfs: {0}")]
    Initramfs(#[from] InitramfsError),
    #[error("{}", missing.explain(&format!("the kernel {}", kernel.display())))]
    Unfit { kernel: PathBuf, missing: Missing },
    #[error(
        "the kernel {} has no {module} built in and no modules were given, so the guest agent \
         could not reach the host: set PROVIUM_MODULES to its /lib/modules/<release> tree (or \
         `modules =` in the profile){}",
        kernel.display(),
        release.as_deref().map(|r| format!(" (release {r})")).unwrap_or_default()
    )]
    NoTransportDriver {
        kernel: PathBuf,
        module: &'static str,
        release: Option<String>,
    },
    #[error(
        "the kernel {} has no {module} ({what}){}: set PROVIUM_MODULES to its \
         /lib/modules/<release> tree (or `modules =` in the profile), or build it in",
        kernel.display(),
        if *modules_given { " in the modules given" } else { " built in and no modules were given" }
    )]
    MissingDriver {
        kernel: PathBuf,
        module: &'static str,
        what: String,
        modules_given: bool,
    },
    #[error("profile `{profile}` asks for a PVH boot, but {}: {why}", kernel.display())]
    NoPvh {
        profile: String,
        kernel: PathBuf,
        why: String,
    },
    #[error("microvm boots only PVH kernels, and this one is loaded as a bzImage")]
    MicrovmNeedsPvh,
    #[error(
        "the kernel {} has neither CONFIG_ACPI nor CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so it \
         cannot find microvm's virtio devices: enable one (or boot it on q35 with \
         CONFIG_VIRTIO_PCI: `machine = \"q35\"`)",
        .0.display()
    )]
    NoVirtioDiscovery(PathBuf),
    #[error("guest path `{0}` must be absolute")]
    RelativeGuestPath(String),
}

/// Per-boot overrides of a profile (the Lua `vm:boot{...}` table, CLI flags).
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    pub memory_mib: Option<u32>,
    pub cpus: Option<u32>,
    pub accel: Option<Accel>,
    pub transport: Option<TransportChoice>,
    pub machine: Option<Machine>,
    pub boot: Option<BootMethod>,
    pub fast_boot: Option<bool>,
    /// QEMU `-cpu` model.
    pub cpu: Option<String>,
    pub timeout: Option<Duration>,
    pub kernel_args: Vec<String>,
    /// Guest path → host path, added to the initramfs.
    pub files: BTreeMap<String, PathBuf>,
    /// Keep the run directory (console log, sockets) after the VM ends.
    pub keep_run_dir: bool,
    /// Back guest RAM with this file, shared, so the VM can be snapshotted (fixtures).
    pub snapshot_memory: Option<PathBuf>,
    /// A console on the host's terminal (`provium shell`): QEMU's stdin and stdout become the
    /// guest's `/dev/hvc0`, a virtio console on the virtio-serial bus.
    pub terminal: bool,
}

impl BootOptions {
    /// The host files a boot puts into the guest: the profile's, then these options'.
    pub fn host_files(&self, profile: &Profile) -> Vec<PathBuf> {
        profile
            .files
            .values()
            .chain(self.files.values())
            .cloned()
            .collect()
    }
}

/// A decided boot.
#[derive(Debug, Clone)]
pub struct BootPlan {
    pub profile: String,
    /// The guest's architecture (the kernel's).
    pub arch: provium_compiler::linux::Arch,
    pub qemu: PathBuf,
    pub kernel_image: PathBuf,
    pub kernel_release: Option<String>,
    pub boot_file: PathBuf,
    pub loaded_as: LoadedAs,
    pub machine: MachineKind,
    pub accel: Accel,
    pub accel_reason: String,
    pub cpu: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub transport: TransportKind,
    pub initrd: PathBuf,
    /// Keeps the initramfs from collection while the plan lives (past QEMU's start).
    pub initrd_lease: Option<Arc<crate::machine::cache_lease::CacheLease>>,
    pub kernel_args: Vec<String>,
    pub firmware: Option<PathBuf>,
    pub timeout: Duration,
    pub keep_run_dir: bool,
    pub snapshot_memory: Option<PathBuf>,
    pub terminal: bool,
    /// ACPI on microvm (see `LaunchPlan::acpi`).
    pub acpi: bool,
}

pub(crate) type Memo<T> = Mutex<HashMap<(PathBuf, Option<SystemTime>), Arc<T>>>;

/// Opening a kernel reads and hashes it, and a module tree is a directory walk: both are done
/// once per process and file version.
pub(crate) fn memoized<T, E>(
    memo: &'static OnceLock<Memo<T>>,
    path: &Path,
    open: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E> {
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let key = (path.to_path_buf(), mtime);
    let map = memo.get_or_init(Default::default);
    if let Some(hit) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(hit);
    }
    let value = Arc::new(open()?);
    if let Ok(mut m) = map.lock() {
        m.insert(key, value.clone());
    }
    Ok(value)
}

pub fn open_kernel(path: &Path) -> Result<Arc<KernelImage>, KernelImageError> {
    static MEMO: OnceLock<Memo<KernelImage>> = OnceLock::new();
    memoized(&MEMO, path, || KernelImage::open(path))
}

pub fn open_modules(path: &Path) -> Result<Arc<ModuleTree>, ModuleError> {
    static MEMO: OnceLock<Memo<ModuleTree>> = OnceLock::new();
    memoized(&MEMO, path, || ModuleTree::open(path))
}

/// A string only the transport's guest driver has (a device-name format, its module name):
/// present in the decompressed kernel exactly when the driver is built in.
fn driver_marker(transport: TransportKind) -> (&'static str, &'static [u8]) {
    match transport {
        TransportKind::VirtioSerial => ("virtio_console", b"vport%up%u"),
        TransportKind::Vsock => ("vmw_vsock_virtio_transport", b"vmw_vsock_virtio_transport"),
    }
}

/// Whether the decompressed kernel `elf` contains `marker` (memoized: a kernel is scanned once
/// per process, in tens of milliseconds).
fn kernel_contains(elf: &Path, marker: &'static [u8]) -> bool {
    type Scans = Mutex<HashMap<(PathBuf, &'static [u8]), bool>>;
    static SEEN: OnceLock<Scans> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let key = (elf.to_path_buf(), marker);
    if let Some(&found) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found;
    }
    // An unreadable image is not judged here: the boot reports it.
    let found = std::fs::read(elf)
        .map(|bytes| memchr::memmem::find(&bytes, marker).is_some())
        .unwrap_or(true);
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, found);
    found
}

/// A kernel given without modules must have the transport's driver built in; otherwise the
/// agent could never reach the host and the boot would only time out. Checked on the
/// decompressed kernel before QEMU starts.
fn preflight_builtin_transport(
    kernel: &KernelImage,
    pvh: &PvhBoot,
    path: &Path,
    transport: TransportKind,
) -> Result<(), PlanError> {
    // An arm64 Image is not compressed: it is searched as it is.
    let uncompressed = (kernel.arch == provium_compiler::linux::Arch::Aarch64).then_some(path);
    let Some(elf) = pvh.elf.as_deref().or(uncompressed) else {
        // Not decompressed (no PVH entry): nothing to look into cheaply.
        return Ok(());
    };
    let (module, marker) = driver_marker(transport);
    if kernel_contains(elf, marker) {
        return Ok(());
    }
    Err(PlanError::NoTransportDriver {
        kernel: path.to_path_buf(),
        module,
        release: kernel.release.clone(),
    })
}

/// The modules directory for a kernel: the profile's, or `/lib/modules/<release>` beside it.
fn modules_dir(given: Option<PathBuf>, release: Option<&str>) -> Option<PathBuf> {
    given.or_else(|| {
        let r = release?;
        let p = PathBuf::from(format!("/lib/modules/{r}"));
        p.is_dir().then_some(p)
    })
}

pub fn plan(profile: &Profile, opts: &BootOptions) -> Result<BootPlan, PlanError> {
    let (kernel_path, modules) = profile.resolve_kernel()?;
    let kernel = open_kernel(&kernel_path)?;
    let arch = kernel.arch;
    let foreign = Some(arch) != provium_compiler::linux::Arch::host();
    let qemu = qemu::find_qemu_for(arch.name())?;
    let modules = modules_dir(modules, kernel.release.as_deref());
    let tree = match &modules {
        Some(dir) => Some(open_modules(dir)?),
        None => None,
    };
    // The kernel's configuration, when it is known (a package's config-<release>, a build
    // tree's .config), says before anything boots what the guest can do.
    let config = crate::machine::kernels::config_beside(&kernel_path);
    if let Some(c) = &config {
        let missing = crate::machine::requirements::check(c, tree.as_deref());
        if !missing.is_empty() {
            return Err(PlanError::Unfit {
                kernel: kernel_path,
                missing,
            });
        }
    }
    // A driver the guest will have: in the module tree, built in by the configuration, or (when
    // neither is known) assumed, and looked for in the image below.
    let builtin = |name: &str| {
        config
            .as_ref()
            .and_then(|c| crate::machine::requirements::builtin(c, name))
    };
    let has_module = |name: &str| match &tree {
        // In the tree, or built in by the configuration (a tree copied without its
        // modules.builtin still says so in its .config).
        Some(t) => t.has(name) || builtin(name) == Some(true),
        None => builtin(name).unwrap_or(true),
    };

    let boot = opts.boot.unwrap_or(profile.boot);
    // Checked (and the ELF made) here, for a boot, not whenever the kernel is looked at.
    let pvh = kernel.pvh()?;
    let loaded_as = match (boot, &pvh.elf) {
        _ if arch == provium_compiler::linux::Arch::Aarch64 => LoadedAs::Image,
        (BootMethod::Bzimage, _) => LoadedAs::Bzimage,
        (_, Some(_)) => LoadedAs::Pvh,
        (BootMethod::Pvh, None) => {
            return Err(PlanError::NoPvh {
                profile: profile.name.clone(),
                kernel: kernel_path,
                why: pvh
                    .unavailable
                    .clone()
                    .unwrap_or_else(|| "no PVH entry point".into()),
            })
        }
        (BootMethod::Auto, None) => LoadedAs::Bzimage,
    };
    let machine = match opts.machine.unwrap_or(profile.machine) {
        // arm64's one board: virt (virtio-mmio in its device tree).
        Machine::Auto if arch == provium_compiler::linux::Arch::Aarch64 => MachineKind::Virt,
        other if arch == provium_compiler::linux::Arch::Aarch64 => {
            return Err(PlanError::MachineForArch {
                profile: profile.name.clone(),
                machine: other,
                arch,
            })
        }
        Machine::Auto if loaded_as == LoadedAs::Pvh && has_module("virtio_mmio") => {
            MachineKind::Microvm
        }
        Machine::Auto => MachineKind::Q35,
        Machine::Microvm if loaded_as != LoadedAs::Pvh => return Err(PlanError::MicrovmNeedsPvh),
        Machine::Microvm => MachineKind::Microvm,
        Machine::Q35 => MachineKind::Q35,
        Machine::Pc => MachineKind::Pc,
    };
    let transport = match opts.transport.unwrap_or(profile.transport) {
        // Only virtio-serial survives a snapshot (QEMU 7.2 cannot migrate vhost-user-vsock).
        _ if opts.snapshot_memory.is_some() => TransportKind::VirtioSerial,
        // The terminal's virtio console sits on the virtio-serial bus.
        _ if opts.terminal => TransportKind::VirtioSerial,
        TransportChoice::VirtioSerial => TransportKind::VirtioSerial,
        TransportChoice::Vsock => TransportKind::Vsock,
        TransportChoice::Auto if has_module("virtio_console") => TransportKind::VirtioSerial,
        TransportChoice::Auto if has_module("vmw_vsock_virtio_transport") => TransportKind::Vsock,
        TransportChoice::Auto => TransportKind::VirtioSerial,
    };
    for (module, what) in [
        (
            machine.virtio_bus_module(),
            format!("the {machine} machine's virtio bus"),
        ),
        (
            transport.guest_modules()[0],
            format!("the {transport} transport"),
        ),
    ] {
        if !has_module(module) {
            return Err(PlanError::MissingDriver {
                kernel: kernel_path,
                module,
                what,
                modules_given: tree.is_some(),
            });
        }
    }
    if tree.is_none() && config.is_none() {
        preflight_builtin_transport(&kernel, &pvh, &kernel_path, transport)?;
    }
    // microvm describes its virtio-mmio devices in ACPI tables: a kernel without ACPI needs
    // them on its command line (`acpi=off` makes QEMU put them there).
    let acpi = match (&config, machine) {
        (Some(c), MachineKind::Microvm) if !c.enabled("CONFIG_ACPI") => {
            if !c.enabled("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES") {
                return Err(PlanError::NoVirtioDiscovery(kernel_path));
            }
            false
        }
        _ => true,
    };
    let (accel, accel_reason) = match opts.accel.or(profile.accel) {
        Some(a) => (a, "chosen by the profile or the command line".to_string()),
        None if foreign => (
            Accel::Tcg,
            format!(
                "an {arch} guest on an {} host is emulated",
                std::env::consts::ARCH
            ),
        ),
        None => accel::detect(),
    };
    let cpu = opts
        .cpu
        .clone()
        .or_else(|| profile.cpu.clone())
        .unwrap_or_else(|| match (accel, arch) {
            // `max` emulates pointer authentication with QARMA5, most of an arm64 boot under
            // TCG: 9.0 s to a ready agent against 2.8 s with QEMU's own cheaper algorithm,
            // which keeps the feature (`pauth=off` drops it; BENCHMARKS.md).
            (Accel::Tcg, provium_compiler::linux::Arch::Aarch64) => TCG_AARCH64_CPU.into(),
            (Accel::Kvm, _) => "host".into(),
            // TCG runs `rep movsb`/`rep stosb` one byte per iteration, and with ERMS/FSRM
            // announced the kernel clears and copies pages with them: hiding the two speed
            // hints makes it use `rep movsq`/`stosq`, and a cold boot 18 % cheaper
            // (BENCHMARKS.md). No instruction goes away and no syscall's behaviour depends on
            // them; only CPUID and /proc/cpuinfo's flags show the difference.
            (Accel::Tcg, _) => TCG_X86_64_CPU.into(),
        });

    let mut wanted: Vec<String> = vec![machine.virtio_bus_module().to_string()];
    wanted.extend(transport.guest_modules().iter().map(|s| s.to_string()));
    wanted.extend(profile.load_modules.iter().cloned());
    // What the configuration builds in is not looked for as a module file.
    wanted.retain(|m| builtin(m) != Some(true));
    let module_files = match &tree {
        Some(t) => t
            .resolve(&wanted)
            .map_err(|cause| PlanError::ProfileModules {
                profile: profile.name.clone(),
                cause,
            })?,
        None => Vec::new(),
    };

    let agent = crate::machine::agent_binary::bytes_for(arch)?;
    if foreign && !profile.tools.is_empty() {
        return Err(PlanError::ForeignTools {
            profile: profile.name.clone(),
            tools: profile.tools.join(", "),
            arch,
        });
    }
    let mut files: Vec<ExtraFile> = Vec::new();
    for (guest, host) in profile.files.iter().chain(&opts.files) {
        if !guest.starts_with('/') {
            return Err(PlanError::RelativeGuestPath(guest.clone()));
        }
        files.push(ExtraFile {
            guest: guest.clone(),
            host: host.clone(),
            mode: None,
        });
    }
    let tools =
        crate::machine::tools::closure(&profile.tools).map_err(|cause| PlanError::Tools {
            profile: profile.name.clone(),
            cause,
        })?;
    for host in tools {
        files.push(ExtraFile {
            guest: host.to_string_lossy().into_owned(),
            host,
            mode: None,
        });
    }
    let spec = InitramfsSpec {
        agent: agent.into_owned(),
        busybox: if profile.busybox {
            initramfs::find_static_busybox_for(arch)
        } else {
            None
        },
        modules: module_files,
        files,
        archives: profile.initramfs.clone(),
    };
    let (initrd, initrd_lease) = initramfs::build_cached(&spec)?;

    let mut kernel_args = qemu::base_kernel_args(machine, crate::machine::tsc::host_tsc_khz());
    // An x86 kernel without ACPI cannot power off: `reboot(POWER_OFF)` halts it, and QEMU would
    // wait to be killed (5 s for every VM). Told so (an argument the kernel hands init), the
    // agent reboots instead, which `reboot=t` and `-no-reboot` turn into QEMU's exit.
    if matches!(&config, Some(c) if machine != MachineKind::Virt && !c.enabled("CONFIG_ACPI")) {
        kernel_args.push(provium_agent::protocol::INIT_ARG_REBOOT.into());
    }
    if opts.fast_boot.unwrap_or(profile.fast_boot) {
        kernel_args.extend(qemu::fast_kernel_args(machine));
    }
    kernel_args.extend(profile.kernel_args.iter().cloned());
    kernel_args.extend(opts.kernel_args.iter().cloned());

    let boot_file = match loaded_as {
        LoadedAs::Pvh => pvh.elf.clone().unwrap_or_else(|| kernel_path.clone()),
        LoadedAs::Bzimage | LoadedAs::Image => kernel_path.clone(),
    };
    let firmware = match loaded_as {
        LoadedAs::Pvh => qemu::find_qboot(&qemu),
        LoadedAs::Bzimage | LoadedAs::Image => None,
    };
    Ok(BootPlan {
        profile: profile.name.clone(),
        arch,
        qemu,
        kernel_image: kernel_path,
        kernel_release: kernel.release.clone(),
        boot_file,
        loaded_as,
        machine,
        accel,
        accel_reason,
        cpu,
        cpus: opts.cpus.unwrap_or(profile.cpus),
        memory_mib: opts.memory_mib.unwrap_or(profile.memory_mib),
        transport,
        initrd,
        initrd_lease: initrd_lease.map(std::sync::Arc::new),
        kernel_args,
        firmware,
        timeout: opts
            .timeout
            .unwrap_or(Duration::from_secs(profile.boot_timeout_s)),
        keep_run_dir: opts.keep_run_dir,
        snapshot_memory: opts.snapshot_memory.clone(),
        terminal: opts.terminal,
        acpi,
    })
}
