//! A running VM and the Rust API to it.
//!
//! ```no_run
//! use provium::machine::vm::{Vm, BootOptions};
//! use provium::machine::profile::Profiles;
//!
//! let profile = Profiles::builtin().get("minimal")?;
//! let mut vm = Vm::boot(&profile, &BootOptions::default())?;
//! assert_eq!(vm.syscall_args(3, &[-1])?, -9); // close(-1) = -EBADF
//! vm.shutdown()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod console;
pub mod gate;
pub mod plan;

pub use plan::{BootOptions, BootPlan, LoadedAs};

use crate::machine::cleanup::{self, RunDir, Supervised};
use crate::machine::client::{AgentClient, ClientError};
use crate::machine::profile::Profile;
use crate::machine::qemu::{LaunchPlan, SharedMemory};
use crate::machine::transport::{self, Transport, TransportError};
use provium_agent::protocol::{
    decode_hello, AgentError, Credentials, ExecCall, ExecResult, Hello, Operation, Request,
    Response, SyscallCall, SyscallOutcome, WorkerId,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Extra time the host allows beyond the agent's own timeout before it declares the VM hung.
const HOST_MARGIN: Duration = Duration::from_secs(15);
const DEFAULT_SYSCALL_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(120);
const CONSOLE_TAIL_LINES: usize = 40;
/// How long a resumed agent may take to answer its first ping.
const RESUME_ANSWER: Duration = Duration::from_secs(5);

/// What went wrong with a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0:#}")]
    Setup(#[from] anyhow::Error),
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
    _transport: Box<dyn Transport>,
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
}

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
    /// Boots `profile` and waits for the agent.
    pub fn boot(profile: &Profile, opts: &BootOptions) -> Result<Vm, VmError> {
        cleanup::install_signal_handler();
        sweep_once();
        let plan = plan::plan(profile, opts)?;
        Vm::launch(&plan)
    }

    /// Starts QEMU for a decided plan.
    pub fn launch(plan: &BootPlan) -> Result<Vm, VmError> {
        let ticket = gate::admit(plan.memory_mib, plan.cpus);
        let mut run_dir =
            RunDir::create().map_err(|e| anyhow::anyhow!("creating a run directory: {e}"))?;
        if plan.keep_run_dir {
            run_dir.keep();
        }
        let dir = run_dir.path().to_path_buf();
        let mut transport = transport::prepare(plan.transport, &dir)?;
        let mut kernel_args = plan.kernel_args.clone();
        kernel_args.extend(transport.kernel_args());
        let console_log = dir.join("console.log");
        let launch = LaunchPlan {
            qemu: plan.qemu.clone(),
            machine: plan.machine,
            accel: plan.accel,
            cpu: plan.cpu.clone(),
            cpus: plan.cpus,
            memory_mib: plan.memory_mib,
            kernel: plan.boot_file.clone(),
            initrd: plan.initrd.clone(),
            cmdline: kernel_args.join(" "),
            console_log: console_log.clone(),
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
        };
        let qemu_log = dir.join("qemu.log");
        let started = Instant::now();
        let mut qemu = spawn_qemu(&launch, &qemu_log, |_| {})?;
        let deadline = started + plan.timeout;

        let boot_failure = |qemu: &mut Supervised, reason: String| {
            failed_start(qemu, reason, &qemu_log, &console_log)
        };
        let alive = |q: &mut Supervised| exited(q, "during boot");
        let conn = {
            let q = &mut qemu;
            match transport.accept(deadline, &mut || alive(q)) {
                Ok(c) => c,
                Err(e) => return Err(boot_failure(&mut qemu, format!("{e:#}"))),
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
        let hello = match decode_hello(&payload) {
            Ok(h) => h,
            Err(e) => return Err(boot_failure(&mut qemu, e.to_string())),
        };
        if !hello.module_errors.is_empty() {
            tracing::warn!(errors = ?hello.module_errors, "guest modules failed to load");
        }
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
        };
        Ok(Vm {
            state: State::Running(client),
            qemu,
            _transport: transport,
            console_log,
            run_dir,
            info,
            hello,
            syscall_timeout: DEFAULT_SYSCALL_TIMEOUT,
            launch,
            _ticket: ticket,
            held: Vec::new(),
        })
    }

    /// Saves the running VM into `dir` (its RAM must already live there: boot it with
    /// `snapshot_memory`). The VM is stopped afterwards. Only device state is written (about
    /// 60 KB): RAM stays in the file.
    pub fn snapshot(&mut self, dir: &Path) -> Result<Snapshot, VmError> {
        let Some(SharedMemory::File {
            path: ram,
            share: true,
        }) = self.launch.shared_memory.clone()
        else {
            return Err(anyhow::anyhow!(
                "the VM cannot be snapshotted: it was not booted for one (a VM resumed from a \
                 fixture cannot be saved again; boot it in the fixture script instead)"
            )
            .into());
        };
        let qmp_path = self
            .launch
            .qmp_socket
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the VM has no QMP socket"))?;
        let state = dir.join("state");
        // A round trip first: the agent is then in its steady state, blocked reading the next
        // request. Saved in the middle of its start-up instead, every resume would finish that
        // work with a cold translation cache (78 ms to ready instead of 42 ms under TCG).
        self.ping()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let result = (|| -> anyhow::Result<()> {
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
        result.map_err(|e| VmError::Setup(e.context("taking the snapshot")))?;
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
        cleanup::install_signal_handler();
        sweep_once();
        let ticket = gate::admit(snapshot.launch.memory_mib, snapshot.launch.cpus);
        let run_dir =
            RunDir::create().map_err(|e| anyhow::anyhow!("creating a run directory: {e}"))?;
        let dir = run_dir.path().to_path_buf();
        let mut transport =
            transport::prepare(crate::machine::transport::TransportKind::VirtioSerial, &dir)?;
        let console_log = dir.join("console.log");
        let mut launch = snapshot.launch.clone();
        launch.console_log = console_log.clone();
        launch.qmp_socket = Some(dir.join("qmp.sock"));
        launch.devices = transport.qemu_args(launch.machine);
        launch.shared_memory = Some(SharedMemory::File {
            path: snapshot.ram.clone(),
            share: false,
        });
        launch.incoming = Some("defer".into());
        seed_console(&console_log, snapshot)?;
        let qemu_log = dir.join("qemu.log");
        // QEMU reads the device state from an inherited descriptor (`fd:`), which spares the
        // shell and `cat` that `exec:` costs.
        let state = std::fs::File::open(&snapshot.state).map_err(|e| {
            anyhow::anyhow!("opening the snapshot {}: {e}", snapshot.state.display())
        })?;
        let state_fd = std::os::fd::AsRawFd::as_raw_fd(&state);
        let started = Instant::now();
        let spawned = spawn_qemu(&launch, &qemu_log, |cmd| {
            // SAFETY: fcntl on a descriptor that stays open until QEMU has started.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                    if libc::fcntl(state_fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        drop(state);
        let mut qemu = spawned?;
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
        let incoming = (|| -> anyhow::Result<()> {
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
            Ok(())
        })();
        if let Err(e) = incoming {
            return Err(failure(&mut qemu, format!("{e:#}")));
        }
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "resume: incoming started"
        );
        let alive = |q: &mut Supervised| exited(q, "while resuming");
        let conn = {
            let q = &mut qemu;
            match transport.accept(deadline, &mut || alive(q)) {
                Ok(c) => c,
                Err(e) => return Err(failure(&mut qemu, format!("{e:#}"))),
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "resume: transport accepted"
        );
        let mut info = snapshot.info.clone();
        info.boot_ms = started.elapsed().as_millis() as u64;
        let mut vm = Vm {
            state: State::Running(AgentClient::new(conn)),
            qemu,
            _transport: transport,
            console_log,
            run_dir,
            info,
            hello: snapshot.hello.clone(),
            syscall_timeout: DEFAULT_SYSCALL_TIMEOUT,
            launch,
            _ticket: ticket,
            held: Vec::new(),
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
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "resume: ready");
        vm.info.boot_ms = started.elapsed().as_millis() as u64;
        Ok(vm)
    }

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
        check_size(request)?;
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

    fn run(
        &mut self,
        worker: WorkerId,
        op: Operation,
        timeout: Duration,
    ) -> Result<Response, VmError> {
        self.request(&Request::Run { worker, op }, timeout)
    }

    pub fn ping(&mut self) -> Result<(), VmError> {
        match self.request(&Request::Ping, HOST_MARGIN)? {
            Response::Pong => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// One raw syscall in `worker` (0 is the VM's own executor).
    pub fn syscall_in(
        &mut self,
        worker: WorkerId,
        mut call: SyscallCall,
    ) -> Result<SyscallOutcome, VmError> {
        if call.timeout_ms == 0 {
            call.timeout_ms = self.syscall_timeout.as_millis() as u32;
        }
        let timeout = Duration::from_millis(call.timeout_ms as u64) + HOST_MARGIN;
        match self.run(worker, Operation::Syscall(call), timeout)? {
            Response::Syscall(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    pub fn syscall(&mut self, call: SyscallCall) -> Result<SyscallOutcome, VmError> {
        self.syscall_in(0, call)
    }

    /// A syscall with integer arguments only; returns the raw return value. An executor death
    /// or timeout is an error here; use [`Vm::syscall`] to observe them as outcomes.
    pub fn syscall_args(&mut self, nr: i64, args: &[i64]) -> Result<i64, VmError> {
        let mut a = [0i64; 6];
        for (slot, v) in a.iter_mut().zip(args) {
            *slot = *v;
        }
        match self.syscall(SyscallCall {
            nr,
            args: a,
            ..Default::default()
        })? {
            SyscallOutcome::Returned { ret, .. } => Ok(ret),
            other => Err(VmError::Protocol(format!("syscall {nr}: {other:?}"))),
        }
    }

    /// Many syscalls in one round trip.
    pub fn batch_in(
        &mut self,
        worker: WorkerId,
        mut calls: Vec<SyscallCall>,
    ) -> Result<Vec<SyscallOutcome>, VmError> {
        let per_call = self.syscall_timeout.as_millis() as u32;
        let mut budget = HOST_MARGIN;
        for c in &mut calls {
            if c.timeout_ms == 0 {
                c.timeout_ms = per_call;
            }
            budget += Duration::from_millis(c.timeout_ms as u64);
        }
        // An executor that dies mid-batch ends the agent's answer at the fatal call; the calls
        // after it are sent again, to the fresh executor.
        let mut results = Vec::with_capacity(calls.len());
        let mut request = Request::Run {
            worker,
            op: Operation::Batch(calls),
        };
        loop {
            let sent = match &request {
                Request::Run {
                    op: Operation::Batch(c),
                    ..
                } => c.len(),
                _ => 0,
            };
            if sent == 0 {
                return Ok(results);
            }
            let outcomes = match self.request(&request, budget)? {
                Response::Batch(o) => o,
                other => return Err(unexpected(other)),
            };
            let got = outcomes.len();
            let cut_short = got < sent
                && matches!(
                    outcomes.last(),
                    Some(
                        SyscallOutcome::ExecutorDied(_)
                            | SyscallOutcome::TimedOut
                            | SyscallOutcome::ExecutorBroken(_)
                    )
                );
            if got > sent || (got < sent && !cut_short) {
                return Err(VmError::Protocol(format!(
                    "a batch of {sent} calls was answered with {got} outcomes"
                )));
            }
            results.extend(outcomes);
            if let Request::Run {
                op: Operation::Batch(c),
                ..
            } = &mut request
            {
                c.drain(..got);
            }
        }
    }

    pub fn batch(&mut self, calls: Vec<SyscallCall>) -> Result<Vec<SyscallOutcome>, VmError> {
        self.batch_in(0, calls)
    }

    pub fn exec_in(&mut self, worker: WorkerId, mut call: ExecCall) -> Result<ExecResult, VmError> {
        if call.timeout_ms == 0 {
            call.timeout_ms = DEFAULT_EXEC_TIMEOUT.as_millis() as u32;
        }
        let timeout = Duration::from_millis(call.timeout_ms as u64) + HOST_MARGIN;
        match self.run(worker, Operation::Exec(call), timeout)? {
            Response::Exec(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub fn exec(&mut self, call: ExecCall) -> Result<ExecResult, VmError> {
        self.exec_in(0, call)
    }

    /// Runs `script` through `/bin/sh -c` (busybox).
    pub fn sh(&mut self, script: &str) -> Result<ExecResult, VmError> {
        self.exec(ExecCall {
            argv: vec![script.to_string()],
            shell: true,
            ..Default::default()
        })
    }

    pub fn read_file_in(&mut self, worker: WorkerId, path: &str) -> Result<Vec<u8>, VmError> {
        let op = Operation::ReadFile {
            path: path.to_string(),
            max_len: (provium_agent::protocol::MAX_FRAME - 4096) as u64,
        };
        match self.run(worker, op, HOST_MARGIN + self.syscall_timeout)? {
            Response::File(data) => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, VmError> {
        self.read_file_in(0, path)
    }

    /// Writes a file; `mode` 0 means 0644 for a new file and unchanged for an existing one.
    pub fn write_file_in(
        &mut self,
        worker: WorkerId,
        path: &str,
        data: &[u8],
        mode: u32,
    ) -> Result<(), VmError> {
        let op = Operation::WriteFile {
            path: path.to_string(),
            data: data.to_vec(),
            mode,
            append: false,
        };
        match self.run(worker, op, HOST_MARGIN + self.syscall_timeout)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn write_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<(), VmError> {
        self.write_file_in(0, path, data, mode)
    }

    /// Starts a command in the background in `worker`; returns the job number.
    pub fn background_in(&mut self, worker: WorkerId, call: ExecCall) -> Result<u32, VmError> {
        match self.run(worker, Operation::Background(call), HOST_MARGIN)? {
            Response::Job(job) => Ok(job),
            other => Err(unexpected(other)),
        }
    }

    /// Waits up to `timeout` for a job; the result's `termination` is `None` while it runs.
    pub fn job_wait_in(
        &mut self,
        worker: WorkerId,
        job: u32,
        timeout: Duration,
    ) -> Result<ExecResult, VmError> {
        let timeout_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        match self.run(
            worker,
            Operation::JobWait { job, timeout_ms },
            timeout + HOST_MARGIN,
        )? {
            Response::Exec(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Kills a job's process group.
    pub fn job_kill_in(&mut self, worker: WorkerId, job: u32) -> Result<(), VmError> {
        match self.run(worker, Operation::JobKill { job }, HOST_MARGIN)? {
            Response::Done => Ok(()),
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
        let mounts = String::from_utf8_lossy(&self.read_file("/proc/self/mounts")?).to_string();
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
            let _ = self.syscall(SyscallCall {
                nr: 83,
                args: [0, 0o755, 0, 0, 0, 0],
                buffers: vec![cstr(0, target)],
                ..Default::default()
            })?;
            // mount(fstype, target, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)
            let outcome = self.syscall(SyscallCall {
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
        match self.request(&clock_request(), HOST_MARGIN)? {
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

/// Refuses, before anything is sent, a call whose buffers are over the agent's limit or whose
/// answer could not fit in a frame: the agent would reject the first, and could not send the
/// second.
fn check_size(request: &Request) -> Result<(), VmError> {
    use provium_agent::protocol::{MAX_BUFFER, MAX_FRAME};
    let calls: &[SyscallCall] = match request {
        Request::Run {
            op: Operation::Syscall(c),
            ..
        } => std::slice::from_ref(c),
        Request::Run {
            op: Operation::Batch(c),
            ..
        } => c,
        _ => return Ok(()),
    };
    let mut answer = 0usize;
    for (i, call) in calls.iter().enumerate() {
        for b in &call.buffers {
            let len = (b.len as usize).max(b.data.len());
            if len > MAX_BUFFER {
                return Err(VmError::Unsendable(format!(
                    "call {}: a buffer of {len} bytes is over the agent's limit of {} MiB",
                    i + 1,
                    MAX_BUFFER >> 20
                )));
            }
            if b.output {
                answer += len;
            }
        }
    }
    // Room for the answer's framing and small fields.
    if answer + 4096 > MAX_FRAME {
        return Err(VmError::Unsendable(format!(
            "the output buffers add up to {answer} bytes; an answer is at most {} MiB \
             (split the call, or mark fewer buffers as output)",
            MAX_FRAME >> 20
        )));
    }
    Ok(())
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
        .map_err(|e| VmError::Setup(anyhow::anyhow!("writing {}: {e}", console_log.display())))
}

/// The host's time and 32 fresh random bytes, for the guest.
fn clock_request() -> Request {
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

fn unexpected(r: Response) -> VmError {
    VmError::Protocol(format!("{r:?}"))
}

/// Starts QEMU for `launch` with stdio closed and stderr in `qemu_log`; `configure` adjusts
/// the command first (descriptors to inherit).
fn spawn_qemu(
    launch: &LaunchPlan,
    qemu_log: &Path,
    configure: impl FnOnce(&mut Command),
) -> Result<Supervised, VmError> {
    let stderr = std::fs::File::create(qemu_log)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", qemu_log.display()))?;
    let mut cmd = Command::new(&launch.qemu);
    cmd.args(launch.args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    configure(&mut cmd);
    tracing::debug!(args = ?launch.args(), "starting QEMU");
    Ok(Supervised::spawn(cmd, "qemu")
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", launch.qemu.display()))?)
}

/// An error if QEMU has exited (`when`: "during boot", "while resuming").
fn exited(qemu: &mut Supervised, when: &str) -> anyhow::Result<()> {
    match qemu.try_wait() {
        Some(status) => anyhow::bail!("QEMU exited {when} ({status})"),
        None => Ok(()),
    }
}

/// A VM that did not start: QEMU is stopped, and the error carries what QEMU and the guest said.
fn failed_start(qemu: &mut Supervised, reason: String, qemu_log: &Path, console: &Path) -> VmError {
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

fn sweep_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let n = cleanup::sweep_stale();
        if n > 0 {
            tracing::info!("removed {n} run directories left by killed runs");
        }
    });
}
