//! Booting a VM: from a decided plan to QEMU with a ready agent (firecracker's build-for-boot;
//! `restore` is build-from-snapshot).

use super::plan::{self, BootOptions, BootPlan};
use super::{
    console, gate, StartError, State, Vm, VmError, VmInfo, CONSOLE_TAIL_LINES,
    DEFAULT_SYSCALL_TIMEOUT,
};
use crate::event::BootPhase;
use crate::machine::accel::Accel;
use crate::machine::cleanup::{self, RunDir, Supervised};
use crate::machine::client::AgentClient;
use crate::machine::error::{IoContext, IoError};
use crate::machine::profile::Profile;
use crate::machine::qemu::{LaunchPlan, SharedMemory};
use crate::machine::transport::serial::TERMINAL_CHARDEV;
use crate::machine::transport::{self, QemuExited, Transport, TransportError};
use provium_agent::protocol::decode_hello;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Vm {
    /// Boots `profile` and waits for the agent.
    pub fn boot(profile: &Profile, opts: &BootOptions) -> Result<Vm, VmError> {
        crate::machine::signals::install();
        sweep_once();
        let started = Instant::now();
        let plan = plan::plan(profile, opts)?;
        let planned = started.elapsed();
        let mut vm = Vm::launch(&plan)?;
        vm.info.phases.insert(
            0,
            BootPhase::new("plan (kernel, modules, initramfs)", planned),
        );
        Ok(vm)
    }

    /// Starts QEMU for a decided plan.
    pub fn launch(plan: &BootPlan) -> Result<Vm, VmError> {
        let launched = Instant::now();
        let ticket = gate::admit(plan.memory_mib, plan.cpus);
        let admitted = Instant::now();
        let mut run_dir = RunDir::create()
            .map_err(|e| StartError::from(IoError::new("creating a run directory", e)))?;
        if plan.keep_run_dir {
            run_dir.keep();
        }
        let dir = run_dir.path().to_path_buf();
        let mut transport = transport::prepare(plan.transport, &dir).map_err(StartError::from)?;
        let console_log = dir.join("console.log");
        let mut launch = launch_plan(plan, &dir, transport.as_ref());
        if plan.terminal {
            // `signal=off`: Ctrl-C goes to the guest's shell, not to QEMU.
            launch.devices.extend([
                "-chardev".to_string(),
                format!("stdio,id={TERMINAL_CHARDEV},signal=off"),
                "-device".to_string(),
                format!("virtconsole,chardev={TERMINAL_CHARDEV}"),
            ]);
        }
        let qemu_log = dir.join("qemu.log");
        let started = Instant::now();
        let terminal = plan.terminal;
        let mut qemu = spawn_qemu(&launch, &qemu_log, |cmd| {
            if terminal {
                cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
            }
            terminal
        })?;
        let spawned = Instant::now();
        let deadline = started + plan.timeout;

        let boot_failure = |qemu: &mut Supervised, reason: String| {
            failed_start(qemu, reason, &qemu_log, &console_log)
        };
        let alive = |q: &mut Supervised| exited(q, "during boot");
        let conn = {
            let q = &mut qemu;
            match transport.accept(deadline, &mut || alive(q)) {
                Ok(c) => c,
                Err(e) => return Err(boot_failure(&mut qemu, e.to_string())),
            }
        };
        let mut client = AgentClient::new(conn);
        let payload = loop {
            let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
            match client.connection().recv(Some(slice)) {
                Ok(p) => break p,
                Err(TransportError::TimedOut) if Instant::now() < deadline => {
                    if let Err(e) = alive(&mut qemu) {
                        return Err(boot_failure(&mut qemu, e.to_string()));
                    }
                }
                Err(TransportError::TimedOut) => {
                    let secs = plan.timeout.as_secs_f64();
                    return Err(boot_failure(
                        &mut qemu,
                        format!("no hello from the agent within {secs:.0} s (boot timeout)"),
                    ));
                }
                Err(e) => {
                    std::thread::sleep(Duration::from_millis(100));
                    let why = match qemu.try_wait() {
                        Some(status) => format!("QEMU exited during boot ({status})"),
                        None => format!("{e}"),
                    };
                    return Err(boot_failure(&mut qemu, why));
                }
            }
        };
        let boot_ms = started.elapsed().as_millis() as u64;
        let greeted = Instant::now();
        let hello = match decode_hello(&payload) {
            Ok(h) => h,
            Err(e) => return Err(boot_failure(&mut qemu, e.to_string())),
        };
        if !hello.module_errors.is_empty() {
            tracing::warn!(errors = ?hello.module_errors, "guest modules failed to load");
        }
        let mut phases = vec![
            BootPhase::new("resource gate", admitted - launched),
            BootPhase::new("run directory and transport", started - admitted),
            BootPhase::new("spawning QEMU", spawned - started),
        ];
        // QEMU connects the host's socket as it starts, so the guest's part ends with the
        // hello, not with the connection.
        phases.extend(guest_phases(&hello.timeline, greeted - spawned));
        let info = VmInfo {
            profile: plan.profile.clone(),
            kernel_release: hello.release.clone(),
            arch: hello.machine.clone(),
            accel: plan.accel.to_string(),
            transport: hello.transport.clone(),
            machine: plan.machine.to_string(),
            loaded_as: plan.loaded_as,
            boot_ms,
            guest_ready_ms: hello.ready_us / 1000,
            fixture: None,
            run_dir: run_dir
                .is_kept()
                .then(|| run_dir.path().display().to_string()),
            phases,
        };
        Ok(Vm {
            state: State::Running(client),
            qemu,
            transport,
            console_log,
            run_dir,
            info,
            hello,
            syscall_timeout: DEFAULT_SYSCALL_TIMEOUT,
            launch,
            _ticket: ticket,
            held: Vec::new(),
            requests: 0,
        })
    }
}

