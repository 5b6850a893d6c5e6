//! Lua values to syscall arguments and buffers, and outcomes back to Lua.

use super::errors;
use crate::protocol::{Buffer, PointerPatch, SyscallCall, SyscallOutcome, Termination};
use mlua::{Lua, Table, Value};

pub fn type_name(v: &Value) -> &'static str {
    v.type_name()
}

/// An integer argument; floats with an integral value are accepted, anything else is an error.
pub fn int(lua: &Lua, v: &Value, what: &str) -> mlua::Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Value::Number(f) => Err(errors::error(
            lua,
            format!("{what}: expected an integer, got {f}"),
        )),
        other => Err(errors::error(
            lua,
            format!("{what}: expected an integer, got {}", type_name(other)),
        )),
    }
}

pub fn opt_int(lua: &Lua, v: &Value, what: &str) -> mlua::Result<Option<i64>> {
    match v {
        Value::Nil => Ok(None),
        other => int(lua, other, what).map(Some),
    }
}

/// Buffer contents: a string is its bytes; an integer N is N zero bytes.
pub fn buffer_data(lua: &Lua, v: &Value, what: &str) -> mlua::Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(n) if (0..=(256 << 20)).contains(n) => Ok(vec![0; *n as usize]),
        Value::Integer(n) => Err(errors::error(
            lua,
            format!("{what}: a buffer of {n} bytes is out of range (0 to 256 MiB)"),
        )),
        other => Err(errors::error(
            lua,
            format!(
                "{what}: expected a string (contents) or an integer (size), got {}",
                type_name(other)
            ),
        )),
    }
}

/// Builds a call from a syscall number and up to six arguments. A string argument becomes an
/// input buffer holding its bytes (add `\0` for C strings, or use `provium.cstr`).
pub fn plain_call(
    lua: &Lua,
    method: &str,
    nr: &Value,
    args: &[Value],
) -> mlua::Result<SyscallCall> {
    let nr = int(lua, nr, &format!("{method}: syscall number"))?;
    if args.len() > 6 {
        return Err(errors::error(
            lua,
            format!(
                "{method}: a syscall takes at most 6 arguments, got {}",
                args.len()
            ),
        ));
    }
    let mut call = SyscallCall {
        nr,
        ..Default::default()
    };
    for (i, a) in args.iter().enumerate() {
        match a {
            Value::String(s) => call.buffers.push(Buffer {
                arg: Some(i as u8),
                data: s.as_bytes().to_vec(),
                len: s.as_bytes().len() as u32,
                output: true,
            }),
            Value::Nil => {}
            other => call.args[i] = int(lua, other, &format!("{method}: argument {}", i + 1))?,
        }
    }
    Ok(call)
}

/// Adds `{[index] = data}` buffers to a call; each replaces the argument at its 0-based index.
pub fn add_indexed_buffers(
    lua: &Lua,
    method: &str,
    call: &mut SyscallCall,
    bufs: &Table,
) -> mlua::Result<()> {
    let mut entries: Vec<(i64, Value)> = Vec::new();
    for pair in bufs.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let idx = int(lua, &k, &format!("{method}: buffer index"))?;
        entries.push((idx, v));
    }
    entries.sort_by_key(|(i, _)| *i);
    for (idx, v) in entries {
        if !(0..6).contains(&idx) {
            return Err(errors::error(
                lua,
                format!(
                    "{method}: buffer index {idx} is out of range: arguments are numbered 0 to 5"
                ),
            ));
        }
        call.buffers.retain(|b| b.arg != Some(idx as u8));
        let data = buffer_data(lua, &v, &format!("{method}: buffer {idx}"))?;
        call.buffers.push(Buffer {
            arg: Some(idx as u8),
            len: data.len() as u32,
            data,
            output: true,
        });
    }
    call.buffers.sort_by_key(|b| b.arg);
    Ok(())
}

