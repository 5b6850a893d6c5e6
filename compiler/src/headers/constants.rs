//! Evaluating `#define` constants: literals, references to other macros, arithmetic, casts, and
//! function-like macros such as `_IOW('f', 1, int)`, expanded from their definitions.
//!
//! A constant that cannot be evaluated is reported with the reason; nothing is guessed.

use super::defines::Define;
use crate::expr::{self, EvalError, Expr};
use std::collections::HashMap;

/// Definitions gathered from headers, first definition wins (as the headers are included).
#[derive(Debug, Default, Clone)]
pub struct MacroTable {
    defines: HashMap<String, (Define, String)>,
    order: Vec<String>,
    /// Values of object-like macros already evaluated without `sizeof` of unknown types.
    cache: std::cell::RefCell<HashMap<String, Result<i64, EvalError>>>,
    parsed: std::cell::RefCell<HashMap<String, Expr>>,
}

/// Sizes for `sizeof(T)` in ioctl numbers: C scalar types here, structs from a layout provider.
pub type SizeOf<'a> = &'a dyn Fn(&str) -> Option<i64>;

/// `sizeof` of a scalar C type, if it is one.
pub fn scalar_size(ty: &str) -> Option<i64> {
    let t = ty.replace("const ", "");
    let t = t.trim();
    if t.ends_with('*') {
        return Some(8);
    }
    Some(match t {
        "char" | "signed char" | "unsigned char" | "__u8" | "__s8" | "u8" | "s8" => 1,
        "short" | "unsigned short" | "__u16" | "__s16" | "__le16" | "__be16" => 2,
        "int" | "unsigned int" | "unsigned" | "__u32" | "__s32" | "__le32" | "__be32" => 4,
        "long" | "unsigned long" | "long long" | "unsigned long long" | "__u64" | "__s64"
        | "__le64" | "__be64" | "size_t" | "__kernel_size_t" | "__kernel_long_t"
        | "__kernel_ulong_t" | "__aligned_u64" => 8,
        "pid_t" | "__kernel_pid_t" | "uid_t" | "gid_t" | "__kernel_uid32_t"
        | "__kernel_gid32_t" => 4,
        _ => return None,
    })
}

impl MacroTable {
    /// Adds the definitions of one header (`source` names it in reports).
    pub fn add(&mut self, source: &str, defines: Vec<Define>) {
        for d in defines {
            if !self.defines.contains_key(&d.name) {
                self.order.push(d.name.clone());
                self.defines.insert(d.name.clone(), (d, source.to_string()));
            }
        }
    }

    /// A macro by name, with where it is defined.
    pub fn get(&self, name: &str) -> Option<&(Define, String)> {
        self.defines.get(name)
    }

    /// Names in definition order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The value of an object-like macro.
    pub fn eval(&self, name: &str, sizeof: SizeOf<'_>) -> Result<i64, EvalError> {
        self.eval_depth(name, sizeof, 0)
    }

    fn eval_depth(&self, name: &str, sizeof: SizeOf<'_>, depth: usize) -> Result<i64, EvalError> {
        if depth > 32 {
            return Err(EvalError::Unsupported(format!(
                "`{name}`: definitions nest too deeply"
            )));
        }
        if let Some(v) = self.cache.borrow().get(name) {
            return v.clone();
        }
        let (d, _) = self
            .defines
            .get(name)
            .ok_or_else(|| EvalError::Unknown(name.to_string()))?;
        if d.params.is_some() {
            return Err(EvalError::Unsupported(format!(
                "`{name}` without arguments"
            )));
        }
        if d.body.is_empty() {
            return Err(EvalError::Unsupported(format!(
                "`{name}`, which is defined empty"
            )));
        }
        let e = self.parse_body(name, &d.body)?;
        let v = self.eval_expr(&e, sizeof, depth + 1);
        // A value that needed a struct size depends on the layout provider: not cached.
        let mut uses_sizeof = false;
        mentions_sizeof(&e, &mut uses_sizeof);
        if !uses_sizeof {
            self.cache.borrow_mut().insert(name.to_string(), v.clone());
        }
        v
    }

    fn parse_body(&self, name: &str, body: &str) -> Result<Expr, EvalError> {
        if let Some(e) = self.parsed.borrow().get(name) {
            return Ok(e.clone());
        }
        let e = expr::parse(body).map_err(|e| EvalError::Unsupported(format!("`{body}` ({e})")))?;
        self.parsed.borrow_mut().insert(name.to_string(), e.clone());
        Ok(e)
    }

    /// Evaluates an expression over the macros, `depth` levels of expansion deep at most.
    pub fn eval_expr(&self, e: &Expr, sizeof: SizeOf<'_>, depth: usize) -> Result<i64, EvalError> {
        let mut lookup = |n: &str| self.eval_depth(n, sizeof, depth + 1).ok();
        let mut call = |n: &str, args: &[Expr]| self.call(n, args, sizeof, depth + 1);
        match expr::eval(e, &mut lookup, &mut call) {
            // Report which name failed and why, rather than a bare "unknown".
            Err(EvalError::Unknown(n)) if self.defines.contains_key(&n) => {
                self.eval_depth(&n, sizeof, depth + 1)
            }
            other => other,
        }
    }

