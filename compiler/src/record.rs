//! Writing observed outcomes into a spec as its expectations, keeping everything else of the
//! file (comments, order, formatting) as it was.
//!
//! Edits are textual: the value after `expect:` on a given line is replaced. A scalar or a
//! one-line flow value (`[EBADF, EINVAL]`, `{ret: 0}`) is replaced in place; a block value (the
//! indented lines under `expect:`) is replaced by one line.
//!
//! A suite recorded over several runs (`provium record --runs N`) keeps one expectation per
//! line: the answer if every run gave the same one, else all the answers seen, as an errno
//! list or `{ one_of: [...] }`. An expectation that already lists several answers stays while
//! the runs give only answers it lists, so recording twice writes the same specs.

use std::collections::BTreeMap;

/// The edits that record what `runs` observed (each run: `(line, observed, whether the
/// expectation as written held)`), and the lines whose answer differed between runs or rows.
/// A line whose expectation held on every run and row is left as written: recording never
/// weakens a passing expectation (`expect: 3` stays, not `ok`).
pub fn merge_runs(
    source: &str,
    runs: &[Vec<(u32, String, bool)>],
) -> (Vec<(u32, String)>, Vec<u32>) {
    let mut seen: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut failed: std::collections::BTreeSet<u32> = Default::default();
    for run in runs {
        for (line, value, holds) in run {
            let values = seen.entry(*line).or_default();
            if !values.contains(value) {
                values.push(value.clone());
            }
            if !holds {
                failed.insert(*line);
            }
        }
    }
    seen.retain(|line, values| failed.contains(line) || values.len() > 1);
    let lines: Vec<&str> = source.split('\n').collect();
    let mut edits = Vec::new();
    let mut differing = Vec::new();
    for (line, mut values) in seen {
        let existing = lines
            .get((line as usize).saturating_sub(1))
            .and_then(|l| inline_value(l));
        if existing.is_some_and(|e| e.contains("{{")) {
            // A templated expectation (a table row's `{{ err }}`) is data, not a recording.
            continue;
        }
        if checks_more_than_the_answer(&lines, line as usize) {
            // `{ret: 0, out: {...}}` or `{errno: EPIPE, raises: SIGPIPE}`: a recording holds
            // only the answer and would drop the other checks; such a line is left as written.
            continue;
        }
        if values.len() > 1 {
            differing.push(line);
        }
        if let Some(listed) = existing.and_then(alternatives) {
            let answers: Vec<Option<serde_json::Value>> =
                values.iter().map(|v| normalize(v)).collect();
            if answers
                .iter()
                .all(|a| a.as_ref().is_some_and(|a| listed.contains(a)))
            {
                continue;
            }
        }
        values.sort();
        edits.push((line, render(&values)));
    }
    (edits, differing)
}

