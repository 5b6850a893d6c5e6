//! Asking a hung VM where it hangs before it is killed: the host sends a byte on the VM's dump
//! port and PID 1 prints its tasks' states and kernel stacks (and the kernel's sysrq `w` list of
//! blocked tasks) to the console, ending with [`DUMP_END`]; the timeout's console excerpt then
//! shows them.

use provium_agent::protocol::{DUMP_END, DUMP_REQUEST};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A VM that can be asked for a dump: its console log and its dump port's listener.
#[derive(Debug)]
pub struct DumpTarget {
    pub console: PathBuf,
    pub port: UnixListener,
}

/// Asks every target for a dump at once, then waits until each console shows the dump's end,
/// or `patience` has passed (a VM whose kernel is wedged prints nothing). Returns how many VMs
/// finished their dump.
pub fn request(targets: &[DumpTarget], patience: Duration) -> usize {
    let deadline = Instant::now() + patience;
    // The streams stay open until the wait ends: the guest reads a closed host side as the end
    // of the file, not as the request.
    let mut waiting: Vec<(&Path, u64, UnixStream)> = Vec::new();
    for t in targets {
        let from = std::fs::metadata(&t.console).map(|m| m.len()).unwrap_or(0);
        // QEMU connected when it started; a VM whose QEMU is gone has nothing queued.
        if t.port.set_nonblocking(true).is_err() {
            continue;
        }
        let Ok((mut stream, _)) = t.port.accept() else {
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        if stream.write_all(&[DUMP_REQUEST]).is_ok() {
            waiting.push((&t.console, from, stream));
        }
    }
    let mut done = 0;
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|(console, from, _)| {
            let finished = printed_since(console, *from);
            done += usize::from(finished);
            !finished
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    done
}

/// Whether the console log has the dump's end line after offset `from`.
fn printed_since(console: &Path, from: u64) -> bool {
    let Ok(mut f) = std::fs::File::open(console) else {
        return false;
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return false;
    }
    // A dump is a few KiB; more than 1 MiB after the request is a flood that ends the wait.
    let mut text = Vec::new();
    let _ = f.take(1 << 20).read_to_end(&mut text);
    text.len() >= 1 << 20 || String::from_utf8_lossy(&text).contains(DUMP_END)
}
