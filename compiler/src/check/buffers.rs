//! Arguments and buffers: what a call passes, and pointers inside buffers.

use super::*;
use crate::diag::did_you_mean;
use crate::expr::BinOp;
use crate::model::{Call, Condition, Data, Expect, Ptr};
use crate::spec::node::{At, Node, Value};

impl Checker<'_> {
    // ---- arguments and buffers -----------------------------------------------------------

    const BUFFER_KEYS: [&'static str; 7] = ["cstr", "str", "bytes", "out", "struct", "set", "len"];

    /// Argument `what` (`argument 2 (buf)`): an integer, or a buffer.
    pub(super) fn arg(&mut self, node: &Node, what: &str) -> Option<Arg> {
        if let Value::Map(m) = &node.value {
            let is_int =
                m.len() == 1 && (node.get("sizeof").is_some() || node.get("bad_ptr").is_some());
            if !is_int {
                return self.buffer(node).map(Arg::Buf);
            }
        }
        self.int(node, what).map(Arg::Int)
    }

    pub(super) fn buffer(&mut self, node: &Node) -> Option<Buffer> {
        let Some(m) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "expected a buffer ({{cstr: ...}}, {{out: N}}, {{struct: ...}}), got {}",
                    node.kind()
                ),
            );
            return None;
        };
        for (k, _) in m {
            let key = k.as_str().unwrap_or("");
            if !Self::BUFFER_KEYS.contains(&key) {
                let hint = did_you_mean(
                    key,
                    Self::BUFFER_KEYS
                        .iter()
                        .copied()
                        .chain(["sizeof", "bad_ptr"]),
                );
                self.error_help(k.pos, format!("unknown argument form `{key}`"), hint);
                return None;
            }
        }
        let forms: Vec<&str> = ["cstr", "str", "bytes", "out", "struct"]
            .into_iter()
            .filter(|k| node.get(k).is_some())
            .collect();
        if forms.len() != 1 {
            self.error(
                node.pos,
                "a buffer has exactly one of cstr, str, bytes, out or struct",
            );
            return None;
        }
        let len = match node.get("len") {
            Some(l) => Some(self.int(l, "len")?),
            None => None,
        };
        let v = node.get(forms[0])?;
        let (data, subs) = match forms[0] {
            "cstr" | "str" => {
                let Some(s) = v.scalar_text() else {
                    self.error(v.pos, format!("`{}:` takes a string", forms[0]));
                    return None;
                };
                let mut bytes = s.into_bytes();
                if forms[0] == "cstr" {
                    bytes.push(0);
                }
                (Data::Bytes(bytes), Vec::new())
            }
            "bytes" => {
                let Some(s) = v.scalar_text() else {
                    self.error(v.pos, "`bytes:` takes hex digits (\"de ad be ef\")");
                    return None;
                };
                match hex(&s) {
                    Ok(b) => (Data::Bytes(b), Vec::new()),
                    Err(e) => {
                        self.error(v.pos, format!("bytes: {e}"));
                        return None;
                    }
                }
            }
            "out" => {
                let size = self.int(v, "out")?;
                if let Some(n) = size.as_const() {
                    if !(0..=(256 << 20)).contains(&n) {
                        self.error(
                            v.pos,
                            format!("out: {n} bytes is out of range (0 to 256 MiB)"),
                        );
                        return None;
                    }
                }
                return Some(Buffer {
                    data: Data::Zeroed(size),
                    subs: Vec::new(),
                    output: true,
                });
            }
            _ => {
                let Some(name) = v.as_str() else {
                    self.error(v.pos, "`struct:` takes a struct name");
                    return None;
                };
                let Some(layout) = self.layouts.get(name).cloned() else {
                    let hint = did_you_mean(name, self.layouts.names());
                    self.error_help(v.pos, format!("unknown struct `{name}`"), hint);
                    return None;
                };
                let p = self.pack_struct(&layout, node.get("set"), 0)?;
                (Data::Packed(p.pieces), p.subs)
            }
        };
        if node.get("set").is_some() && forms[0] != "struct" {
            self.error(node.pos, "`set:` goes with `struct:`");
            return None;
        }
        let data = match len {
            Some(l) => Data::Padded(Box::new(data), l),
            None => data,
        };
        // Only `{out: N}` sub-buffers come back; argument buffers always do.
        Some(Buffer {
            data,
            subs,
            output: false,
        })
    }

    pub(super) fn call(
        &mut self,
        syscall: &Node,
        args: &[crate::spec::types::Arg],
        expect: Option<&Node>,
        save: Option<&Node>,
        timeout: Option<&At<f64>>,
        expect_ok: bool,
    ) -> Option<Call> {
        // Keep checking after an unknown syscall, so one run reports every problem.
        let resolved = self.resolve_syscall(syscall);
        let (nr, name) = resolved.clone().unwrap_or((0, String::new()));
        // Suggestions for misspelled constants in the arguments prefer this call's own.
        self.in_call = resolved.as_ref().map(|(_, n)| n.clone());
        // The checks run in a closure so that every way out of them resets `in_call`.
        let check = || -> Option<Call> {
            if args.len() > 6 {
                self.error(
                    args[6].pos,
                    format!(
                        "a syscall takes at most 6 arguments; {} are given",
                        args.len()
                    ),
                );
                return None;
            }
            let params = self
                .opts
                .headers
                .as_ref()
                .zip(resolved.as_ref())
                .and_then(|(h, (_, name))| h.syscall_params(name));
            if let (Some(params), Some((_, name))) = (&params, &resolved) {
                if args.len() > params.len() {
                    let takes = match params.len() {
                        0 => "no arguments".to_string(),
                        1 => format!("1 argument ({})", params[0]),
                        n => format!("{n} arguments ({})", params.join(", ")),
                    };
                    let given = match args.len() {
                        1 => "1 is given".to_string(),
                        n => format!("{n} are given"),
                    };
                    self.error(
                        args[params.len()].pos,
                        format!("`{name}` takes {takes} in include/linux/syscalls.h; {given}"),
                    );
                    return None;
                }
            }
            let reads_before = self.reads.len();
            let mut call = Call {
                line: syscall.pos.line,
                nr,
                name,
                args: Vec::new(),
                bufs: Vec::new(),
                ptrs: Vec::new(),
                timeout: timeout.and_then(|t| self.timeout(t, "timeout")),
                expect: None,
                saves: Vec::new(),
                reads: Vec::new(),
                repeat: None,
                skip_if: None,
                abi: self.opts.abi,
            };
            let mut ok = true;
            for (i, a) in args.iter().enumerate() {
                let what = match params.as_ref().and_then(|p| p.get(i)) {
                    Some(param) => format!("argument {} ({param})", i + 1),
                    None => format!("argument {}", i + 1),
                };
                match self.arg(a, &what) {
                    Some(Arg::Int(v)) => call.args.push(v),
                    Some(Arg::Buf(b)) => {
                        call.args.push(Int::Const(0));
                        call.bufs.push((i, b.data.clone()));
                        flatten_subs(&b, Some(i), None, &mut call.ptrs);
                    }
                    None => ok = false,
                }
            }
            if self.opts.abi == crate::linux::Abi::I386 {
                let wide = crate::linux::i386_wide_args(&call.name);
                split_wide_args(&mut call, wide);
            }
            call.reads = self.reads[reads_before..]
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            let expect = match (expect, expect_ok) {
                (Some(e), _) => self.expect(e),
                (None, true) => Some(Expect {
                    line: syscall.pos.line,
                    conditions: vec![Condition::Ok],
                    summary: "ok".into(),
                }),
                (None, false) => None,
            };
            call.expect = expect;
            if let Some(s) = save {
                call.saves = self.save(s)?;
            }
            ok.then_some(call)
        };
        let call = check();
        self.in_call = None;
        call.filter(|_| resolved.is_some())
    }
}

