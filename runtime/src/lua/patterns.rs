//! Call patterns that specs compile to, each a few round trips at most:
//!
//! - `provium.raising(target, call, signals)` runs one call with `signals` blocked and reports
//!   which of them it left pending. This is how a spec expects "the call raised SIGPIPE"
//!   (`expect: {errno: EPIPE, raises: SIGPIPE}`) without the signal's default action ending the
//!   executor, the way LTP's write05 and truncate03 check SIGPIPE and SIGXFSZ.
//! - `provium.repeating(target, call, errnos, at_most)` repeats one call until it fails with
//!   one of `errnos` (LTP's dup06, fcntl12, mmap until ENOMEM), in batches, and returns that
//!   outcome with `repeats` (how many calls it took); reaching `at_most` first returns the last
//!   outcome marked `repeat_unmet`, which `expect` reports as a failure. `call` may be a
//!   function of the count (from 0), for a spec's `$repeat` (msgget with keys `key + n`).

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

/// Calls go in batches of this many: a round trip each, and few wasted calls after the one
/// that fails (they fail the same way).
const REPEAT_BATCH: usize = 256;

const REPEATING: &str = r#"
local batch_size = ...
return function(target, call, errnos, at_most)
  if math.type(at_most) ~= "integer" or at_most < 1 then
    error("provium.repeating: at_most must be a positive integer", 2)
  end
  local wanted = {}
  for _, e in ipairs(errnos) do wanted[e] = true end
  local done, last = 0, nil
  while done < at_most do
    local n = math.min(batch_size, at_most - done)
    local calls = {}
    -- A call that reads `$repeat` is a function of the count (from 0).
    for i = 1, n do
      if type(call) == "function" then calls[i] = call(done + i - 1) else calls[i] = call end
    end
    local results = target:batch(calls)
    for i, r in ipairs(results) do
      last = r
      if r.errno and wanted[r.errno] then
        r.repeats = done + i
        return r
      end
      if r.died or r.timed_out then
        error(string.format("the call ended its process on repetition %d instead of failing with %s",
          done + i, table.concat(errnos, " or ")), 2)
      end
    end
    done = done + n
  end
  -- The check at the spec's `expect:` line reports it (see `expect`).
  last.repeat_unmet = string.format("the call did not fail with %s within %d calls (the last answered %s)",
    table.concat(errnos, " or "), at_most, last.errno or tostring(last.ret))
  last.repeats = at_most
  return last
end
"#;

/// Sets `provium.raising` and `provium.repeating`.
pub fn install(lua: &Lua, provium: &Table) -> mlua::Result<()> {
    let raising: Function = lua.load(RAISING).set_name("=provium.raising").call((
        provium.get::<Table>("nr")?,
        provium.get::<Function>("pack")?,
        provium.get::<Function>("unpack")?,
    ))?;
    provium.set("raising", raising)?;
    let repeating: Function = lua
        .load(REPEATING)
        .set_name("=provium.repeating")
        .call(REPEAT_BATCH)?;
    provium.set("repeating", repeating)
}
