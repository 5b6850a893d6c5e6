//! The Lua API without a VM: test functions, assertions, pack/unpack, errors and locations.

use super::*;
use crate::event::Status;
use crate::machine::profile::Profiles;

fn run(code: &str) -> FileReport {
    run_chunk(
        SessionConfig::new("t.lua", Settings::new(Profiles::builtin())),
        "t.lua",
        code,
    )
}

fn statuses(r: &FileReport) -> Vec<(&str, &'static str)> {
    r.tests
        .iter()
        .map(|t| (t.name.as_str(), t.status.label()))
        .collect()
}

fn problem(s: &Status) -> &Problem {
    match s {
        Status::Failed(p) | Status::Errored(p) => p,
        other => panic!("expected a problem, got {other:?}"),
    }
}

#[test]
fn each_test_runs_and_failures_do_not_stop_the_next() {
    let r = run(r#"
test("passes", function() assert(1 + 1 == 2) end)
test("fails", function() assert_eq(-38, -22, "expected ENOSYS") end)
test("errors", function() local t = nil; return t.x end)
test("skips", function() skip("not on this kernel") end)
test("todo", function() todo("write me") end)
test("passes again", function() end)
"#);
    assert_eq!(
        statuses(&r),
        [
            ("passes", "PASS"),
            ("fails", "FAIL"),
            ("errors", "ERROR"),
            ("skips", "SKIP"),
            ("todo", "TODO"),
            ("passes again", "PASS")
        ]
    );
    let fail = problem(&r.tests[1].status);
    assert_eq!(
        fail.message,
        "expected ENOSYS: expected -38 (ENOSYS), got -22 (EINVAL)"
    );
    assert_eq!(fail.location.as_ref().unwrap().to_string(), "t.lua:3");
    assert_eq!(r.tests[1].location.line, 3, "the test's own line");
    let err = problem(&r.tests[2].status);
    assert_eq!(err.location.as_ref().unwrap().to_string(), "t.lua:4");
    assert!(err.message.contains("attempt to index"), "{}", err.message);
    assert!(err.detail.contains("t.lua:4"), "traceback: {}", err.detail);
    match &r.tests[4].status {
        Status::Skipped { reason, .. } => assert_eq!(reason, "write me"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_names_are_made_unique() {
    let r = run(r#"
for i = 1, 3 do test("same", function() end) end
"#);
    assert_eq!(
        statuses(&r).iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["same", "same (2)", "same (3)"]
    );
}

#[test]
fn a_syntax_error_is_a_file_error_with_its_line() {
    let r = run("test('x', function()\n  local = 1\nend)\n");
    let p = r.file_error.expect("file error");
    assert!(p.message.starts_with("syntax error"), "{}", p.message);
    assert_eq!(p.location.unwrap().to_string(), "t.lua:2");
}

#[test]
fn an_error_outside_tests_is_a_file_error_after_the_tests_so_far() {
    let r = run("test('first', function() end)\nerror('boom')\ntest('never', function() end)\n");
    assert_eq!(statuses(&r), [("first", "PASS")]);
    let p = r.file_error.unwrap();
    assert_eq!(p.message, "boom");
    assert_eq!(p.location.unwrap().line, 2);
}

#[test]
fn vm_methods_before_boot_say_so_at_the_callers_line() {
    let r = run(
        "local vm = provium.create('minimal')\n\ntest('t', function()\n  vm:syscall(39)\nend)\n",
    );
    let p = problem(&r.tests[0].status);
    assert_eq!(
        p.message,
        "vm:syscall: the VM is not booted; call vm:boot() first"
    );
    assert_eq!(p.location.as_ref().unwrap().to_string(), "t.lua:4");
}

#[test]
fn unknown_profile_suggests_one() {
    let r = run("provium.create('minmal')");
    let p = r.file_error.unwrap();
    assert!(
        p.message.contains("did you mean `minimal`"),
        "{}",
        p.message
    );
    assert_eq!(p.location.unwrap().line, 1);
}

#[test]
fn pack_unpack_errno_and_nr() {
    let r = run(r#"
test("pack", function()
  local s = provium.pack("u32 u32", 1, 42)
  assert_eq(8, #s)
  local a, b = provium.unpack("u32 u32", s)
  assert_eq(1, a); assert_eq(42, b)
  local x, y = provium.unpack("i32 x4 z8", provium.pack("i32 x4 z8", -5, "abc"))
  assert_eq(-5, x); assert_eq("abc", y)
  assert_eq(16, provium.sizeof("u64 u32 x4"))
end)
test("tables", function()
  assert_eq(22, provium.errno.EINVAL)
  assert_eq("EINVAL", provium.strerror(-22))
  assert_eq("EAGAIN", provium.strerror(11))
  assert_eq(39, provium.nr.getpid)
  assert_eq(437, provium.nr.openat2)
  assert_eq("a\0", provium.cstr("a"))
end)
test("bad pack", function() provium.pack("u8", 300) end)
"#);
    assert_eq!(statuses(&r)[..2], [("pack", "PASS"), ("tables", "PASS")]);
    let p = problem(&r.tests[2].status);
    assert!(p.message.contains("out of range for u8"), "{}", p.message);
}

#[test]
fn assertion_messages() {
    let r = run(r#"
test("errno", function() assert_errno(-22, "EPERM") end)
test("errno list", function() assert_errno(-22, {"EINVAL", "EPERM"}) end)
test("errno table", function() assert_errno({ret = -2}, "ENOENT") end)
test("unknown errno", function() assert_errno(-22, "EINVLA") end)
test("contains", function() assert_contains("hello world", "wrld") end)
test("list contains", function() assert_contains({1, 2, 3}, 2) end)
test("ok", function() assert_ok(-13) end)
test("ne", function() assert_ne(1, 1) end)
test("strings", function() assert_eq("a\nb", "a\tb") end)
test("tables", function() assert_eq({1, {2}}, {1, {2}}) end)
test("assert message", function() assert(false, "custom") end)
"#);
    let labels: Vec<_> = statuses(&r).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        labels,
        ["FAIL", "PASS", "PASS", "ERROR", "FAIL", "PASS", "FAIL", "FAIL", "FAIL", "PASS", "FAIL"]
    );
    let msg = |i: usize| problem(&r.tests[i].status).message.clone();
    assert_eq!(msg(0), "expected -1 (EPERM), got -22 (EINVAL)");
    assert!(msg(3).contains("did you mean `EINVAL`"), "{}", msg(3));
    assert_eq!(msg(4), "\"hello world\" does not contain \"wrld\"");
    assert_eq!(msg(6), "expected success (>= 0), got -13 (EACCES)");
    assert_eq!(msg(8), "expected \"a\\nb\", got \"a\\tb\"");
    assert_eq!(msg(10), "custom");
}

#[test]
fn print_is_captured_per_test() {
    let r = run("print('file level')\ntest('t', function() print('in test', 42) end)\n");
    assert_eq!(r.tests[0].output, "in test\t42\n");
    assert_eq!(r.output, "file level\n");
}

#[test]
fn skip_outside_a_test_skips_the_file() {
    let r = run("skip('needs a newer kernel')\ntest('never', function() end)\n");
    assert_eq!(statuses(&r), [("(file)", "SKIP")]);
    assert!(r.file_error.is_none());
}

#[test]
fn nested_tests_are_an_error() {
    let r = run("test('outer', function() test('inner', function() end) end)\n");
    let p = problem(&r.tests[0].status);
    assert!(p.message.contains("inside another test"), "{}", p.message);
}

#[test]
fn wrong_argument_types_are_reported() {
    let r = run(r#"
local vm = provium.create()
test("nr", function() vm:syscall("x") end)
test("boot option", function() vm:boot{memroy = "1G"} end)
test("bufs", function() vm:syscall_bufs(0, {[7] = "x"}) end)
"#);
    let msg = |i: usize| problem(&r.tests[i].status).message.clone();
    assert!(
        msg(0).contains("syscall number: expected an integer, got string"),
        "{}",
        msg(0)
    );
    assert!(
        msg(1).contains("unknown option `memroy`, did you mean `memory`?"),
        "{}",
        msg(1)
    );
    assert!(
        msg(2).contains("buffer index 7 is out of range"),
        "{}",
        msg(2)
    );
}

#[test]
fn binary_buffers_in_the_message_position_are_ignored() {
    // As in `assert_eq(n, vm:syscall_buf(...))`, where Lua passes the buffer as the message.
    let r = run("test('t', function() assert_eq(1, 2, '\\1\\0\\0\\0') end)\n");
    assert_eq!(problem(&r.tests[0].status).message, "expected 1, got 2");
}

#[test]
fn the_type_stubs_cover_the_api() {
    let stubs = include_str!("../../lua-types/provium.lua");
    let r = run(r#"
local keys = {}
for k in pairs(provium) do keys[#keys + 1] = k end
table.sort(keys)
print(table.concat(keys, " "))
"#);
    for key in r.output.split_whitespace() {
        assert!(
            stubs.contains(&format!("function provium.{key}("))
                || stubs.contains(&format!("---@field {key} ")),
            "provium.{key} is missing from lua-types/provium.lua"
        );
    }
    for method in [
        "syscall",
        "syscall_buf",
        "syscall_bufs",
        "syscall_ptr",
        "ioctl",
        "ioctl_buf",
        "call",
        "batch",
        "exec",
        "read_file",
        "write_file",
        "boot",
        "is_booted",
        "dmesg",
        "console",
        "spawn",
        "shutdown",
        "kill",
        "background",
        "job_wait",
        "job_kill",
        "json",
        "mount_vfs",
        "wait_until",
    ] {
        assert!(
            stubs.contains(&format!(":{method}(")),
            "method {method} missing from the stubs"
        );
    }
    for global in [
        "test",
        "skip",
        "todo",
        "assert_eq",
        "assert_ne",
        "assert_contains",
        "assert_errno",
        "assert_ok",
    ] {
        assert!(
            stubs.contains(&format!("function {global}(")),
            "{global} missing from the stubs"
        );
    }
}

/// The names a script can reach: globals the API adds to plain Lua, and `provium.*` fields.
fn registered_names() -> (Vec<String>, Vec<String>) {
    let plain = mlua::Lua::new();
    let lua = mlua::Lua::new();
    lua.set_app_data(std::rc::Rc::new(Session::new(SessionConfig::new(
        "t.lua",
        Settings::new(Profiles::builtin()),
    ))));
    api::install(&lua).unwrap();
    let mut globals = Vec::new();
    for pair in lua.globals().pairs::<String, mlua::Value>() {
        let (name, _) = pair.unwrap();
        let stock = plain.globals().contains_key(name.as_str()).unwrap();
        // `print` and `assert` are replaced, not added, but they are Provium's too.
        if !stock || name == "assert" || name == "print" {
            globals.push(name);
        }
    }
    let module: mlua::Table = lua.globals().get("provium").unwrap();
    let mut fields: Vec<String> = module
        .pairs::<String, mlua::Value>()
        .map(|p| p.unwrap().0)
        .collect();
    globals.sort();
    fields.sort();
    (globals, fields)
}

/// The editor stubs (`runtime/lua-types/provium.lua`) and the manual (`docs/lua-api.md`)
/// declare every global and every `provium.*` field the runtime registers, and nothing else.
#[test]
fn stubs_and_manual_cover_every_registered_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let stubs = std::fs::read_to_string(root.join("lua-types/provium.lua")).unwrap();
    let manual = std::fs::read_to_string(root.join("../docs/lua-api.md")).unwrap();
    let (globals, fields) = registered_names();
    let mut stub_globals: Vec<String> = Vec::new();
    let mut stub_fields: Vec<String> = Vec::new();
    let mut in_provium_class = false;
    for line in stubs.lines() {
        if let Some(rest) = line.strip_prefix("function ") {
            let name = rest.split('(').next().unwrap_or("");
            match name.strip_prefix("provium.") {
                Some(f) => stub_fields.push(f.to_string()),
                None if !name.contains([':', '.']) => stub_globals.push(name.to_string()),
                None => {}
            }
        } else if line.starts_with("---@class ") {
            in_provium_class = line == "---@class provium";
        } else if let Some(f) = line.strip_prefix("---@field ").filter(|_| in_provium_class) {
            stub_fields.push(f.split_whitespace().next().unwrap_or("").to_string());
        } else if let Some(name) = line
            .strip_suffix(" = {}")
            .filter(|n| !n.starts_with("local "))
        {
            stub_globals.push(name.to_string());
        }
    }
    stub_globals.sort();
    stub_fields.sort();
    assert_eq!(
        globals, stub_globals,
        "globals registered vs declared in the stubs"
    );
    assert_eq!(
        fields, stub_fields,
        "provium.* registered vs declared in the stubs"
    );
    for g in globals.iter().filter(|g| *g != "provium") {
        assert!(
            manual.contains(&format!("`{g}(")) || manual.contains(&format!("`{g}`")),
            "docs/lua-api.md does not describe `{g}`"
        );
    }
    for f in &fields {
        assert!(
            manual.contains(&format!("provium.{f}")),
            "docs/lua-api.md does not describe `provium.{f}`"
        );
    }
}
