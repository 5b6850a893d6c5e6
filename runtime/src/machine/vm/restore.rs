//! Snapshots: saving a booted VM (its RAM already lives in a file) and resuming one,
//! copy-on-write (firecracker's build-from-snapshot; `boot` is build-for-boot).

use super::boot::{exited, failed_start, spawn_qemu, sweep_once};
use super::{gate, SnapshotError, StartError, State, Vm, VmError, VmInfo, DEFAULT_SYSCALL_TIMEOUT};
use crate::event::BootPhase;
use crate::machine::cleanup::{RunDir, Supervised};
use crate::machine::client::AgentClient;
use crate::machine::error::{IoContext, IoError};
use crate::machine::qemu::{LaunchPlan, SharedMemory};
use crate::machine::qmp::QmpError;
use crate::machine::transport;
use crate::machine::transport::serial::{BUS, TERMINAL_CHARDEV};
use provium_agent::protocol::{Hello, Request, Response};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a resumed agent may take to answer its first ping.
const RESUME_ANSWER: Duration = Duration::from_secs(5);

/// A snapshot of a booted VM: guest RAM in a file, device state in another, and how to start a
/// QEMU that resumes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub launch: LaunchPlan,
    pub hello: Hello,
    pub info: VmInfo,
    pub ram: PathBuf,
    pub state: PathBuf,
    /// The console log of the boot the snapshot was taken from: a resumed VM's log starts
    /// with it, so that its console evidence is the same as a booted VM's.
    #[serde(default)]
    pub boot_console: Option<PathBuf>,
}

impl Vm {
    /// Saves the running VM into `dir` (its RAM must already live there: boot it with
    /// `snapshot_memory`). The VM is stopped afterwards. Only device state is written (about
    /// 60 KB): RAM stays in the file.
    pub fn snapshot(&mut self, dir: &Path) -> Result<Snapshot, VmError> {
        let Some(SharedMemory::File {
            path: ram,
            share: true,
        }) = self.launch.shared_memory.clone()
        else {
            return Err(SnapshotError::NotBootedForSnapshot.into());
        };
        let qmp_path = self.launch.qmp_socket.clone().ok_or(SnapshotError::NoQmp)?;
        let state = dir.join("state");
        // A round trip first: the agent is then in its steady state, blocked reading the next
        // request. Saved in the middle of its start-up instead, every resume would finish that
        // work with a cold translation cache (78 ms to ready instead of 42 ms under TCG).
        self.ping()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let result = (|| -> Result<(), QmpError> {
            let mut qmp = crate::machine::qmp::Qmp::connect(&qmp_path, deadline)?;
            qmp.execute(
                "migrate-set-capabilities",
                serde_json::json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
            )?;
            qmp.execute(
                "migrate-set-parameters",
                serde_json::json!({"max-bandwidth": 8u64 << 30}),
            )?;
            // QEMU 7.2 rejects `file:` URIs; `exec:` works (and the path has no shell specials).
            qmp.execute(
                "migrate",
                serde_json::json!({"uri": format!("exec:cat > '{}'", state.display())}),
            )?;
            qmp.wait_migration(deadline)
        })();
        self.kill();
        result.map_err(SnapshotError::from)?;
        Ok(Snapshot {
            launch: self.launch.clone(),
            hello: self.hello.clone(),
            info: self.info.clone(),
            ram,
            state,
            boot_console: None,
        })
    }

    /// Starts a VM from a snapshot. The guest RAM file is mapped copy-on-write: the snapshot is
    /// never changed, and every resume is independent of the others.
    pub fn resume(snapshot: &Snapshot) -> Result<Vm, VmError> {
        Self::resume_copy_on_write(snapshot, false)
    }

    /// [`Vm::resume`] with the guest's `/dev/hvc0` on the host's terminal (`provium shell`): the
    /// console port is hot-added once the guest runs, and its device node appears shortly after.
    pub fn resume_on_terminal(snapshot: &Snapshot) -> Result<Vm, VmError> {
        Self::resume_copy_on_write(snapshot, true)
    }

