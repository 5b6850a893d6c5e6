//! Whether an outcome meets an expectation: the one function that decides, for compiled specs
//! and for Lua's `expect()` alike.
//!
//! The checker turns a spec's `expect:` into a [`model::Expect`]; the emitter writes it as the
//! table `expect(outcome, {...})` takes, with its integers as Lua expressions (a `$fd` is only
//! known when the case runs). At run time the Lua API reads that table back into an
//! [`Expectation`] (the same conditions, integers resolved) and asks [`check`]. A rule lives in
//! three places only in the sense that the model, its Lua spelling and its reading must agree;
//! a test round-trips every condition through all three (`tests/verdict.rs`), and the verdict is
//! decided here once.

use crate::linux;
use crate::model;
pub use crate::model::CmpOp;
use std::collections::BTreeMap;

/// An expectation with its integers known: what `expect()` checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expectation {
    /// What must hold, all of it.
    pub rules: Vec<Rule>,
}

/// One thing an outcome must show: [`model::Condition`] with numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The call succeeded (returned at least 0).
    Ok,
    /// It failed with one of these errnos (by name).
    Errno(Vec<String>),
    /// Its return value meets every comparison.
    Ret(Vec<(CmpOp, i64)>),
    /// The process running it died.
    Died,
    /// ... exiting with this status.
    ExitCode(i64),
    /// ... killed by this signal.
    Signal(i64),
    /// It was still blocked at its timeout.
    TimedOut,
    /// These signals are pending after it.
    Raises(Vec<i64>),
    /// Checks of its buffers, by argument index.
    Out(Vec<(i64, Vec<BufferRule>)>),
    /// One of these holds.
    OneOf(Vec<Expectation>),
}

/// A check of an output buffer: [`model::BufferCheck`] with numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferRule {
    /// It starts with these bytes.
    StartsWith(Vec<u8>),
    /// It contains these bytes.
    Contains(Vec<u8>),
    /// It is these bytes (zeros after them).
    Equals(Vec<u8>),
    /// An integer field of a struct in it meets every comparison.
    Field {
        /// `struct.path`, for messages.
        name: String,
        /// Its offset in the buffer.
        at: usize,
        /// Its type as the layout names it (`u32`, `i64`, `be16`, `ptr`).
        ty: String,
        /// What it must meet.
        compare: Vec<(CmpOp, i64)>,
    },
}

/// What a call did, as the agent answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Its return value, when it returned.
    pub ret: Option<i64>,
    /// The process running it died...
    pub died: bool,
    /// ... exiting with this status,
    pub exit_code: Option<i64>,
    /// ... or killed by this signal.
    pub signal: Option<i64>,
    /// It was still blocked at its timeout.
    pub timed_out: bool,
    /// Signals pending after it (asked for by `raises:`).
    pub raised: Vec<i64>,
    /// Its buffers after the call, by argument index.
    pub bufs: BTreeMap<i64, Vec<u8>>,
    /// A repeated call (`vm:repeat_until`) that never met its condition says why.
    pub repeat_unmet: Option<String>,
}

impl Expectation {
    /// The expectation of a spec whose integers are all constants (a spec's own values before
    /// it runs); `None` if one is only known at run time (`$fd`).
    pub fn from_model(e: &model::Expect) -> Option<Expectation> {
        let rules = e
            .conditions
            .iter()
            .map(Rule::from_model)
            .collect::<Option<Vec<_>>>()?;
        Some(Expectation { rules })
    }

    fn find<'a, T>(&'a self, f: impl Fn(&'a Rule) -> Option<T>) -> Option<T> {
        self.rules.iter().find_map(f)
    }
}