/// Whether the expectation on `line` (1-based) checks more than the call's answer: buffers
/// (`out`) or signals (`raises`), inline or as a block below the key.
fn checks_more_than_the_answer(lines: &[&str], line: usize) -> bool {
    // A block value's position is its first key, on the line below `expect:`.
    let line = match lines.get(line.saturating_sub(1)) {
        Some(t) if t.contains("expect:") => line,
        _ if line >= 2 && lines[line - 2].trim_end().ends_with("expect:") => line - 1,
        _ => return false,
    };
    let text = lines[line - 1];
    let value = match inline_value(text) {
        Some(v) => v.to_string(),
        None => {
            // A block value: the lines indented under the key.
            let indent = text.len() - text.trim_start().len();
            lines[line..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    match normalize(&value) {
        Some(serde_json::Value::Object(m)) => m.contains_key("out") || m.contains_key("raises"),
        _ => false,
    }
}

/// The value after `expect:` on a line, when it is on that line.
fn inline_value(line: &str) -> Option<&str> {
    let at = line.find("expect:")?;
    let rest = line[at + "expect:".len()..].trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    Some(&rest[..value_len(rest)])
}

/// The answers an expectation lists when it lists several: `[EBADF, EINVAL]`,
/// `{ one_of: [0, EINTR] }`.
fn alternatives(text: &str) -> Option<Vec<serde_json::Value>> {
    let value = normalize(text)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut m) if m.len() == 1 => match m.remove("one_of")? {
            serde_json::Value::Array(items) => items,
            _ => return None,
        },
        _ => return None,
    };
    (items.len() > 1).then_some(items)
}

/// A recorded value as data, so that `{died: {signal: 9}}` and `{ died: { signal: 9 } }` agree.
fn normalize(text: &str) -> Option<serde_json::Value> {
    serde_saphyr::from_str_with_options(text, crate::check::yaml_options()).ok()
}

/// One answer as itself; several errnos as a list; anything else as `{ one_of: [...] }`.
fn render(values: &[String]) -> String {
    match values {
        [one] => one.clone(),
        many if many.iter().all(|v| crate::linux::errno_number(v).is_some()) => {
            format!("[{}]", many.join(", "))
        }
        many => format!("{{ one_of: [{}] }}", many.join(", ")),
    }
}

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

    /// Runs whose observations all failed their expectation (as a fresh `expect: any` does
    /// not: `any` holds; what matters here is what is written).
    fn runs(list: &[&[(u32, &str)]]) -> Vec<Vec<(u32, String, bool)>> {
        list.iter()
            .map(|r| r.iter().map(|(l, v)| (*l, v.to_string(), false)).collect())
            .collect()
    }

    #[test]
    fn answers_that_differ_between_runs_are_all_kept_and_stay_kept() {
        let src = "cases:\n  - { expect: any }\n  - { expect: any }\n  - { expect: any }\n  - { expect: \"{{ err }}\" }\n";
        let (edits, differing) = merge_runs(
            src,
            &runs(&[
                &[(2, "0"), (3, "EINVAL"), (4, "EBADF"), (5, "EBADF")],
                &[
                    (2, "{ died: { signal: 9 } }"),
                    (3, "EINVAL"),
                    (4, "EAGAIN"),
                    (5, "EPERM"),
                ],
            ]),
        );
        assert_eq!(
            edits,
            [
                (2, "{ one_of: [0, { died: { signal: 9 } }] }".to_string()),
                (3, "EINVAL".to_string()),
                (4, "[EAGAIN, EBADF]".to_string()),
            ]
        );
        assert_eq!(differing, [2, 4]);
        let (recorded, _) = apply(src, &edits);
        // A later recording that sees only some of the listed answers changes nothing.
        let (again, _) = merge_runs(
            &recorded,
            &runs(&[&[(2, "{died: {signal: 9}}"), (3, "EINVAL"), (4, "EBADF")]]),
        );
        assert_eq!(again, [(3, "EINVAL".to_string())]);
        let (same, changed) = apply(&recorded, &again);
        assert_eq!((same.as_str(), changed.len()), (recorded.as_str(), 0));
        // A new answer is not hidden: the expectation becomes what this recording saw.
        let (changed, _) = merge_runs(&recorded, &runs(&[&[(4, "ENOENT")]]));
        assert_eq!(changed, [(4, "ENOENT".to_string())]);
    }

    #[test]
    fn expectations_that_check_more_than_the_answer_are_kept() {
        let src = "cases:\n  - { expect: { ret: 3, out: { 1: { equals: abc } } } }\n  - name: b\n    expect:\n      errno: EPIPE\n      raises: SIGPIPE\n  - { expect: { ret: 1 } }\n";
        let (edits, _) = merge_runs(src, &runs(&[&[(2, "ok"), (5, "EPIPE"), (7, "ok")]]));
        assert_eq!(edits, [(7, "ok".to_string())]);
    }

    #[test]
    fn an_expectation_that_holds_is_left_as_written() {
        let src = "cases:\n  - { expect: 3 }\n  - { expect: EINVAL }\n";
        let observed = vec![vec![
            (2, "ok".to_string(), true),
            (3, "EBADF".to_string(), false),
        ]];
        let (edits, _) = merge_runs(src, &observed);
        assert_eq!(edits, [(3, "EBADF".to_string())]);
    }

    #[test]
    fn unchanged_values_are_not_reported() {
        let (_, changed) = apply("    expect: EBADF\n", &[(1, "EBADF".into())]);
        assert!(changed.is_empty());
    }
}
