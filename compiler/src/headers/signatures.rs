//! Syscall signatures from the kernel's `include/linux/syscalls.h`:
//! `asmlinkage long sys_openat(int dfd, const char __user *filename, int flags, umode_t mode);`

use nom::bytes::complete::{tag, take_until, take_while1};
use nom::character::complete::multispace0;
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

/// What a parameter is, as far as probing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A file descriptor (`int fd`, `unsigned int fd`, `dfd`, …).
    Fd,
    /// A pointer into user memory (`__user`).
    UserPtr,
    /// A flags word.
    Flags,
    /// The size of a structure or buffer.
    Size,
    /// How many elements an array argument holds (`vlen`, `nr_segs`, `nfds`): not a size in
    /// bytes.
    Count,
    /// Anything else.
    Other,
}

/// A syscall parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Param {
    /// Its C type.
    pub ty: String,
    /// Its name.
    pub name: String,
    /// What probing specs do with it.
    pub role: Role,
    /// For `struct foo __user *how`: `foo`.
    pub points_to: Option<String>,
}

/// A syscall's signature from `include/linux/syscalls.h`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signature {
    /// The syscall's name (without `sys_`).
    pub name: String,
    /// Its parameters in order.
    pub params: Vec<Param>,
    /// Where it is declared (`include/linux/syscalls.h:468`).
    pub origin: String,
}

fn declaration(input: &str) -> IResult<&str, (&str, &str)> {
    let (rest, _) = (
        tag("asmlinkage"),
        multispace0,
        tag("long"),
        multispace0,
        tag("sys_"),
    )
        .parse(input)?;
    let (rest, name) = take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_')(rest)?;
    let (rest, params) =
        preceded(multispace0, delimited(tag("("), take_until(")"), tag(")"))).parse(rest)?;
    Ok((rest, (name, params)))
}

fn classify(ty: &str, name: &str) -> (Role, Option<String>) {
    let points_to = ty
        .split_whitespace()
        .skip_while(|w| *w != "struct")
        .nth(1)
        .map(String::from);
    // Every pointer a syscall takes points into user memory, marked `__user` or not.
    let role = if ty.contains("__user") || ty.contains('*') {
        Role::UserPtr
    } else if name.contains("flag") {
        Role::Flags
    } else if name != "max_fd"
        // close_range's upper bound is not a descriptor: -1 or 9999 there closes the
        // executor's own channel, which breaks the executor instead of probing an argument.
        && (name == "fd"
        || name.ends_with("fd")
        || name.ends_with("fd1")
        || name.ends_with("fd2")
        || name == "oldfd"
        || name == "newfd")
        && (ty.contains("int") || ty.contains("long"))
        && !ty.contains('*')
    {
        Role::Fd
    } else if [
        "vlen",
        "nr_segs",
        "liovcnt",
        "riovcnt",
        "iovcnt",
        "nsops",
        "nfds",
        "maxevents",
        "nr_args",
        "nr_events",
    ]
    .contains(&name)
        || name.ends_with("cnt")
    {
        Role::Count
    } else if name == "size"
        || name == "usize"
        || name.ends_with("size")
        || name == "len"
        || name.ends_with("len")
        || name == "count"
    {
        Role::Size
    } else {
        Role::Other
    };
    (
        role,
        if role == Role::UserPtr {
            points_to
        } else {
            None
        },
    )
}

fn param(text: &str) -> Option<Param> {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() || t == "void" {
        return None;
    }
    // The name is the last identifier; `*` binds to the type.
    let split = t
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let (ty, name) = t.split_at(split);
    let (ty, name) = if name.is_empty() || ty.trim().is_empty() {
        (t.clone(), String::new())
    } else {
        (ty.trim().to_string(), name.to_string())
    };
    let (role, points_to) = classify(&ty, &name);
    Some(Param {
        ty,
        name,
        role,
        points_to,
    })
}

/// Every `asmlinkage long sys_*` declaration, in file order (later duplicates dropped).
pub fn parse(text: &str, file: &str) -> Vec<Signature> {
    let mut out: Vec<Signature> = Vec::new();
    let mut offset = 0;
    while let Some(at) = text[offset..].find("asmlinkage") {
        let start = offset + at;
        offset = start + "asmlinkage".len();
        let Ok((_, (name, params))) = declaration(&text[start..]) else {
            continue;
        };
        if out.iter().any(|s| s.name == name) {
            continue;
        }
        let line = text[..start].matches('\n').count() + 1;
        out.push(Signature {
            name: name.to_string(),
            params: params.split(',').filter_map(param).collect(),
            origin: format!("{file}:{line}"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_get_roles() {
        let text = "/* x */\nasmlinkage long sys_openat(int dfd, const char __user *filename, int flags,\n\t\t\t   umode_t mode);\nasmlinkage long sys_openat2(int dfd, const char __user *filename,\n\t\t\t    struct open_how __user *how, size_t size);\nasmlinkage long sys_getpid(void);\nasmlinkage long sys_close(unsigned int fd);\n";
        let s = parse(text, "include/linux/syscalls.h");
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "openat");
        assert_eq!(s[0].origin, "include/linux/syscalls.h:2");
        let roles: Vec<Role> = s[0].params.iter().map(|p| p.role).collect();
        assert_eq!(roles, [Role::Fd, Role::UserPtr, Role::Flags, Role::Other]);
        assert_eq!(s[1].params[2].points_to.as_deref(), Some("open_how"));
        assert_eq!(s[1].params[3].role, Role::Size);
        assert!(s[2].params.is_empty());
        assert_eq!(s[3].params[0].role, Role::Fd);
        assert_eq!(s[1].params[1].ty, "const char __user *");
    }
}
