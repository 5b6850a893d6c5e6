//! Every code block in README.md and docs/ is either run or checked, so the docs cannot drift:
//!
//! | block | what happens |
//! |---|---|
//! | `lua`, `lua standalone`, `lua fixture NAME`, `toml provium.toml` | run by `doc_examples.rs` |
//! | `lua file=PATH`, `yaml file=PATH`, `toml file=PATH` | written into the doc's project, for its transcripts |
//! | `console` | a transcript: each `$ provium …` runs in the doc's project; its output must be the one shown (times aside) |
//! | `sh test` | each `provium` command runs from the repository root and must succeed (`doc_examples.rs`) |
//! | `sh parsed` | each `provium` command must parse with the real command line (they take long or change the cache) |
//! | `sh ci` | commands CI runs (`.ci/run`); each `cargo` line must name a package and test that exist |
//! | `yaml` | docs/ci.md: CI files (`e2e_ci_docs.rs`); docs/spec-language.md: the example files |
//! | `toml example` | must load as a `provium.toml` |
//! | `rust excerpt=PATH` | every line must be in that source file |
//! | `text` | diagrams and listings, not runnable |
//!
//! A block with any other info string fails the test.

mod common;

use clap::Parser;
use common::{provium_in, root};
use std::collections::BTreeMap;

struct Block {
    doc: String,
    line: usize,
    info: String,
    body: String,
}

fn docs() -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let mut more: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn blocks(doc: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        match &mut open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some(Block {
                        doc: doc.to_string(),
                        line: i + 1,
                        info: info.trim().to_string(),
                        body: String::new(),
                    });
                }
            }
            Some(b) => {
                if t == "```" {
                    out.extend(open.take());
                } else {
                    b.body.push_str(line);
                    b.body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{doc}: unterminated code block");
    out
}

/// Durations vary from run to run: `[   0.004s]` and `(1.62 s)` compare equal whatever the time.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == 's' {
                    out.push_str("#s");
                    i = j + 1;
                    continue;
                }
            }
            out.extend(&chars[start..i]);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out.lines()
        .map(|l| l.trim_end())
        // What the machine was doing meanwhile (a fixture built on a fresh cache, a wait for
        // another run's VMs) is said as it happens and depends on the machine, not the docs.
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("BUILDING ") || t.starts_with("WAITING "))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// The words of a shell line, without its comment and its prompt.
fn words(line: &str) -> Vec<String> {
    let line = line.split(" #").next().unwrap_or(line).trim();
    line.split_whitespace().map(str::to_string).collect()
}

fn check_parsed(b: &Block) {
    for line in b
        .body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
    {
        // Environment assignments before the command (`PROVIUM_KERNEL=… provium test`).
        let w: Vec<String> = words(line)
            .into_iter()
            .skip_while(|x| x.contains('=') && !x.starts_with('-'))
            .collect();
        if w.first().map(String::as_str) != Some("provium") {
            // Set-up lines (`scripts/setup`) are run by CI.
            assert!(
                w.first().is_some_and(|c| c == "scripts/setup"),
                "{}:{}: `sh parsed` holds only provium commands: {line}",
                b.doc,
                b.line
            );
            continue;
        }
        if let Err(e) = provium::cli::Cli::try_parse_from(&w) {
            panic!("{}:{}: `{line}` does not parse:\n{e}", b.doc, b.line);
        }
    }
}

fn check_ci(b: &Block) {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    for line in b
        .body
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
    {
        for part in line.split("&&").map(str::trim) {
            let w = words(part);
            let cmd: Vec<&str> = w
                .iter()
                .map(String::as_str)
                .skip_while(|x| x.contains('=') && !x.starts_with('-'))
                .collect();
            match cmd.first().copied() {
                Some("scripts/setup") => assert!(ci.contains("scripts/setup"), ".ci/run"),
                Some("target/release/provium") => {
                    let mut args = vec!["provium"];
                    args.extend(&cmd[1..]);
                    provium::cli::Cli::try_parse_from(&args)
                        .unwrap_or_else(|e| panic!("{}:{}: {part}: {e}", b.doc, b.line));
                }
                Some("cargo") => {
                    for pair in cmd.windows(2) {
                        match pair[0] {
                            "-p" => assert!(
                                ["provium-compiler", "provium-runtime", "provium-agent"]
                                    .contains(&pair[1]),
                                "{}:{}: no package {}",
                                b.doc,
                                b.line,
                                pair[1]
                            ),
                            "--test" => {
                                let package = cmd
                                    .windows(2)
                                    .find(|p| p[0] == "-p")
                                    .map(|p| p[1].trim_start_matches("provium-"))
                                    .unwrap_or("runtime");
                                // A test binary is `tests/NAME.rs` or `tests/NAME/main.rs`.
                                let tests = root().join(package).join("tests");
                                let file = tests.join(format!("{}.rs", pair[1]));
                                assert!(
                                    file.is_file() || tests.join(pair[1]).join("main.rs").is_file(),
                                    "{}:{}: no {}",
                                    b.doc,
                                    b.line,
                                    file.display()
                                );
                            }
                            _ => {}
                        }
                    }
                }
                Some("git") => {}
                other => panic!("{}:{}: `sh ci` cannot vouch for {other:?}", b.doc, b.line),
            }
        }
    }
}

