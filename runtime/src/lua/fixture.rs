//! `provium.fixture(name)` and the automatic resume of plain `vm:boot()`. Fixture scripts are
//! run by `fixture_script`, above the API they install.

use super::errors;
use super::session::Session;
use super::slot::{LuaVm, VmSlot};
use super::use_vm::vm_error;
use crate::fixture::{Definition, FixtureError, FixtureUse, Fixtures};
use crate::machine::profile::Profile;
use crate::machine::vm::{BootOptions, Vm};
use mlua::Lua;
use std::cell::RefCell;
use std::rc::Rc;

/// The fixtures a session uses: the runner's, or the ones around the working directory.
fn fixture_use(session: &Session) -> Result<FixtureUse, anyhow::Error> {
    if let Some(f) = &session.config.settings.fixtures {
        return Ok(f.clone());
    }
    // Nothing set fixtures up (a Lua state made by hand): the project's, booted cold. Fixture
    // scripts get their builder's (see `fixture_script::run_script`), so this needs no scripts.
    let cwd = std::env::current_dir()?;
    Ok(FixtureUse {
        fixtures: std::sync::Arc::new(Fixtures::discover(
            &cwd,
            session.config.settings.profiles.clone(),
        )?),
        snapshots: false,
    })
}

/// Boots or resumes `def` for a session, with the spinner events around it.
fn start(session: &Session, uses: &FixtureUse, def: &Definition) -> Result<Vm, FixtureError> {
    session.boot_started(&format!("fixture {}", def.name));
    let result = if uses.snapshots {
        match uses.fixtures.resume_def(def) {
            // No build can be made (a read-only cache, a full disk): boot and prepare it here.
            Err(e) if e.is_cache_unavailable() => {
                warn_once(&e);
                uses.fixtures.materialize(def, None).map(|(vm, _)| vm)
            }
            other => other,
        }
    } else {
        uses.fixtures.materialize(def, None).map(|(vm, _)| vm)
    };
    session.boot_finished();
    let mut vm = result?;
    vm.set_fixture(&def.name);
    session.record_vm(&vm);
    Ok(vm)
}

fn warn_once(e: &FixtureError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing::warn!("{e}; booting without snapshots"));
}

/// A fixture's failure as a Lua error: its VM's, with the console, when the VM failed.
pub fn fixture_error(lua: &Lua, what: &str, e: &FixtureError) -> mlua::Error {
    match e {
        FixtureError::Vm(vm) => vm_error(lua, what, vm),
        other => errors::vm_failure(lua, format!("{what}: {other}"), None),
    }
}

/// `provium.fixture(name)`: a booted, prepared VM resumed from the fixture's snapshot.
pub fn fixture(lua: &Lua, name: String) -> mlua::Result<LuaVm> {
    let session = Session::get(lua);
    let what = format!("provium.fixture(\"{name}\")");
    let uses = fixture_use(&session).map_err(|e| errors::error(lua, format!("{what}: {e:#}")))?;
    let def = uses
        .fixtures
        .find(&name)
        .map_err(|e| errors::error(lua, format!("{what}: {e:#}")))?;
    let profile = session
        .config
        .settings
        .profiles
        .get(def.profile_name())
        .or_else(|_| session.config.settings.profiles.get("minimal"))
        .map_err(|e| errors::error(lua, format!("{what}: {e:#}")))?;
    let slot = Rc::new(RefCell::new(VmSlot::new(
        profile,
        session.config.settings.defaults.clone(),
    )));
    session.vms.borrow_mut().push(slot.clone());
    if session.config.settings.list_only {
        return Ok(LuaVm(slot));
    }
    match start(&session, &uses, &def) {
        Ok(vm) => slot.borrow_mut().set_vm(vm),
        Err(e) => {
            let mut slot = slot.borrow_mut();
            slot.gone = Some(format!("its fixture failed ({e})"));
            slot.lost = true;
            drop(slot);
            return Err(fixture_error(lua, &what, &e));
        }
    }
    Ok(LuaVm(slot))
}

/// A plain `vm:boot()` is the same VM every time: it is resumed from the profile's own fixture
/// unless fixtures are off (`--cold`) or the boot is one of a kind (files, kernel arguments,
/// vsock, a kept run directory). `None` means: boot normally.
pub fn resume_plain_boot(
    lua: &Lua,
    session: &Session,
    profile: &Profile,
    options: &BootOptions,
) -> Option<mlua::Result<(Vm, String)>> {
    let uses = session
        .config
        .settings
        .fixtures
        .as_ref()
        .filter(|f| f.snapshots)?;
    // A boot inside a fixture build keeps its RAM in the build: it cannot be a copy-on-write
    // resume (it may be one built on a plain boot's build, see `Fixtures::derive`).
    if options.snapshot_memory.is_some() {
        return None;
    }
    // One build stands for every such boot (the boot timeout only bounds the build).
    let def = Definition::plain_boot(profile, options)?;
    let key = match uses.fixtures.key(&def) {
        Ok(k) => k,
        Err(e) => return Some(Err(fixture_error(lua, "vm:boot", &e))),
    };
    if let Some(vm) = super::pool::take(&key) {
        session.record_vm(&vm);
        return Some(Ok((vm, key)));
    }
    Some(
        start(session, uses, &def)
            .map(|vm| (vm, key))
            .map_err(|e| fixture_error(lua, "vm:boot", &e)),
    )
}
