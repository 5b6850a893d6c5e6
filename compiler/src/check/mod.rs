//! From the spec as written to the checked [`Model`]: names resolved (syscalls, constants,
//! errnos, structs, saved values), layouts computed, table rows expanded, every value turned into
//! Lua. Problems are collected, each with its position and a suggestion where one helps.

use crate::diag::{did_you_mean, Diagnostic};
use crate::expr::{self, Expr};
use crate::layout::{parse_type, FieldType, Layout, Layouts, StructDecl};
use crate::linux::{self, Arch};
use crate::lua;
use crate::model::{self, Body, Call, Creds, Expect, Model, Ptr, Requires, Save, Step, StepKind};
use crate::spec::node::{At, Entries, Node, Pos, Value};
use crate::spec::types;
use crate::template;
use std::collections::{BTreeSet, HashMap, HashSet};

/// How to check a spec.
#[derive(Debug, Clone)]
pub struct Options {
    /// The path reports use for the spec.
    pub file: String,
    pub arch: Arch,
    /// Constants and structs from the headers a spec names (`headers:`), when available.
    pub headers: Option<std::sync::Arc<dyn HeaderProvider>>,
}

impl Options {
    pub fn new(file: impl Into<String>) -> Options {
        Options {
            file: file.into(),
            arch: Arch::X86_64,
            headers: None,
        }
    }
}

/// Kernel headers as a source of constants and struct layouts (see `headers::`).
pub trait HeaderProvider: std::fmt::Debug + Send + Sync {
    /// Loads headers by include name; an error is reported at the `headers:` entry.
    /// `profile` is the spec's profile, which may name its own include tree.
    fn load(&self, profile: &str, names: &[String]) -> Result<HeaderSet, String>;
}

/// What a spec's `headers:` made available.
#[derive(Debug, Clone, Default)]
pub struct HeaderSet {
    pub constants: HashMap<String, i64>,
    pub layouts: Vec<Layout>,
}

/// The address agents guarantee unmapped (`provium.bad_ptr`).
pub const BAD_POINTER: i64 = 0x1000;

/// A checked integer: known now, or computed at run time from saved values.
#[derive(Debug, Clone)]
enum Int {
    Const(i64),
    Runtime(model::Lua),
}

impl Int {
    fn lua(&self) -> model::Lua {
        match self {
            Int::Const(v) => lua::int(*v),
            Int::Runtime(e) => e.clone(),
        }
    }
}

/// A buffer argument: its contents as Lua, and sub-buffers reached through pointers in it.
#[derive(Debug, Clone)]
struct Buffer {
    data: model::Lua,
    len: Option<model::Lua>,
    subs: Vec<(usize, Buffer)>,
    output: bool,
}

enum Arg {
    Int(Int),
    Buf(Buffer),
}

struct Packed {
    fmt: Vec<String>,
    values: Vec<model::Lua>,
    subs: Vec<(usize, Buffer)>,
}

struct Checker<'a> {
    opts: &'a Options,
    source: &'a str,
    diags: Vec<Diagnostic>,
    constants: HashMap<String, i64>,
    const_order: Vec<String>,
    syscalls: Vec<(String, i64)>,
    layouts: Layouts,
    saved: BTreeSet<String>,
    /// Reads of saved values, to check that something saves them.
    reads: Vec<(String, Pos)>,
    profile: String,
    /// Cases expanded so far (tables and matrices of every case count).
    expanded: usize,
    /// The row being expanded, as a Lua table (`row` in `lua:` blocks).
    row_lua: String,
}

/// The most problems one spec reports: the rest are counted, not listed (a 100,000-row table
/// with the same mistake in every row says it once).
const MAX_DIAGNOSTICS: usize = 50;

/// How deep a spec's YAML may nest. The deepest real spec nests about 10 levels (a struct
/// inside a buffer inside an argument of a step of a case); every level costs stack in the
/// reader and in the checker, and a runner's worker thread has 2 MiB.
pub const MAX_YAML_DEPTH: usize = 32;

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: MAX_YAML_DEPTH },
    }
}

