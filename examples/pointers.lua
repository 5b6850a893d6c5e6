-- Pointer patching: buffers that hold the addresses of other buffers (an iovec array, a struct
-- with a char * field). The agent allocates each sub-buffer and writes its address in place.
local vm = provium.create()
vm:boot()

test("writev gathers two buffers", function()
  local _, fds = vm:syscall_bufs(provium.nr.pipe2, {[0] = 8}, 0, 0)
  local rfd, wfd = provium.unpack("i32 i32", fds)
  -- struct iovec iov[2] = { {base, 5}, {base, 6} }: the bases are patched.
  local iov = provium.pack("ptr u64 ptr u64", 0, 5, 0, 6)
  local ret = vm:syscall_ptr(provium.nr.writev, {[1] = iov}, {
    {buf_idx = 1, ptr_offset = 0, data = "hello"},
    {buf_idx = 1, ptr_offset = 16, data = " world"},
  }, wfd, 0, 2)
  assert_eq(11, ret)
  local n, data = vm:syscall_bufs(provium.nr.read, {[1] = 11}, rfd, 0, 11)
  assert_eq("hello world", data)
end)

test("readv scatters into output sub-buffers", function()
  vm:write_file("/tmp/abcdef", "abcdef")
  local fd = vm:syscall(provium.nr.openat, -100, provium.cstr("/tmp/abcdef"), 0)
  local iov = provium.pack("ptr u64 ptr u64", 0, 2, 0, 4)
  local ret, _, first, second = vm:syscall_ptr(provium.nr.readv, {[1] = iov}, {
    {buf_idx = 1, ptr_offset = 0, data_len = 2, output = true},
    {buf_idx = 1, ptr_offset = 16, data_len = 4, output = true},
  }, fd, 0, 2)
  assert_eq(6, ret)
  assert_eq("ab", first)
  assert_eq("cdef", second)
end)

test("vm:call returns everything as a table", function()
  local r = vm:call{nr = provium.nr.close, args = {-1}}
  assert_eq(-9, r.ret)
  assert_eq("EBADF", r.errno)
  -- A call that ends the executor is an outcome, not an error.
  local died = vm:call{nr = provium.nr.exit_group, args = {3}}
  assert(died.died)
  assert_eq(3, died.exit_code)
  assert(vm:syscall(provium.nr.getpid) > 0, "a fresh executor serves the next call")
end)

test("batches cost one round trip", function()
  local calls = {}
  for i = 1, 100 do calls[i] = {provium.nr.close, -1} end
  local results = vm:batch(calls)
  assert_eq(100, #results)
  for _, r in ipairs(results) do assert_eq(-9, r.ret) end
end)
