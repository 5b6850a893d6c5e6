//! Admission of VMs by memory and CPUs, so that parallel test files, and parallel provium
//! processes, never overcommit the host.
//!
//! The runner sets a budget (the host's available memory and CPUs); every VM takes a ticket for
//! its memory and vCPUs before QEMU starts and gives it back when it stops. Tickets are counted
//! across every provium process on the machine: each live ticket is a small file in a shared
//! directory, exclusively `flock`ed by its owner for as long as its VM lives, so a crashed
//! process's tickets count for nothing (and are swept). A file's first VM waits until it fits;
//! its later VMs are admitted at once: a file that waited while holding a VM could wait forever
//! on another file doing the same. Across processes there is no such rule (a holder in another
//! process may itself wait on this one, for a fixture being built): a VM that has waited 20 s is
//! admitted anyway.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// QEMU's own memory beside guest RAM, roughly (TCG translation cache, devices).
const QEMU_OVERHEAD_MIB: u64 = 64;
/// How often a waiting VM looks again at other processes' tickets.
const POLL: Duration = Duration::from_millis(100);
/// How long a VM waits for room before it is admitted anyway (see `admit`).
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct State {
    budget: Option<(u64, u32)>,
    used_mib: u64,
    used_cpus: u32,
    /// Tickets held, by run group (test file).
    held: HashMap<u64, usize>,
}

struct Gate {
    state: Mutex<State>,
    freed: Condvar,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate {
        state: Mutex::new(State::default()),
        freed: Condvar::new(),
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    crate::machine::sync::lock(&gate().state)
}

/// Where every provium process on the machine keeps its tickets: machine-wide shared memory
/// when there is some, the temporary directory otherwise. `PROVIUM_GATE_DIR` overrides it
/// (tests use their own).
pub fn shared_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PROVIUM_GATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("provium-gate")
    } else {
        std::env::temp_dir().join("provium-gate")
    }
}

fn flock(f: &File, op: libc::c_int) -> bool {
    // SAFETY: flock on an open descriptor.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// The directory, open for everyone (sticky, so only owners remove their tickets).
fn open_dir() -> Option<PathBuf> {
    let dir = shared_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    dir.is_dir().then_some(dir)
}

/// Memory and CPUs held by other processes' live tickets; stale tickets are removed.
fn others(dir: &Path) -> (u64, u32) {
    let me = format!("{}-", std::process::id());
    let (mut mib, mut cpus) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with(&me) {
            continue;
        }
        let Ok(mut f) = File::open(e.path()) else {
            continue;
        };
        if flock(&f, libc::LOCK_SH | libc::LOCK_NB) {
            // Nobody holds it: its process is gone.
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        let mut parts = text
            .split_whitespace()
            .map(|p| p.parse::<u64>().unwrap_or(0));
        mib += parts.next().unwrap_or(0);
        cpus += parts.next().unwrap_or(0) as u32;
    }
    (mib, cpus)
}

/// This process's ticket file, locked while the VM lives.
struct Posted {
    path: PathBuf,
    _file: File,
}

impl Drop for Posted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn post(dir: &Path, mib: u64, cpus: u32) -> Option<Posted> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{}-{n}", std::process::id()));
    let mut f = File::create(&path).ok()?;
    if !flock(&f, libc::LOCK_EX) {
        return None;
    }
    f.write_all(format!("{mib} {cpus}\n").as_bytes()).ok()?;
    Some(Posted { path, _file: f })
}

use crate::machine::notice::{notify, Notice};

/// Time spent waiting at the gate, by run group (test file): a file's time limit counts from
/// the moment its VMs are admitted, so its waits are taken off (see `lua::control`).
#[derive(Default, Clone, Copy)]
struct Waits {
    total: Duration,
    since: Option<std::time::Instant>,
}

fn waits() -> std::sync::MutexGuard<'static, HashMap<u64, Waits>> {
    static WAITS: OnceLock<Mutex<HashMap<u64, Waits>>> = OnceLock::new();
    crate::machine::sync::lock(WAITS.get_or_init(Default::default))
}

/// How long the VMs of run group `group` have waited at the gate so far, the wait in progress
/// included.
pub fn waited(group: u64) -> Duration {
    waits()
        .get(&group)
        .map(|w| w.total + w.since.map(|s| s.elapsed()).unwrap_or_default())
        .unwrap_or_default()
}

/// Whether a VM of `group` is waiting at the gate now.
pub fn is_waiting(group: u64) -> bool {
    waits().get(&group).is_some_and(|w| w.since.is_some())
}

/// Forgets a finished file's waits.
pub fn forget_waits(group: u64) {
    waits().remove(&group);
}

/// Sets the budget VMs are admitted within; `None` admits everything (the library default).
pub fn set_budget(budget: Option<(u64, u32)>) {
    lock().budget = budget;
    gate().freed.notify_all();
}

/// A VM's share of the budget, returned on drop.
pub struct Ticket {
    mib: u64,
    cpus: u32,
    group: u64,
    _posted: Option<Posted>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({} MiB, {} CPUs)", self.mib, self.cpus)
    }
}

