//! The `provium` module and the test globals (`test`, `skip`, `todo`, `assert*`).

use super::errors::{self, caller, Raised};
use super::pack;
use super::session::Session;
use super::slot::{LuaVm, VmSlot};
use crate::event::{Location, Problem, RunEvent, SkipKind, Status, TestReport};
use mlua::{Function, Lua, MultiValue, Table, Value};
use provium_compiler::linux::{self, Arch};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// Lua helpers: `run(f)` calls `f` with a traceback captured at the error, and `output(s)` wraps
/// command output with `contains`, `starts_with`, `ends_with`, `trim` and `lines`.
///
/// `pcall` and `xpcall` are wrapped: once the runner has stopped the file (a timeout, an
/// interrupt), they raise the stop again when they return, so that a loop around `pcall` cannot
/// keep a stopped test running.
const PRELUDE: &str = r#"
local traceback, stopped = ...
local raw_pcall, raw_xpcall = pcall, xpcall
local function restop(...)
  local why = stopped()
  if why then error(why, 0) end
  return ...
end
pcall = function(f, ...) return restop(raw_pcall(f, ...)) end
xpcall = function(f, handler, ...) return restop(raw_xpcall(f, handler, ...)) end
local run = function(f, ...)
  local tb
  local ok, err = raw_xpcall(f, function(e)
    tb = traceback(2)
    return e
  end, ...)
  return ok, err, tb
end