/// QEMU's command line for `plan` in the run directory `dir`, with `transport`'s devices.
fn launch_plan(plan: &BootPlan, dir: &Path, transport: &dyn Transport) -> LaunchPlan {
    let mut kernel_args = plan.kernel_args.clone();
    kernel_args.extend(transport.kernel_args());
    LaunchPlan {
        qemu: plan.qemu.clone(),
        machine: plan.machine,
        accel: plan.accel,
        cpu: plan.cpu.clone(),
        cpus: plan.cpus,
        memory_mib: plan.memory_mib,
        kernel: plan.boot_file.clone(),
        initrd: plan.initrd.clone(),
        cmdline: kernel_args.join(" "),
        console_log: dir.join("console.log"),
        qmp_socket: Some(dir.join("qmp.sock")),
        shared_memory: match &plan.snapshot_memory {
            Some(path) => Some(SharedMemory::File {
                path: path.clone(),
                share: true,
            }),
            None => transport
                .needs_shared_memory()
                .then_some(SharedMemory::Memfd),
        },
        firmware: plan.firmware.clone(),
        devices: transport.qemu_args(plan.machine),
        incoming: None,
        acpi: plan.acpi,
    }
}

/// The physical limit a cold boot is measured against (`provium bench boot --phases`): the
/// same command line and kernel, an initramfs holding only the agent as init, which powers the
/// VM off at once (`provium_poweroff`, which the kernel hands init as an argument): QEMU's
/// start to its exit.
pub fn bare_boot(plan: &BootPlan) -> Result<Duration, VmError> {
    let agent = crate::machine::agent_binary::bytes_for(plan.arch)
        .map_err(plan::PlanError::from)?
        .into_owned();
    let (initrd, _lease) =
        crate::machine::initramfs::build_cached(&crate::machine::initramfs::InitramfsSpec {
            agent,
            ..Default::default()
        })
        .map_err(plan::PlanError::from)?;
    let _ticket = gate::admit(plan.memory_mib, plan.cpus);
    let run_dir = RunDir::create()
        .map_err(|e| StartError::from(IoError::new("creating a run directory", e)))?;
    let dir = run_dir.path().to_path_buf();
    let transport = transport::prepare(plan.transport, &dir).map_err(StartError::from)?;
    let mut plan = plan.clone();
    plan.kernel_args.push("provium_poweroff".into());
    plan.initrd = initrd;
    let launch = launch_plan(&plan, &dir, transport.as_ref());
    let started = Instant::now();
    let mut qemu = spawn_qemu(&launch, &dir.join("qemu.log"), |_| false)?;
    loop {
        if qemu.try_wait().is_some() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > plan.timeout {
            return Err(failed_start(
                &mut qemu,
                "the bare boot did not power off within the boot timeout".into(),
                &dir.join("qemu.log"),
                &dir.join("console.log"),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts QEMU for `launch` with stdio closed and stderr in `qemu_log`; `configure` adjusts
/// the command first (descriptors to inherit).
pub(super) fn spawn_qemu(
    launch: &LaunchPlan,
    qemu_log: &Path,
    configure: impl FnOnce(&mut Command) -> bool,
) -> Result<Supervised, VmError> {
    let stderr = std::fs::File::create(qemu_log)
        .io_context(|| format!("creating {}", qemu_log.display()))
        .map_err(StartError::from)?;
    let mut cmd = Command::new(&launch.qemu);
    cmd.args(launch.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    if launch.accel == Accel::Tcg {
        // QEMU asks for transparent huge pages on the guest's RAM, and the host then zeroes
        // 2 MiB at each first touch: a cold boot touches most of its RAM that way, about 0.15 s
        // of the host's time zeroing memory the guest never reads (when the host has huge
        // pages free; 4 KiB otherwise, hence boots that took 1.38 or 1.55 s by chance). Under
        // TCG, QEMU maps guest pages 4 KiB at a time anyway; under KVM huge pages speed the
        // guest up, so they stay.
        // SAFETY: prctl is async-signal-safe; it only changes this child's memory policy.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                // Linux ≥ 3.15; on an older kernel the boot is only slower.
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                Ok(())
            });
        }
    }
    let on_terminal = configure(&mut cmd);
    tracing::debug!(args = ?launch.args(), "starting QEMU");
    Ok(Supervised::spawn_grouped(cmd, "qemu", !on_terminal)
        .io_context(|| format!("starting {}", launch.qemu.display()))
        .map_err(StartError::from)?)
}

/// An error if QEMU has exited (`when`: "during boot", "while resuming").
pub(super) fn exited(qemu: &mut Supervised, when: &'static str) -> Result<(), QemuExited> {
    match qemu.try_wait() {
        Some(status) => Err(QemuExited { when, status }),
        None => Ok(()),
    }
}

/// A VM that did not start: QEMU is stopped, and the error carries what QEMU and the guest said.
pub(super) fn failed_start(
    qemu: &mut Supervised,
    reason: String,
    qemu_log: &Path,
    console: &Path,
) -> VmError {
    qemu.kill();
    VmError::Boot {
        reason: with_qemu_log(reason, qemu_log),
        console: console::tail(console, CONSOLE_TAIL_LINES),
    }
}

fn with_qemu_log(reason: String, qemu_log: &Path) -> String {
    let log = std::fs::read_to_string(qemu_log).unwrap_or_default();
    let log = log.trim();
    if log.is_empty() {
        reason
    } else {
        format!("{reason}\nQEMU said:\n{log}")
    }
}

pub(super) fn sweep_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let n = cleanup::sweep_stale();
        if n > 0 {
            tracing::info!("removed {n} run directories left by killed runs");
        }
    });
}

