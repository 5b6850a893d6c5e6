//! JUnit XML, as Jenkins, GitLab and GitHub test reporters read it.
//!
//! quick-junit (cargo-nextest's writer) rather than junit-report: it has suite `<properties>`,
//! suite-level `skipped` counts, extra attributes for `file` and `line` on test cases, and a
//! reader that `provium junit merge` uses.
//!
//! - one `<testsuite>` per file, named by its path; one `<testcase>` per test, `classname` the
//!   file's path, names unique within the suite;
//! - `<failure>` for assertion failures, `<error>` for errors and crashes (with the traceback as
//!   the element text), `<skipped>` with the reason;
//! - suite properties: kernel release, arch, accelerator, transport, profile, machine;
//! - the console tail in the suite's `<system-out>` when a VM failed;
//! - an error outside any test is a test case named `(file)` with an `<error>`.

use super::Reporter;
use crate::event::{FileReport, Problem, RunEvent, SkipKind, Status, Summary};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

pub fn report(summary: &Summary) -> Report {
    let mut report = Report::new("provium");
    report.set_time(summary.duration);
    for file in &summary.reports {
        report.add_test_suite(suite(file));
    }
    report
}

fn problem_status(kind: NonSuccessKind, ty: &str, p: &Problem) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    let message = match &p.location {
        Some(l) => format!("{} ({l})", p.message),
        None => p.message.clone(),
    };
    status.set_message(message);
    status.set_type(ty);
    let mut text = p.message.clone();
    if let Some(l) = &p.location {
        text.push_str(&format!("\nat {l}"));
    }
    if !p.detail.is_empty() {
        text.push('\n');
        text.push_str(&p.detail);
    }
    status.set_description(text);
    status
}

fn suite(file: &FileReport) -> TestSuite {
    let mut suite = TestSuite::new(file.path.as_str());
    suite.set_time(file.duration);
    if let Some(ts) = timestamp(file.started_at) {
        suite.set_timestamp(ts);
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
    for t in &file.tests {
        let status = match &t.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Failed(p) => problem_status(NonSuccessKind::Failure, "assertion", p),
            Status::Errored(p) => problem_status(NonSuccessKind::Error, "error", p),
            Status::Skipped { reason, kind } => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(match kind {
                    SkipKind::Skip => reason.clone(),
                    SkipKind::Todo => format!("todo: {reason}"),
                    SkipKind::Xfail => format!("xfail: {reason}"),
                });
                s
            }
            Status::NotRun { reason } => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!("not run: {reason}"));
                s
            }
        };
        let mut case = TestCase::new(t.name.as_str(), status);
        case.set_classname(file.path.as_str());
        case.set_time(t.duration);
        case.extra
            .insert("file".into(), t.location.file.as_str().into());
        case.extra
            .insert("line".into(), t.location.line.to_string().into());
        if !t.output.is_empty() {
            case.set_system_out(t.output.as_str());
        }
        suite.add_test_case(case);
    }
    if let Some(p) = &file.file_error {
        let mut case = TestCase::new("(file)", problem_status(NonSuccessKind::Error, "error", p));
        case.set_classname(file.path.as_str());
        case.set_time(Duration::ZERO);
        case.extra.insert("file".into(), file.path.as_str().into());
        let line = p.location.as_ref().map(|l| l.line).unwrap_or(0);
        case.extra.insert("line".into(), line.to_string().into());
        suite.add_test_case(case);
    }
    let mut out = String::new();
    if !file.output.is_empty() {
        out.push_str(&file.output);
    }
    if let Some(console) = &file.console {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("--- guest console (tail) ---\n");
        out.push_str(console);
    }
    if !out.is_empty() {
        suite.set_system_out(out);
    }
    suite
}

fn timestamp(unix: u64) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::from_timestamp(unix as i64, 0).map(|t| t.fixed_offset())
}

/// Combines the reports of shards (`provium junit merge`): suites of the same name (one file
/// split over runs) are joined, suites are sorted by name as one run would order them, and the
/// run's time is the slowest shard's (shards run side by side).
pub fn merge(inputs: &[std::path::PathBuf]) -> anyhow::Result<Report> {
    let mut suites: std::collections::BTreeMap<String, TestSuite> = Default::default();
    let mut time = Duration::ZERO;
    let mut timestamp = None;
    for path in inputs {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let shard = Report::deserialize(std::io::BufReader::new(file))
            .map_err(|e| anyhow::anyhow!("{}: not a JUnit report: {e}", path.display()))?;
        time = time.max(shard.time.unwrap_or_default());
        timestamp = match (timestamp, shard.timestamp) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        for s in shard.test_suites {
            match suites.get_mut(s.name.as_str()) {
                Some(existing) => {
                    existing.add_test_cases(s.test_cases);
                    for p in s.properties {
                        if !existing.properties.iter().any(|q| q.name == p.name) {
                            existing.add_property(p);
                        }
                    }
                    let t = existing.time.unwrap_or_default() + s.time.unwrap_or_default();
                    existing.set_time(t);
                }
                None => {
                    suites.insert(s.name.to_string(), s);
                }
            }
        }
    }
    let mut report = Report::new("provium");
    report.set_time(time);
    if let Some(ts) = timestamp {
        report.set_timestamp(ts);
    }
    report.add_test_suites(suites.into_values());
    Ok(report)
}

pub fn write_report(report: &Report, path: &std::path::Path) -> anyhow::Result<()> {
    let xml = report
        .to_string()
        .map_err(|e| anyhow::anyhow!("serializing JUnit XML: {e}"))?;
    crate::machine::paths::write_output(path, xml.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Writes the report to `path` (atomically, so a reader never sees half a file).
pub fn write(summary: &Summary, path: &std::path::Path) -> anyhow::Result<()> {
    write_report(&report(summary), path)
}

/// The JUnit reporter: writes the report when the run ends (an interrupted run too).
pub struct JunitFile {
    path: std::path::PathBuf,
    result: anyhow::Result<()>,
}

impl JunitFile {
    pub fn new(path: &std::path::Path) -> JunitFile {
        JunitFile {
            path: path.to_path_buf(),
            result: Ok(()),
        }
    }
}

impl Reporter for JunitFile {
    fn report(&mut self, event: &RunEvent) {
        if let RunEvent::RunFinished { summary } = event {
            self.result = write(summary, &self.path)
                .map_err(|e| e.context(format!("writing {}", self.path.display())));
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        std::mem::replace(&mut self.result, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                })
                .collect(),
            duration: Duration::from_millis(10),
            ..Default::default()
        }
    }

    fn failed() -> Status {
        Status::Failed(Problem {
            message: "expected 1, got 2".into(),
            location: None,
            detail: String::new(),
        })
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
            write(&summary, &path).unwrap();
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
