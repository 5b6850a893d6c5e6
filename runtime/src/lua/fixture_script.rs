//! The fixtures of a project, able to build from fixture scripts (`fixtures/NAME.lua`): a script
//! runs in a Lua state of its own with the whole API installed, so this sits above `api`.

use super::errors;
use super::session::{Session, SessionConfig, Settings};
use super::slot::LuaVm;
use crate::fixture::{FixtureError, FixtureUse, Fixtures};
use crate::machine::profile::TransportChoice;
use crate::machine::vm::Vm;
use mlua::{Lua, Value};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// The fixtures of the project around `start`, able to build from fixture scripts; resumed
/// from snapshots when `snapshots` (not with `--cold`).
pub fn discover(
    start: &Path,
    profiles: crate::machine::profile::Profiles,
    snapshots: bool,
) -> anyhow::Result<FixtureUse> {
    Ok(FixtureUse {
        fixtures: Arc::new(Fixtures::discover(start, profiles)?.with_scripts(Arc::new(run_script))),
        snapshots,
    })
}

/// Runs a fixture script and takes the VM it returns. With `snapshot_dir`, every VM the script
/// boots keeps its RAM in a file there, so that the returned one can be saved.
pub fn run_script(
    fixtures: &Fixtures,
    path: &Path,
    text: &str,
    snapshot_dir: Option<&Path>,
) -> Result<(Vm, Vec<PathBuf>), FixtureError> {
    let name = fixtures.display_path(path);
    let mut settings = Settings::new(fixtures.profiles.clone());
    // Snapshots are resumed over virtio-serial.
    settings.defaults.transport = Some(TransportChoice::VirtioSerial);
    // A script that uses another fixture (`provium.fixture("base")`) builds it by the same
    // rules, booted cold inside this build.
    settings.fixtures = Some(FixtureUse {
        fixtures: Arc::new(fixtures.clone()),
        snapshots: false,
    });
    let session = Rc::new(Session::new(SessionConfig {
        snapshot_dir: snapshot_dir.map(Path::to_path_buf),
        ..SessionConfig::new(&name, settings)
    }));
    let lua = Lua::new();
    lua.set_app_data(session.clone());
    let result = (|| -> Result<(Vm, Vec<PathBuf>), String> {
        super::api::install(&lua).map_err(|e| e.to_string())?;
        let value: Value = lua
            .load(text)
            .set_name(format!("@{name}"))
            .call(())
            .map_err(|e| errors::innermost(&e))?;
        let taken = match &value {
            Value::UserData(ud) => ud.borrow::<LuaVm>().ok().map(|vm| {
                let mut slot = vm.0.borrow_mut();
                (slot.vm.take(), slot.pushed.clone())
            }),
            _ => None,
        };
        match taken {
            Some((Some(vm), pushed)) => Ok((vm, pushed)),
            Some((None, _)) => Err("the VM it returns is not booted".into()),
            None => Err(format!(
                "it must return the VM it prepared (`return vm`), not {}",
                value.type_name()
            )),
        }
    })();
    session.shutdown_all();
    drop(lua);
    result.map_err(|why| FixtureError::Script {
        fixture: name,
        why,
        output: session.report.borrow().output.trim().to_string(),
    })
}
