-- Commands in the guest (busybox): exit code, stdout and stderr, with helpers on the output.
local vm = provium.create()
vm:boot()

test("uname -r matches the kernel the VM reports", function()
  local r = vm:exec("uname -r")
  assert(r.ok)
  assert_eq(vm.info.kernel_release, r.stdout:trim())
end)

test("exit codes and stderr", function()
  local r = vm:exec("echo oops >&2; exit 3")
  assert_eq(false, r.ok)
  assert_eq(3, r.exit_code)
  assert(r.stderr:contains("oops"))
end)

test("argv, environment and stdin", function()
  local r = vm:exec({"/bin/sh", "-c", "echo $GREETING; cat"}, {env = {GREETING = "hi"}, stdin = "from stdin"})
  assert_eq("hi\nfrom stdin", r.stdout.value)
  assert(r.stdout:starts_with("hi"))
end)

test("a command that hangs is killed at its timeout", function()
  local r = vm:exec("sleep 30", {timeout = 0.5})
  assert(r.timed_out)
end)

test("the kernel log", function()
  assert_contains(vm:dmesg("Linux version"), "Linux version")
end)
