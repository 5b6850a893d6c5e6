//! `vm:isolated{case, ...}`: cases that each run in their own child of the executor, all in one
//! round trip (see `Operation::Isolated`). A case is a call table (one call), or a table with
//! `calls` and the process it runs in: `as` (credentials, as `vm:spawn`), `umask`, `cwd`,
//! `rlimits` (`{{RLIMIT, soft, hard}, ...}`) and `timeout` (seconds, the whole case).

use super::convert::{self, outcome_table};
use super::errors;
use super::options::credentials;
use super::session::Session;
use super::target::dry_outcome;
use super::vm::{with_vm, Target};
use crate::protocol::IsolatedCase;
use mlua::{Lua, Table, Value};

/// One case from its Lua table, with each call's output buffer indexes.
fn case_from_table(
    lua: &Lua,
    i: usize,
    t: &Table,
) -> mlua::Result<(IsolatedCase, Vec<Vec<usize>>)> {
    let what = format!("isolated: case {i}");
    let mut case = IsolatedCase::default();
    let mut outputs = Vec::new();
    let calls: Vec<Table> = match t.get::<Value>("calls")? {
        Value::Table(list) => list
            .sequence_values::<Table>()
            .collect::<mlua::Result<_>>()?,
        Value::Nil if t.contains_key("nr")? => vec![t.clone()],
        _ => {
            return Err(errors::error(
                lua,
                format!("{what}: expected `calls = {{...}}`, or a call table with `nr`"),
            ))
        }
    };
    for (k, c) in calls.iter().enumerate() {
        let (call, out) = convert::call_from_table(lua, &format!("{what}, call {}", k + 1), c)?;
        case.calls.push(call);
        outputs.push(out);
    }
    if let Some(creds) = t.get::<Option<Table>>("as")? {
        case.creds = Some(credentials(lua, Some(&creds))?);
    }
    let setup = super::options::process_setup(lua, t, &what)?;
    case.setup = setup;
    if let Some(secs) = t.get::<Option<f64>>("timeout")? {
        case.timeout_ms = super::control::timeout_from_secs(secs)
            .map_err(|e| errors::error(lua, format!("{what}: timeout: {e}")))?
            .as_millis()
            .min(u32::MAX as u128) as u32;
    }
    Ok((case, outputs))
}

/// `target:isolated{...}` on a VM or a worker.
pub fn isolated<T: Target + ?Sized>(lua: &Lua, this: &T, cases: Value) -> mlua::Result<Table> {
    let Value::Table(list) = cases else {
        return Err(errors::error(
            lua,
            "isolated{ {calls = {...}, as = {...}}, ... }: expected a list of cases",
        ));
    };
    let mut built = Vec::new();
    for (i, c) in list.sequence_values::<Table>().enumerate() {
        built.push(case_from_table(lua, i + 1, &c?)?);
    }
    let requests: Vec<IsolatedCase> = built.iter().map(|(c, _)| c.clone()).collect();
    let started = std::time::Instant::now();
    let results = if Session::get(lua).config.settings.list_only {
        Session::get(lua).invented();
        requests
            .iter()
            .map(|c| c.calls.iter().map(dry_outcome).collect())
            .collect()
    } else {
        with_vm(lua, this, "isolated", |vm, w| {
            vm.worker(w).isolated(requests)
        })?
    };
    let elapsed = started.elapsed();
    let out = lua.create_table()?;
    let mut all = Vec::new();
    for ((case, outputs), outcomes) in built.iter().zip(&results) {
        let per_case = lua.create_table()?;
        for (k, o) in outcomes.iter().enumerate() {
            let (Some(call), Some(outs)) = (case.calls.get(k), outputs.get(k)) else {
                continue;
            };
            let t = outcome_table(lua, call, o, outs)?;
            all.push(t.clone());
            per_case.push(t)?;
        }
        out.push(per_case)?;
    }
    Session::get(lua).share_batch_time(&all, elapsed);
    Ok(out)
}
