//! Kernel modules: which files to put in the initramfs, in the order the agent loads them.
//!
//! `modules.dep` is authoritative when present. A kernel unpacked from a `.deb` has none
//! (`depmod` runs at install time), so without it the dependencies are read from each needed
//! module's `.modinfo` section, following only the modules actually asked for.

use crate::machine::error::{IoContext, IoError};
use crate::machine::kernel::DecompressError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why the modules a profile names cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("modules directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("kernel module `{name}` is not in {}{hint}", root.display())]
    Unknown {
        name: String,
        root: PathBuf,
        hint: String,
    },
    #[error("module dependencies of `{0}` nest too deeply (a cycle?)")]
    TooDeep(String),
    #[error("{}: {cause}", path.display())]
    Decompress {
        path: PathBuf,
        cause: DecompressError,
    },
}

type Result<T> = std::result::Result<T, ModuleError>;

/// The modules of one kernel release.
#[derive(Debug)]
pub struct ModuleTree {
    root: PathBuf,
    /// Module name (underscores) → path relative to `root`.
    files: BTreeMap<String, PathBuf>,
    /// Module name → names it depends on, from modules.dep when present.
    deps: Option<HashMap<String, Vec<String>>>,
    builtin: HashSet<String>,
}

/// One module file to ship, with its path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    pub host_path: PathBuf,
    pub guest_path: String,
}

pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

fn name_of(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))?;
    Some(canonical_name(stem))
}

impl ModuleTree {
    /// Opens `/lib/modules/<release>`-style directory.
    pub fn open(root: &Path) -> Result<ModuleTree> {
        if !root.is_dir() {
            return Err(ModuleError::NoDirectory(root.to_path_buf()));
        }
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).io_context(|| format!("listing {}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if let Some(name) = name_of(&path) {
                    if let Ok(rel) = path.strip_prefix(root) {
                        files.entry(name).or_insert_with(|| rel.to_path_buf());
                    }
                }
            }
        }
        let deps = std::fs::read_to_string(root.join("modules.dep"))
            .ok()
            .map(|text| parse_modules_dep(&text));
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| name_of(Path::new(l.trim())))
            .collect();
        Ok(ModuleTree {
            root: root.to_path_buf(),
            files,
            deps,
            builtin,
        })
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical_name(name))
    }

    pub fn has(&self, name: &str) -> bool {
        let n = canonical_name(name);
        self.files.contains_key(&n) || self.builtin.contains(&n)
    }

    fn dependencies(&self, name: &str) -> Result<Vec<String>> {
        if let Some(deps) = &self.deps {
            return Ok(deps.get(name).cloned().unwrap_or_default());
        }
        let rel = &self.files[name];
        let path = self.root.join(rel);
        let bytes = read_module(&path)?;
        Ok(modinfo_depends(&bytes))
    }

    /// The files for `wanted` and everything they need, dependencies first. Built-in modules are
    /// skipped; unknown names are an error with a suggestion.
    pub fn resolve(&self, wanted: &[String]) -> Result<Vec<ModuleFile>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in wanted {
            let name = canonical_name(name);
            if self.builtin.contains(&name) {
                continue;
            }
            if !self.files.contains_key(&name) {
                let hint = provium_compiler::diag::did_you_mean_suffix(
                    &name,
                    self.files.keys().map(String::as_str),
                );
                return Err(ModuleError::Unknown {
                    name,
                    root: self.root.clone(),
                    hint,
                });
            }
            self.visit(&name, &mut seen, &mut order, 0)?;
        }
        Ok(order
            .into_iter()
            .map(|name| {
                let rel = &self.files[&name];
                ModuleFile {
                    guest_path: format!("/lib/modules/provium/{}", rel.display()),
                    host_path: self.root.join(rel),
                    name,
                }
            })
            .collect())
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            return Err(ModuleError::TooDeep(name.to_string()));
        }
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        for dep in self.dependencies(name)? {
            if self.builtin.contains(&dep) || !self.files.contains_key(&dep) {
                continue;
            }
            self.visit(&dep, seen, order, depth + 1)?;
        }
        order.push(name.to_string());
        Ok(())
    }
}

fn parse_modules_dep(text: &str) -> HashMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let name = name_of(Path::new(module.trim()))?;
            let deps = deps
                .split_whitespace()
                .filter_map(|d| name_of(Path::new(d)))
                .collect();
            Some((name, deps))
        })
        .collect()
}

fn read_module(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| IoError::reading(path, e))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    let failed = |cause| ModuleError::Decompress {
        path: path.to_path_buf(),
        cause,
    };
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &raw[..], &mut out)
            .map_err(|e| failed(DecompressError::Xz(e)))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| failed(DecompressError::Zstd(e)))?
            .read_to_end(&mut out)
            .map_err(|e| IoError::reading(path, e))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| failed(DecompressError::Gzip(e)))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// The `depends=` entry of a module's `.modinfo` section: NUL-separated `key=value` strings.
fn modinfo_depends(module: &[u8]) -> Vec<String> {
    module
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical_name)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(with_dep_file: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("virtio.ko"), b"\0depends=\0license=GPL\0").unwrap();
        std::fs::write(k.join("virtio_ring.ko"), b"\0depends=virtio\0").unwrap();
        std::fs::write(
            k.join("virtio_console.ko"),
            b"\0depends=virtio_ring,virtio\0",
        )
        .unwrap();
        std::fs::write(k.join("vsock.ko"), b"x").unwrap();
        std::fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        )
        .unwrap();
        if with_dep_file {
            std::fs::write(
                dir.path().join("modules.dep"),
                "kernel/drivers/virtio.ko:\nkernel/drivers/virtio_ring.ko: kernel/drivers/virtio.ko\n\
                 kernel/drivers/virtio_console.ko: kernel/drivers/virtio_ring.ko kernel/drivers/virtio.ko\n",
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn dependencies_come_first_with_or_without_modules_dep() {
        for with in [true, false] {
            let dir = tree(with);
            let t = ModuleTree::open(dir.path()).unwrap();
            let names: Vec<String> = t
                .resolve(&["virtio-console".into(), "ext4".into()])
                .unwrap()
                .into_iter()
                .map(|m| m.name)
                .collect();
            assert_eq!(names, ["virtio", "virtio_ring", "virtio_console"]);
        }
    }

    #[test]
    fn unknown_module_suggests_a_name() {
        let dir = tree(true);
        let t = ModuleTree::open(dir.path()).unwrap();
        let err = t
            .resolve(&["virtio_consol".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `virtio_console`"), "{err}");
    }
}
