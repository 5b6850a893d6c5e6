//! The QEMU command line.
//!
//! Choices measured under TCG on a Debian 6.1 kernel (see `BENCHMARKS.md`): PVH with the
//! uncompressed kernel instead of a bzImage, microvm instead of q35/pc, `-nodefaults`, and kernel
//! arguments that skip boot work. Each is a field here so the benchmark can compare them.

use crate::machine::accel::Accel;
use std::path::{Path, PathBuf};

/// The concrete machine QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineKind {
    Microvm,
    Q35,
    Pc,
    /// arm64's `virt` board (virtio-mmio transports described in its device tree).
    Virt,
}

impl MachineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::Microvm => "microvm",
            MachineKind::Q35 => "q35",
            MachineKind::Pc => "pc",
            MachineKind::Virt => "virt",
        }
    }

    /// Whether its virtio devices sit on virtio-mmio (`virtio-serial-device`) rather than PCI.
    pub fn mmio(self) -> bool {
        self.virtio_bus_module() == "virtio_mmio"
    }

    /// The virtio transport module the guest needs to see devices on this machine.
    pub fn virtio_bus_module(self) -> &'static str {
        match self {
            MachineKind::Microvm | MachineKind::Virt => "virtio_mmio",
            MachineKind::Q35 | MachineKind::Pc => "virtio_pci",
        }
    }
}

impl std::fmt::Display for MachineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Guest RAM that lives in a shareable object rather than anonymous memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SharedMemory {
    /// A memfd, for vhost-user back ends that map guest memory.
    Memfd,
    /// A file, so that snapshots keep RAM out of the state file. `share` is false for a
    /// copy-on-write view of a snapshot's RAM.
    File { path: PathBuf, share: bool },
}

/// Everything needed to start one VM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LaunchPlan {
    pub qemu: PathBuf,
    pub machine: MachineKind,
    pub accel: Accel,
    pub cpu: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub console_log: PathBuf,
    pub qmp_socket: Option<PathBuf>,
    pub shared_memory: Option<SharedMemory>,
    /// `-bios` for q35/pc (qboot boots PVH kernels faster than SeaBIOS).
    pub firmware: Option<PathBuf>,
    /// Device arguments from the transport.
    pub devices: Vec<String>,
    /// `-incoming` source, for resuming a snapshot.
    pub incoming: Option<String>,
    /// ACPI tables on microvm. Without `CONFIG_ACPI` the kernel never sees the virtio-mmio
    /// devices they describe; with `acpi=off` QEMU names them on the command line instead
    /// (`virtio_mmio.device=`), which needs `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`.
    #[serde(default = "acpi_default")]
    pub acpi: bool,
}

fn acpi_default() -> bool {
    true
}

impl LaunchPlan {
    pub fn args(&self) -> Vec<String> {
        let mut machine = self.machine.as_str().to_string();
        if self.machine == MachineKind::Microvm && !self.acpi {
            machine.push_str(",acpi=off");
        }
        if self.shared_memory.is_some() {
            machine.push_str(",memory-backend=mem0");
        }
        let mut a: Vec<String> = vec![
            "-machine".into(),
            machine,
            "-accel".into(),
            self.accel.as_str().into(),
            "-cpu".into(),
            self.cpu.clone(),
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            // Appended to, not truncated: a resumed VM's log starts with its fixture's boot log.
            "-chardev".into(),
            format!(
                "file,id=console,append=on,path={}",
                qemu_escape(&self.console_log.display().to_string())
            ),
            "-serial".into(),
            "chardev:console".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.cmdline.clone(),
        ];
        match &self.shared_memory {
            Some(SharedMemory::Memfd) => a.extend([
                "-object".into(),
                format!(
                    "memory-backend-memfd,id=mem0,size={}M,share=on",
                    self.memory_mib
                ),
            ]),
            Some(SharedMemory::File { path, share }) => a.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id=mem0,size={}M,mem-path={},share={}",
                    self.memory_mib,
                    path.display(),
                    if *share { "on" } else { "off" }
                ),
            ]),
            None => {}
        }
        if let (Some(fw), MachineKind::Q35 | MachineKind::Pc) = (&self.firmware, self.machine) {
            a.extend(["-bios".into(), fw.display().to_string()]);
        }
        if let Some(qmp) = &self.qmp_socket {
            a.extend([
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", qmp.display()),
            ]);
        }
        a.extend(self.devices.iter().cloned());
        if let Some(src) = &self.incoming {
            a.extend(["-incoming".into(), src.clone()]);
        }
        a
    }
}

