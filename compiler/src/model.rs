//! The checked model: every name resolved, every layout computed, every value turned into the
//! Lua expression that produces it. The emitter only arranges it.

use crate::layout::Layouts;

/// A Lua expression (generated source).
pub type Lua = String;

#[derive(Debug, Clone)]
pub struct Model {
    pub file: String,
    pub suite: String,
    pub profile: String,
    pub fixture: Option<String>,
    pub timeout: Option<f64>,
    pub requires: Option<Requires>,
    pub layouts: Layouts,
    pub setup: Vec<Step>,
    pub teardown: Vec<Step>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Default)]
pub struct Requires {
    pub line: u32,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    /// Name and number of each syscall that must exist.
    pub syscalls: Vec<(String, i64)>,
    pub root: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub caps: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The case's line (for table rows, the row's line).
    pub line: u32,
    pub requires: Option<Requires>,
    pub xfail: Option<String>,
    pub skip: Option<String>,
    pub creds: Option<Creds>,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    Call(Call),
    Steps(Vec<Step>),
    Lua(LuaBlock),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub line: u32,
    pub label: Option<String>,
    pub creds: Option<Creds>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Call(Call),
    Lua(LuaBlock),
    Exec(String),
}

#[derive(Debug, Clone)]
pub struct LuaBlock {
    pub code: String,
    /// The spec line of the block's first line of code.
    pub first_line: u32,
    /// The table row of the case, as a Lua table (`row` in the block; `{}` outside tables).
    pub row: Lua,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub line: u32,
    pub nr: i64,
    /// The syscall's name, for comments and messages.
    pub name: String,
    /// Exactly as many argument expressions as were written; buffer arguments hold `0`.
    pub args: Vec<Lua>,
    /// Buffers bound to arguments: (0-based index, Lua expression of the contents or size).
    pub bufs: Vec<(usize, Lua)>,
    /// Sub-buffers reached through pointers inside other buffers.
    pub ptrs: Vec<Ptr>,
    pub timeout: Option<f64>,
    pub expect: Option<Expect>,
    pub saves: Vec<Save>,
    /// Saved values the call reads.
    pub reads: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Ptr {
    /// The argument whose buffer holds the pointer, or (`None`) the sub-buffer `parent`.
    pub buf_idx: Option<usize>,
    /// 1-based index of the parent pointer spec.
    pub parent: Option<usize>,
    pub offset: usize,
    pub data: Lua,
    pub len: Option<Lua>,
    pub output: bool,
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub line: u32,
    /// The Lua table given to `expect(outcome, ...)`.
    pub table: Lua,
    /// A one-line description for comments.
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct Save {
    pub name: String,
    /// Lua expression over the outcome `r`.
    pub value: Lua,
}

impl Call {
    /// Can run in a batch: nothing about it needs a result of the same batch.
    pub fn lua_table(&self) -> Lua {
        let mut parts = vec![format!("nr = {}", self.nr)];
        if !self.args.is_empty() {
            parts.push(format!("args = {{{}}}", self.args.join(", ")));
        }
        if !self.bufs.is_empty() {
            let b: Vec<String> = self
                .bufs
                .iter()
                .map(|(i, v)| format!("[{i}] = {v}"))
                .collect();
            parts.push(format!("bufs = {{{}}}", b.join(", ")));
        }
        if !self.ptrs.is_empty() {
            let p: Vec<String> = self
                .ptrs
                .iter()
                .map(|p| {
                    let mut f = Vec::new();
                    match (p.buf_idx, p.parent) {
                        (Some(i), _) => f.push(format!("buf_idx = {i}")),
                        (None, Some(k)) => f.push(format!("ptr = {k}")),
                        (None, None) => {}
                    }
                    f.push(format!("ptr_offset = {}", p.offset));
                    f.push(format!("data = {}", p.data));
                    if let Some(l) = &p.len {
                        f.push(format!("data_len = {l}"));
                    }
                    if p.output {
                        f.push("output = true".into());
                    }
                    format!("{{{}}}", f.join(", "))
                })
                .collect();
            parts.push(format!("ptrs = {{{}}}", p.join(", ")));
        }
        if let Some(t) = self.timeout {
            parts.push(format!("timeout = {t}"));
        }
        format!("{{{}}}", parts.join(", "))
    }
}
