//! Spec structs: field types, declarations and their layouts, computed by the C layout engine
//! in [`c`] (the same one that lays out header records).

pub mod c;

use std::collections::BTreeMap;
use std::fmt;

/// A field's type in a spec's struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// An integer.
    Int {
        /// Bytes.
        bytes: usize,
        /// Signed or not.
        signed: bool,
        /// Big-endian (`be16`, `be32`, `be64`: network byte order), always unsigned.
        big_endian: bool,
    },
    /// `char[N]`: a string, zero-padded.
    Chars(usize),
    /// An array of a type.
    Array(Box<FieldType>, usize),
    /// Another struct, by name.
    Struct(String),
    /// An address; set from a buffer, which the agent allocates and patches in.
    Ptr,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Int {
                bytes,
                big_endian: true,
                ..
            } => write!(f, "be{}", bytes * 8),
            FieldType::Int { bytes, signed, .. } => {
                write!(f, "{}{}", if *signed { 'i' } else { 'u' }, bytes * 8)
            }
            FieldType::Chars(n) => write!(f, "char[{n}]"),
            FieldType::Array(t, n) => write!(f, "{t}[{n}]"),
            FieldType::Struct(s) => f.write_str(s),
            FieldType::Ptr => f.write_str("ptr"),
        }
    }
}

/// Parses a field type under x86_64's data model. `known` says whether a name is a struct.
pub fn parse_type(text: &str, known: &dyn Fn(&str) -> bool) -> Result<FieldType, String> {
    parse_type_in(text, known, c::DataModel::Lp64)
}

/// Parses a field type; `long`, `size_t` and friends take `model`'s size.
pub fn parse_type_in(
    text: &str,
    known: &dyn Fn(&str) -> bool,
    model: c::DataModel,
) -> Result<FieldType, String> {
    let t = text.trim();
    if let Some(open) = t.rfind('[') {
        let inner = &t[..open];
        let n: usize = t[open + 1..]
            .strip_suffix(']')
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("bad array size in `{t}` (expected TYPE[N])"))?;
        if n > 1 << 20 {
            return Err(format!("array `{t}` is too large"));
        }
        return Ok(match inner.trim() {
            "char" | "u8_str" => FieldType::Chars(n),
            other => FieldType::Array(Box::new(parse_type_in(other, known, model)?), n),
        });
    }
    let int = |bytes, signed| {
        Ok(FieldType::Int {
            bytes,
            signed,
            big_endian: false,
        })
    };
    let be = |bytes| {
        Ok(FieldType::Int {
            bytes,
            signed: false,
            big_endian: true,
        })
    };
    match t {
        "u8" | "__u8" | "unsigned char" => int(1, false),
        "i8" | "__s8" | "s8" | "char" => int(1, true),
        "u16" | "__u16" | "unsigned short" => int(2, false),
        "i16" | "__s16" | "s16" | "short" => int(2, true),
        "u32" | "__u32" | "unsigned int" | "unsigned" => int(4, false),
        "i32" | "__s32" | "s32" | "int" => int(4, true),
        "u64" | "__u64" | "__aligned_u64" => int(8, false),
        "i64" | "__s64" | "s64" => int(8, true),
        "unsigned long" | "size_t" => int(model.pointer(), false),
        "long" | "ssize_t" => int(model.pointer(), true),
        "be16" | "__be16" => be(2),
        "be32" | "__be32" => be(4),
        "be64" | "__be64" => be(8),
        "ptr" | "void*" | "void *" => Ok(FieldType::Ptr),
        name if known(name) => Ok(FieldType::Struct(name.to_string())),
        other => Err(format!(
            "unknown type `{other}` (expected u8..u64, i8..i64, be16, be32, be64, char[N], T[N], ptr, or a struct name)"
        )),
    }
}

/// A field laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// Byte offset in the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// A struct laid out as C does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Its name.
    pub name: String,
    /// `sizeof`.
    pub size: usize,
    /// `_Alignof`.
    pub align: usize,
    /// Laid out without padding.
    pub packed: bool,
    /// Its fields in order.
    pub fields: Vec<Field>,
}

