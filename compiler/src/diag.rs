//! Errors in specs: `file:line:col`, what was expected, a "did you mean" where it helps, and the
//! source line with the spot marked (rendered by miette).

use crate::spec::node::Pos;
use miette::{
    Diagnostic as MietteDiagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan,
};
use std::fmt;

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The spec's path.
    pub file: String,
    /// Where the problem is.
    pub pos: Pos,
    /// Length of the marked text (at least 1).
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// A suggestion (`did you mean …?`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at `pos` (the file is set by the caller).
    pub fn new(pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: String::new(),
            pos,
            len: 1,
            message: message.into(),
            help: None,
        }
    }

    /// Adds a suggestion (an empty one adds nothing).
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        let h = help.into();
        if !h.is_empty() {
            self.help = Some(h);
        }
        self
    }

    /// Marks `len` characters instead of one.
    pub fn len(mut self, len: usize) -> Diagnostic {
        self.len = len.max(1);
        self
    }

    /// `file:line:col: message (help)`, one line.
    pub fn headline(&self) -> String {
        let help = self
            .help
            .as_deref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        format!(
            "{}:{}:{}: {}{help}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }

    /// `file:line:col: message`, then the source with the spot marked and the suggestion, each
    /// said once (miette's own heading repeats the message, so it is left out).
    pub fn render(&self, source: &str, color: bool) -> String {
        let offset = byte_offset(source, self.pos);
        let len = self
            .len
            .min(source.len().saturating_sub(offset))
            .max(if offset < source.len() { 1 } else { 0 });
        let report = Report {
            message: self.message.clone(),
            help: self.help.clone(),
            src: NamedSource::new(&self.file, source.to_string()),
            span: (offset, len).into(),
        };
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let mut out = String::new();
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        if handler.render_report(&mut out, &report).is_err() {
            return self.headline();
        }
        // Miette's heading (`× message`, possibly wrapped) comes before the snippet's frame.
        let snippet: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.trim_start().starts_with('╭'))
            .collect();
        if snippet.is_empty() {
            return self.headline();
        }
        let headline = format!(
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        );
        format!("{headline}\n{}\n", snippet.join("\n"))
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())
    }
}

impl std::error::Error for Diagnostic {}

#[derive(Debug, thiserror::Error, MietteDiagnostic)]
#[error("{message}")]
struct Report {
    message: String,
    #[help]
    help: Option<String>,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: SourceSpan,
}

/// The byte offset of a 1-based line and column (columns count characters). Lines end as YAML
/// ends them: at `\n`, `\r\n` or a lone `\r`.
pub fn byte_offset(source: &str, pos: Pos) -> usize {
    let mut line_start = 0;
    let mut line = 1usize;
    let bytes = source.as_bytes();
    let mut i = 0;
    while line < pos.line as usize && i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => {
                line += 1;
                line_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if line < pos.line as usize {
        return source.len();
    }
    let text = &source[line_start..];
    let end = text.find(['\n', '\r']).unwrap_or(text.len());
    let col = (pos.col.max(1) - 1) as usize;
    line_start
        + text[..end]
            .char_indices()
            .nth(col)
            .map(|(b, _)| b)
            .unwrap_or(end)
}

/// User text quoted in a message: at most 60 characters, so that a 10,000-character line does
/// not become a 10,000-character message.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}…")
}

