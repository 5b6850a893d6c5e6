//! Writing observed outcomes into a spec as its expectations, keeping everything else of the
//! file (comments, order, formatting) as it was.
//!
//! Edits are textual: the value after `expect:` on a given line is replaced. A scalar or a
//! one-line flow value (`[EBADF, EINVAL]`, `{ret: 0}`) is replaced in place; a block value (the
//! indented lines under `expect:`) is replaced by one line.

/// Replaces the expectation on each `(line, value)`; lines without `expect:` are left alone.
/// Returns the new text and the lines actually changed.
pub fn apply(source: &str, edits: &[(u32, String)]) -> (String, Vec<u32>) {
    let mut lines: Vec<String> = source.split('\n').map(String::from).collect();
    let mut changed = Vec::new();
    let mut remove: Vec<usize> = Vec::new();
    for (line, value) in edits {
        let i = (*line as usize).saturating_sub(1);
        let Some(text) = lines.get(i).cloned() else {
            continue;
        };
        let Some(at) = text.find("expect:") else {
            continue;
        };
        let value_start = at + "expect:".len();
        let rest = &text[value_start..];
        let trimmed = rest.trim_start();
        let lead = rest.len() - trimmed.len();
        let (old_len, tail) = if trimmed.is_empty() || trimmed.starts_with('#') {
            // A block value on the lines below.
            let indent = text.len() - text.trim_start().len();
            let mut j = i + 1;
            while j < lines.len() {
                let l = &lines[j];
                let li = l.len() - l.trim_start().len();
                if !l.trim().is_empty() && li <= indent {
                    break;
                }
                j += 1;
            }
            remove.extend(i + 1..j);
            (trimmed.len(), String::new())
        } else {
            let n = value_len(trimmed);
            (n, trimmed[n..].to_string())
        };
        let _ = old_len;
        let new = format!(
            "{}{}{}{}",
            &text[..value_start],
            if lead == 0 { " " } else { &rest[..lead] },
            value,
            tail
        );
        if new != text {
            changed.push(*line);
        }
        lines[i] = new;
    }
    remove.sort_unstable();
    remove.dedup();
    for i in remove.into_iter().rev() {
        lines.remove(i);
    }
    (lines.join("\n"), changed)
}

/// The length of the YAML value at the start of `s`: a bracketed flow value, a quoted string,
/// or a plain scalar up to `,` `}` `]` (in a flow collection) or ` #`.
fn value_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'[') | Some(b'{') => {
            let mut depth = 0i32;
            let mut quote: Option<u8> = None;
            for (i, &b) in bytes.iter().enumerate() {
                match (quote, b) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(b),
                    (None, b'[' | b'{') => depth += 1,
                    (None, b']' | b'}') => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
            }
            s.len()
        }
        Some(q @ (b'"' | b'\'')) => s[1..].find(*q as char).map(|e| e + 2).unwrap_or(s.len()),
        _ => s
            .find([',', '}', ']'])
            .into_iter()
            .chain(s.find(" #"))
            .min()
            .map(|e| s[..e].trim_end().len())
            .unwrap_or(s.trim_end().len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_flows_and_blocks_are_replaced_and_the_rest_kept() {
        let src = "# keep me\ncases:\n  - name: a   # and me\n    expect: any   # recorded below\n  - { syscall: close, args: [-1], expect: [EBADF, EINVAL] }\n  - name: c\n    expect:\n      ret: 0\n      out: {0: {starts_with: x}}\n    timeout: 1\n";
        let (out, changed) = apply(
            src,
            &[
                (4, "EINVAL".into()),
                (5, "EBADF".into()),
                (7, "ok".into()),
                (3, "X".into()),
            ],
        );
        assert_eq!(
            out,
            "# keep me\ncases:\n  - name: a   # and me\n    expect: EINVAL   # recorded below\n  - { syscall: close, args: [-1], expect: EBADF }\n  - name: c\n    expect: ok\n    timeout: 1\n"
        );
        assert_eq!(changed, [4, 5, 7]);
    }

    #[test]
    fn unchanged_values_are_not_reported() {
        let (_, changed) = apply("    expect: EBADF\n", &[(1, "EBADF".into())]);
        assert!(changed.is_empty());
    }
}
