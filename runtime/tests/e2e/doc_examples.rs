//! Runs every Lua example in the docs against the real kernel. In the generated files each
//! example keeps its line number from the document, so a failure points at the doc's line.
//!
//! - ```` ```lua ```` blocks become tests in one file that boots one VM as `vm`;
//! - ```` ```lua standalone ```` blocks are whole files;
//! - ```` ```lua fixture NAME ```` blocks are saved as `fixtures/NAME.lua`;
//! - ```` ```toml provium.toml ```` blocks are saved as the project's `provium.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(PartialEq)]
enum Kind {
    /// A test in the shared file, with `vm` booted.
    Shared,
    Standalone,
    Fixture(String),
    Config,
}

struct Block {
    start: usize,
    kind: Kind,
    lines: Vec<String>,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        match &mut current {
            None => {
                let kind = if let Some(info) = trimmed.strip_prefix("```lua") {
                    let info = info.trim();
                    match info.strip_prefix("fixture ") {
                        Some(name) => Some(Kind::Fixture(name.trim().to_string())),
                        None if info == "standalone" => Some(Kind::Standalone),
                        None => Some(Kind::Shared),
                    }
                } else if trimmed == "```toml provium.toml" {
                    Some(Kind::Config)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    current = Some(Block {
                        start: i + 1,
                        kind,
                        lines: Vec::new(),
                    });
                }
            }
            Some(b) => {
                if trimmed == "```" {
                    out.extend(current.take());
                } else {
                    b.lines.push(line.to_string());
                }
            }
        }
    }
    assert!(current.is_none(), "unterminated code block");
    out
}

/// Writes the runnable files for one document into `dir`.
fn generate(doc_path: &Path, dir: &Path) -> usize {
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let name = doc_path.file_name().unwrap().to_string_lossy().to_string();
    let total = doc.lines().count();
    let blocks = blocks(&doc);
    let mut shared = vec![String::new(); total + 1];
    shared[0] = "local vm = provium.create(); vm:boot()".into();
    let mut count = 0;
    let mut shared_tests = 0;
    for b in &blocks {
        count += 1;
        let padded = || {
            let mut text = "\n".repeat(b.start);
            text.push_str(&b.lines.join("\n"));
            text.push('\n');
            text
        };
        match &b.kind {
            Kind::Standalone => {
                std::fs::write(dir.join(format!("{name}.line{:04}.lua", b.start)), padded())
                    .unwrap();
                continue;
            }
            Kind::Fixture(fixture) => {
                std::fs::create_dir_all(dir.join("fixtures")).unwrap();
                std::fs::write(
                    dir.join("fixtures").join(format!("{fixture}.lua")),
                    padded(),
                )
                .unwrap();
                continue;
            }
            Kind::Config => {
                std::fs::write(dir.join("provium.toml"), b.lines.join("\n")).unwrap();
                continue;
            }
            Kind::Shared => shared_tests += 1,
        }
        // The fence line opens the test, the closing fence ends it: lines stay in place.
        shared[b.start - 1] = format!("test(\"{name}:{}\", function()", b.start);
        for (k, l) in b.lines.iter().enumerate() {
            shared[b.start + k] = l.clone();
        }
        shared[b.start + b.lines.len()] = "end)".into();
    }
    shared.push("vm:shutdown()".into());
    if shared_tests > 0 {
        std::fs::write(dir.join(format!("{name}.lua")), shared.join("\n")).unwrap();
    }
    count
}

fn run_docs(doc: &str) {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let dir = tempfile::tempdir().unwrap();
    // The temporary project's own fixture builds go with it (plain-boot builds are shared).
    let _cleanup = crate::common::FixtureCleanup(dir.path());
    let n = generate(&root.join(doc), dir.path());
    assert!(n > 0, "{doc} has no examples");
    let out = Command::new(env!("CARGO_BIN_EXE_provium"))
        .current_dir(dir.path())
        .args(["test", ".", "-j", "2"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples in {doc} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("SKIP") || doc.contains("lua-api"),
        "{stdout}"
    );
}

#[test]
fn lua_api_examples_run() {
    run_docs("docs/lua-api.md");
}

#[test]
fn fixture_examples_run() {
    run_docs("docs/fixtures.md");
}

/// The spec-language reference shows the files under examples/specs verbatim (the examples
/// test runs them); a block that drifts from its file fails here.
#[test]
fn spec_language_examples_are_the_example_files() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let doc = std::fs::read_to_string(root.join("docs/spec-language.md")).unwrap();
    let mut checked = 0;
    let mut lines = doc.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- example: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```yaml"),
            "{path}: a yaml block follows the marker"
        );
        let mut block = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            block.push_str(l);
            block.push('\n');
        }
        let file = std::fs::read_to_string(root.join(path)).unwrap();
        assert_eq!(
            block, file,
            "docs/spec-language.md shows {path} differently from the file"
        );
        checked += 1;
    }
    let examples = std::fs::read_dir(root.join("examples/specs"))
        .unwrap()
        .count();
    assert_eq!(
        checked, examples,
        "every example spec is shown in the reference"
    );
}

/// Shell blocks marked ```` ```sh test ```` run command by command (`provium` is this build).
#[test]
fn shell_examples_run() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    // Commands run where the repository's specs and examples are, but what they write (a
    // JUnit report) lands in a scratch directory, not in the repository.
    let scratch = tempfile::tempdir().unwrap();
    for d in ["specs", "examples", "schemas"] {
        std::os::unix::fs::symlink(root.join(d), scratch.path().join(d)).unwrap();
    }
    let mut ran = 0;
    let mut docs = vec!["README.md".to_string()];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(format!("docs/{}", p.file_name().unwrap().to_string_lossy()));
        }
    }
    for doc in &docs {
        let Ok(text) = std::fs::read_to_string(root.join(doc)) else {
            continue;
        };
        let mut in_block = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t == "```sh test" {
                in_block = true;
                continue;
            }
            if in_block && t == "```" {
                in_block = false;
                continue;
            }
            if !in_block || t.is_empty() || t.starts_with('#') {
                continue;
            }
            let cmd = t.split(" # ").next().unwrap_or(t).trim();
            let args: Vec<&str> = cmd.split_whitespace().collect();
            assert_eq!(
                args[0],
                "provium",
                "{doc}:{}: only provium commands run here",
                i + 1
            );
            let out = Command::new(env!("CARGO_BIN_EXE_provium"))
                .args(&args[1..])
                .current_dir(scratch.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{doc}:{}: `{cmd}` failed:\n{}{}",
                i + 1,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} commands ran");
}
