//! `expect(outcome, spec)` and `xfail(reason, fn)`: the checks that compiled specs use, public
//! for Lua tests too (`provium.requires` is in `requires`).

use super::assert::show;
use super::errors::{self, Raised};
use mlua::{Function, Lua, Table, Value};
use provium_compiler::linux;

fn describe(ret: i64) -> String {
    linux::describe_ret(ret)
}

/// `-22 (EINVAL)`, or `one of -22 (EINVAL), -1 (EPERM)`.
fn errno_list(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|n| match linux::errno_number(n) {
            Some(e) => format!("-{e} ({n})"),
            None => n.clone(),
        })
        .collect();
    match shown.as_slice() {
        [one] => one.clone(),
        many => format!("one of {}", many.join(", ")),
    }
}

fn cmp_ok(op: &str, actual: i64, want: i64) -> bool {
    match op {
        "eq" => actual == want,
        "ne" => actual != want,
        "lt" => actual < want,
        "le" => actual <= want,
        "gt" => actual > want,
        "ge" => actual >= want,
        _ => false,
    }
}

fn cmp_text(op: &str) -> &'static str {
    match op {
        "eq" => "==",
        "ne" => "!=",
        "lt" => "<",
        "le" => "<=",
        "gt" => ">",
        _ => ">=",
    }
}

const OPS: [&str; 6] = ["eq", "ne", "lt", "le", "gt", "ge"];

/// Checks every comparison in `t` against `actual`; the first that fails is described.
fn comparisons(t: &Table, actual: i64, what: &str) -> mlua::Result<Option<String>> {
    for op in OPS {
        if let Some(want) = t.get::<Option<i64>>(op)? {
            if !cmp_ok(op, actual, want) {
                return Ok(Some(format!(
                    "expected {what} {} {}, got {}",
                    cmp_text(op),
                    describe(want),
                    describe(actual)
                )));
            }
        }
    }
    Ok(None)
}

fn termination(outcome: &Table) -> mlua::Result<String> {
    Ok(
        match (
            outcome.get::<Option<i64>>("exit_code")?,
            outcome.get::<Option<i64>>("signal")?,
        ) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "died".into(),
        },
    )
}

pub fn expect(lua: &Lua, (outcome, spec): (Value, Table)) -> mlua::Result<()> {
    let Value::Table(outcome) = outcome else {
        return Err(errors::error(
            lua,
            format!(
                "expect: no outcome to check (got {}); did the call run?",
                outcome.type_name()
            ),
        ));
    };
    super::Session::get(lua).charge_outcome(&outcome);
    if let Some(why) = outcome.get::<Option<String>>("rejected")? {
        return Err(errors::error(
            lua,
            format!("the agent rejected the call: {why}"),
        ));
    }
    if let Some(why) = outcome.get::<Option<String>>("broken")? {
        return Err(errors::error(lua, errors::broken_message(&why)));
    }
    let session = super::Session::get(lua);
    let seen = observed(&outcome)?;
    if session.current.borrow().is_some() {
        *session.observed.borrow_mut() = Some(shown(&outcome, &seen)?);
    }
    if session.config.settings.record {
        // Whether the expectation as written already holds: `record` leaves those alone (a
        // hand-written `expect: 3` is not weakened to the recorded `ok`).
        // `any` (an empty expectation) is what `provium gen` writes to be recorded.
        let placeholder = spec.pairs::<Value, Value>().next().is_none();
        let holds = !placeholder && unmet(lua, &outcome, &spec)?.is_none();
        if let Some(loc) = errors::caller(lua, 1) {
            session
                .report
                .borrow_mut()
                .observations
                .push((loc.line, seen, holds));
        }
        return Ok(());
    }
    match unmet(lua, &outcome, &spec)? {
        None => Ok(()),
        // Named by the call it is about: "cachestat (451): expected -9 (EBADF), got -38 …".
        Some(m) => {
            let m = match outcome.get::<Option<i64>>("nr")? {
                Some(nr) => format!("{}: {m}", super::target::call_label(lua, nr)),
                None => m,
            };
            Err(errors::assertion(lua, m, ""))
        }
    }
}

/// Why `outcome` does not meet `spec`, or `None` when it does. `one_of` (a nondeterministic
/// answer, as `provium record --runs N` writes it) holds when any alternative does.
fn unmet(lua: &Lua, outcome: &Table, spec: &Table) -> mlua::Result<Option<String>> {
    let Some(alternatives) = spec.get::<Option<Table>>("one_of")? else {
        return mismatch(lua, outcome, spec);
    };
    let mut misses = Vec::new();
    for alt in alternatives.sequence_values::<Table>() {
        match mismatch(lua, outcome, &alt?)? {
            None => return Ok(None),
            Some(m) => misses.push(m),
        }
    }
    Ok(Some(format!(
        "none of the {} alternatives held: {}",
        misses.len(),
        misses.join("; ")
    )))
}

