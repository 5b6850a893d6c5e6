//! C types and their layouts with the x86_64 System V rules: natural alignment, tail padding,
//! bitfields that do not straddle their storage unit, unions, flexible array members, packing
//! and `aligned(N)`. The one layout engine: records read from headers
//! (`headers::cparse`) and structs declared in specs ([`super::Layouts`]) are both laid out
//! here, so the two cannot disagree.

/// How the C compiler sizes scalars: x86_64's LP64, or i386's ILP32 (4-byte pointers and
/// `long`; 8-byte integers and doubles only 4-aligned inside structs, as `gcc -m32` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum DataModel {
    /// x86_64.
    #[default]
    Lp64,
    /// i386.
    Ilp32,
}

impl DataModel {
    /// The data model of a system call ABI.
    pub fn of(abi: crate::linux::Abi) -> DataModel {
        match abi {
            // arm64's `char` is unsigned, which no layout depends on.
            crate::linux::Abi::X86_64 | crate::linux::Abi::Aarch64 => DataModel::Lp64,
            crate::linux::Abi::I386 => DataModel::Ilp32,
        }
    }

    /// `sizeof(void *)`, `sizeof(long)`.
    pub fn pointer(self) -> usize {
        match self {
            DataModel::Lp64 => 8,
            DataModel::Ilp32 => 4,
        }
    }

    /// The largest alignment a scalar gets (i386 aligns 8-byte scalars to 4 in structs).
    fn scalar_align(self, size: usize) -> usize {
        match self {
            DataModel::Lp64 => size,
            DataModel::Ilp32 => size.min(4),
        }
    }
}

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
    /// A type known only by its size and alignment (a struct laid out elsewhere: a spec's
    /// struct that uses a header's).
    Sized {
        /// Bytes.
        size: usize,
        /// Alignment in bytes.
        align: usize,
    },
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

/// Records that refer to each other by index, and the data model: what a layout needs.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a>(pub &'a [Record], pub DataModel);

impl Records<'_> {
    /// `sizeof` and `_Alignof` of a type.
    pub fn size_align(&self, ty: &CType) -> (usize, usize) {
        let model = self.1;
        match ty {
            CType::Int { size, .. } => (*size, model.scalar_align(*size)),
            CType::Float { size, align } => (*size, model.scalar_align(*align)),
            CType::Ptr | CType::Func => (model.pointer(), model.pointer()),
            CType::Sized { size, align } => (*size, *align),
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
        let r = &self.0[id];
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
}
