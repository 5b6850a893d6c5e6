//! The wire protocol between the host runtime and the guest agent.
//!
//! Every message travels in a frame: a little-endian `u32` payload length followed by that many
//! bytes of [postcard](https://docs.rs/postcard)-encoded data. Frames larger than [`MAX_FRAME`]
//! are refused by both sides. The guest speaks first with a [`Hello`]; afterwards the host sends
//! [`Envelope<Request>`] and the agent answers each with exactly one [`Envelope<Response>`]
//! carrying the same id.
//!
//! The host must treat every byte that arrives from the guest as untrusted: a test may have
//! crashed or corrupted the guest. Decoding errors are reported, never unwrapped.
//!
//! See `docs/protocol.md` for the full description.
//!
//! The messages and limits are in this one file on purpose: they are the whole contract
//! between two programs built separately, and a reader checking compatibility should see every
//! message at once. How they travel (frames, the hello check) is [`frame`].

use serde::{Deserialize, Serialize};

mod frame;
pub use frame::*;

/// Bumped whenever a message changes shape. The host refuses an agent with another version.
pub const PROTOCOL_VERSION: u32 = 7;

/// The first four bytes of the hello payload, so that a host connected to something that is not
/// a Provium agent (a console, a stale socket) fails with a clear message.
pub const HELLO_MAGIC: [u8; 4] = *b"PRVM";

/// The largest frame either side accepts: 64 MiB, enough for a 16 MiB buffer returned by a
/// syscall plus its request, and small enough that garbage cannot exhaust host memory. The host
/// refuses to send a request whose frame, or whose answer's output buffers, would exceed it.
pub const MAX_FRAME: usize = 64 << 20;

/// The largest single buffer the agent allocates for a call. A buffer may be this large when
/// little of it travels (an input buffer given only a size); what does travel fits in a frame.
pub const MAX_BUFFER: usize = 256 << 20;

/// The virtio-serial port name the agent looks for.
pub const SERIAL_PORT_NAME: &str = "org.provium.agent";

/// The virtio-serial port on which the host asks a VM that stopped answering for its tasks'
/// stacks, before killing it: each byte `d` received there makes PID 1 print them.
pub const DUMP_PORT_NAME: &str = "org.provium.dump";

/// The byte the host sends on [`DUMP_PORT_NAME`] to ask for a dump.
pub const DUMP_REQUEST: u8 = b'd';

/// The line PID 1 writes to the console before a dump.
pub const DUMP_START: &str = "provium-agent: the host is about to stop this VM; its tasks:";

/// The line PID 1 writes to the console after a dump, so the host knows it is complete.
pub const DUMP_END: &str = "provium-agent: end of the task dump";

/// Default vsock port the agent connects to on the host (CID 2).
pub const DEFAULT_VSOCK_PORT: u32 = 10_240;

/// An argument on the kernel command line, which the kernel hands init: the kernel cannot
/// power off (x86 without ACPI), so the agent reboots where it would power off.
pub const INIT_ARG_REBOOT: &str = "provium_reboot";

/// In the initramfs the host builds: the modules the agent loads, in dependency order, one
/// path per line.
pub const MODULE_LIST_PATH: &str = "/etc/provium/modules";

/// In the initramfs the host builds: busybox's `modprobe` link, kept out of `/sbin` while the
/// kernel boots (the kernel would run it, in vain, for every module its initcalls ask for) and
/// moved to `/sbin/modprobe` by the agent as it starts.
pub const MODPROBE_DEFERRED_PATH: &str = "/etc/provium/modprobe";

/// A guest address that is never mapped in the executor: below `vm.mmap_min_addr`, and not NULL,
/// so that `EFAULT` paths are exercised rather than NULL checks.
pub const BAD_POINTER: u64 = 0x1000;

/// The first frame the agent sends. Its first two fields never change position, so that a host
/// of any version can read the magic and protocol version before decoding the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`HELLO_MAGIC`].
    pub magic: [u8; 4],
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    /// The agent crate's version.
    pub agent_version: String,
    /// `uname -r` of the guest kernel.
    pub release: String,
    /// `uname -m` of the guest kernel.
    pub machine: String,
    /// Which transport the agent found ("virtio-serial" or "vsock").
    pub transport: String,
    /// Guest monotonic time when the agent became ready, in microseconds since boot.
    pub ready_us: u64,
    /// Modules the agent could not load, with the errno name (empty when all loaded).
    pub module_errors: Vec<String>,
    /// Boot stages of the agent and the guest time (µs since boot) each ended at.
    pub timeline: Vec<(String, u64)>,
}

