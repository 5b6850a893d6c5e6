//! A VM handle's state, shared by the `vm` object and its workers, and what syscalls can be
//! sent to: the state every binding of the Lua API reads, at the bottom of the folder's order
//! (slot, session → use_vm → the bindings → vm → the globals in api → fixture scripts).

use crate::machine::profile::Profile;
use crate::machine::vm::{BootOptions, Vm};
use crate::protocol::{Credentials, WorkerId};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// A VM handle's state, shared by the `vm` object and its workers.
pub struct VmSlot {
    pub profile: Profile,
    pub defaults: BootOptions,
    pub vm: Option<Vm>,
    /// Why the VM cannot be used (lost, shut down); shown by every later call.
    pub gone: Option<String>,
    /// The VM was lost (not shut down on purpose): a later test that needs it is not run,
    /// rather than failed again for the same reason.
    pub lost: bool,
    /// Host files put into the VM at boot (a fixture's cache key covers their content).
    pub pushed: Vec<PathBuf>,
    /// The kernel's taint and console at the last health check (see `health`).
    pub health: Option<HealthMark>,
    /// The plain-boot fixture it was resumed from (its pool key), if it was.
    pub pool_key: Option<String>,
    /// A call other than isolated cases reached the VM: it cannot be handed to another file.
    pub touched: bool,
}

impl VmSlot {
    pub fn new(profile: Profile, defaults: BootOptions) -> VmSlot {
        VmSlot {
            profile,
            defaults,
            vm: None,
            gone: None,
            lost: false,
            pushed: Vec::new(),
            health: None,
            pool_key: None,
            touched: false,
        }
    }

    /// The VM is ready: it runs, and its kernel's health is marked from here.
    pub fn set_vm(&mut self, mut vm: Vm) {
        self.health = Some(HealthMark::of(&mut vm));
        self.vm = Some(vm);
        self.gone = None;
        self.lost = false;
    }

    /// Shuts the VM down if it runs (at the end of a file, or `provium.shutdown_all`).
    pub fn shutdown(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            let _ = vm.shutdown();
        }
        self.gone
            .get_or_insert_with(|| "the VM was shut down".into());
    }

    /// Stops the VM at once, at the end of its file: its RAM is a private copy and it has no
    /// disk, so an orderly power-off (which takes the guest kernel a while under TCG) would
    /// save nothing.
    pub fn stop(&mut self, reusable: bool) {
        if let Some(mut vm) = self.vm.take() {
            tracing::debug!(
                pooled = self.pool_key.is_some(),
                reusable,
                touched = self.touched,
                "file ended with its VM"
            );
            match (&self.pool_key, reusable && !self.touched && vm.is_running()) {
                (Some(key), true) => super::pool::give(key.clone(), vm),
                _ => vm.kill(),
            }
        }
        self.gone.get_or_insert_with(|| "the file ended".into());
    }
}

/// Something syscalls can be sent to: the VM itself (worker 0) or a worker.
pub trait Target {
    fn slot(&self) -> &Rc<RefCell<VmSlot>>;
    fn worker(&self) -> WorkerId;
    fn label(&self) -> &'static str;
    /// The ABI calls made through this object use (`vm:abi("i386")` gives another view).
    fn abi(&self) -> provium_compiler::linux::Abi {
        provium_compiler::linux::Abi::X86_64
    }

    /// A call made through an ABI view takes its ABI (a call table's own `abi` stays).
    fn under_abi(&self, call: &mut crate::protocol::SyscallCall) {
        if call.abi == crate::protocol::Abi::Native
            && self.abi() == provium_compiler::linux::Abi::I386
        {
            call.abi = crate::protocol::Abi::I386;
        }
    }
}

/// `vm:abi("i386")` (or a worker's): the same executor, its calls made under another ABI.
pub struct LuaAbiView {
    pub slot: Rc<RefCell<VmSlot>>,
    pub worker: WorkerId,
    pub abi: provium_compiler::linux::Abi,
}

impl Target for LuaAbiView {
    fn slot(&self) -> &Rc<RefCell<VmSlot>> {
        &self.slot
    }
    fn worker(&self) -> WorkerId {
        self.worker
    }
    fn label(&self) -> &'static str {
        "vm:abi"
    }
    fn abi(&self) -> provium_compiler::linux::Abi {
        self.abi
    }
}

#[derive(Clone)]
pub struct LuaVm(pub Rc<RefCell<VmSlot>>);

impl Target for LuaVm {
    fn slot(&self) -> &Rc<RefCell<VmSlot>> {
        &self.0
    }
    fn worker(&self) -> WorkerId {
        0
    }
    fn label(&self) -> &'static str {
        "vm"
    }
}

pub struct LuaWorker {
    pub slot: Rc<RefCell<VmSlot>>,
    pub id: WorkerId,
    pub creds: Credentials,
}

impl Target for LuaWorker {
    fn slot(&self) -> &Rc<RefCell<VmSlot>> {
        &self.slot
    }
    fn worker(&self) -> WorkerId {
        self.id
    }
    fn label(&self) -> &'static str {
        "worker"
    }
}

/// Where a VM's kernel stood at the last check.
#[derive(Debug, Clone, Copy, Default)]
pub struct HealthMark {
    pub tainted: u64,
    pub console_len: u64,
    /// The VM's request count right after the mark: no request since, nothing to check.
    pub requests: u64,
}

impl HealthMark {
    pub fn of(vm: &mut Vm) -> HealthMark {
        let tainted = vm.tainted().unwrap_or(0);
        HealthMark {
            tainted,
            console_len: console_len(vm),
            requests: vm.requests(),
        }
    }
}

pub fn console_len(vm: &Vm) -> u64 {
    std::fs::metadata(vm.console_log())
        .map(|m| m.len())
        .unwrap_or(0)
}
