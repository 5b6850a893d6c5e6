//! `vm:isolated{case, ...}`: cases that each run in their own child of the executor, all in one
//! round trip (see `Operation::Isolated`). A case is a call table (one call), or a table with
//! `calls` and the process it runs in: `as` (credentials, as `vm:spawn`), `umask`, `cwd`,
//! `rlimits` (`{{RLIMIT, soft, hard}, ...}`) and `timeout` (seconds, the whole case).

use super::convert::{self, outcome_table};
use super::dry::dry_outcome;
use super::errors;
use super::options::credentials;
use super::session::Session;
use super::slot::Target;
use super::use_vm::with_vm;
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
        let (mut case, outputs) = case_from_table(lua, i + 1, &c?)?;
        for call in &mut case.calls {
            this.under_abi(call);
        }
        built.push((case, outputs));
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
        with_vm(lua, this, "isolated", |vm, w| run_cases(vm, w, requests))?
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

/// Runs isolated cases in one round trip. A case can take the whole executor with it (as root,
/// `kill(-1, SIGKILL)` reaches every process but PID 1 and itself): the batch's answer is then
/// lost, so each case is run again on its own, and only the one that ends its executor again
/// has that as its outcome. The rest are re-run, never reported as failed for another case.
fn run_cases(
    vm: &mut crate::machine::vm::Vm,
    worker: crate::protocol::WorkerId,
    requests: Vec<IsolatedCase>,
) -> Result<Vec<Vec<crate::protocol::SyscallOutcome>>, crate::machine::vm::VmError> {
    use crate::machine::vm::VmError;
    use crate::protocol::{ErrorKind, SyscallOutcome};
    let executor_died = |e: &VmError| match e {
        VmError::Agent(a) => match a.kind {
            ErrorKind::ExecutorDied(t) => Some(t),
            _ => None,
        },
        _ => None,
    };
    let many = requests.len() > 1;
    match vm.worker(worker).isolated(requests.clone()) {
        Err(e) if many && executor_died(&e).is_some() => requests
            .into_iter()
            .map(|case| match vm.worker(worker).isolated(vec![case]) {
                Ok(mut one) => Ok(one.pop().unwrap_or_default()),
                Err(e) => match executor_died(&e) {
                    Some(t) => Ok(vec![SyscallOutcome::ExecutorDied(t)]),
                    None => Err(e),
                },
            })
            .collect(),
        other => other,
    }
}
