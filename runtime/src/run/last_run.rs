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
        crate::paths::write_atomically(&p, &text)
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
