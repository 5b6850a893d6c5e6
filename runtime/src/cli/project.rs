//! The files that make editors understand a project: the spec's JSON Schema and the Lua API
//! stubs, kept in `.provium/` of the project (`provium init` and `provium gen` write them).

use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};

/// The editor stubs for the Provium Lua API (lua-language-server `---@meta`).
pub const LUA_STUBS: &str = include_str!("../../lua-types/provium.lua");

/// The project a directory belongs to: where its nearest `provium.toml` is, else the directory.
pub fn root(start: &Path) -> PathBuf {
    start
        .ancestors()
        .find(|d| d.join("provium.toml").is_file())
        .unwrap_or(start)
        .to_path_buf()
}

/// Where the schema lives in a project.
pub fn schema_path(root: &Path) -> PathBuf {
    root.join(".provium").join("spec.schema.json")
}

/// Where the Lua stubs live in a project (the directory `.luarc.json` names).
pub fn stubs_dir(root: &Path) -> PathBuf {
    root.join(".provium").join("lua")
}

/// Writes (or refreshes, when this Provium's differ) the schema and the stubs; returns what
/// changed. `last-run.json` beside them is ignored by git, they are not.
pub fn write_editor_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let files = [
        (schema_path(root), provium_compiler::schema()),
        (stubs_dir(root).join("provium.lua"), LUA_STUBS.to_string()),
        (
            root.join(".provium").join(".gitignore"),
            "# Provium's record of the last run; the schema and the Lua stubs are for editors.\n\
             last-run.json\n"
                .to_string(),
        ),
    ];
    for (path, text) in files {
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        crate::machine::paths::write_output(&path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `to` relative to the directory `from` (both made absolute first): what a `$schema` line in
/// a file of `from` names `to` by.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Normalise `.` and `..` without touching the file system (`to` may not exist yet).
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    };
    let (from, to) = (abs(from), abs(to));
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_directories() {
        assert_eq!(
            relative(
                Path::new("/p/specs/gen"),
                Path::new("/p/.provium/spec.schema.json")
            ),
            Path::new("../../.provium/spec.schema.json")
        );
        assert_eq!(
            relative(Path::new("/p"), Path::new("/p/.provium/x")),
            Path::new(".provium/x")
        );
        assert_eq!(
            relative(Path::new("/p/a/../b"), Path::new("/p/c")),
            Path::new("../c")
        );
    }
}
