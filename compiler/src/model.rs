//! The checked model: every name resolved, every layout computed, every value turned into the
//! Lua expression that produces it. The emitter only arranges it.

use crate::layout::Layouts;

/// A Lua expression (generated source).
pub type Lua = String;

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
    /// The file's VM may pass to the next file (`share_vm: true`).
    pub share_vm: bool,
    /// Cases with credentials run isolated in forked children (see `check::Options`).
    pub fork_isolated: bool,
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
    pub kernel: Option<String>,
    /// The guest architecture.
    pub arch: Option<String>,
    /// Name and number of each syscall that must exist.
    pub syscalls: Vec<(String, i64)>,
    /// Must run as root (`true`) or not (`false`).
    pub root: Option<bool>,
    /// Kernel configuration conditions (`CONFIG_KSM`, `!CONFIG_X`, `CONFIG_X=m`).
    pub config: Vec<String>,
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
    Exec(String),
}

/// A `lua:` block.
#[derive(Debug, Clone)]
pub struct LuaBlock {
    /// The code as written.
    pub code: String,
    /// The spec line of the block's first line of code.
    pub first_line: u32,
    /// The table row of the case, as a Lua table (`row` in the block; `{}` outside tables).
    pub row: Lua,
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
    /// Exactly as many argument expressions as were written; buffer arguments hold `0`.
    pub args: Vec<Lua>,
    /// Buffers bound to arguments: (0-based index, Lua expression of the contents or size).
    pub bufs: Vec<(usize, Lua)>,
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
    pub data: Lua,
    /// Its size, when larger than its contents.
    pub len: Option<Lua>,
    /// Its contents come back after the call.
    pub output: bool,
}

/// What a call must return.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The expectation's spec line.
    pub line: u32,
    /// The Lua table given to `expect(outcome, ...)`.
    pub table: Lua,
    /// A one-line description for comments.
    pub summary: String,
    /// Signals the call must raise (`raises: SIGPIPE`): the call runs with them blocked and
    /// they must be pending after it (`provium.raising`).
    pub raises: Vec<i64>,
}

/// A value a call keeps (`save:`).
#[derive(Debug, Clone)]
pub struct Save {
    /// `$name` in later steps, `saved.name` in Lua.
    pub name: String,
    /// Lua expression over the outcome `r`.
    pub value: Lua,
}
