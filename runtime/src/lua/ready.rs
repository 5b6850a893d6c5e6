//! Ready-made values for specs and Lua: what LTP's `tst_get_unused_pid()`,
//! `TST_GET_UNUSED_PORT()` and `getdtablesize()` give its tests, asked of the guest when first
//! used. A spec reads them as `$unused_pid`, `$unused_port`, `$unused_fd`, `$fd_table_size`
//! (the compiler knows the names: `provium_compiler::READY_MADE`); Lua as
//! `provium.saved(vm).unused_pid`, or by calling `provium.ready(vm, name)`.

use mlua::{Function, Lua, Table};

/// Each value is computed in the executor with plain syscalls, so it answers for the guest
/// the test runs in, not for the host.
const READY: &str = r#"
local nr, pack, unpack, cstr, listing = ...
local ready = {}

local function must(ret, what)
  if ret < 0 then
    error(what .. " failed: " .. (provium.strerror(ret) or tostring(ret)), 3)
  end
  return ret
end

-- RLIMIT_NOFILE's soft limit, as getdtablesize() gives it.
function ready.fd_table_size(vm)
  local ret, lim = vm:syscall_buf(nr.getrlimit, 1, 16, 7, 0)
  must(ret, "getrlimit(RLIMIT_NOFILE)")
  return (unpack("u64 u64", lim))
end

-- The highest descriptor number that is not open: a later open never takes it by accident
-- (the kernel hands out the lowest free number).
function ready.unused_fd(vm)
  local size = ready.fd_table_size(vm)
  for fd = size - 1, 0, -1 do
    if vm:syscall(nr.fcntl, fd, 1) == -provium.errno.EBADF then
      return fd
    end
  end
  error("every descriptor below " .. size .. " is open", 2)
end

-- A pid no process has: counting down from pid_max, the first that kill(pid, 0) says does
-- not exist.
function ready.unused_pid(vm)
  local fd = must(vm:syscall(nr.openat, -100, cstr("/proc/sys/kernel/pid_max"), 0, 0),
    "opening /proc/sys/kernel/pid_max")
  local n, text = vm:syscall_buf(nr.read, 1, 32, fd, 0, 32)
  vm:syscall(nr.close, fd)
  must(n, "reading /proc/sys/kernel/pid_max")
  local max = tonumber(text:sub(1, n):match("%d+"))
  if not max then error("/proc/sys/kernel/pid_max is not a number", 2) end
  for pid = max - 1, 2, -1 do
    if vm:syscall(nr.kill, pid, 0) == -provium.errno.ESRCH then
      return pid
    end
  end
  error("every pid below " .. max .. " is in use", 2)
end

-- A TCP port on IPv4 that nothing listens on: the kernel picks a free one for a socket bound
-- to port 0, and the socket is closed again (TST_GET_UNUSED_PORT does the same).
function ready.unused_port(vm)
  local s = must(vm:syscall(nr.socket, 2, 1, 0), "socket(AF_INET, SOCK_STREAM)")
  local sin = pack("u16 u16 u32 x8", 2, 0, 0)
  local b = vm:syscall_buf(nr.bind, 1, sin, s, 0, #sin)
  if b < 0 then vm:syscall(nr.close, s); must(b, "bind(0.0.0.0:0)") end
  local g, addr = vm:syscall_bufs(nr.getsockname, {[1] = 16, [2] = pack("u32", 16)}, s, 0, 0)
  vm:syscall(nr.close, s)
  must(g, "getsockname")
  local hi, lo = unpack("x2 u8 u8", addr)
  return hi * 256 + lo
end

local function value(vm, name)
  local f = ready[name]
  if not f then return nil end
  -- `--list` runs nothing in the guest: any number stands in.
  if listing() then return 0 end
  return f(vm)
end

local function saved(vm)
  return setmetatable({}, {__index = function(t, k)
    local v = value(vm, k)
    if v ~= nil then rawset(t, k, v) end
    return v
  end})
end

return saved, value, ready
"#;

/// Sets `provium.saved(vm)` (the table compiled specs keep their values in, with the ready-made
/// values behind it) and `provium.ready(vm, name)`.
pub fn install(lua: &Lua, provium: &Table) -> mlua::Result<()> {
    let listing = lua.create_function(|lua, ()| {
        Ok(lua
            .app_data_ref::<std::rc::Rc<super::Session>>()
            .is_some_and(|s| s.config.settings.list_only))
    })?;
    let (saved, value, _): (Function, Function, Table) =
        lua.load(READY).set_name("=provium.ready").call((
            provium.get::<Table>("nr")?,
            provium.get::<Function>("pack")?,
            provium.get::<Function>("unpack")?,
            provium.get::<Function>("cstr")?,
            listing,
        ))?;
    provium.set("saved", saved)?;
    provium.set("ready", value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiler accepts `$NAME` for exactly the values the runtime can compute.
    #[test]
    fn the_compiler_and_the_runtime_know_the_same_names() {
        let lua = Lua::new();
        crate::lua::api::install(&lua).unwrap();
        let provium: Table = lua.globals().get("provium").unwrap();
        let (_, _, ready): (Function, Function, Table) = lua
            .load(READY)
            .call((
                provium.get::<Table>("nr").unwrap(),
                provium.get::<Function>("pack").unwrap(),
                provium.get::<Function>("unpack").unwrap(),
                provium.get::<Function>("cstr").unwrap(),
                lua.create_function(|_, ()| Ok(true)).unwrap(),
            ))
            .unwrap();
        let mut names: Vec<String> = ready
            .pairs::<String, Function>()
            .map(|p| p.unwrap().0)
            .collect();
        names.sort();
        let mut known: Vec<&str> = provium_compiler::READY_MADE
            .iter()
            .map(|(n, _)| *n)
            .collect();
        known.sort();
        assert_eq!(names, known);
    }
}
