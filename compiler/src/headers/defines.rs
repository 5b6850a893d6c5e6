//! `#define` lines of a C header, with their line numbers and trailing comments.
//!
//! This is not a preprocessor: conditionals are not evaluated, and every `#define` is listed in
//! file order. That is what the kernel's uapi headers need: their numbers and flags are plain
//! definitions, and the few that differ by configuration are reported as ambiguous by callers.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, space0, space1};
use nom::combinator::{opt, recognize};
use nom::multi::separated_list0;
use nom::sequence::{delimited, pair, preceded};
use nom::{IResult, Parser};

/// One `#define`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Define {
    /// The macro's name.
    pub name: String,
    /// `Some` for function-like macros.
    pub params: Option<Vec<String>>,
    /// The replacement text, comments removed, whitespace collapsed.
    pub body: String,
    /// The text of a comment on the same line, if any (errno descriptions live there).
    pub comment: Option<String>,
    /// 1-based line of the `#define`.
    pub line: u32,
}

fn identifier(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)
}

fn params(input: &str) -> IResult<&str, Vec<&str>> {
    delimited(
        char('('),
        separated_list0(
            delimited(space0, char(','), space0),
            alt((identifier, tag("..."))),
        ),
        preceded(space0, char(')')),
    )
    .parse(input)
}

/// `# define NAME(params) body` on one logical line. Function-like only when `(` follows the
/// name directly, as in C.
fn define_line(input: &str) -> IResult<&str, (&str, Option<Vec<&str>>, &str)> {
    let (input, _) = (space0, char('#'), space0, tag("define"), space1).parse(input)?;
    let (input, name) = identifier(input)?;
    let (input, params) = opt(params).parse(input)?;
    Ok(("", (name, params, input.trim())))
}

/// Splits a header into logical lines (continuations joined), removing comments and keeping the
/// text of the comment that starts on each line.
fn logical_lines(text: &str) -> Vec<(u32, String, Option<String>)> {
    let mut out = Vec::new();
    let mut in_comment = false;
    let mut current = String::new();
    let mut comment = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        if current.is_empty() {
            start_line = i as u32 + 1;
        }
        let mut line = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if in_comment {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    in_comment = false;
                } else {
                    comment.push(c);
                }
                continue;
            }
            if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                in_comment = true;
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                comment.extend(chars.by_ref().skip(1));
                break;
            }
            line.push(c);
        }
        let continued = line.trim_end().ends_with('\\');
        let piece = line.trim_end().trim_end_matches('\\');
        current.push_str(piece);
        current.push(' ');
        if !continued && !in_comment {
            let text = current.split_whitespace().collect::<Vec<_>>().join(" ");
            let note = comment.split_whitespace().collect::<Vec<_>>().join(" ");
            out.push((start_line, text, (!note.is_empty()).then_some(note)));
            current.clear();
            comment.clear();
        }
    }
    out
}

/// Every `#define` in `text`.
pub fn parse(text: &str) -> Vec<Define> {
    logical_lines(text)
        .into_iter()
        .filter_map(|(line, text, comment)| {
            let (_, (name, params, body)) = define_line(&text).ok()?;
            Some(Define {
                name: name.to_string(),
                params: params.map(|p| p.into_iter().map(String::from).collect()),
                body: body.to_string(),
                comment,
                line,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_function_macros_with_comments() {
        let text = "#ifndef X\n#define EPERM\t\t 1\t/* Operation not permitted */\n\
                    # define _IOC(dir,type,nr,size) \\\n  (((dir) << 30) | (nr))\n\
                    /* a comment\n spanning */\n#define O_RDONLY 00000000 // read\n\
                    #define EMPTY\n#define PAREN (1 << 2)\n";
        let d = parse(text);
        assert_eq!(d[0].name, "EPERM");
        assert_eq!(d[0].body, "1");
        assert_eq!(d[0].comment.as_deref(), Some("Operation not permitted"));
        assert_eq!(d[0].line, 2);
        assert_eq!(d[1].name, "_IOC");
        assert_eq!(
            d[1].params.as_deref(),
            Some(&["dir".to_string(), "type".into(), "nr".into(), "size".into()][..])
        );
        assert_eq!(d[1].body, "(((dir) << 30) | (nr))");
        assert_eq!(d[1].line, 3);
        assert_eq!(d[2].name, "O_RDONLY");
        assert_eq!(d[2].comment.as_deref(), Some("read"));
        assert_eq!(d[3].body, "");
        // An object-like macro whose body starts with a parenthesis after a space.
        assert_eq!(d[4].params, None);
        assert_eq!(d[4].body, "(1 << 2)");
    }
}