/// Adds pointer specs: `{buf_idx=, ptr_offset=, data_len=, data=?, output=?}` (or `ptr=k` to
/// patch into the k-th spec's sub-buffer instead of an argument buffer). Returns the indices (in
/// `call.buffers`) of the sub-buffers to return.
pub fn add_pointer_specs(
    lua: &Lua,
    method: &str,
    call: &mut SyscallCall,
    ptrs: &Table,
) -> mlua::Result<Vec<usize>> {
    let mut outputs = Vec::new();
    let mut sub_index: Vec<usize> = Vec::new();
    for (n, spec) in ptrs.sequence_values::<Table>().enumerate() {
        let spec = spec.map_err(|_| {
            errors::error(
                lua,
                format!("{method}: pointer spec {} must be a table", n + 1),
            )
        })?;
        let what = format!("{method}: pointer spec {}", n + 1);
        let holder = match (spec.get::<Value>("buf_idx")?, spec.get::<Value>("ptr")?) {
            (Value::Nil, Value::Nil) => {
                return Err(errors::error(
                    lua,
                    format!("{what}: needs buf_idx (an argument index) or ptr (another spec)"),
                ))
            }
            (v, Value::Nil) => {
                let idx = int(lua, &v, &format!("{what}: buf_idx"))?;
                call.buffers
                    .iter()
                    .position(|b| b.arg.map(i64::from) == Some(idx))
                    .ok_or_else(|| {
                        errors::error(lua, format!("{what}: no buffer is bound to argument {idx}"))
                    })?
            }
            (_, v) => {
                let k = int(lua, &v, &format!("{what}: ptr"))?;
                *sub_index
                    .get((k - 1).max(0) as usize)
                    .filter(|_| k >= 1 && (k as usize) <= n)
                    .ok_or_else(|| {
                        errors::error(
                            lua,
                            format!("{what}: ptr={k} must name an earlier spec (1 to {n})"),
                        )
                    })?
            }
        };
        let offset = int(
            lua,
            &spec.get::<Value>("ptr_offset")?,
            &format!("{what}: ptr_offset"),
        )?;
        let data = match spec.get::<Value>("data")? {
            Value::Nil => Vec::new(),
            v => buffer_data(lua, &v, &format!("{what}: data"))?,
        };
        let len = match spec.get::<Value>("data_len")? {
            Value::Nil => data.len() as i64,
            v => int(lua, &v, &format!("{what}: data_len"))?,
        };
        if len < data.len() as i64 || len > (256 << 20) {
            return Err(errors::error(
                lua,
                format!(
                    "{what}: data_len {len} must be at least #data ({}) and at most 256 MiB",
                    data.len()
                ),
            ));
        }
        let holder_len = call.buffers[holder].len as i64;
        // 4 bytes: an i386 pointer's (the agent checks the call's own ABI's width).
        if offset < 0 || offset + 4 > holder_len {
            return Err(errors::error(
                lua,
                format!("{what}: ptr_offset {offset} does not leave room for a pointer in a buffer of {holder_len}"),
            ));
        }
        let output = spec.get::<Option<bool>>("output")?.unwrap_or(false);
        call.buffers.push(Buffer {
            arg: None,
            data,
            len: len as u32,
            output,
        });
        let index = call.buffers.len() - 1;
        sub_index.push(index);
        call.patches.push(PointerPatch {
            buffer: holder as u32,
            offset: offset as u32,
            target: index as u32,
        });
        if output {
            outputs.push(index);
        }
    }
    Ok(outputs)
}

