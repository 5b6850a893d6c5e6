//! One test file's run: its report in progress, its VMs, its captured output.

use super::control::FileControl;
use super::slot::VmSlot;
use crate::event::{FileReport, Location, Problem, RunEvent, Status, TestReport};
use crate::fixture::FixtureUse;
use crate::machine::profile::Profiles;
use crate::machine::vm::{BootOptions, Vm};
use mlua::Lua;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// Where a session's events go: the runner's channel, or nowhere.
pub type Emit = Rc<dyn Fn(RunEvent)>;

/// An [`Emit`] that drops every event (fixture scripts, benchmarks, unit tests).
pub fn silent() -> Emit {
    Rc::new(|_| {})
}

/// Which tests of a file run.
pub type TestFilter = Rc<dyn Fn(&str) -> bool>;

pub struct Session {
    /// How the file runs, as the runner asked.
    pub config: SessionConfig,
    pub report: RefCell<FileReport>,
    pub vms: RefCell<Vec<Rc<RefCell<VmSlot>>>>,
    /// The output of the running test; `None` outside tests.
    pub current: RefCell<Option<String>>,
    /// What the last call the running test checked answered (for cross-kernel matrices).
    pub observed: RefCell<Option<String>>,
    /// `provium.share_vm()`: the file's VMs may pass to the next file (see `pool`).
    pub share_vm: std::cell::Cell<bool>,
    /// When the first VM became ready, and when the last test ended.
    pub booted_at: std::cell::Cell<Option<std::time::Instant>>,
    pub last_test_end: std::cell::Cell<Option<std::time::Instant>>,
    names: RefCell<HashMap<String, usize>>,
    /// Outcomes of batches made outside tests (by table address), with their share of the
    /// batch's time: the test that checks one is charged its share.
    batch_shares: RefCell<HashMap<usize, std::time::Duration>>,
    /// Time charged to the running test for batch outcomes it checked.
    charged: std::cell::Cell<std::time::Duration>,
    /// Time the file's VMs waited at the machine-wide gate, so far.
    pub queued: std::cell::Cell<std::time::Duration>,
}

/// What every file of a run shares, whoever starts its session (the runner, a fixture build).
#[derive(Clone)]
pub struct Settings {
    /// Output is kept for the report instead of printed as it comes (`--no-capture` turns it
    /// off).
    pub capture: bool,
    /// Tests are listed, not run: no VM boots (`--list`, and the runner's plan pass).
    pub list_only: bool,
    /// How long listing a file's tests may take (`--plan-timeout`; [`super::PLAN_TIME_LIMIT`]
    /// by default): planning answers VM calls with invented values, so a loop waiting for a real
    /// answer would never end.
    pub plan_limit: std::time::Duration,
    pub profiles: Profiles,
    /// Boot options every VM starts from.
    pub defaults: BootOptions,
    /// Record outcomes instead of checking them (`provium record`).
    pub record: bool,
    /// Fixture definitions, and whether to resume snapshots of them (off with `--cold`).
    pub fixtures: Option<FixtureUse>,
    /// The names of the kernel the files run on, when they are not the built-in ones (a build
    /// tree's new syscalls and headers), or other kernels of the run have names it lacks.
    pub naming: Option<Arc<KernelNaming>>,
    /// The system call ABI specs are compiled for, when the run names one (`--abi i386`);
    /// `None`: each spec's own (`abi:`), else x86_64.
    pub abi: Option<provium_compiler::linux::Abi>,
}

/// A kernel's names: its syscall table (and those only other kernels of the run have), its uapi
/// headers, and the other kernels' headers, for a header it lacks.
#[derive(Debug)]
pub struct KernelNaming {
    pub names: Arc<provium_compiler::KernelNames>,
    /// Its uapi headers (`None`: the host's).
    pub include: Option<PathBuf>,
    /// The other kernels of the run and their uapi headers (`None`: the host's).
    pub others: Vec<(String, Option<PathBuf>)>,
}

impl Settings {
    /// Output captured, tests run, default boot options, no fixtures.
    pub fn new(profiles: Profiles) -> Settings {
        Settings {
            capture: true,
            list_only: false,
            plan_limit: super::PLAN_TIME_LIMIT,
            profiles,
            defaults: BootOptions::default(),
            record: false,
            fixtures: None,
            naming: None,
            abi: None,
        }
    }
}

