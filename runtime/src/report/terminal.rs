//! The human reporter: a line per test with status and time, failures with expected/actual and
//! `file:line`, and a summary. Colour only on a terminal (`NO_COLOR` honoured); a spinner while a
//! VM boots. Writes to a closed terminal are dropped: the run and its other reports go on.

use super::Reporter;
use crate::event::{
    ConsoleEvent, FileReport, PlannedFile, Problem, RunEvent, Status, Summary, TestReport,
};
use crate::report::style::{paint, BOLD, DIM, FAIL, OK, WARN};
use anstyle::Style;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

pub struct Terminal {
    out: anstream::AutoStream<std::io::Stdout>,
    verbose: bool,
    /// On a terminal: one line under the results with tests done of the planned total, what
    /// is happening now (a boot) and the time so far.
    progress: Option<ProgressBar>,
    show_progress: bool,
    files: Vec<PlannedFile>,
    /// Tests of the current file already shown as they finished.
    shown: HashSet<String>,
    /// The terminal's width, when stdout is one (tables fit it).
    columns: Option<usize>,
}

impl Terminal {
    pub fn new(verbose: bool) -> Terminal {
        use std::io::IsTerminal;
        Terminal {
            out: anstream::stdout(),
            verbose,
            progress: None,
            show_progress: std::io::stderr().is_terminal(),
            files: Vec::new(),
            shown: HashSet::new(),
            columns: std::io::stdout()
                .is_terminal()
                .then(|| terminal_size::terminal_size().map(|(w, _)| w.0 as usize))
                .flatten(),
        }
    }

    fn line(&mut self, text: &str) {
        if let Some(s) = &self.progress {
            s.suspend(|| {
                let _ = writeln!(self.out, "{text}");
            });
        } else {
            let _ = writeln!(self.out, "{text}");
        }
    }

    fn problem(&mut self, p: &Problem) {
        let indent = "            ";
        self.line(&format!("{indent}{}", paint(BOLD, &p.message)));
        if let Some(l) = &p.location {
            self.line(&format!("{indent}{} {l}", paint(DIM, "at")));
        }
        for l in p.detail.lines() {
            self.line(&format!("{indent}{}", paint(DIM, l)));
        }
        if let Some(c) = &p.console {
            for l in c.render().lines() {
                self.line(&format!("{indent}{}", paint(DIM, l)));
            }
        }
    }

    /// The file as shown: its path, with its kernel in a run over several.
    fn path(&self, file: usize) -> String {
        self.files
            .get(file)
            .map(|f| f.display())
            .unwrap_or_default()
    }

    /// Counts `n` more tests done.
    fn advance(&mut self, n: usize) {
        if let Some(p) = &self.progress {
            p.inc(n as u64);
        }
    }

    fn set_activity(&mut self, what: String) {
        if let Some(p) = &self.progress {
            p.set_message(what);
        }
    }

    fn stop_progress(&mut self) {
        if let Some(p) = self.progress.take() {
            p.finish_and_clear();
        }
    }

