//! The vocabulary of a run: the one event stream between the runner and the reporters, and the
//! plain data it carries.
//!
//! The runner sends [`RunEvent`]s in an order that does not depend on scheduling: every event of
//! a file comes after the `FileFinished` of the file before it (the file at the front streams
//! live). A reporter is one method that receives them (see `report::Reporter`). This module
//! depends on nothing else in the crate, so every layer may use it.

pub mod model;

/// `0.1.0 (1a2b3c4d5e 2026-11-29)`: the package version, the commit and its date.
pub const PROVIUM_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PROVIUM_COMMIT"),
    " ",
    env!("PROVIUM_COMMIT_DATE"),
    ")"
);

pub use model::*;
use schemars::JsonSchema;
use serde::Serialize;

/// A test the plan found in a file (a `--list` run of it, no VM booted).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlannedTest {
    pub name: String,
    pub location: Location,
}

/// A selected file and the tests it is expected to report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlannedFile {
    /// The path as reports show it.
    pub path: String,
    /// The suite name reports use (a spec's `suite:`; the path otherwise).
    pub suite: String,
    pub tests: Vec<PlannedTest>,
    /// Why the file could not be listed (a spec that does not compile); it still runs, and says
    /// so in its report.
    pub plan_error: Option<String>,
    /// The file's tests depend on what its VMs answer (its top level used VM answers, which
    /// planning can only invent, or planning ran out of time): it runs even when no planned test
    /// is selected, and reports the tests it defines as it defines them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// In a run over several kernels (`--kernel`), the kernel this run of the file targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl PlannedFile {
    /// The file as reports name it: its path, and its kernel in a run over several.
    pub fn display(&self) -> String {
        match &self.kernel {
            Some(k) => format!("{} [{k}]", self.path),
            None => self.path.clone(),
        }
    }
}

/// What happens during a run. `file` is the index into `RunStarted`'s `files`.
#[derive(Debug, Clone)]
pub enum RunEvent {
    RunStarted {
        files: Vec<PlannedFile>,
        environment: RunEnvironment,
        /// Files run at once.
        jobs: usize,
        /// Unix time (seconds).
        started_at: u64,
    },
    FileStarted {
        file: usize,
    },
    /// A VM of the file is being booted or resumed (`what`: "`minimal`", "fixture base").
    BootStarted {
        file: usize,
        what: String,
    },
    BootFinished {
        file: usize,
    },
    /// A VM of the file waits for room on the machine (other files of this run, or other
    /// provium runs, hold its CPUs or memory). The wait is not charged to the file's time limit
    /// nor to its tests; the file's report says how long it was (`FileReport::queued`).
    Waiting {
        file: usize,
        wait: GateWait,
    },
    /// A fixture's snapshot is being built for the file (once; later files resume it).
    Building {
        file: usize,
        fixture: String,
    },
    TestStarted {
        file: usize,
        name: String,
    },
    TestFinished {
        file: usize,
        test: TestReport,
    },
    /// What a file printed, as it printed it (`--no-capture`).
    Output {
        file: usize,
        text: String,
    },
    /// The file's complete report: every planned test is in it, those that never ran as
    /// [`Status::NotRun`].
    FileFinished {
        file: usize,
        report: FileReport,
    },
    RunFinished {
        summary: Summary,
    },
}

impl RunEvent {
    /// The file the event belongs to, if any.
    pub fn file(&self) -> Option<usize> {
        match self {
            RunEvent::FileStarted { file }
            | RunEvent::BootStarted { file, .. }
            | RunEvent::BootFinished { file }
            | RunEvent::Waiting { file, .. }
            | RunEvent::Building { file, .. }
            | RunEvent::TestStarted { file, .. }
            | RunEvent::TestFinished { file, .. }
            | RunEvent::Output { file, .. }
            | RunEvent::FileFinished { file, .. } => Some(*file),
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => None,
        }
    }
}
