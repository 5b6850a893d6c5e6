//! A running VM and the Rust API to it.
//!
//! ```no_run
//! use provium::machine::vm::{Vm, BootOptions};
//! use provium::machine::profile::Profiles;
//!
//! let profile = Profiles::builtin().get("minimal")?;
//! let mut vm = Vm::boot(&profile, &BootOptions::default())?;
//! assert_eq!(vm.root().syscall_args(3, &[-1])?, -9); // close(-1) = -EBADF
//! vm.shutdown()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod boot;
pub use boot::bare_boot;
pub mod console;
pub mod dump;
pub mod gate;
pub mod plan;
mod restore;
mod worker;

pub use plan::{BootOptions, BootPlan, LoadedAs};
pub use restore::Snapshot;
pub use worker::Worker;

use crate::machine::cleanup::{RunDir, Supervised};
use crate::machine::client::{AgentClient, ClientError};
use crate::machine::error::IoError;
use crate::machine::qemu::LaunchPlan;
use crate::machine::qmp::QmpError;
use crate::machine::transport::{PrepareError, Transport, TransportError};
use provium_agent::protocol::{
    AgentError, Credentials, Hello, Request, Response, SyscallCall, SyscallOutcome, WorkerId,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Extra time the host allows beyond the agent's own timeout before it declares the VM hung.
const HOST_MARGIN: Duration = Duration::from_secs(15);
const DEFAULT_SYSCALL_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(120);
/// Enough console to find where the kernel started reporting trouble (`console::excerpt`).
const CONSOLE_TAIL_LINES: usize = 300;

/// What went wrong with a VM. The first three happen before a guest runs (planning, starting
/// QEMU, saving a snapshot); the rest are about a VM that was started.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the VM did not become ready: {reason}")]
    Boot { reason: String, console: String },
    #[error("the VM was lost: {reason}")]
    Lost { reason: String, console: String },
    #[error("{0}")]
    Agent(AgentError),
    #[error("unexpected answer from the agent: {0}")]
    Protocol(String),
    #[error("the VM is not running (it was shut down, killed or lost earlier)")]
    NotRunning,
    /// The request was not sent (it is over a protocol limit); the VM goes on.
    #[error("{0}")]
    Unsendable(String),
}

/// Why QEMU could not be started (before any guest ran).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Transport(#[from] PrepareError),
}

/// Why a VM could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the VM cannot be snapshotted: it was not booted for one (a VM resumed from a fixture \
         cannot be saved again; boot it in the fixture script instead)"
    )]
    NotBootedForSnapshot,
    #[error("the VM has no QMP socket")]
    NoQmp,
    #[error("taking the snapshot: {0}")]
    Qmp(#[from] QmpError),
}

impl VmError {
    /// The last lines of the guest console, when the error is about the VM itself.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            VmError::Boot { console, .. } | VmError::Lost { console, .. } => Some(console),
            _ => None,
        }
    }

    /// True when the VM cannot be used any more.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            VmError::Boot { .. } | VmError::Lost { .. } | VmError::NotRunning
        )
    }
}

