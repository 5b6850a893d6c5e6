//! Writing observed outcomes into a spec as its expectations, keeping everything else of the
//! file (comments, order, formatting) as it was.
//!
//! Where each expectation is comes from the YAML parser, never from a text search: the value of
//! every `expect:` key, at the position the parser gives (a name that says "what to expect:"
//! is a string, not a key). A scalar or a one-line flow value (`[EBADF, EINVAL]`, `{ret: 0}`) is
//! replaced in place; a block value (the indented lines under `expect:`) is replaced by one
//! line.
//!
//! A suite recorded over several runs (`provium record --runs N`) keeps one expectation per
//! line: the answer if every run gave the same one, else all the answers seen, as an errno
//! list or `{ one_of: [...] }`. An expectation that already lists several answers stays while
//! the runs give only answers it lists, so recording twice writes the same specs.

use crate::diag::byte_offset;
use crate::spec::node::{Node, Value};
use std::collections::BTreeMap;
use std::ops::Range;

/// One `expect:` of a spec, as the parser found it.
#[derive(Debug, Clone)]
struct Located {
    /// The line observations name it by: its value's (a block map's first key).
    line: u32,
    /// The line of its `expect:` key.
    key_line: u32,
    /// The bytes of its value; for a block value, from the end of `expect:` to the end of the
    /// block's last line.
    range: Range<usize>,
    /// A block value (replaced by one line after the key).
    block: bool,
    value: Node,
}

/// Every `expect:` in `source` with its value's place, by line; lines with more than one (two
/// flow maps on one line) are left out, as an edit there could not say which it means.
fn locate(source: &str) -> BTreeMap<u32, Located> {
    let Ok(root) =
        serde_saphyr::from_str_with_options::<Node>(source, crate::check::yaml_options())
    else {
        return BTreeMap::new();
    };
    let mut found: Vec<Located> = Vec::new();
    walk(source, &root, &mut found);
    let mut by_line: BTreeMap<u32, Vec<Located>> = BTreeMap::new();
    for l in found {
        // A block value is also found by its key's line, as it is written.
        if l.block && l.key_line != l.line {
            by_line.entry(l.key_line).or_default().push(l.clone());
        }
        by_line.entry(l.line).or_default().push(l);
    }
    by_line
        .into_iter()
        .filter_map(|(line, mut v)| (v.len() == 1).then(|| (line, v.remove(0))))
        .collect()
}

fn walk(source: &str, node: &Node, out: &mut Vec<Located>) {
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                if k.as_str() == Some("expect") {
                    if let Some(l) = place(source, k, v) {
                        out.push(l);
                    }
                }
                walk(source, v, out);
            }
        }
        Value::Seq(items) => items.iter().for_each(|n| walk(source, n, out)),
        _ => {}
    }
}

