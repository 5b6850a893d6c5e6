//! `provium.pack(fmt, ...)` and `provium.unpack(fmt, data)`: little-endian binary layouts.
//!
//! A format is a list of fields separated by spaces:
//!
//! | field | bytes | packs / unpacks |
//! |---|---|---|
//! | `u8 i8 u16 i16 u32 i32 u64 i64` | 1–8 | an integer, range-checked |
//! | `be16 be32 be64` | 2–8 | an unsigned big-endian integer (network byte order: ports, addresses) |
//! | `ptr` | 8 | an address (same as `u64`) |
//! | `xN` | N (default 1) | zero padding; no value |
//! | `cN` | N | a byte string, zero-padded on pack, returned as is |
//! | `zN` | N | a C string, zero-padded on pack, cut at the first NUL on unpack |
//!
//! A count in brackets repeats a field: `u32[4]` is four `u32` values.
//!
//! The bytes are Lua 5.4's own `string.pack`/`string.unpack` (each field becomes one of their
//! options: `u32` is `<I4`, `be16` is `>I2`, `z8` is `c8`). What they do not do is what is here:
//! the kernel's type names (the spec language's and the struct layouts'), repeat counts,
//! fixed-width C strings cut at their NUL, and errors that name the field and the argument
//! (`value 256 (argument 1) is out of range for u8`, not `integer overflow`).

use mlua::{Function, Lua, MultiValue};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Int {
        bytes: usize,
        signed: bool,
        /// Big-endian (network byte order) instead of the guest's little-endian.
        big: bool,
    },
    Pad(usize),
    Bytes(usize),
    CString(usize),
}

impl Field {
    pub fn size(self) -> usize {
        match self {
            Field::Int { bytes, .. } => bytes,
            Field::Pad(n) | Field::Bytes(n) | Field::CString(n) => n,
        }
    }

