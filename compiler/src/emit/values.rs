//! The model's values as Lua expressions: integers, buffers, calls, expectations, saved values,
//! table rows, conditions and credentials. `mod.rs` arranges statements; this file spells the
//! values they use, so each model type has exactly one Lua form.

use super::lua;
use crate::model::{
    BinOp, BufferCheck, Call, Comparison, Condition, Creds, Data, Expect, Int, Piece, Requires,
    RowValue, SaveFrom, UnOp,
};

/// `saved.fd`, or `saved["repeat"]` for a name Lua reserves.
pub(super) fn saved_ref(name: &str) -> String {
    const KEYWORDS: [&str; 22] = [
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    if KEYWORDS.contains(&name) {
        format!("saved[{}]", lua::str(name))
    } else {
        format!("saved.{name}")
    }
}

/// An integer: a literal, or the expression that computes it from `saved` at run time.
pub(super) fn int(v: &Int) -> String {
    match v {
        Int::Const(c) => lua::int(*c),
        Int::Saved(name) => saved_ref(name),
        Int::Unary(op, inner) => {
            let inner = int(inner);
            match op {
                UnOp::Neg => format!("(-{inner})"),
                UnOp::Not => format!("(~{inner})"),
                UnOp::LogicalNot => format!("(({inner}) == 0 and 1 or 0)"),
            }
        }
        Int::Binary(op, a, b) => format!("({} {} {})", int(a), binary_op(*op), int(b)),
        Int::Masked(inner, mask) => format!("({} & {})", int(inner), lua::int(*mask)),
    }
}

/// Lua 5.4's spelling of a spec's operator (`^` is `~`, integer `/` is `//`).
fn binary_op(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "|",
        BinOp::Xor => "~",
        BinOp::And => "&",
        BinOp::Shl => "<<",
        BinOp::Shr => ">>",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "//",
        BinOp::Rem => "%",
    }
}

/// A buffer's contents as `vm:call` takes them: a string, or a number of zero bytes.
pub(super) fn data(d: &Data) -> String {
    match d {
        Data::Bytes(b) => lua::string(b),
        Data::Zeroed(size) => int(size),
        Data::Packed(pieces) => {
            let mut format = Vec::new();
            let mut args = Vec::new();
            for p in pieces {
                match p {
                    Piece::Pad(n) => format.push(format!("x{n}")),
                    Piece::Int { ty, value } => {
                        format.push(ty.clone());
                        args.push(int(value));
                    }
                    Piece::Chars { size, text } => {
                        format.push(format!("z{size}"));
                        args.push(lua::str(text));
                    }
                    Piece::Ptr(value, 8) => {
                        format.push("ptr".into());
                        args.push(int(value));
                    }
                    Piece::Ptr(value, bytes) => {
                        format.push(format!("u{}", bytes * 8));
                        args.push(int(value));
                    }
                }
            }
            let mut call = vec![lua::str(&format.join(" "))];
            call.extend(args);
            format!("provium.pack({})", call.join(", "))
        }
        Data::Padded(inner, len) => format!("provium.pad({}, {})", data(inner), int(len)),
    }
}

/// A call as the Lua table `vm:call` and `vm:batch` take.
pub(super) fn call_table(call: &Call) -> String {
    let mut parts = vec![format!("nr = {}", call.nr)];
    if call.abi != crate::linux::Abi::X86_64 {
        parts.push(format!("abi = {}", lua::str(call.abi.name())));
    }
    if !call.args.is_empty() {
        let args: Vec<String> = call.args.iter().map(int).collect();
        parts.push(format!("args = {{{}}}", args.join(", ")));
    }
    if !call.bufs.is_empty() {
        let b: Vec<String> = call
            .bufs
            .iter()
            .map(|(i, d)| format!("[{i}] = {}", data(d)))
            .collect();
        parts.push(format!("bufs = {{{}}}", b.join(", ")));
    }
    if !call.ptrs.is_empty() {
        let p: Vec<String> = call
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
                f.push(format!("data = {}", data(&p.data)));
                if p.output {
                    f.push("output = true".into());
                }
                format!("{{{}}}", f.join(", "))
            })
            .collect();
        parts.push(format!("ptrs = {{{}}}", p.join(", ")));
    }
    if let Some(t) = call.timeout {
        parts.push(format!("timeout = {t}"));
    }
    format!("{{{}}}", parts.join(", "))
}

