//! `--format ktap`: KTAP version 1, the format of kselftest and KUnit, so that kernel CI systems
//! that read KTAP (KernelCI, LKFT, the kernel's own `kunit.py parse`) take Provium's results
//! unchanged.
//!
//! One subtest per file, one result line per test, in plan order:
//!
//! ```text
//! KTAP version 1
//! 1..2
//! # provium 0.1.0
//!   KTAP version 1
//!   # Subtest: specs/close.yaml
//!   1..3
//!   ok 1 close(-1) is EBADF
//!   # expected EBADF, got 0 (specs/close.yaml:13)
//!   not ok 2 close(9999) is EBADF
//!   ok 3 needs 6.2 # SKIP kernel 6.1.0 is not >=6.2
//! not ok 1 specs/close.yaml
//! ```
//!
//! | Provium | KTAP |
//! |---|---|
//! | passed | `ok N name` |
//! | failed | `not ok N name`, the message, location and detail as diagnostic lines before it |
//! | errored | `not ok N name # ERROR message` (`# TIMEOUT` for a timeout), diagnostics before it |
//! | skipped, todo | `ok N name # SKIP reason` (`todo: reason`): neither fails a run |
//! | xfail | `ok N name # XFAIL reason` |
//! | not run | `not ok N name # ERROR not run: reason`: a test never reached fails the run |
//!
//! A description cannot contain `#` (it starts the directive): a `#` in a name is written as
//! `＃` (U+FF03), and line breaks as spaces.

use super::Reporter;
use crate::event::{ConsoleEvent, FileReport, Problem, RunEvent, SkipKind, Status, TestReport};
use std::io::Write;

pub struct Ktap<W: Write> {
    out: W,
    files: Vec<String>,
    next: usize,
}

impl Ktap<std::io::Stdout> {
    pub fn stdout() -> Self {
        Ktap::new(std::io::stdout())
    }
}

impl<W: Write> Ktap<W> {
    pub fn new(out: W) -> Self {
        Ktap {
            out,
            files: Vec::new(),
            next: 0,
        }
    }

    fn lines(&mut self, lines: &[String]) {
        for l in lines {
            let _ = writeln!(self.out, "{l}");
        }
        let _ = self.out.flush();
    }
}

/// A description: no `#`, no line breaks.
fn description(name: &str) -> String {
    name.replace('#', "\u{FF03}")
        .replace(['\n', '\r'], " ")
        .trim()
        .to_string()
}

/// Diagnostic lines (`# …`) at `indent`.
fn diagnostics(indent: &str, text: &str, out: &mut Vec<String>) {
    for l in text.lines() {
        out.push(format!("{indent}# {l}").trim_end().to_string());
    }
}

fn problem_diagnostics(indent: &str, p: &Problem, out: &mut Vec<String>) {
    match &p.location {
        Some(l) => diagnostics(indent, &format!("{} ({l})", p.message), out),
        None => diagnostics(indent, &p.message, out),
    }
    diagnostics(indent, &p.detail, out);
    if let Some(c) = &p.console {
        diagnostics(indent, &c.render(), out);
    }
}

/// The result line of one test, with its diagnostics before it.
fn test_lines(n: usize, t: &TestReport, out: &mut Vec<String>) {
    const I: &str = "  ";
    let name = description(&t.name);
    let one_line = |s: &str| description(s.lines().next().unwrap_or(""));
    let line = match &t.status {
        Status::Passed => format!("{I}ok {n} {name}"),
        Status::Failed(p) => {
            problem_diagnostics(I, p, out);
            diagnostics(I, &t.output, out);
            format!("{I}not ok {n} {name}")
        }
        Status::Errored(p) => {
            problem_diagnostics(I, p, out);
            diagnostics(I, &t.output, out);
            let directive = match p.console.as_ref().map(|c| c.event) {
                Some(ConsoleEvent::TimedOut) => "TIMEOUT",
                _ => "ERROR",
            };
            format!(
                "{I}not ok {n} {name} # {directive} {}",
                one_line(&p.message)
            )
        }
        Status::Skipped { reason, kind } => match kind {
            SkipKind::Skip => format!("{I}ok {n} {name} # SKIP {}", one_line(reason)),
            SkipKind::Todo => format!("{I}ok {n} {name} # SKIP todo: {}", one_line(reason)),
            SkipKind::Xfail => format!("{I}ok {n} {name} # XFAIL {}", one_line(reason)),
        },
        Status::NotRun { reason } => {
            format!("{I}not ok {n} {name} # ERROR not run: {}", one_line(reason))
        }
    };
    out.push(line.trim_end().to_string());
}

/// A file as a subtest: its tests, then its own result line.
fn file_lines(n: usize, path: &str, report: &FileReport) -> Vec<String> {
    let name = description(path);
    let count = report.tests.len() + usize::from(report.file_error.is_some());
    let mut out = vec![
        "  KTAP version 1".to_string(),
        format!("  # Subtest: {name}"),
        format!("  1..{count}"),
    ];
    for (i, t) in report.tests.iter().enumerate() {
        test_lines(i + 1, t, &mut out);
    }
    if let Some(p) = &report.file_error {
        problem_diagnostics("  ", p, &mut out);
        out.push(format!(
            "  not ok {count} (file) # ERROR {}",
            description(p.message.lines().next().unwrap_or(""))
        ));
    }
    out.push(if count == 0 {
        format!("ok {n} {name} # SKIP no tests")
    } else if report.is_bad() {
        format!("not ok {n} {name}")
    } else {
        format!("ok {n} {name}")
    });
    out
}

impl<W: Write> Reporter for Ktap<W> {
    fn report(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { files, .. } => {
                self.files = files.iter().map(|f| f.display()).collect();
                let header = vec![
                    "KTAP version 1".to_string(),
                    format!("1..{}", files.len()),
                    format!("# provium {}", env!("CARGO_PKG_VERSION")),
                ];
                self.lines(&header);
            }
            RunEvent::FileFinished { file, report } => {
                self.next += 1;
                let path = self.files.get(*file).cloned().unwrap_or_default();
                let lines = file_lines(self.next, &path, report);
                self.lines(&lines);
            }
            RunEvent::RunFinished { summary } => {
                let c = summary.counts;
                let mut line = format!(
                    "# {} passed, {} failed, {} errored, {} skipped, {} not run",
                    c.passed, c.failed, c.errored, c.skipped, c.not_run
                );
                if let Some(i) = summary.interrupted {
                    line.push_str(&format!("; interrupted by {}", i.name()));
                }
                self.lines(&[line]);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_the_line_format() {
        assert_eq!(description("a # b\nc"), "a ＃ b c");
        let t = TestReport {
            name: "x".into(),
            location: crate::event::Location {
                file: "f".into(),
                line: 1,
            },
            status: Status::Errored(Problem::new("boom\nmore")),
            duration: Default::default(),
            output: "printed\n".into(),
            observed: None,
        };
        let mut out = Vec::new();
        test_lines(1, &t, &mut out);
        assert_eq!(
            out,
            [
                "  # boom",
                "  # more",
                "  # printed",
                "  not ok 1 x # ERROR boom"
            ]
        );
    }
}
