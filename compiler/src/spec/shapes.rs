//! The shapes of the spec values whose form varies (an integer, an argument, an expectation, …),
//! as types: `schemas/spec.schema.json` is derived from them by schemars, so no schema is
//! written by hand. The checker does not deserialize into these: it reads positioned `Node`s
//! (serde's untagged enums would buffer the value and lose its line and column) and accepts
//! exactly these shapes, which `tests` checks against every shipped spec through the schema.

// Never constructed: each type exists for the schema derived from it.
#![allow(dead_code)]
// A variant or field documented becomes a schema description; the shapes are documented where
// a reader of the schema needs it.
#![allow(missing_docs)]

use super::types::{Expect, Integer, Names};
use schemars::JsonSchema;
use std::collections::BTreeMap;

/// A number, an expression ("O_CREAT|O_RDWR", "$fd + 1"), {sizeof: STRUCT} or {bad_ptr: true}.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum IntegerShape {
    Number(i64),
    /// An expression over constants and saved values.
    Expression(String),
    Sizeof(SizeOf),
    BadPtr(BadPtr),
}

/// `{sizeof: STRUCT}`: a struct's size.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct SizeOf {
    sizeof: String,
}

/// `{bad_ptr: true}`: an address that is never mapped.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct BadPtr {
    bad_ptr: serde_json::Value,
}

/// A syscall name (openat) or number, or one per ABI (`{x86_64: newfstatat, i386: fstatat64}`,
/// `{x86_64: pipe, aarch64: pipe2}`).
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum SyscallShape {
    Name(String),
    Number(i64),
    PerAbi(PerAbiShape),
}

/// The syscall each ABI calls: an ABI without one skips the case there.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerAbiShape {
    /// Under x86_64.
    #[serde(default)]
    x86_64: Option<OneSyscallShape>,
    /// Under i386 (`int $0x80`).
    #[serde(default)]
    i386: Option<OneSyscallShape>,
    /// On arm64 guests (`--arch aarch64`).
    #[serde(default)]
    aarch64: Option<OneSyscallShape>,
}

/// A syscall name or number.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum OneSyscallShape {
    Name(String),
    Number(i64),
}

/// One name or a list of names.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum NamesShape {
    One(String),
    Many(Vec<String>),
}

/// An integer, or a string where a template may stand (`"{{ uid }}"`).
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum IntOrText {
    Int(i64),
    Text(String),
}

/// A call's argument: an integer, or guest memory whose address is passed.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum ArgShape {
    Integer(Integer),
    Memory(Memory),
}

/// Guest memory whose address is passed: exactly one of `cstr`, `str`, `bytes`, `out` or
/// `struct`, with `set` for a struct's fields and `len` for a size larger than the contents.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum Memory {
    CString(CString),
    Str(Str),
    Bytes(Bytes),
    Out(Out),
    Struct(Struct),
}

macro_rules! memory {
    ($(#[$doc:meta])* $name:ident, $key:ident, $ty:ty) => {
        $(#[$doc])*
        #[derive(JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(inline)]
        pub struct $name {
            $(#[$doc])*
            $key: $ty,
            /// Field values of the struct (nested structs, arrays and pointers too).
            #[serde(default)]
            set: BTreeMap<String, serde_json::Value>,
            /// The buffer's size when larger than its contents.
            #[serde(default)]
            len: Option<IntOrText>,
        }
    };
}

memory!(
    /// A NUL-terminated string.
    CString, cstr, IntOrText
);
memory!(
    /// Bytes as they are, no NUL added.
    Str, str, IntOrText
);
memory!(
    /// Hex bytes ("de ad be ef").
    Bytes, bytes, String
);
memory!(
    /// A zeroed buffer of this size, returned after the call.
    Out, out, IntOrText
);

/// A struct laid out from `structs` or a header.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct Struct {
    /// A struct laid out from `structs` or a header.
    #[serde(rename = "struct")]
    name: String,
    /// Field values of the struct (nested structs, arrays and pointers too).
    #[serde(default)]
    set: BTreeMap<String, serde_json::Value>,
    /// The buffer's size when larger than its contents.
    #[serde(default)]
    len: Option<IntOrText>,
}

/// What a call must return.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum ExpectShape {
    /// An errno name, ok (ret >= 0), any, died or timed_out.
    Word(String),
    /// Any of these errnos.
    Errnos(Vec<String>),
    /// The return value.
    Ret(i64),
    Checks(ExpectChecks),
}

/// A map of checks.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct ExpectChecks {
    /// A value, or a comparison {eq, ne, lt, le, gt, ge}.
    #[serde(default)]
    ret: serde_json::Value,
    #[serde(default)]
    ok: bool,
    /// An errno name or a list of them.
    #[serde(default)]
    errno: Option<Names>,
    /// Checks on output buffers, by argument index.
    #[serde(default)]
    out: BTreeMap<String, serde_json::Value>,
    /// The call ends the executor: true, or {exit_code} / {signal}.
    #[serde(default)]
    died: serde_json::Value,
    /// The call blocks past its timeout.
    #[serde(default)]
    timed_out: bool,
    /// Any of these expectations (an answer that differs from run to run).
    #[serde(default)]
    #[schemars(length(min = 1))]
    one_of: Vec<Expect>,
    /// Signals the call raises (run with them blocked, pending after it): `SIGPIPE` or a list.
    #[serde(default)]
    raises: Option<Names>,
}

/// A name for the return value (`save: fd`), or names for values: `{fd: ret}`,
/// `{len: {out: 1, at: 0, type: u32}}`, `{mode: {out: 1, struct: stat, field: st_mode}}`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum SaveShape {
    Name(String),
    /// The names a `lua:` block sets in `saved`.
    Names(Vec<String>),
    Values(BTreeMap<String, SaveFrom>),
}

