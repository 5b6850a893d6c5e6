//! `provium.raising(target, call, signals)`: runs one call with `signals` blocked and reports
//! which of them it left pending, in one round trip. This is how a spec expects "the call
//! raised SIGPIPE" (`expect: {errno: EPIPE, raises: SIGPIPE}`) without the signal's default
//! action ending the executor, the way LTP's write05 and truncate03 check SIGPIPE and SIGXFSZ.

use mlua::{Function, Lua, Table};

/// A batch: block the signals, the call, read what is pending, take each pending signal (a
/// zero timeout: one that is not pending is EAGAIN), unblock them. The executor starts with
/// no signal blocked, so unblocking restores it.
const RAISING: &str = r#"
local nr, pack, unpack = ...
return function(target, call, signals)
  local mask = 0
  for _, s in ipairs(signals) do
    if math.type(s) ~= "integer" or s < 1 or s > 64 then
      error("provium.raising: signals are numbers 1 to 64", 2)
    end
    mask = mask | (1 << (s - 1))
  end
  local set = pack("u64", mask)
  local calls = {
    {nr = nr.rt_sigprocmask, args = {0, 0, 0, 8}, bufs = {[1] = set}},   -- SIG_BLOCK
    call,
    {nr = nr.rt_sigpending, args = {0, 8}, bufs = {[0] = 8}},
  }
  for _ = 1, #signals do
    calls[#calls + 1] = {nr = nr.rt_sigtimedwait, args = {0, 0, 0, 8},
                         bufs = {[0] = set, [2] = pack("i64 i64", 0, 0)}}
  end
  calls[#calls + 1] = {nr = nr.rt_sigprocmask, args = {1, 0, 0, 8}, bufs = {[1] = set}}  -- SIG_UNBLOCK
  local results = target:batch(calls)
  local r = results[2]
  local raised = {}
  local pending = results[3].bufs and results[3].bufs[0]
  if pending and not r.died then
    local bits = unpack("u64", pending)
    for _, s in ipairs(signals) do
      if bits & (1 << (s - 1)) ~= 0 then raised[#raised + 1] = s end
    end
  end
  r.raised = raised
  return r
end
"#;

/// Sets `provium.raising`.
pub fn install(lua: &Lua, provium: &Table) -> mlua::Result<()> {
    let raising: Function = lua.load(RAISING).set_name("=provium.raising").call((
        provium.get::<Table>("nr")?,
        provium.get::<Function>("pack")?,
        provium.get::<Function>("unpack")?,
    ))?;
    provium.set("raising", raising)
}