/// Kernel arguments every Provium VM gets.
pub fn base_kernel_args(machine: MachineKind, tsc_khz: Option<u64>) -> Vec<String> {
    if machine == MachineKind::Virt {
        // virt's PL011 UART; a reboot there is PSCI's, which -no-reboot turns into an exit.
        return ["console=ttyAMA0", "panic=-1", "rdinit=/init"]
            .into_iter()
            .map(String::from)
            .collect();
    }
    let mut args: Vec<String> = [
        "console=ttyS0",
        // A panic ends the VM at once (with -no-reboot) instead of hanging until the timeout.
        "panic=-1",
        "reboot=t",
        "rdinit=/init",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if machine == MachineKind::Microvm {
        // Not an optimisation but a necessity: microvm has no HPET or PM timer, and without the
        // TSC frequency the PIT calibration hangs about one boot in four under TCG.
        if let Some(khz) = tsc_khz {
            args.push(format!("tsc_early_khz={khz}"));
        }
    }
    args
}

/// Arguments that cut boot work, each measured (see `BENCHMARKS.md`); x86's own (the TSC, the
/// 8250 UART) only on x86 machines.
pub fn fast_kernel_args(machine: MachineKind) -> Vec<String> {
    const X86_ONLY: [&str; 3] = ["no_timer_check", "tsc=reliable", "8250.nr_uarts=1"];
    let x86 = machine != MachineKind::Virt;
    [
        // Boot messages through an emulated UART are slow; the agent raises the console log
        // level again once it runs, so oopses and panics during tests are printed in full.
        "quiet",
        // The crypto self-tests were the slowest boot step (about 0.5 s).
        "cryptomgr.notests",
        "mitigations=off",
        "rodata=off",
        "no_timer_check",
        "tsc=reliable",
        "8250.nr_uarts=1",
        "audit=0",
        "random.trust_cpu=on",
    ]
    .into_iter()
    .filter(|a| x86 || !X86_ONLY.contains(a))
    .map(String::from)
    .collect()
}

/// Why no usable QEMU was found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QemuError {
    #[error(
        "{name} not found: install it (`sudo apt-get install {package}`, or run \
         scripts/setup{setup}), or set PROVIUM_QEMU",
        name = .0,
        package = if .0.ends_with("aarch64") { "qemu-system-arm" } else { "qemu-system-x86" },
        setup = if .0.ends_with("aarch64") { " --arch arm64" } else { "" }
    )]
    NotFound(String),
    #[error("PROVIUM_QEMU={}: {cause}", path.display())]
    Unrunnable {
        path: PathBuf,
        cause: std::sync::Arc<std::io::Error>,
    },
    #[error("PROVIUM_QEMU={} did not answer `--version` within 2 s: is it QEMU?", .0.display())]
    NoAnswer(PathBuf),
    #[error("PROVIUM_QEMU={} is not QEMU: `--version` printed {first_line:?}", path.display())]
    NotQemu { path: PathBuf, first_line: String },
}

/// The QEMU binary for the host architecture: `PROVIUM_QEMU`, or `qemu-system-<arch>` on PATH.
pub fn find_qemu() -> Result<PathBuf, QemuError> {
    find_qemu_for(std::env::consts::ARCH)
}