/// The argument-bound buffers' contents after a call, in argument order.
pub fn arg_buffers(call: &SyscallCall, buffers: &[Option<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut bound: Vec<(u8, Vec<u8>)> = call
        .buffers
        .iter()
        .zip(buffers)
        .filter_map(|(b, data)| Some((b.arg?, data.clone().unwrap_or_default())))
        .collect();
    bound.sort_by_key(|(a, _)| *a);
    bound.into_iter().map(|(_, d)| d).collect()
}

/// An outcome as a Lua table: `ret`, `errno`, `bufs` (by argument index), `outputs`, `died`,
/// `exit_code`, `signal`, `timed_out`, `rejected`, `broken`.
pub fn outcome_table(
    lua: &Lua,
    call: &SyscallCall,
    outcome: &SyscallOutcome,
    outputs: &[usize],
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    // Which call this was, so that a failed expectation can name it.
    t.set("nr", call.nr)?;
    if call.abi == crate::protocol::Abi::I386 {
        t.set("abi", "i386")?;
    }
    t.set("died", false)?;
    t.set("timed_out", false)?;
    match outcome {
        SyscallOutcome::Returned { ret, buffers } => {
            t.set("ret", *ret)?;
            if (-4095..0).contains(ret) {
                if let Some(name) = provium_compiler::linux::errno_name(*ret) {
                    t.set("errno", name)?;
                }
            }
            let bufs = lua.create_table()?;
            for (b, data) in call.buffers.iter().zip(buffers) {
                if let (Some(arg), Some(data)) = (b.arg, data) {
                    bufs.set(arg as i64, lua.create_string(data)?)?;
                }
            }
            t.set("bufs", bufs)?;
            let outs = lua.create_table()?;
            for &i in outputs {
                let data = buffers.get(i).cloned().flatten().unwrap_or_default();
                outs.push(lua.create_string(&data)?)?;
            }
            t.set("outputs", outs)?;
        }
        SyscallOutcome::ExecutorDied(term) => {
            t.set("died", true)?;
            match term {
                Termination::Exited(code) => t.set("exit_code", *code)?,
                Termination::Signaled(sig) => t.set("signal", *sig)?,
            }
        }
        SyscallOutcome::TimedOut => t.set("timed_out", true)?,
        SyscallOutcome::Rejected(why) => t.set("rejected", why.as_str())?,
        SyscallOutcome::ExecutorBroken(why) => t.set("broken", why.as_str())?,
    }
    Ok(t)
}

/// A call from a `vm:call`/`vm:batch` table: `{nr, a1, ...}` or
/// `{nr=, args={...}, bufs={[i]=...}, ptrs={...}, timeout=seconds}`.
pub fn call_from_table(
    lua: &Lua,
    method: &str,
    t: &Table,
) -> mlua::Result<(SyscallCall, Vec<usize>)> {
    let nr_value: Value = match t.get::<Value>("nr")? {
        Value::Nil => t.get(1)?,
        v => v,
    };
    let args: Vec<Value> = match t.get::<Value>("args")? {
        Value::Table(a) => a.sequence_values::<Value>().collect::<mlua::Result<_>>()?,
        Value::Nil => {
            let all: Vec<Value> = t.sequence_values::<Value>().collect::<mlua::Result<_>>()?;
            if t.contains_key("nr")? {
                all
            } else {
                all.into_iter().skip(1).collect()
            }
        }
        other => {
            return Err(errors::error(
                lua,
                format!("{method}: args must be a list, got {}", type_name(&other)),
            ))
        }
    };
    let mut call = plain_call(lua, method, &nr_value, &args)?;
    if let Some(bufs) = t.get::<Option<Table>>("bufs")? {
        add_indexed_buffers(lua, method, &mut call, &bufs)?;
    }
    let outputs = match t.get::<Option<Table>>("ptrs")? {
        Some(ptrs) => add_pointer_specs(lua, method, &mut call, &ptrs)?,
        None => Vec::new(),
    };
    if let Some(secs) = t.get::<Option<f64>>("timeout")? {
        call.timeout_ms = (secs * 1000.0).clamp(1.0, u32::MAX as f64) as u32;
    }
    if let Some(name) = t.get::<Option<String>>("abi")? {
        call.abi = wire_abi(
            name.parse()
                .map_err(|e: String| errors::error(lua, format!("{method}: {e}")))?,
        );
    }
    Ok((call, outputs))
}

/// The protocol's name for an ABI: an architecture's own is the guest's own.
pub fn wire_abi(abi: provium_compiler::linux::Abi) -> crate::protocol::Abi {
    match abi {
        provium_compiler::linux::Abi::X86_64 | provium_compiler::linux::Abi::Aarch64 => {
            crate::protocol::Abi::Native
        }
        provium_compiler::linux::Abi::I386 => crate::protocol::Abi::I386,
    }
}
