//! Integer expressions, as specs and kernel headers write them.
//!
//! ```text
//! expr    := or
//! or      := xor ( '|' xor )*
//! xor     := and ( '^' and )*
//! and     := shift ( '&' shift )*
//! shift   := sum ( ('<<' | '>>') sum )*
//! sum     := product ( ('+' | '-') product )*
//! product := unary ( ('*' | '/' | '%') unary )*
//! unary   := ('-' | '~' | '!' | '+' | cast) unary | atom
//! cast    := '(' C type ')'                     e.g. (__u64), (unsigned long), (u32)
//! atom    := number | '$'name | name | name '(' args ')' | '(' expr ')'
//! number  := 0x.. | 0o.. | 0b.. | 0NNN (C octal, headers only) | decimal, with U/L suffixes
//! ```
//!
//! Arithmetic is on 64-bit integers and wraps, as the kernel's `u64` values do.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, multispace0};
use nom::combinator::{all_consuming, map, opt, recognize};
use nom::multi::{many0, separated_list0};
use nom::sequence::{delimited, pair, preceded, terminated};
use nom::{IResult, Parser};
use std::fmt;

/// An integer expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A literal.
    Num(i64),
    /// A named constant (or, in headers, an object-like macro).
    Name(String),
    /// A value saved at run time by `save:` (`$fd`).
    Saved(String),
    /// A function-like macro invocation (headers: `_IOW('f', 1, int)`).
    Call(String, Vec<Expr>),
    /// A C type used as a macro argument (`sizeof`-like uses in ioctl macros).
    Type(String),
    /// A prefix operator applied to its operand.
    Unary(UnOp, Box<Expr>),
    /// A binary operator applied to its operands.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A cast: the value is truncated to the type's width.
    Cast(String, Box<Expr>),
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`.
    Neg,
    /// `~x`, the bitwise complement.
    Not,
    /// `!x`: 1 when `x` is 0, else 0.
    LogicalNot,
}

/// Binary operators, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `|`.
    Or,
    /// `^`.
    Xor,
    /// `&`.
    And,
    /// `<<`.
    Shl,
    /// `>>` (arithmetic).
    Shr,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (integer division).
    Div,
    /// `%`.
    Rem,
}

/// Where in the text a parse failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the problem in the text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn ws<'a, O, F>(inner: F) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>
where
    F: Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
{
    delimited(multispace0, inner, multispace0)
}

fn ident(input: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)
}

/// Parses the digits of a number with an optional C suffix. Values above `i64::MAX` wrap, as
/// `0xffffffffffffffff` is `-1` in 64 bits.
fn number(input: &str) -> IResult<&str, i64> {
    let (rest, text) = recognize(pair(
        take_while1(|c: char| c.is_ascii_digit()),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(input)?;
    let fail = || nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit));
    let lower = text.to_ascii_lowercase();
    let body = lower.trim_end_matches(['u', 'l']);
    let body: String = body.chars().filter(|&c| c != '_').collect();
    let (digits, radix) = if let Some(h) = body.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if let Some(o) = body.strip_prefix("0o") {
        (o.to_string(), 8)
    } else if let Some(b) = body.strip_prefix("0b") {
        (b.to_string(), 2)
    } else if body.len() > 1 && body.starts_with('0') {
        // C octal, as headers write modes (`0600`) and flags (`00004000`).
        (body[1..].to_string(), 8)
    } else {
        (body.clone(), 10)
    };
    let value = u64::from_str_radix(&digits, radix).map_err(|_| fail())?;
    Ok((rest, value as i64))
}

/// A character literal, as ioctl macros use for their type byte (`'f'`).
fn char_literal(input: &str) -> IResult<&str, i64> {
    let (rest, c) =
        delimited(char('\''), nom::character::complete::anychar, char('\'')).parse(input)?;
    Ok((rest, c as i64))
}

const TYPE_WORDS: [&str; 26] = [
    "unsigned", "signed", "long", "int", "short", "char", "const", "struct", "union", "void",
    "volatile", "__u64", "__u32", "__s64",
    // The spec's own field types, so that `(u32)$fd` is a cast as a spec author means it.
    "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "i8", "i16", "i32", "i64",
];

/// A C type in parentheses: `(__u64)`, `(unsigned long)`, `(struct foo *)`.
fn c_type(input: &str) -> IResult<&str, String> {
    let (rest, words) =
        delimited(char('('), many0(ws(alt((ident, tag("*"))))), char(')')).parse(input)?;
    let is_type = !words.is_empty()
        && words
            .iter()
            .all(|w| *w == "*" || !w.chars().all(|c| c.is_ascii_digit()))
        && (words.len() > 1
            || TYPE_WORDS.contains(&words[0])
            || words[0].starts_with("__")
            || words[0].ends_with("_t"));
    if !is_type {
        return Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Tag,
        )));
    }
    Ok((rest, words.join(" ")))
}

fn call_args(input: &str) -> IResult<&str, Vec<Expr>> {
    delimited(
        char('('),
        separated_list0(ws(char(',')), ws(macro_arg)),
        char(')'),
    )
    .parse(input)
}

/// A macro argument: an expression, or a bare type (`struct termios`, `int`).
fn macro_arg(input: &str) -> IResult<&str, Expr> {
    alt((
        terminated(expr, nom::combinator::peek(alt((tag(","), tag(")"))))),
        map(
            recognize(many0(ws(alt((ident, tag("*"), tag("[]")))))),
            |t: &str| Expr::Type(t.split_whitespace().collect::<Vec<_>>().join(" ")),
        ),
    ))
    .parse(input)
}

fn atom(input: &str) -> IResult<&str, Expr> {
    ws(alt((
        map(number, Expr::Num),
        map(char_literal, Expr::Num),
        map(preceded(char('$'), ident), |n: &str| {
            Expr::Saved(n.to_string())
        }),
        // C allows space between a macro's name and its arguments: `_IO ('$', 0)`.
        map(
            pair(ident, opt(preceded(multispace0, call_args))),
            |(n, args)| match args {
                Some(a) => Expr::Call(n.to_string(), a),
                None => Expr::Name(n.to_string()),
            },
        ),
        delimited(char('('), expr, ws(char(')'))),
    )))
    .parse(input)
}

/// How deep an expression may nest (parentheses, prefix operators, casts): far beyond any real
/// spec or header, and far below what would overflow a thread's stack.
pub const MAX_DEPTH: usize = 32;
/// The longest expression text: bounds the number of operands, and with it the depth of the
/// (left-leaning) tree that evaluation walks.
pub const MAX_LEN: usize = 4096;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one level of nesting for as long as it lives.
struct Nesting;

impl Nesting {
    fn enter(input: &str) -> Result<Nesting, nom::Err<nom::error::Error<&str>>> {
        let depth = DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let guard = Nesting;
        if depth > MAX_DEPTH {
            return Err(nom::Err::Failure(nom::error::Error::new(
                input,
                nom::error::ErrorKind::TooLarge,
            )));
        }
        Ok(guard)
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn unary(input: &str) -> IResult<&str, Expr> {
    let _nesting = Nesting::enter(input)?;
    let (input, _) = multispace0(input)?;
    if let Ok((rest, ty)) = c_type(input) {
        if let Ok((rest, inner)) = unary(rest) {
            return Ok((rest, Expr::Cast(ty, Box::new(inner))));
        }
    }
    alt((
        map(preceded(char('-'), unary), |e| {
            Expr::Unary(UnOp::Neg, Box::new(e))
        }),
        map(preceded(char('~'), unary), |e| {
            Expr::Unary(UnOp::Not, Box::new(e))
        }),
        map(preceded(char('!'), unary), |e| {
            Expr::Unary(UnOp::LogicalNot, Box::new(e))
        }),
        preceded(char('+'), unary),
        atom,
    ))
    .parse(input)
}

fn fold(first: Expr, rest: Vec<(BinOp, Expr)>) -> Expr {
    rest.into_iter().fold(first, |acc, (op, e)| {
        Expr::Binary(op, Box::new(acc), Box::new(e))
    })
}

fn level<'a>(
    next: fn(&'a str) -> IResult<&'a str, Expr>,
    ops: &'static [(&'static str, BinOp)],
) -> impl FnMut(&'a str) -> IResult<&'a str, Expr> {
    move |input: &'a str| {
        let (mut input, first) = next(input)?;
        let mut rest = Vec::new();
        loop {
            let (after_ws, _) = multispace0(input)?;
            let found = ops.iter().find(|(sym, _)| {
                after_ws.starts_with(sym)
                    // `|` is not the start of `||`, nor `&` of `&&`.
                    && !(sym.len() == 1
                        && (after_ws[1..].starts_with(*sym) || after_ws[1..].starts_with('=')))
            });
            let Some((sym, op)) = found else { break };
            let (after, e) = next(&after_ws[sym.len()..])?;
            rest.push((*op, e));
            input = after;
        }
        Ok((input, fold(first, rest)))
    }
}

fn product(i: &str) -> IResult<&str, Expr> {
    level(
        unary,
        &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
    )(i)
}
fn sum(i: &str) -> IResult<&str, Expr> {
    level(product, &[("+", BinOp::Add), ("-", BinOp::Sub)])(i)
}
fn shift(i: &str) -> IResult<&str, Expr> {
    level(sum, &[("<<", BinOp::Shl), (">>", BinOp::Shr)])(i)
}
fn and(i: &str) -> IResult<&str, Expr> {
    level(shift, &[("&", BinOp::And)])(i)
}
fn xor(i: &str) -> IResult<&str, Expr> {
    level(and, &[("^", BinOp::Xor)])(i)
}
fn expr(i: &str) -> IResult<&str, Expr> {
    level(xor, &[("|", BinOp::Or)])(i)
}

/// Parses a whole expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_LEN {
        return Err(ParseError {
            offset: 0,
            message: format!(
                "the expression is {} characters long; the limit is {MAX_LEN}",
                text.len()
            ),
        });
    }
    DEPTH.with(|d| d.set(0));
    match all_consuming(ws(expr)).parse(text) {
        Ok((_, e)) => Ok(e),
        Err(nom::Err::Failure(e)) if e.code == nom::error::ErrorKind::TooLarge => Err(ParseError {
            offset: text.len() - e.input.len(),
            message: format!("the expression nests more than {MAX_DEPTH} levels deep"),
        }),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let offset = text.len() - e.input.len();
            let near = e.input.chars().take(12).collect::<String>();
            let message = if e.input.trim().is_empty() {
                "the expression is incomplete".to_string()
            } else {
                format!("unexpected `{near}` in the expression")
            };
            Err(ParseError { offset, message })
        }
        Err(nom::Err::Incomplete(_)) => Err(ParseError {
            offset: text.len(),
            message: "the expression is incomplete".into(),
        }),
    }
}

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// A name that is no known constant.
    Unknown(String),
    /// A saved value (`$fd`), known only at run time.
    Saved(String),
    /// `x / 0` or `x % 0`.
    DivisionByZero,
    /// A macro call or a type where a value is needed.
    Unsupported(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Unknown(n) => write!(f, "unknown name `{n}`"),
            EvalError::Saved(n) => write!(f, "`${n}` is only known at run time"),
            EvalError::DivisionByZero => f.write_str("division by zero"),
            EvalError::Unsupported(w) => write!(f, "cannot evaluate {w}"),
        }
    }
}

/// Width in bits of a cast's type, for truncation; `None` leaves the value as it is.
pub fn cast_bits(ty: &str) -> Option<(u32, bool)> {
    let t = ty.replace("const ", "");
    let t = t.trim();
    if t.ends_with('*') {
        return None;
    }
    Some(match t {
        "__u8" | "u8" | "unsigned char" | "uint8_t" => (8, false),
        "__s8" | "s8" | "i8" | "char" | "signed char" | "int8_t" => (8, true),
        "__u16" | "u16" | "unsigned short" | "uint16_t" => (16, false),
        "__s16" | "s16" | "i16" | "short" | "int16_t" => (16, true),
        "__u32" | "u32" | "unsigned int" | "unsigned" | "uint32_t" => (32, false),
        "__s32" | "s32" | "i32" | "int" | "signed int" | "int32_t" => (32, true),
        _ => return None,
    })
}

fn truncate(v: i64, (bits, signed): (u32, bool)) -> i64 {
    let shift = 64 - bits;
    if signed {
        (v << shift) >> shift
    } else {
        ((v as u64) << shift >> shift) as i64
    }
}

/// Expands a function-like macro invocation to its value.
pub type MacroCall<'a> = dyn FnMut(&str, &[Expr]) -> Result<i64, EvalError> + 'a;

/// Evaluates with `lookup` for names; function-like macros go to `call`.
pub fn eval(
    e: &Expr,
    lookup: &mut dyn FnMut(&str) -> Option<i64>,
    call: &mut MacroCall<'_>,
) -> Result<i64, EvalError> {
    Ok(match e {
        Expr::Num(n) => *n,
        Expr::Name(n) => lookup(n).ok_or_else(|| EvalError::Unknown(n.clone()))?,
        Expr::Saved(n) => return Err(EvalError::Saved(n.clone())),
        Expr::Call(name, args) => call(name, args)?,
        Expr::Type(t) => return Err(EvalError::Unsupported(format!("the type `{t}` as a value"))),
        Expr::Cast(ty, inner) => {
            let v = eval(inner, lookup, call)?;
            match cast_bits(ty) {
                Some(w) => truncate(v, w),
                None => v,
            }
        }
        Expr::Unary(op, inner) => {
            let v = eval(inner, lookup, call)?;
            match op {
                UnOp::Neg => v.wrapping_neg(),
                UnOp::Not => !v,
                UnOp::LogicalNot => (v == 0) as i64,
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, lookup, call)?, eval(b, lookup, call)?);
            match op {
                BinOp::Or => a | b,
                BinOp::Xor => a ^ b,
                BinOp::And => a & b,
                BinOp::Shl => a.wrapping_shl(b as u32),
                BinOp::Shr => ((a as u64).wrapping_shr(b as u32)) as i64,
                BinOp::Add => a.wrapping_add(b),
                BinOp::Sub => a.wrapping_sub(b),
                BinOp::Mul => a.wrapping_mul(b),
                BinOp::Div if b == 0 => return Err(EvalError::DivisionByZero),
                BinOp::Div => ((a as u64) / (b as u64)) as i64,
                BinOp::Rem if b == 0 => return Err(EvalError::DivisionByZero),
                BinOp::Rem => ((a as u64) % (b as u64)) as i64,
            }
        }
    })
}

/// Names the expression refers to, in order (for "did you mean" and dependency checks).
pub fn names(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Name(n) => out.push(n.clone()),
        Expr::Call(_, args) => args.iter().for_each(|a| names(a, out)),
        Expr::Unary(_, i) | Expr::Cast(_, i) => names(i, out),
        Expr::Binary(_, a, b) => {
            names(a, out);
            names(b, out);
        }
        _ => {}
    }
}

/// Saved values (`$name`) the expression uses.
pub fn saved(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Saved(n) => out.push(n.clone()),
        Expr::Call(_, args) => args.iter().for_each(|a| saved(a, out)),
        Expr::Unary(_, i) | Expr::Cast(_, i) => saved(i, out),
        Expr::Binary(_, a, b) => {
            saved(a, out);
            saved(b, out);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> i64 {
        let e = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut lookup = |n: &str| match n {
            "O_CREAT" => Some(0o100),
            "O_RDWR" => Some(2),
            "AT_FDCWD" => Some(-100),
            _ => None,
        };
        eval(&e, &mut lookup, &mut |n, _| {
            Err(EvalError::Unknown(n.into()))
        })
        .unwrap()
    }

    #[test]
    fn literals() {
        assert_eq!(value("42"), 42);
        assert_eq!(value("-1"), -1);
        assert_eq!(value("0x10"), 16);
        assert_eq!(value("0o600"), 0o600);
        assert_eq!(value("0600"), 0o600);
        assert_eq!(value("0b101"), 5);
        assert_eq!(value("0xffffffffffffffff"), -1);
        assert_eq!(value("1UL << 3"), 8);
        assert_eq!(value("'f'"), 102);
        assert_eq!(value("0"), 0);
    }

    #[test]
    fn operators_and_precedence() {
        assert_eq!(value("O_CREAT|O_RDWR"), 0o102);
        assert_eq!(value("1 + 2 * 3"), 7);
        assert_eq!(value("(1 + 2) * 3"), 9);
        assert_eq!(value("1 << 2 | 1"), 5);
        assert_eq!(value("~0 & 0xff"), 255);
        assert_eq!(value("0xf0 ^ 0xff"), 0x0f);
        assert_eq!(value("-AT_FDCWD"), 100);
        assert_eq!(value("(__u64)1 << 63"), i64::MIN);
        assert_eq!(value("(__u32)-1"), 0xffff_ffff);
        assert_eq!(value("(int)0xffffffff"), -1);
        // The spec's own type names cast too.
        assert_eq!(value("(u32)-1"), 0xffff_ffff);
        assert_eq!(value("(i16)0xffff"), -1);
        assert_eq!(value("(u64)-1"), -1);
        assert_eq!(value("7 / 2 % 2"), 1);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("O_CREAT | | 1").unwrap_err();
        assert!(e.message.contains("unexpected"), "{e}");
        assert!(parse("(1 + 2").is_err());
        assert!(parse("").is_err());
        let unknown = eval(&parse("NOPE | 1").unwrap(), &mut |_| None, &mut |n, _| {
            Err(EvalError::Unknown(n.into()))
        });
        assert_eq!(unknown, Err(EvalError::Unknown("NOPE".into())));
    }

    #[test]
    fn saved_values_and_macro_calls() {
        let e = parse("$fd + 1").unwrap();
        let mut s = Vec::new();
        saved(&e, &mut s);
        assert_eq!(s, ["fd"]);
        let c = parse("_IOW('f', 1, struct foo)").unwrap();
        match c {
            Expr::Call(name, args) => {
                assert_eq!(name, "_IOW");
                assert_eq!(args[2], Expr::Type("struct foo".into()));
            }
            other => panic!("{other:?}"),
        }
    }
}