/// Where the value of the `expect` key `key` is.
fn place(source: &str, key: &Node, value: &Node) -> Option<Located> {
    if matches!(value.value, Value::Null) {
        return None;
    }
    let start = byte_offset(source, value.pos);
    let rest = source.get(start..)?;
    let flow_or_scalar = !matches!(value.value, Value::Map(_) | Value::Seq(_))
        || rest.starts_with(['{', '['])
        || value.pos.line == key.pos.line;
    if flow_or_scalar {
        // A scalar ends on its line (a flow collection may span lines).
        let rest = if rest.starts_with(['{', '[']) {
            rest
        } else {
            rest.split('\n').next().unwrap_or(rest)
        };
        return Some(Located {
            line: value.pos.line,
            key_line: key.pos.line,
            range: start..start + value_len(rest),
            block: false,
            value: value.clone(),
        });
    }
    // A block value: from after `expect:` to the end of the last line indented under the key.
    let key_at = byte_offset(source, key.pos);
    let colon = key_at + source.get(key_at..)?.find(':')? + 1;
    let key_line_end = colon + source[colon..].find('\n').unwrap_or(source.len() - colon);
    let indent = (key.pos.col - 1) as usize;
    let mut end = key_line_end;
    let mut at = key_line_end;
    while at < source.len() {
        let line_start = at + 1;
        let line_end = source[line_start..]
            .find('\n')
            .map(|e| line_start + e)
            .unwrap_or(source.len());
        let line = &source[line_start..line_end];
        if line_start >= source.len() {
            break;
        }
        if !line.trim().is_empty() {
            let li = line.len() - line.trim_start().len();
            if li <= indent {
                break;
            }
            end = line_end;
        }
        at = line_end;
    }
    Some(Located {
        line: value.pos.line,
        key_line: key.pos.line,
        range: colon..end,
        block: true,
        value: value.clone(),
    })
}

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
    let located = locate(source);
    let mut edits = Vec::new();
    let mut differing = Vec::new();
    for (line, mut values) in seen {
        let Some(at) = located.get(&line) else {
            continue;
        };
        let existing = &source[at.range.clone()];
        if existing.contains("{{") {
            // A templated expectation (a table row's `{{ err }}`) is data, not a recording.
            continue;
        }
        if checks_more_than_the_answer(&at.value) {
            // `{ret: 0, out: {...}}` or `{errno: EPIPE, raises: SIGPIPE}`: a recording holds
            // only the answer and would drop the other checks; such a line is left as written.
            continue;
        }
        if values.len() > 1 {
            differing.push(line);
        }
        if let Some(listed) = alternatives(existing.trim()) {
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

/// Whether an expectation checks more than the call's answer: buffers (`out`) or signals
/// (`raises`).
fn checks_more_than_the_answer(value: &Node) -> bool {
    value.get("out").is_some() || value.get("raises").is_some()
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

/// Replaces the expectation on each `(line, value)` (lines with no expectation of their own are
/// left alone). Returns the new text and the lines actually changed.
pub fn apply(source: &str, edits: &[(u32, String)]) -> (String, Vec<u32>) {
    let located = locate(source);
    let mut replacements: Vec<(Range<usize>, String, u32)> = Vec::new();
    for (line, value) in edits {
        let Some(at) = located.get(line) else {
            continue;
        };
        let new = if at.block {
            format!(" {value}")
        } else {
            value.clone()
        };
        if source[at.range.clone()] != new {
            replacements.push((at.range.clone(), new, *line));
        }
    }
    replacements.sort_by_key(|(r, _, _)| r.start);
    let mut out = String::with_capacity(source.len());
    let mut from = 0;
    let mut changed = Vec::new();
    for (range, new, line) in replacements {
        if range.start < from {
            continue;
        }
        out.push_str(&source[from..range.start]);
        out.push_str(&new);
        from = range.end;
        changed.push(line);
    }
    out.push_str(&source[from..]);
    changed.sort_unstable();
    (out, changed)
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
    fn an_expect_inside_a_string_is_not_an_expectation() {
        let src = "cases:\n  - {name: \"what to expect: EBADF\", syscall: close, args: [-1], expect: 0}\n";
        let (out, changed) = apply(src, &[(2, "EBADF".into())]);
        assert_eq!(
            out,
            "cases:\n  - {name: \"what to expect: EBADF\", syscall: close, args: [-1], expect: EBADF}\n"
        );
        assert_eq!(changed, [2]);
    }

    #[test]
    fn a_block_expectation_is_recorded_by_its_values_line() {
        let src = "cases:\n  - name: b\n    syscall: close\n    expect:\n      errno: EINVAL\n    args: [-1]\n";
        let observed = vec![vec![(5, "EBADF".to_string(), false)]];
        let (edits, _) = merge_runs(src, &observed);
        assert_eq!(edits, [(5, "EBADF".to_string())]);
        let (out, _) = apply(src, &edits);
        assert_eq!(
            out,
            "cases:\n  - name: b\n    syscall: close\n    expect: EBADF\n    args: [-1]\n"
        );
    }

    #[test]
    fn a_scalar_ends_on_its_line() {
        let src =
            "cases:\n  - name: a\n    expect: any\n  - name: b\n    expect: { ret: { gt: 1 } }\n";
        let (out, _) = apply(src, &[(3, "ESRCH".into())]);
        assert_eq!(
            out,
            "cases:\n  - name: a\n    expect: ESRCH\n  - name: b\n    expect: { ret: { gt: 1 } }\n"
        );
    }

    #[test]
    fn unchanged_values_are_not_reported() {
        let (_, changed) = apply("    expect: EBADF\n", &[(1, "EBADF".into())]);
        assert!(changed.is_empty());
    }
}
