//! `expect(outcome, spec)` and `xfail(reason, fn)`: the checks that compiled specs use, public
//! for Lua tests too (`provium.requires` is in `requires`).

use super::errors::{self, Raised};
use mlua::{Function, Lua, Table, Value};
use provium_compiler::linux;
use provium_compiler::verdict::{self, BufferRule, CmpOp, Expectation, Observed, Rule};

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
            let abi = outcome
                .get::<Option<String>>("abi")?
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            let m = match outcome.get::<Option<i64>>("nr")? {
                Some(nr) => format!("{}: {m}", super::target::call_label(lua, nr, abi)),
                None => m,
            };
            Err(errors::assertion(lua, m, ""))
        }
    }
}

/// `holds(outcome, expectation)`: whether the outcome meets it (the verdict `expect` uses,
/// without failing), and what the call answered (`EOPNOTSUPP`, `ok`): `skip_if:` uses it.
pub fn holds(lua: &Lua, (outcome, spec): (Table, Table)) -> mlua::Result<(bool, String)> {
    let met = unmet(lua, &outcome, &spec)?.is_none();
    Ok((met, observed(&outcome)?))
}

/// Why `outcome` does not meet `spec`, or `None` when it does: the spec table read into the
/// compiler's typed expectation and decided by `provium_compiler::verdict::check`, the one
/// function compiled specs and Lua's `expect()` share.
fn unmet(lua: &Lua, outcome: &Table, spec: &Table) -> mlua::Result<Option<String>> {
    let expected = expectation(lua, spec)?;
    let observed = observed_of(outcome)?;
    verdict::check(&expected, &observed).map_err(|e| errors::error(lua, format!("expect: {e}")))
}

/// The keys an expectation table may have.
const EXPECT_KEYS: [&str; 10] = [
    "ok",
    "errno",
    "ret",
    "died",
    "exit_code",
    "signal",
    "timed_out",
    "raises",
    "out",
    "one_of",
];

/// An expectation table (`{errno = "EBADF"}`, `{ret = {ge = 0}}`, …, as compiled specs write
/// them and tests write them by hand) as the compiler's [`Expectation`]. An unknown key is an
/// error, not an expectation that always holds.
fn expectation(lua: &Lua, spec: &Table) -> mlua::Result<Expectation> {
    let bad = |m: String| errors::error(lua, format!("expect: {m}"));
    let mut rules = Vec::new();
    for pair in spec.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else {
            return Err(bad(format!(
                "expectation keys are names ({}), not {}",
                EXPECT_KEYS.join(", "),
                k.type_name()
            )));
        };
        let key = k.to_str()?.to_string();
        let flag = |v: &Value| -> mlua::Result<bool> {
            match v {
                Value::Boolean(b) => Ok(*b),
                other => Err(bad(format!(
                    "`{key}` is true or false, not {}",
                    other.type_name()
                ))),
            }
        };
        let int = |v: &Value| -> mlua::Result<i64> {
            super::convert::int(lua, v, &format!("expect: `{key}`"))
        };
        match key.as_str() {
            "ok" => {
                if flag(&v)? {
                    rules.push(Rule::Ok)
                }
            }
            "died" => {
                if flag(&v)? {
                    rules.push(Rule::Died)
                }
            }
            "timed_out" => {
                if flag(&v)? {
                    rules.push(Rule::TimedOut)
                }
            }
            "errno" => rules.push(Rule::Errno(match &v {
                Value::String(one) => vec![one.to_str()?.to_string()],
                Value::Table(list) => list
                    .sequence_values::<String>()
                    .collect::<mlua::Result<Vec<_>>>()
                    .map_err(|_| bad("errno is a name or a list of names".into()))?,
                other => {
                    return Err(bad(format!(
                        "errno is a name (\"EBADF\") or a list of names, not a {}",
                        other.type_name()
                    )))
                }
            })),
            "ret" => rules.push(Rule::Ret(match &v {
                Value::Table(t) => comparisons(lua, t, "ret")?,
                // `ret = 3` is `ret = {eq = 3}`.
                other => vec![(CmpOp::Eq, int(other)?)],
            })),
            "exit_code" => rules.push(Rule::ExitCode(int(&v)?)),
            "signal" => rules.push(Rule::Signal(int(&v)?)),
            "raises" => {
                let Value::Table(t) = &v else {
                    return Err(bad("raises is a list of signal numbers".into()));
                };
                let sigs = t
                    .sequence_values::<Value>()
                    .map(|s| int(&s?))
                    .collect::<mlua::Result<Vec<_>>>()?;
                rules.push(Rule::Raises(sigs));
            }
            "out" => {
                let Value::Table(t) = &v else {
                    return Err(bad("out maps argument indexes to lists of checks".into()));
                };
                let mut bufs = Vec::new();
                for pair in t.pairs::<i64, Table>() {
                    let (idx, checks) = pair?;
                    let mut list = Vec::new();
                    for check in checks.sequence_values::<Table>() {
                        list.push(buffer_rule(lua, &check?)?);
                    }
                    bufs.push((idx, list));
                }
                bufs.sort_by_key(|(i, _)| *i);
                rules.push(Rule::Out(bufs));
            }
            "one_of" => {
                let Value::Table(t) = &v else {
                    return Err(bad("one_of is a list of expectations".into()));
                };
                let alts = t
                    .sequence_values::<Table>()
                    .map(|a| expectation(lua, &a?))
                    .collect::<mlua::Result<Vec<_>>>()?;
                rules.push(Rule::OneOf(alts));
            }
            other => {
                let hint = provium_compiler::diag::did_you_mean_suffix(other, EXPECT_KEYS);
                return Err(bad(format!("unknown expectation `{other}`{hint}")));
            }
        }
    }
    Ok(Expectation { rules })
}

