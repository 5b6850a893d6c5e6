//! Struct and union layouts from C headers.
//!
//! The headers are preprocessed by gcc (`gcc -E`) and parsed with lang-c, which copes with the
//! GNU extensions uapi headers use; the layouts are computed by the one layout engine
//! ([`crate::layout::c`]). A test compares every number with what gcc's own
//! `offsetof`/`sizeof` say for more than 30 real structs.

pub use crate::layout::c::{CType, FieldLayout, Kind, Member, Record, RecordLayout};
use lang_c::ast;
use lang_c::span::Node;
use std::collections::HashMap;
use std::path::Path;

/// Everything the parsed headers declare.
#[derive(Debug, Default)]
pub struct CTypes {
    /// Records in declaration order.
    pub records: Vec<Record>,
    /// Index into `records` by tag.
    pub by_name: HashMap<String, usize>,
    /// `typedef`s: the type and its alignment attribute.
    pub typedefs: HashMap<String, (CType, Option<usize>)>,
    /// The data model the headers were preprocessed and are laid out for.
    pub model: crate::layout::c::DataModel,
}

/// Why headers could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The preprocessor could not be run at all.
    #[error(
        "cannot run `{program}` to preprocess headers: {why} (install gcc, or set PROVIUM_CC)"
    )]
    NoCompiler {
        /// The program tried (`gcc`, or `PROVIUM_CC`).
        program: String,
        /// What the system said.
        why: String,
    },
    /// The preprocessor ran and rejected the headers.
    #[error("the headers do not preprocess: {0}")]
    Gcc(String),
    /// The preprocessed text did not parse as C.
    #[error("{0}")]
    Syntax(String),
}

/// How deep brackets may nest in headers handed to the C parser: real uapi headers nest a few
/// levels; lang-c recurses once per level, and a thread's stack must not run out.
const MAX_NESTING: usize = 64;

/// Parses preprocessed C and collects records and typedefs.
pub fn parse(preprocessed: &str, root: &Path) -> Result<CTypes, ParseError> {
    parse_in(preprocessed, root, crate::layout::c::DataModel::Lp64)
}

/// Parses C preprocessed for `model` (`gcc -E -m32` for i386): `long` takes its size.
pub fn parse_in(
    preprocessed: &str,
    root: &Path,
    model: crate::layout::c::DataModel,
) -> Result<CTypes, ParseError> {
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
    let mut types = CTypes {
        model,
        ..CTypes::default()
    };
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
            (_, 1) => self.model.pointer(),
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
}

mod cpp;
mod layout;

use cpp::LineMap;
pub use cpp::{
    include_dirs, preprocess, preprocess_with_defines, preprocess_with_defines_in, split_defines,
};

#[cfg(test)]
mod tests;
