//! PID 1: starts the front executor, handles what the front hands over (workers, dmesg, spawn,
//! shutdown), answers for executors that die, and enforces call timeouts. It never runs a test's
//! syscall itself.
//!
//! Slightly over 600 lines because its one loop owns every executor's lifecycle; splitting the
//! handlers from the loop would spread the supervisor's state over modules that all mutate it.

use super::control::{self, Busy, Control};
use super::dump::DumpPort;
use super::reply::{bad_request, os_error};
use super::spawn::{self, Executor, Role};
use super::sys::Ready;
use super::{boot, clean, front, guard, link, sys};
use provium_agent::protocol::{
    decode, read_frame, read_message, write_message, AgentError, Credentials, Envelope, ErrorKind,
    Hello, Operation, Request, Response, SyscallOutcome, Termination, WorkerId, HELLO_MAGIC,
    PROTOCOL_VERSION,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// Extra time PID 1 allows a worker beyond a command's own timeout before killing it.
const EXEC_GRACE: Duration = Duration::from_secs(5);
/// How often PID 1 looks at the front's deadline while it is idle otherwise.
const WATCHDOG_TICK_MS: u64 = 250;

/// The connection to the host.
struct Link {
    reader: File,
    writer: File,
    /// `None` in `--stdio` mode, where a lost link ends the agent.
    kind: Option<link::Kind>,
}

struct Front {
    exe: Executor,
    control: Control,
}

enum Failure {
    Died(Termination),
    TimedOut,
    Unavailable(String),
    /// The call disturbed the executor's descriptors (see `guard`).
    Broken(String),
}

struct Supervisor {
    link: Link,
    /// Where the host asks for a task dump before killing a hung VM.
    dump: DumpPort,
    front: Option<Front>,
    workers: BTreeMap<WorkerId, (Credentials, Option<Executor>)>,
    next_worker: WorkerId,
    hello: Hello,
}

pub fn run_as_init() -> ! {
    let mut timeline = vec![("init".to_string(), sys::monotonic_us())];
    boot::install_modprobe();
    boot::raise_descriptor_limit();
    clean::capture_defaults();
    boot::mount_filesystems();
    let settings = boot::kernel_settings();
    timeline.push(("mounted".into(), sys::monotonic_us()));
    let module_errors = boot::load_modules();
    timeline.push(("modules".into(), sys::monotonic_us()));
    for e in &module_errors {
        super::log(format_args!("module {e}"));
    }
    boot::set_hostname("provium");
    if let Err(e) = boot::loopback_up() {
        super::log(format_args!("loopback: {e}"));
    }
    let kind = link::Kind::from_settings(&settings);
    let (reader, writer) = match link::connect(&kind).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => {
            super::log(format_args!(
                "no {} transport to the host: {e}",
                kind.name()
            ));
            sys::power_off();
        }
    };
    timeline.push(("link".into(), sys::monotonic_us()));
    let mut hello = make_hello(kind.name(), module_errors);
    hello.timeline = timeline;
    // Boot is quiet; from here on oopses and panics caused by tests are printed in full.
    let level = settings
        .get("loglevel")
        .and_then(|l| l.parse().ok())
        .unwrap_or(7);
    boot::console_loglevel(level);
    let mut sup = Supervisor::new(
        Link {
            reader,
            writer,
            kind: Some(kind),
        },
        hello,
    );
    sup.greet();
    sup.serve();
    sys::power_off();
}

/// Serves on stdin/stdout, for host-side tests of the agent without a VM.
pub fn run_on_stdio() {
    clean::capture_defaults();
    // SAFETY: stdin and stdout are open for the life of the process; File takes them over.
    let (reader, writer) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let mut sup = Supervisor::new(
        Link {
            reader,
            writer,
            kind: None,
        },
        make_hello("stdio", Vec::new()),
    );
    sup.greet();
    sup.serve();
    sup.stop_all();
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
        timeline: Vec::new(),
    }
}

impl Supervisor {
    fn new(link: Link, hello: Hello) -> Supervisor {
        let mut workers = BTreeMap::new();
        workers.insert(0, (Credentials::default(), None));
        Supervisor {
            link,
            dump: DumpPort::new(),
            front: None,
            workers,
            next_worker: 1,
            hello,
        }
    }

    fn greet(&mut self) {
        if let Err(e) = write_message(&mut self.link.writer, &self.hello) {
            super::log(format_args!("cannot greet the host: {e}"));
        }
    }