/// `{eq = 3, lt = 10}`.
fn comparisons(lua: &Lua, t: &Table, what: &str) -> mlua::Result<Vec<(CmpOp, i64)>> {
    let mut out = Vec::new();
    for op in CmpOp::ALL {
        let v: Value = t.get(op.name())?;
        if !v.is_nil() {
            out.push((
                op,
                super::convert::int(lua, &v, &format!("expect: {what}.{}", op.name()))?,
            ));
        }
    }
    Ok(out)
}

/// `{starts_with = …}`, `{contains = …}`, `{equals = …}` or `{field = NAME, at = N, type = T,
/// eq = …}`.
fn buffer_rule(lua: &Lua, check: &Table) -> mlua::Result<BufferRule> {
    let bytes = |key: &str| -> mlua::Result<Option<Vec<u8>>> {
        Ok(check
            .get::<Option<mlua::LuaString>>(key)?
            .map(|s| s.as_bytes().to_vec()))
    };
    if let Some(b) = bytes("starts_with")? {
        return Ok(BufferRule::StartsWith(b));
    }
    if let Some(b) = bytes("contains")? {
        return Ok(BufferRule::Contains(b));
    }
    if let Some(b) = bytes("equals")? {
        return Ok(BufferRule::Equals(b));
    }
    if let Some(name) = check.get::<Option<String>>("field")? {
        return Ok(BufferRule::Field {
            at: check.get("at")?,
            ty: check.get("type")?,
            compare: comparisons(lua, check, &name)?,
            name,
        });
    }
    Err(errors::error(
        lua,
        "expect: a buffer check is starts_with, contains, equals or field".to_string(),
    ))
}