/// A mount point of [`Vm::mount_vfs`]: mounted now (`true`), already (`false`), or an errno.
pub type VfsMount = (&'static str, Result<bool, i64>);

pub use crate::event::VmInfo;

enum State {
    Running(AgentClient),
    Stopped,
}

/// A booted VM with a ready agent.
pub struct Vm {
    state: State,
    qemu: Supervised,
    // Keeps the transport's listener and any back-end daemon alive with the VM.
    transport: Box<dyn Transport>,
    console_log: PathBuf,
    run_dir: RunDir,
    info: VmInfo,
    hello: Hello,
    syscall_timeout: Duration,
    /// How QEMU was started, for snapshots.
    launch: LaunchPlan,
    // The VM's share of the host's memory and CPUs while it runs.
    _ticket: gate::Ticket,
    /// What must live as long as the VM (the lease on the fixture build it was resumed from).
    held: Vec<Box<dyn std::any::Any + Send>>,
    /// Requests sent so far: whether anything happened in the guest since a point.
    requests: u64,
}

impl Vm {
    pub fn info(&self) -> &VmInfo {
        &self.info
    }

    /// Keeps `thing` alive as long as the VM (a fixture build's lease).
    pub fn hold(&mut self, thing: Box<dyn std::any::Any + Send>) {
        self.held.push(thing);
    }

    /// Marks the VM as resumed from (or prepared as) fixture `name`, for reports.
    pub fn set_fixture(&mut self, name: &str) {
        self.info.fixture = Some(name.to_string());
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// Where to ask this VM for a task dump before killing it, if its transport has a port.
    pub fn dump_target(&self) -> Option<dump::DumpTarget> {
        Some(dump::DumpTarget {
            console: self.console_log.clone(),
            port: self.transport.dump_port()?,
        })
    }

    pub fn console_tail(&self, lines: usize) -> String {
        console::tail(&self.console_log, lines)
    }

    pub fn qemu_pid(&self) -> u32 {
        self.qemu.pid()
    }

    /// How long the agent lets one syscall block before it kills the executor.
    pub fn set_syscall_timeout(&mut self, timeout: Duration) {
        self.syscall_timeout = timeout;
    }

    pub fn syscall_timeout(&self) -> Duration {
        self.syscall_timeout
    }

    /// Sends one request; a transport failure marks the VM lost, with the console tail.
    pub fn request(&mut self, request: &Request, timeout: Duration) -> Result<Response, VmError> {
        let State::Running(client) = &mut self.state else {
            return Err(VmError::NotRunning);
        };
        self.requests += 1;
        match client.call(request, Some(Instant::now() + timeout)) {
            Ok(Response::Error(e)) => Err(VmError::Agent(e)),
            Ok(r) => Ok(r),
            // Nothing was sent: the conversation is still in step.
            Err(ClientError::Encode(why)) => Err(VmError::Unsendable(why)),
            Err(e) => Err(self.lost(e)),
        }
    }

    fn lost(&mut self, e: ClientError) -> VmError {
        let reason = match self.qemu.wait_timeout(Duration::from_millis(300)) {
            Some(status) => format!("QEMU exited ({status}); {e}"),
            None => match e {
                ClientError::Transport(TransportError::TimedOut) => {
                    "the agent stopped answering (the guest hung); QEMU was killed".into()
                }
                other => format!("{other}; QEMU was killed"),
            },
        };
        self.qemu.kill();
        self.state = State::Stopped;
        VmError::Lost {
            reason,
            console: console::tail(&self.console_log, CONSOLE_TAIL_LINES),
        }
    }

    pub fn ping(&mut self) -> Result<(), VmError> {
        match self.request(&Request::Ping, HOST_MARGIN)? {
            Response::Pong => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Mounts the virtual file systems the agent does not mount at boot (debugfs, tracefs,
    /// securityfs, configfs, bpf, pstore, mqueue, hugetlbfs, binfmt_misc). Returns, for each
    /// mount point, `Ok(true)` when mounted now, `Ok(false)` when it already was, or the errno
    /// (`ENODEV`: the kernel lacks that file system).
    pub fn mount_vfs(&mut self) -> Result<Vec<VfsMount>, VmError> {
        const VFS: [(&str, &str); 9] = [
            ("debugfs", "/sys/kernel/debug"),
            ("tracefs", "/sys/kernel/tracing"),
            ("securityfs", "/sys/kernel/security"),
            ("configfs", "/sys/kernel/config"),
            ("bpf", "/sys/fs/bpf"),
            ("pstore", "/sys/fs/pstore"),
            ("mqueue", "/dev/mqueue"),
            ("hugetlbfs", "/dev/hugepages"),
            ("binfmt_misc", "/proc/sys/fs/binfmt_misc"),
        ];
        let mounts =
            String::from_utf8_lossy(&self.root().read_file("/proc/self/mounts")?).to_string();
        let mounted = |target: &str| mounts.lines().any(|l| l.split(' ').nth(1) == Some(target));
        let cstr = |arg: u8, s: &str| provium_agent::protocol::Buffer {
            arg: Some(arg),
            data: [s.as_bytes(), b"\0"].concat(),
            len: s.len() as u32 + 1,
            output: false,
        };
        let mut out = Vec::new();
        for (fstype, target) in VFS {
            if mounted(target) {
                out.push((target, Ok(false)));
                continue;
            }
            // mkdir(target, 0755); EEXIST is fine (sysfs provides most of these directories).
            let _ = self.root().syscall(SyscallCall {
                nr: 83,
                args: [0, 0o755, 0, 0, 0, 0],
                buffers: vec![cstr(0, target)],
                ..Default::default()
            })?;
            // mount(fstype, target, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
            let outcome = self.root().syscall(SyscallCall {
                nr: 165,
                args: [0, 0, 0, 0x2 | 0x4 | 0x8, 0, 0],
                buffers: vec![cstr(0, fstype), cstr(1, target), cstr(2, fstype)],
                ..Default::default()
            })?;
            let result = match outcome {
                SyscallOutcome::Returned { ret: 0, .. } => Ok(true),
                SyscallOutcome::Returned { ret, .. } => Err(-ret),
                other => return Err(VmError::Protocol(format!("mount {target}: {other:?}"))),
            };
            out.push((target, result));
        }
        Ok(out)
    }

    pub fn dmesg(&mut self) -> Result<String, VmError> {
        match self.request(&Request::Dmesg, HOST_MARGIN)? {
            Response::Dmesg(text) => Ok(text),
            other => Err(unexpected(other)),
        }
    }

    /// How many requests this VM has been sent.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The kernel's taint bits (`/proc/sys/kernel/tainted`).
    pub fn tainted(&mut self) -> Result<u64, VmError> {
        match self.request(&Request::Tainted, HOST_MARGIN)? {
            Response::Tainted(bits) => Ok(bits),
            other => Err(unexpected(other)),
        }
    }

    /// Starts a worker: a separate executor process with these credentials.
    pub fn spawn_worker(&mut self, creds: Credentials) -> Result<WorkerId, VmError> {
        match self.request(&Request::Spawn(creds), HOST_MARGIN)? {
            Response::Worker(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub fn kill_worker(&mut self, id: WorkerId) -> Result<(), VmError> {
        match self.request(&Request::KillWorker(id), HOST_MARGIN)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the guest clock from the host's and reseeds its RNG.
    pub fn sync_clock(&mut self) -> Result<(), VmError> {
        match self.request(&restore::clock_request(), HOST_MARGIN)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends raw bytes as a frame and returns what the agent answered (robustness tests).
    pub fn send_raw_frame(&mut self, payload: &[u8]) -> Result<Response, VmError> {
        let State::Running(client) = &mut self.state else {
            return Err(VmError::NotRunning);
        };
        match client.call_raw(payload, Some(Instant::now() + HOST_MARGIN)) {
            Ok(r) => Ok(r),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Graceful shutdown: the agent syncs and powers off; QEMU is killed if it lingers.
    pub fn shutdown(&mut self) -> Result<(), VmError> {
        if !self.is_running() {
            return Ok(());
        }
        let answered = self.request(&Request::Shutdown, HOST_MARGIN);
        self.state = State::Stopped;
        if self.qemu.wait_timeout(Duration::from_secs(5)).is_none() {
            tracing::warn!(
                "the guest did not power off within 5 s of its shutdown; QEMU was stopped"
            );
            self.qemu.terminate(Duration::from_secs(1));
        }
        match answered {
            Ok(_) | Err(VmError::Lost { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the VM at once.
    pub fn kill(&mut self) {
        self.state = State::Stopped;
        self.qemu.kill();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unexpected(r: Response) -> VmError {
    VmError::Protocol(format!("{r:?}"))
}