/// Waits until a VM of `memory_mib` and `cpus` fits, counting the VMs of every provium process
/// on the machine, then takes its share.
pub fn admit(memory_mib: u32, cpus: u32) -> Ticket {
    let mib = memory_mib as u64 + QEMU_OVERHEAD_MIB;
    let group = crate::machine::cleanup::group();
    let dir = open_dir();
    let mut s = lock();
    let waiting_since = std::time::Instant::now();
    let mut waiting_noticed = false;
    loop {
        // Other processes are counted under the directory's lock, so that two processes do
        // not both decide that the last CPU is theirs.
        let global = dir.as_ref().and_then(|d| {
            let f = File::create(d.join(".lock")).ok()?;
            flock(&f, libc::LOCK_EX).then_some(f)
        });
        let (other_mib, other_cpus) = dir.as_deref().map(others).unwrap_or((0, 0));
        let (used_mib, used_cpus) = (s.used_mib + other_mib, s.used_cpus + other_cpus);
        let fits = match s.budget {
            None => true,
            Some((mem, cpu)) => used_mib + mib <= mem && used_cpus + cpus <= cpu,
        };
        // An idle host admits anything, or a VM larger than the budget would never start.
        let idle = used_mib == 0 && used_cpus == 0;
        let holds = s.held.get(&group).is_some_and(|n| *n > 0);
        // Across processes a holder can wait on this VM (a fixture this one builds, another
        // process resumes): after a while, overcommitting beats waiting for ever.
        let patient = waiting_since.elapsed() >= PATIENCE;
        if patient && !fits {
            tracing::info!(
                "admitting a VM over the machine's budget after {PATIENCE:?} of waiting"
            );
        }
        if fits || idle || holds || patient {
            let posted = dir.as_deref().and_then(|d| post(d, mib, cpus));
            drop(global);
            if waiting_noticed {
                let waited = waiting_since.elapsed();
                if let Some(w) = waits().get_mut(&group) {
                    w.total += waited;
                    w.since = None;
                }
                notify(Notice::Admitted { waited });
            }
            s.used_mib += mib;
            s.used_cpus += cpus;
            *s.held.entry(group).or_insert(0) += 1;
            return Ticket {
                mib,
                cpus,
                group,
                _posted: posted,
            };
        }
        drop(global);
        if !waiting_noticed {
            waiting_noticed = true;
            waits().entry(group).or_default().since = Some(waiting_since);
            if let Some((mem, cpu)) = s.budget {
                notify(Notice::Waiting {
                    busy_cpus: used_cpus,
                    cpus: cpu,
                    busy_mib: used_mib,
                    mib: mem,
                    others_cpus: other_cpus,
                });
            }
        }
        // Woken by this process's VMs stopping, or after a while to look at the others'.
        s = gate()
            .freed
            .wait_timeout(s, POLL)
            .map(|(g, _)| g)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = lock();
        s.used_mib = s.used_mib.saturating_sub(self.mib);
        s.used_cpus = s.used_cpus.saturating_sub(self.cpus);
        if let Some(n) = s.held.get_mut(&self.group) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.held.remove(&self.group);
            }
        }
        drop(s);
        gate().freed.notify_all();
    }
}

/// The host's available memory in MiB (`MemAvailable`), if it can be read.
pub fn host_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Files run at once by default: one per CPU, as far as the memory of `vm_mib` VMs allows.
pub fn default_jobs(vm_mib: u32) -> usize {
    let cpus = host_cpus() as u64;
    let by_memory = host_available_mib()
        .map(|m| (m * 8 / 10) / (vm_mib as u64 + QEMU_OVERHEAD_MIB))
        .unwrap_or(cpus);
    cpus.min(by_memory).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    // One test touches the global gate, so that tests do not race on its budget.
    #[test]
    fn waits_for_room_but_never_on_itself_and_counts_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("PROVIUM_GATE_DIR", dir.path());
        set_budget(Some((2 * (256 + QEMU_OVERHEAD_MIB), 2)));
        crate::machine::cleanup::set_group(77_001);
        let a = admit(256, 1);
        let b = admit(256, 1);
        // A third VM of the same file is over budget but admitted: it holds tickets already.
        let c = admit(256, 1);
        drop(c);
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| !e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.'))
                .count(),
            2,
            "each live VM has its ticket"
        );

        let admitted = Arc::new(AtomicBool::new(false));
        let flag = admitted.clone();
        let other = std::thread::spawn(move || {
            crate::machine::cleanup::set_group(77_002);
            let t = admit(256, 1);
            flag.store(true, Ordering::SeqCst);
            drop(t);
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !admitted.load(Ordering::SeqCst),
            "another file waits while full"
        );
        drop(a);
        other.join().unwrap();
        assert!(admitted.load(Ordering::SeqCst));
        drop(b);

        // Another process's live ticket counts: a ticket held by a child process.
        let held = dir.path().join("1-0");
        std::fs::write(&held, format!("{} 2\n", 256 + QEMU_OVERHEAD_MIB)).unwrap();
        // The shell takes the lock on descriptor 9, then becomes `sleep`, which keeps it.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 9<'{}'; flock 9; exec sleep 30",
                held.display()
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(others(dir.path()), (256 + QEMU_OVERHEAD_MIB, 2));
        child.kill().unwrap();
        child.wait().unwrap();
        // Its process is gone: the ticket counts for nothing and is swept.
        assert_eq!(others(dir.path()), (0, 0));
        assert!(!held.exists());
        set_budget(None);
    }
}
