//! Admission of VMs by memory and CPUs, so that parallel test files never overcommit the host.
//!
//! The runner sets a budget (the host's available memory and CPUs); every VM takes a ticket
//! for its memory and vCPUs before QEMU starts and gives it back when it stops. A file's first
//! VM waits until it fits. Its later VMs are admitted at once: a file that waited while holding
//! a VM could wait forever on another file doing the same.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};

/// QEMU's own memory beside guest RAM, roughly (TCG translation cache, devices).
const QEMU_OVERHEAD_MIB: u64 = 64;

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

/// Sets the budget VMs are admitted within; `None` admits everything (the library default).
pub fn set_budget(budget: Option<(u64, u32)>) {
    lock().budget = budget;
    gate().freed.notify_all();
}

/// A VM's share of the budget, returned on drop.
#[derive(Debug)]
pub struct Ticket {
    mib: u64,
    cpus: u32,
    group: u64,
}

/// Waits until a VM of `memory_mib` and `cpus` fits, then takes its share.
pub fn admit(memory_mib: u32, cpus: u32) -> Ticket {
    let mib = memory_mib as u64 + QEMU_OVERHEAD_MIB;
    let group = crate::machine::cleanup::group();
    let mut s = lock();
    loop {
        let fits = match s.budget {
            None => true,
            Some((mem, cpu)) => s.used_mib + mib <= mem && s.used_cpus + cpus <= cpu,
        };
        // An idle host admits anything, or a VM larger than the budget would never start.
        let idle = s.used_mib == 0 && s.used_cpus == 0;
        let holds = s.held.get(&group).is_some_and(|n| *n > 0);
        if fits || idle || holds {
            break;
        }
        s = gate()
            .freed
            .wait(s)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    s.used_mib += mib;
    s.used_cpus += cpus;
    *s.held.entry(group).or_insert(0) += 1;
    Ticket { mib, cpus, group }
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
    use std::time::Duration;

    // One test touches the global gate, so that tests do not race on its budget.
    #[test]
    fn waits_for_room_but_never_on_itself() {
        set_budget(Some((2 * (256 + QEMU_OVERHEAD_MIB), 2)));
        crate::machine::cleanup::set_group(77_001);
        let a = admit(256, 1);
        let b = admit(256, 1);
        // A third VM of the same file is over budget but admitted: it holds tickets already.
        let c = admit(256, 1);
        drop(c);

        let admitted = Arc::new(AtomicBool::new(false));
        let flag = admitted.clone();
        let other = std::thread::spawn(move || {
            crate::machine::cleanup::set_group(77_002);
            let t = admit(256, 1);
            flag.store(true, Ordering::SeqCst);
            drop(t);
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !admitted.load(Ordering::SeqCst),
            "another file waits while full"
        );
        drop(a);
        other.join().unwrap();
        assert!(admitted.load(Ordering::SeqCst));
        drop(b);
        set_budget(None);
    }
}
