//! Running test files: discovery, filtering, scheduling on worker threads, and handing events to
//! a reporter in a deterministic order.

pub mod control;
pub mod discover;
pub mod filter;
pub mod last_run;
pub mod model;
pub mod partition;

use crate::lua::{self, Events, SessionConfig};
use crate::profile::Profiles;
use crate::vm::BootOptions;
use control::FileControl;
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
    /// Fixture definitions and whether snapshots are resumed.
    pub fixtures: Option<crate::fixture::FixtureUse>,
    /// How long a file may run unless it says otherwise (`provium.timeout`, a spec's `timeout:`).
    pub timeout: Duration,
}

impl RunConfig {
    /// A run with `profiles` and the defaults: one file at a time, output captured, specs
    /// compiled, no fixtures, the default file timeout.
    pub fn new(profiles: Profiles) -> RunConfig {
        RunConfig {
            filter: None,
            capture: true,
            list_only: false,
            jobs: 1,
            fail_fast: false,
            profiles,
            defaults: BootOptions::default(),
            record: false,
            compile: Some(crate::specs::compiler()),
            fixtures: None,
            timeout: control::DEFAULT_FILE_TIMEOUT,
        }
    }
}

/// A reporter that says nothing, for callers that read the summary.
pub struct Quiet;
impl Reporter for Quiet {}

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
    FileStarted(usize, Option<Arc<FileControl>>),
    BootStarted(usize, String),
    BootFinished(usize),
    Test(usize, TestReport),
    Output(usize, String),
    FileDone(usize, FileReport),
}

