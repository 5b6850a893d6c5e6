//! `--format json`: one JSON object per line on stdout, for tools. The shape is versioned
//! (`format` in the first object) and described by `schemas/events.schema.json`, which is
//! generated from the types below, so the two cannot disagree.
//!
//! ```text
//! {"type":"run-started","format":1,"environment":{"provium":"0.1.0 (…)","accelerator":"tcg",…},…}
//! {"type":"test","file":"specs/close.yaml","suite":"close and dup","name":"close(-1) is EBADF","status":"passed",…}
//! {"type":"file-finished","file":"specs/close.yaml","counts":{"passed":12,…},"vms":[…],…}
//! {"type":"run-finished","counts":{"passed":10,"failed":1,…},"success":false,…}
//! ```
//!
//! A file's tests are written when the file finishes, in plan order, with their final status
//! (a test stopped by its file's timeout is an error then, its successors not run). `provium
//! test --list --format json` writes one `list` object.

use super::Reporter;
use crate::event::{Counts, PlannedFile, Problem, RunEnvironment, RunEvent, TestReport, VmInfo};
use schemars::JsonSchema;
use serde::Serialize;
use std::io::Write;

/// The version of the event shapes; it changes only when a field is removed or changes meaning
/// (new fields may appear in any version).
pub const FORMAT: u32 = 1;

/// One line of `--format json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum JsonEvent<'a> {
    /// First: what runs, where, and every test that will be reported.
    RunStarted {
        format: u32,
        environment: &'a RunEnvironment,
        /// Files run at once.
        jobs: usize,
        /// Unix time (seconds).
        started_at: u64,
        files: &'a [PlannedFile],
    },
    /// One test's final outcome.
    Test {
        file: &'a str,
        suite: &'a str,
        /// In a run over several kernels (`--kernel`), which one.
        #[serde(skip_serializing_if = "Option::is_none")]
        kernel: Option<&'a str>,
        #[serde(flatten)]
        test: &'a TestReport,
    },
    /// After a file's tests.
    FileFinished {
        file: &'a str,
        suite: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kernel: Option<&'a str>,
        /// Seconds.
        duration: f64,
        /// Seconds of `duration` its VMs waited at the machine-wide gate for room (never
        /// charged to a test or to the file's time limit).
        queued: f64,
        /// Unix time (seconds).
        started_at: u64,
        counts: Counts,
        /// The VMs the file booted or resumed.
        vms: &'a [VmInfo],
        /// An error outside any test (a syntax error, a failed boot, a timeout between tests).
        file_error: Option<&'a Problem>,
        /// What the file printed outside tests.
        output: &'a str,
    },
    /// Last, also after an interruption.
    RunFinished {
        counts: Counts,
        /// Seconds.
        duration: f64,
        /// The signal that stopped the run (`SIGINT`, `SIGTERM`, `SIGHUP`).
        interrupted: Option<&'a str>,
        /// Everything selected ran and passed (skips aside): exit status 0.
        success: bool,
    },
    /// `provium test --list --format json`: the selected tests, nothing run.
    List {
        format: u32,
        files: &'a [PlannedFile],
    },
}

/// The JSON Schema of every line `--format json` writes.
pub fn schema() -> schemars::Schema {
    let mut s = schemars::schema_for!(JsonEvent<'static>);
    s.insert(
        "$id".into(),
        "https://provium.dev/schemas/events.schema.json".into(),
    );
    s.insert(
        "title".into(),
        format!("provium --format json events, format {FORMAT}").into(),
    );
    s
}

/// Writes one event as one line.
pub fn write_line(out: &mut impl Write, event: &JsonEvent) -> std::io::Result<()> {
    let line = serde_json::to_string(event).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

pub struct Json<W: Write> {
    out: W,
    files: Vec<String>,
}

impl Json<std::io::Stdout> {
    pub fn stdout() -> Self {
        Json::new(std::io::stdout())
    }
}

impl<W: Write> Json<W> {
    pub fn new(out: W) -> Self {
        Json {
            out,
            files: Vec::new(),
        }
    }

    fn emit(&mut self, e: JsonEvent) {
        // A closed stdout (a pipe into `head`) is not the run's failure.
        let _ = write_line(&mut self.out, &e);
    }
}

impl<W: Write> Reporter for Json<W> {
    fn report(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted {
                files,
                environment,
                jobs,
                started_at,
            } => {
                self.files = files.iter().map(|f| f.path.clone()).collect();
                self.emit(JsonEvent::RunStarted {
                    format: FORMAT,
                    environment,
                    jobs: *jobs,
                    started_at: *started_at,
                    files,
                });
            }
            RunEvent::FileFinished { file, report } => {
                let path = self.files.get(*file).cloned().unwrap_or_default();
                let suite = if report.suite.is_empty() {
                    path.as_str()
                } else {
                    report.suite.as_str()
                };
                for t in &report.tests {
                    self.emit(JsonEvent::Test {
                        file: &path,
                        suite,
                        kernel: report.kernel.as_deref(),
                        test: t,
                    });
                }
                self.emit(JsonEvent::FileFinished {
                    file: &path,
                    suite,
                    kernel: report.kernel.as_deref(),
                    duration: report.duration.as_secs_f64(),
                    queued: report.queued.as_secs_f64(),
                    started_at: report.started_at,
                    counts: report.counts(),
                    vms: &report.vms,
                    file_error: report.file_error.as_ref(),
                    output: &report.output,
                });
            }
            RunEvent::RunFinished { summary } => self.emit(JsonEvent::RunFinished {
                counts: summary.counts,
                duration: summary.duration.as_secs_f64(),
                interrupted: summary.interrupted.map(|i| i.name()),
                success: summary.is_success(),
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    /// `schemas/events.schema.json` is generated from the event types; a stale copy fails here
    /// (`PROVIUM_BLESS=1` rewrites it).
    #[test]
    fn events_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events.schema.json");
        let generated = serde_json::to_string_pretty(&super::schema()).unwrap() + "\n";
        if std::env::var_os("PROVIUM_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == generated,
            "schemas/events.schema.json is stale: run `PROVIUM_BLESS=1 cargo test -p \
             provium-runtime events_schema_is_current`"
        );
    }
}
