//! Enumerators in C headers (`enum { IPPROTO_UDP = 17, ... }`), as constants.
//!
//! Many uapi values live in enums, often with a self-referring `#define IPPROTO_UDP IPPROTO_UDP`
//! beside them; the enumerator gives that define its value. An enumerator without `=` is the
//! previous one plus one, expressed as such so the macro evaluator computes it.

use super::defines::Define;

/// Removes comments and preprocessor lines, keeping line breaks so line numbers hold.
pub fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_block = false;
    while let Some(c) = chars.next() {
        if in_block {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_block = false;
            } else if c == '\n' {
                out.push('\n');
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('*')) => {
                chars.next();
                in_block = true;
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    // Preprocessor lines (with continuations) become blank lines.
    let mut result = String::with_capacity(out.len());
    let mut continued = false;
    for line in out.split('\n') {
        let directive = continued || line.trim_start().starts_with('#');
        continued = directive && line.trim_end().ends_with('\\');
        if !directive {
            result.push_str(line);
        }
        result.push('\n');
    }
    result
}

/// Enumerators as object-like defines, in order.
pub fn parse(text: &str) -> Vec<Define> {
    let clean = strip(text);
    let mut out = Vec::new();
    let mut rest = clean.as_str();
    let mut consumed = 0usize;
    while let Some(at) = find_word(rest, "enum") {
        let after = &rest[at + 4..];
        let Some(open) = after.find(['{', ';']) else {
            break;
        };
        if after.as_bytes()[open] == b';' {
            consumed += at + 4 + open + 1;
            rest = &after[open + 1..];
            continue;
        }
        let body_start = at + 4 + open + 1;
        let Some(close) = rest[body_start..].find('}') else {
            break;
        };
        let body = &rest[body_start..body_start + close];
        let base_line = clean[..consumed + body_start].matches('\n').count() as u32 + 1;
        let mut previous: Option<String> = None;
        let mut line = base_line;
        for entry in body.split(',') {
            let entry_line = line;
            line += entry.matches('\n').count() as u32;
            let e = entry.trim();
            if e.is_empty() {
                continue;
            }
            let (name, value) = match e.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (e, None),
            };
            let name = name.split_whitespace().next_back().unwrap_or("");
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
                continue;
            }
            let body = match (value, &previous) {
                (Some(v), _) => v,
                (None, Some(p)) => format!("({p} + 1)"),
                (None, None) => "0".into(),
            };
            out.push(Define {
                name: name.to_string(),
                params: None,
                body,
                comment: None,
                line: entry_line
                    + entry
                        .chars()
                        .take_while(|c| *c == '\n' || c.is_whitespace())
                        .filter(|c| *c == '\n')
                        .count() as u32,
            });
            previous = Some(name.to_string());
        }
        consumed += body_start + close + 1;
        rest = &rest[body_start + close + 1..];
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident(before) && !ident(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumerators_count_up_and_skip_directives() {
        let text = "/* c */\nenum {\n  IPPROTO_IP = 0,\t\t/* Dummy */\n#define IPPROTO_IP IPPROTO_IP\n  IPPROTO_ICMP = 1,\n  NEXT,\n  AFTER\n};\nenum named { A = 1 << 3, B };\nenum fwd;\n";
        let d = parse(text);
        let names: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.name.as_str(), d.body.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("IPPROTO_IP", "0"),
                ("IPPROTO_ICMP", "1"),
                ("NEXT", "(IPPROTO_ICMP + 1)"),
                ("AFTER", "(NEXT + 1)"),
                ("A", "1 << 3"),
                ("B", "(A + 1)")
            ]
        );
        assert_eq!(d[0].line, 3);
    }
}
