//! Host programs a profile puts in the guest (`tools = ["mkfs.ext4", "/usr/sbin/mkfs.xfs"]`):
//! busybox makes only a few file systems, and LTP-style tests need the real `mkfs.*` and
//! friends. A dynamically linked program comes with what it needs to run: its ELF interpreter
//! and every shared library it names (`DT_NEEDED`), recursively, each at its host path, found
//! the way the dynamic linker looks (`DT_RUNPATH`/`DT_RPATH`, then the multiarch and standard
//! directories).

use crate::machine::error::IoError;
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where a program named without a path is looked for, after `PATH`.
const SBIN: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Where libraries are looked for (Debian's multiarch layout first).
const LIB_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// A library chain deeper than this is a loop or a broken system.
const MAX_FILES: usize = 512;

/// Why a tool cannot be put in the guest.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("tool `{0}`: not an absolute path to a file")]
    NotAbsolute(String),
    #[error("tool `{0}` is not installed on this host (looked in PATH and /usr/sbin, /sbin)")]
    NotInstalled(String),
    #[error("tool `{tool}` ({}): {cause}", path.display())]
    Closure {
        tool: String,
        path: PathBuf,
        cause: Box<ToolError>,
    },
    #[error("more than {MAX_FILES} files: a library loop?")]
    TooManyFiles,
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("reading ELF {}: {cause}", path.display())]
    Elf {
        path: PathBuf,
        cause: object::read::Error,
    },
    #[error("{} needs {library}, which is not on this host", path.display())]
    MissingLibrary { path: PathBuf, library: String },
}

/// The host files that make each of `tools` run in the guest: the programs and what they need,
/// as host paths (the guest path is the same), sorted and without duplicates.
pub fn closure(tools: &[String]) -> Result<Vec<PathBuf>, ToolError> {
    let mut out = BTreeSet::new();
    for tool in tools {
        let path = locate(tool)?;
        add(&path, &mut out).map_err(|cause| ToolError::Closure {
            tool: tool.clone(),
            path: path.clone(),
            cause: Box::new(cause),
        })?;
    }
    Ok(out.into_iter().collect())
}

fn locate(tool: &str) -> Result<PathBuf, ToolError> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        if !p.is_absolute() || !p.is_file() {
            return Err(ToolError::NotAbsolute(tool.to_string()));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| ToolError::NotInstalled(tool.to_string()))
}

/// Adds `path` and, for an ELF file, its interpreter and libraries.
fn add(path: &Path, out: &mut BTreeSet<PathBuf>) -> Result<(), ToolError> {
    if out.len() > MAX_FILES {
        return Err(ToolError::TooManyFiles);
    }
    if !out.insert(path.to_path_buf()) {
        return Ok(());
    }
    let data = std::fs::read(path).map_err(|e| IoError::reading(path, e))?;
    let Some(deps) = dependencies(&data).map_err(|cause| ToolError::Elf {
        path: path.to_path_buf(),
        cause,
    })?
    else {
        return Ok(()); // a script or data file: copied as it is
    };
    if let Some(interp) = deps.interpreter {
        add(Path::new(&interp), out)?;
    }
    for lib in deps.needed {
        let found = deps
            .search
            .iter()
            .map(|d| {
                d.replace(
                    "$ORIGIN",
                    &path.parent().unwrap_or(Path::new("/")).to_string_lossy(),
                )
            })
            .map(PathBuf::from)
            .chain(LIB_DIRS.iter().map(PathBuf::from))
            .map(|d| d.join(&lib))
            .find(|p| p.is_file())
            .ok_or_else(|| ToolError::MissingLibrary {
                path: path.to_path_buf(),
                library: lib.clone(),
            })?;
        add(&found, out)?;
    }
    Ok(())
}

struct Dependencies {
    interpreter: Option<String>,
    needed: Vec<String>,
    search: Vec<String>,
}

/// The interpreter, `DT_NEEDED` names and search paths of a 64-bit little-endian ELF file;
/// `None` for a file that is not one.
fn dependencies(data: &[u8]) -> Result<Option<Dependencies>, object::read::Error> {
    if !data.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let header = elf::FileHeader64::<object::Endianness>::parse(data)?;
    let endian = header.endian()?;
    let segments = header.program_headers(endian, data)?;
    let mut deps = Dependencies {
        interpreter: None,
        needed: Vec::new(),
        search: Vec::new(),
    };
    for seg in segments {
        if let Ok(Some(interp)) = seg.interpreter(endian, data) {
            deps.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
        let Ok(Some(dynamic)) = seg.dynamic(endian, data) else {
            continue;
        };
        // Strings of the dynamic section live in the segment `DT_STRTAB` points into.
        let strtab = dynamic
            .iter()
            .find(|d| d.tag(endian) == elf::DT_STRTAB)
            .map(|d| d.d_val(endian));
        let Some(strtab_addr) = strtab else { continue };
        let Some(strings) = segments.iter().find_map(|s| {
            let start = s.p_vaddr(endian);
            let size = s.p_filesz(endian);
            (s.p_type(endian) == elf::PT_LOAD && start <= strtab_addr && strtab_addr < start + size)
                .then(|| {
                    let off = s.p_offset(endian) + (strtab_addr - start);
                    let end = s.p_offset(endian) + size;
                    data.get(off as usize..end as usize)
                })
                .flatten()
        }) else {
            continue;
        };
        let string = |at: u64| -> Option<String> {
            let s = strings.get(at as usize..)?;
            let end = s.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        for d in dynamic {
            match d.tag(endian) {
                elf::DT_NEEDED => deps.needed.extend(string(d.d_val(endian))),
                elf::DT_RUNPATH | elf::DT_RPATH => {
                    if let Some(p) = string(d.d_val(endian)) {
                        deps.search.extend(p.split(':').map(str::to_string));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Some(deps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own `ls` needs its C library and the dynamic linker (Debian's coreutils is
    /// dynamically linked); a name that is nowhere is an error that says so.
    #[test]
    fn a_program_comes_with_its_interpreter_and_libraries() {
        let files = closure(&["ls".to_string()]).unwrap();
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        assert!(names.iter().any(|n| n.ends_with("/ls")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("libc.so.6")), "{names:?}");
        assert!(
            names.iter().any(|n| n.contains("ld-linux-x86-64.so.2")),
            "{names:?}"
        );
        let err = closure(&["provium-no-such-tool".to_string()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not installed on this host"),
            "{err:#}"
        );
    }
}
