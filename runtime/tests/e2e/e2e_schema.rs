//! The spec's JSON Schema (generated from the types the compiler reads) against a real JSON
//! Schema validator, check-jsonschema (scripts/setup installs it): every shipped spec and
//! example and what `provium gen` writes validate, and invalid specs are rejected, as editors
//! with the YAML language server show them.

use crate::common::{provium_in, root, show};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files check-jsonschema rejects, from its JSON report. Every file is validated in one
/// run: its start (Python, the validator, the schema) is most of its cost.
fn rejected(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let schema = root().join("schemas/spec.schema.json");
    let out = Command::new("check-jsonschema")
        .args(["--output-format", "json", "--schemafile"])
        .arg(&schema)
        .args(files)
        .output()
        .expect("check-jsonschema is installed by scripts/setup (pip install check-jsonschema)");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check-jsonschema's JSON report: {e}\n{}", show(&out)));
    assert_eq!(
        report["parse_errors"],
        serde_json::json!([]),
        "{}",
        show(&out)
    );
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    // A failing run names a file; a run without a failure exits 0.
    assert_eq!(out.status.success(), errors.is_empty(), "{}", show(&out));
    errors
        .iter()
        .map(|e| PathBuf::from(e["filename"].as_str().unwrap_or_default()))
        .collect()
}

fn yaml_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(yaml_under(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn shipped_and_generated_specs_validate_and_invalid_ones_do_not() {
    let mut files = yaml_under(&root().join("specs"));
    files.extend(yaml_under(&root().join("examples")));
    assert!(files.len() >= 19, "{files:?}");

    let dir = tempfile::tempdir().unwrap();
    let gen = dir.path().join("gen");
    let made = provium_in(dir.path())
        .args(["gen", "--out"])
        .arg(&gen)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", show(&made));
    let generated = yaml_under(&gen);
    assert!(generated.len() >= 40, "{}", generated.len());
    files.extend(generated);

    let mut invalid = BTreeSet::new();
    for (i, (what, spec)) in [
        ("a case without a name", "cases:\n  - syscall: close\n"),
        (
            "a case with no call, steps or lua",
            "cases:\n  - name: x\n    expect: ok\n",
        ),
        (
            "a case with both a call and lua",
            "cases:\n  - name: x\n    syscall: close\n    lua: \"x()\"\n",
        ),
        ("an unknown key", "cases:\n  - name: x\n    syscal: close\n"),
        (
            "seven arguments",
            "cases:\n  - name: x\n    syscall: close\n    args: [1, 2, 3, 4, 5, 6, 7]\n",
        ),
        (
            "a buffer with two forms",
            "cases:\n  - name: x\n    syscall: write\n    args: [1, {cstr: a, out: 4}]\n",
        ),
        (
            "an unknown buffer key",
            "cases:\n  - name: x\n    syscall: write\n    args: [1, {cstrr: a}]\n",
        ),
        (
            "an unknown expectation key",
            "cases:\n  - name: x\n    syscall: close\n    expect: {errnoo: EBADF}\n",
        ),
        (
            "a step with two kinds",
            "cases:\n  - name: x\n    steps:\n      - {syscall: close, exec: \"true\"}\n",
        ),
        ("an unknown top-level key", "casez: []\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, format!("# {what}\n{spec}")).unwrap();
        invalid.insert(path.clone());
        files.push(path);
    }
    // Exactly the invalid ones are rejected: every shipped, example and generated spec passes.
    assert_eq!(rejected(&files), invalid);
}
