//! JUnit XML, as Jenkins, GitLab and GitHub test reporters read it.
//!
//! quick-junit (cargo-nextest's writer) rather than junit-report: it has suite `<properties>`,
//! suite-level `skipped` counts, extra attributes for `file` and `line` on test cases, and a
//! reader that `provium junit merge` uses. Its string cleaning is undone by [`text`], so output
//! stays byte-faithful.
//!
//! - one `<testsuite>` per file, named by the spec's `suite:` (the path otherwise), with the
//!   path in a `file` property;
//! - one `<testcase>` per test; `classname` is the file's path written as a dotted class name
//!   (`specs/open.yaml` → `specs.open_yaml`), because Jenkins splits a classname at its last
//!   `.` into package and class: the file's directory becomes the package, the file the class,
//!   and GitLab and GitHub reporters show it as written. The exact path is in `file`;
//! - `<failure>` for assertion failures, `<error>` for errors and crashes (with the traceback as
//!   the element text), `<skipped>` with the reason: a `todo` is marked `todo:` and has a
//!   `todo` property value in its type, a test never reached says `not run:` and why;
//! - the guest console excerpt of a panic, a BUG, a WARNING, a lost VM or a timeout on the
//!   test case that was running, in its `<system-out>` under a heading that says what happened;
//! - suite properties: kernel release, arch, accelerator, transport, profile, machine;
//! - an error outside any test is a test case named `(file)` with an `<error>`.

mod merge;
mod text;

pub use merge::merge;

use super::{Reporter, WriteFile};
use crate::event::{FileReport, Problem, RunEvent, SkipKind, Status, Summary};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

pub fn report(summary: &Summary) -> Report {
    let mut report = Report::new("provium");
    report.set_time(summary.duration);
    if let Some(ts) = timestamp(summary.started_at) {
        report.set_timestamp(ts);
    }
    for file in &summary.reports {
        report.add_test_suite(suite(file));
    }
    report
}

/// The class name dashboards group a file's tests under (see the module's documentation).
pub fn classname(path: &str) -> String {
    let path = path.trim_start_matches("./");
    path.split('/')
        .filter(|part| !part.is_empty())
        .map(|part| part.replace('.', "_"))
        .collect::<Vec<_>>()
        .join(".")
}

fn problem_status(kind: NonSuccessKind, ty: &str, p: &Problem) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    let mut message = match &p.location {
        Some(l) => format!("{} ({l})", p.message),
        None => p.message.clone(),
    };
    if let Some(c) = &p.console {
        // The runner leads a problem with the kernel's own line (`Kernel panic - not syncing:
        // …`); a problem made elsewhere gets at least what the kernel reported.
        let event = c.event.to_string().to_lowercase();
        if c.event.is_kernel() && !message.to_lowercase().contains(&event) {
            message = format!("{}: {message}", c.event);
        }
    }
    status.set_message(text::protect(&message));
    status.set_type(ty);
    let mut body = p.message.clone();
    if let Some(l) = &p.location {
        body.push_str(&format!("\nat {l}"));
    }
    if !p.detail.is_empty() {
        body.push('\n');
        body.push_str(&p.detail);
    }
    if let Some(c) = &p.console {
        body.push('\n');
        body.push_str(&c.render());
    }
    status.set_description(text::protect(&body));
    status
}

fn status(s: &Status) -> TestCaseStatus {
    match s {
        Status::Passed => TestCaseStatus::success(),
        Status::Failed(p) => problem_status(NonSuccessKind::Failure, "assertion", p),
        Status::Errored(p) => problem_status(NonSuccessKind::Error, "error", p),
        Status::Skipped { reason, kind } => {
            let mut st = TestCaseStatus::skipped();
            let (ty, message) = match kind {
                SkipKind::Skip => ("skip", reason.clone()),
                SkipKind::Todo => ("todo", format!("todo: {reason}")),
                SkipKind::Xfail => ("xfail", format!("xfail: {reason}")),
            };
            st.set_type(ty);
            st.set_message(text::protect(&message));
            st
        }
        Status::NotRun { reason } => {
            let mut st = TestCaseStatus::skipped();
            st.set_type("not_run");
            st.set_message(text::protect(&format!("not run: {reason}")));
            st
        }
    }
}

/// What a test case's `<system-out>` shows: the test's output, then the console excerpt.
fn system_out(output: &str, problem: Option<&Problem>) -> Option<String> {
    let mut out = output.to_string();
    if let Some(c) = problem.and_then(|p| p.console.as_ref()) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&c.render());
    }
    (!out.is_empty()).then(|| text::protect(&out))
}