/// The stable prefix of [`Hello`], decoded first to check the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloPrefix {
    /// [`HELLO_MAGIC`].
    pub magic: [u8; 4],
    /// The agent's protocol version.
    pub protocol: u32,
}

/// A request or response with the id that pairs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Ids start at 1 and increase; an answer carries its request's id (0: a frame that did
    /// not decode).
    pub id: u64,
    /// The request or the response.
    pub body: T,
}

/// Which process in the guest carries out an operation: 0 is the root executor, other ids are
/// workers created by [`Request::Spawn`].
pub type WorkerId = u32;

/// What the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Answered with [`Response::Pong`]; used after a snapshot restore to resume the stream.
    Ping,
    /// An operation carried out by an executor process (never by PID 1).
    Run {
        /// The executor: 0 is the VM's own, others come from [`Request::Spawn`].
        worker: WorkerId,
        /// What to run there.
        op: Operation,
    },
    /// Fork a new executor with the given credentials.
    Spawn(Credentials),
    /// Kill a worker's executor and forget it.
    KillWorker(WorkerId),
    /// The kernel log (the `syslog(2)` ring buffer).
    Dmesg,
    /// The kernel's taint bits (`/proc/sys/kernel/tainted`), read by PID 1 around every test so
    /// that a test that taints the kernel (a `WARNING`, a `BUG`) is caught.
    Tainted,
    /// Sync file systems and power off. Answered before the power-off.
    Shutdown,
    /// Set the guest's wall clock and mix host randomness into its entropy pool.
    SyncClock {
        /// The host's wall clock, in nanoseconds since the epoch.
        unix_ns: u64,
        /// Host randomness for the guest's pool.
        #[serde(with = "serde_bytes")]
        seed: Vec<u8>,
    },
}

/// Operations that run inside an executor, under its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// One raw system call; answered with [`Response::Syscall`].
    Syscall(SyscallCall),
    /// Many syscalls in one round trip; the outcomes come back in order. An executor that dies
    /// is restarted and the remaining calls still run.
    Batch(Vec<SyscallCall>),
    /// Cases, each run in its own child forked from the executor, in the boot state with the
    /// case's credentials and process settings: whatever a case does to its process (limits,
    /// umask, signal state, descriptors, mappings, credentials) ends with it, and a case that
    /// blocks or kills its process costs only itself. Answered with [`Response::Isolated`].
    Isolated(Vec<IsolatedCase>),
    /// Run a command and wait for it; answered with [`Response::Exec`].
    Exec(ExecCall),
    /// Read a whole file; answered with [`Response::File`].
    ReadFile {
        /// The file, in the guest.
        path: String,
        /// Read at most this many bytes.
        max_len: u64,
    },
    /// Write a whole file (parents are created); answered with [`Response::Done`].
    WriteFile {
        /// The file, in the guest.
        path: String,
        /// Its new contents.
        data: Vec<u8>,
        /// 0: 0644 for a new file, unchanged for an existing one.
        mode: u32,
        /// Append instead of replacing.
        append: bool,
    },
    /// Start a command in the background; answered with [`Response::Job`]. The job belongs to
    /// the guest, not to the executor: it survives an executor that dies.
    Background(ExecCall),
    /// Wait up to `timeout_ms` (0: do not wait) for a job to end; answered with
    /// [`Response::Exec`], whose `termination` is `None` while the job runs.
    JobWait {
        /// The job, from [`Response::Job`].
        job: u32,
        /// How long to wait.
        timeout_ms: u32,
    },
    /// Kill a job's process group; answered with [`Response::Done`].
    JobKill {
        /// The job, from [`Response::Job`].
        job: u32,
    },
}

