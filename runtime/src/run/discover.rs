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
    /// In a run over several kernels: which one (an index into `RunConfig::kernels`).
    pub kernel: Option<usize>,
}

/// The largest test file Provium reads. Specs and scripts are text that people (or `provium
/// gen`) write; the largest shipped spec is a few KiB.
pub const MAX_TEST_FILE: u64 = 8 << 20;

/// Reads a test file: a regular file of UTF-8 text, at most [`MAX_TEST_FILE`] bytes. A FIFO, a
/// device (a link to `/dev/zero`) or a directory is refused without being opened for reading,
/// so it can neither block nor fill memory.
pub fn read_test_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err(
            "not a regular file (a FIFO, a device or a directory): only regular files \
                    are read as tests"
                .into(),
        );
    }
    if meta.len() > MAX_TEST_FILE {
        return Err(format!(
            "{} bytes is over the limit of {} MiB for a test file",
            meta.len(),
            MAX_TEST_FILE >> 20
        ));
    }
    // O_NONBLOCK: should the file have been swapped for a FIFO since, opening it cannot hang.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEST_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_TEST_FILE {
        return Err(format!(
            "it is over the limit of {} MiB for a test file",
            MAX_TEST_FILE >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
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
        if !p.is_dir() {
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
                kernel: None,
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
                    kernel: None,
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

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.yaml")).unwrap();
        let started = std::time::Instant::now();
        assert!(read_test_file(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        let zero = read_test_file(&d.path().join("zero.yaml")).unwrap_err();
        assert!(zero.contains("not a regular file"), "{zero}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let big = d.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; (MAX_TEST_FILE + 1) as usize]).unwrap();
        assert!(read_test_file(&big).unwrap_err().contains("over the limit"));
        let bin = d.path().join("bin.lua");
        std::fs::write(&bin, [0xff, 0xfe]).unwrap();
        assert!(read_test_file(&bin).unwrap_err().contains("UTF-8"));
        // Found in a directory, they are listed: their reports say what is wrong with them.
        let found = discover(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(found.len(), 4);
    }
}
