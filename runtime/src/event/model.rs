//! What a run produced: one report per file, one result per test, and facts about the VMs.
//! Plain data: every layer can build it, every reporter can read it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where something happened in a test file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Problem {
    /// One line, for summaries and the JUnit `message` attribute.
    pub message: String,
    pub location: Option<Location>,
    /// The Lua traceback and any detail (expected/actual).
    pub detail: String,
    /// What the guest console showed when the VM failed or the test was stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleExcerpt>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            location: None,
            detail: String::new(),
            console: None,
        }
    }
}

/// What happened, as the heading of a console excerpt: the worst thing the kernel reported,
/// or, when it reported nothing, why the console is shown.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleEvent {
    /// The kernel became tainted without saying more on its console.
    Tainted,
    /// The VM stopped answering or exited without a kernel message.
    VmLost,
    /// The test (or its file) ran out of time.
    TimedOut,
    /// `WARNING: CPU: … at …`: the kernel warned and went on.
    Warning,
    /// `BUG: …`, `kernel BUG at …`: the kernel detected a bug.
    Bug,
    /// `Oops: …`, `general protection fault`: the kernel faulted.
    Oops,
    /// `Kernel panic - not syncing`: the kernel stopped.
    KernelPanic,
}

impl ConsoleEvent {
    /// Whether the kernel itself reported it (not a runner-side reason).
    pub fn is_kernel(self) -> bool {
        self >= ConsoleEvent::Warning
    }
}

impl std::fmt::Display for ConsoleEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConsoleEvent::Tainted => "kernel tainted",
            ConsoleEvent::VmLost => "VM lost",
            ConsoleEvent::TimedOut => "timed out",
            ConsoleEvent::Warning => "WARNING",
            ConsoleEvent::Bug => "BUG",
            ConsoleEvent::Oops => "Oops",
            ConsoleEvent::KernelPanic => "kernel panic",
        })
    }
}

/// Lines of the guest console around what happened, headed by what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ConsoleExcerpt {
    pub event: ConsoleEvent,
    pub text: String,
}

impl ConsoleExcerpt {
    /// The excerpt as reports print it: a heading line, then the console lines.
    pub fn render(&self) -> String {
        format!("--- {}: guest console ---\n{}", self.event, self.text)
    }
}

/// Why a test was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SkipKind {
    /// `skip()`, or a condition (`requires`) that does not hold here.
    #[default]
    Skip,
    /// `todo()`: a test not written yet.
    Todo,
    /// `xfail()`: a known bug that still fails, as expected.
    Xfail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Passed,
    /// An assertion failed: the kernel did not behave as expected.
    Failed(
        #[serde(serialize_with = "in_test::serialize")]
        #[schemars(with = "in_test::ProblemInTest")]
        Problem,
    ),
    /// Anything else went wrong: a Lua error, a lost VM, a bad argument.
    Errored(
        #[serde(serialize_with = "in_test::serialize")]
        #[schemars(with = "in_test::ProblemInTest")]
        Problem,
    ),
    Skipped {
        reason: String,
        #[serde(rename = "skip_kind")]
        kind: SkipKind,
    },
    /// The test was selected but never ran: its file timed out, lost its VM, or the run was
    /// interrupted or stopped (`--fail-fast`) first.
    NotRun {
        reason: String,
    },
}

impl Status {
    pub fn skipped(reason: impl Into<String>) -> Status {
        Status::Skipped {
            reason: reason.into(),
            kind: SkipKind::Skip,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Status::Passed => "PASS",
            Status::Failed(_) => "FAIL",
            Status::Errored(_) => "ERROR",
            Status::Skipped {
                kind: SkipKind::Todo,
                ..
            } => "TODO",
            Status::Skipped {
                kind: SkipKind::Xfail,
                ..
            } => "XFAIL",
            Status::Skipped { .. } => "SKIP",
            Status::NotRun { .. } => "NOT RUN",
        }
    }

