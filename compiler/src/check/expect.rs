//! Expectations and saved values: what a call must return, and what it keeps.

use super::buffers::hex;
use super::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::layout::{FieldType, Layout};
use crate::linux::{self};
use crate::model::{BufferCheck, CmpOp, Comparison, Condition, Expect, Save, SaveFrom};
use crate::spec::node::{Node, Pos, Value};

impl Checker<'_> {
    // ---- expectations --------------------------------------------------------------------

    pub(super) fn errno_name(&mut self, node: &Node) -> Option<String> {
        let name = node.as_str().map(str::trim).unwrap_or("");
        if linux::errno_number(name).is_some() {
            return Some(name.to_string());
        }
        let hint = did_you_mean(name, linux::errnos().map(|e| e.name));
        let shown = node.scalar_text().unwrap_or_else(|| node.kind().into());
        let mut d = Diagnostic::new(node.pos, format!("unknown errno `{shown}`")).len(shown.len());
        d.help = hint;
        self.diags.push(d);
        None
    }

    /// A signal by name (`SIGPIPE`) or number (1 to 64).
    pub(super) fn signal(&mut self, node: &Node) -> Option<i64> {
        let name = node.as_str().unwrap_or("");
        let value = if name.starts_with("SIG") {
            linux::constant(name).filter(|_| !name.starts_with("SIG_"))
        } else {
            match self.int(node, "signal")? {
                Int::Const(n) => Some(n),
                _ => None,
            }
        };
        match value {
            Some(n) if (1..=64).contains(&n) => Some(n),
            _ => {
                let hint = did_you_mean(
                    name,
                    linux::constants()
                        .iter()
                        .map(|(n, _, _)| *n)
                        .filter(|n| n.starts_with("SIG") && !n.starts_with("SIG_")),
                );
                self.error_help(
                    node.pos,
                    format!(
                        "`{}` is not a signal",
                        node.scalar_text().unwrap_or_default()
                    ),
                    hint,
                );
                None
            }
        }
    }

    pub(super) fn comparison(&mut self, node: &Node, what: &str) -> Option<Vec<Comparison>> {
        match &node.value {
            Value::Map(m) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    let name = k.as_str().unwrap_or("");
                    let Some(op) = CmpOp::ALL.into_iter().find(|op| op.name() == name) else {
                        let hint = did_you_mean(name, CmpOp::ALL.map(CmpOp::name));
                        self.error_help(
                            k.pos,
                            format!("unknown comparison `{name}` (eq, ne, lt, le, gt, ge)"),
                            hint,
                        );
                        return None;
                    };
                    let value = self.int(v, what)?;
                    out.push(Comparison { op, value });
                }
                Some(out)
            }
            _ => {
                let value = self.int(node, what)?;
                Some(vec![Comparison {
                    op: CmpOp::Eq,
                    value,
                }])
            }
        }
    }

    pub(super) fn expect(&mut self, node: &Node) -> Option<Expect> {
        let line = node.pos.line;
        let simple = |conditions: Vec<Condition>, summary: String| {
            Some(Expect {
                line,
                conditions,
                summary,
            })
        };
        match &node.value {
            Value::Str(s) => match s.trim() {
                "ok" => simple(vec![Condition::Ok], "ok".into()),
                "died" => simple(vec![Condition::Died], "died".into()),
                "timed_out" => simple(vec![Condition::TimedOut], "timed out".into()),
                "any" => simple(Vec::new(), "any".into()),
                t if t.starts_with('E')
                    && is_ident(t)
                    && t.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
                {
                    let name = self.errno_name(node)?;
                    simple(vec![Condition::Errno(vec![name.clone()])], name)
                }
                _ => {
                    let value = self.int(node, "expect")?;
                    simple(
                        vec![Condition::Ret(vec![Comparison {
                            op: CmpOp::Eq,
                            value,
                        }])],
                        format!("ret = {s}"),
                    )
                }
            },
            Value::Int(i) => simple(
                vec![Condition::Ret(vec![Comparison {
                    op: CmpOp::Eq,
                    value: Int::Const(*i),
                }])],
                format!("ret = {i}"),
            ),
            Value::Seq(items) => {
                let mut names = Vec::new();
                for it in items {
                    names.push(self.errno_name(it)?);
                }
                if names.is_empty() {
                    self.error(node.pos, "an empty list of errnos can never match");
                    return None;
                }
                let summary = names.join(" or ");
                simple(vec![Condition::Errno(names)], summary)
            }
            Value::Map(m) if node.get("one_of").is_some() => {
                // What `provium record --runs N` writes for an answer that differed between runs.
                if m.len() != 1 {
                    self.error(
                        node.pos,
                        "`one_of:` stands alone: `expect: {one_of: [0, EINTR]}`",
                    );
                    return None;
                }
                let list = node.get("one_of")?;
                let Value::Seq(items) = &list.value else {
                    self.error(list.pos, "`one_of:` is a list of expectations: `[0, EINTR, {died: {signal: SIGKILL}}]`");
                    return None;
                };
                if items.is_empty() {
                    self.error(list.pos, "an empty `one_of:` can never match");
                    return None;
                }
                let mut alternatives = Vec::new();
                let mut summary = Vec::new();
                for it in items {
                    let e = self.expect(it)?;
                    summary.push(e.summary.clone());
                    alternatives.push(e);
                }
                simple(
                    vec![Condition::OneOf(alternatives)],
                    format!("one of: {}", summary.join(" | ")),
                )
            }
            Value::Map(m) => {
                let mut parts = Vec::new();
                let mut summary = Vec::new();
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("");
                    match key {
                        "raises" => {
                            let mut raises = Vec::new();
                            for it in one_or_many(v) {
                                raises.push(self.signal(it)?);
                            }
                            parts.push(Condition::Raises(raises));
                            summary.push("raises a signal".into());
                        }
                        "ret" => {
                            parts.push(Condition::Ret(self.comparison(v, "ret")?));
                            summary.push("ret".to_string());
                        }
                        "ok" => parts.push(Condition::Ok),
                        "errno" => {
                            let names: Vec<String> = match &v.value {
                                Value::Seq(items) => {
                                    items.iter().filter_map(|i| self.errno_name(i)).collect()
                                }
                                _ => vec![self.errno_name(v)?],
                            };
                            summary.push(names.join(" or "));
                            parts.push(Condition::Errno(names));
                        }
                        "died" => {
                            parts.push(Condition::Died);
                            match &v.value {
                                Value::Bool(true) | Value::Null => {}
                                Value::Map(dm) => {
                                    for (dk, dv) in dm {
                                        match dk.as_str().unwrap_or("") {
                                            "exit_code" => parts.push(Condition::ExitCode(
                                                self.int(dv, "exit_code")?,
                                            )),
                                            "signal" => {
                                                let sig =
                                                    match dv.as_str().and_then(linux::constant) {
                                                        Some(s) => s,
                                                        None => match self.int(dv, "signal")? {
                                                            Int::Const(s) => s,
                                                            _ => return None,
                                                        },
                                                    };
                                                parts.push(Condition::Signal(sig));
                                            }
                                            other => {
                                                self.error(dk.pos, format!("unknown `died:` key `{other}` (exit_code, signal)"));
                                                return None;
                                            }
                                        }
                                    }
                                }
                                _ => {
                                    self.error(v.pos, "`died:` is `true`, or `{exit_code: N}` / `{signal: SIGKILL}`");
                                    return None;
                                }
                            }
                            summary.push("died".into());
                        }
                        "timed_out" => {
                            parts.push(Condition::TimedOut);
                            summary.push("timed out".into());
                        }
                        "out" => {
                            parts.push(Condition::Out(self.out_checks(v)?));
                        }
                        other => {
                            let known = [
                                "ret",
                                "errno",
                                "ok",
                                "out",
                                "died",
                                "timed_out",
                                "one_of",
                                "raises",
                            ];
                            let hint = did_you_mean(other, known);
                            self.error_help(k.pos, format!("unknown expectation `{other}`"), hint);
                            return None;
                        }
                    }
                }
                Some(Expect {
                    line,
                    conditions: parts,
                    summary: summary.join(", "),
                })
            }
            _ => {
                self.error(
                    node.pos,
                    format!(
                        "expected an errno name, a list of them, `ok`, a number or a map; got {}",
                        node.kind()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn out_checks(&mut self, node: &Node) -> Option<Vec<(i64, Vec<BufferCheck>)>> {
        let Some(m) = node.as_map() else {
            self.error(
                node.pos,
                "`out:` maps argument indexes to checks: `out: {0: {starts_with: Linux}}`",
            );
            return None;
        };
        let mut entries = Vec::new();
        for (k, v) in m {
            let idx = match k.value {
                Value::Int(i) if (0..6).contains(&i) => i,
                _ => {
                    self.error(
                        k.pos,
                        "an `out:` key is the argument index of a buffer, 0 to 5",
                    );
                    return None;
                }
            };
            let Some(cm) = v.as_map() else {
                self.error(v.pos, "expected checks such as {starts_with: ...}, {contains: ...}, {equals: ...}, {bytes: ...}, {struct: NAME, fields: {...}}");
                return None;
            };
            let mut checks = Vec::new();
            let struct_name = v.get("struct").and_then(Node::as_str).map(String::from);
            for (ck, cv) in cm {
                let key = ck.as_str().unwrap_or("");
                match key {
                    "starts_with" | "contains" | "equals" => {
                        let Some(s) = cv.scalar_text() else {
                            self.error(cv.pos, format!("`{key}:` takes a string"));
                            return None;
                        };
                        let bytes = s.into_bytes();
                        checks.push(match key {
                            "starts_with" => BufferCheck::StartsWith(bytes),
                            "contains" => BufferCheck::Contains(bytes),
                            _ => BufferCheck::Equals(bytes),
                        });
                    }
                    "bytes" => match hex(&cv.scalar_text().unwrap_or_default()) {
                        Ok(b) => checks.push(BufferCheck::StartsWith(b)),
                        Err(e) => {
                            self.error(cv.pos, format!("bytes: {e}"));
                            return None;
                        }
                    },
                    "struct" => {}
                    "fields" => {
                        let Some(name) = &struct_name else {
                            self.error(ck.pos, "`fields:` needs `struct: NAME` beside it");
                            return None;
                        };
                        let Some(layout) = self.layouts.get(name).cloned() else {
                            let hint = did_you_mean(name, self.layouts.names());
                            self.error_help(
                                v.get("struct").map(|n| n.pos).unwrap_or(ck.pos),
                                format!("unknown struct `{name}`"),
                                hint,
                            );
                            return None;
                        };
                        let Some(fm) = cv.as_map() else {
                            self.error(cv.pos, "`fields:` maps field names (or dotted paths) to values or comparisons");
                            return None;
                        };
                        for (fk, fv) in fm {
                            let path = fk.as_str().unwrap_or("");
                            let (offset, ty) = self.field_path(&layout, path, fk.pos)?;
                            let compare = self.comparison(fv, &format!("field `{path}`"))?;
                            checks.push(BufferCheck::Field {
                                name: format!("{}.{path}", layout.name),
                                at: offset,
                                ty,
                                compare,
                            });
                        }
                    }
                    other => {
                        let known = [
                            "starts_with",
                            "contains",
                            "equals",
                            "bytes",
                            "struct",
                            "fields",
                        ];
                        let hint = did_you_mean(other, known);
                        self.error_help(ck.pos, format!("unknown buffer check `{other}`"), hint);
                        return None;
                    }
                }
            }
            entries.push((idx, checks));
        }
        Some(entries)
    }

    /// The offset and pack type of `a.b.c` inside a layout.
    pub(super) fn field_path(
        &mut self,
        layout: &Layout,
        path: &str,
        pos: Pos,
    ) -> Option<(usize, String)> {
        let mut current = layout.clone();
        let mut offset = 0;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(f) = current.field(part).cloned() else {
                let hint = did_you_mean(part, current.fields.iter().map(|f| f.name.as_str()));
                self.error_help(
                    pos,
                    format!("struct `{}` has no field `{part}`", current.name),
                    hint,
                );
                return None;
            };
            offset += f.offset;
            let last = i == parts.len() - 1;
            match (&f.ty, last) {
                (ty @ FieldType::Int { .. }, true) => return Some((offset, ty.to_string())),
                (FieldType::Ptr, true) => {
                    return Some((offset, format!("u{}", self.layouts.model.pointer() * 8)))
                }
                (FieldType::Struct(s), false) => {
                    current = self.layouts.get(s)?.clone();
                }
                _ => {
                    self.error(
                        pos,
                        format!(
                            "`{path}`: only integer fields can be compared (`{}` is {})",
                            f.name, f.ty
                        ),
                    );
                    return None;
                }
            }
        }
        None
    }

    pub(super) fn save(&mut self, node: &Node) -> Option<Vec<Save>> {
        match &node.value {
            Value::Str(name) => {
                if !is_ident(name) {
                    self.error(node.pos, format!("`{name}` is not a valid name to save"));
                    return None;
                }
                self.saved.insert(name.clone());
                Some(vec![Save {
                    name: name.clone(),
                    from: SaveFrom::Ret,
                }])
            }
            Value::Map(m) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    let name = k.as_str().unwrap_or("").to_string();
                    if !is_ident(&name) {
                        self.error(k.pos, format!("`{name}` is not a valid name to save"));
                        return None;
                    }
                    let from = match &v.value {
                        Value::Str(s) if s == "ret" => SaveFrom::Ret,
                        Value::Map(_) => {
                            let Some(Value::Int(idx)) = v.get("out").map(|n| &n.value) else {
                                self.error(v.pos, "save from a buffer: `{out: INDEX, at: OFFSET, type: i32}` or `{out: INDEX, struct: NAME, field: F}`");
                                return None;
                            };
                            let (offset, ty) = if let Some(sn) =
                                v.get("struct").and_then(Node::as_str)
                            {
                                let Some(layout) = self.layouts.get(sn).cloned() else {
                                    let hint = did_you_mean(sn, self.layouts.names());
                                    self.error_help(v.pos, format!("unknown struct `{sn}`"), hint);
                                    return None;
                                };
                                let field = v.get("field").and_then(Node::as_str).unwrap_or("");
                                self.field_path(&layout, field, v.pos)?
                            } else {
                                let at = match v.get("at") {
                                    Some(a) => match self.int(a, "at")? {
                                        Int::Const(c) if c >= 0 => c as usize,
                                        _ => {
                                            self.error(a.pos, "`at:` is a constant offset");
                                            return None;
                                        }
                                    },
                                    None => 0,
                                };
                                let ty = v
                                    .get("type")
                                    .and_then(Node::as_str)
                                    .unwrap_or("i64")
                                    .to_string();
                                if ![
                                    "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "be16",
                                    "be32", "be64",
                                ]
                                .contains(&ty.as_str())
                                {
                                    self.error(
                                        v.pos,
                                        format!("unknown type `{ty}` (u8..u64, i8..i64)"),
                                    );
                                    return None;
                                }
                                (at, ty)
                            };
                            SaveFrom::Buffer {
                                index: *idx,
                                offset,
                                ty,
                            }
                        }
                        _ => {
                            self.error(v.pos, "save `ret`, or a value from a buffer `{out: INDEX, at: OFFSET, type: i32}`");
                            return None;
                        }
                    };
                    self.saved.insert(name.clone());
                    out.push(Save { name, from });
                }
                Some(out)
            }
            _ => {
                self.error(
                    node.pos,
                    "`save:` is a name for the return value, or a map of names",
                );
                None
            }
        }
    }
}
