-- Raw system calls: numbers in, the kernel's raw return value out (a negative errno on failure).
-- Run: provium test examples/syscalls.lua
local vm = provium.create("minimal")
vm:boot()

test("getpid is positive", function()
  assert(vm:syscall(39) > 0)
end)

test("unknown syscall is ENOSYS", function()
  assert_eq(-38, vm:syscall(1000, 0, 0x0008), "expected ENOSYS")
end)

test("pipe round trip", function()
  -- pipe2(int fds[2], flags): buffer 0 receives the two descriptors.
  local ret, fds = vm:syscall_bufs(293, {[0] = string.rep("\0", 8)}, 0, 0)
  assert_eq(0, ret)
  local rfd, wfd = provium.unpack("i32 i32", fds)
  local msg = provium.pack("u32 u32", 1, 42)
  -- write(wfd, msg, #msg): the placeholder 0 at index 1 is replaced by the buffer's address.
  assert_eq(#msg, vm:syscall_buf(1, 1, msg, wfd, 0, #msg))
  local n, data = vm:syscall_bufs(0, {[1] = string.rep("\0", 8)}, rfd, 0, 8)
  assert_eq(8, n)
  local a, b = provium.unpack("u32 u32", data)
  assert_eq(42, b)
end)

test("names instead of numbers", function()
  assert_errno(vm:syscall(provium.nr.close, -1), "EBADF")
  assert_eq("EBADF", provium.strerror(vm:syscall(provium.nr.close, -1)))
end)

-- No vm:shutdown() needed: at the file's end Provium stops the VM at once (its RAM is a
-- private copy and it has no disk), which is cheaper than the guest powering itself off.
