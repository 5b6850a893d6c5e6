//! What a test run produced: one report per file, one result per test.

use crate::vm::VmInfo;
use std::time::Duration;

/// Where something happened in a test file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Why a test did not pass.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// One line, for summaries and the JUnit `message` attribute.
    pub message: String,
    pub location: Option<Location>,
    /// The Lua traceback and any detail (expected/actual, console tail).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Passed,
    /// An assertion failed: the kernel did not behave as expected.
    Failed(#[serde(rename = "problem")] Problem),
    /// Anything else went wrong: a Lua error, a lost VM, a bad argument.
    Errored(#[serde(rename = "problem")] Problem),
    Skipped {
        reason: String,
    },
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Passed => "PASS",
            Status::Failed(_) => "FAIL",
            Status::Errored(_) => "ERROR",
            Status::Skipped { .. } => "SKIP",
        }
    }

    pub fn is_bad(&self) -> bool {
        matches!(self, Status::Failed(_) | Status::Errored(_))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    pub name: String,
    /// Where the test is defined (the `test(...)` call, or the spec case).
    pub location: Location,
    #[serde(flatten)]
    pub status: Status,
    #[serde(with = "secs")]
    pub duration: Duration,
    /// What the test printed.
    pub output: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    /// The path as given on the command line (relative paths stay relative).
    pub path: String,
    pub tests: Vec<TestReport>,
    /// An error outside any test (a syntax error, a failed boot at file level).
    pub file_error: Option<Problem>,
    /// VMs the file booted.
    pub vms: Vec<VmInfo>,
    /// The console tail of a VM that was lost, for the report's system-out.
    pub console: Option<String>,
    #[serde(with = "secs")]
    pub duration: Duration,
    /// What the file printed outside tests.
    pub output: String,
    /// Unix time (seconds) when the file started.
    pub started_at: u64,
    /// From the first VM being ready to the end of the last test: what the tests cost without
    /// the boot.
    #[serde(skip)]
    pub after_boot: Option<Duration>,
    /// In record mode: what each `expect` saw, by spec line, as an expectation.
    #[serde(skip)]
    pub observations: Vec<(u32, String)>,
}

impl FileReport {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.tests {
            match t.status {
                Status::Passed => c.passed += 1,
                Status::Failed(_) => c.failed += 1,
                Status::Errored(_) => c.errored += 1,
                Status::Skipped { .. } => c.skipped += 1,
            }
        }
        if self.file_error.is_some() {
            c.errored += 1;
        }
        c
    }

    pub fn is_bad(&self) -> bool {
        self.file_error.is_some() || self.tests.iter().any(|t| t.status.is_bad())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.errored += o.errored;
        self.skipped += o.skipped;
    }

    pub fn run(&self) -> usize {
        self.passed + self.failed + self.errored
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