impl Layout {
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A struct as declared: its fields in order, packing and alignment.
#[derive(Debug, Clone)]
pub struct StructDecl {
    /// The struct's name.
    pub name: String,
    /// Fields and their types, in order.
    pub fields: Vec<(String, FieldType)>,
    /// Laid out without padding (`packed: true`).
    pub packed: bool,
    /// At least this alignment (`align: N`).
    pub align: Option<usize>,
}

/// All layouts of a spec, computed in dependency order.
#[derive(Debug, Clone, Default)]
pub struct Layouts {
    map: BTreeMap<String, Layout>,
    /// The data model structs are laid out under (pointers are 4 bytes under i386).
    pub model: c::DataModel,
}

impl Layouts {
    /// No structs yet, laid out under `model`.
    pub fn empty(model: c::DataModel) -> Layouts {
        Layouts {
            map: BTreeMap::new(),
            model,
        }
    }

    /// A layout by struct name.
    pub fn get(&self, name: &str) -> Option<&Layout> {
        self.map.get(name)
    }

    /// Every struct's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Adds a layout, or replaces the one of the same name.
    pub fn insert(&mut self, layout: Layout) {
        self.map.insert(layout.name.clone(), layout);
    }

    /// Lays out declarations, nested structs first. Errors name the struct.
    pub fn build(decls: &[StructDecl]) -> Result<Layouts, (String, String)> {
        Layouts::build_in(decls, c::DataModel::Lp64)
    }

    /// Lays out declarations under `model`.
    pub fn build_in(
        decls: &[StructDecl],
        model: c::DataModel,
    ) -> Result<Layouts, (String, String)> {
        let mut layouts = Layouts::empty(model);
        let mut pending: Vec<&StructDecl> = decls.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for d in pending {
                let ready = d.fields.iter().all(|(_, t)| deps_ready(t, &layouts));
                if ready {
                    let l = layouts.lay_out(d).map_err(|e| (d.name.clone(), e))?;
                    layouts.insert(l);
                } else {
                    rest.push(d);
                }
            }
            if rest.len() == before {
                let names: Vec<&str> = rest.iter().map(|d| d.name.as_str()).collect();
                return Err((
                    names[0].to_string(),
                    format!(
                        "structs contain each other without a pointer: {}",
                        names.join(", ")
                    ),
                ));
            }
            pending = rest;
        }
        Ok(layouts)
    }

    /// `sizeof` and `_Alignof` of a field type (natural alignment; as a packed struct's member
    /// its alignment is 1).
    pub fn size_align(&self, ty: &FieldType) -> Result<(usize, usize), String> {
        Ok(c::Records(&[], self.model).size_align(&self.c_type(ty)?))
    }

    /// The C type of a field, structs already laid out standing in by size and alignment.
    fn c_type(&self, ty: &FieldType) -> Result<c::CType, String> {
        Ok(match ty {
            FieldType::Int { bytes, signed, .. } => c::CType::Int {
                size: *bytes,
                signed: *signed,
            },
            FieldType::Chars(n) => c::CType::Array(
                Box::new(c::CType::Int {
                    size: 1,
                    signed: true,
                }),
                Some(*n),
            ),
            FieldType::Ptr => c::CType::Ptr,
            FieldType::Array(t, n) => c::CType::Array(Box::new(self.c_type(t)?), Some(*n)),
            FieldType::Struct(name) => {
                let l = self
                    .map
                    .get(name)
                    .ok_or_else(|| format!("struct `{name}` is used before it is laid out"))?;
                c::CType::Sized {
                    size: l.size,
                    align: l.align,
                }
            }
        })
    }

