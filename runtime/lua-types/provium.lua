---@meta provium
-- Type stubs for lua-language-server: completion and checking for Provium test files.
-- The repository's .luarc.json adds this directory to `workspace.library`; elsewhere, add
-- `runtime/lua-types` (or a copy of this file) to your own .luarc.json.

---@class ProviumOutput
---@field value string the text
local ProviumOutput = {}
---@param s string
---@return boolean
function ProviumOutput:contains(s) end
---@param s string
---@return boolean
function ProviumOutput:starts_with(s) end
---@param s string
---@return boolean
function ProviumOutput:ends_with(s) end
---@return string
function ProviumOutput:trim() end
---@return string[]
function ProviumOutput:lines() end

---@class ProviumExecResult
---@field ok boolean exit status 0
---@field exit_code integer|nil
---@field signal integer|nil
---@field timed_out boolean
---@field truncated boolean
---@field stdout ProviumOutput
---@field stderr ProviumOutput

---@class ProviumExecOptions
---@field env table<string, string>|nil
---@field stdin string|nil
---@field timeout number|nil seconds
---@field cwd string|nil

---@class ProviumJobResult: ProviumExecResult
---@field running boolean the job had not ended when the wait returned

---@class ProviumJob
---@field id integer

---@class ProviumPointerSpec
---@field buf_idx integer|nil argument index of the buffer to patch
---@field ptr integer|nil 1-based index of an earlier spec whose sub-buffer to patch
---@field ptr_offset integer where the 8-byte address is written
---@field data string|nil initial contents of the sub-buffer
---@field data_len integer|nil size of the sub-buffer (default #data)
---@field output boolean|nil return the sub-buffer after the call

---@class ProviumCall
---@field nr integer
---@field args (integer|string)[]|nil
---@field bufs table<integer, string|integer>|nil
---@field ptrs ProviumPointerSpec[]|nil
---@field timeout number|nil seconds

---@class ProviumOutcome
---@field ret integer|nil
---@field errno string|nil
---@field bufs table<integer, string>
---@field outputs string[]
---@field died boolean
---@field exit_code integer|nil
---@field signal integer|nil
---@field timed_out boolean
---@field rejected string|nil

---@class ProviumExecutor
local Executor = {}
---Raw system call; returns the kernel's return value (negative errno on failure).
---@param nr integer
---@param ... integer|string
---@return integer
function Executor:syscall(nr, ...) end
---@param nr integer
---@param buf_arg_index integer 0-based
---@param data string|integer contents, or a size in bytes
---@return integer ret
---@return string buffer
function Executor:syscall_buf(nr, buf_arg_index, data, ...) end
---@param nr integer
---@param bufs table<integer, string|integer>
---@return integer ret
---@return string ... buffers in argument order
function Executor:syscall_bufs(nr, bufs, ...) end
---@param nr integer
---@param bufs table<integer, string|integer>
---@param ptrs ProviumPointerSpec[]
---@return integer ret
---@return string ... buffers, then output sub-buffers
function Executor:syscall_ptr(nr, bufs, ptrs, ...) end
---@param fd integer
---@param cmd integer
---@param data string|integer|nil
---@return integer ret
---@return string|nil buffer
function Executor:ioctl(fd, cmd, data) end
---@param fd integer
---@param cmd integer
---@param struct_data string
---@param ptr_specs ProviumPointerSpec[]
---@return integer ret
---@return string ... struct, then output sub-buffers
function Executor:ioctl_buf(fd, cmd, struct_data, ptr_specs) end
---@param call ProviumCall
---@return ProviumOutcome
function Executor:call(call) end
---@param calls (ProviumCall|any[])[]
---@return ProviumOutcome[]
function Executor:batch(calls) end
---@class ProviumIsolatedCase
---@field calls ProviumCall[]|nil the calls, in order (or give one call's fields directly)
---@field as {uid: integer|nil, gid: integer|nil, groups: integer[]|nil, caps: string[]|nil}|nil
---@field umask integer|nil default 022
---@field cwd string|nil default "/"
---@field rlimits {[1]: integer, [2]: integer, [3]: integer}[]|nil {resource, soft, hard}
---@field timeout number|nil seconds for the whole case
---Cases that each run in their own child of the executor, forked from the boot state, in one
---round trip: what a case does to its process ends with it.
---@param cases (ProviumIsolatedCase|ProviumCall)[]
---@return ProviumOutcome[][]
function Executor:isolated(cases) end
---@param cmd string|string[]
---@param opts ProviumExecOptions|nil
---@return ProviumExecResult
function Executor:exec(cmd, opts) end
---Starts a command in the background (its output is collected in the guest).
---@param cmd string|string[]
---@param opts ProviumExecOptions|nil
---@return ProviumJob
function Executor:background(cmd, opts) end
---Waits for a job; `running` is true if it had not ended after `timeout` seconds.
---@param job ProviumJob|integer
---@param timeout number|nil seconds, default 30; 0 does not wait
---@return ProviumJobResult
function Executor:job_wait(job, timeout) end
---Kills a job's process group.
---@param job ProviumJob|integer
function Executor:job_kill(job) end
---Runs a command and parses its stdout as JSON (null becomes nil).
---@param cmd string|string[]
---@param opts ProviumExecOptions|nil
---@return any
function Executor:json(cmd, opts) end
---@param path string
---@return string
function Executor:read_file(path) end
---@param path string
---@param data string
---@param mode string|integer|nil octal string ("0600") or number
function Executor:write_file(path, data, mode) end

---@class ProviumWorker: ProviumExecutor
---@field id integer
---@field uid integer
---@field gid integer
local Worker = {}
function Worker:kill() end

---@class ProviumBootOptions
---@field memory string|integer|nil "512M", "1G", or MiB
---@field cpus integer|nil
---@field files table<string, string>|nil guest path -> host path
---@field timeout number|nil seconds
---@field transport "virtio-serial"|"vsock"|nil
---@field accel "kvm"|"tcg"|nil
---@field machine "microvm"|"q35"|"pc"|nil
---@field kernel_args string[]|nil

---@class ProviumVmInfo
---@field kernel_release string
---@field arch string
---@field accel string
---@field transport string
---@field machine string
---@field profile string
---@field loaded_as string
---@field boot_ms integer
---@field guest_ready_ms integer
---@field fixture string|nil the fixture the VM was resumed from

---@class ProviumVm: ProviumExecutor
---@field info ProviumVmInfo|nil
---@field profile string
local Vm = {}
---@param opts ProviumBootOptions|nil
function Vm:boot(opts) end
---@return boolean
function Vm:is_booted() end
---@param pattern string|nil Lua pattern
---@return string
function Vm:dmesg(pattern) end
---@param lines integer|nil
---@return string
function Vm:console(lines) end
---@param creds {uid: integer|nil, gid: integer|nil, euid: integer|nil, egid: integer|nil, groups: integer[]|nil, caps: (string|integer)[]|nil, umask: integer|nil, cwd: string|nil, rlimits: table[]|nil, descriptors: "fresh"|"inherit"|nil, session: "own"|"inherit"|nil, catch: (string|integer|table)[]|nil, timer: {after: number, signal: string|integer|nil}|nil}|nil
---@return ProviumWorker
function Vm:spawn(creds) end
---Mounts debugfs, tracefs, securityfs, configfs, bpf, pstore, mqueue, hugetlbfs and
---binfmt_misc; returns mount point -> "mounted", "already mounted" or an errno name.
---@return table<string, string>
function Vm:mount_vfs() end
---Calls `fn` until it returns a true value (returned), or raises after `timeout` seconds.
---@param fn fun(): any
---@param opts {timeout: number|nil, interval: number|nil}|nil defaults 10 s and 0.1 s
---@return any
function Vm:wait_until(fn, opts) end
function Vm:shutdown() end
function Vm:kill() end
---@class ProviumAbiView: ProviumExecutor
---@field abi string
---@field nr table<string, integer> the view's own syscall numbers
---A view of the same executor whose calls use another ABI ("i386": `int $0x80`).
---@param name "x86_64"|"i386"
---@return ProviumAbiView
function Executor:abi(name) end

---@class provium
---@field version string
---@field arch string the guest architecture of the run (`x86_64`, `aarch64`)
---@field errno table<string, integer>
---@field nr table<string, integer> the guest architecture's syscall numbers
---@field nr_x86_64 table<string, integer> x86_64's syscall numbers
---@field nr_aarch64 table<string, integer> arm64's syscall numbers (asm-generic)
---@field nr_i386 table<string, integer> i386's syscall numbers (for `vm:abi("i386")`)
---@field bad_ptr integer an address that is never mapped (for EFAULT)
---@field c table<string, integer> the built-in constants by name (`provium headers constants`)
provium = {}
---The table a compiled spec keeps its saved values in; ready-made values (`unused_pid`,
---`unused_port`, `unused_fd`, `fd_table_size`) are asked of the guest when first read.
---@param vm ProviumVm
---@return table<string, any>
function provium.saved(vm) end
---One ready-made value (`unused_pid`, `unused_port`, `unused_fd`, `fd_table_size`), or nil.
---@param vm ProviumVm
---@param name string
---@return integer|nil
function provium.ready(vm, name) end
---Runs one call with `signals` blocked, in one round trip; its outcome's `raised` lists those
---that were pending after it.
---@param target ProviumVm|ProviumWorker
---@param call table a `vm:call` table
---@param signals integer[]
---@return table
function provium.raising(target, call, signals) end
---Repeats one call until it fails with one of `errnos` (at most `at_most` calls); the outcome
---has `repeats`, the number of calls it took.
---@param target ProviumVm|ProviumWorker
---@param call table a `vm:call` table
---@param errnos string[]
---@param at_most integer
---@return table
function provium.repeating(target, call, errnos, at_most) end
---@param profile string|nil default "minimal"
---@return ProviumVm
function provium.create(profile) end
function provium.shutdown_all() end
---A booted, prepared VM resumed from fixture `name` (fixtures/NAME.lua or [fixture.NAME]).
---@param name string
---@return ProviumVm
function provium.fixture(name) end
---True while the file is only listed (`provium test --list`), without VMs.
---@return boolean
function provium.listing() end
---Sets this file's timeout in seconds (default 300, or `provium test --timeout`).
---@param seconds number
function provium.timeout(seconds) end
---@param fmt string
---@param ... integer|string
---@return string
function provium.pack(fmt, ...) end
---@param fmt string
---@param data string
---@return integer|string ...
function provium.unpack(fmt, data) end
---@param fmt string
---@return integer
function provium.sizeof(fmt) end
---@param s string
---@return string
function provium.cstr(s) end
---@param n integer
---@return string|nil
function provium.strerror(n) end
---Zero-pads `s` to `len` bytes.
---@param s string
---@param len integer
---@return string
function provium.pad(s, len) end
---Writes an integer at an address of the process `target` makes its calls in.
---@param target ProviumVm|ProviumWorker
---@param address integer
---@param type "u8"|"u16"|"u32"|"u64"|"i8"|"i16"|"i32"|"i64"
---@param value integer
function provium.store(target, address, type, value) end

---Checks conditions against a booted VM: nil when met, else the reason (for `skip`).
---@param vm ProviumVm
---@param conditions {kernel: string|nil, arch: string|nil, syscalls: {[1]: string, [2]: integer}[]|nil, root: boolean|nil, config: string|string[]|nil, path: string|string[]|nil}
---@return string|nil
function provium.requires(vm, conditions) end

---The file's VMs may pass to the next file on the same runner thread when it only made
---isolated calls and every test passed: the file vouches that its cases leave nothing behind.
function provium.share_vm() end

---@param name string
---@param fn fun()
function test(name, fn) end
---@param reason string|nil
function skip(reason) end
---@param reason string|nil
function todo(reason) end
---@param expected any
---@param actual any
---@param msg string|nil
function assert_eq(expected, actual, msg) end
---@param unexpected any
---@param actual any
---@param msg string|nil
function assert_ne(unexpected, actual, msg) end
---@param haystack string|ProviumOutput|any[]
---@param needle any
---@param msg string|nil
function assert_contains(haystack, needle, msg) end
---@param ret integer|ProviumOutcome
---@param errno string|string[]|integer
---@param msg string|nil
function assert_errno(ret, errno, msg) end
---@param ret integer|ProviumOutcome
---@param msg string|nil
---@return integer
function assert_ok(ret, msg) end
---Fails unless `cond` is true (a failure, not an error); returns its arguments.
---@generic T
---@param cond T
---@param msg string|nil
---@return T
function assert(cond, msg, ...) end
---Prints into the running test's output (shown with its failure and in reports).
function print(...) end

---@class ProviumComparison
---@field eq integer|nil
---@field ne integer|nil
---@field lt integer|nil
---@field le integer|nil
---@field gt integer|nil
---@field ge integer|nil

---@class ProviumBufferCheck: ProviumComparison
---@field starts_with string|nil
---@field contains string|nil
---@field equals string|nil exactly these bytes, then zeros
---@field field string|nil a field's name, read at `at` as `type` and compared
---@field at integer|nil
---@field type string|nil a provium.pack format (`u32`)

---@class ProviumExpectation
---@field ok boolean|nil ret >= 0
---@field errno string|string[]|nil an errno name, or a list of acceptable ones
---@field raises integer[]|nil signals pending after the call
---@field one_of ProviumExpectation[]|nil any of these
---@field ret ProviumComparison|nil
---@field out table<integer, ProviumBufferCheck>|nil buffers by argument index
---@field died boolean|nil the call ended its executor (`exit_code`, `signal` to be exact)
---@field exit_code integer|nil
---@field signal integer|nil
---@field timed_out boolean|nil the call blocked until its timeout

---Checks an outcome of `vm:call` or `vm:batch` (what compiled specs use).
---@param outcome ProviumOutcome
---@param expectation ProviumExpectation
function expect(outcome, expectation) end
---Whether an outcome meets an expectation (the verdict `expect` uses, without failing), and
---what the call answered (`"EOPNOTSUPP"`, `"ok"`): what a spec's `skip_if:` uses.
---@param outcome ProviumOutcome
---@param expectation ProviumExpectation
---@return boolean met
---@return string answered
function holds(outcome, expectation) end
---Runs `fn`, a known bug: if an assertion fails in it the test is skipped as xfail; if it
---passes the test fails (the bug is fixed: remove the xfail).
---@param reason string
---@param fn fun()
function xfail(reason, fn) end