/// What the call did, from its outcome table.
fn observed_of(outcome: &Table) -> mlua::Result<Observed> {
    let mut bufs = std::collections::BTreeMap::new();
    if let Some(t) = outcome.get::<Option<Table>>("bufs")? {
        for pair in t.pairs::<i64, mlua::LuaString>() {
            let (i, data) = pair?;
            bufs.insert(i, data.as_bytes().to_vec());
        }
    }
    Ok(Observed {
        ret: outcome.get("ret")?,
        died: outcome.get::<Option<bool>>("died")?.unwrap_or(false),
        exit_code: outcome.get("exit_code")?,
        signal: outcome.get("signal")?,
        timed_out: outcome.get::<Option<bool>>("timed_out")?.unwrap_or(false),
        raised: outcome
            .get::<Option<Vec<i64>>>("raised")?
            .unwrap_or_default(),
        bufs,
        repeat_unmet: outcome.get("repeat_unmet")?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules in a canonical order (a Lua table has none), nested alternatives too.
    fn canonical(e: &Expectation) -> Vec<String> {
        let mut rules: Vec<String> = e
            .rules
            .iter()
            .map(|r| match r {
                Rule::OneOf(alts) => {
                    let mut a: Vec<Vec<String>> = alts.iter().map(canonical).collect();
                    a.sort();
                    format!("OneOf{a:?}")
                }
                Rule::Out(bufs) => {
                    let mut b = bufs.clone();
                    b.sort_by_key(|(i, _)| *i);
                    format!("{:?}", Rule::Out(b))
                }
                other => format!("{other:?}"),
            })
            .collect();
        rules.sort();
        rules
    }

    fn spec_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                spec_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }

    fn calls(model: &provium_compiler::model::Model) -> Vec<&provium_compiler::model::Call> {
        use provium_compiler::model::{Body, Step, StepKind};
        fn from_steps<'a>(list: &'a [Step], out: &mut Vec<&'a provium_compiler::model::Call>) {
            for s in list {
                if let StepKind::Call(c) = &s.kind {
                    out.push(c);
                }
            }
        }
        let mut out = Vec::new();
        from_steps(&model.setup, &mut out);
        from_steps(&model.teardown, &mut out);
        for case in &model.cases {
            match &case.body {
                Body::Call(c) => out.push(c),
                Body::Steps(s) => from_steps(s, &mut out),
                Body::Lua(_) => {}
            }
        }
        out
    }

    /// Every expectation of the shipped specs, emitted as compiled specs emit it and read back
    /// as the runtime reads it, is the compiler's own: what the checker accepted is what the one
    /// verdict function decides on.
    #[test]
    fn every_shipped_expectation_reads_back_as_the_compiler_wrote_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["specs", "examples"] {
            spec_files(&root.join(dir), &mut files);
        }
        let lua = Lua::new();
        let mut checked = 0;
        let mut kinds = std::collections::BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let opts = provium_compiler::Options::new(file.display().to_string());
            // A spec for a kernel of its own (examples/custom-syscall) compiles only with it.
            let Ok(compiled) = provium_compiler::compile(&text, &opts) else {
                continue;
            };
            for call in calls(&compiled.model) {
                let Some(e) = &call.expect else { continue };
                let Some(typed) = Expectation::from_model(e) else {
                    continue; // an integer only known when the case runs (`$fd`)
                };
                let table_text = provium_compiler::emit::expectation_table(e);
                let table: Table = lua
                    .load(format!("return {table_text}"))
                    .eval()
                    .unwrap_or_else(|err| panic!("{}: {table_text}: {err}", file.display()));
                let read = expectation(&lua, &table)
                    .unwrap_or_else(|err| panic!("{}: {table_text}: {err}", file.display()));
                assert_eq!(
                    canonical(&read),
                    canonical(&typed),
                    "{}: {table_text}",
                    file.display()
                );
                for r in &typed.rules {
                    kinds.insert(
                        format!("{r:?}")
                            .split(['(', ' '])
                            .next()
                            .unwrap()
                            .to_string(),
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} expectations");
        for kind in ["Ok", "Errno", "Ret", "Died", "Out", "Signal"] {
            assert!(
                kinds.contains(kind),
                "no {kind} expectation among {kinds:?}"
            );
        }
    }

    #[test]
    fn a_misspelled_expectation_is_an_error_not_a_pass() {
        let lua = Lua::new();
        let t: Table = lua.load("return {erno = 'EBADF'}").eval().unwrap();
        let e = expectation(&lua, &t).unwrap_err().to_string();
        assert!(
            e.contains("unknown expectation `erno`") && e.contains("errno"),
            "{e}"
        );
    }
}
