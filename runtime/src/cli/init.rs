//! `provium init`: a starter project in which editors complete specs and Lua, and whose first
//! `provium test` passes.

use super::project;
use crate::report::style::{paint, DIM, OK};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to set up (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

const PROVIUM_TOML: &str = r#"# Provium's configuration: profiles (which kernel to boot, and how) and fixtures.
# The built-in `minimal` profile needs nothing here; see docs/profiles.md for every key.
#
# [profile.big]
# memory = "1G"
# cpus = 2
"#;

const FIRST_SPEC: &str = r#"# yaml-language-server: $schema=../.provium/spec.schema.json
# A first spec: each case is one syscall and what the kernel must answer.
suite: first spec
cases:
  - name: "close({{ fd }}) is EBADF"
    table:
      - { fd: -1 }
      - { fd: 9999 }
    syscall: close
    args: ["{{ fd }}"]
    expect: EBADF

  - name: openat of a missing file is ENOENT
    syscall: openat
    args: [AT_FDCWD, { cstr: /no/such/file }, O_RDONLY]
    expect: ENOENT

  - name: a descriptor closed twice is EBADF the second time
    steps:
      - { syscall: dup, args: [0], save: fd, expect: ok }
      - { syscall: close, args: [$fd], expect: 0 }
      - { syscall: close, args: [$fd], expect: EBADF }
"#;

const FIRST_LUA: &str = r#"-- A first Lua test: boot a VM, make raw syscalls, check what the kernel answers.
local vm = provium.create("minimal")
vm:boot()

test("getpid is positive", function()
  assert(vm:syscall(provium.nr.getpid) > 0)
end)

test("a pipe carries bytes", function()
  local ret, fds = vm:syscall_buf(provium.nr.pipe2, 0, 8, 0, 0)
  assert_eq(0, ret)
  local rfd, wfd = provium.unpack("i32 i32", fds)
  assert_eq(5, vm:syscall_buf(provium.nr.write, 1, "hello", wfd, 0, 5))
  local n, data = vm:syscall_buf(provium.nr.read, 1, 5, rfd, 0, 5)
  assert_eq("hello", data:sub(1, n))
end)
"#;

const LUARC: &str = r#"{
  "$schema": "https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json",
  "runtime.version": "Lua 5.4",
  "workspace.library": [".provium/lua"],
  "workspace.checkThirdParty": false
}
"#;

pub fn run(args: Args) -> Result<u8> {
    let root = &args.dir;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let mut out = anstream::stdout();
    let files = [
        ("provium.toml", PROVIUM_TOML),
        ("specs/first.yaml", FIRST_SPEC),
        ("tests/first.lua", FIRST_LUA),
        (".luarc.json", LUARC),
    ];
    for (name, text) in files {
        let path = root.join(name);
        if path.exists() {
            writeln!(
                out,
                "{} {} {}",
                paint(DIM, "   kept"),
                path.display(),
                paint(DIM, "(exists)")
            )?;
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "{} {}", paint(OK, "created"), path.display())?;
    }
    for path in project::write_editor_files(root)? {
        writeln!(out, "{} {}", paint(OK, "created"), path.display())?;
    }
    let shown = if root == std::path::Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", root.display())
    };
    writeln!(
        out,
        "\nnext: {shown}provium test      (editors: YAML schema and Lua stubs are in .provium/)"
    )?;
    Ok(super::EXIT_OK)
}
