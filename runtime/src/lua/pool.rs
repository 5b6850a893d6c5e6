//! VMs handed from one file to the next on the same runner thread. A file that says so
//! (`provium.share_vm()`, a spec's `share_vm: true`) and made no call to its VM other than
//! isolated cases (`vm:isolated`, which each run in a forked child of the executor) leaves the
//! executor as it found it, so the next file that would resume the same plain-boot fixture takes
//! that VM instead of resuming another (a resume is most of such a file's time under TCG). The
//! file vouches that its cases leave nothing else behind (files of their own, global settings).
//! A file that did anything else to its VM, or had a test fail, gives its VM up. Each file is
//! still reported on its own.

use crate::machine::vm::Vm;
use std::cell::RefCell;

thread_local! {
    /// At most one VM per fixture key: runner threads run one file at a time.
    static POOL: RefCell<Vec<(String, Vm)>> = const { RefCell::new(Vec::new()) };
}

/// A running VM for `key`, if the previous file on this thread left one.
pub fn take(key: &str) -> Option<Vm> {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let i = pool.iter().position(|(k, _)| k == key)?;
        let (_, vm) = pool.swap_remove(i);
        tracing::debug!(running = vm.is_running(), "pool: a VM handed over");
        vm.is_running().then_some(vm)
    })
}

/// Keeps `vm` for the next file that resumes `key` (replacing an older one).
pub fn give(key: String, vm: Vm) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        pool.retain(|(k, _)| *k != key);
        pool.push((key, vm));
    })
}
