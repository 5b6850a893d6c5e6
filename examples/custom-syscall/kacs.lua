-- The founding example, as it was first written: tests of a kernel's own new syscalls, by
-- number, before any tooling knew their names. The kernel is Debian's linux-source-6.1 with
-- kacs.patch (see README.md here): 1000 kacs_open_self_token, 1003 kacs_create_token,
-- 1021/1022 kacs_get_sd/kacs_set_sd.
--   provium test --kernel TREE examples/custom-syscall/kacs.lua
local vm = provium.create()
vm:boot()

local TOKEN_QUERY = 0x0008

test("getpid", function()
  assert(vm:syscall(provium.nr.getpid) > 0)
end)

test("open_self_token", function()
  local fd = vm:syscall(1000, 0, TOKEN_QUERY)
  assert(fd >= 0, "expected a token descriptor, got " .. fd)
end)

test("open_self_token with invalid flags is EINVAL", function()
  assert_errno(vm:syscall(1000, 0x80, TOKEN_QUERY), "EINVAL")
end)

test("create_token from a spec in one buffer", function()
  local spec = provium.pack("u32 u32", 1, 42)
  local fd = vm:syscall_buf(1003, 0, spec, 0, #spec)
  assert(fd >= 0, "expected a token descriptor, got " .. fd)
end)

-- The worked example: a security descriptor set on a file in two buffers (the path, the
-- descriptor), and read back into an output buffer.
test("set a security descriptor and read it back", function()
  vm:write_file("/tmp/report.txt", "quarterly numbers\n")
  local path = provium.cstr("/tmp/report.txt")
  -- revision 1, control SE_DACL_PRESENT | SE_SELF_RELATIVE, the DACL right after the header
  local sd = provium.pack("u8 u8 u16 u32 u32 u32 u32", 1, 0, 0x8004, 0, 0, 0, 20)
    .. provium.pack("u8 u8 u16 u16 u16", 2, 0, 8, 0, 0)
  assert_eq(0, vm:syscall_bufs(1022, {[1] = path, [3] = sd}, -100, 0, 0x07, 0, #sd, 0))
  local n, _, got = vm:syscall_bufs(1021, {[1] = path, [3] = 256}, -100, 0, 0x04, 0, 256, 0)
  assert_eq(#sd, n)
  assert_eq(sd, got:sub(1, n))
end)
