//! The record of the last run (`.provium/last-run.json`), which `--rerun-failed` reads.

use super::filter::Filter;
use super::Summary;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// `file::test` of every test that failed or errored.
    pub failed_tests: BTreeSet<String>,
    /// Files that failed outside any test (their every test runs again).
    pub failed_files: BTreeSet<String>,
    /// Files that were selected but not run (`--fail-fast`).
    #[serde(default)]
    pub not_run_files: BTreeSet<String>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(".provium").join("last-run.json")
}

impl LastRun {
    pub fn from_summary(summary: &Summary, selected: &[String]) -> LastRun {
        let mut last = LastRun::default();
        let mut ran = BTreeSet::new();
        for r in &summary.reports {
            ran.insert(r.path.clone());
            if r.file_error.is_some() {
                last.failed_files.insert(r.path.clone());
            }
            for t in &r.tests {
                if t.status.is_bad() {
                    last.failed_tests.insert(format!("{}::{}", r.path, t.name));
                }
            }
        }
        last.not_run_files = selected
            .iter()
            .filter(|f| !ran.contains(*f))
            .cloned()
            .collect();
        last
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let p = path(root);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_vec_pretty(self)?;
        crate::machine::paths::write_output(&p, &text)
            .with_context(|| format!("writing {}", p.display()))
    }

    pub fn load(root: &Path) -> Result<LastRun> {
        let p = path(root);
        let text = std::fs::read(&p).with_context(|| {
            format!(
                "--rerun-failed: no record of a previous run ({})",
                p.display()
            )
        })?;
        serde_json::from_slice(&text).with_context(|| format!("reading {}", p.display()))
    }

    pub fn is_clean(&self) -> bool {
        self.failed_tests.is_empty()
            && self.failed_files.is_empty()
            && self.not_run_files.is_empty()
    }

    /// Selects what failed or did not run.
    pub fn filter(&self) -> Filter {
        let mut files = self.failed_files.clone();
        files.extend(self.not_run_files.iter().cloned());
        Filter::Only {
            tests: self.failed_tests.clone(),
            files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::model::{FileReport, Location, Problem, Status, TestReport};

    #[test]
    fn what_failed_or_did_not_run_is_selected_again() {
        let test = |name: &str, status: Status| TestReport {
            name: name.into(),
            location: Location {
                file: "t.lua".into(),
                line: 1,
            },
            status,
            duration: Default::default(),
            output: String::new(),
            observed: None,
        };
        let problem = Problem::new("boom");
        let summary = Summary {
            reports: vec![
                FileReport {
                    path: "t.lua".into(),
                    tests: vec![
                        test("ok", Status::Passed),
                        test("bad", Status::Failed(problem.clone())),
                    ],
                    ..Default::default()
                },
                FileReport {
                    path: "broken.lua".into(),
                    file_error: Some(problem),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let selected = ["t.lua", "broken.lua", "later.lua"].map(String::from);
        let last = LastRun::from_summary(&summary, &selected);
        let dir = tempfile::tempdir().unwrap();
        last.save(dir.path()).unwrap();
        let f = LastRun::load(dir.path()).unwrap().filter();
        assert!(f.matches("t.lua", "bad"));
        assert!(!f.matches("t.lua", "ok"));
        assert!(f.matches("broken.lua", "anything"));
        assert!(
            f.matches("later.lua", "anything"),
            "not run: selected again"
        );
        assert!(!f.may_match_file("other.lua"));
    }
}
