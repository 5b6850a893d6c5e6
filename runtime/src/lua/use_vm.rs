//! Running a call on a target's VM: the checks every method makes first (booted, not lost,
//! not a listing), and what a fatal VM error marks on the slot.

use super::dry::DryRun;
use super::errors;
use super::session::Session;
use super::slot::Target;
use crate::event::ConsoleEvent;
use crate::machine::vm::{Vm, VmError};
use crate::protocol::WorkerId;
use mlua::Lua;

/// Runs `f` on the booted VM; a fatal VM error marks the VM gone and records its console.
pub(super) fn with_vm<T, R: DryRun>(
    lua: &Lua,
    target: &T,
    method: &str,
    f: impl FnOnce(&mut Vm, WorkerId) -> Result<R, VmError>,
) -> mlua::Result<R>
where
    T: Target + ?Sized,
{
    let label = target.label();
    if Session::get(lua).config.settings.list_only {
        if R::informative() {
            Session::get(lua).invented();
        }
        return Ok(R::dry());
    }
    let mut slot = target.slot().borrow_mut();
    let running = slot.vm.as_ref().is_some_and(|vm| vm.is_running());
    if !running {
        return Err(match &slot.gone {
            Some(why) if slot.lost => errors::not_run(format!("{label}:{method}: {why}")),
            Some(why) => errors::error(
                lua,
                format!("{label}:{method}: the VM is not available: {why}"),
            ),
            None => errors::error(
                lua,
                format!("{label}:{method}: the VM is not booted; call vm:boot() first"),
            ),
        });
    }
    if method != "isolated" {
        if !slot.touched {
            tracing::debug!(method, "the VM is touched");
        }
        slot.touched = true;
    }
    let Some(vm) = slot.vm.as_mut() else {
        return Err(errors::error(
            lua,
            format!("{label}:{method}: the VM is gone"),
        ));
    };
    match f(vm, target.worker()) {
        Ok(r) => Ok(r),
        Err(e) if e.is_fatal() && stopped(lua).is_some() => {
            let why = stopped(lua).unwrap_or_default();
            slot.gone = Some(why.clone());
            slot.lost = true;
            Err(errors::error(
                lua,
                format!("{label}:{method}: {why}; its VM was killed"),
            ))
        }
        Err(e) => {
            if e.is_fatal() {
                slot.gone = Some(format!("the VM was lost in an earlier call ({e})"));
                slot.lost = true;
            }
            Err(vm_error(lua, &format!("{label}:{method}"), &e))
        }
    }
}

/// A VM error as a Lua error, with the console tail; a VM that is gone leaves its console in
/// the file's report too.
pub fn vm_error(lua: &Lua, what: &str, e: &VmError) -> mlua::Error {
    let console = e
        .console_tail()
        .map(|c| crate::machine::vm::console::excerpt(c, ConsoleEvent::VmLost));
    if let (true, Some(c)) = (e.is_fatal(), &console) {
        Session::get(lua).record_console(&c.text);
    }
    errors::vm_failure(lua, format!("{what}: {e}"), console)
}

/// Why the runner stopped the file (a timeout, an interrupt), if it did.
fn stopped(lua: &Lua) -> Option<String> {
    Session::get(lua)
        .config
        .control
        .as_ref()
        .and_then(|c| c.stopped_because())
}
