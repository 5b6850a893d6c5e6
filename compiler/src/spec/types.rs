//! The spec as written: the types the compiler reads, with unknown keys rejected, and the
//! source of `schemas/spec.schema.json` (generated from these same types, so that the schema
//! and the compiler cannot disagree; a test keeps the committed file current).
//!
//! Values whose shape varies (an argument, an expectation) are read as [`Node`]s, so that every
//! error keeps its line and column (serde's untagged enums would buffer the value and lose
//! it), inside newtypes ([`Integer`], [`Arg`], [`Expect`], …) whose JSON Schema says which
//! shapes `check` accepts.

use super::node::{At, Entries, Node};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use std::borrow::Cow;

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
    /// The spec's cases leave nothing behind that another file could see (each runs isolated,
    /// with its own paths): the next file on the same runner thread that resumes the same VM
    /// may reuse this one instead of resuming another. `provium gen` sets it.
    pub share_vm: Option<At<bool>>,
    /// When the spec applies; otherwise every case is skipped with the reason.
    pub requires: Option<Requires>,
    /// Kernel headers (`linux/openat2.h`) whose constants and structs the spec uses by name.
    #[serde(default)]
    pub headers: Vec<At<String>>,
    /// Named integer constants: a number or an expression over other constants.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, Integer>")]
    pub constants: Entries<Integer>,
    /// Syscall numbers by name, for calls missing from the kernel's table (a module's own).
    #[serde(default)]
    pub syscalls: Entries<At<i64>>,
    /// Struct layouts: a list of `{field: type}`, or `{packed, align, fields}`.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, StructDef>")]
    pub structs: Entries<StructDef>,
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
    pub syscall: Option<Names>,
    /// Whether the case must run as root (true) or as another user (false).
    pub root: Option<At<bool>>,
    /// Kernel configuration the case needs: `CONFIG_KSM` (built in or a module), `CONFIG_X=y`,
    /// `CONFIG_X=m`, `!CONFIG_X`; one or a list. Read from the kernel's config file (beside a
    /// packaged kernel, a build tree's `.config`) or the guest's `/proc/config.gz`.
    #[serde(default)]
    pub config: Option<Names>,
    /// Paths that must exist in the guest (`/sys/kernel/mm/ksm`); one or a list.
    #[serde(default)]
    pub path: Option<Names>,
    /// File systems the kernel must know (`ext4`, `tmpfs`: listed in the guest's
    /// `/proc/filesystems`); one or a list. LTP's `.needs_filesystems`.
    #[serde(default)]
    pub filesystem: Option<Names>,
    /// Kernel modules or drivers that must be present (`loop`: `/sys/module/loop` in the
    /// guest, loaded or built in); one or a list. LTP's `.needs_drivers`.
    #[serde(default)]
    pub module: Option<Names>,
}

/// One test case: a syscall with its expectation, steps, or Lua.
///
/// The call fields (`syscall`, `args`, `expect`, `save`, `as`, `timeout`) are repeated in
/// [`Step`] on purpose: serde cannot combine `flatten` with `deny_unknown_fields`, and a
/// misspelt key must be an error with a suggestion, not silently ignored.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["syscall"]},
    {"required": ["steps"]},
    {"required": ["lua"]},
]))]
pub struct Case {
    /// The test's name; with `table`/`matrix`, a template (`"{{ call }} is {{ err }}"`).
    pub name: At<String>,
    /// Syscall name (`openat`) or number.
    pub syscall: Option<Syscall>,
    /// Up to six arguments.
    #[serde(default)]
    #[schemars(length(max = 6))]
    pub args: Vec<Arg>,
    /// What the call must return.
    pub expect: Option<Expect>,
    /// Names for the return value (`save: fd`) or for values read from buffers.
    pub save: Option<Save>,
    /// Run the case in a worker with these credentials.
    #[serde(rename = "as")]
    pub as_: Option<Process>,
    /// Conditions of the case: unmet, it is skipped with the reason.
    pub requires: Option<Requires>,
    /// A known bug: the case is skipped with this reason when it fails, and fails when it
    /// passes.
    pub xfail: Option<At<String>>,
    /// Do not run the case.
    pub skip: Option<At<String>>,
    /// Seconds the call may block before it is killed.
    pub timeout: Option<At<f64>>,
    /// Repeat the call until it fails with an errno (`{until: EMFILE, at_most: 4096}`), then
    /// check `expect` against that answer; in a process of its own.
    #[serde(rename = "repeat")]
    pub repeat: Option<Repeat>,
    /// Rows of values, each becoming its own case; `{{ column }}` in strings is replaced.
    pub table: Option<Vec<Row>>,
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
#[schemars(extend("oneOf" = [
    {"required": ["syscall"]},
    {"required": ["exec"]},
    {"required": ["lua"]},
]))]
pub struct Step {
    /// A label for messages.
    pub name: Option<At<String>>,
    /// Syscall name (`openat`) or number.
    pub syscall: Option<Syscall>,
    /// Up to six arguments.
    #[serde(default)]
    #[schemars(length(max = 6))]
    pub args: Vec<Arg>,
    /// Default: `ok` in setup and teardown, no check in a case's steps.
    pub expect: Option<Expect>,
    /// Names for the return value (`save: fd`) or for values read from buffers.
    pub save: Option<Save>,
    /// Run the step in a worker with these credentials.
    #[serde(rename = "as")]
    pub as_: Option<Process>,
    /// Seconds the call may block before it is killed.
    pub timeout: Option<At<f64>>,
    /// A shell command in the guest (busybox); it must exit 0.
    pub exec: Option<At<String>>,
    /// Lua code with `vm` and saved values (`saved.fd`) in scope.
    pub lua: Option<At<String>>,
}

