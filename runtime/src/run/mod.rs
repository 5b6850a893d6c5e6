//! Running test files: discovery, filtering, scheduling on worker threads, and handing events to
//! a reporter in a deterministic order.

pub mod discover;
pub mod filter;
pub mod model;

use crate::lua::{self, Events, SessionConfig};
use crate::profile::Profiles;
use crate::vm::BootOptions;
use discover::{FileKind, TestFile};
use filter::Filter;
use model::{Counts, FileReport, TestReport};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Compiles a YAML spec into the Lua chunk that runs it.
pub type SpecCompiler = Arc<dyn Fn(&TestFile) -> Result<String, String> + Send + Sync>;

/// How to run.
#[derive(Clone)]
pub struct RunConfig {
    pub filter: Option<Filter>,
    pub capture: bool,
    pub list_only: bool,
    pub jobs: usize,
    pub fail_fast: bool,
    pub profiles: Profiles,
    pub defaults: BootOptions,
    /// Record outcomes instead of checking them (`provium record`).
    pub record: bool,
    /// Compiles a YAML spec into (chunk name, Lua code); absent until specs are supported.
    pub compile: Option<SpecCompiler>,
}

/// What happens during a run, in an order that does not depend on scheduling.
pub trait Reporter {
    fn run_started(&mut self, _files: &[TestFile]) {}
    fn file_started(&mut self, _file: &TestFile) {}
    fn boot_started(&mut self, _file: &TestFile, _profile: &str) {}
    fn boot_finished(&mut self, _file: &TestFile) {}
    fn test_finished(&mut self, _file: &TestFile, _test: &TestReport) {}
    fn output(&mut self, _file: &TestFile, _text: &str) {}
    fn file_finished(&mut self, _file: &TestFile, _report: &FileReport) {}
    fn run_finished(&mut self, _summary: &Summary) {}
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub reports: Vec<FileReport>,
    pub counts: Counts,
    pub duration: Duration,
    /// Files not run because `--fail-fast` stopped the run.
    pub not_run: usize,
}

impl Summary {
    pub fn is_success(&self) -> bool {
        self.counts.failed == 0 && self.counts.errored == 0 && self.not_run == 0
    }
}

enum Event {
    FileStarted(usize),
    BootStarted(usize, String),
    BootFinished(usize),
    Test(usize, TestReport),
    Output(usize, String),
    FileDone(usize, FileReport),
}

/// Forwards a session's events to the main thread.
struct ChannelEvents {
    index: usize,
    tx: mpsc::Sender<Event>,
}

impl Events for ChannelEvents {
    fn boot_started(&self, profile: &str) {
        let _ = self
            .tx
            .send(Event::BootStarted(self.index, profile.to_string()));
    }
    fn boot_finished(&self) {
        let _ = self.tx.send(Event::BootFinished(self.index));
    }
    fn test_finished(&self, _file: &str, test: &TestReport) {
        let _ = self.tx.send(Event::Test(self.index, test.clone()));
    }
    fn output(&self, _file: &str, text: &str) {
        let _ = self.tx.send(Event::Output(self.index, text.to_string()));
    }
}

/// Runs one file on the current thread.
pub fn run_file(file: &TestFile, config: &RunConfig, events: Rc<dyn Events>) -> FileReport {
    let filter = config.filter.clone().map(|f| {
        let display = file.display.clone();
        Rc::new(move |name: &str| f.matches(&display, name)) as lua::TestFilter
    });
    let mut session = SessionConfig {
        file: file.display.clone(),
        events,
        capture: config.capture,
        filter,
        list_only: config.list_only,
        profiles: config.profiles.clone(),
        defaults: config.defaults.clone(),
        source_map: None,
        record: config.record,
    };
    match file.kind {
        FileKind::Lua => lua::run_file(session, &file.path),
        FileKind::Spec => match &config.compile {
            Some(compile) => match compile(file) {
                Ok(code) => {
                    let chunk = format!("{}.lua", file.display);
                    session.source_map =
                        Some(lua::SourceMap::from_markers(&chunk, &file.display, &code));
                    lua::run_chunk(session, &chunk, &code)
                }
                Err(text) => {
                    // The first line is `file:line:col: message`; the rest shows the source.
                    let first = text.lines().next().unwrap_or("").to_string();
                    let (location, message) = split_spec_location(&first);
                    FileReport {
                        path: file.display.clone(),
                        file_error: Some(model::Problem {
                            message,
                            location,
                            detail: text.lines().skip(1).collect::<Vec<_>>().join("\n"),
                        }),
                        ..Default::default()
                    }
                }
            },
            None => FileReport {
                path: file.display.clone(),
                file_error: Some(model::Problem {
                    message: "YAML specs cannot be run by this build".into(),
                    location: None,
                    detail: String::new(),
                }),
                ..Default::default()
            },
        },
    }
}