/// The QEMU binary for guests of `arch` (`x86_64`, `aarch64`): `PROVIUM_QEMU` for the host's
/// architecture (`PROVIUM_QEMU_AARCH64` for aarch64's), or `qemu-system-<arch>` on PATH.
pub fn find_qemu_for(arch: &str) -> Result<PathBuf, QemuError> {
    let var = if arch == std::env::consts::ARCH {
        "PROVIUM_QEMU".to_string()
    } else {
        format!("PROVIUM_QEMU_{}", arch.to_uppercase())
    };
    if let Some(q) = std::env::var_os(&var).filter(|v| !v.is_empty()) {
        let q = PathBuf::from(q);
        check_qemu(&q)?;
        return Ok(q);
    }
    let name = format!("qemu-system-{arch}");
    match which::which(&name) {
        Ok(p) => Ok(p),
        Err(_) => Err(QemuError::NotFound(name)),
    }
}

/// A QEMU given by the user answers `--version` like QEMU within two seconds (checked once per
/// process), so that a wrong `PROVIUM_QEMU` is an error at once, not a boot that times out.
fn check_qemu(qemu: &Path) -> Result<(), QemuError> {
    static CHECKED: std::sync::Mutex<Vec<(PathBuf, Result<(), QemuError>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut checked = crate::machine::sync::lock(&CHECKED);
    if let Some((_, r)) = checked.iter().find(|(p, _)| p == qemu) {
        return r.clone();
    }
    let result = (|| -> Result<(), QemuError> {
        let mut child = std::process::Command::new(qemu)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| QemuError::Unrunnable {
                path: qemu.to_path_buf(),
                cause: std::sync::Arc::new(e),
            })?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(QemuError::NoAnswer(qemu.to_path_buf()));
                }
            }
        }
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        if out.contains("QEMU emulator version") {
            Ok(())
        } else {
            Err(QemuError::NotQemu {
                path: qemu.to_path_buf(),
                first_line: out.lines().next().unwrap_or("nothing").to_string(),
            })
        }
    })();
    checked.push((qemu.to_path_buf(), result.clone()));
    result
}

/// qboot, when the QEMU installation ships it.
pub fn find_qboot(qemu: &Path) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/share/qemu/qboot.rom")];
    if let Some(prefix) = qemu.parent().and_then(Path::parent) {
        candidates.push(prefix.join("share/qemu/qboot.rom"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A value inside a QEMU option list: commas are doubled.
pub fn qemu_escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LaunchPlan {
        LaunchPlan {
            qemu: "qemu-system-x86_64".into(),
            machine: MachineKind::Microvm,
            accel: Accel::Tcg,
            cpu: "max".into(),
            cpus: 1,
            memory_mib: 256,
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "console=ttyS0".into(),
            console_log: "/run/console.log".into(),
            qmp_socket: None,
            shared_memory: None,
            firmware: Some("/qboot.rom".into()),
            devices: vec!["-device".into(), "x".into()],
            incoming: None,
            acpi: true,
        }
    }

    #[test]
    fn microvm_plan_has_no_firmware_and_keeps_devices() {
        let args = plan().args();
        assert!(!args.contains(&"-bios".to_string()));
        assert!(args.windows(2).any(|w| w == ["-machine", "microvm"]));
        assert!(args.ends_with(&["-device".to_string(), "x".to_string()]));
        assert!(args.contains(&"-nodefaults".to_string()));
    }

    #[test]
    fn shared_memory_is_wired_to_the_machine() {
        let mut p = plan();
        p.machine = MachineKind::Q35;
        p.shared_memory = Some(SharedMemory::Memfd);
        let args = p.args();
        assert!(args
            .windows(2)
            .any(|w| w == ["-machine", "q35,memory-backend=mem0"]));
        assert!(args
            .iter()
            .any(|a| a.starts_with("memory-backend-memfd,id=mem0,size=256M")));
        assert!(args.windows(2).any(|w| w == ["-bios", "/qboot.rom"]));
    }

    #[test]
    fn tsc_frequency_only_on_microvm() {
        assert!(base_kernel_args(MachineKind::Microvm, Some(2_000_000))
            .contains(&"tsc_early_khz=2000000".to_string()));
        assert!(!base_kernel_args(MachineKind::Q35, Some(2_000_000))
            .iter()
            .any(|a| a.starts_with("tsc_early_khz")));
    }
}
