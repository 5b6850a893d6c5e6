//! A kernel header tree: what it declares, for `provium headers`, `headers:` in specs and
//! `provium gen`.
//!
//! - the userspace include tree (`/usr/include`, or a `make headers_install` output): syscall
//!   numbers, errnos, `#define` constants and enumerators, struct and union layouts;
//! - optionally a kernel source or headers tree (Debian's `linux-headers-*-common`): syscall
//!   signatures from `include/linux/syscalls.h`.

use super::constants::MacroTable;
use super::cparse::{self, CTypes};
use super::signatures::{self, Signature};
use super::tables::{self, Errno};
use std::path::{Path, PathBuf};

/// A userspace include tree (`/usr/include`) and, optionally, the kernel's own headers.
#[derive(Debug, Clone)]
pub struct HeaderTree {
    /// The include tree.
    pub root: PathBuf,
    /// A kernel headers tree with `include/linux/syscalls.h`.
    pub kernel: Option<PathBuf>,
}

/// A constant and its value, or why it has none.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Constant {
    /// The constant's name.
    pub name: String,
    /// Its value, or why it has none.
    pub value: Result<i64, String>,
    /// Where it is defined.
    pub origin: String,
}

/// What some headers declare, parsed once.
#[derive(Debug)]
pub struct Parsed {
    /// Struct and union declarations.
    pub types: CTypes,
    /// `#define`s.
    pub macros: MacroTable,
    /// Macro and enumerator names in definition order, with where each is defined.
    pub order: Vec<(String, String)>,
}

impl Parsed {
    /// `sizeof(struct x)` for ioctl numbers.
    pub fn sizeof(&self, ty: &str) -> Option<i64> {
        let name = ty
            .trim_start_matches("struct ")
            .trim_start_matches("union ")
            .trim();
        let id = *self.types.by_name.get(name)?;
        Some(self.types.layout_record(id).size as i64)
    }

    /// A macro's value by name.
    pub fn eval(&self, name: &str) -> Result<i64, String> {
        let sizeof = |t: &str| self.sizeof(t);
        self.macros.eval(name, &sizeof).map_err(|e| e.to_string())
    }

    /// Every public constant (upper-case names) with its value or the reason it has none.
    pub fn constants(&self) -> Vec<Constant> {
        self.order
            .iter()
            .filter(|(n, _)| {
                !n.starts_with('_')
                    && n.len() > 1
                    && n.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && !n.ends_with("_H")
            })
            .filter(|(n, _)| self.macros.get(n).is_some_and(|(d, _)| d.params.is_none()))
            .map(|(n, origin)| Constant {
                name: n.clone(),
                value: self.eval(n),
                origin: origin.clone(),
            })
            .collect()
    }
}

impl HeaderTree {
    /// The tree at `root`, without kernel headers.
    pub fn new(root: impl Into<PathBuf>) -> HeaderTree {
        HeaderTree {
            root: root.into(),
            kernel: None,
        }
    }

    fn find(&self, header: &str) -> Result<PathBuf, String> {
        self.find_for(header, crate::linux::Arch::X86_64.multiarch())
    }

    fn find_for(&self, header: &str, multiarch: &str) -> Result<PathBuf, String> {
        tables::find_header(&self.root, multiarch, header)
            .ok_or_else(|| {
                format!(
                    "{header} not found under {} (a kernel tree's own headers are read with --kernel TREE)",
                    self.root.display()
                )
            })
    }

    /// The syscall table (`asm/unistd_64.h`).
    pub fn syscalls(&self) -> Result<Vec<(String, u32)>, String> {
        let path = self.find("asm/unistd_64.h")?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(tables::syscalls(&text))
    }