fn suite(file: &FileReport) -> TestSuite {
    let name = if file.suite.is_empty() {
        &file.path
    } else {
        &file.suite
    };
    // On several kernels the same test is distinct per kernel, by name (dashboards such as
    // GitLab keep only the first of equal names).
    let on_kernel = |s: &str| match &file.kernel {
        Some(k) => format!("{s} [{k}]"),
        None => s.to_string(),
    };
    let mut suite = TestSuite::new(text::protect(&on_kernel(name)));
    suite.set_time(file.duration);
    if let Some(ts) = timestamp(file.started_at) {
        suite.set_timestamp(ts);
    }
    suite.add_property(Property::new("file", text::protect(&file.path)));
    if !file.queued.is_zero() {
        // The suite's time includes it; no test's time does.
        suite.add_property(Property::new(
            "queued.ms",
            file.queued.as_millis().to_string(),
        ));
    }
    if let Some(k) = &file.kernel {
        suite.add_property(Property::new("kernel", text::protect(k)));
    }
    if let Some(vm) = file.vms.first() {
        suite.add_properties([
            Property::new("kernel.release", vm.kernel_release.as_str()),
            Property::new("arch", vm.arch.as_str()),
            Property::new("accelerator", vm.accel.as_str()),
            Property::new("transport", vm.transport.as_str()),
            Property::new("profile", vm.profile.as_str()),
            Property::new("machine", vm.machine.as_str()),
            Property::new("boot.ms", vm.boot_ms.to_string()),
        ]);
        if let Some(f) = &vm.fixture {
            suite.add_property(Property::new("fixture", f.as_str()));
        }
    }
    let class = classname(&file.path);
    let mut console_shown = false;
    for t in &file.tests {
        let mut case = TestCase::new(text::protect(&on_kernel(&t.name)), status(&t.status));
        case.set_classname(class.as_str());
        case.set_time(t.duration);
        case.extra
            .insert("file".into(), text::protect(&t.location.file).into());
        case.extra
            .insert("line".into(), t.location.line.to_string().into());
        let problem = t.status.problem();
        console_shown |= problem.is_some_and(|p| p.console.is_some());
        if let Some(out) = system_out(&t.output, problem) {
            case.set_system_out(out);
        }
        suite.add_test_case(case);
    }
    if let Some(p) = &file.file_error {
        let mut case = TestCase::new(
            on_kernel("(file)"),
            problem_status(NonSuccessKind::Error, "error", p),
        );
        case.set_classname(class.as_str());
        case.set_time(Duration::ZERO);
        case.extra
            .insert("file".into(), text::protect(&file.path).into());
        let line = p.location.as_ref().map(|l| l.line).unwrap_or(0);
        case.extra.insert("line".into(), line.to_string().into());
        console_shown |= p.console.is_some();
        if let Some(out) = system_out("", Some(p)) {
            case.set_system_out(out);
        }
        suite.add_test_case(case);
    }
    let mut out = file.output.clone();
    if let (Some(console), false) = (&file.console, console_shown) {
        // A console no test case shows (a VM lost between tests) stays with the suite.
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("--- guest console (tail) ---\n");
        out.push_str(console);
    }
    if !out.is_empty() {
        suite.set_system_out(text::protect(&out));
    }
    suite
}

fn timestamp(unix: u64) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::from_timestamp(unix as i64, 0).map(|t| t.fixed_offset())
}

