//! PID 1's request loop: reads frames from the host, runs operations in executors, reports
//! executor deaths as results, and never runs a test's syscall itself.

use super::{boot, executor, link, sys};
use executor::Executor;
use provium_agent::protocol::{
    decode, read_frame, read_message, write_message, AgentError, Credentials, Envelope, ErrorKind,
    FrameError, Hello, Operation, Request, Response, SyscallOutcome, Termination, WorkerId,
    HELLO_MAGIC, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

/// Extra time PID 1 allows an executor beyond a command's own timeout before killing it.
const EXEC_GRACE: Duration = Duration::from_secs(5);

/// The connection to the host.
struct Link {
    reader: File,
    writer: File,
    kind: Option<link::Kind>,
}

impl Link {
    fn raw_fds(&self) -> Vec<RawFd> {
        vec![self.reader.as_raw_fd(), self.writer.as_raw_fd()]
    }
}

struct Worker {
    creds: Credentials,
    executor: Option<Executor>,
}

enum Failure {
    Died(Termination),
    TimedOut,
    Unavailable(String),
}

struct Supervisor {
    link: Link,
    workers: BTreeMap<WorkerId, Worker>,
    next_worker: WorkerId,
    /// Exit statuses collected by the orphan reaper before their executor was looked at.
    reaped: HashMap<libc::pid_t, Termination>,
    hello: Hello,
}

pub fn run_as_init() -> ! {
    boot::mount_filesystems();
    let settings = boot::kernel_settings();
    let mut workers = BTreeMap::new();
    // Fork the root executor while modules load: it is needed at the first request anyway.
    let root = executor::spawn(&Credentials::default(), &[]).ok();
    workers.insert(
        0,
        Worker {
            creds: Credentials::default(),
            executor: root,
        },
    );
    let module_errors = boot::load_modules();
    for e in &module_errors {
        super::log(format_args!("module {e}"));
    }
    boot::set_hostname("provium");
    if let Err(e) = boot::loopback_up() {
        super::log(format_args!("loopback: {e}"));
    }
    let kind = link::Kind::from_settings(&settings);
    let file = match link::connect(&kind) {
        Ok(f) => f,
        Err(e) => {
            super::log(format_args!(
                "no {} transport to the host: {e}",
                kind.name()
            ));
            sys::power_off();
        }
    };
    let writer = match file.try_clone() {
        Ok(w) => w,
        Err(e) => {
            super::log(format_args!("transport: {e}"));
            sys::power_off();
        }
    };
    let hello = make_hello(kind.name(), module_errors);
    let mut sup = Supervisor {
        link: Link {
            reader: file,
            writer,
            kind: Some(kind),
        },
        workers,
        next_worker: 1,
        reaped: HashMap::new(),
        hello,
    };
    sup.greet();
    sup.serve();
    sys::power_off();
}

/// Serves on stdin/stdout, for host-side tests of the agent without a VM.
pub fn run_on_stdio() {
    // SAFETY: stdin and stdout are open for the life of the process; File takes them over.
    let (reader, writer) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let mut workers = BTreeMap::new();
    workers.insert(
        0,
        Worker {
            creds: Credentials::default(),
            executor: None,
        },
    );
    let mut sup = Supervisor {
        link: Link {
            reader,
            writer,
            kind: None,
        },
        workers,
        next_worker: 1,
        reaped: HashMap::new(),
        hello: make_hello("stdio", Vec::new()),
    };
    sup.greet();
    sup.serve();
    for (_, w) in std::mem::take(&mut sup.workers) {
        if let Some(e) = w.executor {
            sys::kill(e.pid, libc::SIGKILL);
            let _ = sys::waitpid(e.pid, 0);
        }
    }
}

fn make_hello(transport: &str, module_errors: Vec<String>) -> Hello {
    let (release, machine) = sys::uname();
    Hello {
        magic: HELLO_MAGIC,
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        release,
        machine,
        transport: transport.to_string(),
        ready_us: sys::monotonic_us(),
        module_errors,
    }
}

impl Supervisor {
    fn greet(&mut self) {
        if let Err(e) = write_message(&mut self.link.writer, &self.hello) {
            super::log(format_args!("cannot greet the host: {e}"));
        }
    }

    /// Returns when the host asks for a shutdown, or (stdio mode) when the host goes away.
    fn serve(&mut self) {
        loop {
            let payload = match read_frame(&mut self.link.reader) {
                Ok(p) => p,
                Err(FrameError::Io(e)) => {
                    if self.link.kind.is_none() || !self.relink(&e) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    self.reply(0, bad_request(e.to_string()));
                    continue;
                }
            };
            let envelope: Envelope<Request> = match decode(&payload) {
                Ok(env) => env,
                Err(e) => {
                    self.reply(0, bad_request(e.to_string()));
                    continue;
                }
            };
            let shutdown = matches!(envelope.body, Request::Shutdown);
            let response = self.handle(envelope.body);
            self.reply(envelope.id, response);
            if shutdown {
                self.stop_workers();
                return;
            }
            self.reap_orphans();
            self.respawn_missing();
        }
    }

    /// After a lost connection: reconnect vsock, or wait for the serial port's host side to
    /// come back (a restored snapshot reconnects it).
    fn relink(&mut self, err: &io::Error) -> bool {
        let Some(kind) = &self.link.kind else {
            return false;
        };
        match kind {
            link::Kind::VirtioSerial => {
                // read() returns 0 while the host side is disconnected; do not spin.
                std::thread::sleep(Duration::from_millis(5));
                true
            }
            link::Kind::Vsock { .. } => {
                super::log(format_args!("vsock connection lost ({err}); reconnecting"));
                match link::connect(kind).and_then(|f| Ok((f.try_clone()?, f))) {
                    Ok((w, r)) => {
                        self.link.reader = r;
                        self.link.writer = w;
                        self.greet();
                        true
                    }
                    Err(_) => false,
                }
            }
        }
    }

    fn reply(&mut self, id: u64, body: Response) {
        let envelope = Envelope { id, body };
        if let Err(e) = write_message(&mut self.link.writer, &envelope) {
            // An answer too large for a frame is replaced by an error, so the host is not left
            // waiting.
            let fallback = Envelope {
                id,
                body: Response::Error(AgentError {
                    kind: ErrorKind::BadRequest,
                    message: format!("cannot send the answer: {e}"),
                }),
            };
            let _ = write_message(&mut self.link.writer, &fallback);
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Ping => Response::Pong,
            Request::Run { worker, op } => self.run(worker, op),
            Request::Spawn(creds) => self.spawn_worker(creds),
            Request::KillWorker(id) => self.kill_worker(id),
            Request::Dmesg => match sys::kernel_log() {
                Ok(log) => Response::Dmesg(log),
                Err(e) => os_error("dmesg", &e),
            },
            Request::Shutdown => Response::Done,
            Request::SyncClock { unix_ns, seed } => match sync_clock(unix_ns, &seed) {
                Ok(()) => Response::Done,
                Err(e) => os_error("sync clock", &e),
            },
        }
    }

    fn run(&mut self, worker: WorkerId, op: Operation) -> Response {
        if !self.workers.contains_key(&worker) {
            return Response::Error(AgentError {
                kind: ErrorKind::UnknownWorker,
                message: format!("no worker {worker} (killed, or never spawned)"),
            });
        }
        match op {
            Operation::Syscall(call) => {
                let timeout = ms(call.timeout_ms);
                let op = Operation::Syscall(call);
                match self.forward(worker, &op, timeout) {
                    Ok(r) => r,
                    Err(f) => Response::Syscall(failed_syscall(f)),
                }
            }
            Operation::Batch(calls) => {
                // One executor round trip per call, so a call that kills the executor costs
                // only its own result: the rest run in a fresh executor.
                let mut outcomes = Vec::with_capacity(calls.len());
                for call in calls {
                    let timeout = ms(call.timeout_ms);
                    let outcome = match self.forward(worker, &Operation::Syscall(call), timeout) {
                        Ok(Response::Syscall(o)) => o,
                        Ok(other) => SyscallOutcome::Rejected(format!("unexpected {other:?}")),
                        Err(f) => failed_syscall(f),
                    };
                    outcomes.push(outcome);
                }
                Response::Batch(outcomes)
            }
            op @ Operation::Exec(_) => {
                let timeout = match &op {
                    Operation::Exec(c) => ms(c.timeout_ms).map(|t| t + EXEC_GRACE),
                    _ => None,
                };
                self.forward(worker, &op, timeout)
                    .unwrap_or_else(failed_operation)
            }
            op => self
                .forward(worker, &op, None)
                .unwrap_or_else(failed_operation),
        }
    }

    /// Sends one operation to a worker's executor and waits for its answer.
    fn forward(
        &mut self,
        worker: WorkerId,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> Result<Response, Failure> {
        self.ensure_executor(worker)?;
        let Some(w) = self.workers.get_mut(&worker) else {
            return Err(Failure::Unavailable(format!("no worker {worker}")));
        };
        let Some(exe) = w.executor.as_mut() else {
            return Err(Failure::Unavailable("executor missing".into()));
        };
        let step = exchange(exe, op, timeout);
        match step {
            Step::Answer(response) => Ok(response),
            Step::Silent => {
                let pid = exe.pid;
                sys::kill(pid, libc::SIGKILL);
                let _ = self.take_termination(worker);
                Err(Failure::TimedOut)
            }
            Step::Gone => Err(Failure::Died(self.take_termination(worker))),
        }
    }

    /// Removes a worker's dead executor and returns how it ended.
    fn take_termination(&mut self, worker: WorkerId) -> Termination {
        let Some(exe) = self
            .workers
            .get_mut(&worker)
            .and_then(|w| w.executor.take())
        else {
            return Termination::Exited(-1);
        };
        if let Some(t) = self.reaped.remove(&exe.pid) {
            return t;
        }
        match sys::waitpid(exe.pid, 0) {
            Ok(Some((_, t))) => t,
            _ => Termination::Exited(-1),
        }
    }

    fn ensure_executor(&mut self, worker: WorkerId) -> Result<(), Failure> {
        let fds = self.link.raw_fds();
        let Some(w) = self.workers.get_mut(&worker) else {
            return Err(Failure::Unavailable(format!("no worker {worker}")));
        };
        if let Some(exe) = &w.executor {
            if let Some(t) = self.reaped.remove(&exe.pid) {
                super::log(format_args!(
                    "worker {worker}'s executor {t} between requests"
                ));
                w.executor = None;
            }
        }
        if w.executor.is_none() {
            match executor::spawn(&w.creds, &fds) {
                Ok(e) => w.executor = Some(e),
                Err(e) => return Err(Failure::Unavailable(format!("cannot start executor: {e}"))),
            }
        }
        Ok(())
    }

    fn respawn_missing(&mut self) {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            let _ = self.ensure_executor(id);
        }
    }

    /// Collects orphans re-parented to PID 1, remembering executors' statuses.
    fn reap_orphans(&mut self) {
        let executors: Vec<libc::pid_t> = self
            .workers
            .values()
            .filter_map(|w| w.executor.as_ref().map(|e| e.pid))
            .collect();
        while let Ok(Some((pid, t))) = sys::waitpid(-1, libc::WNOHANG) {
            if executors.contains(&pid) {
                self.reaped.insert(pid, t);
            }
        }
    }

    fn spawn_worker(&mut self, creds: Credentials) -> Response {
        match executor::spawn(&creds, &self.link.raw_fds()) {
            Ok(exe) => {
                let id = self.next_worker;
                self.next_worker += 1;
                self.workers.insert(
                    id,
                    Worker {
                        creds,
                        executor: Some(exe),
                    },
                );
                Response::Worker(id)
            }
            Err(e) => os_error("spawn worker", &e),
        }
    }

    fn kill_worker(&mut self, id: WorkerId) -> Response {
        if id == 0 {
            return Response::Error(AgentError {
                kind: ErrorKind::BadRequest,
                message: "worker 0 is the VM's own executor and cannot be killed".into(),
            });
        }
        match self.workers.remove(&id) {
            Some(w) => {
                if let Some(e) = w.executor {
                    sys::kill(e.pid, libc::SIGKILL);
                    if self.reaped.remove(&e.pid).is_none() {
                        let _ = sys::waitpid(e.pid, 0);
                    }
                }
                Response::Done
            }
            None => Response::Error(AgentError {
                kind: ErrorKind::UnknownWorker,
                message: format!("no worker {id}"),
            }),
        }
    }

    fn stop_workers(&mut self) {
        for (_, w) in std::mem::take(&mut self.workers) {
            if let Some(e) = w.executor {
                sys::kill(e.pid, libc::SIGKILL);
            }
        }
    }
}

enum Step {
    Answer(Response),
    /// No answer within the timeout.
    Silent,
    /// The channel closed: the executor is dead.
    Gone,
}

fn exchange(exe: &mut Executor, op: &Operation, timeout: Option<Duration>) -> Step {
    if write_message(&mut exe.chan, op).is_err() {
        return Step::Gone;
    }
    match sys::wait_readable(exe.chan.as_raw_fd(), timeout) {
        Ok(false) => Step::Silent,
        Ok(true) | Err(_) => match read_message::<_, Response>(&mut exe.chan) {
            Ok(r) => Step::Answer(r),
            Err(_) => Step::Gone,
        },
    }
}

fn ms(v: u32) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v as u64))
}

