//! What this process must undo if it dies: its live child processes (by the run group, a test
//! file, that started them) and the directories and temporary files it is making. `cleanup`
//! registers them as it starts and finishes them; `signals` empties the registry on SIGINT,
//! SIGTERM and SIGHUP. At the bottom of the machine layer: it uses nothing of it but `sync`.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

#[derive(Default)]
struct Registry {
    /// Live children, with the run group (test file) that started them.
    pids: HashMap<i32, u64>,
    dirs: HashMap<PathBuf, ()>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    f(&mut crate::machine::sync::lock(registry()))
}

/// Sends `sig` to a registered child and, when it leads a process group of its own (QEMU is
/// started in one), to that whole group: a wrapper named by `PROVIUM_QEMU` that runs QEMU as
/// its child instead of exec'ing it would otherwise leave QEMU running when the wrapper dies.
/// Only for children not yet reaped: their pid, and the group they lead, are still ours.
pub fn signal_child(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling a child we started (or its own group), which is not yet reaped.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::kill(-pid, sig);
        } else {
            libc::kill(pid, sig);
        }
    }
}

/// Kills every registered process and removes every registered directory.
pub fn cleanup_all() {
    let (pids, dirs) = with_registry(|r| {
        (
            r.pids.drain().map(|(p, _)| p).collect::<Vec<_>>(),
            r.dirs.drain().map(|(d, _)| d).collect::<Vec<_>>(),
        )
    });
    for pid in pids {
        signal_child(pid, libc::SIGKILL);
    }
    for dir in dirs {
        // Directories, and the temporary files of writes in progress (`paths::write_output`).
        if std::fs::remove_dir_all(&dir).is_err() {
            let _ = std::fs::remove_file(&dir);
        }
    }
}

thread_local! {
    static GROUP: Cell<u64> = const { Cell::new(0) };
}

/// Tags the processes this thread starts from now on with `group` (the runner gives each test
/// file its own), so that [`kill_group`] can stop one file's VMs and nothing else.
pub fn set_group(group: u64) {
    GROUP.with(|g| g.set(group));
}

/// The calling thread's group (0 when none was set).
pub fn group() -> u64 {
    GROUP.with(|g| g.get())
}

/// Kills the live processes started by `group`; their owners see them exit. Returns how many.
pub fn kill_group(group: u64) -> usize {
    with_registry(|r| {
        let mut n = 0;
        for (&pid, &g) in &r.pids {
            if g == group {
                signal_child(pid, libc::SIGKILL);
                n += 1;
            }
        }
        n
    })
}

/// Kills every registered process (their owners see them exit and clean up the rest).
pub fn kill_all_processes() {
    let pids: Vec<i32> = with_registry(|r| r.pids.keys().copied().collect());
    for pid in pids {
        signal_child(pid, libc::SIGKILL);
    }
}

/// Registers a child process, in the calling thread's group.
pub fn remember_pid(pid: i32) {
    let g = group();
    with_registry(|r| r.pids.insert(pid, g));
}

/// The child was reaped: its pid is no longer ours.
pub fn forget_pid(pid: i32) {
    with_registry(|r| r.pids.remove(&pid));
}

/// Registers a directory (or a temporary file) this process is making elsewhere (a fixture
/// build, a report being written), so that an interrupted run removes it.
pub fn remember_dir(path: &Path) {
    with_registry(|r| r.dirs.insert(path.to_path_buf(), ()));
}

/// The directory is finished (moved into place) or removed: it is not this process's to clean.
pub fn forget_dir(path: &Path) {
    with_registry(|r| r.dirs.remove(path));
}

/// Pids of live processes registered here (for tests of the cleanup itself).
pub fn live_pids() -> Vec<i32> {
    with_registry(|r| r.pids.keys().copied().collect())
}