/// How to run one file.
pub struct SessionConfig {
    pub file: String,
    /// The file's index in the run, for its events.
    pub index: usize,
    pub emit: Emit,
    pub filter: Option<TestFilter>,
    pub settings: Settings,
    /// For a compiled spec: how the chunk's lines map to the spec's.
    pub source_map: Option<SourceMap>,
    /// When building a fixture: where VMs keep their RAM, so that one can be saved.
    pub snapshot_dir: Option<PathBuf>,
    /// The runner's handle on the file (timeouts).
    pub control: Option<Arc<FileControl>>,
}

impl SessionConfig {
    /// A session for `file` with `settings`: no filter, no runner, events dropped.
    pub fn new(file: &str, settings: Settings) -> SessionConfig {
        SessionConfig {
            file: file.to_string(),
            index: 0,
            emit: silent(),
            filter: None,
            settings,
            source_map: None,
            snapshot_dir: None,
            control: None,
        }
    }
}

/// The architecture of the run's guests: its ABI's (an `--arch aarch64` run compiles for and
/// names arm64's calls), else x86_64 (also without a session: a state made to check names).
pub fn guest_arch(lua: &mlua::Lua) -> provium_compiler::linux::Arch {
    lua.app_data_ref::<std::rc::Rc<Session>>()
        .and_then(|s| s.config.settings.abi)
        .map(|a| a.arch())
        .unwrap_or_default()
}

impl Session {
    pub fn new(c: SessionConfig) -> Session {
        Session {
            report: RefCell::new(FileReport {
                path: c.file.clone(),
                ..Default::default()
            }),
            config: c,
            vms: RefCell::new(Vec::new()),
            current: RefCell::new(None),
            observed: RefCell::new(None),
            share_vm: Default::default(),
            booted_at: Default::default(),
            last_test_end: Default::default(),
            names: RefCell::new(HashMap::new()),
            batch_shares: RefCell::new(HashMap::new()),
            charged: Default::default(),
            queued: Default::default(),
        }
    }

    /// A batch made outside tests took `elapsed` for `outcomes`: each outcome's test will be
    /// charged an equal share (a batch is one round trip; its calls are not timed apart).
    pub fn share_batch_time(&self, outcomes: &[mlua::Table], elapsed: std::time::Duration) {
        if self.current.borrow().is_some() || outcomes.is_empty() {
            // Inside a test the batch is already part of the test's own time.
            return;
        }
        let share = elapsed / outcomes.len() as u32;
        let mut shares = self.batch_shares.borrow_mut();
        for t in outcomes {
            shares.insert(t.to_pointer() as usize, share);
        }
    }

    /// The running test checks `outcome`: if it came from a batch, the test takes its share.
    pub fn charge_outcome(&self, outcome: &mlua::Table) {
        if self.current.borrow().is_none() {
            return;
        }
        if let Some(share) = self
            .batch_shares
            .borrow_mut()
            .remove(&(outcome.to_pointer() as usize))
        {
            self.charged.set(self.charged.get() + share);
        }
    }

    /// The batch time the test that just ended was charged.
    pub fn take_charged(&self) -> std::time::Duration {
        self.charged.take()
    }

    /// Sends an event of this file to the runner.
    pub fn emit(&self, event: RunEvent) {
        (self.config.emit)(event)
    }

    /// Reports a finished test: to the runner now, and in the file's report.
    pub fn finish_test(&self, report: TestReport) {
        self.emit(RunEvent::TestFinished {
            file: self.config.index,
            test: report.clone(),
        });
        self.report.borrow_mut().tests.push(report);
    }

    pub fn boot_started(&self, what: &str) {
        self.emit(RunEvent::BootStarted {
            file: self.config.index,
            what: what.to_string(),
        });
    }

    pub fn boot_finished(&self) {
        self.emit(RunEvent::BootFinished {
            file: self.config.index,
        });
    }

    pub fn get(lua: &Lua) -> Rc<Session> {
        lua.app_data_ref::<Rc<Session>>()
            .map(|s| s.clone())
            .expect("the Provium session is installed before any script runs")
    }

    /// Planning answered a VM call with an invented value (see `dry`): the file's tests may
    /// depend on it.
    pub fn invented(&self) {
        self.report.borrow_mut().invented_answers += 1;
    }

    pub fn record_console(&self, console: &str) {
        self.report.borrow_mut().console = Some(console.to_string());
    }

    /// A VM of the file became ready: the report lists it, and the runner watches its console
    /// (shown if the file times out).
    pub fn record_vm(&self, vm: &Vm) {
        if self.booted_at.get().is_none() {
            self.booted_at.set(Some(std::time::Instant::now()));
        }
        if let Some(control) = &self.config.control {
            control.watch(vm);
        }
        self.report.borrow_mut().vms.push(vm.info().clone());
    }