    /// Lays out one declaration with the C layout engine ([`c::Records`]).
    fn lay_out(&self, d: &StructDecl) -> Result<Layout, String> {
        if let Some(a) = d.align.filter(|a| !a.is_power_of_two()) {
            return Err(format!("align {a} is not a power of two"));
        }
        let members = d
            .fields
            .iter()
            .map(|(name, ty)| {
                Ok(c::Member {
                    name: Some(name.clone()),
                    ty: self.c_type(ty)?,
                    bits: None,
                    align: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let record = c::Record {
            kind: c::Kind::Struct,
            name: Some(d.name.clone()),
            members,
            packed: d.packed,
            align: d.align,
            complete: true,
            origin: String::new(),
        };
        let laid = c::Records(std::slice::from_ref(&record), self.model).layout_record(0);
        // Every member is named and none is a bitfield, so fields map one to one, in order.
        let fields = d
            .fields
            .iter()
            .zip(laid.fields)
            .map(|((name, ty), f)| Field {
                name: name.clone(),
                ty: ty.clone(),
                offset: f.offset,
                size: f.size,
            })
            .collect();
        Ok(Layout {
            name: d.name.clone(),
            size: laid.size,
            align: laid.align,
            packed: d.packed,
            fields,
        })
    }
}

fn deps_ready(t: &FieldType, layouts: &Layouts) -> bool {
    match t {
        FieldType::Struct(n) => layouts.get(n).is_some(),
        FieldType::Array(inner, _) => deps_ready(inner, layouts),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(
        name: &str,
        fields: &[(&str, &str)],
        packed: bool,
        align: Option<usize>,
        known: &[&str],
    ) -> StructDecl {
        StructDecl {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(n, t)| {
                    (
                        n.to_string(),
                        parse_type(t, &|s| known.contains(&s)).unwrap(),
                    )
                })
                .collect(),
            packed,
            align,
        }
    }

    #[test]
    fn c_rules() {
        let ls = Layouts::build(&[
            decl(
                "open_how",
                &[("flags", "u64"), ("mode", "u64"), ("resolve", "u64")],
                false,
                None,
                &[],
            ),
            decl(
                "mixed",
                &[("a", "u8"), ("b", "u32"), ("c", "u16")],
                false,
                None,
                &[],
            ),
            decl(
                "wire_hdr",
                &[("kind", "u8"), ("len", "u32"), ("name", "char[8]")],
                true,
                None,
                &[],
            ),
            decl(
                "outer",
                &[("x", "u8"), ("inner", "mixed"), ("tail", "u8[3]")],
                false,
                None,
                &["mixed"],
            ),
            decl("aligned", &[("a", "u8")], false, Some(16), &[]),
            decl(
                "epoll_event",
                &[("events", "u32"), ("data", "u64")],
                true,
                None,
                &[],
            ),
        ])
        .unwrap();
        assert_eq!(ls.get("open_how").unwrap().size, 24);
        let m = ls.get("mixed").unwrap();
        assert_eq!((m.size, m.align), (12, 4));
        assert_eq!(m.field("c").unwrap().offset, 8);
        let w = ls.get("wire_hdr").unwrap();
        assert_eq!(w.size, 13);
        assert_eq!(w.field("len").unwrap().offset, 1);
        let o = ls.get("outer").unwrap();
        assert_eq!(o.field("inner").unwrap().offset, 4);
        assert_eq!(o.field("tail").unwrap().offset, 16);
        assert_eq!(o.size, 20);
        assert_eq!(ls.get("aligned").unwrap().size, 16);
        assert_eq!(ls.get("epoll_event").unwrap().size, 12);
    }

    #[test]
    fn cycles_and_bad_types_are_errors() {
        let known = |s: &str| s == "a" || s == "b";
        let a = StructDecl {
            name: "a".into(),
            fields: vec![("b".into(), parse_type("b", &known).unwrap())],
            packed: false,
            align: None,
        };
        let b = StructDecl {
            name: "b".into(),
            fields: vec![("a".into(), parse_type("a", &known).unwrap())],
            packed: false,
            align: None,
        };
        assert!(Layouts::build(&[a, b]).is_err());
        assert!(parse_type("u33", &|_| false)
            .unwrap_err()
            .contains("unknown type `u33`"));
        assert!(parse_type("u8[x]", &|_| false).is_err());
    }
}

/// Spec structs under i386's data model are laid out as `gcc -m32` lays out the same C (no
/// multilib needed: nothing is included or linked).
#[cfg(test)]
mod ilp32_tests {
    use super::*;

    fn decl(name: &str, fields: &[(&str, &str)], known: &[&str]) -> StructDecl {
        StructDecl {
            name: name.into(),
            fields: fields
                .iter()
                .map(|(n, t)| {
                    let ty = parse_type_in(t, &|s| known.contains(&s), c::DataModel::Ilp32);
                    (n.to_string(), ty.unwrap())
                })
                .collect(),
            packed: false,
            align: None,
        }
    }

    /// The C spelling of a spec type, for gcc.
    fn c_type(t: &str) -> String {
        match t {
            "u8" => "unsigned char".into(),
            "i32" => "int".into(),
            "u32" => "unsigned int".into(),
            "u64" => "unsigned long long".into(),
            "i64" => "long long".into(),
            "ptr" => "void *".into(),
            other => other.into(),
        }
    }

    #[test]
    fn spec_structs_match_gcc_m32() {
        let decls = [
            decl(
                "mixed",
                &[
                    ("a", "u32"),
                    ("b", "u64"),
                    ("p", "ptr"),
                    ("l", "long"),
                    ("c", "u8"),
                ],
                &[],
            ),
            decl("iovec32", &[("base", "ptr"), ("len", "size_t")], &[]),
            decl("timespec32", &[("sec", "long"), ("nsec", "long")], &[]),
            decl(
                "stat_size",
                &[("dev", "u64"), ("pad", "u32"), ("size", "i64")],
                &[],
            ),
            decl(
                "outer",
                &[("c", "u8"), ("inner", "mixed"), ("tail", "i64")],
                &["mixed"],
            ),
        ];
        let layouts = Layouts::build_in(&decls, c::DataModel::Ilp32).unwrap();
        let mut c = String::new();
        let mut probes = Vec::new();
        for d in &decls {
            c.push_str(&format!("struct {} {{", d.name));
            for (name, _) in &d.fields {
                let spelled = decls
                    .iter()
                    .find(|x| x.name == d.name)
                    .and_then(|x| x.fields.iter().find(|(n, _)| n == name))
                    .map(|(_, t)| match t {
                        FieldType::Struct(s) => format!("struct {s}"),
                        other => c_type(&other.to_string()),
                    })
                    .unwrap();
                c.push_str(&format!(" {spelled} {name};"));
            }
            c.push_str(" };\n");
            probes.push((
                format!("sizeof(struct {})", d.name),
                layouts.get(&d.name).unwrap().size,
            ));
            for f in &layouts.get(&d.name).unwrap().fields {
                probes.push((
                    format!("__builtin_offsetof(struct {}, {})", d.name, f.name),
                    f.offset,
                ));
            }
        }
        for (i, (expr, _)) in probes.iter().enumerate() {
            c.push_str(&format!("int probe{i} = {expr};\n"));
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m32.c");
        std::fs::write(&src, &c).unwrap();
        let out = std::process::Command::new("gcc")
            .args(["-m32", "-S", "-o", "-"])
            .arg(&src)
            .output()
            .expect("gcc (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let asm = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = asm.lines().collect();
        for (i, (expr, ours)) in probes.iter().enumerate() {
            let at = lines
                .iter()
                .position(|l| *l == format!("probe{i}:"))
                .unwrap_or_else(|| panic!("probe{i} not in:\n{asm}"));
            // A zero lands in .bss as `.zero 4`.
            let value = lines[at + 1].trim();
            let gcc: usize = match value.strip_prefix(".long") {
                Some(n) => n.trim().parse().unwrap(),
                None if value.starts_with(".zero") => 0,
                None => panic!("probe{i}: {value}"),
            };
            assert_eq!(
                gcc, *ours,
                "{expr}: gcc -m32 says {gcc}, Provium {ours}\n{c}"
            );
        }
        // And the same structs under LP64 differ where i386 does.
        assert_eq!(layouts.get("mixed").unwrap().size, 24);
        assert_eq!(layouts.get("iovec32").unwrap().size, 8);
    }
}