fn failed_syscall(f: Failure) -> SyscallOutcome {
    match f {
        Failure::Died(t) => SyscallOutcome::ExecutorDied(t),
        Failure::TimedOut => SyscallOutcome::TimedOut,
        Failure::Unavailable(why) => SyscallOutcome::Rejected(why),
    }
}

fn failed_operation(f: Failure) -> Response {
    let (kind, message) = match f {
        Failure::Died(t) => (ErrorKind::ExecutorDied(t), format!("the executor {t}")),
        Failure::TimedOut => (ErrorKind::TimedOut, "timed out".to_string()),
        Failure::Unavailable(why) => (ErrorKind::BadRequest, why),
    };
    Response::Error(AgentError { kind, message })
}

fn bad_request(message: String) -> Response {
    Response::Error(AgentError {
        kind: ErrorKind::BadRequest,
        message,
    })
}

fn os_error(context: &str, e: &io::Error) -> Response {
    Response::Error(AgentError {
        kind: ErrorKind::Os(sys::errno_of(e)),
        message: format!("{context}: {e}"),
    })
}

/// Sets the wall clock (never backwards) and mixes `seed` into the entropy pool.
fn sync_clock(unix_ns: u64, seed: &[u8]) -> io::Result<()> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointers.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let current = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    if unix_ns > current {
        let ts = libc::timespec {
            tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: valid timespec.
        sys::cvt(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })?;
    }
    if !seed.is_empty() {
        // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
        let mut info = Vec::with_capacity(8 + seed.len());
        info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
        info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
        info.extend_from_slice(seed);
        let random = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
        // SAFETY: the ioctl reads `info`, which is laid out as rand_pool_info.
        sys::cvt(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })?;
    }
    Ok(())
}
