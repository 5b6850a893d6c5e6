//! `--html FILE`: one self-contained page (no network, no external assets) with the run as a
//! matrix: rows are tests, columns kernels, each cell the outcome there (status and what the
//! kernel answered). Rows that differ between kernels come first and are highlighted; every cell
//! links to its details (message, `file:line`, console excerpt, output). On one kernel it is a
//! plain report a CI job can publish as an artifact.

use super::matrix::{Cell, Matrix, Row};
use super::Reporter;
use crate::event::{Counts, RunEvent, Status, Summary};
use serde::Serialize;

/// The page, a minijinja template (auto-escaped as HTML).
const TEMPLATE: &str = include_str!("../../templates/report.html.j2");

fn status_class(s: &Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed(_) => "failed",
        Status::Errored(_) => "errored",
        Status::Skipped { .. } => "skipped",
        Status::NotRun { .. } => "not_run",
    }
}

fn anchor(row: usize, col: usize) -> String {
    format!("d-{row}-{col}")
}

#[derive(Serialize)]
struct KernelColumn {
    name: String,
    counts: Counts,
}

#[derive(Serialize)]
struct CellView {
    class: &'static str,
    text: String,
    /// A failed test that reported no answer (a Lua assertion): the start of its message.
    note: Option<String>,
    anchor: String,
}

#[derive(Serialize)]
struct RowView {
    name: String,
    differs: bool,
    bad: bool,
    cells: Vec<Option<CellView>>,
}

#[derive(Serialize)]
struct DetailView {
    anchor: String,
    name: String,
    kernel: String,
    status: &'static str,
    location: String,
    duration: String,
    observed: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    at: Option<String>,
    detail: Option<String>,
    console: Option<String>,
    output: Option<String>,
    vm: Option<String>,
}

#[derive(Serialize)]
struct PageView {
    version: &'static str,
    started: String,
    duration: String,
    success: bool,
    counts: Counts,
    kernels: Vec<KernelColumn>,
    differing: usize,
    incomplete: usize,
    bad: usize,
    rows: Vec<RowView>,
    details: Vec<DetailView>,
}

/// The first words of a message, for a cell.
fn note(message: &str) -> String {
    const MAX: usize = 48;
    let line = message.lines().next().unwrap_or_default();
    if line.chars().count() <= MAX {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    }
}

fn cell_view(row: usize, col: usize, c: &Cell) -> CellView {
    let note = match (&c.test.observed, c.test.status.problem()) {
        (None, Some(p)) => Some(note(&p.message)),
        _ => None,
    };
    CellView {
        class: status_class(&c.test.status),
        text: c.text(),
        note,
        anchor: anchor(row, col),
    }
}

fn detail_view(
    summary: &Summary,
    kernel: &str,
    r: &Row,
    row: usize,
    col: usize,
) -> Option<DetailView> {
    let c = r.cells.get(col)?.as_ref()?;
    let t = c.test;
    let report = &summary.reports[c.report];
    let problem = t.status.problem();
    Some(DetailView {
        anchor: anchor(row, col),
        name: format!("{}::{}", r.file, r.test),
        kernel: kernel.to_string(),
        status: t.status.label(),
        location: t.location.to_string(),
        duration: format!("{:.3}", t.duration.as_secs_f64()),
        observed: t.observed.clone(),
        reason: match &t.status {
            Status::Skipped { reason, .. } | Status::NotRun { reason } => Some(reason.clone()),
            _ => None,
        },
        message: problem.map(|p| p.message.clone()),
        at: problem
            .and_then(|p| p.location.as_ref())
            .map(|l| l.to_string()),
        detail: problem.map(|p| p.detail.clone()).filter(|d| !d.is_empty()),
        console: problem.and_then(|p| p.console.as_ref()).map(|c| c.render()),
        output: Some(t.output.clone()).filter(|o| !o.is_empty()),
        vm: report.vms.first().map(|vm| {
            let mut s = format!("{} · {} · {}", vm.kernel_release, vm.accel, vm.transport);
            if let Some(f) = &vm.fixture {
                s.push_str(&format!(" · fixture {f}"));
            }
            s
        }),
    })
}

/// The page for a finished run: rows that differ between kernels first, then rows that failed
/// somewhere, then the rest, each group in run order.
pub fn page(summary: &Summary) -> String {
    let m = Matrix::new(summary);
    let several = m.kernels.len() > 1;
    let bad_row = |r: &Row| r.cells.iter().flatten().any(Cell::is_bad);
    let mut order: Vec<usize> = (0..m.rows.len()).collect();
    order.sort_by_key(|&i| {
        let r = &m.rows[i];
        (!(several && r.differs), !bad_row(r))
    });
    let mut kernels: Vec<KernelColumn> = m
        .kernels
        .iter()
        .map(|k| KernelColumn {
            name: k.clone(),
            counts: Counts::default(),
        })
        .collect();
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for (shown, &i) in order.iter().enumerate() {
        let r = &m.rows[i];
        for (col, cell) in r.cells.iter().enumerate() {
            if let Some(c) = cell {
                let mut one = crate::event::FileReport::default();
                one.tests.push(c.test.clone());
                kernels[col].counts.add(one.counts());
            }
            if let Some(d) = detail_view(summary, &m.kernels[col], r, shown, col) {
                details.push(d);
            }
        }
        rows.push(RowView {
            name: format!("{}::{}", r.file, r.test),
            differs: several && r.differs,
            bad: bad_row(r),
            cells: r
                .cells
                .iter()
                .enumerate()
                .map(|(col, c)| c.as_ref().map(|c| cell_view(shown, col, c)))
                .collect(),
        });
    }
    let view = PageView {
        version: crate::event::PROVIUM_VERSION,
        started: chrono::DateTime::from_timestamp(summary.started_at as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        duration: format!("{:.1}", summary.duration.as_secs_f64()),
        success: summary.is_success(),
        counts: summary.counts,
        differing: if several { m.differing().count() } else { 0 },
        incomplete: if several { m.incomplete() } else { 0 },
        bad: rows.iter().filter(|r| r.bad).count(),
        kernels,
        rows,
        details,
    };
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let rendered = env
        .add_template("report.html", TEMPLATE)
        .and_then(|()| env.get_template("report.html"))
        .and_then(|t| t.render(minijinja::value::Serde(&view)));
    match rendered {
        Ok(html) => html,
        // The template is part of the binary and tested; should it fail, the page says so.
        Err(e) => format!(
            "<!DOCTYPE html><html><body><p>Provium could not render this report: {}</p></body></html>",
            html_escape::encode_text(&e.to_string())
        ),
    }
}

/// The HTML reporter: writes the page when the run ends (an interrupted run too).
pub struct HtmlFile {
    path: std::path::PathBuf,
    write: super::WriteFile,
    result: anyhow::Result<()>,
}

impl HtmlFile {
    pub fn new(path: &std::path::Path, write: super::WriteFile) -> HtmlFile {
        HtmlFile {
            path: path.to_path_buf(),
            write,
            result: Ok(()),
        }
    }
}

impl Reporter for HtmlFile {
    fn report(&mut self, event: &RunEvent) {
        if let RunEvent::RunFinished { summary } = event {
            self.result = (self.write)(&self.path, page(summary).as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path.display()));
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        std::mem::replace(&mut self.result, Ok(()))
    }
}