    /// Test names are unique within a file (GitLab keeps only the first of equal names).
    pub fn unique_name(&self, name: &str) -> String {
        let mut names = self.names.borrow_mut();
        let n = names.entry(name.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            name.to_string()
        } else {
            format!("{name} ({n})")
        }
    }

    pub fn map_location(&self, loc: Location) -> Location {
        match &self.config.source_map {
            Some(m) => m.map(loc),
            None => loc,
        }
    }

    pub fn map_status(&self, status: &mut Status) {
        if let (Some(m), Status::Failed(p) | Status::Errored(p)) = (&self.config.source_map, status)
        {
            m.map_problem(p);
        }
    }

    pub fn selected(&self, name: &str) -> bool {
        self.config.filter.as_ref().is_none_or(|f| f(name))
    }

    /// Printed text goes to the running test's capture, the file's, or (`--no-capture`) the
    /// terminal.
    pub fn print(&self, text: &str) {
        if !self.config.settings.capture {
            self.emit(RunEvent::Output {
                file: self.config.index,
                text: text.to_string(),
            });
        }
        match self.current.borrow_mut().as_mut() {
            Some(buf) => buf.push_str(text),
            None => self.report.borrow_mut().output.push_str(text),
        }
    }

    /// Shuts down every VM the file left running.
    pub fn shutdown_all(&self) {
        for slot in self.vms.borrow().iter() {
            slot.borrow_mut().shutdown();
        }
    }

    /// At the end of the file: every VM still running is stopped at once, or, when the file
    /// only made isolated calls to it and every test passed, kept for the next file (`pool`).
    pub fn stop_all(&self) {
        let clean = self.share_vm.get() && !self.report.borrow().is_bad();
        for slot in self.vms.borrow().iter() {
            slot.borrow_mut().stop(clean);
        }
    }
}

/// Maps lines of a compiled spec's Lua chunk back to the spec, with the compiler's map.
#[derive(Debug, Clone)]
pub struct SourceMap {
    pub chunk: String,
    pub file: String,
    lines: provium_compiler::SourceMap,
}

impl SourceMap {
    pub fn new(chunk: &str, file: &str, lines: provium_compiler::SourceMap) -> SourceMap {
        SourceMap {
            chunk: chunk.to_string(),
            file: file.to_string(),
            lines,
        }
    }

    pub fn line(&self, chunk_line: u32) -> Option<u32> {
        self.lines.line(chunk_line)
    }

    pub fn map(&self, loc: Location) -> Location {
        if loc.file != self.chunk {
            return loc;
        }
        match self.line(loc.line) {
            Some(line) => Location {
                file: self.file.clone(),
                line,
            },
            None => loc,
        }
    }

    /// Rewrites `chunk:N` in messages and tracebacks to `file:M`.
    pub fn map_text(&self, text: &str) -> String {
        let needle = format!("{}:", self.chunk);
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&needle) {
            out.push_str(&rest[..at]);
            let after = &rest[at + needle.len()..];
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            match digits.parse::<u32>().ok().and_then(|n| self.line(n)) {
                Some(line) => out.push_str(&format!("{}:{line}", self.file)),
                None => out.push_str(&format!("{needle}{digits}")),
            }
            rest = &after[digits.len()..];
        }
        out.push_str(rest);
        out
    }

    /// Maps a problem's location and text. Traceback frames inside the generated chunk are
    /// dropped: they show the compiler's scaffolding, not the spec. Frames in the spec's own
    /// `lua:` blocks stay.
    pub fn map_problem(&self, p: &mut Problem) {
        if let Some(l) = p.location.take() {
            p.location = Some(self.map(l));
        }
        p.message = self.map_text(&p.message);
        let generated = format!("{}:", self.chunk);
        let kept: Vec<&str> = p
            .detail
            .lines()
            .filter(|l| {
                let t = l.trim();
                !(t.contains(&generated) || (t.starts_with("[C]:") && !t.contains("'error'")))
            })
            .collect();
        let only_header = kept
            .iter()
            .all(|l| l.trim() == "stack traceback:" || l.trim().is_empty());
        let kept: Vec<&str> = if only_header {
            kept.into_iter()
                .filter(|l| l.trim() != "stack traceback:")
                .collect()
        } else {
            kept
        };
        p.detail = self.map_text(&kept.join("\n"));
    }
}
