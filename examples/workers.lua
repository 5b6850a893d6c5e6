-- Workers: executor processes with other credentials, so EACCES and EPERM can be tested.
local vm = provium.create()
vm:boot()

vm:write_file("/tmp/secret", "root only", "0600")

test("root opens its 0600 file", function()
  local fd = assert_ok(vm:syscall(provium.nr.openat, -100, provium.cstr("/tmp/secret"), 0))
  vm:syscall(provium.nr.close, fd)
end)

test("uid 1000 gets EACCES", function()
  local user = vm:spawn{uid = 1000, gid = 1000}
  assert_eq(1000, user:syscall(provium.nr.getuid))
  assert_errno(user:syscall(provium.nr.openat, -100, provium.cstr("/tmp/secret"), 0), "EACCES")
  user:kill()
end)

test("an unprivileged worker cannot set the hostname", function()
  local user = vm:spawn{uid = 1000}
  assert_errno(user:syscall(provium.nr.sethostname, "x", 1), "EPERM")
end)

test("a capability is enough", function()
  local admin = vm:spawn{uid = 1000, caps = {"CAP_SYS_ADMIN"}}
  assert_eq(0, admin:syscall(provium.nr.sethostname, "provium", 7))
end)

test("write_file sets the mode it is given", function()
  local st = vm:exec("stat -c %a /tmp/secret")
  assert_eq("600", st.stdout:trim())
end)