fn check_excerpt(b: &Block, path: &str) {
    let source = std::fs::read_to_string(root().join(path))
        .unwrap_or_else(|e| panic!("{}:{}: {path}: {e}", b.doc, b.line));
    let flat: Vec<String> = source.lines().map(|l| l.trim().to_string()).collect();
    for line in b.body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            flat.iter().any(|l| l == line),
            "{}:{}: `{line}` is not in {path}",
            b.doc,
            b.line
        );
    }
}

/// Runs the doc's transcripts in a project made of its `file=` blocks.
fn run_transcripts(doc: &str, files: &[&Block], transcripts: &[&Block]) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let path = f.info.split("file=").nth(1).unwrap().trim();
        common::write_file(dir.path(), path, &f.body);
    }
    for t in transcripts {
        let mut commands: Vec<(String, String)> = Vec::new();
        for line in t.body.lines() {
            match line.strip_prefix("$ ") {
                Some(cmd) => commands.push((cmd.to_string(), String::new())),
                None => {
                    let (_, expected) = commands
                        .last_mut()
                        .unwrap_or_else(|| panic!("{doc}:{}: output before a `$ ` line", t.line));
                    expected.push_str(line);
                    expected.push('\n');
                }
            }
        }
        assert!(!commands.is_empty(), "{doc}:{}: no `$ ` command", t.line);
        for (cmd, expected) in commands {
            let w = words(&cmd);
            assert_eq!(w[0], "provium", "{doc}:{}: {cmd}", t.line);
            // One pipe for stdout and stderr, as a terminal shows them: in the order written.
            let (mut reader, writer) = std::io::pipe().unwrap();
            let mut child = provium_in(dir.path())
                .args(&w[1..])
                .stdout(writer.try_clone().unwrap())
                .stderr(writer)
                .spawn()
                .unwrap();
            let mut shown = String::new();
            std::io::Read::read_to_string(&mut reader, &mut shown).unwrap();
            child.wait().unwrap();
            assert_eq!(
                normalise(&shown),
                normalise(&expected),
                "{doc}:{}: `{cmd}` prints something else than the transcript shows",
                t.line
            );
        }
    }
}

#[test]
fn every_block_in_the_docs_is_run_or_checked() {
    let mut by_doc: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    for doc in docs() {
        by_doc.insert(doc.clone(), blocks(&doc));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (doc, blocks) in &by_doc {
        for b in blocks {
            let kind = b.info.split_whitespace().next().unwrap_or("");
            let rest = b.info[kind.len()..].trim();
            let class = match (kind, rest) {
                ("lua", "" | "standalone") => "lua (doc_examples)",
                ("lua", r) if r.starts_with("fixture ") => "lua (doc_examples)",
                ("toml", "provium.toml") => "lua (doc_examples)",
                (_, r) if r.starts_with("file=") => "project file",
                ("console", "") => "transcript",
                ("sh", "test") => "sh test (doc_examples)",
                ("sh", "parsed") => {
                    check_parsed(b);
                    "sh parsed"
                }
                ("sh", "ci") => {
                    check_ci(b);
                    "sh ci"
                }
                ("yaml", "") if doc == "docs/ci.md" => "CI file (e2e_ci_docs)",
                ("yaml", "") if doc == "docs/spec-language.md" => "example spec (doc_examples)",
                ("toml", "example") => {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("provium.toml");
                    std::fs::write(&path, &b.body).unwrap();
                    provium::machine::profile::Profiles::load(&path)
                        .unwrap_or_else(|e| panic!("{doc}:{}: {e:#}", b.line));
                    "toml example"
                }
                ("rust", r) if r.starts_with("excerpt=") => {
                    check_excerpt(b, r.trim_start_matches("excerpt="));
                    "rust excerpt"
                }
                ("text", "") => "text",
                _ => panic!(
                    "{doc}:{}: a ```{} block is neither run nor checked (see this test's table)",
                    b.line, b.info
                ),
            };
            *counts.entry(class).or_default() += 1;
        }
        // The docs whose Lua blocks doc_examples runs.
        let lua = blocks.iter().any(|b| {
            b.info == "lua"
                || b.info.starts_with("lua standalone")
                || b.info.starts_with("lua fixture")
        });
        if lua {
            assert!(
                ["docs/lua-api.md", "docs/fixtures.md"].contains(&doc.as_str()),
                "{doc} has Lua examples that doc_examples.rs does not run"
            );
        }
    }
    for (doc, blocks) in &by_doc {
        let files: Vec<&Block> = blocks.iter().filter(|b| b.info.contains("file=")).collect();
        let transcripts: Vec<&Block> = blocks.iter().filter(|b| b.info == "console").collect();
        if !transcripts.is_empty() {
            run_transcripts(doc, &files, &transcripts);
        }
    }
    assert!(
        counts.get("transcript").copied().unwrap_or(0) >= 2,
        "{counts:?}"
    );
}

#[test]
fn normalising_ignores_only_times() {
    assert_eq!(
        normalise("PASS [   0.004s] a  \nSummary [ 12.5s]"),
        "PASS [   #s] a\nSummary [ #s]"
    );
    assert_eq!(normalise("exit 1.5 s"), "exit 1.5 s");
}