/// One raw system call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyscallCall {
    /// The syscall number.
    pub nr: i64,
    /// The six arguments (a buffer bound to an argument replaces it with its address).
    pub args: [i64; 6],
    /// Guest memory to allocate for this call. A buffer bound to an argument replaces that
    /// argument with its address.
    pub buffers: Vec<Buffer>,
    /// Addresses of buffers written inside other buffers (an iovec array, a struct's `char *`).
    pub patches: Vec<PointerPatch>,
    /// Kill the executor if the call has not returned after this long; 0 means no limit.
    pub timeout_ms: u32,
    /// The system call ABI: the native one, or i386's through `int $0x80` (32-bit arguments
    /// and result, every buffer below 4 GiB, pointers inside buffers 4 bytes wide).
    pub abi: Abi,
}

/// A system call ABI of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Abi {
    /// The guest's own (x86_64's `syscall`, aarch64's `svc 0`).
    #[default]
    Native,
    /// i386 on an x86_64 kernel (`CONFIG_IA32_EMULATION`): `int $0x80`.
    I386,
}

/// A buffer in guest memory for the duration of one syscall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Buffer {
    /// The 0-based argument this buffer's address replaces, or `None` for a buffer only reached
    /// through a [`PointerPatch`].
    pub arg: Option<u8>,
    /// Initial contents.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Allocated size; bytes past `data` are zero. Never smaller than `data.len()`.
    pub len: u32,
    /// Whether the buffer's contents after the call are returned.
    pub output: bool,
}

/// Write the guest address of `buffers[target]` (a little-endian u64; a u32 under
/// [`Abi::I386`]) at `offset` in `buffers[buffer]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerPatch {
    /// The buffer the address is written into.
    pub buffer: u32,
    /// Where in it.
    pub offset: u32,
    /// The buffer whose address is written.
    pub target: u32,
}

/// A command run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecCall {
    /// The program and its arguments. With `shell`, `argv[0]` is the script for `/bin/sh -c`.
    pub argv: Vec<String>,
    /// Run `argv[0]` through `/bin/sh -c`.
    pub shell: bool,
    /// Variables added to the clean environment (`PATH`, `HOME=/`).
    pub env: Vec<(String, String)>,
    /// The working directory (default `/`).
    pub cwd: Option<String>,
    /// What the command reads on stdin.
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// 0 means no limit.
    pub timeout_ms: u32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Termination {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Termination::Exited(code) => write!(f, "exited with status {code}"),
            Termination::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// How much of each stream of a command (`exec`, a background job) the agent keeps; the rest is
/// dropped and the result says `truncated`.
pub const EXEC_OUTPUT_LIMIT: usize = 16 << 20;

/// What became of one syscall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyscallOutcome {
    /// The kernel's raw return value (a negative errno on failure) and, for every buffer in
    /// request order, its contents after the call when it was marked as output.
    Returned {
        /// The raw return value.
        ret: i64,
        /// Output buffers' contents, in request order (`None` for input-only buffers).
        #[serde(with = "byte_buffers")]
        buffers: Vec<Option<Vec<u8>>>,
    },
    /// The executor process ended during the call (for example `exit_group`, or a fault). A new
    /// executor has replaced it; file descriptors and memory of the old one are gone.
    ExecutorDied(Termination),
    /// The call did not return within its timeout; the executor was killed and replaced.
    TimedOut,
    /// The request could not be carried out (bad buffer index, allocation failure, …).
    Rejected(String),
    /// The call closed, replaced or changed one of the descriptors the agent keeps in the
    /// executor (its link to the host, its channel to PID 1); the string says which and how.
    /// The call's own effects on the kernel happened; the executor was replaced.
    ExecutorBroken(String),
}

/// One case of [`Operation::Isolated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IsolatedCase {
    /// The calls, in order; the case ends at the first that ends its process.
    pub calls: Vec<SyscallCall>,
    /// Credentials to take first (none: the executor's).
    pub creds: Option<Credentials>,
    /// Process settings to take first.
    pub setup: ProcessSetup,
    /// Milliseconds the whole case may take before its process is killed (0: 30 s).
    pub timeout_ms: u32,
}

/// Process settings a worker or an isolated case starts with, on top of the boot state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessSetup {
    /// The file mode creation mask (default 022).
    pub umask: Option<u32>,
    /// The working directory (default `/`).
    pub cwd: Option<String>,
    /// Resource limits: resource number (`RLIMIT_NOFILE` is 7), soft and hard.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Signals caught by an empty handler: the number, and whether the handler has
    /// `SA_RESTART` (an interrupted call is restarted instead of answering EINTR).
    pub catch: Vec<(i32, bool)>,
    /// A signal the process is sent this many microseconds after its setup, by a one-shot
    /// `CLOCK_MONOTONIC` timer of its own (LTP's "sleep, get interrupted" cases).
    pub timer: Option<(i32, u64)>,
}