/// The candidate closest to `typed`, when it is close enough to be a plausible typo (the one
/// "did you mean" rule of the compiler and the runtime): Jaro-Winkler above 0.84, or one edit
/// away (a swap of neighbours counts as one), which catches typos in short names (`bgi`).
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = typed.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let c_lower = c.to_ascii_lowercase();
            let jw = strsim::jaro_winkler(&lower, &c_lower);
            // Only short names of about the same length can be one edit apart; checking only
            // those keeps a long typed string against a big table cheap.
            let one_edit = (3..=64).contains(&lower.len())
                && lower.len().abs_diff(c_lower.len()) <= 1
                && strsim::damerau_levenshtein(&lower, &c_lower) == 1;
            (if one_edit { jw.max(0.85) } else { jw }, c)
        })
        .filter(|(s, _)| *s > 0.84)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Names longer than this are never close to a known one (the longest syscall, errno or
/// constant name is under 40 characters): no suggestion is looked for.
const LONGEST_SUGGESTED: usize = 96;

/// `did you mean `x``, for the closest candidate when it is close enough.
///
/// Errors in a table repeat for every row (1,000 rows with one misspelled name are 1,000 checks
/// of the same name): each distinct name against each list of candidates is looked up once per
/// thread, and names too long to be anyone's are not compared at all.
pub fn did_you_mean<'a>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    use std::hash::{Hash, Hasher};
    type Memo = std::collections::HashMap<(String, u64), Option<String>>;
    thread_local! {
        static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
    }
    if typed.chars().count() > LONGEST_SUGGESTED {
        return None;
    }
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    candidates.hash(&mut h);
    let key = (typed.to_string(), h.finish());
    if let Some(hit) = MEMO.with(|m| m.borrow().get(&key).cloned()) {
        return hit;
    }
    let found = closest(typed, candidates).map(|c| format!("did you mean `{c}`?"));
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(key, found.clone());
    });
    found
}

/// `, did you mean `x`?` to end a sentence with, or nothing.
pub fn did_you_mean_suffix<'a>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    did_you_mean(typed, candidates)
        .map(|h| format!(", {h}"))
        .unwrap_or_default()
}