    fn run_started(&mut self, n: usize) {
        self.line(&format!(
            "{} {n} file{}",
            paint(OK, "    Starting"),
            if n == 1 { "" } else { "s" }
        ));
        if !self.show_progress {
            return;
        }
        let total: usize = self.files.iter().map(|f| f.tests.len()).sum();
        let p = ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        p.set_style(
            ProgressStyle::with_template("     {spinner} [{pos}/{len}] {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        p.enable_steady_tick(Duration::from_millis(100));
        self.progress = Some(p);
    }

    fn boot_started(&mut self, file: usize, what: &str) {
        let path = self.path(file);
        self.set_activity(format!("booting {what} for {path}"));
    }

    fn test_finished(&mut self, file: usize, t: &TestReport) {
        self.shown.insert(t.name.clone());
        self.advance(1);
        let status = paint(
            status_style(&t.status),
            &format!("{:>12}", t.status.label()),
        );
        let mut line = format!(
            "{status} {} {}::{}",
            time(t.duration),
            paint(DIM, &self.path(file)),
            paint(BOLD, &t.name)
        );
        if let Status::Skipped { reason, .. } | Status::NotRun { reason } = &t.status {
            line.push_str(&format!(" {}", paint(DIM, &format!("({reason})"))));
        }
        self.line(&line);
        match &t.status {
            Status::Failed(p) | Status::Errored(p) => {
                let p = p.clone();
                self.problem(&p);
                if !t.output.is_empty() {
                    self.line(&format!("            {}", paint(DIM, "--- output ---")));
                    for l in t.output.lines() {
                        self.line(&format!("            {l}"));
                    }
                }
            }
            Status::Passed if self.verbose && !t.output.is_empty() => {
                for l in t.output.lines() {
                    self.line(&format!("            {}", paint(DIM, l)));
                }
            }
            _ => {}
        }
    }

    fn output(&mut self, file: usize, text: &str) {
        let prefix = paint(DIM, &format!("{}>", self.path(file)));
        for l in text.lines() {
            self.line(&format!("{prefix} {l}"));
        }
    }

    fn file_finished(&mut self, file: usize, report: &FileReport) {
        self.set_activity(String::new());
        // Tests the runner completed the report with (never reached, or a test that was
        // running when the file was stopped).
        let late: Vec<TestReport> = report
            .tests
            .iter()
            .filter(|t| !self.shown.contains(&t.name))
            .cloned()
            .collect();
        for t in &late {
            self.test_finished(file, t);
        }
        // A test shown as it ended, then found to be the one running when its file timed out:
        // where the VM was then (its task dump) is shown now.
        let late_names: HashSet<&str> = late.iter().map(|t| t.name.as_str()).collect();
        for t in report
            .tests
            .iter()
            .filter(|t| !late_names.contains(t.name.as_str()))
        {
            if let Some(c) = t.status.problem().and_then(|p| p.console.as_ref()) {
                if c.event == ConsoleEvent::TimedOut {
                    self.line(&format!(
                        "{} {}",
                        paint(FAIL, &format!("{:>12}", "TIMED OUT")),
                        paint(BOLD, &format!("{}::{}", self.path(file), t.name))
                    ));
                    for l in c.render().lines() {
                        self.line(&format!("            {}", paint(DIM, l)));
                    }
                }
            }
        }
        self.shown.clear();
        if let Some(p) = &report.file_error {
            let status = paint(FAIL, &format!("{:>12}", "ERROR"));
            let shown = self.path(file);
            self.line(&format!(
                "{status} {} {}",
                time(report.duration),
                paint(BOLD, &shown)
            ));
            let p = p.clone();
            self.problem(&p);
        }
        for vm in &report.vms {
            if let Some(dir) = &vm.run_dir {
                self.line(&format!(
                    "{} {dir} {}",
                    paint(WARN, &format!("{:>12}", "KEPT")),
                    paint(
                        DIM,
                        &format!("({}: its console.log and sockets)", report.path)
                    )
                ));
                if report.is_bad() {
                    // The VM is gone; a fresh one of the same profile and kernel is one command.
                    let kernel = report
                        .kernel
                        .as_deref()
                        .map(|k| format!(" --kernel {k}"))
                        .unwrap_or_default();
                    self.line(&format!(
                        "             {} provium shell --profile {}{kernel}",
                        paint(DIM, "to look around in a VM like it:"),
                        vm.profile
                    ));
                }
            }
        }
        let excerpt_shown = report
            .tests
            .iter()
            .filter_map(|t| t.status.problem())
            .chain(report.file_error.as_ref())
            .any(|p| p.console.is_some());
        if report.is_bad() && report.file_error.is_some() && !excerpt_shown {
            if let Some(console) = &report.console {
                self.line(&format!(
                    "            {}",
                    paint(DIM, "--- console tail ---")
                ));
                for l in console.lines() {
                    self.line(&format!("            {}", paint(DIM, l)));
                }
            }
        }
    }

    fn run_finished(&mut self, s: &Summary) {
        self.stop_progress();
        let c = s.counts;
        self.line("------------");
        let mut parts = vec![format!("{} passed", c.passed)];
        if c.failed > 0 {
            parts.push(paint(FAIL, &format!("{} failed", c.failed)));
        }
        if c.errored > 0 {
            parts.push(paint(FAIL, &format!("{} errored", c.errored)));
        }
        if c.skipped > 0 {
            parts.push(paint(WARN, &format!("{} skipped", c.skipped)));
        }
        if c.not_run > 0 {
            parts.push(paint(WARN, &format!("{} not run", c.not_run)));
        }
        let label = if s.is_success() {
            paint(OK, "     Summary")
        } else {
            paint(FAIL, "     Summary")
        };
        let mut line = format!(
            "{label} {} {} test{} run: {}",
            time(s.duration),
            c.run(),
            if c.run() == 1 { "" } else { "s" },
            parts.join(", ")
        );
        if let Some(i) = s.interrupted {
            line.push_str(&paint(FAIL, &format!(" (interrupted by {})", i.name())));
        }
        self.line(&line);
        for r in &s.reports {
            let shown = match &r.kernel {
                Some(k) => format!("{} [{k}]", r.path),
                None => r.path.clone(),
            };
            if let Some(p) = &r.file_error {
                let loc = p
                    .location
                    .as_ref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{} {shown}{loc}",
                    paint(FAIL, &format!("{:>12}", "ERROR")),
                ));
            }
            for t in r.tests.iter().filter(|t| t.status.is_bad()) {
                let at = t
                    .status
                    .problem()
                    .and_then(|p| p.location.as_ref())
                    .unwrap_or(&t.location)
                    .to_string();
                self.line(&format!(
                    "{} {shown}::{} {}",
                    paint(FAIL, &format!("{:>12}", t.status.label())),
                    t.name,
                    paint(DIM, &format!("({at})"))
                ));
            }
        }
        self.differences(s);
    }

