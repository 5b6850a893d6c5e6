//! Lua literals for generated code.

/// A Lua string literal for arbitrary bytes.
pub fn string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(b as char),
            // A decimal escape must not swallow a following digit: \0 then "1" is not \01.
            _ if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                s.push_str(&format!("\\{b:03}"))
            }
            _ => s.push_str(&format!("\\{b}")),
        }
    }
    s.push('"');
    s
}

/// Text for a Lua comment: control characters (a newline in a file name) are written as
/// escapes, so that nothing after them becomes code.
pub fn comment(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A Lua string literal for text.
pub fn str(text: &str) -> String {
    string(text.as_bytes())
}

/// An integer literal; Lua has no literal for the most negative integer.
pub fn int(v: i64) -> String {
    if v == i64::MIN {
        "math.mininteger".into()
    } else if v < 0 {
        format!("{v}")
    } else if v > 0xffff && (v & (v - 1)) == 0 || v > 0xffff_ffff {
        // Flags and masks read better in hex.
        format!("0x{v:x}")
    } else {
        v.to_string()
    }
}

/// A long-bracket string for a block of code, with a level the code does not contain.
pub fn long_string(code: &str) -> String {
    let mut level = 0;
    // The closing bracket must not occur in the code, nor complete one with the code's end
    // (`foo]` then `]]` would close early).
    while code.contains(&format!("]{}]", "=".repeat(level)))
        || code.ends_with(&format!("]{}", "=".repeat(level)))
    {
        level += 1;
    }
    let eq = "=".repeat(level);
    // A newline right after the opening bracket is dropped by Lua; the code keeps its lines.
    format!("[{eq}[\n{code}]{eq}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_everything_unprintable() {
        assert_eq!(string(b"a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(string(b"/tmp/f\0"), r#""/tmp/f\0""#);
        assert_eq!(string(b"\x001"), r#""\0001""#);
        assert_eq!(string(&[0xff, b'x']), r#""\255x""#);
    }

    #[test]
    fn integers() {
        assert_eq!(int(-100), "-100");
        assert_eq!(int(0o600), "384");
        assert_eq!(int(0x8000_0000), "0x80000000");
        assert_eq!(int(i64::MIN), "math.mininteger");
    }

    #[test]
    fn long_strings_pick_a_free_level() {
        assert_eq!(long_string("x = 1\n"), "[[\nx = 1\n]]");
        assert_eq!(long_string("a[b[1]]\n"), "[=[\na[b[1]]\n]=]");
    }
}
