//! Spec layouts of header records: what a spec may set in a struct it takes from headers.

use super::{CType, CTypes};
use crate::layout::c::{RecordLayout, Records};
use crate::layout::{FieldType, Layout};
use std::collections::BTreeMap;

impl CTypes {
    /// `sizeof` and `_Alignof` of a type.
    pub fn size_align(&self, ty: &CType) -> (usize, usize) {
        Records(&self.records, self.model).size_align(ty)
    }

    /// The layout of a record, anonymous members flattened.
    pub fn layout_record(&self, id: usize) -> RecordLayout {
        Records(&self.records, self.model).layout_record(id)
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
                big_endian: false,
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
