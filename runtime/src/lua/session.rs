//! One test file's run: its report in progress, its VMs, its captured output.

use super::vm::VmSlot;
use crate::fixture::FixtureUse;
use crate::profile::Profiles;
use crate::run::control::FileControl;
use crate::run::model::{FileReport, TestReport};
use crate::vm::{BootOptions, Vm};
use mlua::Lua;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// What the runner wants to hear about while a file runs.
pub trait Events {
    fn boot_started(&self, _profile: &str) {}
    fn boot_finished(&self) {}
    fn test_finished(&self, _file: &str, _test: &TestReport) {}
    /// Output printed by the file when it is not captured (`--no-capture`).
    fn output(&self, _file: &str, _text: &str) {}
}

/// Events nobody listens to.
pub struct Silent;
impl Events for Silent {}

/// Which tests of a file run.
pub type TestFilter = Rc<dyn Fn(&str) -> bool>;

pub struct Session {
    /// How the file runs, as the runner asked.
    pub config: SessionConfig,
    pub report: RefCell<FileReport>,
    pub vms: RefCell<Vec<Rc<RefCell<VmSlot>>>>,
    /// The output of the running test; `None` outside tests.
    pub current: RefCell<Option<String>>,
    /// When the first VM became ready, and when the last test ended.
    pub booted_at: std::cell::Cell<Option<std::time::Instant>>,
    pub last_test_end: std::cell::Cell<Option<std::time::Instant>>,
    names: RefCell<HashMap<String, usize>>,
}

/// How to run one file.
pub struct SessionConfig {
    pub file: String,
    pub events: Rc<dyn Events>,
    pub capture: bool,
    pub filter: Option<TestFilter>,
    pub list_only: bool,
    pub profiles: Profiles,
    pub defaults: BootOptions,
    /// For a compiled spec: how the chunk's lines map to the spec's.
    pub source_map: Option<SourceMap>,
    /// Record outcomes instead of checking them (`provium record`).
    pub record: bool,
    /// Fixture definitions, and whether to resume snapshots of them (off with `--cold`).
    pub fixtures: Option<FixtureUse>,
    /// When building a fixture: where VMs keep their RAM, so that one can be saved.
    pub snapshot_dir: Option<PathBuf>,
    /// The runner's handle on the file (timeouts).
    pub control: Option<Arc<FileControl>>,
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
            booted_at: Default::default(),
            last_test_end: Default::default(),
            names: RefCell::new(HashMap::new()),
        }
    }

    pub fn get(lua: &Lua) -> Rc<Session> {
        lua.app_data_ref::<Rc<Session>>()
            .map(|s| s.clone())
            .expect("the Provium session is installed before any script runs")
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

    pub fn map_location(&self, loc: crate::run::model::Location) -> crate::run::model::Location {
        match &self.config.source_map {
            Some(m) => m.map(loc),
            None => loc,
        }
    }

    pub fn map_status(&self, status: &mut crate::run::model::Status) {
        if let (
            Some(m),
            crate::run::model::Status::Failed(p) | crate::run::model::Status::Errored(p),
        ) = (&self.config.source_map, status)
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
        if !self.config.capture {
            self.config.events.output(&self.config.file, text);
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
}

/// Maps lines of a compiled spec's Lua chunk back to the spec, through the `-- file:LINE`
/// markers the compiler writes at the end of statements. A line without a marker takes the
/// nearest marker above it.
#[derive(Debug, Clone)]
pub struct SourceMap {
    pub chunk: String,
    pub file: String,
    lines: Vec<Option<u32>>,
}

impl SourceMap {
    pub fn from_markers(chunk: &str, file: &str, code: &str) -> SourceMap {
        let marker = format!("-- {file}:");
        let mut last = None;
        let mut lines = vec![None];
        for line in code.lines() {
            if let Some(at) = line.rfind(&marker) {
                if let Ok(n) = line[at + marker.len()..].trim().parse::<u32>() {
                    last = Some(n);
                }
            }
            lines.push(last);
        }
        SourceMap {
            chunk: chunk.to_string(),
            file: file.to_string(),
            lines,
        }
    }

    pub fn line(&self, chunk_line: u32) -> Option<u32> {
        self.lines.get(chunk_line as usize).copied().flatten()
    }

    pub fn map(&self, loc: crate::run::model::Location) -> crate::run::model::Location {
        if loc.file != self.chunk {
            return loc;
        }
        match self.line(loc.line) {
            Some(line) => crate::run::model::Location {
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
    pub fn map_problem(&self, p: &mut crate::run::model::Problem) {
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

#[cfg(test)]
mod source_map_tests {
    use super::SourceMap;
    use crate::run::model::Location;

    #[test]
    fn lines_follow_the_nearest_marker_above() {
        let code = "local vm = x  -- s.yaml:3\nfoo()\nbar()  -- s.yaml:10\n";
        let m = SourceMap::from_markers("s.yaml.lua", "s.yaml", code);
        assert_eq!(m.line(1), Some(3));
        assert_eq!(m.line(2), Some(3));
        assert_eq!(m.line(3), Some(10));
        let loc = m.map(Location {
            file: "s.yaml.lua".into(),
            line: 2,
        });
        assert_eq!(loc.to_string(), "s.yaml:3");
        assert_eq!(
            m.map_text("s.yaml.lua:3: in function <s.yaml.lua:1>"),
            "s.yaml:10: in function <s.yaml:3>"
        );
    }
}