/// Why `outcome` does not meet `spec`, or `None` when it does.
fn mismatch(lua: &Lua, outcome: &Table, spec: &Table) -> mlua::Result<Option<String>> {
    let fail = |message: String| Ok(Some(message));
    let (died, timed_out) = ended(outcome)?;
    if let Some(unmet) = outcome.get::<Option<String>>("repeat_unmet")? {
        return fail(unmet);
    }

    if spec.get::<Option<bool>>("died")?.unwrap_or(false) {
        if !died {
            let got = match outcome.get::<Option<i64>>("ret")? {
                Some(r) => format!("the call returned {}", describe(r)),
                None => "the call did not end the executor".into(),
            };
            return fail(format!("expected the call to end the executor, but {got}"));
        }
        for key in ["exit_code", "signal"] {
            if let Some(want) = spec.get::<Option<i64>>(key)? {
                let got = outcome.get::<Option<i64>>(key)?;
                if got != Some(want) {
                    return fail(format!(
                        "expected the executor to end with {key} {want}, but it {}",
                        termination(outcome)?
                    ));
                }
            }
        }
        return Ok(None);
    }
    if spec.get::<Option<bool>>("timed_out")?.unwrap_or(false) {
        if !timed_out {
            return fail("expected the call to block until its timeout, but it returned".into());
        }
        return Ok(None);
    }
    if died {
        return fail(format!(
            "the call ended the executor: it {}",
            termination(outcome)?
        ));
    }
    if timed_out {
        return fail("the call blocked until its timeout".into());
    }
    let Some(ret) = outcome.get::<Option<i64>>("ret")? else {
        return fail("the call has no return value".into());
    };
    if spec.get::<Option<bool>>("ok")?.unwrap_or(false) && ret < 0 {
        return fail(format!("expected success (>= 0), got {}", describe(ret)));
    }
    // `errno = "EBADF"` or a list of acceptable ones.
    let errnos = match spec.get::<Value>("errno")? {
        Value::Nil => None,
        Value::String(one) => Some(vec![one.to_str()?.to_string()]),
        Value::Table(list) => Some(
            list.sequence_values::<String>()
                .collect::<mlua::Result<Vec<_>>>()
                .map_err(|_| {
                    errors::error(
                        lua,
                        "expect: errno is a name or a list of names".to_string(),
                    )
                })?,
        ),
        other => {
            return Err(errors::error(
                lua,
                format!(
                    "expect: errno is a name (\"EBADF\") or a list of names, not a {}",
                    other.type_name()
                ),
            ))
        }
    };
    if let Some(errnos) = errnos {
        let matched = errnos
            .iter()
            .any(|n| linux::errno_number(n).is_some_and(|e| ret == -(e as i64)));
        if !matched {
            let got = if ret >= 0 {
                format!("{ret} (success)")
            } else {
                describe(ret)
            };
            return fail(format!("expected {}, got {got}", errno_list(&errnos)));
        }
    }
    if let Some(cmp) = spec.get::<Option<Table>>("ret")? {
        if let Some(m) = comparisons(&cmp, ret, "ret")? {
            return fail(m);
        }
    }
    if let Some(wanted) = spec.get::<Option<Vec<i64>>>("raises")? {
        let raised: Vec<i64> = outcome
            .get::<Option<Vec<i64>>>("raised")?
            .unwrap_or_default();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|s| !raised.contains(s))
            .map(|s| linux::signal_name(*s).map_or_else(|| s.to_string(), str::to_string))
            .collect();
        if !missing.is_empty() {
            return fail(format!(
                "expected the call to raise {}, but it was not pending after the call",
                missing.join(" and ")
            ));
        }
    }
    if let Some(out) = spec.get::<Option<Table>>("out")? {
        let bufs: Table = outcome.get("bufs")?;
        for pair in out.pairs::<i64, Table>() {
            let (idx, checks) = pair?;
            let Some(data) = bufs.get::<Option<mlua::LuaString>>(idx)? else {
                return fail(format!(
                    "buffer {idx}: the call has no buffer at argument {idx}"
                ));
            };
            let data = data.as_bytes().to_vec();
            for check in checks.sequence_values::<Table>() {
                if let Some(m) = buffer_check(lua, idx, &data, &check?)? {
                    return fail(m);
                }
            }
        }
    }
    Ok(None)
}

