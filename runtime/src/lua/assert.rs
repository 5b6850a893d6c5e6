//! The assertions of the Lua API (`assert`, `assert_eq`, `assert_ne`, `assert_contains`,
//! `assert_errno`, `assert_ok`) and how a failure shows values.

use super::errors;
use mlua::{Lua, MultiValue, Table, Value};
use provium_compiler::linux;
use provium_compiler::verdict;

/// A value as a failure message shows it: errno-looking integers with their name, strings
/// quoted, command output by its text.
pub fn show(lua: &Lua, v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => linux::describe_ret(*i),
        Value::Number(n) => n.to_string(),
        Value::String(s) => verdict::quote(&s.as_bytes()),
        Value::Table(t) => {
            if let Some(text) = output_text(lua, v) {
                return verdict::quote(text.as_bytes());
            }
            let items: Vec<String> = t
                .clone()
                .sequence_values::<Value>()
                .take(16)
                .filter_map(Result::ok)
                .map(|v| show(lua, &v))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => format!("<{}>", other.type_name()),
    }
}

/// The text of an exec output object.
fn output_text(lua: &Lua, v: &Value) -> Option<String> {
    let Value::Table(t) = v else { return None };
    let mt: Table = lua.named_registry_value("provium.output_mt").ok()?;
    let own = t.metatable()?;
    if own != mt {
        return None;
    }
    t.get::<String>("value").ok()
}

fn normalized(lua: &Lua, v: Value) -> Value {
    match output_text(lua, &v) {
        Some(text) => lua.create_string(text).map(Value::String).unwrap_or(v),
        None => v,
    }
}

fn equal(a: &Value, b: &Value, depth: usize) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Number(y)) | (Value::Number(y), Value::Integer(x)) => {
            (*x as f64) == *y
        }
        (Value::Table(x), Value::Table(y)) if depth < 8 => {
            if x == y {
                return true;
            }
            let pairs = |t: &Table| -> Vec<(Value, Value)> {
                t.clone()
                    .pairs::<Value, Value>()
                    .filter_map(Result::ok)
                    .collect()
            };
            let (px, py) = (pairs(x), pairs(y));
            px.len() == py.len()
                && px.iter().all(|(k, v)| {
                    y.get::<Value>(k.clone())
                        .map(|w| equal(v, &w, depth + 1))
                        .unwrap_or(false)
                })
        }
        _ => a == b,
    }
}

/// The optional message of an assertion. Only a string counts: in `assert_eq(n,
/// vm:syscall_buf(...))` Lua passes the returned buffer in this position too.
fn with_message(msg: Value, text: String) -> String {
    match msg {
        Value::String(m) if is_message(&m.as_bytes()) => {
            format!("{}: {text}", m.to_string_lossy())
        }
        _ => text,
    }
}

/// Text, not a binary buffer that happened to land in the message position.
fn is_message(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && std::str::from_utf8(bytes).is_ok()
        && !bytes.iter().any(|&b| b < 0x20 && b != b'\t' && b != b'\n')
}

pub(super) fn assert(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let cond = args.front().cloned().unwrap_or(Value::Nil);
    if matches!(cond, Value::Nil | Value::Boolean(false)) {
        let msg = match args.get(1) {
            Some(Value::String(s)) => s.to_string_lossy().to_string(),
            Some(other) if !other.is_nil() => show(lua, other),
            _ => "assertion failed!".into(),
        };
        return Err(errors::assertion(lua, msg, ""));
    }
    Ok(args)
}

pub(super) fn assert_eq(
    lua: &Lua,
    (expected, actual, msg): (Value, Value, Value),
) -> mlua::Result<()> {
    let (e, a) = (normalized(lua, expected), normalized(lua, actual));
    if equal(&e, &a, 0) {
        return Ok(());
    }
    let (es, as_) = (show(lua, &e), show(lua, &a));
    Err(errors::assertion(
        lua,
        with_message(msg, format!("expected {es}, got {as_}")),
        format!("expected: {es}\n  actual: {as_}"),
    ))
}

