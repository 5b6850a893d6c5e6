-- Buffers: strings are copied into guest memory; an integer N asks for N zeroed bytes.
-- Every buffer comes back after the call, in argument order.
local vm = provium.create()
vm:boot()

test("uname fills a struct utsname", function()
  local ret, uts = vm:syscall_bufs(provium.nr.uname, {[0] = 390})
  assert_eq(0, ret)
  local sysname = provium.unpack("z65", uts)
  assert_eq("Linux", sysname)
end)

test("a bad pointer is EFAULT", function()
  -- 1 is never a valid user address.
  assert_errno(vm:syscall(provium.nr.uname, 1), "EFAULT")
end)

test("openat with a C string path", function()
  local fd = vm:syscall(provium.nr.openat, -100, provium.cstr("/nonexistent"), 0)
  assert_errno(fd, "ENOENT")
end)

test("read back a file written from the host", function()
  vm:write_file("/tmp/greeting", "hello from the host\n")
  local fd = assert_ok(vm:syscall(provium.nr.openat, -100, provium.cstr("/tmp/greeting"), 0))
  local n, data = vm:syscall_bufs(provium.nr.read, {[1] = 64}, fd, 0, 64)
  assert_eq(20, n)
  assert_eq("hello from the host\n", data:sub(1, n))
  assert_eq(0, vm:syscall(provium.nr.close, fd))
end)

test("ioctl with an in/out argument", function()
  -- FIONREAD on a pipe with 5 bytes in it.
  local _, fds = vm:syscall_bufs(provium.nr.pipe2, {[0] = 8}, 0, 0)
  local rfd, wfd = provium.unpack("i32 i32", fds)
  vm:syscall_buf(provium.nr.write, 1, "12345", wfd, 0, 5)
  local ret, count = vm:ioctl(rfd, 0x541B, provium.pack("i32", 0))
  assert_eq(0, ret)
  assert_eq(5, provium.unpack("i32", count))
end)
