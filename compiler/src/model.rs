//! The checked model: every name resolved, every layout computed, every value typed. It holds
//! no Lua: the emitter (`emit/`) is the one place that writes Lua, from these types.

pub use crate::expr::{BinOp, UnOp};
use crate::layout::Layouts;
use crate::requirement::{ConfigCondition, KernelRange};

/// A checked spec.
#[derive(Debug, Clone)]
pub struct Model {
    /// The spec's path, as reports show it.
    pub file: String,
    /// The suite's name in reports (`suite:`, or the path).
    pub suite: String,
    /// The profile its VM boots.
    pub profile: String,
    /// The fixture it resumes instead of booting.
    pub fixture: Option<String>,
    /// Seconds the whole file may run.
    pub timeout: Option<f64>,
    /// Why none of its cases can run on the kernel it was compiled for (a header that kernel
    /// lacks): each is skipped with it.
    pub skip: Option<String>,
    /// The file's VM may pass to the next file (`share_vm: true`).
    pub share_vm: bool,
    /// Cases with credentials run isolated in forked children (see `check::Options`).
    pub fork_isolated: bool,
    /// The ABI every call is made under.
    pub abi: crate::linux::Abi,
    /// Conditions for the whole spec.
    pub requires: Option<Requires>,
    /// Every struct layout it knows (declared, or from headers).
    pub layouts: Layouts,
    /// Steps run once before the cases.
    pub setup: Vec<Step>,
    /// Steps run once after the cases.
    pub teardown: Vec<Step>,
    /// The cases, table and matrix rows expanded, names unique.
    pub cases: Vec<Case>,
}

/// Conditions: unmet, the spec or case is skipped with the reason.
#[derive(Debug, Clone, Default)]
pub struct Requires {
    /// The spec line of the condition.
    pub line: u32,
    /// A kernel version range (`>=5.6, <6.2`).
    pub kernel: Option<KernelRange>,
    /// The guest architecture.
    pub arch: Option<String>,
    /// Name and number of each syscall that must exist.
    pub syscalls: Vec<(String, i64)>,
    /// Must run as root (`true`) or not (`false`).
    pub root: Option<bool>,
    /// Kernel configuration conditions (`CONFIG_KSM`, `!CONFIG_X`, `CONFIG_X=m`).
    pub config: Vec<ConfigCondition>,
    /// Guest paths that must exist.
    pub paths: Vec<String>,
    /// File systems the kernel must know.
    pub filesystems: Vec<String>,
    /// Modules or drivers that must be present.
    pub modules: Vec<String>,
}

/// Credentials of the worker a case or step runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creds {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Capabilities kept, by name.
    pub caps: Vec<String>,
    /// A different effective user id.
    pub euid: Option<u32>,
    /// A different effective group id.
    pub egid: Option<u32>,
    /// The umask.
    pub umask: Option<u32>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Limits: resource number, soft, hard (-1: RLIM_INFINITY).
    pub rlimits: Vec<(i64, i64, i64)>,
    /// `session: inherit`: the case's process leads a process group in the agent's session
    /// instead of a session of its own.
    pub inherit_session: bool,
    /// Signals caught by an empty handler: number, and whether it has `SA_RESTART`.
    pub catch: Vec<(i64, bool)>,
    /// A signal sent to the case's process after a delay: number and microseconds.
    pub timer: Option<(i64, u64)>,
}

/// One test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The test's name, unique in the file.
    pub name: String,
    /// The case's line (for table rows, the row's line).
    pub line: u32,
    /// Conditions of the case.
    pub requires: Option<Requires>,
    /// A known bug: the reason.
    pub xfail: Option<String>,
    /// Not run: the reason.
    pub skip: Option<String>,
    /// Run in a worker with these credentials.
    pub creds: Option<Creds>,
    /// What the case does.
    pub body: Body,
    /// Steps run after it whatever happened (`finally:`).
    pub finally: Vec<Step>,
    /// The ABI its calls are made under (the spec's).
    pub abi: crate::linux::Abi,
}