/// The guest's part of a boot, from QEMU's start to the agent's hello (`between`), split by the
/// agent's timeline (guest time since the kernel's clock started: `init`, `mounted`, `modules`,
/// `link`): before that clock starts (QEMU, firmware, loading the kernel, and the kernel's own
/// early boot up to its timekeeping, a third of a boot under TCG; and the hello's trip back),
/// the kernel to init, then the agent's mounts, modules and transport.
fn guest_phases(timeline: &[(String, u64)], between: Duration) -> Vec<BootPhase> {
    let at = |stage: &str| {
        timeline
            .iter()
            .find(|(s, _)| s == stage)
            .map(|(_, us)| Duration::from_micros(*us))
    };
    let (Some(init), Some(mounted), Some(modules), Some(link)) =
        (at("init"), at("mounted"), at("modules"), at("link"))
    else {
        return vec![BootPhase::new("QEMU start to the agent's hello", between)];
    };
    vec![
        BootPhase::new(
            "QEMU, firmware, the kernel before its clock",
            between.saturating_sub(link),
        ),
        BootPhase::new("kernel to init", init),
        BootPhase::new("agent mounts", mounted.saturating_sub(init)),
        BootPhase::new("agent modules", modules.saturating_sub(mounted)),
        BootPhase::new("agent transport", link.saturating_sub(modules)),
    ]
}
