//! Finding test files: `*.lua` scripts and `*.yaml`/`*.yml` specs under the given paths.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Lua,
    Spec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFile {
    pub path: PathBuf,
    /// The path as reports show it: relative to the current directory when possible.
    pub display: String,
    pub kind: FileKind,
}

/// Directories that never hold tests: fixture scripts are run by `provium.fixture`, not as tests.
const SKIPPED_DIRS: [&str; 4] = ["fixtures", "target", "node_modules", ".git"];

fn kind_of(path: &Path) -> Option<FileKind> {
    match path.extension()?.to_str()? {
        "lua" => Some(FileKind::Lua),
        "yaml" | "yml" => Some(FileKind::Spec),
        _ => None,
    }
}

fn display(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = cwd
        .as_deref()
        .and_then(|c| path.strip_prefix(c).ok())
        .unwrap_or(path);
    shown.to_string_lossy().trim_start_matches("./").to_string()
}

/// Test files under `paths`, each directory's files sorted by path; explicit files are taken as
/// given. Duplicates are dropped.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<TestFile>> {
    let mut out: Vec<TestFile> = Vec::new();
    for p in paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        if p.is_file() {
            let Some(kind) = kind_of(p) else {
                bail!(
                    "{}: not a test file (expected .lua, .yaml or .yml)",
                    p.display()
                );
            };
            out.push(TestFile {
                display: display(p),
                path: p.clone(),
                kind,
            });
            continue;
        }
        let mut found = Vec::new();
        walk(p, &mut found)?;
        found.sort();
        for f in found {
            if let Some(kind) = kind_of(&f) {
                out.push(TestFile {
                    display: display(&f),
                    path: f,
                    kind,
                });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert(f.path.canonicalize().unwrap_or_else(|_| f.path.clone())));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                walk(&path, out)?;
            }
        } else if kind_of(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sorted_files_and_skips_fixtures() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "b.lua",
            "a.yaml",
            "sub/c.lua",
            "fixtures/base.lua",
            "notes.txt",
            ".hidden/x.lua",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let files = discover(&[d.path().to_path_buf()]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.yaml", "b.lua", "sub/c.lua"]);
        assert!(discover(&[d.path().join("missing")]).is_err());
        assert!(discover(&[d.path().join("notes.txt")]).is_err());
    }
}
