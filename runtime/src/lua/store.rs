//! `provium.store(target, address, type, value)`: an integer written into the memory of the
//! process `target` runs its calls in, at an address a call returned (a `store:` step; LTP's
//! `futexes[1] = 1`). It is the process's own `process_vm_writev` on itself, so a bad address
//! answers EFAULT instead of ending the executor, and nothing else of the process changes (no
//! descriptor is opened, unlike writing `/proc/self/mem`).

use super::errors;
use mlua::{AnyUserData, Function, Lua, ObjectLike, Table};

/// The bytes of `value` as a `kind` (`u32`), little-endian (x86_64 and aarch64 both).
fn encode(kind: &str, value: i64) -> Option<Vec<u8>> {
    let size = match kind {
        "u8" | "i8" => 1,
        "u16" | "i16" => 2,
        "u32" | "i32" => 4,
        "u64" | "i64" => 8,
        _ => return None,
    };
    Some(value.to_le_bytes()[..size].to_vec())
}

pub fn store(
    lua: &Lua,
    (target, address, kind, value): (AnyUserData, i64, String, i64),
) -> mlua::Result<()> {
    let what = format!("store {kind} {value} at {address:#x}");
    let data = encode(&kind, value).ok_or_else(|| {
        errors::error(
            lua,
            format!("{what}: the type is u8, u16, u32, u64, i8, i16, i32 or i64"),
        )
    })?;
    let nr = |name: &str| {
        super::session::guest_arch(lua)
            .syscall_number(name)
            .map(i64::from)
            .ok_or_else(|| errors::error(lua, format!("{what}: no syscall {name}")))
    };
    let syscall: Function = target.get("syscall")?;
    let pid: i64 = syscall.call((target.clone(), nr("getpid")?))?;
    // process_vm_writev(pid, local_iov, 1, remote_iov, 1, 0): the local iovec's base is the
    // data (patched in by the agent), the remote one is {address, len}.
    let len = data.len() as u64;
    let mut local = vec![0u8; 8];
    local.extend_from_slice(&len.to_le_bytes());
    let mut remote = (address as u64).to_le_bytes().to_vec();
    remote.extend_from_slice(&len.to_le_bytes());
    let call = lua.create_table()?;
    call.set("nr", nr("process_vm_writev")?)?;
    call.set("args", vec![pid, 0, 1, 0, 1, 0])?;
    let bufs = lua.create_table()?;
    // Keyed by argument index, from 0.
    bufs.set(1, lua.create_string(&local)?)?;
    bufs.set(3, lua.create_string(&remote)?)?;
    call.set("bufs", bufs)?;
    let data_ptr = lua.create_table()?;
    data_ptr.set("buf_idx", 1)?;
    data_ptr.set("ptr_offset", 0)?;
    data_ptr.set("data", lua.create_string(&data)?)?;
    data_ptr.set("data_len", data.len())?;
    call.set("ptrs", vec![data_ptr])?;
    let call_fn: Function = target.get("call")?;
    let outcome: Table = call_fn.call((target, call))?;
    match outcome.get::<Option<i64>>("ret")? {
        Some(r) if r == len as i64 => Ok(()),
        Some(r) => Err(errors::error(
            lua,
            format!(
                "{what}: process_vm_writev answered {}",
                provium_compiler::linux::describe_ret(r)
            ),
        )),
        None => Err(errors::error(
            lua,
            format!("{what}: the process did not answer (it ended)"),
        )),
    }
}
