//! One test file's run: its report in progress, its VMs, its captured output.

use super::vm::VmSlot;
use crate::profile::Profiles;
use crate::run::model::{FileReport, TestReport};
use crate::vm::{BootOptions, VmInfo};
use mlua::Lua;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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
    pub file: String,
    pub events: Rc<dyn Events>,
    pub capture: bool,
    pub filter: Option<TestFilter>,
    pub list_only: bool,
    pub profiles: Profiles,
    pub defaults: BootOptions,
    pub report: RefCell<FileReport>,
    pub vms: RefCell<Vec<Rc<RefCell<VmSlot>>>>,
    /// The output of the running test; `None` outside tests.
    pub current: RefCell<Option<String>>,
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
}

impl Session {
    pub fn new(c: SessionConfig) -> Session {
        Session {
            report: RefCell::new(FileReport {
                path: c.file.clone(),
                ..Default::default()
            }),
            file: c.file,
            events: c.events,
            capture: c.capture,
            filter: c.filter,
            list_only: c.list_only,
            profiles: c.profiles,
            defaults: c.defaults,
            vms: RefCell::new(Vec::new()),
            current: RefCell::new(None),
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

    pub fn record_vm(&self, info: VmInfo) {
        self.report.borrow_mut().vms.push(info);
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

    pub fn selected(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|f| f(name))
    }

    /// Printed text goes to the running test's capture, the file's, or (`--no-capture`) the
    /// terminal.
    pub fn print(&self, text: &str) {
        if !self.capture {
            self.events.output(&self.file, text);
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