    /// A failure or an error: the run is not a success.
    pub fn is_bad(&self) -> bool {
        matches!(self, Status::Failed(_) | Status::Errored(_))
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Status::Failed(p) | Status::Errored(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TestReport {
    pub name: String,
    /// Where the test is defined (the `test(...)` call, or the spec case).
    pub location: Location,
    #[serde(flatten)]
    pub status: Status,
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub duration: Duration,
    /// What the test printed.
    pub output: String,
    /// What the kernel answered to the last call the test checked (`EBADF`, `0`, `ok`,
    /// `timed_out`): the cell of a cross-kernel matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

impl TestReport {
    /// A selected test that never ran.
    pub fn not_run(name: &str, location: Location, reason: &str) -> TestReport {
        TestReport {
            name: name.to_string(),
            location,
            status: Status::NotRun {
                reason: reason.to_string(),
            },
            duration: Duration::ZERO,
            output: String::new(),
            observed: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct FileReport {
    /// The path as given on the command line (relative paths stay relative).
    pub path: String,
    /// The suite name reports use: a spec's `suite:`, the path otherwise.
    pub suite: String,
    /// In a run over several kernels, the kernel this run of the file targeted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    pub tests: Vec<TestReport>,
    /// An error outside any test (a syntax error, a failed boot at file level).
    pub file_error: Option<Problem>,
    /// VMs the file booted.
    pub vms: Vec<VmInfo>,
    /// The console tail of a VM that was lost, for the report's system-out.
    pub console: Option<String>,
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub duration: Duration,
    /// What the file printed outside tests.
    pub output: String,
    /// How long its VMs waited at the machine-wide gate for room (included in `duration`,
    /// never in a test's time or against the file's time limit).
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub queued: Duration,
    /// Unix time (seconds) when the file started.
    pub started_at: u64,
    /// From the first VM being ready to the end of the last test: what the tests cost without
    /// the boot.
    #[serde(skip)]
    pub after_boot: Option<Duration>,
    /// In a planning (list-mode) run: VM answers the file's top level used, which planning can
    /// only invent; its tests may depend on them.
    #[serde(skip)]
    pub invented_answers: usize,
    /// In a planning run: planning was stopped at its time limit.
    #[serde(skip)]
    pub listing_stopped: bool,
    /// In record mode: what each `expect` saw, by spec line, as an expectation, and whether
    /// the expectation as written held (`any` never does: it is a placeholder to record).
    #[serde(skip)]
    pub observations: Vec<(u32, String, bool)>,
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
                Status::NotRun { .. } => c.not_run += 1,
            }
        }
        if self.file_error.is_some() {
            c.errored += 1;
        }
        c
    }

    pub fn is_bad(&self) -> bool {
        self.file_error.is_some()
            || self
                .tests
                .iter()
                .any(|t| t.status.is_bad() || matches!(t.status, Status::NotRun { .. }))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub skipped: usize,
    pub not_run: usize,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.errored += o.errored;
        self.skipped += o.skipped;
        self.not_run += o.not_run;
    }

    /// Tests that ran to an outcome (skips and tests never run are not counted).
    pub fn run(&self) -> usize {
        self.passed + self.failed + self.errored
    }
}

/// Why a VM waits at the gate: what is held of the machine's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GateWait {
    /// CPUs held by running VMs, and the budget.
    pub busy_cpus: u32,
    pub cpus: u32,
    /// Memory (MiB) held by running VMs, and the budget.
    pub busy_mib: u64,
    pub mib: u64,
    /// Of the busy CPUs, those held by other provium processes on the machine.
    pub other_processes_cpus: u32,
}

impl std::fmt::Display for GateWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "waiting for room on this machine: {} of {} CPUs and {} of {} MiB are in use",
            self.busy_cpus, self.cpus, self.busy_mib, self.mib
        )?;
        if self.other_processes_cpus > 0 {
            write!(
                f,
                " ({} CPUs by other provium runs)",
                self.other_processes_cpus
            )?;
        }
        Ok(())
    }
}

/// A signal that stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Interruption {
    pub signal: i32,
}

