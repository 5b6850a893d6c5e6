//! The methods the `vm` and `worker` objects share: syscalls with and without buffers, batches,
//! commands, background jobs and files, each sent to the object's executor.

use super::convert::{self, int, outcome_table, plain_call};
use super::errors;
use super::options::{exec_call, exec_result, file_mode};
use super::session::Session;
use super::slot::Target;
use super::use_vm::with_vm;
use crate::protocol::{SyscallCall, SyscallOutcome, Termination};
use mlua::LuaSerdeExt;
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use std::time::Duration;

pub(super) fn syscall_label(nr: i64) -> String {
    abi_syscall_label(provium_compiler::linux::Abi::X86_64, nr)
}

/// `syscall 195 (stat64)` under i386's table.
pub(super) fn abi_syscall_label(abi: provium_compiler::linux::Abi, nr: i64) -> String {
    match abi.syscall_name(nr) {
        Some(name) => format!("syscall {nr} ({name})"),
        None => format!("syscall {nr}"),
    }
}

/// `cachestat (451)`: a call as a failure names it, by the kernel's own table when it is a
/// build tree's (a new syscall by its name), else by the known x86_64 tables; an i386 call by
/// i386's table (`stat64 (195, i386)`).
pub(super) fn call_label(lua: &Lua, nr: i64, abi: provium_compiler::linux::Abi) -> String {
    // A native call is named by the guest's own table (arm64's in an `--arch aarch64` run).
    let abi = match abi {
        provium_compiler::linux::Abi::X86_64 => super::session::guest_arch(lua).native_abi(),
        other => other,
    };
    if abi != provium_compiler::linux::Abi::X86_64 {
        return match abi.syscall_name(nr) {
            Some(name) => format!("{name} ({nr}, {abi})"),
            None => format!("syscall {nr} ({abi})"),
        };
    }
    let own = lua
        .app_data_ref::<std::rc::Rc<Session>>()
        .and_then(|s| s.config.settings.naming.clone())
        .and_then(|n| {
            n.names
                .syscalls
                .as_ref()?
                .iter()
                .find(|(_, v)| **v == nr)
                .map(|(k, _)| k.clone())
        });
    match own.or_else(|| {
        provium_compiler::linux::Arch::X86_64
            .syscall_name(nr)
            .map(str::to_string)
    }) {
        Some(name) => format!("{name} ({nr})"),
        None => format!("syscall {nr}"),
    }
}

/// A call's outcome when only a return is acceptable: death and timeouts are errors here.
pub(super) fn expect_returned(
    lua: &Lua,
    method: &str,
    nr: i64,
    outcome: SyscallOutcome,
) -> mlua::Result<(i64, Vec<Option<Vec<u8>>>)> {
    let what = syscall_label(nr);
    match outcome {
        SyscallOutcome::Returned { ret, buffers } => Ok((ret, buffers)),
        SyscallOutcome::ExecutorDied(t) => Err(errors::error(
            lua,
            format!("{method}: {what} ended the executor ({t}); use vm:call to expect that"),
        )),
        SyscallOutcome::TimedOut => Err(errors::error(lua, format!("{method}: {what} timed out"))),
        SyscallOutcome::Rejected(why) => {
            Err(errors::error(lua, format!("{method}: {what}: {why}")))
        }
        SyscallOutcome::ExecutorBroken(why) => Err(errors::error(
            lua,
            format!("{method}: {what}: {}", super::errors::broken_message(&why)),
        )),
    }
}

pub(super) fn run_call<T: Target + ?Sized>(
    lua: &Lua,
    target: &T,
    method: &str,
    mut call: SyscallCall,
) -> mlua::Result<SyscallOutcome> {
    target.under_abi(&mut call);
    if Session::get(lua).config.settings.list_only {
        Session::get(lua).invented();
        return Ok(super::dry::dry_outcome(&call));
    }
    with_vm(lua, target, method, |vm, w| vm.worker(w).syscall(call))
}

