//! The spec as written: serde types with unknown keys rejected, and the source of
//! `schemas/spec.schema.json`. Values whose shape varies are [`Node`]s, checked in `check`.

use super::node::{At, Entries, Node};
use schemars::JsonSchema;
use serde::Deserialize;

/// A Provium spec: syscalls, structs and expected results, compiled to a Lua test.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Provium spec")]
pub struct Spec {
    /// The suite's name in reports (default: the file's path).
    pub suite: Option<At<String>>,
    /// The profile to boot (default `minimal`).
    pub profile: Option<At<String>>,
    /// Resume this fixture (a booted, prepared VM) instead of booting.
    pub fixture: Option<At<String>>,
    /// Seconds the whole file may run (default 300).
    pub timeout: Option<At<f64>>,
    /// When the spec applies; otherwise every case is skipped with the reason.
    pub requires: Option<Requires>,
    /// Kernel headers (`linux/openat2.h`) whose constants and structs the spec uses by name.
    #[serde(default)]
    pub headers: Vec<At<String>>,
    /// Named integer constants: a number or an expression over other constants.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, IntegerSchema>")]
    pub constants: Entries<Node>,
    /// Syscall numbers by name, for calls missing from the kernel's table (a module's own).
    #[serde(default)]
    pub syscalls: Entries<At<i64>>,
    /// Struct layouts: a list of `{field: type}`, or `{packed, align, fields}`.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, StructSchema>")]
    pub structs: Entries<Node>,
    /// Steps run once before the cases; a failing step stops the file.
    #[serde(default)]
    pub setup: Vec<At<Step>>,
    /// Steps run once after the cases, whatever happened.
    #[serde(default)]
    pub teardown: Vec<At<Step>>,
    /// The test cases, run in order.
    #[serde(default)]
    pub cases: Vec<At<Case>>,
}

/// Conditions for a spec or a case. Unmet: skipped, with the reason.
#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Kernel version range: `">=5.6"`, `">=5.6, <6.2"`.
    pub kernel: Option<At<String>>,
    /// Guest architecture (`x86_64`).
    pub arch: Option<At<String>>,
    /// Syscalls that must exist (not `ENOSYS`).
    #[serde(default)]
    #[schemars(with = "OneOrManyStrings")]
    pub syscall: Option<Node>,
    /// Whether the case must run as root (true) or as another user (false).
    pub root: Option<At<bool>>,
}

/// Credentials for a case run in a worker.
#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Creds {
    pub uid: Option<At<u32>>,
    /// Defaults to `uid`.
    pub gid: Option<At<u32>>,
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Capabilities kept, by name (`CAP_NET_ADMIN`).
    #[serde(default)]
    pub caps: Vec<At<String>>,
}

/// One test case: a syscall with its expectation, steps, or Lua.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The test's name; with `table`/`matrix`, a template (`"{{ call }} is {{ err }}"`).
    pub name: At<String>,
    /// Syscall name (`openat`) or number.
    #[schemars(with = "SyscallSchema")]
    pub syscall: Option<Node>,
    /// Up to six arguments.
    #[serde(default)]
    #[schemars(with = "Vec<ArgSchema>")]
    pub args: Vec<Node>,
    /// What the call must return.
    #[schemars(with = "Option<ExpectSchema>")]
    pub expect: Option<Node>,
    /// Names for the return value (`save: fd`) or for values read from buffers.
    #[schemars(with = "Option<SaveSchema>")]
    pub save: Option<Node>,
    /// Run the case in a worker with these credentials.
    #[serde(rename = "as")]
    pub as_: Option<Creds>,
    pub requires: Option<Requires>,
    /// A known bug: the case is skipped with this reason when it fails, and fails when it
    /// passes.
    pub xfail: Option<At<String>>,
    /// Do not run the case.
    pub skip: Option<At<String>>,
    /// Seconds the call may block before it is killed.
    pub timeout: Option<At<f64>>,
    /// Rows of values, each becoming its own case; `{{ column }}` in strings is replaced.
    #[schemars(with = "Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>")]
    pub table: Option<Vec<Node>>,
    /// Lists of values whose cartesian product becomes the cases.
    #[schemars(with = "Option<std::collections::BTreeMap<String, Vec<serde_json::Value>>>")]
    pub matrix: Option<Entries<Vec<Node>>>,
    /// Several calls in one case, in order.
    pub steps: Option<Vec<At<Step>>>,
    /// Lua code with `vm` and saved values (`saved.fd`) in scope.
    pub lua: Option<At<String>>,
}