fn buffer_check(lua: &Lua, idx: i64, data: &[u8], check: &Table) -> mlua::Result<Option<String>> {
    let shown = |bytes: &[u8]| -> mlua::Result<String> {
        Ok(show(lua, &Value::String(lua.create_string(bytes)?)))
    };
    if let Some(prefix) = check.get::<Option<mlua::LuaString>>("starts_with")? {
        let p = prefix.as_bytes();
        if !data.starts_with(&p) {
            let got = &data[..data.len().min(p.len().max(16))];
            return Ok(Some(format!(
                "buffer {idx}: expected it to start with {}, got {}",
                shown(&p)?,
                shown(got)?
            )));
        }
    }
    if let Some(needle) = check.get::<Option<mlua::LuaString>>("contains")? {
        let n = needle.as_bytes();
        if !n.is_empty() && !data.windows(n.len()).any(|w| w == &n[..]) {
            return Ok(Some(format!(
                "buffer {idx}: expected it to contain {}, got {}",
                shown(&n)?,
                shown(data)?
            )));
        }
    }
    if let Some(exact) = check.get::<Option<mlua::LuaString>>("equals")? {
        let e = exact.as_bytes();
        let got = &data[..data.len().min(e.len())];
        let rest_zero = data[got.len()..].iter().all(|&b| b == 0);
        if got != &e[..] || !rest_zero {
            return Ok(Some(format!(
                "buffer {idx}: expected {}, got {}",
                shown(&e)?,
                shown(data)?
            )));
        }
    }
    if let Some(field) = check.get::<Option<String>>("field")? {
        let at: usize = check.get("at")?;
        let ty: String = check.get("type")?;
        let fields = super::pack::parse(&ty).map_err(|e| errors::error(lua, e.to_string()))?;
        let size = super::pack::size(&fields);
        let Some(bytes) = data.get(at..at + size) else {
            return Ok(Some(format!(
                "buffer {idx}: field {field} at offset {at} is past its {} bytes",
                data.len()
            )));
        };
        let value = match super::pack::unpack(&fields, bytes) {
            Ok(v) => match v.first() {
                Some(super::pack::Value::Int(i)) => *i,
                _ => 0,
            },
            Err(e) => return Err(errors::error(lua, e.to_string())),
        };
        return comparisons(
            check,
            value,
            &format!("{field} (buffer {idx}, offset {at})"),
        );
    }
    Ok(None)
}

/// Whether the call's process died, and whether the call timed out.
fn ended(outcome: &Table) -> mlua::Result<(bool, bool)> {
    Ok((
        outcome.get::<Option<bool>>("died")?.unwrap_or(false),
        outcome.get::<Option<bool>>("timed_out")?.unwrap_or(false),
    ))
}

/// What an outcome is, written as a spec expectation (for `provium record`).
fn observed(outcome: &Table) -> mlua::Result<String> {
    let (died, timed_out) = ended(outcome)?;
    if died {
        return Ok(
            match (
                outcome.get::<Option<i64>>("exit_code")?,
                outcome.get::<Option<i64>>("signal")?,
            ) {
                (Some(c), _) => format!("{{ died: {{ exit_code: {c} }} }}"),
                (None, Some(s)) => format!("{{ died: {{ signal: {s} }} }}"),
                _ => "died".into(),
            },
        );
    }
    if timed_out {
        return Ok("timed_out".into());
    }
    Ok(match outcome.get::<Option<i64>>("ret")? {
        Some(r) if r < 0 => linux::errno_name(r)
            .map(String::from)
            .unwrap_or_else(|| r.to_string()),
        Some(0) => "0".into(),
        Some(_) => "ok".into(),
        None => "any".into(),
    })
}

/// What a report shows of an answer (a matrix cell, `observed` in JSON): as recorded, but a
/// process killed by a signal names it (`died: SIGILL`, not `{ died: { signal: 4 } }`).
fn shown(outcome: &Table, seen: &str) -> mlua::Result<String> {
    let (died, _) = ended(outcome)?;
    if !died {
        return Ok(seen.to_string());
    }
    Ok(
        match (
            outcome.get::<Option<i64>>("exit_code")?,
            outcome.get::<Option<i64>>("signal")?,
        ) {
            (Some(c), _) => format!("died: exit {c}"),
            (None, Some(s)) => match linux::signal_name(s) {
                Some(name) => format!("died: {name}"),
                None => format!("died: signal {s}"),
            },
            _ => seen.to_string(),
        },
    )
}

/// Runs `f`; an assertion failure inside becomes a skip ("known bug"), a pass becomes a failure.
pub fn xfail(lua: &Lua, (reason, f): (String, Function)) -> mlua::Result<()> {
    if super::Session::get(lua).config.settings.record {
        return f.call::<()>(());
    }
    match f.call::<()>(()) {
        Ok(()) => Err(errors::assertion(
            lua,
            format!("expected to fail (xfail: {reason}), but it passed: remove `xfail` if the bug is fixed"),
            "",
        )),
        Err(e) => match errors::raised(&e) {
            Some(Raised::Assertion { message, .. }) => Err(mlua::Error::external(Raised::Skip {
                reason: format!("{reason} ({message})"),
                kind: crate::event::SkipKind::Xfail,
            })),
            _ => Err(e),
        },
    }
}