/// `file:line:col: message` → the location and the message.
fn split_spec_location(line: &str) -> (Option<model::Location>, String) {
    let mut parts = line.splitn(4, ':');
    if let (Some(f), Some(l), Some(_col), Some(msg)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        if let Ok(l) = l.parse::<u32>() {
            return (
                Some(model::Location {
                    file: f.to_string(),
                    line: l,
                }),
                msg.trim().to_string(),
            );
        }
    }
    (None, line.to_string())
}

/// Runs `files` with up to `config.jobs` files at a time. Events reach the reporter file by file,
/// in the order of `files`, whatever order the files finish in.
pub fn run(files: Vec<TestFile>, config: &RunConfig, reporter: &mut dyn Reporter) -> Summary {
    let started = Instant::now();
    reporter.run_started(&files);
    let files = Arc::new(files);
    let (tx, rx) = mpsc::channel::<Event>();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let jobs = config.jobs.max(1).min(files.len().max(1));
    let mut handles = Vec::new();
    for _ in 0..jobs {
        let (files, tx, next, stop, config) = (
            files.clone(),
            tx.clone(),
            next.clone(),
            stop.clone(),
            config.clone(),
        );
        handles.push(std::thread::spawn(move || loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(file) = files.get(i) else { break };
            let _ = tx.send(Event::FileStarted(i));
            let events = Rc::new(ChannelEvents {
                index: i,
                tx: tx.clone(),
            });
            let report = run_file(file, &config, events);
            let _ = tx.send(Event::FileDone(i, report));
        }));
    }
    drop(tx);

    let mut order = Ordered::new(files.len());
    let mut summary = Summary::default();
    let mut done = vec![false; files.len()];
    for event in rx {
        let index = match &event {
            Event::FileStarted(i)
            | Event::BootStarted(i, _)
            | Event::BootFinished(i)
            | Event::Test(i, _)
            | Event::Output(i, _)
            | Event::FileDone(i, _) => *i,
        };
        if let Event::FileDone(_, report) = &event {
            done[index] = true;
            if config.fail_fast && report.is_bad() {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        order.push(index, event);
        while let Some(ev) = order.pop_ready() {
            deliver(ev, &files, reporter, &mut summary);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    summary.not_run = done.iter().filter(|d| !**d).count();
    summary.duration = started.elapsed();
    reporter.run_finished(&summary);
    summary
}

fn deliver(ev: Event, files: &[TestFile], reporter: &mut dyn Reporter, summary: &mut Summary) {
    match ev {
        Event::FileStarted(i) => reporter.file_started(&files[i]),
        Event::BootStarted(i, p) => reporter.boot_started(&files[i], &p),
        Event::BootFinished(i) => reporter.boot_finished(&files[i]),
        Event::Test(i, t) => reporter.test_finished(&files[i], &t),
        Event::Output(i, text) => reporter.output(&files[i], &text),
        Event::FileDone(i, report) => {
            summary.counts.add(report.counts());
            reporter.file_finished(&files[i], &report);
            summary.reports.push(report);
        }
    }
}

/// Holds back the events of later files until earlier files are done, so that output does not
/// depend on scheduling. The file at the front streams live.
struct Ordered {
    front: usize,
    queues: BTreeMap<usize, Vec<Event>>,
    finished: Vec<bool>,
    ready: std::collections::VecDeque<Event>,
}

impl Ordered {
    fn new(n: usize) -> Ordered {
        Ordered {
            front: 0,
            queues: BTreeMap::new(),
            finished: vec![false; n],
            ready: Default::default(),
        }
    }

    fn push(&mut self, index: usize, ev: Event) {
        let last = matches!(ev, Event::FileDone(..));
        if index == self.front {
            self.ready.push_back(ev);
        } else {
            self.queues.entry(index).or_default().push(ev);
        }
        if last {
            self.finished[index] = true;
        }
        // Advance past finished files, releasing the next file's backlog.
        while self.front < self.finished.len() && self.finished[self.front] {
            self.front += 1;
            if let Some(q) = self.queues.remove(&self.front) {
                self.ready.extend(q);
            }
        }
    }

    fn pop_ready(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }
}