// ---- values whose shape varies: read as nodes, described for editors ------------------------

/// Declares a newtype over [`Node`]: what `check` reads, with the JSON Schema of the shapes it
/// accepts.
macro_rules! shaped {
    ($(#[$doc:meta])* $name:ident, |$g:ident| $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Node);

        impl std::ops::Deref for $name {
            type Target = Node;
            fn deref(&self) -> &Node {
                &self.0
            }
        }

        impl From<Node> for $name {
            fn from(n: Node) -> $name {
                $name(n)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema($g: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

shaped!(
    /// An integer: a number, an expression over constants and saved values (`"O_CREAT|O_RDWR"`,
    /// `"$fd + 1"`), `{sizeof: STRUCT}`, or `{bad_ptr: true}` (an address that is never mapped).
    Integer,
    |_g| json_schema!({
        "description": "A number, an expression (\"O_CREAT|O_RDWR\", \"$fd + 1\"), {sizeof: STRUCT} or {bad_ptr: true}.",
        "anyOf": [
            {"type": "integer"},
            {"type": "string"},
            {"type": "object", "properties": {"sizeof": {"type": "string"}}, "required": ["sizeof"], "additionalProperties": false},
            {"type": "object", "properties": {"bad_ptr": {}}, "required": ["bad_ptr"], "additionalProperties": false}
        ]
    })
);

shaped!(
    /// A syscall: a name (`openat`) or a number.
    Syscall,
    |_g| json_schema!({
        "description": "A syscall name (openat) or number.",
        "type": ["string", "integer"]
    })
);

shaped!(
    /// One name or a list of names (`requires: {syscall: [openat2, close_range]}`).
    Names,
    |_g| json_schema!({
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
    })
);

shaped!(
    /// A call's argument: an integer (see [`Integer`]), or guest memory whose address is
    /// passed: exactly one of `cstr`, `str`, `bytes`, `out` or `struct`, with `set` for a
    /// struct's fields and `len` for a size larger than the contents.
    Arg,
    |g| {
        let int = g.subschema_for::<Integer>();
        json_schema!({
            "anyOf": [
                int,
                {
                    "type": "object",
                    "description": "Guest memory whose address is passed.",
                    "properties": {
                        "cstr": {"description": "A NUL-terminated string.", "type": ["string", "integer"]},
                        "str": {"description": "Bytes as they are, no NUL added.", "type": ["string", "integer"]},
                        "bytes": {"description": "Hex bytes (\"de ad be ef\").", "type": "string"},
                        "out": {"description": "A zeroed buffer of this size, returned after the call.", "type": ["integer", "string"]},
                        "struct": {"description": "A struct laid out from `structs` or a header.", "type": "string"},
                        "set": {"description": "Field values of the struct (nested structs, arrays and pointers too).", "type": "object"},
                        "len": {"description": "The buffer's size when larger than its contents.", "type": ["integer", "string"]}
                    },
                    "additionalProperties": false,
                    "oneOf": [
                        {"required": ["cstr"]},
                        {"required": ["str"]},
                        {"required": ["bytes"]},
                        {"required": ["out"]},
                        {"required": ["struct"]}
                    ]
                }
            ]
        })
    }
);

shaped!(
    /// What a call must return: an errno name (`EBADF`), `ok`, `any`, `died`, `timed_out`, a
    /// list of errno names (any of them), a return value, a map of checks, or `{one_of: [...]}`.
    Expect,
    |_g| json_schema!({
        "anyOf": [
            {"type": "string", "description": "An errno name, ok (ret >= 0), any, died or timed_out."},
            {"type": "array", "items": {"type": "string"}, "description": "Any of these errnos."},
            {"type": "integer", "description": "The return value."},
            {
                "type": "object",
                "properties": {
                    "ret": {"description": "A value, or a comparison {eq, ne, lt, le, gt, ge}."},
                    "ok": {"type": "boolean"},
                    "errno": {"description": "An errno name or a list of them.", "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "out": {"description": "Checks on output buffers, by argument index.", "type": "object"},
                    "died": {"description": "The call ends the executor: true, or {exit_code} / {signal}."},
                    "timed_out": {"description": "The call blocks past its timeout.", "type": "boolean"},
                    "one_of": {"description": "Any of these expectations (an answer that differs from run to run).", "type": "array", "minItems": 1, "items": {"$ref": "#/definitions/Expect"}},
                    "raises": {"description": "Signals the call raises (run with them blocked, pending after it): `SIGPIPE` or a list.", "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
                },
                "additionalProperties": false
            }
        ]
    })
);

shaped!(
    /// A name for the return value (`save: fd`), or names for values: `{fd: ret}`,
    /// `{len: {out: 1, at: 0, type: u32}}`, `{mode: {out: 1, struct: stat, field: st_mode}}`.
    Save,
    |_g| json_schema!({
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "description": "The names a `lua:` block sets in `saved`."},
            {"type": "object", "additionalProperties": {
                "anyOf": [
                    {"const": "ret"},
                    {"type": "object", "properties": {
                        "out": {"type": "integer"}, "at": {"type": ["integer", "string"]}, "type": {"type": "string"},
                        "struct": {"type": "string"}, "field": {"type": "string"}
                    }, "required": ["out"], "additionalProperties": false}
                ]
            }}
        ]
    })
);

shaped!(
    /// The process a case (or step) runs in: credentials (`uid`, `gid`, a different effective
    /// `euid`/`egid`, `groups`, `caps`) and settings (`umask`, `cwd`, `rlimits`). Any value may
    /// be a template (`uid: "{{ uid }}"`).
    Process,
    |_g| json_schema!({
        "type": "object",
        "properties": {
            "uid": {"description": "The real, saved (and effective) user id.", "type": ["integer", "string"]},
            "gid": {"description": "The group id; defaults to `uid`.", "type": ["integer", "string"]},
            "euid": {"description": "A different effective user id (real stays `uid`).", "type": ["integer", "string"]},
            "egid": {"description": "A different effective group id.", "type": ["integer", "string"]},
            "groups": {"description": "Supplementary groups.", "type": "array", "items": {"type": ["integer", "string"]}},
            "caps": {"description": "Capabilities kept, by name (`CAP_NET_ADMIN`).", "type": "array", "items": {"type": "string"}},
            "umask": {"description": "The file mode creation mask (`0o077`).", "type": ["integer", "string"]},
            "cwd": {"description": "The working directory.", "type": "string"},
            "rlimits": {"description": "Limits: `{RLIMIT_NOFILE: [soft, hard]}` or `{RLIMIT_FSIZE: 4096}` (both); `unlimited` for RLIM_INFINITY.", "type": "object"}
        },
        "additionalProperties": false
    })
);

shaped!(
    /// `{until: EMFILE, at_most: 4096}`: the errno (or a list) that ends the repetition, and
    /// the most calls to make before the case fails.
    Repeat,
    |_g| json_schema!({
        "type": "object",
        "properties": {
            "until": {"description": "The errno (or a list) that ends the repetition.", "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "at_most": {"description": "The most calls to make (at most 1,000,000).", "type": ["integer", "string"]}
        },
        "required": ["until", "at_most"],
        "additionalProperties": false
    })
);

shaped!(
    /// A struct layout: a list of `- field: type` (`u32`, `i64`, `char[8]`, `u8[16]`, `ptr`,
    /// another struct), or `{packed, align, fields}`.
    StructDef,
    |_g| {
        let fields = json_schema!({
            "type": "array",
            "items": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": {"type": "string"}}
        });
        json_schema!({
            "anyOf": [
                fields,
                {"type": "object", "properties": {
                    "packed": {"type": "boolean"},
                    "align": {"type": "integer", "minimum": 1},
                    "fields": fields
                }, "required": ["fields"], "additionalProperties": false}
            ]
        })
    }
);

shaped!(
    /// A table row: a map of column values.
    Row,
    |_g| json_schema!({"type": "object"})
);