    /// In a run over several kernels: the tests whose outcome differs, as a table.
    fn differences(&mut self, s: &Summary) {
        if !s.reports.iter().any(|r| r.kernel.is_some()) {
            return;
        }
        let m = super::matrix::Matrix::new(s);
        if m.kernels.len() < 2 {
            // `--kernel K` once picks a kernel; there is nothing to compare.
            return;
        }
        let rows: Vec<&super::matrix::Row> = m.differing().collect();
        // A column is a kernel, or a kernel under an ABI (`6.1.0-57-cloud-amd64 i386`).
        let columns = if m.kernels.iter().any(|k| k.ends_with(" i386")) {
            "kernels and ABIs"
        } else {
            "kernels"
        };
        self.line(&format!(
            "{} {} of {} tests differ between {} {columns}",
            paint(if rows.is_empty() { OK } else { WARN }, " Differences"),
            rows.len(),
            m.rows.len(),
            m.kernels.len()
        ));
        let incomplete = m.incomplete();
        if incomplete > 0 {
            self.line(&paint(
                DIM,
                &format!(
                    "             {incomplete} test{} did not run on every kernel and {} compared only where {} ran",
                    if incomplete == 1 { "" } else { "s" },
                    if incomplete == 1 { "is" } else { "are" },
                    if incomplete == 1 { "it" } else { "they" },
                ),
            ));
        }
        if rows.is_empty() {
            return;
        }
        const SHOWN: usize = 40;
        let shown: Vec<&super::matrix::Row> = rows.iter().take(SHOWN).copied().collect();
        let (head, body) = super::differences::lines(&m, &shown, self.columns);
        self.line(&paint(BOLD, &head));
        for line in body {
            self.line(&line);
        }
        if rows.len() > SHOWN {
            self.line(&paint(
                DIM,
                &format!(
                    "             … and {} more (--html FILE shows them all)",
                    rows.len() - SHOWN
                ),
            ));
        }
    }
}

impl Reporter for Terminal {
    fn report(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { files, .. } => {
                self.files = files.clone();
                self.run_started(files.len());
            }
            RunEvent::BootStarted { file, what } => self.boot_started(*file, what),
            RunEvent::BootFinished { file } => {
                let path = self.path(*file);
                self.set_activity(path);
            }
            RunEvent::Waiting { file, wait } => {
                // A line even without a terminal: a CI log must say why nothing happens.
                let line = format!(
                    "{} {} {}",
                    paint(WARN, &format!("{:>12}", "WAITING")),
                    self.path(*file),
                    paint(DIM, &wait.to_string())
                );
                self.line(&line);
                self.set_activity(format!("waiting for room: {}", self.path(*file)));
            }
            RunEvent::Building { file, fixture } => {
                // A line even without a terminal: a build takes seconds, once.
                let line = format!(
                    "{} {} {}",
                    paint(DIM, &format!("{:>12}", "BUILDING")),
                    self.path(*file),
                    paint(
                        DIM,
                        &format!(
                            "fixture `{fixture}` (booted and saved once; later files resume it)"
                        )
                    )
                );
                self.line(&line);
                self.set_activity(format!("building fixture {fixture}"));
            }
            RunEvent::TestFinished { file, test } => self.test_finished(*file, test),
            RunEvent::Output { file, text } => self.output(*file, text),
            RunEvent::FileFinished { file, report } => self.file_finished(*file, report),
            RunEvent::RunFinished { summary } => self.run_finished(summary),
            RunEvent::FileStarted { .. } | RunEvent::TestStarted { .. } => {}
        }
    }
}

fn status_style(s: &Status) -> Style {
    match s {
        Status::Passed => OK,
        Status::Failed(_) | Status::Errored(_) => FAIL,
        Status::Skipped { .. } | Status::NotRun { .. } => WARN,
    }
}

fn time(d: Duration) -> String {
    format!("[{:>8.3}s]", d.as_secs_f64())
}