/// What a case does.
#[derive(Debug, Clone)]
pub enum Body {
    /// One call with its expectation.
    Call(Call),
    /// Several steps in order.
    Steps(Vec<Step>),
    /// Lua code.
    Lua(LuaBlock),
}

/// One step of set-up, tear-down or a case.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's spec line.
    pub line: u32,
    /// Its `name:`, for messages.
    pub label: Option<String>,
    /// Run in a worker with these credentials.
    pub creds: Option<Creds>,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// One call.
    Call(Call),
    /// Lua code.
    Lua(LuaBlock),
    /// A shell command in the guest, which must exit 0.
    Exec {
        /// The command (`sh -c`).
        command: String,
        /// Values read from its output: a name and the Lua pattern whose capture is the
        /// integer (`{ncpus: "0%-(%d+)"}` on `cat /sys/devices/system/cpu/possible`).
        saves: Vec<(String, String)>,
    },
    /// An integer written into the case's process memory.
    Store {
        /// The address.
        at: Int,
        /// The integer's type (`u32`).
        kind: String,
        /// The value.
        value: Int,
    },
}

/// A `lua:` block.
#[derive(Debug, Clone)]
pub struct LuaBlock {
    /// The code as written.
    pub code: String,
    /// The spec line of the block's first line of code.
    pub first_line: u32,
    /// The table row of the case, column by column (`row` in the block; empty outside tables).
    pub row: Vec<(String, RowValue)>,
    /// The names the block promises to set in `saved` (`save: [pid, port]`), for `$NAME` in
    /// later steps and cases.
    pub saves: Vec<String>,
}

/// One syscall with its buffers, expectation and saved values.
#[derive(Debug, Clone)]
pub struct Call {
    /// The call's spec line.
    pub line: u32,
    /// The syscall number.
    pub nr: i64,
    /// The syscall's name, for comments and messages.
    pub name: String,
    /// Exactly as many arguments as were written; buffer arguments hold `0`.
    pub args: Vec<Int>,
    /// Buffers bound to arguments: (0-based index, contents).
    pub bufs: Vec<(usize, Data)>,
    /// Sub-buffers reached through pointers inside other buffers.
    pub ptrs: Vec<Ptr>,
    /// Seconds the call may block before it is killed.
    pub timeout: Option<f64>,
    /// What it must return (`None`: no check).
    pub expect: Option<Expect>,
    /// Values it keeps for later steps.
    pub saves: Vec<Save>,
    /// Saved values the call reads.
    pub reads: Vec<String>,
    /// Repeat until one of these errnos, at most this many calls (`repeat:`); boxed, as few
    /// calls repeat.
    pub repeat: Option<Box<(Vec<String>, u32)>>,
    /// Skip the case when the answer meets this (`skip_if:`, LTP's TCONF): the kernel or file
    /// system cannot do what the case needs.
    pub skip_if: Option<Box<Expect>>,
    /// The ABI it is made under.
    pub abi: crate::linux::Abi,
}

/// A buffer reached through a pointer inside another buffer.
#[derive(Debug, Clone)]
pub struct Ptr {
    /// The argument whose buffer holds the pointer, or (`None`) the sub-buffer `parent`.
    pub buf_idx: Option<usize>,
    /// 1-based index of the parent pointer spec.
    pub parent: Option<usize>,
    /// Where the pointer is written in its holder.
    pub offset: usize,
    /// The pointed-to buffer's contents.
    pub data: Data,
    /// Its contents come back after the call.
    pub output: bool,
}

/// An integer: known when the spec is checked, or computed at run time from values earlier
/// steps saved (`$fd + 1`; its constants are resolved, the expression kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Int {
    /// Known now.
    Const(i64),
    /// A saved value (`$fd`).
    Saved(String),
    /// A prefix operator applied to its operand.
    Unary(UnOp, Box<Int>),
    /// A binary operator applied to its operands.
    Binary(BinOp, Box<Int>, Box<Int>),
    /// An unsigned cast (`(u32)$x`): the operand and-ed with this mask.
    Masked(Box<Int>, i64),
}