/// The result of an [`ExecCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// `None` when the command timed out and was killed.
    pub termination: Option<Termination>,
    /// What it printed on stdout (at most 16 MiB).
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// What it printed on stderr (at most 16 MiB).
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// True when output past the agent's cap was dropped.
    pub truncated: bool,
}

/// Credentials of a worker executor (or an isolated case), and the process settings it takes
/// before them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Credentials {
    /// Real and saved user id (and effective, unless `euid` says otherwise).
    pub uid: u32,
    /// Real and saved group id (and effective, unless `egid` says otherwise).
    pub gid: u32,
    /// A different effective user id (a setreuid-style process: real 0, effective 1000).
    pub euid: Option<u32>,
    /// A different effective group id.
    pub egid: Option<u32>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Capability numbers kept (permitted, effective, inheritable and ambient) after the switch.
    pub caps: Vec<u8>,
    /// Umask, working directory and limits, taken before the credentials (raising a hard limit
    /// needs the privilege the credentials may drop).
    pub setup: ProcessSetup,
    /// The descriptors a worker starts with (an isolated case is forked from the executor and
    /// always has its descriptors).
    pub descriptors: Descriptors,
    /// Where the process stands among sessions and process groups.
    pub session: SessionPlace,
}

/// The descriptors a worker starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Descriptors {
    /// Only standard input, output and error, on `/dev/null`.
    #[default]
    Fresh,
    /// The VM's own executor's, at the same numbers and sharing their open files (as a child
    /// forked from it would): what a file's setup opened is there, as LTP's "open as root,
    /// then drop privileges" needs.
    Inherit,
}

/// Where a worker or an isolated case stands among sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionPlace {
    /// It leads a session of its own (`setsid`): `setpgid(0, 0)` answers EPERM, `kill(0, …)`
    /// reaches only its group.
    #[default]
    Leader,
    /// It leads a process group in the agent's session, like a child of a shell or LTP's
    /// test process: `setpgid(0, 0)` answers 0, `getsid(0)` is not its pid.
    Member,
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// To [`Request::Ping`].
    Pong,
    /// To [`Operation::Syscall`].
    Syscall(SyscallOutcome),
    /// To [`Operation::Batch`]: one outcome per call, up to the one that ended the executor.
    Batch(Vec<SyscallOutcome>),
    /// To [`Operation::Exec`] and [`Operation::JobWait`].
    Exec(ExecResult),
    /// To [`Operation::ReadFile`].
    File(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request was carried out.
    Done,
    /// To [`Request::Dmesg`].
    Dmesg(String),
    /// To [`Request::Tainted`]: the taint bits.
    Tainted(u64),
    /// To [`Operation::Isolated`]: per case, one outcome per call up to the one that ended it.
    Isolated(Vec<Vec<SyscallOutcome>>),
    /// To [`Request::Spawn`]: the new worker.
    Worker(WorkerId),
    /// To [`Operation::Background`]: the job's number.
    Job(u32),
    /// The request could not be carried out.
    Error(AgentError),
}

/// A request the agent could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
}

/// The kinds of [`AgentError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The frame did not decode, or the request was malformed.
    BadRequest,
    /// A system call made on the request's behalf failed with this errno.
    Os(i32),
    /// No worker with that id.
    UnknownWorker,
    /// The executor ended while carrying out the operation.
    ExecutorDied(Termination),
    /// The operation did not complete within its timeout.
    TimedOut,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Byte buffers encoded as byte strings rather than sequences of integers: a 1 MiB buffer is
/// one copy instead of a million serializer calls.
mod byte_buffers {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Bytes(#[serde(with = "serde_bytes")] Vec<u8>);

    #[derive(Serialize)]
    struct BytesRef<'a>(#[serde(with = "serde_bytes")] &'a [u8]);

    pub fn serialize<S: Serializer>(v: &[Option<Vec<u8>>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| b.as_deref().map(BytesRef)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<Vec<u8>>>, D::Error> {
        let v: Vec<Option<Bytes>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|b| b.map(|b| b.0)).collect())
    }
}