/// Writes `report` to `path` through `write` (the command's way of writing a file it was given).
pub fn write_report(
    report: &Report,
    path: &std::path::Path,
    write: WriteFile,
) -> anyhow::Result<()> {
    let xml = report
        .to_string()
        .map_err(|e| anyhow::anyhow!("serializing JUnit XML: {e}"))?;
    write(path, text::restore(&xml).as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// The JUnit reporter: writes the report when the run ends (an interrupted run too).
pub struct JunitFile {
    path: std::path::PathBuf,
    write: WriteFile,
    result: anyhow::Result<()>,
}

impl JunitFile {
    pub fn new(path: &std::path::Path, write: WriteFile) -> JunitFile {
        JunitFile {
            path: path.to_path_buf(),
            write,
            result: Ok(()),
        }
    }
}

impl Reporter for JunitFile {
    fn report(&mut self, event: &RunEvent) {
        if let RunEvent::RunFinished { summary } = event {
            self.result = write_report(&report(summary), &self.path, self.write);
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        std::mem::replace(&mut self.result, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_write(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, data)
    }
    use crate::event::{Location, TestReport};

    fn file(path: &str, tests: &[(&str, Status)]) -> FileReport {
        FileReport {
            path: path.into(),
            tests: tests
                .iter()
                .map(|(name, status)| TestReport {
                    name: name.to_string(),
                    location: Location {
                        file: path.into(),
                        line: 1,
                    },
                    status: status.clone(),
                    duration: Duration::from_millis(3),
                    output: String::new(),
                    observed: None,
                })
                .collect(),
            duration: Duration::from_millis(10),
            ..Default::default()
        }
    }

    fn failed() -> Status {
        Status::Failed(Problem::new("expected 1, got 2"))
    }

    #[test]
    fn every_outcome_kind_is_shown_where_dashboards_look() {
        use crate::event::{ConsoleEvent, ConsoleExcerpt};
        let panic = Status::Errored(Problem {
            console: Some(ConsoleExcerpt {
                event: ConsoleEvent::KernelPanic,
                text: "[ 1.0] Kernel panic - not syncing: Fatal exception".into(),
            }),
            ..Problem::new("vm:call: the VM was lost")
        });
        let mut f = file(
            "specs/open.yaml",
            &[
                ("passes", Status::Passed),
                ("fails", failed()),
                ("panics", panic),
                (
                    "later",
                    Status::Skipped {
                        reason: "write it".into(),
                        kind: SkipKind::Todo,
                    },
                ),
                (
                    "never",
                    Status::NotRun {
                        reason: "the VM was lost".into(),
                    },
                ),
            ],
        );
        f.suite = "open and openat".into();
        f.tests[0].output = "col1\tcol2\r\n".into();
        let summary = Summary {
            reports: vec![f],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xml");
        write_report(&report(&summary), &path, plain_write).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(
            xml.contains(r#"<testsuite name="open and openat""#),
            "{xml}"
        );
        assert!(xml.contains(r#"classname="specs.open_yaml""#), "{xml}");
        assert!(xml.contains("col1&#9;col2&#13;"), "{xml}");
        assert!(
            xml.contains("kernel panic: vm:call: the VM was lost"),
            "{xml}"
        );
        assert!(xml.contains("--- kernel panic: guest console ---"), "{xml}");
        assert!(
            xml.contains(r#"message="todo: write it" type="todo""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"message="not run: the VM was lost" type="not_run""#),
            "{xml}"
        );
        // Merging keeps the bytes.
        let merged = merge(&[path]).unwrap();
        let again = dir.path().join("m.xml");
        write_report(&merged, &again, plain_write).unwrap();
        let xml2 = std::fs::read_to_string(&again).unwrap();
        assert!(xml2.contains("col1&#9;col2&#13;"), "{xml2}");
        assert_eq!(classname("./a/b.c/d.lua"), "a.b_c.d_lua");
    }

    #[test]
    fn merging_shards_gives_one_sorted_report_with_summed_counts() {
        let dir = tempfile::tempdir().unwrap();
        let shard = |name: &str, files: Vec<FileReport>| {
            let summary = Summary {
                reports: files,
                duration: Duration::from_secs(1),
                ..Default::default()
            };
            let path = dir.path().join(name);
            write_report(&report(&summary), &path, plain_write).unwrap();
            path
        };
        let a = shard(
            "a.xml",
            vec![file("b.lua", &[("x", Status::Passed), ("y", failed())])],
        );
        let b = shard(
            "b.xml",
            vec![
                file("a.lua", &[("z", Status::Passed)]),
                file("c.lua", &[("s", Status::skipped("needs 6.2"))]),
            ],
        );
        let merged = merge(&[a, b]).unwrap();
        let names: Vec<&str> = merged.test_suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.lua", "b.lua", "c.lua"]);
        assert_eq!(
            (merged.tests, merged.failures, merged.errors, merged.skipped),
            (4, 1, 0, 1)
        );
        let text = merged.to_string().unwrap();
        assert!(text.contains("expected 1, got 2"), "{text}");
    }

    #[test]
    fn a_file_that_is_not_junit_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.xml");
        std::fs::write(&bad, "not xml at all").unwrap();
        let e = merge(&[bad]).unwrap_err().to_string();
        assert!(e.contains("bad.xml"), "{e}");
    }
}
