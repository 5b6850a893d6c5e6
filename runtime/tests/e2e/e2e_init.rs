//! `provium init` in an empty directory gives a project whose spec validates against the schema
//! it wrote, whose editor files point at what exists, and whose first `provium test` passes;
//! `provium gen` there points its `$schema` lines at the project's copy.

use crate::common::{provium_in, show};
use std::process::Command;

#[test]
fn init_makes_a_project_that_validates_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("proj");
    let out = provium_in(dir.path())
        .args(["init", "proj"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    for f in [
        "provium.toml",
        "specs/first.yaml",
        "tests/first.lua",
        ".luarc.json",
        ".provium/spec.schema.json",
        ".provium/lua/provium.lua",
    ] {
        assert!(project.join(f).is_file(), "{f} missing\n{}", show(&out));
    }

    // The spec validates against the schema the project carries, as an editor would check it.
    let check = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(project.join(".provium/spec.schema.json"))
        .arg(project.join("specs/first.yaml"))
        .output()
        .expect("check-jsonschema (scripts/setup installs it)");
    assert!(check.status.success(), "{}", show(&check));
    // Its `$schema` line names that file.
    let spec = std::fs::read_to_string(project.join("specs/first.yaml")).unwrap();
    let schema_line = spec.lines().next().unwrap();
    let named = schema_line.split("$schema=").nth(1).unwrap();
    assert!(project.join("specs").join(named).is_file(), "{schema_line}");
    // The Lua language server finds the stubs where .luarc.json says.
    let luarc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".luarc.json")).unwrap())
            .unwrap();
    let library = luarc["workspace.library"][0].as_str().unwrap();
    assert!(project.join(library).join("provium.lua").is_file());

    let checked = provium_in(&project).args(["check"]).output().unwrap();
    assert!(checked.status.success(), "{}", show(&checked));
    let tested = provium_in(&project).args(["test"]).output().unwrap();
    assert!(tested.status.success(), "{}", show(&tested));
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(
        stdout.contains("6 tests run: 6 passed"),
        "{}",
        show(&tested)
    );

    // Again: nothing is overwritten.
    std::fs::write(
        project.join("tests/first.lua"),
        "test('mine', function() end)\n",
    )
    .unwrap();
    let again = provium_in(&project).args(["init"]).output().unwrap();
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(
        std::fs::read_to_string(project.join("tests/first.lua")).unwrap(),
        "test('mine', function() end)\n"
    );

    // `provium gen` in the project: its specs name the project's schema, which exists.
    let gen = provium_in(&project)
        .args(["gen", "--syscalls", "close", "--out", "specs/gen"])
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", show(&gen));
    let generated = std::fs::read_to_string(project.join("specs/gen/close.yaml")).unwrap();
    let line = generated.lines().next().unwrap();
    let named = line.split("$schema=").nth(1).unwrap();
    assert_eq!(named, "../../.provium/spec.schema.json", "{line}");
    assert!(project.join("specs/gen").join(named).is_file());
}
