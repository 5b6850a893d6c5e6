//! Option tables of the Lua API (`vm:boot{...}`, `vm:spawn{...}`, `vm:exec(cmd, {...})`,
//! file modes) and the tables commands answer with.

use super::convert::int;
use super::errors;
use crate::machine::error::BadValue;
use crate::machine::profile::{parse_memory, TransportChoice};
use crate::machine::vm::BootOptions;
use crate::protocol::{Credentials, Descriptors, ExecCall, SessionPlace, Termination};
use mlua::{Lua, Table, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A file mode: an integer (`tonumber("600", 8)`), or an octal string (`"600"`, `"0o600"`).
pub(super) fn file_mode(lua: &Lua, v: &Value) -> mlua::Result<u32> {
    let mode = match v {
        Value::Nil => return Ok(0),
        Value::String(s) => {
            let text = s.to_string_lossy();
            let digits = text.trim_start_matches("0o");
            u32::from_str_radix(digits, 8).map_err(|_| {
                errors::error(lua, format!("write_file: mode `{text}` is not octal"))
            })?
        }
        other => int(lua, other, "write_file: mode")? as u32,
    };
    if mode > 0o7777 {
        return Err(errors::error(
            lua,
            format!("write_file: mode {mode:o} is above 7777"),
        ));
    }
    Ok(mode)
}

pub(super) fn apply_boot_options(lua: &Lua, t: &Table, o: &mut BootOptions) -> mlua::Result<()> {
    for pair in t.pairs::<String, Value>() {
        let (key, value) = pair?;
        match key.as_str() {
            "memory" => {
                let text = match &value {
                    Value::Integer(n) => n.to_string(),
                    Value::String(s) => s.to_string_lossy(),
                    other => {
                        return Err(errors::error(
                            lua,
                            format!(
                                "vm:boot: memory: expected \"512M\" or a number of MiB, got {}",
                                other.type_name()
                            ),
                        ))
                    }
                };
                o.memory_mib = Some(
                    parse_memory(&text)
                        .map_err(|e| errors::error(lua, format!("vm:boot: memory: {e}")))?,
                );
            }
            "cpus" => {
                let n = int(lua, &value, "vm:boot: cpus")?;
                if !(1..=64).contains(&n) {
                    return Err(errors::error(
                        lua,
                        format!("vm:boot: cpus must be 1 to 64, got {n}"),
                    ));
                }
                o.cpus = Some(n as u32);
            }
            "timeout" => {
                let secs: f64 = lua.unpack(value)?;
                let t = super::control::timeout_from_secs(secs)
                    .map_err(|e| errors::error(lua, format!("vm:boot: timeout: {e}")))?;
                o.timeout = Some(t.max(Duration::from_millis(100)));
            }
            "files" => {
                let Value::Table(files) = value else {
                    return Err(errors::error(
                        lua,
                        "vm:boot: files must be a table {guest_path = host_path}",
                    ));
                };
                for pair in files.pairs::<String, String>() {
                    let (guest, host) = pair?;
                    let host = PathBuf::from(host);
                    if !host.is_file() {
                        return Err(errors::error(
                            lua,
                            format!("vm:boot: files: {} does not exist", host.display()),
                        ));
                    }
                    o.files.insert(guest, host);
                }
            }
            "transport" => {
                let s: String = lua.unpack(value)?;
                o.transport = Some(
                    s.parse::<TransportChoice>()
                        .map_err(|e| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "accel" => {
                let s: String = lua.unpack(value)?;
                o.accel = Some(
                    s.parse()
                        .map_err(|e: BadValue| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "machine" => {
                let s: String = lua.unpack(value)?;
                o.machine = Some(
                    s.parse()
                        .map_err(|e: BadValue| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "kernel_args" => {
                let args: Vec<String> = lua.unpack(value)?;
                o.kernel_args.extend(args);
            }
            other => {
                let known = [
                    "memory",
                    "cpus",
                    "timeout",
                    "files",
                    "transport",
                    "accel",
                    "machine",
                    "kernel_args",
                ];
                let hint = provium_compiler::diag::did_you_mean_suffix(other, known);
                return Err(errors::error(
                    lua,
                    format!("vm:boot: unknown option `{other}`{hint}"),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn credentials(lua: &Lua, opts: Option<&Table>) -> mlua::Result<Credentials> {
    let mut c = Credentials::default();
    let Some(t) = opts else { return Ok(c) };
    for pair in t.pairs::<String, Value>() {
        let (key, value) = pair?;
        match key.as_str() {
            "uid" => c.uid = int(lua, &value, "spawn: uid")? as u32,
            "gid" => c.gid = int(lua, &value, "spawn: gid")? as u32,
            "euid" => c.euid = Some(int(lua, &value, "spawn: euid")? as u32),
            "egid" => c.egid = Some(int(lua, &value, "spawn: egid")? as u32),
            "umask" | "cwd" | "rlimits" | "catch" | "timer" => {}
            "descriptors" => {
                let v: String = lua.unpack(value)?;
                c.descriptors = match v.as_str() {
                    "fresh" => Descriptors::Fresh,
                    "inherit" => Descriptors::Inherit,
                    other => {
                        return Err(errors::error(
                            lua,
                            format!(
                                "spawn: descriptors `{other}` (expected \"fresh\" or \"inherit\")"
                            ),
                        ))
                    }
                };
            }
            "session" => {
                let v: String = lua.unpack(value)?;
                c.session = match v.as_str() {
                    "own" => SessionPlace::Leader,
                    "inherit" => SessionPlace::Member,
                    other => {
                        return Err(errors::error(
                            lua,
                            format!("spawn: session `{other}` (expected \"own\" or \"inherit\")"),
                        ))
                    }
                };
            }
            "groups" => {
                let groups: Vec<i64> = lua.unpack(value)?;
                c.groups = groups.into_iter().map(|g| g as u32).collect();
            }
            "caps" => {
                let Value::Table(caps) = value else {
                    return Err(errors::error(
                        lua,
                        "spawn: caps must be a list of names (\"CAP_NET_ADMIN\") or numbers",
                    ));
                };
                for cap in caps.sequence_values::<Value>() {
                    let n = match cap? {
                        Value::String(s) => {
                            let name = s.to_string_lossy().to_ascii_uppercase();
                            let full = if name.starts_with("CAP_") {
                                name
                            } else {
                                format!("CAP_{name}")
                            };
                            provium_compiler::linux::capability(&full).ok_or_else(|| {
                                let hint = provium_compiler::diag::did_you_mean_suffix(
                                    &full,
                                    provium_compiler::linux::capabilities(),
                                );
                                errors::error(
                                    lua,
                                    format!("spawn: unknown capability `{full}`{hint}"),
                                )
                            })?
                        }
                        other => int(lua, &other, "spawn: capability")? as u8,
                    };
                    c.caps.push(n);
                }
            }
            other => {
                let hint = provium_compiler::diag::did_you_mean_suffix(
                    other,
                    [
                        "uid",
                        "gid",
                        "euid",
                        "egid",
                        "groups",
                        "caps",
                        "umask",
                        "cwd",
                        "rlimits",
                        "catch",
                        "timer",
                        "descriptors",
                        "session",
                    ],
                );
                return Err(errors::error(
                    lua,
                    format!("spawn: unknown option `{other}`{hint}"),
                ));
            }
        }
    }
    if c.gid == 0 && c.uid != 0 && !t.contains_key("gid")? {
        c.gid = c.uid;
    }
    c.setup = process_setup(lua, t, "spawn")?;
    Ok(c)
}

pub(super) fn exec_call(lua: &Lua, cmd: &Value, opts: Option<&Table>) -> mlua::Result<ExecCall> {
    let mut call = match cmd {
        Value::String(s) => ExecCall {
            argv: vec![s.to_string_lossy().to_string()],
            shell: true,
            ..Default::default()
        },
        Value::Table(t) => {
            let argv: Vec<String> = t.sequence_values::<String>().collect::<mlua::Result<_>>()?;
            if argv.is_empty() {
                return Err(errors::error(lua, "exec: argv is empty"));
            }
            ExecCall {
                argv,
                ..Default::default()
            }
        }
        other => {
            return Err(errors::error(
                lua,
                format!(
                    "exec: expected a shell command (string) or argv (list), got {}",
                    other.type_name()
                ),
            ))
        }
    };
    if let Some(o) = opts {
        if let Some(env) = o.get::<Option<Table>>("env")? {
            let mut vars: BTreeMap<String, String> = BTreeMap::new();
            for pair in env.pairs::<String, String>() {
                let (k, v) = pair?;
                vars.insert(k, v);
            }
            call.env = vars.into_iter().collect();
        }
        if let Some(stdin) = o.get::<Option<mlua::LuaString>>("stdin")? {
            call.stdin = stdin.as_bytes().to_vec();
        }
        if let Some(t) = o.get::<Option<f64>>("timeout")? {
            call.timeout_ms = (t * 1000.0).clamp(1.0, u32::MAX as f64) as u32;
        }
        call.cwd = o.get::<Option<String>>("cwd")?;
    }
    Ok(call)
}

pub(super) fn exec_result(lua: &Lua, r: crate::protocol::ExecResult) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let output: mlua::Function = lua.named_registry_value("provium.output")?;
    t.set(
        "stdout",
        output.call::<Value>(lua.create_string(&r.stdout)?)?,
    )?;
    t.set(
        "stderr",
        output.call::<Value>(lua.create_string(&r.stderr)?)?,
    )?;
    t.set("truncated", r.truncated)?;
    match r.termination {
        Some(Termination::Exited(code)) => {
            t.set("ok", code == 0)?;
            t.set("exit_code", code)?;
            t.set("timed_out", false)?;
        }
        Some(Termination::Signaled(sig)) => {
            t.set("ok", false)?;
            t.set("signal", sig)?;
            t.set("timed_out", false)?;
        }
        None => {
            t.set("ok", false)?;
            t.set("timed_out", true)?;
        }
    }
    Ok(t)
}

/// `umask`, `cwd` and `rlimits` (`{{"RLIMIT_NOFILE", soft, hard}, ...}`, a resource by name or
/// number, -1 for RLIM_INFINITY) from an options table.
pub(super) fn process_setup(
    lua: &Lua,
    t: &Table,
    what: &str,
) -> mlua::Result<crate::protocol::ProcessSetup> {
    let mut setup = crate::protocol::ProcessSetup::default();
    if let Some(u) = t.get::<Option<Value>>("umask")? {
        setup.umask = Some(int(lua, &u, &format!("{what}: umask"))? as u32);
    }
    setup.cwd = t.get::<Option<String>>("cwd")?;
    if let Some(limits) = t.get::<Option<Table>>("rlimits")? {
        for l in limits.sequence_values::<Table>() {
            let l = l?;
            let resource = match l.get::<Value>(1)? {
                Value::String(name) => {
                    let name = name.to_string_lossy();
                    provium_compiler::linux::constant(&name)
                        .filter(|_| name.starts_with("RLIMIT_"))
                        .ok_or_else(|| {
                            errors::error(lua, format!("{what}: unknown resource `{name}`"))
                        })?
                }
                other => int(lua, &other, &format!("{what}: rlimits"))?,
            };
            let field = |n: usize| -> mlua::Result<i64> {
                int(lua, &l.get::<Value>(n)?, &format!("{what}: rlimits"))
            };
            // -1 is RLIM_INFINITY.
            setup
                .rlimits
                .push((resource as u32, field(2)? as u64, field(3)? as u64));
        }
    }
    if let Some(list) = t.get::<Option<Table>>("catch")? {
        for item in list.sequence_values::<Value>() {
            let (signal, restart) = match item? {
                Value::Table(pair) => (
                    signal_number(lua, &pair.get::<Value>(1)?, what)?,
                    pair.get::<Option<bool>>("restart")?.unwrap_or(false),
                ),
                other => (signal_number(lua, &other, what)?, false),
            };
            setup.catch.push((signal, restart));
        }
    }
    if let Some(timer) = t.get::<Option<Table>>("timer")? {
        let signal = match timer.get::<Value>("signal")? {
            Value::Nil => libc::SIGALRM,
            v => signal_number(lua, &v, what)?,
        };
        let after: f64 = timer
            .get::<Option<f64>>("after")?
            .ok_or_else(|| errors::error(lua, format!("{what}: timer needs `after` (seconds)")))?;
        let after = super::control::timeout_from_secs(after)
            .map_err(|e| errors::error(lua, format!("{what}: timer: {e}")))?;
        setup.timer = Some((signal, after.as_micros() as u64));
    }
    Ok(setup)
}

/// A signal by name (`"SIGALRM"`, `"ALRM"`) or number.
fn signal_number(lua: &Lua, v: &Value, what: &str) -> mlua::Result<i32> {
    let n = match v {
        Value::String(s) => {
            let name = s.to_string_lossy().to_ascii_uppercase();
            let full = if name.starts_with("SIG") {
                name
            } else {
                format!("SIG{name}")
            };
            provium_compiler::linux::constant(&full)
                .filter(|_| full.starts_with("SIG") && !full.starts_with("SIG_"))
                .ok_or_else(|| errors::error(lua, format!("{what}: unknown signal `{full}`")))?
        }
        other => int(lua, other, &format!("{what}: signal"))?,
    };
    if !(1..=64).contains(&n) || n == libc::SIGKILL as i64 || n == libc::SIGSTOP as i64 {
        return Err(errors::error(
            lua,
            format!("{what}: signal {n} cannot be caught"),
        ));
    }
    Ok(n as i32)
}
