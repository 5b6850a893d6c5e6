//! The human reporter: a line per test with status and time, failures with expected/actual and
//! `file:line`, and a summary. Colour only on a terminal (`NO_COLOR` honoured); a spinner while a
//! VM boots.

use crate::cli::style::{paint, BOLD, DIM, FAIL, OK, WARN};
use crate::run::discover::TestFile;
use crate::run::model::{FileReport, Problem, Status, TestReport};
use crate::run::{Reporter, Summary};
use anstyle::Style;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::time::Duration;

pub struct Terminal {
    out: anstream::AutoStream<std::io::Stdout>,
    verbose: bool,
    spinner: Option<ProgressBar>,
    show_progress: bool,
}

impl Terminal {
    pub fn new(verbose: bool) -> Terminal {
        use std::io::IsTerminal;
        Terminal {
            out: anstream::stdout(),
            verbose,
            spinner: None,
            show_progress: std::io::stderr().is_terminal(),
        }
    }

    fn line(&mut self, text: &str) {
        if let Some(s) = &self.spinner {
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
    }
}

fn status_style(s: &Status) -> Style {
    match s {
        Status::Passed => OK,
        Status::Failed(_) | Status::Errored(_) => FAIL,
        Status::Skipped { .. } => WARN,
    }
}

fn time(d: Duration) -> String {
    format!("[{:>8.3}s]", d.as_secs_f64())
}

impl Reporter for Terminal {
    fn run_started(&mut self, files: &[TestFile]) {
        let n = files.len();
        self.line(&format!(
            "{} {n} file{}",
            paint(OK, "    Starting"),
            if n == 1 { "" } else { "s" }
        ));
    }

    fn boot_started(&mut self, file: &TestFile, profile: &str) {
        if !self.show_progress {
            return;
        }
        let s = ProgressBar::new_spinner();
        s.set_style(
            ProgressStyle::with_template("     {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        s.set_message(format!("booting `{profile}` for {}", file.display));
        s.enable_steady_tick(Duration::from_millis(100));
        self.spinner = Some(s);
    }

    fn boot_finished(&mut self, _file: &TestFile) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }

    fn test_finished(&mut self, file: &TestFile, t: &TestReport) {
        let status = paint(
            status_style(&t.status),
            &format!("{:>12}", t.status.label()),
        );
        let mut line = format!(
            "{status} {} {}::{}",
            time(t.duration),
            paint(DIM, &file.display),
            paint(BOLD, &t.name)
        );
        if let Status::Skipped { reason } = &t.status {
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

    fn output(&mut self, file: &TestFile, text: &str) {
        for l in text.lines() {
            let line = format!("{} {l}", paint(DIM, &format!("{}>", file.display)));
            self.line(&line);
        }
    }

    fn file_finished(&mut self, file: &TestFile, report: &FileReport) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
        if let Some(p) = &report.file_error {
            let status = paint(FAIL, &format!("{:>12}", "ERROR"));
            self.line(&format!(
                "{status} {} {}",
                time(report.duration),
                paint(BOLD, &file.display)
            ));
            let p = p.clone();
            self.problem(&p);
        }
        if report.is_bad() {
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
        if s.not_run > 0 {
            parts.push(paint(
                WARN,
                &format!(
                    "{} file{} not run (--fail-fast)",
                    s.not_run,
                    if s.not_run == 1 { "" } else { "s" }
                ),
            ));
        }
        let label = if s.is_success() {
            paint(OK, "     Summary")
        } else {
            paint(FAIL, "     Summary")
        };
        self.line(&format!(
            "{label} {} {} test{} run: {}",
            time(s.duration),
            c.run(),
            if c.run() == 1 { "" } else { "s" },
            parts.join(", ")
        ));
        for r in &s.reports {
            if let Some(p) = &r.file_error {
                let loc = p
                    .location
                    .as_ref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{} {}{loc}",
                    paint(FAIL, &format!("{:>12}", "ERROR")),
                    r.path
                ));
            }
            for t in r.tests.iter().filter(|t| t.status.is_bad()) {
                self.line(&format!(
                    "{} {}::{} {}",
                    paint(FAIL, &format!("{:>12}", t.status.label())),
                    r.path,
                    t.name,
                    paint(
                        DIM,
                        &format!(
                            "({})",
                            match &t.status {
                                Status::Failed(p) | Status::Errored(p) => p
                                    .location
                                    .as_ref()
                                    .map(|l| l.to_string())
                                    .unwrap_or_else(|| t.location.to_string()),
                                _ => String::new(),
                            }
                        )
                    )
                ));
            }
        }
    }
}
