//! The spec's JSON Schema (generated from the types the compiler reads) against a real JSON
//! Schema validator, check-jsonschema (scripts/setup installs it): every shipped spec and
//! example and what `provium gen` writes validate, and invalid specs are rejected, as editors
//! with the YAML language server show them.

use crate::common::{provium_in, root, show};
use std::path::{Path, PathBuf};
use std::process::Command;

fn validate(files: &[PathBuf]) -> std::process::Output {
    let schema = root().join("schemas/spec.schema.json");
    Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(files)
        .output()
        .expect("check-jsonschema is installed by scripts/setup (pip install check-jsonschema)")
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
    let out = validate(&files);
    assert!(out.status.success(), "{}", show(&out));

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
    let out = validate(&generated);
    assert!(out.status.success(), "{}", show(&out));

    for (what, spec) in [
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
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, spec).unwrap();
        let out = validate(&[path]);
        assert!(!out.status.success(), "{what} was accepted:\n{spec}");
    }
}
