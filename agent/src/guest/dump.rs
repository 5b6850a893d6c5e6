//! Where a hung VM hangs: before the host kills a VM whose file ran out of time, it sends a byte
//! on the `org.provium.dump` port, and PID 1 prints to the console what the kernel knows about
//! the guest's tasks: sysrq `w` (tasks in uninterruptible sleep, with their kernel stacks) and,
//! for every user process, its state, wait channel and kernel stack from /proc. The host then
//! keeps the console's tail as the timeout's excerpt.
//!
//! PID 1 watches the port wherever it waits: for the front's next message and for a worker's
//! answer, so a test hanging in either is described. Not a thread: PID 1 forks every executor,
//! and a child forked from a threaded process may inherit a lock another thread held (an
//! executor then hung in its first `exec`).

use super::link;
use provium_agent::protocol::{DUMP_END, DUMP_PORT_NAME, DUMP_REQUEST, DUMP_START};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// At most this many user processes are described (a fork bomb must not flood the console).
const MAX_TASKS: usize = 64;
/// At most this many stack lines per task.
const MAX_STACK_LINES: usize = 24;
/// How long the port is looked for after boot (ports appear one by one as `virtio_console`
/// binds; a VM on another transport has none).
const LOOK_FOR: Duration = Duration::from_secs(10);

/// The dump port, once found.
pub struct DumpPort {
    port: Option<File>,
    started: Instant,
    next_look: Instant,
    /// The host side is not connected (a snapshot being taken): the port reads as ended.
    quiet_until: Option<Instant>,
}

impl DumpPort {
    pub fn new() -> DumpPort {
        let now = Instant::now();
        let mut d = DumpPort {
            port: None,
            started: now,
            next_look: now,
            quiet_until: None,
        };
        d.look();
        d
    }

    fn look(&mut self) {
        let now = Instant::now();
        if self.port.is_some() || now < self.next_look || now - self.started > LOOK_FOR {
            return;
        }
        self.port = link::open_serial_port(DUMP_PORT_NAME).ok();
        self.next_look = now + Duration::from_millis(200);
    }

    /// The descriptor to watch beside the one PID 1 waits for, if there is one now.
    pub fn fd(&mut self) -> Option<RawFd> {
        self.look();
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        self.port.as_ref().map(|p| p.as_raw_fd())
    }

    /// The port is readable: a request (dumped at once), or the host side went away.
    pub fn serve(&mut self) {
        let Some(port) = self.port.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        match port.read(&mut buf) {
            Ok(0) | Err(_) => {
                self.quiet_until = Some(Instant::now() + Duration::from_millis(500));
            }
            Ok(n) => {
                if buf[..n].contains(&DUMP_REQUEST) {
                    dump();
                }
            }
        }
    }
}

/// Prints the dump and its end line to the console.
fn dump() {
    console(&format!("{DUMP_START}\n"));
    match std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sysrq-trigger")
    {
        Ok(mut trigger) => {
            // `w`: the kernel prints its blocked tasks. Written through the file, sysrq works
            // whatever kernel.sysrq allows on the keyboard and serial line.
            let _ = std::io::Write::write_all(&mut trigger, b"w");
        }
        Err(_) => console(
            "provium-agent: no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ is not set): \
             no blocked-task dump\n",
        ),
    }
    let mut text = String::new();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let mut shown = 0;
    for pid in pids {
        let Some(task) = Task::read(pid) else {
            continue;
        };
        if task.kernel_thread {
            continue;
        }
        if shown == MAX_TASKS {
            text.push_str("provium-agent:   (more processes not shown)\n");
            break;
        }
        shown += 1;
        task.describe(&mut text);
    }
    console(&text);
    console(&format!("{DUMP_END}\n"));
}

struct Task {
    pid: u32,
    comm: String,
    state: char,
    kernel_thread: bool,
}

impl Task {
    /// From /proc/PID/stat: `pid (comm) state ppid … flags …`; comm may hold spaces and
    /// parentheses, so the fields after it are found from the last `)`.
    fn read(pid: u32) -> Option<Task> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
        let state = rest.first()?.chars().next()?;
        let ppid: u32 = rest.get(1)?.parse().ok()?;
        // Field 9 of stat is flags; PF_KTHREAD is 0x00200000.
        let flags: u64 = rest.get(6)?.parse().ok()?;
        let kernel_thread = flags & 0x0020_0000 != 0 || pid == 2 || ppid == 2;
        Some(Task {
            pid,
            comm,
            state,
            kernel_thread,
        })
    }

    fn describe(&self, out: &mut String) {
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", self.pid))
            .ok()
            .filter(|w| !w.is_empty() && w != "0");
        let role = if self.pid == 1 {
            ", Provium's agent"
        } else {
            ""
        };
        let _ = write!(
            out,
            "provium-agent:   pid {} ({}{role}) state {}",
            self.pid, self.comm, self.state
        );
        if let Some(w) = wchan {
            let _ = write!(out, ", waiting in {w}");
        }
        out.push('\n');
        match std::fs::read_to_string(format!("/proc/{}/stack", self.pid)) {
            Ok(stack) => {
                for line in stack.lines().take(MAX_STACK_LINES) {
                    let _ = writeln!(out, "provium-agent:     {line}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "provium-agent:     (no kernel stack: {e})");
            }
        }
    }
}

/// Writes to the console (PID 1's stderr) with raw `write(2)` calls.
fn console(text: &str) {
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        // SAFETY: writing a valid buffer to PID 1's stderr, which stays open.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}