/// Turns a serde-saphyr error into a diagnostic, adding a suggestion for unknown fields.
pub fn from_yaml_error(file: &str, source: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let pos = err
        .location()
        .map(|l| Pos {
            line: l.line() as u32,
            col: l.column() as u32,
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    let full = err.to_string();
    // serde-saphyr prefixes "error: line L column C: " and may append a snippet.
    let first = full.lines().next().unwrap_or(&full);
    let message = first
        .split_once(": ")
        .map(|(head, rest)| {
            if head.starts_with("error") {
                rest
            } else {
                first
            }
        })
        .unwrap_or(first);
    let mut message = strip_position(message).to_string();
    if let Some(what) = message.strip_prefix("budget breached: ") {
        // serde-saphyr's limits (nesting depth 64, 250,000 values): a spec past them is not
        // one a person wrote.
        message = format!(
            "the spec is too large or too deeply nested to read ({what}); split it into \
             several files"
        );
    }
    if matches!(
        err.without_snippet(),
        serde_saphyr::Error::InvalidBooleanStrict { .. }
    ) {
        // Specs are YAML 1.2, as editors and the schema read them.
        message = "expected `true` or `false` (in YAML 1.2, yes, no, on, off, y and n are \
                   strings)"
            .into();
    }
    if let serde_saphyr::Error::InvalidScalar { ty, .. } = err.without_snippet() {
        let wanted = match *ty {
            "floating point" => "a number",
            "boolean" => "`true` or `false`",
            _ => "an integer",
        };
        let found = scalar_at(source, pos);
        message = match key_of_value_at(source, pos) {
            Some(key) => format!("`{key}:` takes {wanted}, not `{found}`"),
            None => format!("expected {wanted}, not `{found}`"),
        };
    }
    if let serde_saphyr::Error::Unexpected { expected, .. } = err.without_snippet() {
        // serde-saphyr names the YAML event it wanted ("sequence start"); say it as the spec
        // does, for the key whose value it is.
        let wanted = match *expected {
            "sequence start" => Some("a list (`[a, b]`, or lines starting with `- `)"),
            "mapping start" => Some("a map (`{key: value}`, or indented `key: value` lines)"),
            "scalar" | "string scalar" | "value" => Some("a single value (a string or a number)"),
            _ => None,
        };
        if let Some(wanted) = wanted {
            message = match key_of_value_at(source, pos) {
                Some(key) => format!("`{key}:` takes {wanted}"),
                None => format!("expected {wanted}"),
            };
        }
    }
    let mut d = Diagnostic::new(pos, message.clone());
    d.file = file.to_string();
    if let Some((field, expected)) = unknown_field(&message) {
        d.len = field.len();
        if let Some(h) = did_you_mean(&field, expected.iter().map(String::as_str)) {
            d.help = Some(h);
        }
    }
    d
}

/// The key whose value starts at `pos`: `args` for `args: "1, 2"`, or for a block value the key
/// on the nearest line above that ends with `key:`.
fn key_of_value_at(source: &str, pos: Pos) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let line = lines.get((pos.line as usize).checked_sub(1)?)?;
    let before: String = line
        .chars()
        .take(pos.col.saturating_sub(1) as usize)
        .collect();
    let key_before = |text: &str| -> Option<String> {
        let text = text.trim_end().strip_suffix(':')?;
        let key = text
            .rsplit(|c: char| c.is_whitespace() || "{,[-".contains(c))
            .next()?
            .trim_matches(|c| c == '"' || c == '\'');
        (!key.is_empty()).then(|| key.to_string())
    };
    if !before.trim().is_empty() {
        return key_before(&before);
    }
    lines[..pos.line as usize - 1]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .and_then(|l| key_before(l))
}

/// The plain scalar written at `pos` (up to a flow separator or a comment), for messages.
fn scalar_at(source: &str, pos: Pos) -> String {
    let at = byte_offset(source, pos);
    let text = source.get(at..).unwrap_or("");
    let end = text.find(['\n', ',', '}', ']', '#']).unwrap_or(text.len());
    excerpt(text[..end].trim())
}

fn strip_position(m: &str) -> &str {
    // "line 4 column 3: unknown field ..." → "unknown field ..."
    if m.starts_with("line ") {
        if let Some((_, rest)) = m.split_once(": ") {
            return rest;
        }
    }
    m
}

/// `unknown field `expct`, expected one of `a`, `b`` → ("expct", ["a", "b"]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|w| w.trim_matches('`'))
        .filter(|w| !w.is_empty() && *w != "expected" && *w != "one" && *w != "of")
        .map(String::from)
        .collect();
    Some((field.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_lines_and_columns() {
        let src = "a: 1\nbb: 2\n";
        assert_eq!(byte_offset(src, Pos { line: 2, col: 1 }), 5);
        assert_eq!(byte_offset(src, Pos { line: 2, col: 3 }), 7);
    }

    #[test]
    fn unknown_fields_get_a_suggestion() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            name: String,
            expect: Option<i64>,
        }
        let src = "name: x\nexpct: 1\n";
        let err = serde_saphyr::from_str::<C>(src).unwrap_err();
        let d = from_yaml_error("t.yaml", src, &err);
        assert_eq!(d.pos, Pos { line: 2, col: 1 });
        assert!(
            d.message.starts_with("unknown field `expct`"),
            "{}",
            d.message
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `expect`?"));
        let text = d.render(src, false);
        assert!(
            text.starts_with("t.yaml:2:1: unknown field `expct`"),
            "{text}"
        );
        assert!(text.contains("expct: 1"), "{text}");
    }

    #[test]
    fn a_value_of_the_wrong_shape_names_its_key_and_the_shape_wanted() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct C {
            cases: Vec<Case>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Case {
            args: Vec<i64>,
        }
        for (src, want) in [
            ("cases:\n  - args: \"1, 2\"\n", "`args:` takes a list"),
            ("cases:\n  args: [1]\n", "`cases:` takes a list"),
            (
                "cases: [{args: [1]}, {args: {a: 1}}]\n",
                "`args:` takes a list",
            ),
        ] {
            let err = serde_saphyr::from_str::<C>(src).unwrap_err();
            let d = from_yaml_error("t.yaml", src, &err);
            assert!(d.message.starts_with(want), "{src}: {}", d.message);
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            timeout: f64,
        }
        let src = "timeout: fast  # seconds\n";
        let err = serde_saphyr::from_str::<T>(src).unwrap_err();
        let d = from_yaml_error("t.yaml", src, &err);
        assert_eq!(d.message, "`timeout:` takes a number, not `fast`");
    }
}
