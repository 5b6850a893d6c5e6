//! Nothing outlives the host process: child processes and run directories are registered here,
//! killed and removed on drop, on SIGINT, SIGTERM and SIGHUP (see `signals`), and, for processes, by the
//! kernel when the host dies (`PR_SET_PDEATHSIG`). Run directories of a host that was killed
//! outright are swept by the next run: each holds a lock while its owner lives.
//!
//! The registry itself (what to kill and remove) is `registry`, below this and `paths`; its
//! functions are re-exported here, where callers have always found them.

use super::registry;
pub use super::registry::{
    cleanup_all, forget_dir, group, kill_all_processes, kill_group, live_pids, remember_dir,
    set_group,
};

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// Spawning every child from one long-lived thread ties the children to the process's life.
fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("provium-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the process-spawning thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    {
        let guard = sender
            .lock()
            .map_err(|_| io::Error::other("spawner lock poisoned"))?;
        guard
            .send((cmd, tx))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    }
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// A child process that dies with its handle.
pub struct Supervised {
    child: Child,
    label: String,
    status: Option<ExitStatus>,
}

impl Supervised {
    pub fn spawn(cmd: Command, label: &str) -> io::Result<Supervised> {
        Supervised::spawn_grouped(cmd, label, true)
    }

    /// `own_group: false` keeps the child in the caller's process group: a child that reads
    /// the terminal (`provium shell`) must stay in the foreground group or it is stopped.
    pub fn spawn_grouped(mut cmd: Command, label: &str, own_group: bool) -> io::Result<Supervised> {
        // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, setpgid).
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited"));
                }
                // A process group of its own: a terminal's Ctrl-C reaches only the host, which
                // then stops the VM in order.
                if own_group {
                    libc::setpgid(0, 0);
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper(cmd)?;
        registry::remember_pid(child.id() as i32);
        Ok(Supervised {
            child,
            label: label.to_string(),
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited(s);
            }
        }
        self.status
    }

