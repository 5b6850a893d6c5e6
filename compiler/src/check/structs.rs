//! Structs: declarations, layouts checked against headers, packing values into them.

use super::*;
use crate::diag::did_you_mean;
use crate::layout::{parse_type_in, FieldType, Layout, Layouts, StructDecl};
use crate::model::Piece;
use crate::spec::node::{Entries, Node, Pos, Value};
use std::collections::{HashMap, HashSet};

impl Checker<'_> {
    // ---- structs -------------------------------------------------------------------------

    pub(super) fn structs(&mut self, entries: &Entries<crate::spec::types::StructDef>) {
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
                Value::Seq(_) => (Some(&node.0), false, None),
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
                match parse_type_in(ttext, &known, self.layouts.model) {
                    Ok(t) => decl.fields.push((fname_s, t)),
                    Err(e) => {
                        let hint = did_you_mean(
                            ttext,
                            names.iter().map(String::as_str).chain([
                                "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "be16",
                                "be32", "be64", "ptr",
                            ]),
                        );
                        self.error_help(ftype.pos, e, hint);
                    }
                }
            }
            decls.push(decl);
        }
        match Layouts::build_in(&decls, self.layouts.model) {
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
    pub(super) fn compare_with_header(&mut self, header: &Layout, spec: &Layout, pos: Pos) {
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

    pub(super) fn pack_struct(
        &mut self,
        layout: &Layout,
        set: Option<&Node>,
        base: usize,
    ) -> Option<Packed> {
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
            pieces: Vec::new(),
            subs: Vec::new(),
        };
        let mut cursor = 0;
        let mut ok = true;
        for f in &layout.fields {
            if f.offset > cursor {
                out.pieces.push(Piece::Pad(f.offset - cursor));
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
            out.pieces.push(Piece::Pad(layout.size - cursor));
        }
        ok.then_some(out)
    }

    pub(super) fn pack_value(
        &mut self,
        ty: &FieldType,
        value: Option<&Node>,
        offset: usize,
        label: &str,
        out: &mut Packed,
    ) -> bool {
        match ty {
            FieldType::Int { bytes, signed, .. } => {
                let v = match value {
                    None => Int::Const(0),
                    Some(n) => match self.int(n, label) {
                        Some(v) => v,
                        None => return false,
                    },
                };
                if let (Some(c), Some(n)) = (v.as_const(), value) {
                    if !fits(c, *bytes, *signed) {
                        self.error(
                            n.pos,
                            format!("{c} is out of range for {ty} field `{label}`"),
                        );
                        return false;
                    }
                }
                // The pack type of the field is its type's name (`u16`, `be16`, ...).
                out.pieces.push(Piece::Int {
                    ty: ty.to_string(),
                    value: v,
                });
                true
            }
            FieldType::Chars(n) => {
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
                out.pieces.push(Piece::Chars { size: *n, text });
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
                let Ok((esize, _)) = self.layouts.size_align(elem) else {
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
                        out.pieces.extend(p.pieces);
                        out.subs.extend(p.subs);
                        true
                    }
                    None => false,
                }
            }
            FieldType::Ptr => match value {
                None => {
                    out.pieces
                        .push(Piece::Ptr(Int::Const(0), self.layouts.model.pointer()));
                    true
                }
                Some(n)
                    if n.as_map().is_some()
                        && n.get("bad_ptr").is_none()
                        && n.get("sizeof").is_none() =>
                {
                    match self.buffer(n) {
                        Some(b) => {
                            out.pieces
                                .push(Piece::Ptr(Int::Const(0), self.layouts.model.pointer()));
                            out.subs.push((offset, b));
                            true
                        }
                        None => false,
                    }
                }
                Some(n) => match self.int(n, label) {
                    Some(v) => {
                        out.pieces.push(Piece::Ptr(v, self.layouts.model.pointer()));
                        true
                    }
                    None => false,
                },
            },
        }
    }
}

pub(super) fn fits(v: i64, bytes: usize, signed: bool) -> bool {
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
