//! Syscall numbers (`asm/unistd_64.h`) and errno names (`asm-generic/errno-base.h`, `errno.h`),
//! and the Rust source of the checked-in tables generated from them.

use super::defines::{self, Define};
use std::collections::BTreeMap;

/// `__NR_name N` definitions, in number order.
pub fn syscalls(unistd: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = defines::parse(unistd)
        .into_iter()
        .filter_map(|d| {
            let name = d.name.strip_prefix("__NR_")?;
            let nr = d.body.parse().ok()?;
            Some((name.to_string(), nr))
        })
        .collect();
    out.sort_by_key(|(_, nr)| *nr);
    out
}

/// One errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errno {
    pub name: String,
    pub number: i32,
    pub description: String,
    /// For aliases such as `EWOULDBLOCK`, the name it stands for.
    pub alias_of: Option<String>,
}

/// Errno definitions from the given headers (in include order), aliases resolved.
pub fn errnos(headers: &[&str]) -> Vec<Errno> {
    let defs: Vec<Define> = headers.iter().flat_map(|h| defines::parse(h)).collect();
    let mut by_name: BTreeMap<String, i32> = BTreeMap::new();
    let mut out = Vec::new();
    for d in defs {
        if !d.name.starts_with('E') || d.params.is_some() {
            continue;
        }
        let (number, alias_of) = match d.body.parse::<i32>() {
            Ok(n) => (n, None),
            Err(_) => match by_name.get(&d.body) {
                Some(&n) => (n, Some(d.body.clone())),
                None => continue,
            },
        };
        by_name.insert(d.name.clone(), number);
        out.push(Errno {
            name: d.name,
            number,
            description: d.comment.unwrap_or_default(),
            alias_of,
        });
    }
    out
}

/// The Rust source of the syscall table for one arch.
pub fn render_syscalls(arch: &str, source: &str, table: &[(String, u32)]) -> String {
    let mut s = format!(
        "// Generated from {source}. Do not edit:\n\
         // `cargo test -p provium-compiler` checks it against the system headers, and\n\
         // PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Syscall names and numbers for {arch}, in number order.\n\
         pub const SYSCALLS: &[(&str, u32)] = &[\n"
    );
    for (name, nr) in table {
        s.push_str(&format!("    (\"{name}\", {nr}),\n"));
    }
    s.push_str("];\n");
    s
}

/// The Rust source of the errno table.
pub fn render_errnos(source: &str, table: &[Errno]) -> String {
    let mut s = format!(
        "// Generated from {source}. Do not edit:\n\
         // `cargo test -p provium-compiler` checks it against the system headers, and\n\
         // PROVIUM_BLESS=1 regenerates it.\n\n\
         /// Errno name, number, description, and the name an alias stands for.\n\
         pub const ERRNOS: &[(&str, i32, &str, Option<&str>)] = &[\n"
    );
    for e in table {
        let alias = match &e.alias_of {
            Some(a) => format!("Some(\"{a}\")"),
            None => "None".into(),
        };
        s.push_str(&format!(
            "    (\"{}\", {}, {:?}, {alias}),\n",
            e.name, e.number, e.description
        ));
    }
    s.push_str("];\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_sorted_by_number() {
        let t = syscalls("#define __NR_write 1\n#define __NR_read 0\n#define __X 5\n");
        assert_eq!(t, vec![("read".to_string(), 0), ("write".to_string(), 1)]);
    }

    #[test]
    fn errno_aliases_resolve() {
        let base = "#define\tEAGAIN\t\t11\t/* Try again */\n";
        let more = "#define\tEWOULDBLOCK\tEAGAIN\t/* Operation would block */\n#define EDEADLOCK EDEADLK\n";
        let e = errnos(&[base, more]);
        assert_eq!(
            e.len(),
            2,
            "EDEADLOCK's target is unknown here and is skipped"
        );
        assert_eq!(e[1].name, "EWOULDBLOCK");
        assert_eq!(e[1].number, 11);
        assert_eq!(e[1].alias_of.as_deref(), Some("EAGAIN"));
        assert_eq!(e[0].description, "Try again");
    }
}
