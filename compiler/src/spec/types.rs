//! The spec as written: the types the compiler reads, with unknown keys rejected, and the
//! source of `schemas/spec.schema.json` (generated from these same types, so that the schema
//! and the compiler cannot disagree; a test keeps the committed file current).
//!
//! Values whose shape varies (an argument, an expectation) are read as [`Node`]s, so that every
//! error keeps its line and column (serde's untagged enums would buffer the value and lose
//! it), inside newtypes ([`Integer`], [`Arg`], [`Expect`], …) whose JSON Schema says which
//! shapes `check` accepts.

use super::node::{At, Entries, Node};
use schemars::{JsonSchema, Schema, SchemaGenerator};
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
    /// The system call ABIs the spec is written for (`i386`, or `[x86_64, i386]`, `aarch64`):
    /// a run without `--abi` makes its calls under the first; a run under another skips it.
    pub abi: Option<Names>,
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

/// Declares a spec struct that runs a call (a case, a step): its own fields, then the fields of
/// the call they share, declared once here.
macro_rules! runs_a_call {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Syscall name (`openat`) or number.
            pub syscall: Option<Syscall>,
            /// Up to six arguments.
            #[serde(default)]
            #[schemars(length(max = 6))]
            pub args: Vec<Arg>,
            /// What the call must return. In setup and teardown `ok` when not said; in a
            /// case's steps, no check when not said.
            pub expect: Option<Expect>,
            /// Names for the return value (`save: fd`) or for values read from buffers.
            pub save: Option<Save>,
            /// Run it in a worker with these credentials.
            #[serde(rename = "as")]
            pub as_: Option<Process>,
            /// Seconds the call may block before it is killed.
            pub timeout: Option<At<f64>>,
            /// Skip the case when the call's answer meets this (an errno, a list of them, or
            /// any expectation): the kernel or file system cannot do it (LTP's TCONF).
            pub skip_if: Option<Expect>,
            /// Lua code with `vm` and saved values (`saved.fd`) in scope.
            pub lua: Option<At<String>>,
        }
    };
}

runs_a_call! {
    /// One test case: a syscall with its expectation, steps, or Lua. Its call fields are
    /// [`Step`]'s, declared once by `runs_a_call!` (serde cannot combine `flatten` with
    /// `deny_unknown_fields`, and a misspelt key must be an error with a suggestion).
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
        /// Conditions of the case: unmet, it is skipped with the reason.
        pub requires: Option<Requires>,
        /// A known bug: the case is skipped with this reason when it fails, and fails when it
        /// passes.
        pub xfail: Option<At<String>>,
        /// Do not run the case.
        pub skip: Option<At<String>>,
        /// Repeat the call until it fails with an errno (`{until: EMFILE, at_most: 4096}`),
        /// then check `expect` against that answer; in a process of its own.
        pub repeat: Option<Repeat>,
        /// Rows of values, each becoming its own case; `{{ column }}` in strings is replaced.
        pub table: Option<Vec<Row>>,
        /// Lists of values whose cartesian product becomes the cases.
        #[schemars(with = "Option<std::collections::BTreeMap<String, Vec<serde_json::Value>>>")]
        pub matrix: Option<Entries<Vec<Node>>>,
        /// Several calls in one case, in order.
        pub steps: Option<Vec<At<Step>>>,
        /// Steps run after the case whatever happened (it passed, failed or stopped at a
        /// failed step): undo what it set up (a mount, an xattr, a file) so the next case
        /// starts clean. As root in the file's VM unless a step says `as:`; `expect:` defaults
        /// to `ok`, and a failing one fails the case.
        pub finally: Option<Vec<At<Step>>>,
    }
}

runs_a_call! {
    /// One step of `setup`, `teardown` or a case's `steps`.
    #[derive(Debug, Clone, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[schemars(extend("oneOf" = [
        {"required": ["syscall"]},
        {"required": ["exec"]},
        {"required": ["lua"]},
        {"required": ["store"]},
    ]))]
    pub struct Step {
        /// A label for messages.
        pub name: Option<At<String>>,
        /// A shell command in the guest (busybox); it must exit 0.
        pub exec: Option<At<String>>,
        /// Write an integer into the case's memory at an address a step saved
        /// (`{at: "$addr + 4", type: u32, value: 1}`), as C's `*(uint32_t *)(addr + 4) = 1`.
        pub store: Option<Store>,
    }
}

// ---- values whose shape varies: read as nodes, described for editors ------------------------

/// Declares a newtype over [`Node`]: what `check` reads, with the JSON Schema derived from the
/// type of the shapes it accepts (`spec::shapes`).
macro_rules! shaped {
    ($(#[$doc:meta])* $name:ident, $shape:ty) => {
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
            fn json_schema(g: &mut SchemaGenerator) -> Schema {
                <$shape as JsonSchema>::json_schema(g)
            }
        }
    };
}

shaped!(
    /// An integer: a number, an expression over constants and saved values (`"O_CREAT|O_RDWR"`,
    /// `"$fd + 1"`), `{sizeof: STRUCT}`, or `{bad_ptr: true}` (an address that is never mapped).
    Integer,
    super::shapes::IntegerShape
);

shaped!(
    /// A syscall: a name (`openat`) or a number.
    Syscall,
    super::shapes::SyscallShape
);

shaped!(
    /// One name or a list of names (`requires: {syscall: [openat2, close_range]}`).
    Names,
    super::shapes::NamesShape
);

shaped!(
    /// A call's argument: an integer (see [`Integer`]), or guest memory whose address is
    /// passed: exactly one of `cstr`, `str`, `bytes`, `out` or `struct`, with `set` for a
    /// struct's fields and `len` for a size larger than the contents.
    Arg,
    super::shapes::ArgShape
);

shaped!(
    /// What a call must return: an errno name (`EBADF`), `ok`, `any`, `died`, `timed_out`, a
    /// list of errno names (any of them), a return value, a map of checks, or `{one_of: [...]}`.
    Expect,
    super::shapes::ExpectShape
);

shaped!(
    /// A name for the return value (`save: fd`), or names for values: `{fd: ret}`,
    /// `{len: {out: 1, at: 0, type: u32}}`, `{mode: {out: 1, struct: stat, field: st_mode}}`.
    Save,
    super::shapes::SaveShape
);

shaped!(
    /// The process a case (or step) runs in: credentials (`uid`, `gid`, a different effective
    /// `euid`/`egid`, `groups`, `caps`) and settings (`umask`, `cwd`, `rlimits`). Any value may
    /// be a template (`uid: "{{ uid }}"`).
    Process,
    super::shapes::ProcessShape
);

shaped!(
    /// `{at: "$addr + 4", type: u32, value: 1}`: an integer of that type written at that
    /// address of the case's process.
    Store,
    super::shapes::StoreShape
);

shaped!(
    /// `{until: EMFILE, at_most: 4096}`: the errno (or a list) that ends the repetition, and
    /// the most calls to make before the case fails.
    Repeat,
    super::shapes::RepeatShape
);

shaped!(
    /// A struct layout: a list of `- field: type` (`u32`, `i64`, `char[8]`, `u8[16]`, `ptr`,
    /// another struct), or `{packed, align, fields}`.
    StructDef,
    super::shapes::StructDefShape
);

shaped!(
    /// A table row: a map of column values.
    Row,
    super::shapes::RowShape
);