/// Where a saved value comes from.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum SaveFrom {
    Ret(RetWord),
    Out(SaveOut),
    /// On an `exec:` step: a Lua pattern whose one capture, in the output, is the integer.
    Pattern(String),
}

/// `ret`: the return value.
#[derive(JsonSchema)]
#[schemars(inline)]
pub enum RetWord {
    #[serde(rename = "ret")]
    Ret,
}

/// A value read from an output buffer.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct SaveOut {
    out: i64,
    #[serde(default)]
    at: Option<IntOrText>,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default, rename = "struct")]
    name: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

/// The process a case (or step) runs in: credentials and settings. Any value may be a template.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessShape {
    /// The real, saved (and effective) user id.
    #[serde(default)]
    uid: Option<IntOrText>,
    /// The group id; defaults to `uid`.
    #[serde(default)]
    gid: Option<IntOrText>,
    /// A different effective user id (real stays `uid`).
    #[serde(default)]
    euid: Option<IntOrText>,
    /// A different effective group id.
    #[serde(default)]
    egid: Option<IntOrText>,
    /// Supplementary groups.
    #[serde(default)]
    groups: Vec<IntOrText>,
    /// Capabilities kept, by name (`CAP_NET_ADMIN`).
    #[serde(default)]
    caps: Vec<String>,
    /// Capabilities dropped, by name: every other one is kept (root without `CAP_SYS_ADMIN`).
    #[serde(default)]
    drop_caps: Vec<String>,
    /// The file mode creation mask (`0o077`).
    #[serde(default)]
    umask: Option<IntOrText>,
    /// The working directory.
    #[serde(default)]
    cwd: Option<String>,
    /// Limits: `{RLIMIT_NOFILE: [soft, hard]}` or `{RLIMIT_FSIZE: 4096}` (both); `unlimited`
    /// for RLIM_INFINITY.
    #[serde(default)]
    rlimits: BTreeMap<String, serde_json::Value>,
    /// `own` (the default: the case's process leads a session of its own, so `setpgid(0, 0)`
    /// answers EPERM) or `inherit` (it leads a process group in the agent's session, like
    /// LTP's test process).
    #[serde(default)]
    session: Option<SessionShape>,
    /// Signals caught by an empty handler: a list (an interrupted call answers EINTR), or a
    /// map of each to `restart` (with `SA_RESTART`) or `interrupt`.
    #[serde(default)]
    catch: Option<CatchShape>,
    /// A signal sent to the case's process after a delay: seconds (SIGALRM), or `{after,
    /// signal}`.
    #[serde(default)]
    timer: Option<TimerShape>,
}

/// `catch: [SIGALRM]` or `catch: {SIGALRM: restart}`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum CatchShape {
    /// Signals whose handler interrupts.
    List(Vec<IntOrText>),
    /// Each signal to `restart` or `interrupt`.
    Map(BTreeMap<String, CatchMode>),
}

/// What an interrupted call does.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchMode {
    /// It is restarted (`SA_RESTART`).
    Restart,
    /// It answers EINTR.
    Interrupt,
}

/// `timer: 0.05` or `timer: {after: 0.05, signal: SIGUSR1}`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum TimerShape {
    /// Seconds until SIGALRM.
    Seconds(f64),
    /// Seconds until the given signal.
    Signal {
        /// Seconds.
        after: f64,
        /// The signal (default SIGALRM).
        #[serde(default)]
        signal: Option<IntOrText>,
    },
}

/// Where an `as:` case's process stands among sessions.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionShape {
    /// It leads a session of its own.
    Own,
    /// It leads a process group in the agent's session.
    Inherit,
}

/// `{at: "$addr + 4", type: u32, value: 1}`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreShape {
    /// The address: an integer expression over saved values.
    at: IntOrText,
    /// The integer's type: `u8`, `u16`, `u32`, `u64`, `i8`, `i16`, `i32` or `i64`.
    #[serde(rename = "type")]
    kind: StoreType,
    /// The value: an integer expression.
    value: IntOrText,
}

/// The integer types a `store:` writes.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    /// 1 byte.
    U8,
    /// 2 bytes.
    U16,
    /// 4 bytes.
    U32,
    /// 8 bytes.
    U64,
    /// 1 byte, signed.
    I8,
    /// 2 bytes, signed.
    I16,
    /// 4 bytes, signed.
    I32,
    /// 8 bytes, signed.
    I64,
}

/// `{until: EMFILE, at_most: 4096}`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatShape {
    /// The errno (or a list) that ends the repetition.
    until: Names,
    /// The most calls to make (at most 1,000,000).
    at_most: IntOrText,
}

/// A struct layout: a list of `- field: type`, or `{packed, align, fields}`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum StructDefShape {
    Fields(Vec<FieldDecl>),
    Layout(Layout),
}

/// `field: type` (`u32`, `i64`, `char[8]`, `u8[16]`, `ptr`, another struct).
#[derive(JsonSchema)]
#[schemars(inline, extend("minProperties" = 1, "maxProperties" = 1))]
pub struct FieldDecl(BTreeMap<String, String>);

/// `{packed, align, fields}`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
pub struct Layout {
    #[serde(default)]
    packed: bool,
    #[serde(default)]
    #[schemars(range(min = 1))]
    align: Option<u64>,
    fields: Vec<FieldDecl>,
}

/// A table row: a map of column values.
#[derive(JsonSchema)]
pub struct RowShape(BTreeMap<String, serde_json::Value>);