    fn start_front(&mut self) -> io::Result<()> {
        // The link is one open file shared with the front: a test that made it non-blocking
        // there made it so here too.
        for fd in [self.link.reader.as_raw_fd(), self.link.writer.as_raw_fd()] {
            sys::set_blocking(fd);
        }
        let control = Control::new()?;
        let serial = matches!(self.link.kind, Some(link::Kind::VirtioSerial));
        let exe = spawn::spawn(Role::Front {
            link: (self.link.reader.as_raw_fd(), self.link.writer.as_raw_fd()),
            control: &control,
            serial,
        })?;
        self.front = Some(Front { exe, control });
        Ok(())
    }

    /// Returns when the host asks for a shutdown, or when the link is gone for good.
    fn serve(&mut self) {
        loop {
            if self.front.is_none() {
                if let Err(e) = self.start_front() {
                    super::log(format_args!("cannot start the executor: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let Some(front) = self.front.as_ref() else {
                continue;
            };
            let tick = watchdog_wait(&front.control);
            let chan = front.exe.chan.as_raw_fd();
            match sys::wait_readable_or(chan, self.dump.fd(), Some(tick)) {
                Ok(Ready::Main) => {}
                Ok(Ready::Other) => {
                    self.dump.serve();
                    continue;
                }
                Ok(Ready::Timeout) => {
                    self.watchdog();
                    continue;
                }
                Err(_) => continue,
            }
            let Some(front) = self.front.as_mut() else {
                continue;
            };
            match read_frame(&mut front.exe.chan) {
                Ok(payload) => {
                    if self.handed_over(&payload) {
                        return;
                    }
                }
                Err(_) => {
                    if !self.front_died() {
                        return;
                    }
                }
            }
        }
    }

    /// A request the front passed on. Returns true on shutdown.
    fn handed_over(&mut self, payload: &[u8]) -> bool {
        let envelope: Envelope<Request> = match decode(payload) {
            Ok(e) => e,
            Err(e) => {
                self.reply(0, bad_request(e.to_string()));
                self.ack_front();
                return false;
            }
        };
        let shutdown = matches!(envelope.body, Request::Shutdown);
        let response = self.handle(envelope.body);
        self.reply(envelope.id, response);
        if shutdown {
            self.stop_all();
            return true;
        }
        self.reap_orphans();
        self.ack_front();
        false
    }

    fn ack_front(&mut self) {
        if let Some(front) = self.front.as_mut() {
            let _ = write_message(&mut front.exe.chan, &());
        }
    }

    /// The front's channel closed: it died. Answer for what it was doing and replace it.
    /// Returns false when the link to the host is gone for good.
    fn front_died(&mut self) -> bool {
        let Some(front) = self.front.take() else {
            return true;
        };
        let status = match sys::waitpid(front.exe.pid, 0) {
            Ok(Some((_, t))) => t,
            _ => Termination::Exited(-1),
        };
        let state = front.control.state();
        if state.request != 0 {
            let timed_out = state.timed_out_seq != 0 && state.timed_out_seq == state.call_seq;
            let failure = if timed_out {
                Failure::TimedOut
            } else if status == Termination::Exited(guard::EXIT_BROKEN) {
                Failure::Broken(
                    front
                        .control
                        .broken_reason()
                        .unwrap_or_else(|| "the call disturbed the executor's descriptors".into()),
                )
            } else {
                Failure::Died(status)
            };
            let response = match state.busy {
                Busy::Syscall => Response::Syscall(failed_syscall(failure)),
                Busy::Batch => {
                    // The outcomes before the fatal call, then the fatal call's. The host
                    // resubmits the calls after it.
                    let mut outcomes = front.control.logged();
                    outcomes.push(failed_syscall(failure));
                    Response::Batch(outcomes)
                }
                Busy::Other | Busy::Idle => failed_operation(failure),
            };
            self.reply(state.request, response);
        } else if status == Termination::Exited(front::EXIT_LINK_LOST) {
            return self.relink();
        } else {
            super::log(format_args!("the executor {status} between requests"));
        }
        true
    }

    /// Kills the front if its current call overran its deadline.
    fn watchdog(&mut self) {
        let Some(front) = self.front.as_ref() else {
            return;
        };
        let s = front.control.state();
        if s.request == 0 || s.deadline_ms == 0 || control::monotonic_ms() < s.deadline_ms {
            return;
        }
        // Re-read: the call may have finished between the two reads.
        let again = front.control.state();
        if again.call_seq == s.call_seq && again.deadline_ms != 0 {
            front.control.mark_timed_out(s.call_seq);
            sys::kill(front.exe.pid, libc::SIGKILL);
        }
    }

    /// Reconnects a vsock link; in `--stdio` mode a lost link ends the agent.
    fn relink(&mut self) -> bool {
        let Some(kind) = &self.link.kind else {
            return false;
        };
        super::log(format_args!("{} link lost; reconnecting", kind.name()));
        match link::connect(kind).and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((reader, writer)) => {
                self.link.reader = reader;
                self.link.writer = writer;
                self.greet();
                true
            }
            Err(e) => {
                super::log(format_args!("reconnecting failed: {e}"));
                false
            }
        }
    }

    fn reply(&mut self, id: u64, body: Response) {
        let envelope = Envelope { id, body };
        if let Err(e) = write_message(&mut self.link.writer, &envelope) {
            let fallback = Envelope {
                id,
                body: bad_request(format!("cannot send the answer: {e}")),
            };
            let _ = write_message(&mut self.link.writer, &fallback);
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Ping => Response::Pong,
            Request::Run { worker: 0, .. } => {
                bad_request("worker 0 runs in the front executor".into())
            }
            Request::Run { worker, op } => self.run_in_worker(worker, op),
            Request::Spawn(creds) => self.spawn_worker(creds),
            Request::KillWorker(id) => self.kill_worker(id),
            Request::Dmesg => match sys::kernel_log() {
                Ok(log) => Response::Dmesg(log),
                Err(e) => os_error("dmesg", &e),
            },
            Request::Tainted => match sys::tainted() {
                Ok(bits) => Response::Tainted(bits),
                Err(e) => os_error("/proc/sys/kernel/tainted", &e),
            },
            Request::Shutdown => Response::Done,
            Request::SyncClock { unix_ns, seed } => match boot::sync_clock(unix_ns, &seed) {
                Ok(()) => Response::Done,
                Err(e) => os_error("sync clock", &e),
            },
        }
    }

    fn run_in_worker(&mut self, worker: WorkerId, op: Operation) -> Response {
        if !self.workers.contains_key(&worker) {
            return Response::Error(AgentError {
                kind: ErrorKind::UnknownWorker,
                message: format!("no worker {worker} (killed, or never spawned)"),
            });
        }
        match op {
            Operation::Syscall(call) => {
                let timeout = ms(call.timeout_ms);
                match self.forward(worker, &Operation::Syscall(call), timeout) {
                    Ok(r) => r,
                    Err(f) => Response::Syscall(failed_syscall(f)),
                }
            }
            Operation::Batch(calls) => {
                // One call at a time, so a call that kills the worker costs only its own result.
                let mut outcomes = Vec::with_capacity(calls.len());
                for call in calls {
                    let timeout = ms(call.timeout_ms);
                    outcomes.push(
                        match self.forward(worker, &Operation::Syscall(call), timeout) {
                            Ok(Response::Syscall(o)) => o,
                            Ok(other) => SyscallOutcome::Rejected(format!("unexpected {other:?}")),
                            Err(f) => failed_syscall(f),
                        },
                    );
                }
                Response::Batch(outcomes)
            }
            op => {
                let timeout = match &op {
                    Operation::Exec(c) => ms(c.timeout_ms).map(|t| t + EXEC_GRACE),
                    Operation::JobWait { timeout_ms, .. } => {
                        Some(Duration::from_millis(*timeout_ms as u64) + EXEC_GRACE)
                    }
                    _ => None,
                };
                self.forward(worker, &op, timeout)
                    .unwrap_or_else(failed_operation)
            }
        }
    }

    /// Sends one operation to a worker's executor and waits for its answer.
    fn forward(
        &mut self,
        worker: WorkerId,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> Result<Response, Failure> {
        let Some((creds, slot)) = self.workers.get_mut(&worker) else {
            return Err(Failure::Unavailable(format!("no worker {worker}")));
        };
        if slot.is_none() {
            let front = self.front.as_ref().map(|f| f.exe.pid);
            match spawn::spawn(Role::Worker { creds, front }) {
                Ok(e) => *slot = Some(e),
                Err(e) => {
                    return Err(Failure::Unavailable(format!(
                        "cannot restart worker {worker}: {e}"
                    )))
                }
            }
        }
        let Some(exe) = slot.as_mut() else {
            return Err(Failure::Unavailable("executor missing".into()));
        };
        let step = exchange(exe, op, timeout, &mut self.dump);
        match step {
            Step::Answer(response) => Ok(response),
            Step::Silent => {
                sys::kill(exe.pid, libc::SIGKILL);
                let _ = self.take_termination(worker);
                Err(Failure::TimedOut)
            }
            Step::Gone => Err(match self.take_termination(worker) {
                Termination::Exited(guard::EXIT_BROKEN) => Failure::Broken(format!(
                    "the call closed, replaced or changed the worker's channel to the agent \
                     (descriptor {})",
                    guard::AgentFds::at_top().channel
                )),
                t => Failure::Died(t),
            }),
        }
    }

    /// Removes a worker's dead executor and returns how it ended; the next operation on the
    /// worker starts a fresh one with the same credentials.
    fn take_termination(&mut self, worker: WorkerId) -> Termination {
        let Some(exe) = self.workers.get_mut(&worker).and_then(|w| w.1.take()) else {
            return Termination::Exited(-1);
        };
        match sys::waitpid(exe.pid, 0) {
            Ok(Some((_, t))) => t,
            _ => Termination::Exited(-1),
        }
    }

    /// Collects orphans re-parented to PID 1 (executors are waited for by pid).
    fn reap_orphans(&mut self) {
        let mut executors: Vec<libc::pid_t> = self
            .workers
            .values()
            .filter_map(|w| w.1.as_ref().map(|e| e.pid))
            .collect();
        executors.extend(self.front.as_ref().map(|f| f.exe.pid));
        // Peek before reaping: waitpid(-1) could steal an executor's status, which its own
        // handling needs.
        loop {
            // SAFETY: siginfo_t is plain old data; waitid with WNOWAIT only peeks.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid siginfo pointer.
            let ret = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: si_pid is valid for child-state siginfo.
            let pid = unsafe { info.si_pid() };
            if ret != 0 || pid == 0 || executors.contains(&pid) {
                return;
            }
            let _ = sys::waitpid(pid, libc::WNOHANG);
        }
    }

    fn spawn_worker(&mut self, creds: Credentials) -> Response {
        let front = self.front.as_ref().map(|f| f.exe.pid);
        match spawn::spawn(Role::Worker {
            creds: &creds,
            front,
        }) {
            Ok(exe) => {
                let id = self.next_worker;
                self.next_worker += 1;
                self.workers.insert(id, (creds, Some(exe)));
                Response::Worker(id)
            }
            Err(e) => os_error("spawn worker", &e),
        }
    }

    fn kill_worker(&mut self, id: WorkerId) -> Response {
        if id == 0 {
            return bad_request("worker 0 is the VM's own executor and cannot be killed".into());
        }
        match self.workers.remove(&id) {
            Some((_, exe)) => {
                if let Some(e) = exe {
                    sys::kill(e.pid, libc::SIGKILL);
                    let _ = sys::waitpid(e.pid, 0);
                }
                Response::Done
            }
            None => Response::Error(AgentError {
                kind: ErrorKind::UnknownWorker,
                message: format!("no worker {id}"),
            }),
        }
    }

    fn stop_all(&mut self) {
        if let Some(front) = self.front.take() {
            sys::kill(front.exe.pid, libc::SIGKILL);
            let _ = sys::waitpid(front.exe.pid, 0);
        }
        for (_, (_, exe)) in std::mem::take(&mut self.workers) {
            if let Some(e) = exe {
                sys::kill(e.pid, libc::SIGKILL);
                let _ = sys::waitpid(e.pid, 0);
            }
        }
    }
}

/// How long PID 1 may sleep before the front's current call would overrun.
fn watchdog_wait(control: &Control) -> Duration {
    let s = control.state();
    if s.request != 0 && s.deadline_ms != 0 {
        let left = s.deadline_ms.saturating_sub(control::monotonic_ms());
        return Duration::from_millis(left.clamp(1, WATCHDOG_TICK_MS));
    }
    Duration::from_millis(WATCHDOG_TICK_MS)
}

enum Step {
    Answer(Response),
    /// No answer within the timeout.
    Silent,
    /// The channel closed: the executor is dead.
    Gone,
}

fn exchange(
    exe: &mut Executor,
    op: &Operation,
    timeout: Option<Duration>,
    dump: &mut DumpPort,
) -> Step {
    if write_message(&mut exe.chan, op).is_err() {
        return Step::Gone;
    }
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        match sys::wait_readable_or(exe.chan.as_raw_fd(), dump.fd(), left) {
            // The host asks where a hung worker hangs: answer, and keep waiting for it.
            Ok(Ready::Other) => dump.serve(),
            Ok(Ready::Timeout) => return Step::Silent,
            Ok(Ready::Main) | Err(_) => {
                return match read_message::<_, Response>(&mut exe.chan) {
                    Ok(r) => Step::Answer(r),
                    Err(_) => Step::Gone,
                }
            }
        }
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
        Failure::Broken(why) => SyscallOutcome::ExecutorBroken(why),
    }
}

fn failed_operation(f: Failure) -> Response {
    let (kind, message) = match f {
        Failure::Died(t) => (ErrorKind::ExecutorDied(t), format!("the executor {t}")),
        Failure::TimedOut => (ErrorKind::TimedOut, "timed out".to_string()),
        Failure::Unavailable(why) | Failure::Broken(why) => (ErrorKind::BadRequest, why),
    };
    Response::Error(AgentError { kind, message })
}
