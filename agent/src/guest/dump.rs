//! Where a hung VM hangs: before the host kills a VM whose file ran out of time, it sends a byte
//! on the `org.provium.dump` port, and a thread of PID 1 prints to the console what the kernel
//! knows about the guest's tasks: sysrq `w` (tasks in uninterruptible sleep, with their kernel
//! stacks) and, for every user process, its state, wait channel and kernel stack from /proc.
//! The host then keeps the console's tail as the timeout's excerpt.
//!
//! A thread, not PID 1's loop: PID 1 may itself be blocked waiting for a worker that hangs.
//! The thread only reads /proc and writes whole lines with raw `write(2)` (never through
//! std's stderr lock), so an executor forked while it runs cannot inherit a held lock.

use super::link;
use provium_agent::protocol::{DUMP_END, DUMP_PORT_NAME, DUMP_REQUEST, DUMP_START};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::time::Duration;

/// At most this many user processes are described (a fork bomb must not flood the console).
const MAX_TASKS: usize = 64;
/// At most this many stack lines per task.
const MAX_STACK_LINES: usize = 24;

/// Starts the thread. It looks for the port off the boot's critical path: ports appear one by
/// one as `virtio_console` binds, and a VM on another transport has none (then it ends).
pub fn start() {
    let spawned = std::thread::Builder::new().name("dump".into()).spawn(|| {
        for _ in 0..100 {
            if let Ok(port) = link::open_serial_port(DUMP_PORT_NAME) {
                serve(port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    if let Err(e) = spawned {
        super::log(format_args!("cannot start the task-dump thread: {e}"));
    }
}

fn serve(mut port: File) -> ! {
    let mut buf = [0u8; 64];
    loop {
        match port.read(&mut buf) {
            // The host side is not connected (a snapshot being taken): look again later.
            Ok(0) | Err(_) => std::thread::sleep(Duration::from_millis(100)),
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