impl Event {
    fn index(&self) -> usize {
        match self {
            Event::FileStarted(i, _)
            | Event::BootStarted(i, _)
            | Event::BootFinished(i)
            | Event::Test(i, _)
            | Event::Output(i, _)
            | Event::FileDone(i, _) => *i,
        }
    }
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
pub fn run_file(
    file: &TestFile,
    config: &RunConfig,
    events: Rc<dyn Events>,
    control: Option<Arc<FileControl>>,
) -> FileReport {
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
        fixtures: config.fixtures.clone(),
        snapshot_dir: None,
        control,
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

/// How long a cancelled file's thread gets to wind down before its report is written without it.
const ABANDON_AFTER: Duration = Duration::from_secs(10);
const CONSOLE_TAIL_LINES: usize = 40;

/// Run groups tag each file's processes; unique within the process.
fn next_group() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The state shared by the worker threads.
struct Pool {
    files: Arc<Vec<TestFile>>,
    config: RunConfig,
    tx: mpsc::Sender<Event>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Pool {
    /// A worker takes files until none are left or the run stops.
    fn spawn_worker(&self) -> std::thread::JoinHandle<()> {
        let (files, tx, next, stop, config) = (
            self.files.clone(),
            self.tx.clone(),
            self.next.clone(),
            self.stop.clone(),
            self.config.clone(),
        );
        std::thread::spawn(move || loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(file) = files.get(i) else { break };
            let group = next_group();
            crate::cleanup::set_group(group);
            let control = Arc::new(FileControl::new(group, config.timeout));
            let _ = tx.send(Event::FileStarted(i, Some(control.clone())));
            let events = Rc::new(ChannelEvents {
                index: i,
                tx: tx.clone(),
            });
            let report = run_file(file, &config, events, Some(control.clone()));
            // Set here, before this worker takes another file; the main thread hears of the
            // failure only later.
            if config.fail_fast && report.is_bad() {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = tx.send(Event::FileDone(i, report));
            crate::cleanup::set_group(0);
            // Another worker took this one's place when it was given up on.
            if control.is_abandoned() {
                break;
            }
        })
    }
}

/// A file that ran out of time.
struct Overdue {
    timeout: Duration,
    console: Option<String>,
    /// Processes (QEMU, back-ends) killed with the file.
    killed: usize,
}

/// Runs `files` with up to `config.jobs` files at a time. Events reach the reporter file by file,
/// in the order of `files`, whatever order the files finish in. A file that exceeds its timeout
/// has its VMs killed and its remaining tests reported as not run; the other files go on.
pub fn run(files: Vec<TestFile>, config: &RunConfig, reporter: &mut dyn Reporter) -> Summary {
    let started = Instant::now();
    reporter.run_started(&files);
    let n = files.len();
    let (tx, rx) = mpsc::channel::<Event>();
    let pool = Pool {
        files: Arc::new(files),
        config: config.clone(),
        tx,
        next: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let jobs = config.jobs.max(1).min(n.max(1));
    let mut handles: Vec<_> = (0..jobs).map(|_| pool.spawn_worker()).collect();

    let mut order = Ordered::new(n);
    let mut summary = Summary::default();
    let mut controls: Vec<Option<Arc<FileControl>>> = vec![None; n];
    let mut overdue: BTreeMap<usize, Overdue> = BTreeMap::new();
    let mut seen: Vec<Vec<TestReport>> = vec![Vec::new(); n];
    while order.finished_count() < n {
        let event = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ready = Vec::new();
        if let Some(mut event) = event {
            let index = event.index();
            if order.is_finished(index) {
                // The late words of a file whose report was already written.
                continue;
            }
            match &mut event {
                Event::FileStarted(i, control) => controls[*i] = control.take(),
                Event::Test(i, t) => seen[*i].push(t.clone()),
                Event::FileDone(i, report) => {
                    if let Some(o) = overdue.remove(i) {
                        mark_timed_out(report, &o);
                    }
                    controls[*i] = None;
                }
                _ => {}
            }
            ready.push(event);
        }
        // Deadlines: cancel the file and kill its VMs; write its report if it does not stop.
        for (i, slot) in controls.iter_mut().enumerate() {
            let Some(control) = slot.as_ref() else {
                continue;
            };
            if !control.is_cancelled() && Instant::now() >= control.deadline() {
                let console = control.console_tail(CONSOLE_TAIL_LINES);
                control.cancel();
                let killed = crate::cleanup::kill_group(control.group);
                overdue.insert(
                    i,
                    Overdue {
                        timeout: control.timeout(),
                        console,
                        killed,
                    },
                );
            } else if control.cancelled_for().is_some_and(|d| d >= ABANDON_AFTER) {
                crate::cleanup::kill_group(control.group);
                control.abandon();
                let mut report = FileReport {
                    path: pool.files[i].display.clone(),
                    tests: std::mem::take(&mut seen[i]),
                    ..Default::default()
                };
                if let Some(o) = overdue.remove(&i) {
                    mark_timed_out(&mut report, &o);
                }
                *slot = None;
                ready.push(Event::FileDone(i, report));
                // Its thread is stuck; another takes its place.
                handles.push(pool.spawn_worker());
            }
        }
        for event in ready {
            let index = event.index();
            if let Event::FileDone(_, report) = &event {
                // Workers stop themselves on a failure; a report written without its worker
                // (an abandoned file) stops the run here.
                if config.fail_fast && report.is_bad() {
                    pool.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            order.push(index, event);
        }
        while let Some(ev) = order.pop_ready() {
            deliver(ev, &pool.files, reporter, &mut summary);
        }
        // After --fail-fast, the run ends when every file a worker took has its report.
        let taken = pool.next.load(std::sync::atomic::Ordering::SeqCst).min(n);
        if pool.stop.load(std::sync::atomic::Ordering::SeqCst) && order.finished_count() >= taken {
            break;
        }
    }
    drop(pool.tx);
    for h in handles {
        if h.is_finished() {
            let _ = h.join();
        }
    }
    summary.not_run = n - order.finished_count();
    summary.duration = started.elapsed();
    reporter.run_finished(&summary);
    summary
}

fn mark_timed_out(report: &mut FileReport, o: &Overdue) {
    let detail = match report.file_error.take() {
        Some(previous) => format!("then: {}", previous.message),
        None => String::new(),
    };
    if let Some(c) = &o.console {
        report.console = Some(c.clone());
    }
    let mut message = format!("the file timed out after {:.0} s", o.timeout.as_secs_f64());
    if o.killed > 0 {
        message.push_str("; its VMs were killed");
    }
    report.file_error = Some(model::Problem {
        message,
        location: None,
        detail,
    });
}

fn deliver(ev: Event, files: &[TestFile], reporter: &mut dyn Reporter, summary: &mut Summary) {
    match ev {
        Event::FileStarted(i, _) => reporter.file_started(&files[i]),
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
    finished_count: usize,
    ready: std::collections::VecDeque<Event>,
}

impl Ordered {
    fn new(n: usize) -> Ordered {
        Ordered {
            front: 0,
            queues: BTreeMap::new(),
            finished: vec![false; n],
            finished_count: 0,
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
        if last && !self.finished[index] {
            self.finished[index] = true;
            self.finished_count += 1;
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

    /// Whether the file's report has been pushed (its later events are stale).
    fn is_finished(&self, index: usize) -> bool {
        self.finished[index]
    }

    fn finished_count(&self) -> usize {
        self.finished_count
    }
}
