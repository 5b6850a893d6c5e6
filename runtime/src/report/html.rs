//! `--html FILE`: one self-contained page (no network, no external assets) with the run as a
//! matrix: rows are tests, columns kernels, each cell the outcome there (status and what the
//! kernel answered). Rows that differ between kernels come first and are highlighted; every cell
//! links to its details (message, `file:line`, console excerpt, output). On one kernel it is a
//! plain report a CI job can publish as an artifact.

use super::matrix::{Cell, Matrix, Row};
use super::Reporter;
use crate::event::{RunEvent, Status, Summary};
use html_escape::encode_text as esc;
use std::fmt::Write as _;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.meta { color: #555; margin-bottom: 1em; }
.counts span { margin-right: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
tr.differs td.test { border-left: 4px solid #d08000; font-weight: bold; }
tr.differs { background: #fff6e0; }
td.cell a { text-decoration: none; color: inherit; display: block; }
td.passed { background: #e3f6e3; }
td.failed, td.errored, td.not_run { background: #fbe0e0; }
td.skipped { background: #f0f0f0; color: #666; }
td.missing { background: repeating-linear-gradient(45deg,#fff,#fff 4px,#eee 4px,#eee 8px); }
.detail { border: 1px solid #ddd; margin: .8em 0; padding: .5em .8em; }
.detail:target { outline: 3px solid #d08000; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; white-space: pre-wrap; }
label { user-select: none; }
"#;

/// Hides the rows that agree when asked, and says how many rows are shown.
const SCRIPT: &str = r#"
const only = document.getElementById('only-differing');
function apply() {
  let shown = 0;
  for (const row of document.querySelectorAll('tbody tr')) {
    const hide = only.checked && !row.classList.contains('differs');
    row.hidden = hide;
    if (!hide) shown++;
  }
  document.getElementById('shown').textContent = shown;
}
only.addEventListener('change', apply);
apply();
"#;

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

fn cell_html(out: &mut String, row: usize, col: usize, cell: &Option<Cell>) {
    match cell {
        Some(c) => {
            let _ = write!(
                out,
                r##"<td class="cell {}"><a href="#{}">{}</a></td>"##,
                status_class(&c.test.status),
                anchor(row, col),
                esc(&c.text())
            );
        }
        None => out.push_str(r#"<td class="cell missing">-</td>"#),
    }
}

fn detail_html(out: &mut String, summary: &Summary, kernel: &str, r: &Row, row: usize, col: usize) {
    let Some(Some(c)) = r.cells.get(col) else {
        return;
    };
    let t = c.test;
    let report = &summary.reports[c.report];
    let _ = write!(
        out,
        r#"<div class="detail" id="{}"><h3>{}::{} <small>on {}</small></h3><p><b>{}</b> at {} ({:.3} s)"#,
        anchor(row, col),
        esc(r.file),
        esc(r.test),
        esc(kernel),
        esc(t.status.label()),
        esc(&t.location.to_string()),
        t.duration.as_secs_f64()
    );
    if let Some(seen) = &t.observed {
        let _ = write!(out, "; the kernel answered <code>{}</code>", esc(seen));
    }
    out.push_str("</p>");
    match &t.status {
        Status::Skipped { reason, .. } | Status::NotRun { reason } => {
            let _ = write!(out, "<p>{}</p>", esc(reason));
        }
        _ => {}
    }
    if let Some(p) = t.status.problem() {
        let _ = write!(out, "<p>{}", esc(&p.message));
        if let Some(l) = &p.location {
            let _ = write!(out, " <small>({})</small>", esc(&l.to_string()));
        }
        out.push_str("</p>");
        if !p.detail.is_empty() {
            let _ = write!(out, "<pre>{}</pre>", esc(&p.detail));
        }
        if let Some(console) = &p.console {
            let _ = write!(out, "<pre>{}</pre>", esc(&console.render()));
        }
    }
    if !t.output.is_empty() {
        let _ = write!(out, "<p>Output:</p><pre>{}</pre>", esc(&t.output));
    }
    if let Some(vm) = report.vms.first() {
        let _ = write!(
            out,
            "<p><small>{} · {} · {}{}</small></p>",
            esc(&vm.kernel_release),
            esc(&vm.accel),
            esc(&vm.transport),
            vm.fixture
                .as_deref()
                .map(|f| format!(" · fixture {}", esc(f)))
                .unwrap_or_default()
        );
    }
    out.push_str("</div>\n");
}

/// The page for a finished run.
pub fn page(summary: &Summary) -> String {
    let m = Matrix::new(summary);
    let differing = m.differing().count();
    let c = summary.counts;
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width\">");
    let _ = write!(
        out,
        "<title>Provium: {} tests on {} kernel{}</title><style>{STYLE}</style></head><body>",
        m.rows.len(),
        m.kernels.len(),
        if m.kernels.len() == 1 { "" } else { "s" }
    );
    let _ = write!(
        out,
        r#"<h1>Provium run</h1><div class="meta">{} · started {} · {:.1} s · {}</div>"#,
        esc(crate::event::PROVIUM_VERSION),
        chrono::DateTime::from_timestamp(summary.started_at as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        summary.duration.as_secs_f64(),
        if summary.is_success() {
            "success"
        } else {
            "failed"
        }
    );
    let _ = write!(
        out,
        r#"<div class="counts"><span id="passed">{} passed</span><span id="failed">{} failed</span><span id="errored">{} errored</span><span id="skipped">{} skipped</span><span id="not-run">{} not run</span></div>"#,
        c.passed, c.failed, c.errored, c.skipped, c.not_run
    );
    let _ = write!(
        out,
        r#"<p id="summary"><b id="differing">{differing}</b> of {} tests differ between the kernels. <label><input type="checkbox" id="only-differing"> only those</label> · <span id="shown"></span> rows shown</p>"#,
        m.rows.len()
    );
    out.push_str("<table id=\"matrix\"><thead><tr><th>test</th>");
    for k in &m.kernels {
        let _ = write!(out, "<th>{}</th>", esc(k));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (i, r) in m.rows.iter().enumerate() {
        let _ = write!(
            out,
            r#"<tr{}><td class="test">{}::{}</td>"#,
            if r.differs { " class=\"differs\"" } else { "" },
            esc(r.file),
            esc(r.test)
        );
        for (col, cell) in r.cells.iter().enumerate() {
            cell_html(&mut out, i, col, cell);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table><h2>Details</h2>\n");
    for (i, r) in m.rows.iter().enumerate() {
        for (col, k) in m.kernels.iter().enumerate() {
            detail_html(&mut out, summary, k, r, i, col);
        }
    }
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

/// The HTML reporter: writes the page when the run ends (an interrupted run too).
pub struct HtmlFile {
    path: std::path::PathBuf,
    result: anyhow::Result<()>,
}

impl HtmlFile {
    pub fn new(path: &std::path::Path) -> HtmlFile {
        HtmlFile {
            path: path.to_path_buf(),
            result: Ok(()),
        }
    }
}

impl Reporter for HtmlFile {
    fn report(&mut self, event: &RunEvent) {
        if let RunEvent::RunFinished { summary } = event {
            self.result = crate::machine::paths::write_output(&self.path, page(summary).as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", self.path.display()));
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        std::mem::replace(&mut self.result, Ok(()))
    }
}
