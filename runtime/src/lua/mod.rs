//! The Provium Lua API (see `docs/lua-api.md`) and the running of one test file in its own Lua
//! state.

pub mod api;
mod assert;
pub mod control;
pub mod convert;
mod dry;
pub mod errors;
pub mod expect;
pub mod fixture;
pub mod fixture_script;
mod health;
mod isolated;
mod options;
pub mod pack;
mod patterns;
mod pool;
mod ready;
mod requires;
pub mod session;
pub mod slot;
mod store;
mod target;
mod use_vm;
pub mod vm;

use crate::event::{FileReport, Location, Problem, Status, TestReport};
use mlua::{Function, Lua, Value};
pub use session::{silent, Emit, Session, SessionConfig, Settings, SourceMap, TestFilter};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A script may not use more memory than this on the host.
const LUA_MEMORY_LIMIT: usize = 2 << 30;

/// How long planning (a list-mode run) may take for one file by default (`--plan-timeout`).
/// Planning answers VM calls with invented values, so a loop that waits for a real answer would
/// never end.
pub const PLAN_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs Lua `code` as the test file `config.file`. Errors never escape: they are in the report.
/// `chunk_name` is what error messages and tracebacks call the code (the file's path, or the
/// YAML spec a chunk was compiled from).
pub fn run_chunk(config: SessionConfig, chunk_name: &str, code: &str) -> FileReport {
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let session = Rc::new(Session::new(config));
    // Waits at the machine-wide gate and fixture builds are shown as they start; waits are
    // kept off the tests' times.
    let _notices = {
        use crate::machine::notice::Notice;
        let s = Rc::downgrade(&session);
        crate::machine::notice::observe(Rc::new(move |notice| {
            let Some(s) = s.upgrade() else { return };
            let file = s.config.index;
            match notice {
                Notice::Waiting {
                    busy_cpus,
                    cpus,
                    busy_mib,
                    mib,
                    others_cpus,
                } => s.emit(crate::event::RunEvent::Waiting {
                    file,
                    wait: crate::event::GateWait {
                        busy_cpus,
                        cpus,
                        busy_mib,
                        mib,
                        other_processes_cpus: others_cpus,
                    },
                }),
                Notice::Admitted { waited } => s.queued.set(s.queued.get() + waited),
                Notice::Building { fixture } => {
                    s.emit(crate::event::RunEvent::Building { file, fixture })
                }
            }
        }))
    };
    let lua = Lua::new();
    let _ = lua.set_memory_limit(LUA_MEMORY_LIMIT);
    lua.set_app_data(session.clone());
    if let Some(control) = session.config.control.clone() {
        install_cancel_hook(&lua, control);
    } else if session.config.settings.list_only {
        install_plan_limit(&lua, started, session.config.settings.plan_limit);
    }
    let file_error = match api::install(&lua) {
        Ok(()) => execute(&lua, &session, chunk_name, code),
        Err(e) => Some(Problem {
            message: format!("cannot set up the Lua API: {e}"),
            location: None,
            detail: String::new(),
            console: None,
        }),
    };
    session.stop_all();
    drop(lua);
    let mut report = session.report.take();
    if file_error.is_some() {
        report.file_error = file_error;
    }
    report.duration = started.elapsed();
    report.queued = session.queued.get();
    if let (Some(b), Some(e)) = (session.booted_at.get(), session.last_test_end.get()) {
        report.after_boot = Some(e.saturating_duration_since(b));
    }
    report.started_at = started_at;
    report
}

/// Error raised when planning a file runs out of time.
const PLAN_STOPPED: &str = "planning stopped";