impl Rule {
    fn from_model(c: &model::Condition) -> Option<Rule> {
        use model::Condition as C;
        // In the operators' order, the order they are checked in (and read back from Lua).
        let cmp = |v: &[model::Comparison]| {
            let mut out = v
                .iter()
                .map(|c| Some((c.op, constant(&c.value)?)))
                .collect::<Option<Vec<_>>>()?;
            out.sort_by_key(|(op, _)| CmpOp::ALL.iter().position(|o| o == op));
            Some(out)
        };
        Some(match c {
            C::Ok => Rule::Ok,
            C::Errno(n) => Rule::Errno(n.clone()),
            C::Ret(v) => Rule::Ret(cmp(v)?),
            C::Died => Rule::Died,
            C::ExitCode(i) => Rule::ExitCode(constant(i)?),
            C::Signal(s) => Rule::Signal(*s),
            C::TimedOut => Rule::TimedOut,
            C::Raises(s) => Rule::Raises(s.clone()),
            C::Out(bufs) => Rule::Out(
                bufs.iter()
                    .map(|(i, checks)| {
                        let checks = checks
                            .iter()
                            .map(|b| {
                                Some(match b {
                                    model::BufferCheck::StartsWith(x) => {
                                        BufferRule::StartsWith(x.clone())
                                    }
                                    model::BufferCheck::Contains(x) => {
                                        BufferRule::Contains(x.clone())
                                    }
                                    model::BufferCheck::Equals(x) => BufferRule::Equals(x.clone()),
                                    model::BufferCheck::Field {
                                        name,
                                        at,
                                        ty,
                                        compare,
                                    } => BufferRule::Field {
                                        name: name.clone(),
                                        at: *at,
                                        ty: ty.clone(),
                                        compare: cmp(compare)?,
                                    },
                                })
                            })
                            .collect::<Option<Vec<_>>>()?;
                        Some((*i, checks))
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
            C::OneOf(alts) => Rule::OneOf(
                alts.iter()
                    .map(Expectation::from_model)
                    .collect::<Option<Vec<_>>>()?,
            ),
        })
    }
}

fn constant(i: &model::Int) -> Option<i64> {
    match i {
        model::Int::Const(v) => Some(*v),
        _ => None,
    }
}

/// Why `observed` does not meet `expected`, or `None` when it does. `one_of` (a
/// nondeterministic answer, as `provium record --runs N` writes it) holds when any alternative
/// does.
pub fn check(expected: &Expectation, observed: &Observed) -> Result<Option<String>, String> {
    let Some(alternatives) = expected.find(|r| match r {
        Rule::OneOf(a) => Some(a),
        _ => None,
    }) else {
        return mismatch(expected, observed);
    };
    let mut misses = Vec::new();
    for alt in alternatives {
        match check(alt, observed)? {
            None => return Ok(None),
            Some(m) => misses.push(m),
        }
    }
    Ok(Some(format!(
        "none of the {} alternatives held: {}",
        misses.len(),
        misses.join("; ")
    )))
}

/// The rules in a fixed order, whatever order they were written in: how the call ended first
/// (died, timed out), then its value (ok, errno, ret), then signals and buffers; the first unmet
/// one is the message. `Err` is a malformed rule (a field type no integer has), not a miss.
fn mismatch(e: &Expectation, o: &Observed) -> Result<Option<String>, String> {
    let fail = |m: String| Ok(Some(m));
    if let Some(why) = &o.repeat_unmet {
        return fail(why.clone());
    }
    let has = |want: &Rule| e.rules.contains(want);
    if has(&Rule::Died) {
        if !o.died {
            let got = match o.ret {
                Some(r) => format!("the call returned {}", linux::describe_ret(r)),
                None => "the call did not end the executor".into(),
            };
            return fail(format!("expected the call to end the executor, but {got}"));
        }
        let exit = e.find(|r| match r {
            Rule::ExitCode(c) => Some(("exit_code", *c, o.exit_code)),
            _ => None,
        });
        let signal = e.find(|r| match r {
            Rule::Signal(s) => Some(("signal", *s, o.signal)),
            _ => None,
        });
        for (key, want, got) in [exit, signal].into_iter().flatten() {
            if got != Some(want) {
                return fail(format!(
                    "expected the executor to end with {key} {want}, but it {}",
                    termination(o)
                ));
            }
        }
        return Ok(None);
    }
    if has(&Rule::TimedOut) {
        if !o.timed_out {
            return fail("expected the call to block until its timeout, but it returned".into());
        }
        return Ok(None);
    }
    if o.died {
        return fail(format!(
            "the call ended the executor: it {}",
            termination(o)
        ));
    }
    if o.timed_out {
        return fail("the call blocked until its timeout".into());
    }
    let Some(ret) = o.ret else {
        return fail("the call has no return value".into());
    };
    if has(&Rule::Ok) && ret < 0 {
        return fail(format!(
            "expected success (>= 0), got {}",
            linux::describe_ret(ret)
        ));
    }
    if let Some(names) = e.find(|r| match r {
        Rule::Errno(n) => Some(n),
        _ => None,
    }) {
        let matched = names
            .iter()
            .any(|n| linux::errno_number(n).is_some_and(|e| ret == -(e as i64)));
        if !matched {
            let got = if ret >= 0 {
                format!("{ret} (success)")
            } else {
                linux::describe_ret(ret)
            };
            return fail(format!("expected {}, got {got}", errno_list(names)));
        }
    }
    if let Some(cmp) = e.find(|r| match r {
        Rule::Ret(c) => Some(c),
        _ => None,
    }) {
        if let Some(m) = comparisons(cmp, ret, "ret") {
            return fail(m);
        }
    }
    if let Some(wanted) = e.find(|r| match r {
        Rule::Raises(s) => Some(s),
        _ => None,
    }) {
        let missing: Vec<String> = wanted
            .iter()
            .filter(|s| !o.raised.contains(s))
            .map(|s| linux::signal_name(*s).map_or_else(|| s.to_string(), str::to_string))
            .collect();
        if !missing.is_empty() {
            return fail(format!(
                "expected the call to raise {}, but it was not pending after the call",
                missing.join(" and ")
            ));
        }
    }
    if let Some(out) = e.find(|r| match r {
        Rule::Out(o) => Some(o),
        _ => None,
    }) {
        for (idx, checks) in out {
            let Some(data) = o.bufs.get(idx) else {
                return fail(format!(
                    "buffer {idx}: the call has no buffer at argument {idx}"
                ));
            };
            for c in checks {
                if let Some(m) = buffer_check(*idx, data, c)? {
                    return fail(m);
                }
            }
        }
    }
    Ok(None)
}

fn buffer_check(idx: i64, data: &[u8], check: &BufferRule) -> Result<Option<String>, String> {
    Ok(match check {
        BufferRule::StartsWith(p) if !data.starts_with(p) => {
            let got = &data[..data.len().min(p.len().max(16))];
            Some(format!(
                "buffer {idx}: expected it to start with {}, got {}",
                quote(p),
                quote(got)
            ))
        }
        BufferRule::Contains(n) if !n.is_empty() && !data.windows(n.len()).any(|w| w == n) => {
            Some(format!(
                "buffer {idx}: expected it to contain {}, got {}",
                quote(n),
                quote(data)
            ))
        }
        BufferRule::Equals(e) => {
            let got = &data[..data.len().min(e.len())];
            let rest_zero = data[got.len()..].iter().all(|&b| b == 0);
            (got != &e[..] || !rest_zero)
                .then(|| format!("buffer {idx}: expected {}, got {}", quote(e), quote(data)))
        }
        BufferRule::Field {
            name,
            at,
            ty,
            compare,
        } => {
            let size = int_size(ty).ok_or_else(|| {
                format!("buffer {idx}: field {name} has type {ty}, which is not an integer")
            })?;
            let Some(bytes) = data.get(*at..at + size) else {
                return Ok(Some(format!(
                    "buffer {idx}: field {name} at offset {at} is past its {} bytes",
                    data.len()
                )));
            };
            let value = int_value(ty, bytes);
            comparisons(
                compare,
                value,
                &format!("{name} (buffer {idx}, offset {at})"),
            )
        }
        _ => None,
    })
}

/// The size of an integer field type as the layout names it (`u32`, `i64`, `be16`, `ptr`).
fn int_size(ty: &str) -> Option<usize> {
    if ty == "ptr" {
        return Some(8);
    }
    let bits: usize = ty
        .strip_prefix("be")
        .or_else(|| ty.strip_prefix('u'))
        .or_else(|| ty.strip_prefix('i'))?
        .parse()
        .ok()?;
    [8, 16, 32, 64].contains(&bits).then_some(bits / 8)
}

/// An integer field's value: little-endian unless `beN`; sign-extended for `iN`.
fn int_value(ty: &str, bytes: &[u8]) -> i64 {
    let mut raw = [0u8; 8];
    if ty.starts_with("be") {
        raw[8 - bytes.len()..].copy_from_slice(bytes);
        return u64::from_be_bytes(raw) as i64;
    }
    raw[..bytes.len()].copy_from_slice(bytes);
    let v = u64::from_le_bytes(raw);
    if ty.starts_with('i') && bytes.len() < 8 {
        let shift = 64 - 8 * bytes.len() as u32;
        ((v << shift) as i64) >> shift
    } else {
        v as i64
    }
}

/// The first comparison that fails, as a message.
fn comparisons(cmp: &[(CmpOp, i64)], actual: i64, what: &str) -> Option<String> {
    // In the operators' order, as the spec language lists them.
    for op in CmpOp::ALL {
        for (o, want) in cmp {
            if *o != op {
                continue;
            }
            let holds = match op {
                CmpOp::Eq => actual == *want,
                CmpOp::Ne => actual != *want,
                CmpOp::Lt => actual < *want,
                CmpOp::Le => actual <= *want,
                CmpOp::Gt => actual > *want,
                CmpOp::Ge => actual >= *want,
            };
            if !holds {
                return Some(format!(
                    "expected {what} {} {}, got {}",
                    cmp_text(op),
                    linux::describe_ret(*want),
                    linux::describe_ret(actual)
                ));
            }
        }
    }
    None
}

fn cmp_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

fn termination(o: &Observed) -> String {
    match (o.exit_code, o.signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "died".into(),
    }
}

/// `-22 (EINVAL)`, or `one of -22 (EINVAL), -1 (EPERM)`.
pub fn errno_list(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|n| match linux::errno_number(n) {
            Some(e) => format!("-{e} ({n})"),
            None => n.clone(),
        })
        .collect();
    match shown.as_slice() {
        [one] => one.clone(),
        many => format!("one of {}", many.join(", ")),
    }
}

/// Bytes as a message shows them: a quoted string, escapes for what is not printable, at most
/// 256 bytes.
pub fn quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes.iter().take(256) {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 256 {
        s.push_str(&format!("…\" ({} bytes)", bytes.len()));
    } else {
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned(ret: i64) -> Observed {
        Observed {
            ret: Some(ret),
            ..Default::default()
        }
    }

    #[test]
    fn errnos_rets_and_how_a_call_ended() {
        let ebadf = Expectation {
            rules: vec![Rule::Errno(vec!["EBADF".into()])],
        };
        assert_eq!(check(&ebadf, &returned(-9)), Ok(None));
        assert_eq!(
            check(&ebadf, &returned(0)).unwrap().unwrap(),
            "expected -9 (EBADF), got 0 (success)"
        );
        let range = Expectation {
            rules: vec![Rule::Ret(vec![(CmpOp::Ge, 0), (CmpOp::Lt, 4096)])],
        };
        assert_eq!(check(&range, &returned(3)), Ok(None));
        assert!(check(&range, &returned(5000))
            .unwrap()
            .unwrap()
            .contains("< 4096"));
        let died = Expectation {
            rules: vec![Rule::Died, Rule::Signal(9)],
        };
        let killed = Observed {
            died: true,
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(check(&died, &killed), Ok(None));
        assert!(check(&ebadf, &killed)
            .unwrap()
            .unwrap()
            .contains("killed by signal 9"));
    }

    #[test]
    fn fields_decode_as_the_layout_names_them() {
        let mut bufs = BTreeMap::new();
        bufs.insert(1, vec![0xff, 0xff, 0x00, 0x01, 0, 0, 0, 0]);
        let o = Observed {
            ret: Some(0),
            bufs,
            ..Default::default()
        };
        let field = |ty: &str, want: i64| Expectation {
            rules: vec![Rule::Out(vec![(
                1,
                vec![BufferRule::Field {
                    name: "s.f".into(),
                    at: 0,
                    ty: ty.into(),
                    compare: vec![(CmpOp::Eq, want)],
                }],
            )])],
        };
        assert_eq!(check(&field("i16", -1), &o), Ok(None));
        assert_eq!(check(&field("u16", 0xffff), &o), Ok(None));
        assert_eq!(check(&field("be16", 0xffff), &o), Ok(None));
        assert_eq!(check(&field("u32", 0x0100_ffff), &o), Ok(None));
        assert!(check(&field("char[4]", 0), &o).is_err());
    }

    #[test]
    fn one_of_holds_when_any_alternative_does() {
        let e = Expectation {
            rules: vec![Rule::OneOf(vec![
                Expectation {
                    rules: vec![Rule::Errno(vec!["EINVAL".into()])],
                },
                Expectation {
                    rules: vec![Rule::Ok],
                },
            ])],
        };
        assert_eq!(check(&e, &returned(0)), Ok(None));
        assert!(check(&e, &returned(-9))
            .unwrap()
            .unwrap()
            .starts_with("none of the 2 alternatives held"));
    }
}