pub(super) fn assert_ne(
    lua: &Lua,
    (unexpected, actual, msg): (Value, Value, Value),
) -> mlua::Result<()> {
    let (u, a) = (normalized(lua, unexpected), normalized(lua, actual));
    if !equal(&u, &a, 0) {
        return Ok(());
    }
    Err(errors::assertion(
        lua,
        with_message(msg, format!("expected anything but {}", show(lua, &u))),
        "",
    ))
}

pub(super) fn assert_contains(
    lua: &Lua,
    (haystack, needle, msg): (Value, Value, Value),
) -> mlua::Result<()> {
    let (h, n) = (normalized(lua, haystack), normalized(lua, needle));
    let found = match (&h, &n) {
        (Value::String(h), Value::String(n)) => {
            let (h, n) = (h.as_bytes(), n.as_bytes());
            n.is_empty() || h.windows(n.len()).any(|w| w == &n[..])
        }
        (Value::Table(t), needle) => t
            .clone()
            .sequence_values::<Value>()
            .filter_map(Result::ok)
            .any(|v| equal(&normalized(lua, v), needle, 0)),
        _ => {
            return Err(errors::error(
                lua,
                format!(
                    "assert_contains(haystack, needle): expected a string or a list, got {} and {}",
                    h.type_name(),
                    n.type_name()
                ),
            ))
        }
    };
    if found {
        return Ok(());
    }
    Err(errors::assertion(
        lua,
        with_message(
            msg,
            format!("{} does not contain {}", show(lua, &h), show(lua, &n)),
        ),
        "",
    ))
}

/// The return value of a syscall result: an integer, or a `vm:call` outcome table.
fn ret_of(lua: &Lua, v: &Value, what: &str) -> mlua::Result<i64> {
    match v {
        Value::Table(t) => match t.get::<Value>("ret")? {
            Value::Nil => {
                let why = if t.get::<bool>("died").unwrap_or(false) {
                    "the executor died"
                } else if t.get::<bool>("timed_out").unwrap_or(false) {
                    "the call timed out"
                } else {
                    "no return value"
                };
                Err(errors::assertion(lua, format!("{what}: {why}"), ""))
            }
            r => super::convert::int(lua, &r, what),
        },
        other => super::convert::int(lua, other, what),
    }
}

fn errno_value(lua: &Lua, v: &Value) -> mlua::Result<i64> {
    match v {
        Value::String(s) => {
            let name = s.to_string_lossy();
            linux::errno_number(&name).map(|n| n as i64).ok_or_else(|| {
                let hint = provium_compiler::diag::did_you_mean_suffix(
                    &name,
                    linux::errnos().map(|e| e.name),
                );
                errors::error(lua, format!("assert_errno: unknown errno `{name}`{hint}"))
            })
        }
        other => super::convert::int(lua, other, "assert_errno: errno").map(|n| n.abs()),
    }
}

pub(super) fn assert_errno(
    lua: &Lua,
    (ret, expected, msg): (Value, Value, Value),
) -> mlua::Result<()> {
    let ret = ret_of(lua, &ret, "assert_errno")?;
    let wanted: Vec<i64> = match &expected {
        Value::Table(t) => t
            .clone()
            .sequence_values::<Value>()
            .map(|v| v.and_then(|v| errno_value(lua, &v)))
            .collect::<mlua::Result<_>>()?,
        other => vec![errno_value(lua, other)?],
    };
    if wanted.iter().any(|w| ret == -w) {
        return Ok(());
    }
    let names: Vec<String> = wanted.iter().map(|w| linux::describe_ret(-w)).collect();
    let expected = if names.len() == 1 {
        names[0].clone()
    } else {
        format!("one of {}", names.join(", "))
    };
    let got = linux::describe_ret(ret);
    Err(errors::assertion(
        lua,
        with_message(msg, format!("expected {expected}, got {got}")),
        format!("expected: {expected}\n  actual: {got}"),
    ))
}

pub(super) fn assert_ok(lua: &Lua, (ret, msg): (Value, Value)) -> mlua::Result<i64> {
    let r = ret_of(lua, &ret, "assert_ok")?;
    if r >= 0 {
        return Ok(r);
    }
    Err(errors::assertion(
        lua,
        with_message(
            msg,
            format!("expected success (>= 0), got {}", linux::describe_ret(r)),
        ),
        "",
    ))
}