/// Planning stops at `limit`: the report then says so (`listing_stopped`) and keeps the tests
/// listed until then.
fn install_plan_limit(lua: &Lua, started: Instant, limit: std::time::Duration) {
    let triggers = mlua::HookTriggers::new().every_nth_instruction(1000);
    let _ = lua.set_hook(triggers, move |lua, _| {
        if started.elapsed() < limit {
            return Ok(mlua::VmState::Continue);
        }
        if let Some(s) = lua.app_data_ref::<Rc<Session>>() {
            s.report.borrow_mut().listing_stopped = true;
        }
        Err(mlua::Error::RuntimeError(format!(
            "{PLAN_STOPPED} after {} s",
            limit.as_secs_f64()
        )))
    });
}

/// A stopped file (timed out, interrupted) stops at its next Lua instruction inside a test; the
/// tests it has not reached are not run. Outside tests, code gets a moment to reach the next
/// `test()` call, then stops too (an endless loop at the top level must end). A test that
/// catches the stop with `pcall` gets it again when `pcall` returns (see `api`).
fn install_cancel_hook(lua: &Lua, control: std::sync::Arc<control::FileControl>) {
    const OUTSIDE_TESTS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
    let triggers = mlua::HookTriggers::new().every_nth_instruction(1000);
    let _ = lua.set_hook(triggers, move |lua, _| {
        let Some(reason) = control.stopped_because() else {
            return Ok(mlua::VmState::Continue);
        };
        let in_test = lua
            .app_data_ref::<Rc<Session>>()
            .and_then(|s| s.current.try_borrow().ok().map(|c| c.is_some()))
            .unwrap_or(true);
        let late = control
            .stopped_for()
            .is_some_and(|d| d > OUTSIDE_TESTS_GRACE);
        if in_test || late {
            return Err(mlua::Error::RuntimeError(reason));
        }
        Ok(mlua::VmState::Continue)
    });
}

/// Whether `code` parses as Lua (nothing runs); the problem, located in `chunk_name`, if not.
pub fn syntax_error(code: &str, chunk_name: &str) -> Option<Problem> {
    let lua = Lua::new();
    match lua
        .load(code)
        .set_name(format!("@{chunk_name}"))
        .into_function()
    {
        Ok(_) => None,
        Err(e) => {
            let (location, message) = errors::split_location(&errors::innermost(&e));
            Some(Problem {
                message: format!("syntax error: {message}"),
                location,
                detail: String::new(),
                console: None,
            })
        }
    }
}

fn execute(lua: &Lua, session: &Rc<Session>, chunk_name: &str, code: &str) -> Option<Problem> {
    let chunk = match lua
        .load(code)
        .set_name(format!("@{chunk_name}"))
        .into_function()
    {
        Ok(f) => f,
        Err(e) => {
            let (location, message) = errors::split_location(&errors::innermost(&e));
            return Some(Problem {
                message: format!("syntax error: {message}"),
                location,
                detail: String::new(),
                console: None,
            });
        }
    };
    let run: Function = match lua.named_registry_value("provium.run") {
        Ok(f) => f,
        Err(e) => {
            return Some(Problem {
                message: e.to_string(),
                location: None,
                detail: String::new(),
                console: None,
            })
        }
    };
    let result: mlua::Result<(bool, Value, Option<String>)> = run.call(chunk);
    let mut status = match result {
        Ok((true, _, _)) => return None,
        Ok((false, err, tb)) => api::classify(&err, tb.as_deref()),
        Err(e) => api::classify(&Value::Error(Box::new(e)), None),
    };
    session.map_status(&mut status);
    match status {
        Status::Skipped { reason, kind } => {
            // skip() outside a test skips the rest of the file.
            session.report.borrow_mut().tests.push(TestReport {
                name: "(file)".into(),
                location: Location {
                    file: session.config.file.clone(),
                    line: 0,
                },
                status: Status::Skipped { reason, kind },
                duration: Default::default(),
                output: String::new(),
                observed: None,
            });
            None
        }
        Status::Failed(p) | Status::Errored(p) => Some(p),
        Status::NotRun { reason } => Some(Problem::new(reason)),
        Status::Passed => None,
    }
}

#[cfg(test)]
mod tests;