/// An expectation as the table `expect(outcome, ...)` takes.
pub(super) fn expect_table(e: &Expect) -> String {
    let parts: Vec<String> = e.conditions.iter().map(condition).collect();
    format!("{{{}}}", parts.join(", "))
}

fn condition(c: &Condition) -> String {
    match c {
        Condition::Ok => "ok = true".into(),
        Condition::Errno(names) => format!("errno = {}", strings(names)),
        Condition::Ret(cmp) => format!("ret = {{{}}}", comparisons(cmp)),
        Condition::Died => "died = true".into(),
        Condition::ExitCode(code) => format!("exit_code = {}", int(code)),
        Condition::Signal(sig) => format!("signal = {sig}"),
        Condition::TimedOut => "timed_out = true".into(),
        Condition::Raises(sigs) => format!("raises = {}", numbers(sigs)),
        Condition::Out(buffers) => {
            let entries: Vec<String> = buffers
                .iter()
                .map(|(idx, checks)| {
                    let checks: Vec<String> = checks.iter().map(buffer_check).collect();
                    format!("[{idx}] = {{{}}}", checks.join(", "))
                })
                .collect();
            format!("out = {{{}}}", entries.join(", "))
        }
        Condition::OneOf(alternatives) => {
            let tables: Vec<String> = alternatives.iter().map(expect_table).collect();
            format!("one_of = {{{}}}", tables.join(", "))
        }
    }
}

fn buffer_check(c: &BufferCheck) -> String {
    match c {
        BufferCheck::StartsWith(b) => format!("{{starts_with = {}}}", lua::string(b)),
        BufferCheck::Contains(b) => format!("{{contains = {}}}", lua::string(b)),
        BufferCheck::Equals(b) => format!("{{equals = {}}}", lua::string(b)),
        BufferCheck::Field {
            name,
            at,
            ty,
            compare,
        } => format!(
            "{{field = {}, at = {at}, type = {}, {}}}",
            lua::str(name),
            lua::str(ty),
            comparisons(compare)
        ),
    }
}

/// `eq = 3, lt = 10`: the keys `expect` reads for comparisons.
fn comparisons(cmp: &[Comparison]) -> String {
    let parts: Vec<String> = cmp
        .iter()
        .map(|c| format!("{} = {}", c.op.name(), int(&c.value)))
        .collect();
    parts.join(", ")
}

/// A list of strings as a Lua sequence.
pub(super) fn strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| lua::str(s)).collect();
    format!("{{{}}}", quoted.join(", "))
}

/// A list of numbers as a Lua sequence.
pub(super) fn numbers(items: &[i64]) -> String {
    let n: Vec<String> = items.iter().map(i64::to_string).collect();
    format!("{{{}}}", n.join(", "))
}

/// The value a `save:` keeps, over the outcome `r`.
pub(super) fn saved_value(from: &SaveFrom) -> String {
    match from {
        SaveFrom::Ret => "r.ret".into(),
        SaveFrom::Buffer { index, offset, ty } => {
            let format = if *offset > 0 {
                format!("x{offset} {ty}")
            } else {
                ty.clone()
            };
            format!("provium.unpack({}, r.bufs[{index}])", lua::str(&format))
        }
    }
}

