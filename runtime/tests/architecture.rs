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
        // The Lua API refuses what the compiler refuses (timeouts) by the same functions, and
        // knows the names specs know: the ready-made values (`$unused_pid`) and a kernel's own
        // syscall names; a compiled chunk's source map, to say a failure's spec line; the one
        // verdict on an expectation, and the typed requirements (version ranges, config
        // conditions) it parses and decides as the compiler does.
        "lua" => [
            "linux",
            "diag",
            "check",
            "verdict",
            "requirement",
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
            // A unit test may use anything (it compiles specs to test what reads them).
            let text = match text.find("#[cfg(test)]") {
                Some(t) => text[..t].to_string(),
                None => text,
            };
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

/// A folder's files as modules (`machine/vm/plan.rs` is `["vm", "plan"]` under `machine`,
/// `vm/mod.rs` is `["vm"]`), with their source.
fn folder_modules(folder: &Path) -> BTreeMap<Vec<String>, String> {
    let mut files = Vec::new();
    rust_files(folder, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(folder).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            (parts, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// The paths `text` names through `prefix::`, each as its segments (grouped imports expanded one
/// level: `super::{a::b, c}` gives `a::b` and `c`).
fn named_paths(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let chain = |s: &str| -> Vec<String> {
            s.split("::")
                .map(head)
                .take_while(|p| !p.is_empty())
                .collect()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(chain(item.trim()));
            }
        } else {
            out.push(chain(rest));
        }
    }
    out
}

/// Files of `folder` that import each other in a loop (strongly connected components of more
/// than one file). Test modules are left out: a test may use anything.
fn file_loops(folder: &Path, crate_path: &[&str]) -> Vec<Vec<String>> {
    let modules = folder_modules(folder);
    let names: Vec<Vec<String>> = modules.keys().cloned().collect();
    let resolve = |base: &[String], parts: &[String]| -> Option<usize> {
        (1..=parts.len()).rev().find_map(|k| {
            let mut full = base.to_vec();
            full.extend_from_slice(&parts[..k]);
            names.iter().position(|n| *n == full)
        })
    };
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); names.len()];
    for (i, (me, text)) in modules.iter().enumerate() {
        let text = code(text);
        let text = match text.find("#[cfg(test)]") {
            Some(t) => &text[..t],
            None => &text[..],
        };
        // `super::` from `vm/plan.rs` is `vm`; from `vm/mod.rs` (["vm"]) it is the folder.
        let parent: Vec<String> = me[..me.len().saturating_sub(1)].to_vec();
        let mut targets = Vec::new();
        for p in named_paths(text, "super") {
            targets.push(resolve(&parent, &p));
        }
        for p in named_paths(text, "self") {
            targets.push(resolve(me, &p));
        }
        for p in named_paths(text, "crate") {
            let inside =
                p.len() > crate_path.len() && p.iter().zip(crate_path).all(|(a, b)| a == b);
            if inside {
                targets.push(resolve(&[], &p[crate_path.len()..]));
            }
        }
        for t in targets.into_iter().flatten() {
            if t != i {
                edges[i].insert(t);
            }
        }
    }
    // Which files reach which (few files: a plain closure is enough).
    let n = names.len();
    let mut reach = vec![vec![false; n]; n];
    for (i, e) in edges.iter().enumerate() {
        for &j in e {
            reach[i][j] = true;
        }
    }
    for k in 0..n {
        let via = reach[k].clone();
        for row in reach.iter_mut() {
            if row[k] {
                for (to, &r) in row.iter_mut().zip(&via) {
                    *to |= r;
                }
            }
        }
    }
    let mut seen = vec![false; n];
    let mut loops = Vec::new();
    for i in 0..n {
        if seen[i] {
            continue;
        }
        let group: Vec<usize> = (0..n)
            .filter(|&j| j == i || (reach[i][j] && reach[j][i]))
            .collect();
        for &j in &group {
            seen[j] = true;
        }
        if group.len() > 1 {
            loops.push(group.iter().map(|&j| names[j].join("/")).collect());
        }
    }
    loops
}

/// Each folder has a one-way order: no two files import each other, directly or round a loop.
#[test]
fn no_folder_has_files_importing_in_a_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (folder, crate_path) in [
        ("src/lua", &["lua"][..]),
        ("src/machine", &["machine"][..]),
        ("src/run", &["run"][..]),
        ("src/fixture", &["fixture"][..]),
        ("src/report", &["report"][..]),
        ("../agent/src/guest", &["guest"][..]),
    ] {
        for l in file_loops(&root.join(folder), crate_path) {
            found.push(format!("{folder}: {}", l.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn a_loop_is_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.rs"), "use super::b::X;").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use super::{c, d};").unwrap();
    std::fs::write(dir.path().join("c.rs"), "fn f() { crate::m::a::g() }").unwrap();
    std::fs::write(dir.path().join("d.rs"), "").unwrap();
    assert_eq!(file_loops(dir.path(), &["m"]), [["a", "b", "c"]]);
}

/// Below the CLI, errors are typed per operation (firecracker's way): the machine and fixture
/// layers never return text as an error, nor an `anyhow::Error` a caller would have to
/// downcast to tell a boot failure from a full cache.
#[test]
fn machine_and_fixture_errors_are_typed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for layer in ["machine", "fixture"] {
        let mut files = Vec::new();
        rust_files(&root.join(layer), &mut files);
        for file in files {
            let text = code(&std::fs::read_to_string(&file).unwrap());
            for (n, line) in text.lines().enumerate() {
                let compact: String = line.split_whitespace().collect();
                let string_error = compact
                    .split("Result<")
                    .skip(1)
                    .any(|rest| rest.contains(",String>"));
                if compact.contains("anyhow") || string_error {
                    offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "untyped errors:\n{}",
        offences.join("\n")
    );
}