impl Interruption {
    pub fn name(&self) -> &'static str {
        match self.signal {
            1 => "SIGHUP",
            2 => "SIGINT",
            15 => "SIGTERM",
            _ => "a signal",
        }
    }

    /// The shell's exit status for a process ended by the signal: 128 + its number.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Summary {
    pub reports: Vec<FileReport>,
    pub counts: Counts,
    #[serde(with = "secs")]
    #[schemars(with = "f64")]
    pub duration: Duration,
    /// Unix time (seconds) when the run started.
    pub started_at: u64,
    /// Set when a signal stopped the run; the reports hold what finished.
    pub interrupted: Option<Interruption>,
}

impl Summary {
    pub fn is_success(&self) -> bool {
        self.counts.failed == 0
            && self.counts.errored == 0
            && self.counts.not_run == 0
            && self.interrupted.is_none()
    }
}

/// How the kernel is loaded, as decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadedAs {
    Pvh,
    Bzimage,
    /// An arm64 `Image`, loaded as it is.
    Image,
}

/// Facts about a running VM, reported with test results.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VmInfo {
    pub profile: String,
    pub kernel_release: String,
    pub arch: String,
    pub accel: String,
    pub transport: String,
    pub machine: String,
    pub loaded_as: LoadedAs,
    /// Wall time from starting QEMU to the agent's hello.
    pub boot_ms: u64,
    /// Guest time (since kernel start) at which the agent was ready.
    pub guest_ready_ms: u64,
    /// The fixture this VM was resumed from; `boot_ms` is then the resume time.
    #[serde(default)]
    pub fixture: Option<String>,
    /// Its run directory (console log, sockets), when kept with `--keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
    /// Where the boot (or resume) time went, phase by phase, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<BootPhase>,
}

/// One phase of a boot or a resume: host work (planning, the resource gate, starting QEMU) or
/// the guest's (the kernel to init, the agent's mounts, modules and transport), as wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BootPhase {
    /// `plan`, `gate`, `qemu start`, `kernel to init`, `agent modules`, `handshake`, …
    pub name: String,
    /// Milliseconds.
    pub ms: f64,
}

impl BootPhase {
    pub fn new(name: &str, d: std::time::Duration) -> BootPhase {
        BootPhase {
            name: name.to_string(),
            ms: d.as_secs_f64() * 1e3,
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where and with what a run happens: for the start of reports.
#[derive(Debug, Clone, Serialize, JsonSchema, Default)]
pub struct RunEnvironment {
    /// `0.1.0 (1a2b3c4d5e 2026-11-29)`: version, commit and its date.
    pub provium: String,
    /// `kvm` or `tcg`, as chosen for this host (or forced with `--accel`).
    pub accelerator: String,
    /// The kernels the run's profiles boot, by profile.
    pub kernels: Vec<KernelRef>,
}

/// A kernel a profile boots.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct KernelRef {
    pub profile: String,
    pub path: String,
    /// `uname -r` as the image says it (none when the image cannot be read).
    pub release: Option<String>,
}

/// A problem as a test's fields carry it: merged into the test's object, where `location` is
/// already the test's own, so the place the problem happened is `failure_location`.
mod in_test {
    use super::{ConsoleExcerpt, Location, Problem};
    use schemars::JsonSchema;
    use serde::Serialize;

    #[derive(Serialize, JsonSchema)]
    pub struct ProblemInTest {
        /// One line, for summaries and the JUnit `message` attribute.
        pub message: String,
        /// Where it happened (an assertion's line), when that is known and differs from where
        /// the test is defined.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub failure_location: Option<Location>,
        /// The Lua traceback and any detail (expected/actual).
        pub detail: String,
        /// What the guest console showed when the VM failed or the test was stopped.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub console: Option<ConsoleExcerpt>,
    }

    pub fn serialize<S: serde::Serializer>(p: &Problem, s: S) -> Result<S::Ok, S::Error> {
        ProblemInTest {
            message: p.message.clone(),
            failure_location: p.location.clone(),
            detail: p.detail.clone(),
            console: p.console.clone(),
        }
        .serialize(s)
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