    fn resume_copy_on_write(snapshot: &Snapshot, terminal: bool) -> Result<Vm, VmError> {
        Self::resume_with_ram(
            snapshot,
            SharedMemory::File {
                path: snapshot.ram.clone(),
                share: false,
            },
            terminal,
        )
    }

    /// Starts a VM from a snapshot whose RAM was copied to `ram`, mapped shared: the guest
    /// writes into that file, so the VM can be saved again as a snapshot of its own (a fixture
    /// built on top of a plain boot's build instead of a boot of its own).
    pub fn resume_into(snapshot: &Snapshot, ram: &Path) -> Result<Vm, VmError> {
        Self::resume_with_ram(
            snapshot,
            SharedMemory::File {
                path: ram.to_path_buf(),
                share: true,
            },
            false,
        )
    }

    fn resume_with_ram(
        snapshot: &Snapshot,
        ram: SharedMemory,
        terminal: bool,
    ) -> Result<Vm, VmError> {
        crate::machine::signals::install();
        sweep_once();
        let launched = Instant::now();
        let ticket = gate::admit(snapshot.launch.memory_mib, snapshot.launch.cpus);
        let admitted = Instant::now();
        let run_dir = RunDir::create()
            .map_err(|e| StartError::from(IoError::new("creating a run directory", e)))?;
        let dir = run_dir.path().to_path_buf();
        let mut transport =
            transport::prepare(crate::machine::transport::TransportKind::VirtioSerial, &dir)
                .map_err(StartError::from)?;
        let console_log = dir.join("console.log");
        let mut launch = snapshot.launch.clone();
        launch.console_log = console_log.clone();
        launch.qmp_socket = Some(dir.join("qmp.sock"));
        launch.devices = transport.qemu_args(launch.machine);
        if terminal {
            // The console port is added once the guest runs (below): a snapshot's devices are
            // those of its boot, and a port in every VM would cost every boot its setup.
            launch.devices.extend([
                "-chardev".to_string(),
                format!("stdio,id={TERMINAL_CHARDEV},signal=off"),
            ]);
        }
        launch.shared_memory = Some(ram);
        launch.incoming = Some("defer".into());
        seed_console(&console_log, snapshot)?;
        // The initramfs is read when QEMU starts: a lease keeps it from collection until this
        // returns, and stamps its use (a fixture may resume for weeks without a boot).
        let _initrd_lease = crate::machine::cache_lease::CacheLease::take(&launch.initrd);
        let qemu_log = dir.join("qemu.log");
        // QEMU reads the device state from an inherited descriptor (`fd:`), which spares the
        // shell and `cat` that `exec:` costs.
        let state = std::fs::File::open(&snapshot.state)
            .io_context(|| format!("opening the snapshot {}", snapshot.state.display()))
            .map_err(StartError::from)?;
        let state_fd = std::os::fd::AsRawFd::as_raw_fd(&state);
        let started = Instant::now();
        let spawned = spawn_qemu(&launch, &qemu_log, |cmd| {
            if terminal {
                cmd.stdin(std::process::Stdio::inherit())
                    .stdout(std::process::Stdio::inherit());
            }
            // SAFETY: fcntl on a descriptor that stays open until QEMU has started.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                    if libc::fcntl(state_fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            terminal
        });
        drop(state);
        let mut qemu = spawned?;
        let spawned = Instant::now();
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "resume: QEMU spawned"
        );
        let deadline = started + Duration::from_secs(60);
        let failure = |qemu: &mut Supervised, reason: String| {
            failed_start(
                qemu,
                format!("resuming the snapshot: {reason}"),
                &qemu_log,
                &console_log,
            )
        };
        // The connection stays open for the terminal's console port (below).
        let incoming = (|| -> Result<crate::machine::qmp::Qmp, QmpError> {
            let qmp_path = launch.qmp_socket.clone().unwrap_or_default();
            let mut qmp = crate::machine::qmp::Qmp::connect(&qmp_path, deadline)?;
            qmp.execute_pipelined(&[
                (
                    "migrate-set-capabilities",
                    serde_json::json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
                ),
                (
                    "migrate-incoming",
                    serde_json::json!({"uri": format!("fd:{state_fd}")}),
                ),
            ])?;
            Ok(qmp)
        })();
        let mut qmp = match incoming {
            Ok(qmp) => qmp,
            Err(e) => return Err(failure(&mut qemu, e.to_string())),
        };
        let migrating = Instant::now();
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "resume: incoming started"
        );
        let alive = |q: &mut Supervised| exited(q, "while resuming");
        let conn = {
            let q = &mut qemu;
            match transport.accept(deadline, &mut || alive(q)) {
                Ok(c) => c,
                Err(e) => return Err(failure(&mut qemu, e.to_string())),
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "resume: transport accepted"
        );
        let mut info = snapshot.info.clone();
        info.boot_ms = started.elapsed().as_millis() as u64;
        info.run_dir = run_dir
            .is_kept()
            .then(|| run_dir.path().display().to_string());
        let mut vm = Vm {
            state: State::Running(AgentClient::new(conn)),
            qemu,
            transport,
            console_log,
            run_dir,
            info,
            hello: snapshot.hello.clone(),
            syscall_timeout: DEFAULT_SYSCALL_TIMEOUT,
            launch,
            _ticket: ticket,
            held: Vec::new(),
            requests: 0,
        };
        // The agent is blocked in a read on the port: a ping resumes the conversation. The
        // guest's wall clock stopped with the snapshot and its RNG state is shared by every
        // resume: the clock is set (never backwards) and fresh host randomness mixed in, in the
        // same trip.
        let answers = {
            let sync = clock_request();
            let State::Running(client) = &mut vm.state else {
                return Err(VmError::NotRunning);
            };
            // A good resume answers in tens of milliseconds; a damaged snapshot never does, and
            // its caller builds the fixture again rather than wait long.
            client.call_pipelined(&[Request::Ping, sync], Some(Instant::now() + RESUME_ANSWER))
        };
        match answers {
            Ok(a) if matches!(a.as_slice(), [Response::Pong, Response::Done]) => {}
            Ok(a) => return Err(VmError::Protocol(format!("resume: {a:?}"))),
            Err(e) => return Err(vm.lost(e)),
        }
        if terminal {
            let added = qmp.execute(
                "device_add",
                serde_json::json!({
                    "driver": "virtconsole",
                    "bus": format!("{BUS}.0"),
                    "nr": 0,
                    "chardev": TERMINAL_CHARDEV,
                }),
            );
            if let Err(e) = added {
                return Err(failed_start(
                    &mut vm.qemu,
                    format!("adding the terminal's console port: {e}"),
                    &qemu_log,
                    &vm.console_log,
                ));
            }
        }
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "resume: ready");
        vm.info.boot_ms = started.elapsed().as_millis() as u64;
        vm.info.phases = vec![
            BootPhase::new("resource gate", admitted - launched),
            BootPhase::new("run directory, transport, console", started - admitted),
            BootPhase::new("spawning QEMU", spawned - started),
            BootPhase::new("QMP: incoming migration", migrating - spawned),
            BootPhase::new(
                "guest resumes, first answer (ping, clock)",
                migrating.elapsed(),
            ),
        ];
        Ok(vm)
    }
}

/// Starts a resumed VM's console log with the boot log of its snapshot and a line that marks
/// the resume; QEMU appends what the guest prints from then on.
fn seed_console(console_log: &Path, snapshot: &Snapshot) -> Result<(), VmError> {
    let mut text = match &snapshot.boot_console {
        Some(p) => std::fs::read(p).unwrap_or_default(),
        None => Vec::new(),
    };
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    let name = snapshot
        .info
        .fixture
        .as_deref()
        .unwrap_or(&snapshot.info.profile);
    text.extend_from_slice(
        format!("--- provium: resumed from the snapshot of `{name}` ---\n").as_bytes(),
    );
    std::fs::write(console_log, text)
        .io_context(|| format!("writing {}", console_log.display()))
        .map_err(|e| StartError::from(e).into())
}

/// The host's time and 32 fresh random bytes, for the guest.
pub(super) fn clock_request() -> Request {
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut seed = vec![0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut seed);
    }
    Request::SyncClock { unix_ns, seed }
}
