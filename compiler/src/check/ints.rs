//! Integers: literals, expressions over constants and saved values, `sizeof`.

use super::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::expr::{self, Expr};
use crate::spec::node::{Node, Pos, Value};

impl Checker<'_> {
    // ---- integers ------------------------------------------------------------------------

    pub(super) fn int(&mut self, node: &Node, what: &str) -> Option<Int> {
        match &node.value {
            Value::Int(i) => Some(Int::Const(*i)),
            Value::Float(f) => {
                let hint = if f.fract() == 0.0 {
                    " (a leading zero such as 0600 is not octal in YAML: write 0o600)"
                } else {
                    ""
                };
                self.error(
                    node.pos,
                    format!("{what}: expected an integer, got {f}{hint}"),
                );
                None
            }
            Value::Str(s) => self.int_expr(s, node.pos, what),
            Value::Map(_) => {
                if let Some(name) = node.get("sizeof").and_then(Node::as_str) {
                    return self.sizeof(name, node.pos).map(Int::Const);
                }
                if node.get("bad_ptr").is_some() {
                    return Some(Int::Const(BAD_POINTER));
                }
                self.error(node.pos, format!("{what}: expected an integer, got a map"));
                None
            }
            other => {
                let kind = Node::new(other.clone(), node.pos).kind();
                self.error(node.pos, format!("{what}: expected an integer, got {kind}"));
                None
            }
        }
    }

    pub(super) fn sizeof(&mut self, name: &str, pos: Pos) -> Option<i64> {
        if let Some(l) = self.layouts.get(name) {
            return Some(l.size as i64);
        }
        if let Ok(t) = crate::layout::parse_type_in(name, &|_| false, self.layouts.model) {
            if let Ok((s, _)) = self.layouts.size_align(&t) {
                return Some(s as i64);
            }
        }
        let hint = did_you_mean(name, self.layouts.names());
        self.error_help(pos, format!("sizeof: unknown struct `{name}`"), hint);
        None
    }

    pub(super) fn int_expr(&mut self, text: &str, pos: Pos, what: &str) -> Option<Int> {
        let e = match expr::parse(text) {
            Ok(e) => e,
            Err(err) => {
                let p = self.inner_pos(pos, err.offset);
                self.error(
                    p,
                    format!(
                        "{what}: {} (in `{}`)",
                        err.message,
                        crate::diag::excerpt(text)
                    ),
                );
                return None;
            }
        };
        let mut names = Vec::new();
        expr::names(&e, &mut names);
        let mut ok = true;
        for n in &names {
            if self.lookup_const(n).is_none() {
                let offset = text.find(n.as_str()).unwrap_or(0);
                let p = self.inner_pos(pos, offset);
                let hint = self.const_hint(n);
                let mut d = Diagnostic::new(p, format!("unknown constant `{n}`")).len(n.len());
                d.help = hint;
                self.diags.push(d);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let mut saved = Vec::new();
        expr::saved(&e, &mut saved);
        if saved.is_empty() {
            let mut lookup = |n: &str| self.lookup_const(n);
            match expr::eval(&e, &mut lookup, &mut |n, _| {
                Err(expr::EvalError::Unknown(n.into()))
            }) {
                Ok(v) => Some(Int::Const(v)),
                Err(err) => {
                    self.error(pos, format!("{what}: {err}"));
                    None
                }
            }
        } else {
            for s in &saved {
                let offset = text.find(&format!("${s}")).unwrap_or(0);
                let p = self.inner_pos(pos, offset);
                self.reads.push((s.clone(), p));
            }
            match self.runtime_int(&e) {
                Ok(v) => Some(v),
                Err(m) => {
                    self.error(pos, format!("{what}: {m}"));
                    None
                }
            }
        }
    }

    /// An expression that uses saved values, its constants resolved: the emitter writes it as
    /// Lua that computes it when the saved values exist.
    pub(super) fn runtime_int(&self, e: &Expr) -> Result<Int, String> {
        Ok(match e {
            Expr::Num(n) => Int::Const(*n),
            Expr::Name(n) => Int::Const(
                self.lookup_const(n)
                    .ok_or(format!("unknown constant `{n}`"))?,
            ),
            Expr::Saved(n) => Int::Saved(n.clone()),
            Expr::Unary(op, i) => Int::Unary(*op, Box::new(self.runtime_int(i)?)),
            Expr::Binary(op, a, b) => Int::Binary(
                *op,
                Box::new(self.runtime_int(a)?),
                Box::new(self.runtime_int(b)?),
            ),
            Expr::Cast(t, i) => match expr::cast_bits(t) {
                // `cast_bits` knows no 64-bit types: widths are 8 to 32, so the shift holds.
                Some((bits, false)) => {
                    Int::Masked(Box::new(self.runtime_int(i)?), (1i64 << bits) - 1)
                }
                Some((_, true)) => return Err(format!("a signed cast `({t})` of a saved value")),
                None => self.runtime_int(i)?,
            },
            Expr::Call(n, _) => return Err(format!("`{n}(...)` cannot use saved values")),
            Expr::Type(t) => return Err(format!("the type `{t}` is not a value")),
        })
    }
}