    fn call(
        &self,
        name: &str,
        args: &[Expr],
        sizeof: SizeOf<'_>,
        depth: usize,
    ) -> Result<i64, EvalError> {
        if name == "sizeof" {
            let ty = match args.first() {
                Some(Expr::Type(t)) => t.clone(),
                Some(Expr::Name(n)) => n.clone(),
                _ => return Err(EvalError::Unsupported("sizeof of an expression".into())),
            };
            return scalar_size(&ty)
                .or_else(|| sizeof(&ty))
                .ok_or_else(|| EvalError::Unsupported(format!("sizeof({ty})")));
        }
        let (d, _) = self
            .defines
            .get(name)
            .ok_or_else(|| EvalError::Unknown(name.to_string()))?;
        let Some(params) = &d.params else {
            return Err(EvalError::Unsupported(format!(
                "`{name}` called like a function"
            )));
        };
        if params.len() != args.len() {
            return Err(EvalError::Unsupported(format!(
                "`{name}` takes {} arguments, got {}",
                params.len(),
                args.len()
            )));
        }
        let body = self.parse_body(name, &d.body)?;
        let bound: HashMap<&str, &Expr> = params.iter().map(String::as_str).zip(args).collect();
        let expanded = substitute(&body, &bound);
        self.eval_expr(&expanded, sizeof, depth)
    }
}

fn mentions_sizeof(e: &Expr, found: &mut bool) {
    match e {
        Expr::Call(n, args) => {
            *found |= n != "sizeof" || args.iter().any(|a| matches!(a, Expr::Type(_)));
            args.iter().for_each(|a| mentions_sizeof(a, found));
        }
        Expr::Unary(_, i) | Expr::Cast(_, i) => mentions_sizeof(i, found),
        Expr::Binary(_, a, b) => {
            mentions_sizeof(a, found);
            mentions_sizeof(b, found);
        }
        _ => {}
    }
}

/// Replaces macro parameters by the argument expressions.
fn substitute(e: &Expr, bound: &HashMap<&str, &Expr>) -> Expr {
    match e {
        Expr::Name(n) => bound
            .get(n.as_str())
            .map(|a| (*a).clone())
            .unwrap_or_else(|| e.clone()),
        Expr::Type(t) => bound
            .get(t.as_str())
            .map(|a| (*a).clone())
            .unwrap_or_else(|| e.clone()),
        Expr::Call(n, args) => Expr::Call(
            n.clone(),
            args.iter().map(|a| substitute(a, bound)).collect(),
        ),
        Expr::Unary(op, i) => Expr::Unary(*op, Box::new(substitute(i, bound))),
        Expr::Cast(t, i) => Expr::Cast(t.clone(), Box::new(substitute(i, bound))),
        Expr::Binary(op, a, b) => Expr::Binary(
            *op,
            Box::new(substitute(a, bound)),
            Box::new(substitute(b, bound)),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::defines;

    const IOCTL: &str = r#"
#define _IOC_NRBITS	8
#define _IOC_TYPEBITS	8
#define _IOC_SIZEBITS	14
#define _IOC_NRSHIFT	0
#define _IOC_TYPESHIFT	(_IOC_NRSHIFT+_IOC_NRBITS)
#define _IOC_SIZESHIFT	(_IOC_TYPESHIFT+_IOC_TYPEBITS)
#define _IOC_DIRSHIFT	(_IOC_SIZESHIFT+_IOC_SIZEBITS)
#define _IOC_NONE	0U
#define _IOC_WRITE	1U
#define _IOC_READ	2U
#define _IOC(dir,type,nr,size) \
	(((dir)  << _IOC_DIRSHIFT) | \
	 ((type) << _IOC_TYPESHIFT) | \
	 ((nr)   << _IOC_NRSHIFT) | \
	 ((size) << _IOC_SIZESHIFT))
#define _IOC_TYPECHECK(t) (sizeof(t))
#define _IO(type,nr)		_IOC(_IOC_NONE,(type),(nr),0)
#define _IOR(type,nr,size)	_IOC(_IOC_READ,(type),(nr),(_IOC_TYPECHECK(size)))
#define _IOW(type,nr,size)	_IOC(_IOC_WRITE,(type),(nr),(_IOC_TYPECHECK(size)))
#define FIONREAD 0x541B
#define FS_IOC_GETFLAGS _IOR('f', 1, long)
#define NS_GET_USERNS _IO(0xb7, 0x1)
#define FOO_SET _IOW('x', 3, struct foo)
#define O_ACCMODE 00000003
#define RESOLVE_BENEATH 0x08
#define FLAG (__u64)1 << 3
#define EMPTY
#define NOPE UNDEFINED_THING
"#;

    fn table() -> MacroTable {
        let mut t = MacroTable::default();
        t.add("ioctl.h", defines::parse(IOCTL));
        t
    }

    #[test]
    fn ioctl_numbers_match_the_c_values() {
        let t = table();
        let none = |_: &str| None;
        // Values from a C program on x86_64.
        assert_eq!(t.eval("FS_IOC_GETFLAGS", &none).unwrap(), 0x8008_6601);
        assert_eq!(t.eval("NS_GET_USERNS", &none).unwrap(), 0xb701);
        assert_eq!(t.eval("FIONREAD", &none).unwrap(), 0x541b);
        let with_foo = |ty: &str| (ty == "struct foo").then_some(24);
        assert_eq!(
            t.eval("FOO_SET", &with_foo).unwrap(),
            (1 << 30) | (24 << 16) | (0x78 << 8) | 3
        );
        assert!(
            t.eval("FOO_SET", &none).is_err(),
            "unknown struct size is not guessed"
        );
    }

    #[test]
    fn plain_constants_and_failures() {
        let t = table();
        let none = |_: &str| None;
        assert_eq!(t.eval("O_ACCMODE", &none).unwrap(), 3);
        assert_eq!(t.eval("FLAG", &none).unwrap(), 8);
        assert!(matches!(
            t.eval("EMPTY", &none),
            Err(EvalError::Unsupported(_))
        ));
        assert_eq!(
            t.eval("NOPE", &none),
            Err(EvalError::Unknown("UNDEFINED_THING".into()))
        );
    }
}