pub(super) fn flatten_subs(
    b: &Buffer,
    buf_idx: Option<usize>,
    parent: Option<usize>,
    out: &mut Vec<Ptr>,
) {
    for (offset, sub) in &b.subs {
        out.push(Ptr {
            buf_idx,
            parent,
            offset: *offset,
            data: sub.data.clone(),
            output: sub.output,
        });
        let me = out.len();
        flatten_subs(sub, None, Some(me), out);
    }
}

pub(super) fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .split_whitespace()
        .map(|w| w.trim_start_matches("0x"))
        .collect();
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{c}` is not a hex digit (in `{}`)",
            crate::diag::excerpt(text)
        ));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "an odd number of hex digits in `{}`",
            crate::diag::excerpt(text)
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| format!("`{}` is not hex", &digits[i..i + 2]))
        })
        .collect()
}

/// Passes each 64-bit argument at `wide` (x86_64 indices, in order) as two 32-bit ones, low
/// half first, as i386 does; the arguments and buffers after it move along.
fn split_wide_args(call: &mut Call, wide: &[usize]) {
    // A call already written in halves (from a signature that splits them, as 32-bit
    // architectures' include/linux/syscalls.h does for fanotify_mark) has no room left.
    if call.args.len() + wide.len() > 6 {
        return;
    }
    for (moved, &at) in wide.iter().enumerate() {
        let i = at + moved;
        let Some(value) = call.args.get(i).cloned() else {
            continue;
        };
        let (lo, hi) = match value.as_const() {
            Some(v) => (
                Int::Const(v & 0xffff_ffff),
                Int::Const((v >> 32) & 0xffff_ffff),
            ),
            None => (
                Int::Binary(
                    BinOp::And,
                    Box::new(value.clone()),
                    Box::new(Int::Const(0xffff_ffff)),
                ),
                Int::Binary(BinOp::Shr, Box::new(value), Box::new(Int::Const(32))),
            ),
        };
        call.args[i] = lo;
        call.args.insert(i + 1, hi);
        for (index, _) in &mut call.bufs {
            if *index > i {
                *index += 1;
            }
        }
        for p in &mut call.ptrs {
            if let Some(b) = &mut p.buf_idx {
                if *b > i {
                    *b += 1;
                }
            }
        }
    }
}
