//! Running commands in the guest with captured output and a timeout.

use super::sys;
use provium_agent::protocol::{ExecCall, ExecResult};
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Each stream keeps at most this much; the rest is counted as truncated.
const OUTPUT_CAP: usize = provium_agent::protocol::EXEC_OUTPUT_LIMIT;

/// The command `call` describes, with its environment and working directory (stdio not set).
pub fn command(call: &ExecCall) -> io::Result<Command> {
    let mut cmd = if call.shell {
        let script = call.argv.first().map(String::as_str).unwrap_or("");
        if !std::path::Path::new("/bin/sh").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no /bin/sh in the guest: install busybox-static on the host, or pass argv",
            ));
        }
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    } else {
        let program = call
            .argv
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
        let mut c = Command::new(program);
        c.args(&call.argv[1..]);
        c
    };
    // A command starts clean, whatever a test did to the executor (see `clean`): a known
    // environment and working directory, PID 1's boot state for the rest.
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/")
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .current_dir(call.cwd.as_deref().unwrap_or("/"));
    // SAFETY: reset_process_state only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(|| {
            super::clean::reset_process_state();
            Ok(())
        });
    }
    Ok(cmd)
}

pub fn run(call: &ExecCall) -> io::Result<ExecResult> {
    let mut cmd = command(call)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let input = call.stdin.clone();
    let feeder = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            // A child that exits without reading its input is not an error.
            let _ = s.write_all(&input);
        }
    });
    let out = child
        .stdout
        .take()
        .map(|s| std::thread::spawn(move || drain(s)));
    let err = child
        .stderr
        .take()
        .map(|s| std::thread::spawn(move || drain(s)));

    let timeout = (call.timeout_ms > 0).then(|| Duration::from_millis(call.timeout_ms as u64));
    let termination = match wait_with_timeout(&mut child, timeout)? {
        Some(status) => Some(match status.signal() {
            Some(sig) => provium_agent::protocol::Termination::Signaled(sig),
            None => provium_agent::protocol::Termination::Exited(status.code().unwrap_or(-1)),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let _ = feeder.join();
    let collect = |h: Option<std::thread::JoinHandle<(Vec<u8>, bool)>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (stdout, t1) = collect(out);
    let (stderr, t2) = collect(err);
    Ok(ExecResult {
        termination,
        stdout,
        stderr,
        truncated: t1 || t2,
    })
}

fn drain(mut r: impl Read) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = [0u8; 16384];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                truncated |= n > room;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (kept, truncated)
}

/// Waits through a pidfd so that a timeout costs no polling; `None` means it timed out.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> io::Result<Option<std::process::ExitStatus>> {
    let Some(timeout) = timeout else {
        return child.wait().map(Some);
    };
    // SAFETY: pidfd_open on our own child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if pidfd >= 0 {
        let pidfd = pidfd as i32;
        let ready = sys::wait_readable(pidfd, Some(timeout));
        // SAFETY: closing the pidfd we opened.
        unsafe { libc::close(pidfd) };
        return match ready? {
            true => child.wait().map(Some),
            false => Ok(None),
        };
    }
    // Kernels before 5.3: poll.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
