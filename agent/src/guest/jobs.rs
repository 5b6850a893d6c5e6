//! Background jobs: commands that run while the host goes on sending requests.
//!
//! A job outlives the request that started it, and may outlive the executor too (a syscall can
//! kill the executor; a fresh one must still find the job). So a job keeps its state in files,
//! not in a process's memory: `ROOT/N/` holds `pid`, `stdout`, `stderr` and, once the command
//! has ended, `status`. A keeper process, orphaned to PID 1 (which reaps it), starts the command
//! in a session of its own, enforces its timeout and writes `status`.

use super::exec;
use super::sys;
use provium_agent::protocol::{ExecCall, ExecResult, Termination};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Each stream keeps at most this much of a job's output.
const OUTPUT_CAP: u64 = 16 << 20;

static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Where jobs live: set by PID 1 before it forks executors. Without it (`--stdio` on a host),
/// a temporary directory, never the host's /run.
pub fn set_root(path: &str) {
    let _ = ROOT.set(PathBuf::from(path));
}

fn root() -> PathBuf {
    ROOT.get().cloned().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("provium-agent-jobs-{}", std::process::id()))
    })
}

fn dir_of(job: u32) -> PathBuf {
    root().join(job.to_string())
}

/// Starts `call` in the background and returns its job number.
pub fn start(call: &ExecCall) -> io::Result<u32> {
    let root = root();
    std::fs::create_dir_all(&root)?;
    // Numbers are taken by mkdir, which is atomic across executors.
    let mut job = 1u32;
    let dir = loop {
        let d = root.join(job.to_string());
        match std::fs::create_dir(&d) {
            Ok(()) => break d,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => job += 1,
            Err(e) => return Err(e),
        }
    };
    let mut cmd = exec::command(call)?;
    // Input from a file: a job that never reads it cannot block its keeper.
    std::fs::write(dir.join("stdin"), &call.stdin)?;
    cmd.stdin(File::open(dir.join("stdin"))?)
        .stdout(File::create(dir.join("stdout"))?)
        .stderr(File::create(dir.join("stderr"))?);
    // SAFETY: setsid is async-signal-safe; the job gets its own process group to be killed by.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // SAFETY: the executor is single-threaded here (exec helpers have been joined), so the
    // forked child may run ordinary code.
    let first = unsafe { libc::fork() };
    if first < 0 {
        return Err(io::Error::last_os_error());
    }
    if first == 0 {
        // SAFETY: as above; the second fork orphans the keeper so that PID 1 reaps it.
        let keeper = unsafe { libc::fork() };
        if keeper == 0 {
            keep(cmd, call, &dir);
        }
        // SAFETY: leaving the intermediate child at once.
        unsafe { libc::_exit(if keeper < 0 { 1 } else { 0 }) };
    }
    let _ = sys::waitpid(first, 0);
    // The keeper writes `pid` once the command runs (or `status` if it could not start).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("pid").exists() && !dir.join("status").exists() {
        if Instant::now() > deadline {
            return Err(io::Error::other("the job did not start within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(job)
}

/// The keeper: runs the command, waits for it, records how it ended. Never returns.
fn keep(mut cmd: std::process::Command, call: &ExecCall, dir: &Path) -> ! {
    let status = match cmd.spawn() {
        Ok(mut child) => {
            let _ = write_atomically(&dir.join("pid"), child.id().to_string().as_bytes());
            let timeout =
                (call.timeout_ms > 0).then(|| Duration::from_millis(call.timeout_ms as u64));
            match exec::wait_with_timeout(&mut child, timeout) {
                Ok(Some(s)) => match s.signal() {
                    Some(sig) => format!("signaled {sig}"),
                    None => format!("exited {}", s.code().unwrap_or(-1)),
                },
                _ => {
                    sys::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                    let _ = child.wait();
                    "timeout".to_string()
                }
            }
        }
        Err(e) => {
            let _ = std::fs::write(dir.join("stderr"), format!("cannot start: {e}\n"));
            "exited 127".to_string()
        }
    };
    let _ = write_atomically(&dir.join("status"), status.as_bytes());
    // SAFETY: the keeper is a forked child; it must not run the executor's destructors.
    unsafe { libc::_exit(0) }
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

fn unknown(job: u32) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no job {job}"))
}

/// Waits up to `timeout` for the job to end. While it runs, the result has no termination and
/// the output so far.
pub fn wait(job: u32, timeout: Duration) -> io::Result<ExecResult> {
    let dir = dir_of(job);
    if !dir.is_dir() {
        return Err(unknown(job));
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match std::fs::read_to_string(dir.join("status")) {
            Ok(s) => break Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    let termination = match status.as_deref().map(str::trim) {
        None => None,
        // Killed at its own timeout: that is how the job ended.
        Some("timeout") => Some(Termination::Signaled(libc::SIGKILL)),
        Some(s) => Some(parse_status(s)?),
    };
    let (stdout, t1) = read_capped(&dir.join("stdout"))?;
    let (stderr, t2) = read_capped(&dir.join("stderr"))?;
    Ok(ExecResult {
        termination,
        stdout,
        stderr,
        truncated: t1 || t2,
    })
}

fn parse_status(s: &str) -> io::Result<Termination> {
    let bad = || io::Error::other(format!("bad job status `{s}`"));
    let (kind, n) = s.split_once(' ').ok_or_else(bad)?;
    let n: i32 = n.parse().map_err(|_| bad())?;
    match kind {
        "exited" => Ok(Termination::Exited(n)),
        "signaled" => Ok(Termination::Signaled(n)),
        _ => Err(bad()),
    }
}

fn read_capped(path: &Path) -> io::Result<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((data, false)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.take(OUTPUT_CAP).read_to_end(&mut data)?;
    Ok((data, len > OUTPUT_CAP))
}

/// Kills the job's whole process group and waits briefly for the keeper to record it.
pub fn kill(job: u32) -> io::Result<()> {
    let dir = dir_of(job);
    if !dir.is_dir() {
        return Err(unknown(job));
    }
    if dir.join("status").exists() {
        return Ok(());
    }
    let pid: libc::pid_t = std::fs::read_to_string(dir.join("pid"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::other("bad job pid"))?;
    sys::kill(-pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dir.join("status").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
