//! Byte-faithful text in JUnit XML.
//!
//! quick-junit cleans every string it stores: it strips ANSI sequences and drops tabs, carriage
//! returns and other control characters. A test's output must reach the report as it was
//! printed, so text is protected on the way in (each control character becomes a private-use
//! placeholder quick-junit leaves alone) and restored in the serialized XML: tabs and carriage
//! returns as character references (`&#9;`, `&#13;`, which XML keeps in text and attributes
//! alike), and the characters XML 1.0 cannot hold at all as visible escapes (`\x1b`).

/// Placeholders are `BASE + byte` for the control bytes; `MARK` escapes a literal character of
/// the placeholder range in the input, so that restoring is exact.
const BASE: u32 = 0xE000;
const MARK: char = '\u{E0FF}';

fn is_placeholder(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&(c as u32))
}

/// Text as quick-junit may store it without losing anything.
pub fn protect(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push(char::from_u32(BASE + c as u32).unwrap_or(MARK))
            }
            c if is_placeholder(c) => {
                out.push(MARK);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Serialized XML with the placeholders of [`protect`] turned back into what they stood for.
pub fn restore(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut chars = xml.chars();
    while let Some(c) = chars.next() {
        if c == MARK {
            out.extend(chars.next());
            continue;
        }
        if !is_placeholder(c) {
            out.push(c);
            continue;
        }
        match c as u32 - BASE {
            0x09 => out.push_str("&#9;"),
            0x0d => out.push_str("&#13;"),
            byte => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out
}

/// A JUnit file read back (for `provium junit merge`): tabs and carriage returns, literal or as
/// references, become placeholders before quick-junit reads it, so the merged report keeps them.
pub fn protect_xml(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(c) = rest.chars().next() {
        let refs: [(&str, char); 4] = [
            ("&#9;", '\t'),
            ("&#x9;", '\t'),
            ("&#13;", '\r'),
            ("&#xD;", '\r'),
        ];
        if let Some((r, ch)) = refs.iter().find(|(r, _)| rest.starts_with(r)) {
            out.push_str(&protect(&ch.to_string()));
            rest = &rest[r.len()..];
            continue;
        }
        match c {
            '\t' | '\r' => out.push_str(&protect(&c.to_string())),
            c if is_placeholder(c) => out.push_str(&protect(&c.to_string())),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_survive_and_xml_stays_legal() {
        let text = "a\tb\r\nc\x1b[1mbold\x1b[0m\u{E009}\u{E0FF}\x00";
        let restored = restore(&protect(text));
        assert_eq!(
            restored,
            "a&#9;b&#13;\nc\\x1b[1mbold\\x1b[0m\u{E009}\u{E0FF}\\x00"
        );
        // Reading a report back keeps tabs, whether literal or referenced.
        assert_eq!(restore(&protect_xml("x\ty&#9;z&#13;")), "x&#9;y&#9;z&#13;");
    }
}