    fn name(self) -> String {
        match self {
            Field::Int {
                bytes, big: true, ..
            } => format!("be{}", bytes * 8),
            Field::Int { bytes, signed, .. } => {
                format!("{}{}", if signed { 'i' } else { 'u' }, bytes * 8)
            }
            Field::Pad(n) => format!("x{n}"),
            Field::Bytes(n) => format!("c{n}"),
            Field::CString(n) => format!("z{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value to pack, or an unpacked one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
}

const MAX_FIELD: usize = 64 << 20;

pub fn parse(fmt: &str) -> Result<Vec<Field>, FormatError> {
    let mut fields = Vec::new();
    for token in fmt.split_whitespace() {
        let (base, repeat) = match token.split_once('[') {
            Some((b, rest)) => {
                let n = rest
                    .strip_suffix(']')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        FormatError(format!("bad repeat count in `{token}` (e.g. u32[4])"))
                    })?;
                (b, n)
            }
            None => (token, 1),
        };
        let field = match base {
            "u8" => Field::Int {
                bytes: 1,
                signed: false,
                big: false,
            },
            "i8" => Field::Int {
                bytes: 1,
                signed: true,
                big: false,
            },
            "u16" => Field::Int {
                bytes: 2,
                signed: false,
                big: false,
            },
            "i16" => Field::Int {
                bytes: 2,
                signed: true,
                big: false,
            },
            "u32" => Field::Int {
                bytes: 4,
                signed: false,
                big: false,
            },
            "i32" => Field::Int {
                bytes: 4,
                signed: true,
                big: false,
            },
            "u64" | "ptr" => Field::Int {
                bytes: 8,
                signed: false,
                big: false,
            },
            "i64" => Field::Int {
                bytes: 8,
                signed: true,
                big: false,
            },
            "be16" | "be32" | "be64" => Field::Int {
                bytes: if base == "be16" {
                    2
                } else if base == "be32" {
                    4
                } else {
                    8
                },
                signed: false,
                big: true,
            },
            other => {
                let (kind, count) = other.split_at(1.min(other.len()));
                let n = if count.is_empty() && kind == "x" {
                    1
                } else {
                    count.parse::<usize>().map_err(|_| unknown(other))?
                };
                if n > MAX_FIELD {
                    return Err(FormatError(format!(
                        "`{other}` is larger than {MAX_FIELD} bytes"
                    )));
                }
                match kind {
                    "x" => Field::Pad(n),
                    "c" => Field::Bytes(n),
                    "z" => Field::CString(n),
                    _ => return Err(unknown(other)),
                }
            }
        };
        if repeat > 4096 {
            return Err(FormatError(format!(
                "repeat count in `{token}` is over 4096"
            )));
        }
        fields.extend(std::iter::repeat_n(field, repeat));
    }
    Ok(fields)
}

fn unknown(token: &str) -> FormatError {
    FormatError(format!(
        "unknown field `{token}` (expected u8 i8 u16 i16 u32 i32 u64 i64 be16 be32 be64 ptr, xN, cN or zN)"
    ))
}

/// The number of values a format takes and returns (padding has none).
pub fn value_count(fields: &[Field]) -> usize {
    fields
        .iter()
        .filter(|f| !matches!(f, Field::Pad(_)))
        .count()
}

pub fn size(fields: &[Field]) -> usize {
    fields.iter().map(|f| f.size()).sum()
}

/// The `string.pack` format of `fields`, little-endian unless a field says otherwise.
fn lua_format(fields: &[Field]) -> String {
    let mut f = String::new();
    for field in fields {
        match *field {
            Field::Int { bytes, signed, big } => {
                let order = if big { '>' } else { '<' };
                let kind = if signed { 'i' } else { 'I' };
                f.push_str(&format!("{order}{kind}{bytes}"));
            }
            // Padding packs an empty string into `cN` (zero-filled) and unpacks into nothing.
            Field::Pad(n) | Field::Bytes(n) | Field::CString(n) => f.push_str(&format!("c{n}")),
        }
    }
    f
}

/// What `string.pack` would refuse, said in the format's terms.
fn check(fields: &[Field], values: &[Value]) -> Result<(), FormatError> {
    let want = value_count(fields);
    if values.len() != want {
        return Err(FormatError(format!(
            "the format has {want} value field(s) but {} value(s) were given",
            values.len()
        )));
    }
    let fields = fields.iter().filter(|f| !matches!(f, Field::Pad(_)));
    for (i, (&field, value)) in fields.zip(values).enumerate() {
        match (field, value) {
            (Field::Int { bytes, signed, .. }, Value::Int(v)) => check_range(*v, bytes, signed)
                .map_err(|why| {
                    FormatError(format!(
                        "value {v} (argument {}) {why} for {}",
                        i + 1,
                        field.name()
                    ))
                })?,
            (Field::Bytes(n) | Field::CString(n), Value::Bytes(b)) if b.len() > n => {
                return Err(FormatError(format!(
                    "string of {} bytes (argument {}) does not fit {}",
                    b.len(),
                    i + 1,
                    field.name()
                )))
            }
            (Field::Bytes(_) | Field::CString(_), Value::Bytes(_)) => {}
            (f, v) => {
                return Err(FormatError(format!(
                    "argument {} for {} must be {}, got {}",
                    i + 1,
                    f.name(),
                    if matches!(f, Field::Int { .. }) {
                        "an integer"
                    } else {
                        "a string"
                    },
                    match v {
                        Value::Int(_) => "an integer",
                        Value::Bytes(_) => "a string",
                    }
                )))
            }
        }
    }
    Ok(())
}

/// The packer and unpacker of the Lua state, taken when the API is installed (a test that
/// replaces `string.pack` does not change `provium.pack`).
#[derive(Clone)]
pub struct Packer {
    pack: Function,
    unpack: Function,
}

impl Packer {
    pub fn of(lua: &Lua) -> mlua::Result<Packer> {
        let string: mlua::Table = lua.globals().get("string")?;
        Ok(Packer {
            pack: string.get("pack")?,
            unpack: string.get("unpack")?,
        })
    }

    pub fn pack(
        &self,
        lua: &Lua,
        fields: &[Field],
        values: &[Value],
    ) -> Result<Vec<u8>, FormatError> {
        check(fields, values)?;
        let lua_error = |e: mlua::Error| FormatError(e.to_string());
        let mut args = vec![mlua::Value::String(
            lua.create_string(lua_format(fields)).map_err(lua_error)?,
        )];
        let mut values = values.iter();
        for field in fields {
            let value = match field {
                Field::Pad(_) => None,
                _ => values.next(),
            };
            args.push(match value {
                Some(Value::Int(i)) => mlua::Value::Integer(*i),
                Some(Value::Bytes(b)) => {
                    mlua::Value::String(lua.create_string(b).map_err(lua_error)?)
                }
                None => mlua::Value::String(lua.create_string("").map_err(lua_error)?),
            });
        }
        let packed: mlua::LuaString = self
            .pack
            .call(MultiValue::from_vec(args))
            .map_err(lua_error)?;
        Ok(packed.as_bytes().to_vec())
    }