local Output = {}
Output.__index = Output
Output.__tostring = function(self) return self.value end
Output.__len = function(self) return #self.value end
Output.__concat = function(a, b) return tostring(a) .. tostring(b) end
Output.__eq = function(a, b) return tostring(a) == tostring(b) end
function Output:contains(s) return string.find(self.value, s, 1, true) ~= nil end
function Output:starts_with(s) return string.sub(self.value, 1, #s) == s end
function Output:ends_with(s) return s == "" or string.sub(self.value, -#s) == s end
function Output:trim() return (string.gsub(string.gsub(self.value, "^%s+", ""), "%s+$", "")) end
function Output:lines()
  local t = {}
  for line in string.gmatch(self.value, "([^\n]*)\n?") do t[#t + 1] = line end
  if t[#t] == "" then t[#t] = nil end
  return t
end
local output = function(s) return setmetatable({ value = s }, Output) end
return run, output, Output
"#;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    // The debug library is not loaded (scripts must not reach into the host), so tracebacks
    // come from the Rust side.
    let traceback = lua.create_function(|lua, level: usize| {
        lua.traceback(None, level)
            .map(|s| s.to_string_lossy().to_string())
    })?;
    let stopped = lua.create_function(|lua, ()| {
        Ok(lua
            .app_data_ref::<Rc<Session>>()
            .and_then(|s| s.config.control.as_ref().and_then(|c| c.stopped_because())))
    })?;
    let (run, output, output_mt): (Function, Function, Table) = lua
        .load(PRELUDE)
        .set_name("=provium")
        .call((traceback, stopped))?;
    lua.set_named_registry_value("provium.run", run)?;
    lua.set_named_registry_value("provium.output", output)?;
    lua.set_named_registry_value("provium.output_mt", output_mt)?;

    let g = lua.globals();
    g.set("provium", module(lua)?)?;
    g.set("test", lua.create_function(test)?)?;
    g.set(
        "skip",
        lua.create_function(|_, reason: Option<String>| -> mlua::Result<()> {
            Err(mlua::Error::external(Raised::Skip {
                reason: reason.unwrap_or_else(|| "skipped".into()),
                kind: SkipKind::Skip,
            }))
        })?,
    )?;
    g.set(
        "todo",
        lua.create_function(|_, reason: Option<String>| -> mlua::Result<()> {
            Err(mlua::Error::external(Raised::Skip {
                reason: reason.unwrap_or_else(|| "not written yet".into()),
                kind: SkipKind::Todo,
            }))
        })?,
    )?;
    g.set("assert", lua.create_function(super::assert::assert)?)?;
    g.set("assert_eq", lua.create_function(super::assert::assert_eq)?)?;
    g.set("assert_ne", lua.create_function(super::assert::assert_ne)?)?;
    g.set(
        "assert_contains",
        lua.create_function(super::assert::assert_contains)?,
    )?;
    g.set(
        "assert_errno",
        lua.create_function(super::assert::assert_errno)?,
    )?;
    g.set("assert_ok", lua.create_function(super::assert::assert_ok)?)?;
    g.set("print", lua.create_function(print)?)?;
    g.set("expect", lua.create_function(super::expect::expect)?)?;
    g.set("holds", lua.create_function(super::expect::holds)?)?;
    g.set("xfail", lua.create_function(super::expect::xfail)?)?;
    Ok(())
}

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set("version", env!("CARGO_PKG_VERSION"))?;
    m.set(
        "create",
        lua.create_function(|lua, profile: Option<String>| {
            let session = Session::get(lua);
            let name = profile.unwrap_or_else(|| "minimal".into());
            let profile = session
                .config
                .settings
                .profiles
                .get(&name)
                .map_err(|e| errors::error(lua, format!("provium.create: {e:#}")))?;
            let slot = Rc::new(RefCell::new(VmSlot::new(
                profile,
                session.config.settings.defaults.clone(),
            )));
            session.vms.borrow_mut().push(slot.clone());
            Ok(LuaVm(slot))
        })?,
    )?;
    m.set("fixture", lua.create_function(super::fixture::fixture)?)?;
    m.set(
        "timeout",
        lua.create_function(|lua, secs: f64| {
            // Listing goes on past it, so that the tests after a bad limit are known.
            if Session::get(lua).config.settings.list_only {
                return Ok(());
            }
            let timeout = super::control::timeout_from_secs(secs)
                .map_err(|e| errors::error(lua, format!("provium.timeout: {e}")))?;
            if let Some(control) = &Session::get(lua).config.control {
                control.set_timeout(timeout);
            }
            Ok(())
        })?,
    )?;
    m.set(
        "shutdown_all",
        lua.create_function(|lua, ()| {
            Session::get(lua).shutdown_all();
            Ok(())
        })?,
    )?;
    let packer = pack::Packer::of(lua)?;
    let p = packer.clone();
    m.set(
        "pack",
        lua.create_function(move |lua, args: MultiValue| {
            let mut args = args.into_iter();
            let fmt = args.next().unwrap_or(Value::Nil);
            pack_fn(lua, &p, fmt, args.collect())
        })?,
    )?;
    m.set(
        "unpack",
        lua.create_function(move |lua, (fmt, data): (String, mlua::LuaString)| {
            unpack_fn(lua, &packer, fmt, data)
        })?,
    )?;
    m.set(
        "sizeof",
        lua.create_function(|lua, fmt: String| {
            let fields = pack::parse(&fmt)
                .map_err(|e| errors::error(lua, format!("provium.sizeof: {e}")))?;
            Ok(pack::size(&fields))
        })?,
    )?;
    m.set("bad_ptr", crate::protocol::BAD_POINTER as i64)?;
    m.set(
        "share_vm",
        lua.create_function(|lua, ()| {
            Session::get(lua).share_vm.set(true);
            Ok(())
        })?,
    )?;
    m.set("requires", lua.create_function(super::requires::requires)?)?;
    m.set("store", lua.create_function(super::store::store)?)?;
    m.set(
        "listing",
        lua.create_function(|lua, ()| Ok(Session::get(lua).config.settings.list_only))?,
    )?;
    m.set(
        "pad",
        lua.create_function(|lua, (s, len): (mlua::LuaString, i64)| {
            let mut bytes = s.as_bytes().to_vec();
            if len < bytes.len() as i64 || len > 256 << 20 {
                return Err(errors::error(
                    lua,
                    format!("provium.pad: cannot pad {} bytes to {len}", bytes.len()),
                ));
            }
            bytes.resize(len as usize, 0);
            lua.create_string(&bytes)
        })?,
    )?;
    m.set(
        "cstr",
        lua.create_function(|lua, s: mlua::LuaString| {
            let mut bytes = s.as_bytes().to_vec();
            bytes.push(0);
            lua.create_string(&bytes)
        })?,
    )?;

    let errno = lua.create_table()?;
    for e in linux::errnos() {
        errno.set(e.name, e.number)?;
    }
    m.set("errno", errno)?;
    m.set(
        "strerror",
        lua.create_function(|lua, n: Value| {
            let n = super::convert::int(lua, &n, "provium.strerror")?;
            Ok(linux::errno_name(n).map(str::to_string))
        })?,
    )?;
    // Every ABI's numbers by name (`provium.nr_i386`, `provium.nr_aarch64`), and `provium.nr`,
    // the run's guest's own: the run's ABI's architecture (an `--arch aarch64` run's files
    // get arm64's numbers), x86_64 otherwise.
    for abi in linux::Abi::ALL {
        let t = lua.create_table()?;
        for (name, number) in abi.syscalls() {
            t.set(*name, *number)?;
        }
        m.set(format!("nr_{}", abi.name()), t)?;
    }
    let guest = super::session::guest_arch(lua);
    m.set("arch", guest.name())?;
    m.set("nr", guest_numbers(lua, guest)?)?;
    m.set("c", constants_table(lua, guest.native_abi())?)?;
    super::ready::install(lua, &m)?;
    super::patterns::install(lua, &m)?;
    Ok(m)
}

/// `provium.nr`: the guest's numbers by name. An x86_64 guest's are its kernel's own table when
/// the run has one (a build tree's new syscalls), else the built-in one. A name that exists
/// elsewhere but not here (only another kernel of the run has it; x86_64 has it and arm64 never
/// had it) skips the test that asks for it, rather than giving nil to a call.
fn guest_numbers(lua: &Lua, guest: Arch) -> mlua::Result<Table> {
    /// Why a name is missing here, when it exists elsewhere.
    type Lacking = dyn Fn(&str) -> Option<String>;
    let nr = lua.create_table()?;
    // Without a session (a Lua state made for checking names), the built-in table.
    let naming = lua
        .app_data_ref::<std::rc::Rc<Session>>()
        .and_then(|s| s.config.settings.naming.clone())
        .filter(|_| guest == Arch::X86_64);
    match naming.as_ref().and_then(|n| n.names.syscalls.as_ref()) {
        Some(table) => {
            for (name, number) in table {
                nr.set(name.as_str(), *number)?;
            }
        }
        None => {
            for (name, number) in guest.syscalls() {
                nr.set(*name, *number)?;
            }
        }
    }
    let lacking: Box<Lacking> = match naming {
        _ if guest != Arch::X86_64 => Box::new(move |k: &str| {
            Arch::X86_64
                .syscall_number(k)
                .map(|_| format!("{guest} has no `{k}` syscall"))
        }),
        Some(n) if !n.names.elsewhere.is_empty() => Box::new(move |k: &str| {
            n.names
                .elsewhere
                .contains_key(k)
                .then(|| format!("`{k}` is not in {}'s syscall table", n.names.label))
        }),
        _ => return Ok(nr),
    };
    let meta = lua.create_table()?;
    meta.set(
        "__index",
        lua.create_function(move |_, (_t, key): (Value, Value)| {
            let Value::String(k) = key else {
                return Ok(Value::Nil);
            };
            match lacking(&k.to_string_lossy()) {
                Some(why) => Err(errors::skip_error(why)),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    nr.set_metatable(Some(meta))?;
    Ok(nr)
}

/// `provium.c`: the uapi constants as `abi`'s headers define them.
fn constants_table(lua: &Lua, abi: linux::Abi) -> mlua::Result<Table> {
    let c = lua.create_table()?;
    for (name, value) in abi.constants() {
        c.set(name, value)?;
    }
    Ok(c)
}

fn pack_fn(
    lua: &Lua,
    packer: &pack::Packer,
    fmt: Value,
    args: MultiValue,
) -> mlua::Result<mlua::LuaString> {
    let fmt = match fmt {
        Value::String(s) => s.to_string_lossy().to_string(),
        _ => {
            return Err(errors::error(
                lua,
                "provium.pack(fmt, ...): fmt must be a string",
            ))
        }
    };
    let fields = pack::parse(&fmt).map_err(|e| errors::error(lua, format!("provium.pack: {e}")))?;
    let mut values = Vec::new();
    for (i, v) in args.into_iter().enumerate() {
        values.push(match v {
            Value::String(s) => pack::Value::Bytes(s.as_bytes().to_vec()),
            other => pack::Value::Int(super::convert::int(
                lua,
                &other,
                &format!("provium.pack: value {}", i + 1),
            )?),
        });
    }
    let bytes = packer
        .pack(lua, &fields, &values)
        .map_err(|e| errors::error(lua, format!("provium.pack: {e}")))?;
    lua.create_string(&bytes)
}

fn unpack_fn(
    lua: &Lua,
    packer: &pack::Packer,
    fmt: String,
    data: mlua::LuaString,
) -> mlua::Result<MultiValue> {
    let fields =
        pack::parse(&fmt).map_err(|e| errors::error(lua, format!("provium.unpack: {e}")))?;
    let values = packer
        .unpack(&fields, &data.as_bytes())
        .map_err(|e| errors::error(lua, format!("provium.unpack: {e}")))?;
    values
        .into_iter()
        .map(|v| match v {
            pack::Value::Int(i) => Ok(Value::Integer(i)),
            pack::Value::Bytes(b) => lua.create_string(&b).map(Value::String),
        })
        .collect()
}

fn print(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    let tostring: Function = lua.globals().get("tostring")?;
    let mut parts = Vec::new();
    for v in args {
        parts.push(tostring.call::<String>(v)?);
    }
    let mut line = parts.join("\t");
    line.push('\n');
    Session::get(lua).print(&line);
    Ok(())
}

fn test(lua: &Lua, (name, body): (Value, Value)) -> mlua::Result<()> {
    let Value::String(name) = name else {
        return Err(errors::error(
            lua,
            "test(name, fn): the name must be a string",
        ));
    };
    let Value::Function(body) = body else {
        return Err(errors::error(
            lua,
            "test(name, fn): the second argument must be a function",
        ));
    };
    let session = Session::get(lua);
    if session.current.borrow().is_some() {
        return Err(errors::error(
            lua,
            "test() cannot be called inside another test",
        ));
    }
    let location = caller(lua, 1).unwrap_or(Location {
        file: session.config.file.clone(),
        line: 0,
    });
    let name = session.unique_name(&name.to_string_lossy());
    if !session.selected(&name) {
        return Ok(());
    }
    if session.config.settings.list_only {
        session.report.borrow_mut().tests.push(TestReport {
            name,
            location,
            status: Status::skipped("listed, not run"),
            duration: Default::default(),
            output: String::new(),
            observed: None,
        });
        return Ok(());
    }
    if let Some(why) = session
        .config
        .control
        .as_ref()
        .and_then(|c| c.stopped_because())
    {
        session.finish_test(TestReport::not_run(&name, location, &why));
        return Ok(());
    }
    *session.current.borrow_mut() = Some(String::new());
    if let Some(control) = &session.config.control {
        control.set_current(Some((&name, &location)));
    }
    session.emit(RunEvent::TestStarted {
        file: session.config.index,
        name: name.clone(),
    });
    let started = Instant::now();
    let queued_before = session.queued.get();
    let run: Function = lua.named_registry_value("provium.run")?;
    let result: mlua::Result<(bool, Value, Option<String>)> = run.call(body);
    // A VM the test booted may have waited at the gate: that wait is not the test's time.
    let queued = session.queued.get().saturating_sub(queued_before);
    let duration = started.elapsed().saturating_sub(queued) + session.take_charged();
    let mut output = session.current.borrow_mut().take().unwrap_or_default();
    if let Some(control) = &session.config.control {
        control.set_current(None);
    }
    let mut status = match result {
        Ok((true, _, _)) => Status::Passed,
        Ok((false, err, traceback)) => classify(&err, traceback.as_deref()),
        Err(e) => classify(&Value::Error(Box::new(e)), None),
    };
    session.map_status(&mut status);
    super::health::after_test(&session, &mut status, &mut output);
    // A test that could not run (its VM was lost earlier) took no time of its own.
    let duration = match status {
        Status::NotRun { .. } => std::time::Duration::ZERO,
        _ => duration,
    };
    session.last_test_end.set(Some(Instant::now()));
    let observed = session.observed.borrow_mut().take();
    session.finish_test(TestReport {
        name,
        location,
        status,
        duration,
        output,
        observed,
    });
    Ok(())
}

/// Turns what a test (or a file) raised into a status.
pub fn classify(err: &Value, traceback: Option<&str>) -> Status {
    let traceback = traceback.map(clean_traceback).unwrap_or_default();
    let join = |detail: &str| match (detail.is_empty(), traceback.is_empty()) {
        (true, _) => traceback.clone(),
        (false, true) => detail.to_string(),
        (false, false) => format!("{detail}\n{traceback}"),
    };
    match err {
        Value::Error(e) => match errors::raised(e) {
            Some(Raised::Assertion {
                message,
                location,
                detail,
            }) => Status::Failed(Problem {
                message: message.clone(),
                location: location.clone(),
                detail: join(detail),
                console: None,
            }),
            Some(Raised::Skip { reason, kind }) => Status::Skipped {
                reason: reason.clone(),
                kind: *kind,
            },
            Some(Raised::NotRun { reason }) => Status::NotRun {
                reason: reason.clone(),
            },
            Some(Raised::Error {
                message,
                location,
                detail,
                console,
            }) => Status::Errored(Problem {
                message: message.clone(),
                location: location.clone(),
                detail: join(detail),
                console: console.clone(),
            }),
            None => {
                let (location, message) = errors::split_location(&errors::innermost(e));
                Status::Errored(Problem {
                    message,
                    location,
                    detail: join(""),
                    console: None,
                })
            }
        },
        Value::String(s) => {
            let (location, message) = errors::split_location(&s.to_string_lossy());
            Status::Errored(Problem {
                message,
                location,
                detail: join(""),
                console: None,
            })
        }
        Value::Nil => Status::Errored(Problem {
            message: "error(nil) was raised".into(),
            location: None,
            detail: join(""),
            console: None,
        }),
        other => Status::Errored(Problem {
            message: format!("a {} was raised as an error", other.type_name()),
            location: None,
            detail: join(""),
            console: None,
        }),
    }
}

/// Drops the frames of Provium's own wrappers from a Lua traceback.
fn clean_traceback(tb: &str) -> String {
    tb.lines()
        .filter(|l| {
            let l = l.trim();
            !(l.is_empty()
                || l.starts_with("provium:")
                || l.starts_with("[C]: in function 'xpcall'")
                || l.starts_with("[C]: in upvalue 'raw_")
                || l.starts_with("[C]: in ?")
                || l.starts_with("[C]: in function 'test'")
                || l == "(...tail calls...)")
        })
        .map(|l| l.replace('\t', "  "))
        .collect::<Vec<_>>()
        .join("\n")
}