/// Checks a spec; all problems found are returned together.
pub fn check(source: &str, opts: &Options) -> Result<Model, Vec<Diagnostic>> {
    let spec: types::Spec = match serde_saphyr::from_str_with_options(source, yaml_options()) {
        Ok(s) => s,
        Err(e) => return Err(vec![crate::diag::from_yaml_error(&opts.file, &e)]),
    };
    let mut c = Checker {
        opts,
        source,
        diags: Vec::new(),
        constants: HashMap::new(),
        const_order: Vec::new(),
        syscalls: Vec::new(),
        layouts: Layouts::default(),
        saved: BTreeSet::new(),
        reads: Vec::new(),
        profile: "minimal".into(),
        expanded: 0,
        row_lua: "{}".into(),
    };
    let model = c.spec(spec);
    let mut diags = c.diags;
    for d in &mut diags {
        d.file = opts.file.clone();
    }
    diags.sort_by_key(|d| d.pos);
    diags.dedup();
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        let mut last = Diagnostic::new(
            diags[MAX_DIAGNOSTICS - 1].pos,
            format!("… and {more} more problems like these"),
        );
        last.file = opts.file.clone();
        diags.push(last);
    }
    match model {
        Some(m) if diags.is_empty() => Ok(m),
        _ => Err(diags),
    }
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Checker<'a> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(pos, message));
    }

    fn error_help(&mut self, pos: Pos, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::new(pos, message);
        d.help = help;
        self.diags.push(d);
    }

    /// The column of text inside a (possibly quoted) scalar at `pos`.
    fn inner_pos(&self, pos: Pos, offset: usize) -> Pos {
        let at = crate::diag::byte_offset(self.source, pos);
        let quoted = matches!(self.source.as_bytes().get(at), Some(b'"' | b'\''));
        Pos {
            line: pos.line,
            col: pos.col + offset as u32 + quoted as u32,
        }
    }

    fn spec(&mut self, spec: types::Spec) -> Option<Model> {
        if !spec.headers.is_empty() {
            self.profile = spec
                .profile
                .as_ref()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| "minimal".into());
            self.headers(&spec.headers);
        }
        self.constants(&spec.constants);
        for (name, nr) in &spec.syscalls.0 {
            if !is_ident(&name.value) {
                self.error(
                    name.pos,
                    format!("`{}` is not a valid syscall name", name.value),
                );
            }
            self.syscalls.push((name.value.clone(), nr.value));
        }
        self.structs(&spec.structs);
        let requires = spec.requires.as_ref().map(|r| self.requires(r));
        let setup: Vec<Step> = spec
            .setup
            .iter()
            .filter_map(|s| self.step(s, Some("ok")))
            .collect();
        let mut cases = Vec::new();
        for case in &spec.cases {
            cases.extend(self.case(case));
        }
        if spec.cases.is_empty() {
            self.error(Pos { line: 1, col: 1 }, "the spec has no `cases:`");
        }
        let teardown: Vec<Step> = spec
            .teardown
            .iter()
            .filter_map(|s| self.step(s, Some("ok")))
            .collect();
        let reads = std::mem::take(&mut self.reads);
        for (name, pos) in reads {
            if !self.saved.contains(&name) {
                let hint = did_you_mean(&name, self.saved.iter().map(String::as_str));
                self.error_help(
                    pos,
                    format!("`${name}` is never saved (add `save: {name}` to an earlier step)"),
                    hint,
                );
            }
        }
        let mut names = HashSet::new();
        for c in &mut cases {
            if !names.insert(c.name.clone()) {
                let mut n = 2;
                while names.contains(&format!("{} ({n})", c.name)) {
                    n += 1;
                }
                c.name = format!("{} ({n})", c.name);
                names.insert(c.name.clone());
            }
        }
        Some(Model {
            file: self.opts.file.clone(),
            suite: spec
                .suite
                .map(|s| s.value)
                .unwrap_or_else(|| self.opts.file.clone()),
            profile: spec
                .profile
                .map(|p| p.value)
                .unwrap_or_else(|| "minimal".into()),
            fixture: spec.fixture.map(|f| f.value),
            timeout: spec.timeout.map(|t| t.value),
            requires,
            layouts: self.layouts.clone(),
            setup,
            teardown,
            cases,
        })
    }

    fn headers(&mut self, headers: &[At<String>]) {
        let Some(provider) = self.opts.headers.clone() else {
            self.error(
                headers[0].pos,
                "this build cannot read kernel headers; remove `headers:` or use `provium`",
            );
            return;
        };
        let names: Vec<String> = headers.iter().map(|h| h.value.clone()).collect();
        match provider.load(&self.profile, &names) {
            Ok(set) => {
                for (k, v) in set.constants {
                    self.constants.entry(k).or_insert(v);
                }
                for l in set.layouts {
                    self.layouts.insert(l);
                }
            }
            Err(e) => self.error(headers[0].pos, e),
        }
    }

    // ---- names ---------------------------------------------------------------------------

    fn lookup_const(&self, name: &str) -> Option<i64> {
        self.constants
            .get(name)
            .copied()
            .or_else(|| linux::constant(name))
            .or_else(|| linux::errno_number(name).map(i64::from))
    }

    fn const_hint(&self, name: &str) -> Option<String> {
        let spec = self.const_order.iter().map(String::as_str);
        let builtin = linux::constants().iter().map(|(n, _, _)| *n);
        let errnos = linux::errnos().map(|e| e.name);
        did_you_mean(name, spec.chain(builtin).chain(errnos))
    }

    fn constants(&mut self, entries: &Entries<Node>) {
        for (name, node) in &entries.0 {
            if !is_ident(&name.value) {
                self.error(
                    name.pos,
                    format!("`{}` is not a valid constant name", name.value),
                );
                continue;
            }
            if let Some(Int::Const(v)) = self.int(node, &format!("constant `{}`", name.value)) {
                self.constants.insert(name.value.clone(), v);
                self.const_order.push(name.value.clone());
            } else if !self.diags.iter().any(|d| d.pos.line == node.pos.line) {
                self.error(
                    node.pos,
                    format!("constant `{}` must not use saved values", name.value),
                );
            }
        }
    }

    fn resolve_syscall(&mut self, node: &Node) -> Option<(i64, String)> {
        let arch = self.opts.arch;
        match &node.value {
            Value::Int(n) => Some((*n, arch.syscall_name(*n).unwrap_or("syscall").to_string())),
            Value::Str(s) => {
                let s = s.trim();
                if let Some((_, nr)) = self.syscalls.iter().find(|(n, _)| n == s) {
                    return Some((*nr, s.to_string()));
                }
                if let Some(nr) = arch.syscall_number(s) {
                    return Some((nr as i64, s.to_string()));
                }
                if let Ok(n) = s.parse::<i64>() {
                    return Some((n, arch.syscall_name(n).unwrap_or("syscall").to_string()));
                }
                let custom = self.syscalls.iter().map(|(n, _)| n.as_str());
                let table = arch.syscalls().iter().map(|(n, _)| *n);
                let hint = did_you_mean(s, custom.chain(table));
                let mut d = Diagnostic::new(
                    node.pos,
                    format!("unknown syscall `{s}` for {arch} (add it under `syscalls:` if a module provides it)"),
                )
                .len(s.len());
                d.help = hint;
                self.diags.push(d);
                None
            }
            _ => {
                self.error(
                    node.pos,
                    format!("a syscall is a name or a number, not {}", node.kind()),
                );
                None
            }
        }
    }

    // ---- integers ------------------------------------------------------------------------

    fn int(&mut self, node: &Node, what: &str) -> Option<Int> {
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

    fn sizeof(&mut self, name: &str, pos: Pos) -> Option<i64> {
        if let Some(l) = self.layouts.get(name) {
            return Some(l.size as i64);
        }
        if let Ok(t) = parse_type(name, &|_| false) {
            if let Ok((s, _)) = self.layouts.size_align(&t, false) {
                return Some(s as i64);
            }
        }
        let hint = did_you_mean(name, self.layouts.names());
        self.error_help(pos, format!("sizeof: unknown struct `{name}`"), hint);
        None
    }

    fn int_expr(&mut self, text: &str, pos: Pos, what: &str) -> Option<Int> {
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
            match self.to_lua(&e) {
                Ok(l) => Some(Int::Runtime(l)),
                Err(m) => {
                    self.error(pos, format!("{what}: {m}"));
                    None
                }
            }
        }
    }

    /// Lua for an expression that uses saved values; constants are folded where possible.
    fn to_lua(&self, e: &Expr) -> Result<String, String> {
        Ok(match e {
            Expr::Num(n) => lua::int(*n),
            Expr::Name(n) => lua::int(
                self.lookup_const(n)
                    .ok_or(format!("unknown constant `{n}`"))?,
            ),
            Expr::Saved(n) => format!("saved.{n}"),
            Expr::Unary(op, i) => {
                let inner = self.to_lua(i)?;
                match op {
                    expr::UnOp::Neg => format!("(-{inner})"),
                    expr::UnOp::Not => format!("(~{inner})"),
                    expr::UnOp::LogicalNot => format!("(({inner}) == 0 and 1 or 0)"),
                }
            }
            Expr::Binary(op, a, b) => {
                format!("({} {} {})", self.to_lua(a)?, op.symbol(), self.to_lua(b)?)
            }
            Expr::Cast(t, i) => match expr::cast_bits(t) {
                Some((bits, false)) => {
                    format!("({} & {})", self.to_lua(i)?, lua::int((1i64 << bits) - 1))
                }
                Some((_, true)) => return Err(format!("a signed cast `({t})` of a saved value")),
                None => self.to_lua(i)?,
            },
            Expr::Call(n, _) => return Err(format!("`{n}(...)` cannot use saved values")),
            Expr::Type(t) => return Err(format!("the type `{t}` is not a value")),
        })
    }

    // ---- structs -------------------------------------------------------------------------

    fn structs(&mut self, entries: &Entries<Node>) {
        let names: HashSet<String> = entries.0.iter().map(|(n, _)| n.value.clone()).collect();
        let header_structs: HashSet<String> = self.layouts.names().map(String::from).collect();
        let known = |s: &str| names.contains(s) || header_structs.contains(s);
        let mut decls = Vec::new();
        let mut positions = HashMap::new();
        for (name, node) in &entries.0 {
            if !is_ident(&name.value) {
                self.error(
                    name.pos,
                    format!("`{}` is not a valid struct name", name.value),
                );
                continue;
            }
            positions.insert(name.value.clone(), name.pos);
            let (fields_node, packed, align) = match &node.value {
                Value::Seq(_) => (Some(node), false, None),
                Value::Map(_) => {
                    for (k, _) in node.as_map().unwrap_or_default() {
                        let key = k.as_str().unwrap_or("");
                        if !["packed", "align", "fields"].contains(&key) {
                            let hint = did_you_mean(key, ["packed", "align", "fields"]);
                            self.error_help(k.pos, format!("unknown struct key `{key}`"), hint);
                        }
                    }
                    let packed = matches!(
                        node.get("packed").map(|n| &n.value),
                        Some(Value::Bool(true))
                    );
                    let align = node.get("align").and_then(|a| match a.value {
                        Value::Int(n) if n > 0 => Some(n as usize),
                        _ => None,
                    });
                    (node.get("fields"), packed, align)
                }
                _ => {
                    self.error(
                        node.pos,
                        format!(
                            "struct `{}`: expected a list of fields or {{packed, align, fields}}",
                            name.value
                        ),
                    );
                    continue;
                }
            };
            let Some(fields) = fields_node.and_then(Node::as_seq) else {
                self.error(
                    node.pos,
                    format!("struct `{}` has no `fields:` list", name.value),
                );
                continue;
            };
            let mut decl = StructDecl {
                name: name.value.clone(),
                fields: Vec::new(),
                packed,
                align,
            };
            let mut seen = HashSet::new();
            for f in fields {
                let entry = f.as_map().filter(|m| m.len() == 1);
                let Some([(fname, ftype)]) = entry else {
                    self.error(f.pos, "a field is a one-entry map `- name: type`");
                    continue;
                };
                let fname_s = fname.as_str().unwrap_or("").to_string();
                if !is_ident(&fname_s) {
                    self.error(fname.pos, format!("`{fname_s}` is not a valid field name"));
                    continue;
                }
                if !seen.insert(fname_s.clone()) {
                    self.error(fname.pos, format!("field `{fname_s}` appears twice"));
                }
                let Some(ttext) = ftype.as_str() else {
                    self.error(
                        ftype.pos,
                        "a field type is a string such as `u32` or `char[8]`",
                    );
                    continue;
                };
                match parse_type(ttext, &known) {
                    Ok(t) => decl.fields.push((fname_s, t)),
                    Err(e) => {
                        let hint = did_you_mean(
                            ttext,
                            names.iter().map(String::as_str).chain([
                                "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "ptr",
                            ]),
                        );
                        self.error_help(ftype.pos, e, hint);
                    }
                }
            }
            decls.push(decl);
        }
        match Layouts::build(&decls) {
            Ok(ls) => {
                for n in ls.names().map(String::from).collect::<Vec<_>>() {
                    if let Some(l) = ls.get(&n) {
                        if let Some(existing) = self.layouts.get(&n).cloned() {
                            self.compare_with_header(
                                &existing,
                                l,
                                positions.get(&n).copied().unwrap_or_default(),
                            );
                        }
                        self.layouts.insert(l.clone());
                    }
                }
            }
            Err((name, e)) => {
                let pos = positions.get(&name).copied().unwrap_or_default();
                self.error(pos, format!("struct `{name}`: {e}"));
            }
        }
    }

    /// A struct declared in the spec and found in a header must agree with the header.
    fn compare_with_header(&mut self, header: &Layout, spec: &Layout, pos: Pos) {
        for hf in &header.fields {
            match spec.field(&hf.name) {
                Some(sf) if sf.offset != hf.offset || sf.size != hf.size => self.error(
                    pos,
                    format!(
                        "struct `{}`: field `{}` is at offset {} with size {} here, but at {} with size {} in the header",
                        spec.name, hf.name, sf.offset, sf.size, hf.offset, hf.size
                    ),
                ),
                None => self.error(pos, format!("struct `{}`: the header has a field `{}` that the spec lacks", spec.name, hf.name)),
                _ => {}
            }
        }
        if header.size != spec.size {
            self.error(
                pos,
                format!(
                    "struct `{}` is {} bytes here but {} in the header",
                    spec.name, spec.size, header.size
                ),
            );
        }
    }

    fn pack_struct(&mut self, layout: &Layout, set: Option<&Node>, base: usize) -> Option<Packed> {
        let mut values: HashMap<String, &Node> = HashMap::new();
        if let Some(set) = set {
            let Some(m) = set.as_map() else {
                self.error(
                    set.pos,
                    format!(
                        "`set:` for struct `{}` must be a map of field values",
                        layout.name
                    ),
                );
                return None;
            };
            for (k, v) in m {
                let key = k.as_str().unwrap_or("");
                if layout.field(key).is_none() {
                    let hint = did_you_mean(key, layout.fields.iter().map(|f| f.name.as_str()));
                    self.error_help(
                        k.pos,
                        format!("struct `{}` has no field `{key}`", layout.name),
                        hint,
                    );
                } else {
                    values.insert(key.to_string(), v);
                }
            }
        }
        let mut out = Packed {
            fmt: Vec::new(),
            values: Vec::new(),
            subs: Vec::new(),
        };
        let mut cursor = 0;
        let mut ok = true;
        for f in &layout.fields {
            if f.offset > cursor {
                out.fmt.push(format!("x{}", f.offset - cursor));
            }
            let label = format!("{}.{}", layout.name, f.name);
            ok &= self.pack_value(
                &f.ty,
                values.get(&f.name).copied(),
                base + f.offset,
                &label,
                &mut out,
            );
            cursor = f.offset + f.size;
        }
        if layout.size > cursor {
            out.fmt.push(format!("x{}", layout.size - cursor));
        }
        ok.then_some(out)
    }

    fn pack_value(
        &mut self,
        ty: &FieldType,
        value: Option<&Node>,
        offset: usize,
        label: &str,
        out: &mut Packed,
    ) -> bool {
        match ty {
            FieldType::Int { bytes, signed } => {
                out.fmt
                    .push(format!("{}{}", if *signed { 'i' } else { 'u' }, bytes * 8));
                let v = match value {
                    None => Int::Const(0),
                    Some(n) => match self.int(n, label) {
                        Some(v) => v,
                        None => return false,
                    },
                };
                if let (Int::Const(c), Some(n)) = (&v, value) {
                    if !fits(*c, *bytes, *signed) {
                        self.error(
                            n.pos,
                            format!("{c} is out of range for {ty} field `{label}`"),
                        );
                        return false;
                    }
                }
                out.values.push(v.lua());
                true
            }
            FieldType::Chars(n) => {
                out.fmt.push(format!("z{n}"));
                let text = match value {
                    None => String::new(),
                    Some(node) => match node.as_str() {
                        Some(s) if s.len() <= *n => s.to_string(),
                        Some(s) => {
                            self.error(
                                node.pos,
                                format!("`{label}` holds {n} bytes; \"{s}\" has {}", s.len()),
                            );
                            return false;
                        }
                        None => {
                            self.error(
                                node.pos,
                                format!("`{label}` is char[{n}]: expected a string"),
                            );
                            return false;
                        }
                    },
                };
                out.values.push(lua::str(&text));
                true
            }
            FieldType::Array(elem, n) => {
                let items: Vec<&Node> = match value {
                    None => Vec::new(),
                    Some(node) => match node.as_seq() {
                        Some(s) if s.len() <= *n => s.iter().collect(),
                        Some(s) => {
                            self.error(
                                node.pos,
                                format!("`{label}` has {n} elements; {} were given", s.len()),
                            );
                            return false;
                        }
                        None => {
                            self.error(node.pos, format!("`{label}` is an array: expected a list"));
                            return false;
                        }
                    },
                };
                let Ok((esize, _)) = self.layouts.size_align(elem, false) else {
                    return false;
                };
                let mut ok = true;
                for i in 0..*n {
                    ok &= self.pack_value(
                        elem,
                        items.get(i).copied(),
                        offset + i * esize,
                        &format!("{label}[{i}]"),
                        out,
                    );
                }
                ok
            }
            FieldType::Struct(name) => {
                let Some(layout) = self.layouts.get(name).cloned() else {
                    return false;
                };
                match self.pack_struct(&layout, value, offset) {
                    Some(p) => {
                        out.fmt.extend(p.fmt);
                        out.values.extend(p.values);
                        out.subs.extend(p.subs);
                        true
                    }
                    None => false,
                }
            }
            FieldType::Ptr => {
                out.fmt.push("ptr".into());
                match value {
                    None => {
                        out.values.push("0".into());
                        true
                    }
                    Some(n)
                        if n.as_map().is_some()
                            && n.get("bad_ptr").is_none()
                            && n.get("sizeof").is_none() =>
                    {
                        match self.buffer(n) {
                            Some(b) => {
                                out.values.push("0".into());
                                out.subs.push((offset, b));
                                true
                            }
                            None => false,
                        }
                    }
                    Some(n) => match self.int(n, label) {
                        Some(v) => {
                            out.values.push(v.lua());
                            true
                        }
                        None => false,
                    },
                }
            }
        }
    }

    // ---- arguments and buffers -----------------------------------------------------------

    const BUFFER_KEYS: [&'static str; 7] = ["cstr", "str", "bytes", "out", "struct", "set", "len"];

    fn arg(&mut self, node: &Node, index: usize) -> Option<Arg> {
        let what = format!("argument {}", index + 1);
        if let Value::Map(m) = &node.value {
            let is_int =
                m.len() == 1 && (node.get("sizeof").is_some() || node.get("bad_ptr").is_some());
            if !is_int {
                return self.buffer(node).map(Arg::Buf);
            }
        }
        self.int(node, &what).map(Arg::Int)
    }

    fn buffer(&mut self, node: &Node) -> Option<Buffer> {
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
                (lua::string(&bytes), Vec::new())
            }
            "bytes" => {
                let Some(s) = v.scalar_text() else {
                    self.error(v.pos, "`bytes:` takes hex digits (\"de ad be ef\")");
                    return None;
                };
                match hex(&s) {
                    Ok(b) => (lua::string(&b), Vec::new()),
                    Err(e) => {
                        self.error(v.pos, format!("bytes: {e}"));
                        return None;
                    }
                }
            }
            "out" => {
                let size = self.int(v, "out")?;
                if let Int::Const(n) = size {
                    if !(0..=(256 << 20)).contains(&n) {
                        self.error(
                            v.pos,
                            format!("out: {n} bytes is out of range (0 to 256 MiB)"),
                        );
                        return None;
                    }
                }
                return Some(Buffer {
                    data: size.lua(),
                    len: None,
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
                let mut call = vec![lua::str(&p.fmt.join(" "))];
                call.extend(p.values);
                (format!("provium.pack({})", call.join(", ")), p.subs)
            }
        };
        if node.get("set").is_some() && forms[0] != "struct" {
            self.error(node.pos, "`set:` goes with `struct:`");
            return None;
        }
        let data = match &len {
            Some(l) => format!("provium.pad({data}, {})", l.lua()),
            None => data,
        };
        // Only `{out: N}` sub-buffers come back; argument buffers always do.
        Some(Buffer {
            data,
            len: None,
            subs,
            output: false,
        })
    }

    fn call(
        &mut self,
        syscall: &Node,
        args: &[Node],
        expect: Option<&Node>,
        save: Option<&Node>,
        timeout: Option<&At<f64>>,
        default_expect: Option<&str>,
    ) -> Option<Call> {
        // Keep checking after an unknown syscall, so one run reports every problem.
        let resolved = self.resolve_syscall(syscall);
        let (nr, name) = resolved.clone().unwrap_or((0, String::new()));
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
        let reads_before = self.reads.len();
        let mut call = Call {
            line: syscall.pos.line,
            nr,
            name,
            args: Vec::new(),
            bufs: Vec::new(),
            ptrs: Vec::new(),
            timeout: timeout.map(|t| t.value),
            expect: None,
            saves: Vec::new(),
            reads: Vec::new(),
        };
        let mut ok = true;
        for (i, a) in args.iter().enumerate() {
            match self.arg(a, i) {
                Some(Arg::Int(v)) => call.args.push(v.lua()),
                Some(Arg::Buf(b)) => {
                    call.args.push("0".into());
                    call.bufs.push((i, b.data.clone()));
                    flatten_subs(&b, Some(i), None, &mut call.ptrs);
                }
                None => ok = false,
            }
        }
        call.reads = self.reads[reads_before..]
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        let expect = match (expect, default_expect) {
            (Some(e), _) => self.expect(e),
            (None, Some(d)) => Some(Expect {
                line: syscall.pos.line,
                table: format!("{{{d} = true}}"),
                summary: d.into(),
            }),
            (None, None) => None,
        };
        call.expect = expect;
        if let Some(s) = save {
            call.saves = self.save(s)?;
        }
        (ok && resolved.is_some()).then_some(call)
    }

    // ---- expectations --------------------------------------------------------------------

    fn errno_name(&mut self, node: &Node) -> Option<String> {
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

    fn comparison(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Map(m) => {
                let mut parts = Vec::new();
                for (k, v) in m {
                    let op = k.as_str().unwrap_or("");
                    if !["eq", "ne", "lt", "le", "gt", "ge"].contains(&op) {
                        let hint = did_you_mean(op, ["eq", "ne", "lt", "le", "gt", "ge"]);
                        self.error_help(
                            k.pos,
                            format!("unknown comparison `{op}` (eq, ne, lt, le, gt, ge)"),
                            hint,
                        );
                        return None;
                    }
                    let v = self.int(v, what)?;
                    parts.push(format!("{op} = {}", v.lua()));
                }
                Some(format!("{{{}}}", parts.join(", ")))
            }
            _ => {
                let v = self.int(node, what)?;
                Some(format!("{{eq = {}}}", v.lua()))
            }
        }
    }

    fn expect(&mut self, node: &Node) -> Option<Expect> {
        let line = node.pos.line;
        let simple = |table: String, summary: String| {
            Some(Expect {
                line,
                table,
                summary,
            })
        };
        match &node.value {
            Value::Str(s) => match s.trim() {
                "ok" => simple("{ok = true}".into(), "ok".into()),
                "died" => simple("{died = true}".into(), "died".into()),
                "timed_out" => simple("{timed_out = true}".into(), "timed out".into()),
                "any" => simple("{}".into(), "any".into()),
                t if t.starts_with('E')
                    && is_ident(t)
                    && t.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
                {
                    let name = self.errno_name(node)?;
                    simple(format!("{{errno = {{{}}}}}", lua::str(&name)), name)
                }
                _ => {
                    let v = self.int(node, "expect")?;
                    simple(
                        format!("{{ret = {{eq = {}}}}}", v.lua()),
                        format!("ret = {s}"),
                    )
                }
            },
            Value::Int(i) => simple(
                format!("{{ret = {{eq = {}}}}}", lua::int(*i)),
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
                let quoted: Vec<String> = names.iter().map(|n| lua::str(n)).collect();
                simple(
                    format!("{{errno = {{{}}}}}", quoted.join(", ")),
                    names.join(" or "),
                )
            }
            Value::Map(m) => {
                let mut parts = Vec::new();
                let mut summary = Vec::new();
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("");
                    match key {
                        "ret" => {
                            parts.push(format!("ret = {}", self.comparison(v, "ret")?));
                            summary.push("ret".to_string());
                        }
                        "ok" => parts.push("ok = true".into()),
                        "errno" => {
                            let names: Vec<String> = match &v.value {
                                Value::Seq(items) => {
                                    items.iter().filter_map(|i| self.errno_name(i)).collect()
                                }
                                _ => vec![self.errno_name(v)?],
                            };
                            let quoted: Vec<String> = names.iter().map(|n| lua::str(n)).collect();
                            parts.push(format!("errno = {{{}}}", quoted.join(", ")));
                            summary.push(names.join(" or "));
                        }
                        "died" => {
                            parts.push("died = true".into());
                            match &v.value {
                                Value::Bool(true) | Value::Null => {}
                                Value::Map(dm) => {
                                    for (dk, dv) in dm {
                                        match dk.as_str().unwrap_or("") {
                                            "exit_code" => parts.push(format!(
                                                "exit_code = {}",
                                                self.int(dv, "exit_code")?.lua()
                                            )),
                                            "signal" => {
                                                let sig =
                                                    match dv.as_str().and_then(linux::constant) {
                                                        Some(s) => s,
                                                        None => match self.int(dv, "signal")? {
                                                            Int::Const(s) => s,
                                                            Int::Runtime(_) => return None,
                                                        },
                                                    };
                                                parts.push(format!("signal = {sig}"));
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
                            parts.push("timed_out = true".into());
                            summary.push("timed out".into());
                        }
                        "out" => {
                            parts.push(format!("out = {}", self.out_checks(v)?));
                        }
                        other => {
                            let known = ["ret", "errno", "ok", "out", "died", "timed_out"];
                            let hint = did_you_mean(other, known);
                            self.error_help(k.pos, format!("unknown expectation `{other}`"), hint);
                            return None;
                        }
                    }
                }
                simple(format!("{{{}}}", parts.join(", ")), summary.join(", "))
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

    fn out_checks(&mut self, node: &Node) -> Option<String> {
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
                        checks.push(format!("{{{key} = {}}}", lua::str(&s)));
                    }
                    "bytes" => match hex(&cv.scalar_text().unwrap_or_default()) {
                        Ok(b) => checks.push(format!("{{starts_with = {}}}", lua::string(&b))),
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
                            let cmp = self.comparison(fv, &format!("field `{path}`"))?;
                            let inner = cmp.trim_start_matches('{').trim_end_matches('}');
                            checks.push(format!(
                                "{{field = {}, at = {offset}, type = {}, {inner}}}",
                                lua::str(&format!("{}.{path}", layout.name)),
                                lua::str(&ty)
                            ));
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
            entries.push(format!("[{idx}] = {{{}}}", checks.join(", ")));
        }
        Some(format!("{{{}}}", entries.join(", ")))
    }

    /// The offset and pack type of `a.b.c` inside a layout.
    fn field_path(&mut self, layout: &Layout, path: &str, pos: Pos) -> Option<(usize, String)> {
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
                (FieldType::Int { bytes, signed }, true) => {
                    return Some((
                        offset,
                        format!("{}{}", if *signed { 'i' } else { 'u' }, bytes * 8),
                    ))
                }
                (FieldType::Ptr, true) => return Some((offset, "u64".into())),
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

    fn save(&mut self, node: &Node) -> Option<Vec<Save>> {
        match &node.value {
            Value::Str(name) => {
                if !is_ident(name) {
                    self.error(node.pos, format!("`{name}` is not a valid name to save"));
                    return None;
                }
                self.saved.insert(name.clone());
                Some(vec![Save {
                    name: name.clone(),
                    value: "r.ret".into(),
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
                    let value = match &v.value {
                        Value::Str(s) if s == "ret" => "r.ret".to_string(),
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
                                if !["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]
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
                            let fmt = if offset > 0 {
                                format!("x{offset} {ty}")
                            } else {
                                ty
                            };
                            format!("provium.unpack({}, r.bufs[{idx}])", lua::str(&fmt))
                        }
                        _ => {
                            self.error(v.pos, "save `ret`, or a value from a buffer `{out: INDEX, at: OFFSET, type: i32}`");
                            return None;
                        }
                    };
                    self.saved.insert(name.clone());
                    out.push(Save { name, value });
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

    // ---- conditions, credentials ---------------------------------------------------------

    fn requires(&mut self, r: &types::Requires) -> Requires {
        let mut out = Requires {
            line: 0,
            ..Default::default()
        };
        if let Some(k) = &r.kernel {
            out.line = k.pos.line;
            if let Err(e) = parse_version_range(&k.value) {
                self.error(k.pos, e);
            }
            out.kernel = Some(k.value.clone());
        }
        if let Some(a) = &r.arch {
            out.line = out.line.max(a.pos.line);
            if a.value.parse::<Arch>().is_err() && a.value != "aarch64" {
                self.error(a.pos, format!("unknown arch `{}`", a.value));
            }
            out.arch = Some(a.value.clone());
        }
        if let Some(s) = &r.syscall {
            out.line = out.line.max(s.pos.line);
            let names: Vec<Node> = match &s.value {
                Value::Seq(items) => items.clone(),
                _ => vec![s.clone()],
            };
            for n in &names {
                if let Some((nr, name)) = self.resolve_syscall(n) {
                    out.syscalls.push((name, nr));
                }
            }
        }
        if let Some(root) = &r.root {
            out.line = out.line.max(root.pos.line);
            out.root = Some(root.value);
        }
        out
    }

    fn creds(&mut self, c: &types::Creds) -> Creds {
        let uid = c.uid.as_ref().map(|u| u.value).unwrap_or(0);
        for cap in &c.caps {
            let name = cap.value.to_ascii_uppercase();
            let full = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            if linux::capability(&full).is_none() {
                let hint = did_you_mean(&full, linux::capabilities());
                self.error_help(cap.pos, format!("unknown capability `{}`", cap.value), hint);
            }
        }
        Creds {
            uid,
            gid: c.gid.as_ref().map(|g| g.value).unwrap_or(uid),
            groups: c.groups.clone(),
            caps: c.caps.iter().map(|c| c.value.clone()).collect(),
        }
    }

    // ---- steps and cases -----------------------------------------------------------------

    fn lua_block(&mut self, code: &At<String>) -> model::LuaBlock {
        // A block scalar (`lua: |`) starts on the line after the key.
        let at = crate::diag::byte_offset(self.source, code.pos);
        let first_char = self.source[at..].chars().next();
        let first_line = if matches!(first_char, Some('|' | '>')) {
            code.pos.line + 1
        } else {
            code.pos.line
        };
        model::LuaBlock {
            code: code.value.clone(),
            first_line,
            row: self.row_lua.clone(),
        }
    }

    fn step(&mut self, step: &At<types::Step>, default_expect: Option<&str>) -> Option<Step> {
        let s = &step.value;
        let kinds = [s.syscall.is_some(), s.lua.is_some(), s.exec.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.error(
                step.pos,
                "a step has exactly one of `syscall`, `lua` or `exec`",
            );
            return None;
        }
        let creds = s.as_.as_ref().map(|c| self.creds(c));
        let kind = if let Some(sys) = &s.syscall {
            StepKind::Call(self.call(
                sys,
                &s.args,
                s.expect.as_ref(),
                s.save.as_ref(),
                s.timeout.as_ref(),
                default_expect,
            )?)
        } else if let Some(code) = &s.lua {
            StepKind::Lua(self.lua_block(code))
        } else {
            StepKind::Exec(s.exec.as_ref()?.value.clone())
        };
        if s.syscall.is_none() && (s.expect.is_some() || !s.args.is_empty() || s.save.is_some()) {
            self.error(step.pos, "`args`, `expect` and `save` go with `syscall`");
        }
        Some(Step {
            line: step.pos.line,
            label: s.name.as_ref().map(|n| n.value.clone()),
            creds,
            kind,
        })
    }

    fn case(&mut self, case: &At<types::Case>) -> Vec<model::Case> {
        let rows = match template::rows(&case.value, case.pos) {
            Ok(rows) => rows,
            Err(d) => {
                self.diags.push(d);
                return Vec::new();
            }
        };
        let count = rows.as_ref().map_or(1, Vec::len);
        self.expanded = self.expanded.saturating_add(count);
        if self.expanded > template::MAX_CASES_PER_FILE {
            if self.expanded - count <= template::MAX_CASES_PER_FILE {
                self.error(
                    case.pos,
                    format!(
                        "the spec expands to more than {} cases; split it into several files",
                        template::fmt_thousands(template::MAX_CASES_PER_FILE)
                    ),
                );
            }
            return Vec::new();
        }
        let Some(rows) = rows else {
            if template::has_templates(&case.value) {
                return match template::render_case(&case.value, &template::empty_row(case.pos)) {
                    Ok(rendered) => self
                        .one_case(&rendered, case.pos.line)
                        .into_iter()
                        .collect(),
                    Err(d) => {
                        self.diags.push(d);
                        Vec::new()
                    }
                };
            }
            return self
                .one_case(&case.value, case.pos.line)
                .into_iter()
                .collect();
        };
        let mut out = Vec::new();
        for row in rows {
            self.row_lua = template::row_lua(&row);
            match template::render_case(&case.value, &row) {
                Ok(rendered) => out.extend(self.one_case(&rendered, row.pos.line)),
                Err(d) => self.diags.push(d),
            }
        }
        self.row_lua = "{}".into();
        out
    }

    fn one_case(&mut self, c: &types::Case, line: u32) -> Option<model::Case> {
        let kinds = [c.syscall.is_some(), c.steps.is_some(), c.lua.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.error(
                c.name.pos,
                format!(
                    "case `{}` needs exactly one of `syscall`, `steps` or `lua`",
                    c.name.value
                ),
            );
            return None;
        }
        if c.syscall.is_none() && (c.expect.is_some() || !c.args.is_empty() || c.save.is_some()) {
            self.error(
                c.name.pos,
                "`args`, `expect` and `save` go with `syscall`; in `steps`, give them per step",
            );
            return None;
        }
        let creds = c.as_.as_ref().map(|cr| self.creds(cr));
        let requires = c.requires.as_ref().map(|r| self.requires(r));
        let body = if let Some(sys) = &c.syscall {
            if c.expect.is_none() {
                self.error(
                    c.name.pos,
                    format!(
                        "case `{}` has no `expect:` (use `expect: any` to only run it)",
                        c.name.value
                    ),
                );
                return None;
            }
            Body::Call(self.call(
                sys,
                &c.args,
                c.expect.as_ref(),
                c.save.as_ref(),
                c.timeout.as_ref(),
                None,
            )?)
        } else if let Some(steps) = &c.steps {
            let steps: Vec<Step> = steps.iter().filter_map(|s| self.step(s, None)).collect();
            Body::Steps(steps)
        } else {
            Body::Lua(self.lua_block(c.lua.as_ref()?))
        };
        Some(model::Case {
            name: c.name.value.clone(),
            line,
            requires,
            xfail: c.xfail.as_ref().map(|x| x.value.clone()),
            skip: c.skip.as_ref().map(|x| x.value.clone()),
            creds,
            body,
        })
    }
}

fn flatten_subs(b: &Buffer, buf_idx: Option<usize>, parent: Option<usize>, out: &mut Vec<Ptr>) {
    for (offset, sub) in &b.subs {
        out.push(Ptr {
            buf_idx,
            parent,
            offset: *offset,
            data: sub.data.clone(),
            len: sub.len.clone(),
            output: sub.output,
        });
        let me = out.len();
        flatten_subs(sub, None, Some(me), out);
    }
}

fn fits(v: i64, bytes: usize, signed: bool) -> bool {
    if bytes >= 8 {
        return true;
    }
    let bits = bytes as u32 * 8;
    if signed {
        v >= -(1i64 << (bits - 1)) && v < (1i64 << (bits - 1))
    } else {
        // Negative values are accepted as their two's complement (-1 for all ones).
        v >= -(1i64 << (bits - 1)) && v < (1i64 << bits)
    }
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
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
    if digits.len() % 2 != 0 {
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

/// Checks a kernel version range such as `>=5.6, <6.2`.
pub fn parse_version_range(text: &str) -> Result<Vec<(String, Vec<u32>)>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        let op_len = p.chars().take_while(|c| "<>=!".contains(*c)).count();
        let (op, ver) = p.split_at(op_len);
        let op = if op.is_empty() { "==" } else { op };
        if !["<", "<=", ">", ">=", "==", "="].contains(&op) {
            return Err(format!(
                "bad comparison `{op}` in kernel range `{text}` (use >=, >, <=, <, ==)"
            ));
        }
        let nums: Result<Vec<u32>, _> = ver.trim().split('.').map(str::parse).collect();
        match nums {
            Ok(n) if !n.is_empty() && n.len() <= 3 => out.push((op.to_string(), n)),
            _ => {
                return Err(format!(
                    "bad kernel version `{}` in `{text}` (e.g. >=5.6, <6.2)",
                    ver.trim()
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