    pub fn unpack(&self, fields: &[Field], data: &[u8]) -> Result<Vec<Value>, FormatError> {
        let need = size(fields);
        if data.len() < need {
            return Err(FormatError(format!(
                "the format needs {need} bytes but the data has {}",
                data.len()
            )));
        }
        let lua_error = |e: mlua::Error| FormatError(e.to_string());
        let data = mlua::BString::from(&data[..need]);
        let mut unpacked: Vec<mlua::Value> = self
            .unpack
            .call::<MultiValue>((lua_format(fields), data))
            .map_err(lua_error)?
            .into_vec();
        unpacked.truncate(fields.len()); // the position after the data
        let mut out = Vec::with_capacity(fields.len());
        for (field, value) in fields.iter().zip(unpacked) {
            match (field, value) {
                (Field::Pad(_), _) => {}
                (Field::Int { .. }, mlua::Value::Integer(i)) => out.push(Value::Int(i)),
                (Field::CString(_), mlua::Value::String(s)) => {
                    let bytes = s.as_bytes();
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    out.push(Value::Bytes(bytes[..end].to_vec()));
                }
                (_, mlua::Value::String(s)) => out.push(Value::Bytes(s.as_bytes().to_vec())),
                (f, v) => {
                    return Err(FormatError(format!(
                        "string.unpack gave a {} for {}",
                        v.type_name(),
                        f.name()
                    )))
                }
            }
        }
        Ok(out)
    }
}

fn check_range(v: i64, bytes: usize, signed: bool) -> Result<(), &'static str> {
    if bytes == 8 {
        // u64 accepts negative Lua integers as their two's complement (Lua has no u64).
        return Ok(());
    }
    let bits = bytes as u32 * 8;
    let (lo, hi) = if signed {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    } else {
        (0, (1i64 << bits) - 1)
    };
    if v < lo || v > hi {
        Err("is out of range")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(fields: &[Field], values: &[Value]) -> Result<Vec<u8>, FormatError> {
        let lua = Lua::new();
        Packer::of(&lua).unwrap().pack(&lua, fields, values)
    }

    fn unpack(fields: &[Field], data: &[u8]) -> Result<Vec<Value>, FormatError> {
        Packer::of(&Lua::new()).unwrap().unpack(fields, data)
    }

    #[test]
    fn round_trip_with_padding_and_strings() {
        let be = parse("be16 be32").unwrap();
        let bytes = pack(&be, &[Value::Int(0x1234), Value::Int(0x7f000001)]).unwrap();
        assert_eq!(bytes, [0x12, 0x34, 0x7f, 0, 0, 1]);
        assert_eq!(
            unpack(&be, &bytes).unwrap(),
            [Value::Int(0x1234), Value::Int(0x7f000001)]
        );
        assert!(pack(&be, &[Value::Int(0x10000), Value::Int(0)]).is_err());
        let f = parse("u8 x3 i32 u16[2] z8 c4").unwrap();
        assert_eq!(size(&f), 1 + 3 + 4 + 4 + 8 + 4);
        let values = vec![
            Value::Int(7),
            Value::Int(-2),
            Value::Int(1),
            Value::Int(65535),
            Value::Bytes(b"tmp".to_vec()),
            Value::Bytes(b"ab".to_vec()),
        ];
        let bytes = pack(&f, &values).unwrap();
        assert_eq!(&bytes[..8], &[7, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
        let back = unpack(&f, &bytes).unwrap();
        assert_eq!(back[..5], values[..5]);
        assert_eq!(back[5], Value::Bytes(b"ab\0\0".to_vec()));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("u33").unwrap_err().0.contains("unknown field `u33`"));
        let f = parse("u8").unwrap();
        assert!(pack(&f, &[Value::Int(256)])
            .unwrap_err()
            .0
            .contains("out of range for u8"));
        assert!(pack(&f, &[]).unwrap_err().0.contains("1 value field"));
        assert!(unpack(&parse("u32").unwrap(), &[1, 2])
            .unwrap_err()
            .0
            .contains("needs 4 bytes"));
        assert!(pack(&parse("z2").unwrap(), &[Value::Bytes(b"abc".to_vec())]).is_err());
    }

    #[test]
    fn u64_holds_the_full_range() {
        let f = parse("u64 i64").unwrap();
        let b = pack(&f, &[Value::Int(-1), Value::Int(i64::MIN)]).unwrap();
        assert_eq!(
            unpack(&f, &b).unwrap(),
            vec![Value::Int(-1), Value::Int(i64::MIN)]
        );
    }
}
