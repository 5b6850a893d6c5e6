//! The CI configurations in docs/ci.md work: each YAML block parses, its matrix matches its
//! partitions, and its shard and merge commands, run for real, produce a merged report with every
//! test of the suite exactly once. The suite they run is a sample of `specs/`: the smallest file
//! of each hash shard, under the same paths, so that every shard of either partition has files
//! (the sharding and merging are the subject here; e2e_specs runs the whole suite).

use crate::common::root;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn yaml_blocks() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/ci.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim() == "```yaml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    blocks
}

/// Every `provium` command in a list of shell lines, with `target/release/provium` as `provium`.
fn provium_commands(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.lines())
        .map(str::trim)
        .filter(|l| l.contains("provium ") && !l.contains("scripts/setup"))
        .map(|l| l.replace("target/release/provium", "provium"))
        .collect()
}

fn shell_lines(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs `command` through `sh` in `dir`, where `provium` is this build and `specs/` the suite.
fn run(dir: &Path, command: &str, vars: &BTreeMap<&str, String>) -> std::process::Output {
    let mut cmd = command.to_string();
    for (k, v) in vars {
        cmd = cmd.replace(k, v);
    }
    assert!(!cmd.contains("${"), "unsubstituted variable in `{cmd}`");
    let bin = Path::new(env!("CARGO_BIN_EXE_provium")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Three shards, as both configurations have them (checked against their matrices below).
const SHARDS: usize = 3;

/// The files of `specs/` in `dir` with their number of tests, as `provium test --list` gives.
fn listed(dir: &Path, args: &[&str]) -> BTreeMap<String, usize> {
    let out = Command::new(env!("CARGO_BIN_EXE_provium"))
        .args(["test", "specs/", "--list"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        *files
            .entry(line.split("::").next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    files
}

/// A directory whose `specs/` holds the smallest file of each of the suite's hash shards (by
/// symlink, under its own path, so that it stays in its shard).
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for k in 1..=SHARDS {
        let shard = listed(&root(), &["--partition", &format!("hash:{k}/{SHARDS}")]);
        let (file, _) = shard.iter().min_by_key(|(_, n)| **n).unwrap();
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(root().join(file), to).unwrap();
    }
    dir
}

/// The number of tests the sample in `dir` holds.
fn suite_size(dir: &Path) -> usize {
    let n = listed(dir, &[]).values().sum();
    assert!(n > 0);
    n
}

fn merged_cases(dir: &Path) -> usize {
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    xml.matches("<testcase ").count()
}

#[test]
fn github_actions_workflow_runs_its_shards_and_merges_them() {
    let blocks = yaml_blocks();
    let gh: serde_json::Value = blocks
        .iter()
        .map(|b| serde_saphyr::from_str::<serde_json::Value>(b).unwrap())
        .find(|v| v.get("jobs").is_some())
        .expect("a GitHub Actions workflow in docs/ci.md");
    let test = &gh["jobs"]["test"];
    let shards: Vec<u64> = test["strategy"]["matrix"]["shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(shards, (1..=SHARDS as u64).collect::<Vec<_>>());
    let steps = |job: &serde_json::Value| -> Vec<String> {
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| shell_lines(&s["run"]))
            .collect()
    };
    let shard_cmds = provium_commands(&steps(test));
    assert_eq!(shard_cmds.len(), 1, "{shard_cmds:?}");
    assert!(shard_cmds[0].contains(&format!("/{}", shards.len())));
    assert_eq!(gh["jobs"]["report"]["needs"], "test");
    let merge_cmds = provium_commands(&steps(&gh["jobs"]["report"]));
    assert_eq!(merge_cmds.len(), 1, "{merge_cmds:?}");

    let dir = workdir();
    for shard in &shards {
        let vars = BTreeMap::from([("${{ matrix.shard }}", shard.to_string())]);
        run(dir.path(), &shard_cmds[0], &vars);
    }
    run(dir.path(), &merge_cmds[0], &BTreeMap::new());
    assert_eq!(merged_cases(dir.path()), suite_size(dir.path()));
}

#[test]
fn gitlab_pipeline_runs_its_shards_and_merges_them() {
    let blocks = yaml_blocks();
    let gl: serde_json::Value = blocks
        .iter()
        .map(|b| serde_saphyr::from_str::<serde_json::Value>(b).unwrap())
        .find(|v| v.get("stages").is_some())
        .expect("a GitLab pipeline in docs/ci.md");
    let job = &gl["kernel-tests"];
    let total = job["parallel"].as_u64().unwrap();
    assert_eq!(total, SHARDS as u64);
    let shard_cmds = provium_commands(&shell_lines(&job["script"]));
    assert_eq!(shard_cmds.len(), 1, "{shard_cmds:?}");
    assert_eq!(gl["merge-reports"]["needs"][0], "kernel-tests");
    let merge_cmds = provium_commands(&shell_lines(&gl["merge-reports"]["script"]));
    assert_eq!(merge_cmds.len(), 1, "{merge_cmds:?}");

    let dir = workdir();
    for k in 1..=total {
        let vars = BTreeMap::from([
            ("${CI_NODE_INDEX}", k.to_string()),
            ("${CI_NODE_TOTAL}", total.to_string()),
        ]);
        run(dir.path(), &shard_cmds[0], &vars);
    }
    run(dir.path(), &merge_cmds[0], &BTreeMap::new());
    assert_eq!(merged_cases(dir.path()), suite_size(dir.path()));
}
