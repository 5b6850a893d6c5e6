-- Isolated cases: each runs in its own child of the executor, forked from the boot state, so a
-- case may change anything about its process and the next case, and the VM's own executor,
-- see none of it. Many cases go to the guest in one round trip.
local vm = provium.create()
vm:boot()

local nr = provium.nr
local HIGH = 0x700000000000 -- an address nothing maps

-- Everything a case can do to its own process.
local leaky = {calls = {
  {nr = nr.dup2, args = {0, 100}},
  {nr = nr.setrlimit, args = {7, 0}, bufs = {[1] = provium.pack("u64 u64", 16, 16)}}, -- RLIMIT_NOFILE
  {nr = nr.umask, args = {63}},                                                   -- 077
  {nr = nr.chdir, args = {0}, bufs = {[0] = provium.cstr("/proc")}},
  {nr = nr.rt_sigprocmask, args = {0, 0, 0, 8}, bufs = {[1] = provium.pack("u64", -1)}},   -- SIG_BLOCK all
  {nr = nr.rt_sigaction, args = {10, 0, 0, 8}, bufs = {[1] = provium.pack("u64 u64 u64 u64", 1, 0, 0, 0)}}, -- SIGUSR1 ignored
  {nr = nr.personality, args = {0x0040000}},                                      -- ADDR_NO_RANDOMIZE
  {nr = nr.prctl, args = {4, 0}},                                                 -- PR_SET_DUMPABLE 0
  {nr = nr.mmap, args = {HIGH, 4096, 3, 0x22 | 0x100000, -1, 0}},                 -- PRIVATE|ANON|FIXED_NOREPLACE
  {nr = nr.setresuid, args = {1000, 1000, 1000}},
}}

-- What the next case finds.
local clean = {calls = {
  {nr = nr.prlimit64, args = {0, 7, 0, 0}, bufs = {[3] = 16}},
  {nr = nr.umask, args = {18}},
  {nr = nr.getcwd, args = {0, 64}, bufs = {[0] = 64}},
  {nr = nr.rt_sigprocmask, args = {0, 0, 0, 8}, bufs = {[2] = 8}},
  {nr = nr.rt_sigaction, args = {10, 0, 0, 8}, bufs = {[2] = 32}},
  {nr = nr.personality, args = {0xffffffff}},
  {nr = nr.prctl, args = {3}},                                                    -- PR_GET_DUMPABLE
  {nr = nr.fcntl, args = {100, 1}},                                               -- F_GETFD
  {nr = nr.mincore, args = {HIGH, 4096, 0}, bufs = {[2] = 1}},
  {nr = nr.getuid},
}}

local function check(r)
  assert_eq(1024, provium.unpack("u64", r[1].bufs[3]), "RLIMIT_NOFILE")
  assert_eq(18, r[2].ret, "umask")                                                -- 022
  assert_eq("/", provium.unpack("z64", r[3].bufs[0]), "cwd")
  assert_eq(0, provium.unpack("u64", r[4].bufs[2]), "signal mask")
  assert_eq(0, provium.unpack("u64", r[5].bufs[2]), "SIGUSR1 disposition")
  assert_eq(0, r[6].ret, "personality")
  assert_eq(1, r[7].ret, "dumpable")
  assert_errno(r[8], "EBADF", "descriptor 100")
  assert_errno(r[9], "ENOMEM", "the mapping")
  assert_eq(0, r[10].ret, "uid")
end

test("what one isolated case does to its process ends with it", function()
  local r = vm:isolated{leaky, clean}
  for i, o in ipairs(r[1]) do
    assert(o.ret ~= nil and o.ret >= 0, "change " .. i .. " took effect: " .. tostring(o.ret))
  end
  check(r[2])
end)

test("and the VM's own executor never sees it", function()
  vm:isolated{leaky}
  local r = {}
  for i, call in ipairs(clean.calls) do
    r[i] = vm:call(call)
  end
  check(r)
end)

test("a case that blocks or ends its process costs only itself", function()
  local r = vm:isolated{
    {calls = {{nr = nr.pause}}, timeout = 0.5},
    {calls = {{nr = nr.exit_group, args = {3}}, {nr = nr.getpid}}},
    {nr = nr.getppid},
  }
  assert_eq(true, r[1][1].timed_out)
  assert_eq(3, r[2][1].exit_code)
  assert_eq(1, #r[2], "the call after exit_group never ran")
  assert(r[3][1].ret > 0)
end)

test("the checks above do see a change made in the same process", function()
  local both = {calls = {}}
  for _, c in ipairs(leaky.calls) do table.insert(both.calls, c) end
  for _, c in ipairs(clean.calls) do table.insert(both.calls, c) end
  local r = vm:isolated{both}[1]
  local after = {}
  for i = #leaky.calls + 1, #r do table.insert(after, r[i]) end
  local ok = pcall(check, after)
  assert(not ok, "check() must fail when the changes are in the same process")
end)