/// A table row as the Lua table `row` of a `lua:` block.
pub(super) fn row_table(row: &[(String, RowValue)]) -> String {
    fn value(v: &RowValue) -> String {
        match v {
            RowValue::Nil => "nil".into(),
            RowValue::Bool(b) => b.to_string(),
            RowValue::Int(i) => lua::int(*i),
            RowValue::Float(f) if f.is_finite() => format!("{f:?}"),
            RowValue::Float(_) => "0/0".into(),
            RowValue::Str(s) => lua::str(s),
            RowValue::Seq(items) => {
                let items: Vec<String> = items.iter().map(value).collect();
                format!("{{{}}}", items.join(", "))
            }
            RowValue::Map(entries) => row_table(entries),
        }
    }
    let fields: Vec<String> = row
        .iter()
        .map(|(k, v)| format!("[{}] = {}", lua::str(k), value(v)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Conditions as the table `provium.requires` takes.
///
/// Under another ABI than x86_64, `abi` is a condition too, and the `syscalls` probes use it.
pub(super) fn requires_table(r: &Requires, abi: crate::linux::Abi) -> String {
    let mut parts = Vec::new();
    if abi != crate::linux::Abi::X86_64 {
        parts.push(format!("abi = {}", lua::str(abi.name())));
    }
    if let Some(k) = &r.kernel {
        parts.push(format!("kernel = {}", lua::str(&k.to_string())));
    }
    if let Some(a) = &r.arch {
        parts.push(format!("arch = {}", lua::str(a)));
    }
    if !r.syscalls.is_empty() {
        let s: Vec<String> = r
            .syscalls
            .iter()
            .map(|(n, nr)| format!("{{{}, {nr}}}", lua::str(n)))
            .collect();
        parts.push(format!("syscalls = {{{}}}", s.join(", ")));
    }
    if let Some(root) = r.root {
        parts.push(format!("root = {root}"));
    }
    if !r.config.is_empty() {
        let config: Vec<String> = r.config.iter().map(ToString::to_string).collect();
        parts.push(format!("config = {}", strings(&config)));
    }
    for (key, list) in [
        ("path", &r.paths),
        ("filesystem", &r.filesystems),
        ("module", &r.modules),
    ] {
        if !list.is_empty() {
            parts.push(format!("{key} = {}", strings(list)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Credentials as the table `vm:spawn` and `vm:isolated` take.
///
/// Every `as:` process has the file's descriptors (`descriptors = "inherit"`): a one-call case
/// runs in a child forked from the executor, which has them anyway, and a worker for steps takes
/// them, so adding a step never changes what `$fd` names.
pub(super) fn creds_table(c: &Creds) -> String {
    let mut parts = vec![
        format!("uid = {}", c.uid),
        format!("gid = {}", c.gid),
        "descriptors = \"inherit\"".to_string(),
    ];
    if c.inherit_session {
        parts.push("session = \"inherit\"".to_string());
    }
    if !c.catch.is_empty() {
        let l: Vec<String> = c
            .catch
            .iter()
            .map(|(n, restart)| format!("{{{n}, restart = {restart}}}"))
            .collect();
        parts.push(format!("catch = {{{}}}", l.join(", ")));
    }
    if let Some((signal, after_us)) = c.timer {
        let after = after_us as f64 / 1e6;
        parts.push(format!("timer = {{signal = {signal}, after = {after:?}}}"));
    }
    if !c.groups.is_empty() {
        let g: Vec<String> = c.groups.iter().map(u32::to_string).collect();
        parts.push(format!("groups = {{{}}}", g.join(", ")));
    }
    if !c.caps.is_empty() {
        parts.push(format!("caps = {}", strings(&c.caps)));
    }
    for (key, v) in [("euid", c.euid), ("egid", c.egid), ("umask", c.umask)] {
        if let Some(v) = v {
            parts.push(format!("{key} = {v}"));
        }
    }
    if let Some(cwd) = &c.cwd {
        parts.push(format!("cwd = {}", lua::str(cwd)));
    }
    if !c.rlimits.is_empty() {
        let l: Vec<String> = c
            .rlimits
            .iter()
            .map(|(r, soft, hard)| format!("{{{r}, {soft}, {hard}}}"))
            .collect();
        parts.push(format!("rlimits = {{{}}}", l.join(", ")));
    }
    format!("{{{}}}", parts.join(", "))
}