/// Runs a call that must return, and answers what the buffer methods return: the return value,
/// the argument buffers in argument order, then the sub-buffers at `outputs` (pointer specs).
pub(super) fn call_with_buffers<T: Target + ?Sized>(
    lua: &Lua,
    target: &T,
    method: &str,
    call: SyscallCall,
    outputs: &[usize],
) -> mlua::Result<MultiValue> {
    let nr = call.nr;
    let c = call.clone();
    let (ret, buffers) = expect_returned(lua, method, nr, run_call(lua, target, method, call)?)?;
    let mut out = vec![Value::Integer(ret)];
    out.extend(strings(lua, convert::arg_buffers(&c, &buffers))?);
    let subs: Vec<Vec<u8>> = outputs
        .iter()
        .map(|&i| buffers.get(i).cloned().flatten().unwrap_or_default())
        .collect();
    out.extend(strings(lua, subs)?);
    Ok(MultiValue::from_vec(out))
}

pub(super) fn strings(lua: &Lua, bufs: Vec<Vec<u8>>) -> mlua::Result<MultiValue> {
    bufs.into_iter()
        .map(|b| lua.create_string(&b).map(Value::String))
        .collect()
}

pub(super) fn add_target_methods<T: Target + UserData + 'static, M: UserDataMethods<T>>(
    methods: &mut M,
) {
    methods.add_method("syscall", |lua, this, args: MultiValue| {
        let mut args = args.into_iter();
        let nr = args.next().unwrap_or(Value::Nil);
        let rest: Vec<Value> = args.collect();
        let call = plain_call(lua, "syscall", &nr, &rest)?;
        let n = call.nr;
        let (ret, _) = expect_returned(lua, "syscall", n, run_call(lua, this, "syscall", call)?)?;
        Ok(ret)
    });

    methods.add_method("syscall_buf", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        if args.len() < 3 {
            return Err(errors::error(
                lua,
                "syscall_buf(nr, buf_arg_index, data, args...): too few arguments",
            ));
        }
        let idx = int(lua, &args[1], "syscall_buf: buffer index")?;
        let mut call = plain_call(lua, "syscall_buf", &args[0], &args[3..])?;
        let bufs = lua.create_table()?;
        bufs.set(idx, args[2].clone())?;
        convert::add_indexed_buffers(lua, "syscall_buf", &mut call, &bufs)?;
        // The buffer at `idx`, whatever other arguments became buffers (a `provium.cstr`).
        let slot = call
            .buffers
            .iter()
            .position(|b| b.arg.map(i64::from) == Some(idx));
        let nr = call.nr;
        let (ret, buffers) = expect_returned(
            lua,
            "syscall_buf",
            nr,
            run_call(lua, this, "syscall_buf", call)?,
        )?;
        let data = slot
            .and_then(|i| buffers.get(i).cloned().flatten())
            .unwrap_or_default();
        Ok((ret, lua.create_string(&data)?))
    });

    methods.add_method("syscall_bufs", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        let Some(Value::Table(bufs)) = args.get(1).cloned() else {
            return Err(errors::error(
                lua,
                "syscall_bufs(nr, {[idx]=data, ...}, args...): the second argument must be a table",
            ));
        };
        let mut call = plain_call(lua, "syscall_bufs", &args[0], &args[2..])?;
        convert::add_indexed_buffers(lua, "syscall_bufs", &mut call, &bufs)?;
        call_with_buffers(lua, this, "syscall_bufs", call, &[])
    });

    methods.add_method("syscall_ptr", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        let (Some(Value::Table(bufs)), Some(Value::Table(ptrs))) =
            (args.get(1).cloned(), args.get(2).cloned())
        else {
            return Err(errors::error(
                lua,
                "syscall_ptr(nr, bufs, ptrs, args...): bufs and ptrs must be tables",
            ));
        };
        let mut call = plain_call(lua, "syscall_ptr", &args[0], &args[3..])?;
        convert::add_indexed_buffers(lua, "syscall_ptr", &mut call, &bufs)?;
        let outputs = convert::add_pointer_specs(lua, "syscall_ptr", &mut call, &ptrs)?;
        call_with_buffers(lua, this, "syscall_ptr", call, &outputs)
    });

    methods.add_method(
        "ioctl",
        |lua, this, (fd, cmd, data): (Value, Value, Value)| {
            let nr = Value::Integer(16);
            let fd = int(lua, &fd, "ioctl: fd")?;
            let cmd = int(lua, &cmd, "ioctl: request")?;
            let mut call = plain_call(
                lua,
                "ioctl",
                &nr,
                &[Value::Integer(fd), Value::Integer(cmd)],
            )?;
            match &data {
                Value::String(_) => {
                    let bufs = lua.create_table()?;
                    bufs.set(2, data.clone())?;
                    convert::add_indexed_buffers(lua, "ioctl", &mut call, &bufs)?;
                }
                Value::Nil => {}
                other => call.args[2] = int(lua, other, "ioctl: argument")?,
            }
            // Without a buffer there are no argument buffers: only the return value comes back.
            call_with_buffers(lua, this, "ioctl", call, &[])
        },
    );

    methods.add_method(
        "ioctl_buf",
        |lua, this, (fd, cmd, data, ptrs): (Value, Value, Value, Option<Table>)| {
            let fd = int(lua, &fd, "ioctl_buf: fd")?;
            let cmd = int(lua, &cmd, "ioctl_buf: request")?;
            let mut call = plain_call(
                lua,
                "ioctl_buf",
                &Value::Integer(16),
                &[Value::Integer(fd), Value::Integer(cmd)],
            )?;
            let bufs = lua.create_table()?;
            bufs.set(2, data)?;
            convert::add_indexed_buffers(lua, "ioctl_buf", &mut call, &bufs)?;
            let outputs = match ptrs {
                Some(p) => convert::add_pointer_specs(lua, "ioctl_buf", &mut call, &p)?,
                None => Vec::new(),
            };
            call_with_buffers(lua, this, "ioctl_buf", call, &outputs)
        },
    );

    methods.add_method("call", |lua, this, spec: Value| {
        let Value::Table(spec) = spec else {
            return Err(errors::error(
                lua,
                "call{nr=, args=, bufs=, ptrs=, timeout=}: expected a table",
            ));
        };
        let (mut call, outputs) = convert::call_from_table(lua, "call", &spec)?;
        this.under_abi(&mut call);
        let c = call.clone();
        let outcome = run_call(lua, this, "call", call)?;
        outcome_table(lua, &c, &outcome, &outputs)
    });

    methods.add_method("batch", |lua, this, calls: Value| {
        let Value::Table(calls) = calls else {
            return Err(errors::error(
                lua,
                "batch{ {nr, args...}, ... }: expected a list of calls",
            ));
        };
        let mut built = Vec::new();
        for (i, c) in calls.sequence_values::<Value>().enumerate() {
            let Value::Table(t) = c? else {
                return Err(errors::error(
                    lua,
                    format!("batch: call {} must be a table", i + 1),
                ));
            };
            let (mut call, outputs) =
                convert::call_from_table(lua, &format!("batch: call {}", i + 1), &t)?;
            this.under_abi(&mut call);
            built.push((call, outputs));
        }
        let requests: Vec<SyscallCall> = built.iter().map(|(c, _)| c.clone()).collect();
        let started = std::time::Instant::now();
        let outcomes = if Session::get(lua).config.settings.list_only {
            Session::get(lua).invented();
            requests.iter().map(super::dry::dry_outcome).collect()
        } else {
            with_vm(lua, this, "batch", |vm, w| vm.worker(w).batch(requests))?
        };
        let elapsed = started.elapsed();
        let tables = built
            .iter()
            .zip(&outcomes)
            .map(|((call, outputs), outcome)| outcome_table(lua, call, outcome, outputs))
            .collect::<mlua::Result<Vec<Table>>>()?;
        Session::get(lua).share_batch_time(&tables, elapsed);
        lua.create_sequence_from(tables)
    });

    methods.add_method("isolated", |lua, this, cases: Value| {
        super::isolated::isolated(lua, this, cases)
    });

    methods.add_method("exec", |lua, this, (cmd, opts): (Value, Option<Table>)| {
        let call = exec_call(lua, &cmd, opts.as_ref())?;
        let result = with_vm(lua, this, "exec", |vm, w| vm.worker(w).exec(call))?;
        exec_result(lua, result)
    });

    methods.add_method(
        "background",
        |lua, this, (cmd, opts): (Value, Option<Table>)| {
            let call = exec_call(lua, &cmd, opts.as_ref())?;
            let id = with_vm(lua, this, "background", |vm, w| {
                vm.worker(w).background(call)
            })?;
            Ok(LuaJob { id })
        },
    );

    methods.add_method(
        "job_wait",
        |lua, this, (job, timeout): (Value, Option<f64>)| {
            let id = job_id(lua, "job_wait", &job)?;
            let timeout = Duration::from_secs_f64(timeout.unwrap_or(30.0).clamp(0.0, 86_400.0));
            let result = with_vm(lua, this, "job_wait", |vm, w| {
                vm.worker(w).job_wait(id, timeout)
            })?;
            let running = result.termination.is_none();
            let t = exec_result(lua, result)?;
            t.set("running", running)?;
            Ok(t)
        },
    );

    methods.add_method("job_kill", |lua, this, job: Value| {
        let id = job_id(lua, "job_kill", &job)?;
        with_vm(lua, this, "job_kill", |vm, w| vm.worker(w).job_kill(id))
    });

    methods.add_method("json", |lua, this, (cmd, opts): (Value, Option<Table>)| {
        let call = exec_call(lua, &cmd, opts.as_ref())?;
        let shown = call.argv.join(" ");
        let r = with_vm(lua, this, "json", |vm, w| vm.worker(w).exec(call))?;
        if Session::get(lua).config.settings.list_only {
            return Ok(Value::Nil);
        }
        if r.termination != Some(Termination::Exited(0)) {
            return Err(errors::error_with(
                lua,
                format!(
                    "json: `{shown}` {}",
                    match r.termination {
                        Some(t) => t.to_string(),
                        None => "timed out".into(),
                    }
                ),
                String::from_utf8_lossy(&r.stderr).trim().to_string(),
            ));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&r.stdout).map_err(|e| {
            let text = String::from_utf8_lossy(&r.stdout);
            let preview: String = text.chars().take(200).collect();
            errors::error_with(
                lua,
                format!("json: `{shown}` did not print JSON: {e}"),
                format!("stdout: {preview}"),
            )
        })?;
        let options = mlua::serde::SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false);
        lua.to_value_with(&parsed, options)
    });

    methods.add_method("read_file", |lua, this, path: String| {
        let data = with_vm(lua, this, "read_file", |vm, w| {
            vm.worker(w).read_file(&path)
        })?;
        lua.create_string(&data)
    });

    methods.add_method(
        "write_file",
        |lua, this, (path, data, mode): (String, mlua::LuaString, Value)| {
            let data = data.as_bytes().to_vec();
            let mode = file_mode(lua, &mode)?;
            with_vm(lua, this, "write_file", |vm, w| {
                vm.worker(w).write_file(&path, &data, mode)
            })
        },
    );
}

/// A background job started by `vm:background` (or a worker's).
pub struct LuaJob {
    pub id: u32,
}

impl UserData for LuaJob {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.id));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            Ok(format!("job {}", this.id))
        });
    }
}

pub(super) fn job_id(lua: &Lua, method: &str, v: &Value) -> mlua::Result<u32> {
    match v {
        Value::UserData(ud) => match ud.borrow::<LuaJob>() {
            Ok(job) => Ok(job.id),
            Err(_) => Err(errors::error(
                lua,
                format!("{method}: expected a job from vm:background()"),
            )),
        },
        other => {
            let n = int(lua, other, &format!("{method}: job"))?;
            u32::try_from(n)
                .map_err(|_| errors::error(lua, format!("{method}: bad job number {n}")))
        }
    }
}