/// One step of `setup`, `teardown` or a case's `steps`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A label for messages.
    pub name: Option<At<String>>,
    #[schemars(with = "SyscallSchema")]
    pub syscall: Option<Node>,
    #[serde(default)]
    #[schemars(with = "Vec<ArgSchema>")]
    pub args: Vec<Node>,
    /// Default: `ok` in setup and teardown, no check in a case's steps.
    #[schemars(with = "Option<ExpectSchema>")]
    pub expect: Option<Node>,
    #[schemars(with = "Option<SaveSchema>")]
    pub save: Option<Node>,
    #[serde(rename = "as")]
    pub as_: Option<Creds>,
    pub timeout: Option<At<f64>>,
    /// A shell command in the guest (busybox); it must exit 0.
    pub exec: Option<At<String>>,
    /// Lua code with `vm` and saved values (`saved.fd`) in scope.
    pub lua: Option<At<String>>,
}

// ---- schema-only types: what the hand-checked fields accept, for editors ---------------------

/// An integer: a number, or an expression (`"O_CREAT|O_RDWR"`, `"$fd + 1"`).
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum IntegerSchema {
    Number(i64),
    Expression(String),
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum SyscallSchema {
    Name(String),
    Number(i64),
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum OneOrManyStrings {
    One(String),
    Many(Vec<String>),
}

/// A field type (`u32`, `i64`, `char[8]`, `u8[16]`, `ptr`, another struct's name), or a
/// pointer field `{ptr: BUFFER}`.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum FieldTypeSchema {
    Type(String),
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum StructSchema {
    /// `- name: type` entries, laid out as C does.
    Fields(Vec<std::collections::BTreeMap<String, FieldTypeSchema>>),
    Full {
        #[serde(default)]
        packed: bool,
        align: Option<u32>,
        fields: Vec<std::collections::BTreeMap<String, FieldTypeSchema>>,
    },
}

/// An argument: an integer or expression, a saved value (`$fd`), or a buffer.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum ArgSchema {
    Integer(IntegerSchema),
    Buffer(BufferSchema),
}

/// Guest memory whose address is passed.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct BufferSchema {
    /// A NUL-terminated string.
    cstr: Option<String>,
    /// Bytes as it is, no NUL added.
    str: Option<String>,
    /// Hex bytes (`"de ad be ef"`).
    bytes: Option<String>,
    /// A zeroed buffer of this size, returned after the call.
    out: Option<IntegerSchema>,
    /// A struct laid out from `structs` or a header.
    #[serde(rename = "struct")]
    struct_: Option<String>,
    /// Field values of the struct (nested structs, arrays and pointers too).
    set: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// The size of a struct, as an integer argument.
    sizeof: Option<String>,
    /// An address guaranteed unmapped, for EFAULT.
    bad_ptr: Option<()>,
    /// The buffer's size when larger than its contents.
    len: Option<IntegerSchema>,
}

/// An errno name, a list of errno names (any of them), `ok` (ret >= 0), a number, or a map.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum ExpectSchema {
    Errno(String),
    AnyErrno(Vec<String>),
    Ret(i64),
    Full(FullExpectSchema),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FullExpectSchema {
    /// A value, or a comparison `{eq, ne, lt, le, gt, ge}`.
    ret: Option<serde_json::Value>,
    /// An errno name or a list of them.
    errno: Option<OneOrManyStrings>,
    /// Checks on output buffers, by argument index.
    out: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// The call ends the executor (`true`, or `{exit_code}` / `{signal}`).
    died: Option<serde_json::Value>,
    /// The call blocks past its timeout.
    timed_out: Option<bool>,
}

/// A name for the return value, or `{name: ret | {out: N, ...}}`.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum SaveSchema {
    Ret(String),
    Many(std::collections::BTreeMap<String, serde_json::Value>),
}