impl Int {
    /// The value, when it is known now.
    pub fn as_const(&self) -> Option<i64> {
        match self {
            Int::Const(v) => Some(*v),
            _ => None,
        }
    }
}

/// The contents of a buffer a call passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Bytes as written (`str:`, `cstr:` with its NUL, `bytes:`).
    Bytes(Vec<u8>),
    /// An output buffer of this many zero bytes (`out: N`).
    Zeroed(Int),
    /// A struct, packed field by field (`struct:` with `set:`).
    Packed(Vec<Piece>),
    /// Contents padded with zero bytes to a length (`len:`).
    Padded(Box<Data>, Int),
}

/// One piece of a packed struct, in memory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Padding: this many zero bytes.
    Pad(usize),
    /// An integer field of a pack type (`u16`, `i32`, `be32`, ...).
    Int {
        /// The pack type: its name in C's fixed-width spelling.
        ty: String,
        /// The value.
        value: Int,
    },
    /// A `char[N]` field: the text, NUL-padded to `size`.
    Chars {
        /// The field's size in bytes.
        size: usize,
        /// The text.
        text: String,
    },
    /// A pointer field: its value (`0` where a sub-buffer's address goes, see [`Ptr`]), and its
    /// size (8, or 4 under i386).
    Ptr(Int, usize),
}

/// What a call must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The expectation's spec line.
    pub line: u32,
    /// What must hold, all of it, in the order written.
    pub conditions: Vec<Condition>,
    /// A one-line description for comments.
    pub summary: String,
}

impl Expect {
    /// Signals the call must raise (`raises: SIGPIPE`): the call runs with them blocked and
    /// they must be pending after it.
    pub fn raises(&self) -> &[i64] {
        self.conditions
            .iter()
            .find_map(|c| match c {
                Condition::Raises(s) => Some(s.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

/// One thing an outcome must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The call succeeded.
    Ok,
    /// It failed with one of these errnos (by name).
    Errno(Vec<String>),
    /// Its return value meets every comparison.
    Ret(Vec<Comparison>),
    /// The process running it died.
    Died,
    /// ... exiting with this code.
    ExitCode(Int),
    /// ... killed by this signal.
    Signal(i64),
    /// It was still blocked at its timeout.
    TimedOut,
    /// These signals are pending after it.
    Raises(Vec<i64>),
    /// Checks of output buffers, by argument index.
    Out(Vec<(i64, Vec<BufferCheck>)>),
    /// One of these expectations holds (what `record --runs N` writes for answers that vary).
    OneOf(Vec<Expect>),
}

/// A comparison of an integer with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// How they compare.
    pub op: CmpOp,
    /// The value compared with.
    pub value: Int,
}

/// Comparison operators, as specs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater or equal.
    Ge,
}

impl CmpOp {
    /// Every operator.
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];

    /// The name specs use (`eq`, `lt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }
}

/// A check of an output buffer's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferCheck {
    /// It starts with these bytes (`starts_with:`, `bytes:`).
    StartsWith(Vec<u8>),
    /// It contains these bytes.
    Contains(Vec<u8>),
    /// It is exactly these bytes (up to the call's answer).
    Equals(Vec<u8>),
    /// An integer field of a struct in it meets every comparison.
    Field {
        /// `struct.path`, for messages.
        name: String,
        /// Its offset in the buffer.
        at: usize,
        /// Its pack type.
        ty: String,
        /// What it must meet.
        compare: Vec<Comparison>,
    },
}

/// A value a call keeps (`save:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Save {
    /// `$name` in later steps, `saved.name` in Lua.
    pub name: String,
    /// Where the value comes from.
    pub from: SaveFrom,
}

/// Where a saved value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveFrom {
    /// The call's return value.
    Ret,
    /// An integer in an output buffer.
    Buffer {
        /// The argument index of the buffer.
        index: i64,
        /// The integer's offset in it.
        offset: usize,
        /// Its pack type.
        ty: String,
    },
}

/// A value of a table row, as YAML wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum RowValue {
    /// `null` or empty.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    Seq(Vec<RowValue>),
    /// A map, keys as text.
    Map(Vec<(String, RowValue)>),
}
