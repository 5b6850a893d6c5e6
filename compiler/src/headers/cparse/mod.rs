//! Struct and union layouts from C headers.
//!
//! The headers are preprocessed by gcc (`gcc -E`) and parsed with lang-c, which copes with the
//! GNU extensions uapi headers use; the layouts are then computed here with the x86_64 System V
//! rules: natural alignment, tail padding, bitfields that do not straddle their storage unit,
//! unions, flexible array members, `__attribute__((packed))` and `aligned(N)`. A test compares
//! every number with what gcc's own `offsetof`/`sizeof` say for more than 30 real structs.

use crate::layout::{FieldType, Layout};
use lang_c::ast;
use lang_c::span::Node;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A C type as far as layout is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum CType {
    /// An integer type.
    Int {
        /// Bytes.
        size: usize,
        /// Signed or not.
        signed: bool,
    },
    /// A floating-point type.
    Float {
        /// Bytes.
        size: usize,
        /// Alignment in bytes.
        align: usize,
    },
    /// Any pointer.
    Ptr,
    /// An array of a type, with its length (none for a flexible array).
    Array(Box<CType>, Option<usize>),
    /// A struct or union, by its index in [`CTypes::records`].
    Record(usize),
    /// `void`.
    Void,
    /// A function type (only pointed to).
    Func,
}

/// A record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `struct`.
    Struct,
    /// `union`.
    Union,
}

/// A member of a record as declared.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its name (none for an anonymous struct or union member).
    pub name: Option<String>,
    /// Its type.
    pub ty: CType,
    /// Its width, for a bitfield.
    pub bits: Option<u32>,
    /// Its `__attribute__((aligned(N)))`.
    pub align: Option<usize>,
}

/// A struct or union as declared.
#[derive(Debug, Clone)]
pub struct Record {
    /// Struct or union.
    pub kind: Kind,
    /// Its tag (none for an anonymous record).
    pub name: Option<String>,
    /// Its members in order.
    pub members: Vec<Member>,
    /// `__attribute__((packed))`.
    pub packed: bool,
    /// `__attribute__((aligned(N)))`.
    pub align: Option<usize>,
    /// Whether its members were declared (not only a forward declaration).
    pub complete: bool,
    /// Where the definition is (`linux/openat2.h:19`).
    pub origin: String,
}

/// A computed field, with anonymous members flattened into their parent.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldLayout {
    /// The field's name (anonymous members' fields by their own names).
    pub name: String,
    /// Byte offset in the record.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// For bitfields: the bit offset within the record and the width.
    pub bits: Option<(usize, u32)>,
    /// Its type.
    pub ty: CType,
}

/// A record laid out as the C compiler does.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLayout {
    /// Struct or union.
    pub kind: Kind,
    /// Its tag.
    pub name: String,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// Its fields in order.
    pub fields: Vec<FieldLayout>,
    /// Where it is declared (`file:line`).
    pub origin: String,
}

/// Everything the parsed headers declare.
#[derive(Debug, Default)]
pub struct CTypes {
    /// Records in declaration order.
    pub records: Vec<Record>,
    /// Index into `records` by tag.
    pub by_name: HashMap<String, usize>,
    /// `typedef`s: the type and its alignment attribute.
    pub typedefs: HashMap<String, (CType, Option<usize>)>,
}

/// Why headers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The preprocessor (gcc -E) failed.
    #[error("running gcc to preprocess headers: {0} (install gcc)")]
    Gcc(String),
    /// The preprocessed text did not parse as C.
    #[error("{0}")]
    Syntax(String),
}

/// The include directories for a root such as `/usr/include`: the multiarch directory first.
pub fn include_dirs(root: &Path) -> Vec<PathBuf> {
    let arch = root.join("x86_64-linux-gnu");
    let mut dirs = Vec::new();
    if arch.is_dir() {
        dirs.push(arch);
    }
    dirs.push(root.to_path_buf());
    dirs
}

/// The preprocessed code with every `#define` left in place (`gcc -E -dD`).
pub fn preprocess_with_defines(root: &Path, headers: &[String]) -> Result<String, ParseError> {
    run_cpp(root, headers, "-dD")
}

/// Runs `gcc -E` over `#include` lines for `headers`; `-dM` gives the macros instead.
pub fn preprocess(root: &Path, headers: &[String], macros: bool) -> Result<String, ParseError> {
    run_cpp(root, headers, if macros { "-dM" } else { "" })
}

