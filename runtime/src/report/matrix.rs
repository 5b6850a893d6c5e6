//! The cross-kernel view of a run: one row per test, one column per kernel, each cell what the
//! test saw there. Rows whose cells differ come first. The terminal's closing table and the HTML
//! report are both drawn from it.

use crate::event::{Status, Summary, TestReport};
use std::collections::BTreeMap;

/// A test's outcome on one kernel.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    pub test: &'a TestReport,
    /// The file's report this comes from (an index into `Summary::reports`).
    pub report: usize,
}

impl Cell<'_> {
    /// What is compared between kernels: the status, and what the kernel answered.
    pub fn outcome(&self) -> (&'static str, Option<&str>) {
        (self.test.status.label(), self.test.observed.as_deref())
    }

    /// `PASS EBADF`, `FAIL 0`, `SKIP`.
    pub fn text(&self) -> String {
        match self.outcome() {
            (status, Some(seen)) => format!("{status} {seen}"),
            (status, None) => status.to_string(),
        }
    }

    pub fn is_bad(&self) -> bool {
        self.test.status.is_bad() || matches!(self.test.status, Status::NotRun { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub file: &'a str,
    pub test: &'a str,
    /// One per kernel column; `None` where the test did not exist (the file failed to load).
    pub cells: Vec<Option<Cell<'a>>>,
    pub differs: bool,
    /// Not run (or absent) on some kernel: not compared there.
    pub incomplete: bool,
}

#[derive(Debug, Clone)]
pub struct Matrix<'a> {
    /// Column headings: kernel releases.
    pub kernels: Vec<String>,
    /// Differing rows first, then in run order.
    pub rows: Vec<Row<'a>>,
}

impl<'a> Matrix<'a> {
    pub fn new(summary: &'a Summary) -> Matrix<'a> {
        let mut kernels: Vec<String> = Vec::new();
        for r in &summary.reports {
            if let Some(k) = &r.kernel {
                if !kernels.contains(k) {
                    kernels.push(k.clone());
                }
            }
        }
        if kernels.is_empty() {
            // A run on one kernel: the column is the release the VMs reported.
            let release = summary
                .reports
                .iter()
                .flat_map(|r| &r.vms)
                .map(|v| v.kernel_release.clone())
                .next()
                .unwrap_or_else(|| "kernel".into());
            kernels.push(release);
        }
        let mut order: Vec<(&str, &str)> = Vec::new();
        let mut cells: BTreeMap<(&str, &str), Vec<Option<Cell>>> = BTreeMap::new();
        for (i, r) in summary.reports.iter().enumerate() {
            let column = r
                .kernel
                .as_ref()
                .and_then(|k| kernels.iter().position(|c| c == k))
                .unwrap_or(0);
            for t in &r.tests {
                let key = (r.path.as_str(), t.name.as_str());
                let row = cells.entry(key).or_insert_with(|| {
                    order.push(key);
                    vec![None; kernels.len()]
                });
                row[column] = Some(Cell { test: t, report: i });
            }
        }
        let mut rows: Vec<Row> = order
            .into_iter()
            .map(|key| {
                let cells = cells.remove(&key).unwrap_or_default();
                // Only what ran is compared: a test an interrupted run or a kernel that did not
                // boot never reached says nothing about how the kernels differ.
                let ran: Vec<(&'static str, Option<&str>)> = cells
                    .iter()
                    .flatten()
                    .filter(|c| !matches!(c.test.status, Status::NotRun { .. }))
                    .map(Cell::outcome)
                    .collect();
                let differs = ran.windows(2).any(|w| w[0] != w[1]);
                let incomplete = cells.len() > 1 && ran.len() < cells.len();
                Row {
                    file: key.0,
                    test: key.1,
                    cells,
                    differs,
                    incomplete,
                }
            })
            .collect();
        // Stable: differing rows first, each group in run order.
        rows.sort_by_key(|r| !r.differs);
        Matrix { kernels, rows }
    }

    pub fn differing(&self) -> impl Iterator<Item = &Row<'a>> {
        self.rows.iter().filter(|r| r.differs)
    }

    /// Rows not run on every kernel.
    pub fn incomplete(&self) -> usize {
        self.rows.iter().filter(|r| r.incomplete).count()
    }
}