    fn exited(&mut self, status: ExitStatus) {
        self.status = Some(status);
        let pid = self.child.id() as i32;
        registry::forget_pid(pid);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_wait() {
            return Some(s);
        }
        // SAFETY: pidfd_open on our own child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.child.id() as i32, 0) };
        if pidfd >= 0 {
            let mut pfd = libc::pollfd {
                fd: pidfd as i32,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd; the pidfd is closed right after.
            unsafe {
                libc::poll(&mut pfd, 1, ms);
                libc::close(pidfd as i32);
            }
            return self.try_wait();
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.try_wait()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            registry::signal_child(self.child.id() as i32, libc::SIGTERM);
            if self.wait_timeout(grace).is_none() {
                self.kill();
            }
        }
        self.status
    }

    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            registry::signal_child(self.child.id() as i32, libc::SIGKILL);
            if let Ok(s) = self.child.wait() {
                self.exited(s);
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A per-VM directory for sockets and logs, removed with its handle.
pub struct RunDir {
    path: PathBuf,
    /// Holds an exclusive `flock` while the owner lives; see [`sweep_stale`].
    _lock: std::fs::File,
    keep: bool,
}

const RUN_DIR_PREFIX: &str = "provium-run-";

/// `--keep`: every VM's run directory stays after the run, for debugging.
static KEEP_ALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps the run directories of every VM this process starts from now on (`--keep`).
pub fn keep_run_dirs() {
    KEEP_ALL.store(true, std::sync::atomic::Ordering::SeqCst);
}

impl RunDir {
    pub fn create() -> io::Result<RunDir> {
        Self::create_in(&crate::machine::paths::runtime_base())
    }

    /// A run directory under `base`, which [`sweep_stale`] knows (the runtime base, or the
    /// RAM-backed directory where fixture builds keep their guests' RAM).
    pub fn create_in(base: &Path) -> io::Result<RunDir> {
        std::fs::create_dir_all(base)?;
        let dir = tempfile::Builder::new()
            .prefix(RUN_DIR_PREFIX)
            .tempdir_in(base)?
            .keep();
        // Locked before it has its name: another run's sweep could take the lock of a new
        // directory otherwise, and remove it. A directory without `.lock` is never swept.
        let lock = crate::machine::cache_lease::create_locked(&dir, ".lock")?;
        registry::remember_dir(&dir);
        let mut run_dir = RunDir {
            path: dir,
            _lock: lock,
            keep: false,
        };
        if KEEP_ALL.load(std::sync::atomic::Ordering::SeqCst) {
            run_dir.keep();
        }
        Ok(run_dir)
    }

    /// Whether the directory stays after the VM.
    pub fn is_kept(&self) -> bool {
        self.keep
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place (for debugging with `--keep`).
    pub fn keep(&mut self) {
        self.keep = true;
        registry::forget_dir(&self.path);
        // Without its lock file, later runs' sweeps leave the directory alone.
        let _ = std::fs::remove_file(self.path.join(".lock"));
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
            registry::forget_dir(&self.path);
        }
    }
}

/// Removes run directories left by hosts that were killed outright (their lock is free).
pub fn sweep_stale() -> usize {
    let mut bases = vec![crate::machine::paths::runtime_base()];
    let ram = crate::machine::paths::ram_dir();
    if !bases.contains(&ram) {
        bases.push(ram);
    }
    let mut removed = 0;
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(RUN_DIR_PREFIX) {
                continue;
            }
            let dir = entry.path();
            let Ok(lock) = std::fs::File::open(dir.join(".lock")) else {
                continue;
            };
            // SAFETY: flock on an open file; released when `lock` closes.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0
                && std::fs::remove_dir_all(&dir).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_child_is_killed_and_unregistered() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let child = Supervised::spawn(cmd, "sleep").unwrap();
        let pid = child.pid() as i32;
        assert!(live_pids().contains(&pid));
        drop(child);
        assert!(!live_pids().contains(&pid));
        // SAFETY: probing with signal 0.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "the child was reaped");
    }

    /// A wrapper that runs its program as a child (a `PROVIUM_QEMU` script without `exec`):
    /// killing the wrapper's handle kills the program too.
    #[test]
    fn a_wrappers_own_child_dies_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 30 & echo $! > '{}'; wait",
            pid_file.display()
        ));
        let child = Supervised::spawn(cmd, "wrapper").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let grandchild: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "the wrapper never started its child"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(child);
        // Killed; reaped by whoever adopted it, or left a zombie: either way not running.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()));
            match state {
                None => break,
                Some(s) if s.starts_with('Z') => break,
                Some(s) => assert!(
                    Instant::now() < deadline,
                    "the wrapper's child still runs: {s}"
                ),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn kill_group_stops_only_that_group() {
        let spawn = |group| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            std::thread::spawn(move || {
                set_group(group);
                Supervised::spawn(cmd, "sleep").unwrap()
            })
            .join()
            .unwrap()
        };
        let mut a = spawn(9_001);
        let mut b = spawn(9_002);
        assert_eq!(kill_group(9_001), 1);
        assert!(a.wait_timeout(Duration::from_secs(5)).is_some());
        assert!(b.try_wait().is_none(), "the other group's process lives");
    }

    #[test]
    fn terminate_escalates() {
        let mut cmd = Command::new("sh");
        // `exec`: the ignored SIGTERM is inherited by sleep, and no grandchild outlives the
        // test holding its output open.
        cmd.args(["-c", "trap '' TERM; exec sleep 30"]);
        let mut child = Supervised::spawn(cmd, "stubborn").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let status = child.terminate(Duration::from_millis(200));
        assert!(status.is_some());
    }

    #[test]
    fn run_dirs_are_removed_and_stale_ones_swept() {
        let dir = RunDir::create().unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());

        // A directory whose owner died: its lock file exists but nobody holds it.
        let stale =
            crate::machine::paths::runtime_base().join(format!("{RUN_DIR_PREFIX}stale-test"));
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join(".lock"), b"").unwrap();
        let live = RunDir::create().unwrap();
        sweep_stale();
        // Another test's sweeper may hold the stale lock, removing the directory itself: it is
        // gone once that sweep ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while stale.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            sweep_stale();
        }
        assert!(!stale.exists());
        assert!(live.path().exists(), "a live directory is never swept");
    }

    /// Another process's sweep runs at any moment, also while a directory is being created:
    /// a directory is never swept between its creation and its lock (a resume in one run once
    /// found its run directory gone: "binding agent.sock: No such file or directory").
    #[test]
    fn a_directory_being_created_is_never_swept() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweeper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sweep_stale();
                }
            })
        };
        let started = std::time::Instant::now();
        let mut created = 0;
        while started.elapsed() < std::time::Duration::from_secs(3) {
            let dir = RunDir::create().unwrap();
            created += 1;
            assert!(
                dir.path().join(".lock").exists(),
                "run directory {created} was swept while it was created"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sweeper.join().unwrap();
    }
}
