//! The layer table of docs/architecture.md, enforced: every `crate::…` and `provium_compiler::…`
//! path in runtime/src is read (grouped imports too) and checked against what its layer may use.
//! The table here and the one in the document are compared, so neither drifts alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each runtime layer and the layers of the crate it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("event", &[]),
    ("machine", &["event", "protocol"]),
    ("fixture", &["machine", "event", "protocol"]),
    ("lua", &["fixture", "machine", "event", "protocol"]),
    ("run", &["lua", "fixture", "machine", "event", "protocol"]),
    ("report", &["event"]),
    (
        "cli",
        &[
            "run", "lua", "fixture", "machine", "event", "protocol", "report",
        ],
    ),
];

/// The compiler's modules each layer may use. Every layer may use its vocabulary: the Linux
/// tables (syscall and errno names) and the "did you mean" suggestions.
fn compiler_allowed(layer: &str, module: &str) -> bool {
    match layer {
        "run" | "cli" => true,
        // The Lua API refuses what the compiler refuses (timeouts, version ranges, config
        // conditions) by the same functions, and knows the names specs know: the ready-made
        // values (`$unused_pid`) and a kernel's own syscall names; and a compiled chunk's
        // source map, to say a failure's spec line.
        "lua" => [
            "linux",
            "diag",
            "check",
            "KernelNames",
            "READY_MADE",
            "SourceMap",
        ]
        .contains(&module),
        "event" => false,
        _ => ["linux", "diag"].contains(&module),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (a doc comment may name any path).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string literal that holds `//` (a URL): good enough for paths.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments after each `prefix::` in `text`: `crate::machine::vm` gives `machine`,
/// `crate::{event::X, machine::{a, b}}` gives `event` and `machine`.
fn first_segments(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let needle = format!("{prefix}::");
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `my_crate::` is not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // A grouped import: the top-level items' first segments.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.insert(head(&item));
        } else {
            out.insert(head(rest));
        }
    }
    out.remove("");
    out
}

fn head(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_layer_imports_what_the_table_forbids() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (layer, may_use) in &allowed {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no files in runtime/src/{layer}");
        for file in files {
            checked += 1;
            let text = code(&std::fs::read_to_string(&file).unwrap());
            let shown = file.strip_prefix(&src).unwrap().display().to_string();
            for used in first_segments(&text, "crate") {
                if used != *layer && !may_use.contains(&used.as_str()) {
                    wrong.push(format!("{shown} uses crate::{used}"));
                }
            }
            for used in first_segments(&text, "provium_compiler") {
                if !compiler_allowed(layer, &used) {
                    wrong.push(format!("{shown} uses provium_compiler::{used}"));
                }
            }
            for used in first_segments(&text, "provium_agent") {
                if used != "protocol" || !(may_use.contains(&"protocol") || *layer == "cli") {
                    wrong.push(format!("{shown} uses provium_agent::{used}"));
                }
            }
        }
    }
    assert!(checked > 80, "only {checked} files read");
    assert!(
        wrong.is_empty(),
        "imports the layer table forbids:\n{}",
        wrong.join("\n")
    );
}

/// The document's table says what this test enforces.
#[test]
fn the_documented_layer_table_is_the_enforced_one() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
    )
    .unwrap();
    for (layer, may_use) in LAYERS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {layer} |")))
            .unwrap_or_else(|| panic!("no row for {layer} in docs/architecture.md"));
        let documented = row.trim_end_matches('|').rsplit('|').next().unwrap();
        for used in *may_use {
            assert!(
                documented.contains(used),
                "docs/architecture.md's {layer} row does not list {used}: {row}"
            );
        }
    }
}

#[test]
fn grouped_and_nested_imports_are_read() {
    let found = first_segments(
        "use crate::{event::X, machine::{vm::Vm, paths}};\nlet a = crate::run::plan();\nmy_crate::x",
        "crate",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["event", "machine", "run"]
    );
}