/// Separates `#define`s (with their `file:line`) from the code; their lines become blank so
/// that the code's line markers still count right.
pub fn split_defines(text: &str, root: &Path) -> (String, Vec<(String, super::defines::Define)>) {
    let lines = LineMap::new(text);
    let mut code = String::with_capacity(text.len());
    let mut defines = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("#define") || t.starts_with("#undef") {
            if t.starts_with("#define") {
                for d in super::defines::parse(line) {
                    let origin = lines.origin(offset, root);
                    if !origin.starts_with("<") {
                        defines.push((origin, d));
                    }
                }
            }
            code.push('\n');
        } else {
            code.push_str(line);
        }
        offset += line.len();
    }
    (code, defines)
}

fn run_cpp(root: &Path, headers: &[String], mode: &str) -> Result<String, ParseError> {
    let mut source = String::new();
    for h in headers {
        source.push_str(&format!("#include <{h}>\n"));
    }
    let mut cmd = Command::new(std::env::var("PROVIUM_CC").unwrap_or_else(|_| "gcc".into()));
    cmd.args(["-E", "-nostdinc", "-x", "c"]);
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    for d in include_dirs(root) {
        cmd.arg("-I").arg(d);
    }
    // glibc's headers pull in the compiler's own (stddef.h and friends).
    if let Some(gcc_inc) = gcc_include_dir() {
        cmd.arg("-I").arg(gcc_inc);
    }
    cmd.arg("-");
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| ParseError::Gcc(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(source.as_bytes())
            .map_err(|e| ParseError::Gcc(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ParseError::Gcc(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or(err.trim());
        return Err(ParseError::Gcc(first.to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn gcc_include_dir() -> Option<PathBuf> {
    let out = Command::new("gcc")
        .arg("-print-file-name=include")
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}

/// Maps offsets of preprocessed text back to `file:line` through gcc's line markers.
struct LineMap {
    /// (offset where a marker's line starts, file, line of the next text line)
    marks: Vec<(usize, String, u32)>,
    text_lines: Vec<usize>,
}

impl LineMap {
    fn new(text: &str) -> LineMap {
        let mut marks = Vec::new();
        let mut text_lines = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            text_lines.push(offset);
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.split_whitespace();
                if let (Some(n), Some(f)) = (parts.next(), parts.next()) {
                    if let Ok(n) = n.parse::<u32>() {
                        marks.push((offset + line.len(), f.trim_matches('"').to_string(), n));
                    }
                }
            }
            offset += line.len();
        }
        LineMap { marks, text_lines }
    }

    fn origin(&self, offset: usize, root: &Path) -> String {
        let Some(i) = self.marks.iter().rposition(|(o, _, _)| *o <= offset) else {
            return String::new();
        };
        let (start, file, line) = &self.marks[i];
        let lines_between = self
            .text_lines
            .iter()
            .filter(|&&l| l >= *start && l <= offset)
            .count()
            .saturating_sub(1);
        let file = include_dirs(root)
            .iter()
            .find_map(|d| {
                Path::new(file)
                    .strip_prefix(d)
                    .ok()
                    .map(|p| p.display().to_string())
            })
            .unwrap_or_else(|| file.clone());
        format!("{file}:{}", *line as usize + lines_between)
    }
}

/// How deep brackets may nest in headers handed to the C parser: real uapi headers nest a few
/// levels; lang-c recurses once per level, and a thread's stack must not run out.
const MAX_NESTING: usize = 64;

/// Parses preprocessed C and collects records and typedefs.
pub fn parse(preprocessed: &str, root: &Path) -> Result<CTypes, ParseError> {
    let mut depth = 0usize;
    for (i, b) in preprocessed.bytes().enumerate() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let line = preprocessed[..i].matches('\n').count() + 1;
                    return Err(ParseError::Syntax(format!(
                        "cannot parse the headers: brackets nest more than {MAX_NESTING} levels \
                         deep (line {line} of the preprocessed text)"
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let config = lang_c::driver::Config::with_gcc();
    let parse =
        lang_c::driver::parse_preprocessed(&config, preprocessed.to_string()).map_err(|e| {
            let (loc, _) = e.get_location();
            ParseError::Syntax(format!(
                "cannot parse the headers at {}:{}: expected {:?}",
                loc.file, loc.line, e.expected
            ))
        })?;
    let lines = LineMap::new(&parse.source);
    let mut types = CTypes::default();
    for decl in &parse.unit.0 {
        if let ast::ExternalDeclaration::Declaration(d) = &decl.node {
            types.declaration(&d.node, &lines, root);
        }
    }
    Ok(types)
}

fn attributes<'a>(exts: impl Iterator<Item = &'a Node<ast::Extension>>) -> (bool, Option<usize>) {
    let mut packed = false;
    let mut align = None;
    for e in exts {
        if let ast::Extension::Attribute(a) = &e.node {
            match a.name.node.trim_matches('_') {
                "packed" => packed = true,
                "aligned" => {
                    let n = a
                        .arguments
                        .first()
                        .and_then(|x| const_eval(&x.node))
                        .unwrap_or(16) as usize;
                    align = Some(align.map_or(n, |a: usize| a.max(n)));
                }
                _ => {}
            }
        }
    }
    (packed, align)
}

fn const_eval(e: &ast::Expression) -> Option<i64> {
    const_eval_with(e, &|_| None)
}

/// Evaluates a constant expression; `sizeof(T)` goes to `size_of`.
fn const_eval_with(
    e: &ast::Expression,
    size_of: &dyn Fn(&ast::TypeName) -> Option<i64>,
) -> Option<i64> {
    use ast::{BinaryOperator as B, Expression as E};
    match e {
        E::Constant(c) => match &c.node {
            ast::Constant::Integer(i) => {
                let radix = match i.base {
                    ast::IntegerBase::Decimal => 10,
                    ast::IntegerBase::Octal => 8,
                    ast::IntegerBase::Hexadecimal => 16,
                    ast::IntegerBase::Binary => 2,
                };
                i64::from_str_radix(&i.number, radix).ok()
            }
            ast::Constant::Character(c) => c.trim_matches('\'').chars().next().map(|c| c as i64),
            _ => None,
        },
        E::BinaryOperator(b) => {
            let (l, r) = (
                const_eval_with(&b.node.lhs.node, size_of)?,
                const_eval_with(&b.node.rhs.node, size_of)?,
            );
            Some(match b.node.operator.node {
                B::Plus => l + r,
                B::Minus => l - r,
                B::Multiply => l * r,
                B::Divide if r != 0 => l / r,
                B::ShiftLeft => l << r,
                B::ShiftRight => l >> r,
                B::BitwiseOr => l | r,
                B::BitwiseAnd => l & r,
                _ => return None,
            })
        }
        E::Cast(c) => const_eval_with(&c.node.expression.node, size_of),
        E::SizeOfTy(t) => size_of(&t.node.0.node),
        E::UnaryOperator(u) => {
            let v = const_eval_with(&u.node.operand.node, size_of)?;
            match u.node.operator.node {
                ast::UnaryOperator::Minus => Some(-v),
                ast::UnaryOperator::Plus => Some(v),
                ast::UnaryOperator::Complement => Some(!v),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The base type a specifier list names (before pointers and arrays).
struct Base {
    ty: CType,
    align: Option<usize>,
}

impl CTypes {
    fn declaration(&mut self, d: &ast::Declaration, lines: &LineMap, root: &Path) {
        let typedef = d.specifiers.iter().any(|s| {
            matches!(&s.node, ast::DeclarationSpecifier::StorageClass(c) if c.node == ast::StorageClassSpecifier::Typedef)
        });
        let type_specs: Vec<&ast::TypeSpecifier> = d
            .specifiers
            .iter()
            .filter_map(|s| match &s.node {
                ast::DeclarationSpecifier::TypeSpecifier(t) => Some(&t.node),
                _ => None,
            })
            .collect();
        let (packed, align) = attributes(d.specifiers.iter().flat_map(|s| match &s.node {
            ast::DeclarationSpecifier::Extension(e) => e.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        }));
        let base = self.base_type(&type_specs, packed, align, lines, root);
        if typedef {
            for id in &d.declarators {
                let (name, ty) = self.declarator(&id.node.declarator.node, base.ty.clone());
                let (_, talign) = attributes(id.node.declarator.node.extensions.iter());
                if let Some(n) = name {
                    self.typedefs.insert(n, (ty, talign.or(base.align)));
                }
            }
        }
    }

    fn base_type(
        &mut self,
        specs: &[&ast::TypeSpecifier],
        packed: bool,
        align: Option<usize>,
        lines: &LineMap,
        root: &Path,
    ) -> Base {
        use ast::TypeSpecifier as T;
        let mut longs = 0;
        let mut signed = true;
        let mut kind: Option<&str> = None;
        for s in specs {
            match s {
                T::Void => {
                    return Base {
                        ty: CType::Void,
                        align,
                    }
                }
                T::Char => kind = Some("char"),
                T::Short => kind = Some("short"),
                T::Int => kind = kind.or(Some("int")),
                T::Long => longs += 1,
                T::Unsigned => signed = false,
                T::Signed => signed = true,
                T::Bool => {
                    return Base {
                        ty: CType::Int {
                            size: 1,
                            signed: false,
                        },
                        align,
                    }
                }
                T::Float => {
                    return Base {
                        ty: CType::Float { size: 4, align: 4 },
                        align,
                    }
                }
                T::Double => {
                    let ty = if longs > 0 {
                        CType::Float {
                            size: 16,
                            align: 16,
                        }
                    } else {
                        CType::Float { size: 8, align: 8 }
                    };
                    return Base { ty, align };
                }
                T::Struct(st) => {
                    let id = self.record(
                        &st.node,
                        packed,
                        align,
                        lines.origin(st.span.start, root),
                        lines,
                        root,
                    );
                    return Base {
                        ty: CType::Record(id),
                        align: None,
                    };
                }
                T::Enum(_) => {
                    return Base {
                        ty: CType::Int {
                            size: 4,
                            signed: true,
                        },
                        align,
                    }
                }
                T::TypedefName(n) => {
                    let (ty, talign) = self.typedefs.get(&n.node.name).cloned().unwrap_or((
                        CType::Int {
                            size: 4,
                            signed: true,
                        },
                        None,
                    ));
                    return Base {
                        ty,
                        align: align.or(talign),
                    };
                }
                _ => {}
            }
        }
        let size = match (kind, longs) {
            (Some("char"), _) => 1,
            (Some("short"), _) => 2,
            (_, 0) => 4,
            _ => 8,
        };
        Base {
            ty: CType::Int { size, signed },
            align,
        }
    }

    /// A record type: defined here (with members), or a reference to a named one.
    fn record(
        &mut self,
        st: &ast::StructType,
        packed: bool,
        align: Option<usize>,
        origin: String,
        lines: &LineMap,
        root: &Path,
    ) -> usize {
        let kind = match st.kind.node {
            ast::StructKind::Struct => Kind::Struct,
            ast::StructKind::Union => Kind::Union,
        };
        let name = st.identifier.as_ref().map(|i| i.node.name.clone());
        let existing = name.as_ref().and_then(|n| self.by_name.get(n).copied());
        let Some(decls) = &st.declarations else {
            // A reference (or a forward declaration).
            return existing.unwrap_or_else(|| {
                self.records.push(Record {
                    kind,
                    name: name.clone(),
                    members: Vec::new(),
                    packed: false,
                    align: None,
                    complete: false,
                    origin,
                });
                let id = self.records.len() - 1;
                if let Some(n) = name {
                    self.by_name.insert(n, id);
                }
                id
            });
        };
        let mut members = Vec::new();
        for d in decls {
            let ast::StructDeclaration::Field(f) = &d.node else {
                continue;
            };
            let specs: Vec<&ast::TypeSpecifier> = f
                .node
                .specifiers
                .iter()
                .filter_map(|s| match &s.node {
                    ast::SpecifierQualifier::TypeSpecifier(t) => Some(&t.node),
                    _ => None,
                })
                .collect();
            let (fpacked, falign) =
                attributes(f.node.specifiers.iter().flat_map(|s| match &s.node {
                    ast::SpecifierQualifier::Extension(e) => e.iter().collect::<Vec<_>>(),
                    _ => Vec::new(),
                }));
            let base = self.base_type(&specs, false, None, lines, root);
            if f.node.declarators.is_empty() {
                // An anonymous struct or union member.
                members.push(Member {
                    name: None,
                    ty: base.ty,
                    bits: None,
                    align: falign.or(base.align),
                });
                continue;
            }
            for sd in &f.node.declarators {
                let bits = sd
                    .node
                    .bit_width
                    .as_ref()
                    .and_then(|b| const_eval(&b.node))
                    .map(|b| b as u32);
                let (name, ty, dalign) = match &sd.node.declarator {
                    Some(decl) => {
                        let (n, t) = self.declarator(&decl.node, base.ty.clone());
                        let (_, a) = attributes(decl.node.extensions.iter());
                        (n, t, a)
                    }
                    None => (None, base.ty.clone(), None),
                };
                let _ = fpacked;
                members.push(Member {
                    name,
                    ty,
                    bits,
                    align: dalign.or(falign).or(base.align),
                });
            }
        }
        let rec = Record {
            kind,
            name: name.clone(),
            members,
            packed,
            align,
            complete: true,
            origin,
        };
        match existing {
            Some(id) if !self.records[id].complete => {
                self.records[id] = rec;
                id
            }
            _ => {
                self.records.push(rec);
                let id = self.records.len() - 1;
                if let Some(n) = name {
                    self.by_name.insert(n, id);
                }
                id
            }
        }
    }

    /// Applies pointers and arrays to a base type; returns the declared name.
    fn declarator(&self, d: &ast::Declarator, base: CType) -> (Option<String>, CType) {
        let mut ty = base;
        // Arrays apply innermost-last: `int a[2][3]` is an array of 2 arrays of 3.
        let mut arrays = Vec::new();
        for dd in &d.derived {
            match &dd.node {
                ast::DerivedDeclarator::Pointer(_) => ty = CType::Ptr,
                ast::DerivedDeclarator::Array(a) => arrays.push(match &a.node.size {
                    ast::ArraySize::VariableExpression(e) | ast::ArraySize::StaticExpression(e) => {
                        const_eval_with(&e.node, &|t| self.sizeof_type_name(t)).map(|n| n as usize)
                    }
                    _ => None,
                }),
                ast::DerivedDeclarator::Function(_) | ast::DerivedDeclarator::KRFunction(_) => {
                    ty = CType::Func
                }
                ast::DerivedDeclarator::Block(_) => ty = CType::Ptr,
            }
        }
        for n in arrays.into_iter().rev() {
            ty = CType::Array(Box::new(ty), n);
        }
        match &d.kind.node {
            ast::DeclaratorKind::Identifier(i) => (Some(i.node.name.clone()), ty),
            ast::DeclaratorKind::Declarator(inner) => {
                // `(*fn)(...)`: a pointer to a function.
                let (n, _) = self.declarator(&inner.node, ty);
                (n, CType::Ptr)
            }
            ast::DeclaratorKind::Abstract => (None, ty),
        }
    }

    /// `sizeof(T)` for a type name in an array size (`sizeof(struct in_addr)`). Records are
    /// looked up by name; only already-complete records have a size.
    fn sizeof_type_name(&self, t: &ast::TypeName) -> Option<i64> {
        use ast::TypeSpecifier as T;
        let mut specs = Vec::new();
        for s in &t.specifiers {
            if let ast::SpecifierQualifier::TypeSpecifier(ts) = &s.node {
                specs.push(&ts.node);
            }
        }
        let pointer = t.declarator.as_ref().is_some_and(|d| {
            d.node
                .derived
                .iter()
                .any(|x| matches!(x.node, ast::DerivedDeclarator::Pointer(_)))
        });
        if pointer {
            return Some(8);
        }
        let ty = match specs.first() {
            Some(T::Struct(st)) => {
                let name = &st.node.identifier.as_ref()?.node.name;
                CType::Record(*self.by_name.get(name)?)
            }
            Some(T::TypedefName(n)) => self.typedefs.get(&n.node.name)?.0.clone(),
            _ => {
                let mut longs = 0;
                let mut size = 4;
                for s in &specs {
                    match s {
                        T::Char => size = 1,
                        T::Short => size = 2,
                        T::Long => longs += 1,
                        T::Double => size = 8,
                        _ => {}
                    }
                }
                if longs > 0 {
                    size = 8;
                }
                CType::Int { size, signed: true }
            }
        };
        Some(self.size_align(&ty).0 as i64)
    }

    /// `sizeof` and `_Alignof` of a type.
    pub fn size_align(&self, ty: &CType) -> (usize, usize) {
        match ty {
            CType::Int { size, .. } => (*size, *size),
            CType::Float { size, align } => (*size, *align),
            CType::Ptr | CType::Func => (8, 8),
            CType::Void => (1, 1),
            CType::Array(t, n) => {
                let (s, a) = self.size_align(t);
                (s * n.unwrap_or(0), a)
            }
            CType::Record(id) => {
                let l = self.layout_record(*id);
                (l.size, l.align)
            }
        }
    }

    /// The layout of a record, anonymous members flattened.
    pub fn layout_record(&self, id: usize) -> RecordLayout {
        let r = &self.records[id];
        let mut fields = Vec::new();
        let mut bit = 0usize;
        let mut max_align = 1usize;
        let mut size_bits = 0usize;
        for m in &r.members {
            let (size, natural) = self.size_align(&m.ty);
            let mut align = if r.packed { 1 } else { natural };
            if let Some(a) = m.align {
                align = align.max(a);
            }
            match (r.kind, m.bits) {
                (Kind::Struct, Some(0)) => {
                    bit = bit.div_ceil(natural * 8) * natural * 8;
                }
                (Kind::Struct, Some(w)) => {
                    let unit = size * 8;
                    if !r.packed && (bit % unit) + w as usize > unit {
                        bit = bit.div_ceil(natural * 8) * natural * 8;
                    }
                    if m.name.is_some() {
                        max_align = max_align.max(align);
                    }
                    if let Some(n) = &m.name {
                        fields.push(FieldLayout {
                            name: n.clone(),
                            offset: bit / 8,
                            size,
                            bits: Some((bit, w)),
                            ty: m.ty.clone(),
                        });
                    }
                    bit += w as usize;
                }
                (Kind::Union, bits) => {
                    max_align = max_align.max(align);
                    let width = bits.map(|w| w as usize).unwrap_or(size * 8);
                    size_bits = size_bits.max(width);
                    self.push_member(&mut fields, m, 0, size, bits.map(|w| (0, w)));
                }
                (Kind::Struct, None) => {
                    let byte = bit.div_ceil(8).div_ceil(align) * align;
                    max_align = max_align.max(align);
                    self.push_member(&mut fields, m, byte, size, None);
                    bit = (byte + size) * 8;
                }
            }
        }
        let mut align = max_align;
        if let Some(a) = r.align {
            align = align.max(a);
        }
        let used = match r.kind {
            Kind::Struct => bit.div_ceil(8),
            Kind::Union => size_bits.div_ceil(8),
        };
        RecordLayout {
            kind: r.kind,
            name: r.name.clone().unwrap_or_default(),
            size: used.div_ceil(align) * align,
            align,
            fields,
            origin: r.origin.clone(),
        }
    }

    fn push_member(
        &self,
        fields: &mut Vec<FieldLayout>,
        m: &Member,
        offset: usize,
        size: usize,
        bits: Option<(usize, u32)>,
    ) {
        match (&m.name, &m.ty) {
            (Some(n), _) => fields.push(FieldLayout {
                name: n.clone(),
                offset,
                size,
                bits,
                ty: m.ty.clone(),
            }),
            (None, CType::Record(id)) => {
                for f in self.layout_record(*id).fields {
                    fields.push(FieldLayout {
                        offset: f.offset + offset,
                        bits: f.bits.map(|(b, w)| (b + offset * 8, w)),
                        ..f
                    });
                }
            }
            (None, _) => {}
        }
    }

    /// Named records with their layouts.
    pub fn layouts(&self) -> BTreeMap<String, RecordLayout> {
        self.by_name
            .iter()
            .filter(|(_, id)| self.records[**id].complete)
            .map(|(n, id)| (n.clone(), self.layout_record(*id)))
            .collect()
    }

    /// A record as a spec layout: bitfields and floats become padding (they cannot be set).
    pub fn spec_layout(&self, name: &str) -> Option<Layout> {
        let id = *self.by_name.get(name)?;
        if !self.records[id].complete {
            return None;
        }
        let l = self.layout_record(id);
        let mut fields: Vec<crate::layout::Field> = Vec::new();
        let mut end = 0;
        for f in &l.fields {
            if f.bits.is_some() || f.offset < end {
                // Bitfields and the later members of unions overlap: kept out of spec layouts.
                continue;
            }
            let Some(ty) = self.spec_type(&f.ty) else {
                continue;
            };
            fields.push(crate::layout::Field {
                name: f.name.clone(),
                ty,
                offset: f.offset,
                size: f.size,
            });
            end = f.offset + f.size;
        }
        Some(Layout {
            name: name.to_string(),
            size: l.size,
            align: l.align,
            packed: self.records[id].packed,
            fields,
        })
    }

    fn spec_type(&self, ty: &CType) -> Option<FieldType> {
        Some(match ty {
            CType::Int { size, signed } => FieldType::Int {
                bytes: *size,
                signed: *signed,
            },
            CType::Ptr | CType::Func => FieldType::Ptr,
            CType::Array(t, Some(n)) => match **t {
                CType::Int { size: 1, .. } => FieldType::Chars(*n),
                _ => FieldType::Array(Box::new(self.spec_type(t)?), *n),
            },
            CType::Record(id) => FieldType::Struct(self.records[*id].name.clone()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