    /// The errno table (`asm-generic/errno*.h`).
    pub fn errnos(&self) -> Result<Vec<Errno>, String> {
        let mut texts = Vec::new();
        for h in ["asm-generic/errno-base.h", "asm-generic/errno.h"] {
            let p = self.find(h)?;
            texts.push(std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(tables::errnos(&refs))
    }

    /// Preprocesses and parses `headers` (include names such as `linux/openat2.h`).
    pub fn parse(&self, headers: &[String]) -> Result<Parsed, String> {
        self.parse_in(headers, crate::linux::Abi::X86_64)
    }

    /// The same, preprocessed and laid out for `abi` (i386's: `gcc -E -m32`, ILP32; arm64's:
    /// its `asm/` headers).
    pub fn parse_in(&self, headers: &[String], abi: crate::linux::Abi) -> Result<Parsed, String> {
        let model = crate::layout::c::DataModel::of(abi);
        for h in headers {
            self.find_for(h, abi.arch().multiarch())?;
        }
        let text = cparse::preprocess_with_defines_in(&self.root, headers, abi)
            .map_err(|e| e.to_string())?;
        let (code, defines) = cparse::split_defines(&text, &self.root);
        let types = cparse::parse_in(&code, &self.root, model).map_err(|e| e.to_string())?;
        let mut macros = MacroTable::default();
        let mut order = Vec::new();
        // Enumerators first: they give self-referring defines (`#define X X`) their value.
        let enums = super::enums::parse(&code);
        for e in &enums {
            order.push((e.name.clone(), String::new()));
        }
        macros.add("enum", enums);
        for (origin, d) in defines {
            order.push((d.name.clone(), origin.clone()));
            macros.add(&origin, vec![d]);
        }
        let mut seen = std::collections::HashSet::new();
        order.retain(|(n, _)| seen.insert(n.clone()));
        Ok(Parsed {
            types,
            macros,
            order,
        })
    }

    /// Syscall signatures from the kernel tree's `include/linux/syscalls.h`.
    pub fn signatures(&self) -> Result<Vec<Signature>, String> {
        let Some(kernel) = &self.kernel else {
            return Err("no kernel headers tree: pass --kernel DIR (scripts/setup installs Debian's linux-headers-*-common into the cache)".into());
        };
        let path = kernel.join("include/linux/syscalls.h");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(signatures::parse(&text, "include/linux/syscalls.h"))
    }
}

/// Every header under `root/linux` (for parsing a whole tree).
pub fn linux_headers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("linux")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "h") {
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_structs_and_ioctls_from_real_headers() {
        let tree = HeaderTree::new("/usr/include");
        let p = tree
            .parse(&[
                "linux/openat2.h".into(),
                "linux/fs.h".into(),
                "linux/perf_event.h".into(),
            ])
            .unwrap();
        let consts = p.constants();
        let beneath = consts.iter().find(|c| c.name == "RESOLVE_BENEATH").unwrap();
        assert_eq!(beneath.value, Ok(8));
        assert!(
            beneath.origin.starts_with("linux/openat2.h:"),
            "{}",
            beneath.origin
        );
        // _IOR('f', 1, long) and an ioctl whose size is a struct from the same headers.
        assert_eq!(p.eval("FS_IOC_GETFLAGS"), Ok(0x8008_6601));
        assert_eq!(p.eval("FS_IOC_FSGETXATTR"), Ok(0x801c_581f));
        assert_eq!(p.eval("PERF_EVENT_IOC_ENABLE"), Ok(0x2400));
        let how = p.types.spec_layout("open_how").unwrap();
        assert_eq!(how.size, 24);
        assert_eq!(how.field("resolve").unwrap().offset, 16);
        assert!(tree.syscalls().unwrap().len() > 300);
        assert!(tree.errnos().unwrap().len() > 130);
    }

    #[test]
    fn missing_headers_are_named() {
        let tree = HeaderTree::new("/usr/include");
        let err = tree.parse(&["linux/no-such.h".into()]).unwrap_err();
        assert!(err.contains("linux/no-such.h not found"), "{err}");
    }
}
