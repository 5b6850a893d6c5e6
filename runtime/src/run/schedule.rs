//! The scheduler: worker threads take files in order and run them; the main thread watches
//! deadlines and signals, completes each file's report from the plan, and hands events to the
//! sink file by file, so that output does not depend on scheduling.
//!
//! A file that exceeds its timeout is stopped and its VMs killed; its running test carries the
//! one error, the tests it never reached are not run. A file whose thread does not stop is
//! reported without it, and another worker takes its place. On SIGINT, SIGTERM or SIGHUP every
//! file is stopped the same way and every file not yet started is reported as not run.

use super::discover::TestFile;
use super::{run_file, RunConfig};
use crate::event::{
    unix_now, ConsoleEvent, FileReport, Interruption, PlannedFile, Problem, RunEvent, Status,
    Summary, TestReport,
};
use crate::lua::control::{FileControl, StopReason};
use crate::lua::Emit;
use crate::machine::{cleanup, signals};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long a stopped file's thread gets to wind down before its report is written without it.
const ABANDON_AFTER: Duration = Duration::from_secs(10);
/// The same after an interrupt: the user is waiting.
const ABANDON_AFTER_INTERRUPT: Duration = Duration::from_secs(3);
/// Enough console to find where the kernel started reporting trouble (`console::excerpt`).
const CONSOLE_TAIL_LINES: usize = 300;
/// How long a file that timed out may take to print its tasks' stacks before it is killed.
const DUMP_PATIENCE: Duration = Duration::from_secs(3);
/// The stack of a worker thread (see `Pool::spawn_worker`).
pub(super) const WORKER_STACK: usize = 8 << 20;

/// Run groups tag each file's processes; unique within the process.
fn next_group() -> u64 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

enum Msg {
    Started(usize, Arc<FileControl>),
    Event(Box<RunEvent>),
    /// Files from this index on were never started: the run stopped (`--fail-fast`).
    Unstarted(usize, String),
}

/// The state shared by the worker threads.
struct Pool {
    files: Arc<Vec<TestFile>>,
    config: RunConfig,
    tx: mpsc::Sender<Msg>,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
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
        // A file's compiler and Lua run here: the stack of a main thread, not the 2 MiB a
        // spawned thread gets by default.
        let thread = std::thread::Builder::new()
            .name("provium-file".into())
            .stack_size(WORKER_STACK);
        let spawned = thread.spawn(move || loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(file) = files.get(i) else { break };
            let group = next_group();
            cleanup::set_group(group);
            let control = Arc::new(FileControl::new(group, config.timeout));
            let _ = tx.send(Msg::Started(i, control.clone()));
            let _ = tx.send(Msg::Event(Box::new(RunEvent::FileStarted { file: i })));
            let emitter = tx.clone();
            let emit: Emit = Rc::new(move |e| {
                let _ = emitter.send(Msg::Event(Box::new(e)));
            });
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_file(file, i, &config, emit, Some(control.clone()))
            }));
            let report = ran.unwrap_or_else(|panic| FileReport {
                path: file.display.clone(),
                file_error: Some(Problem::new(format!(
                    "internal error (a bug in Provium; please report it): {}",
                    panic_message(&panic)
                ))),
                ..Default::default()
            });
            // Set here, before this worker takes another file: the files nobody took yet are
            // claimed in one step, so each is either run or reported as not run.
            if config.fail_fast && report.is_bad() {
                stop.store(true, Ordering::SeqCst);
                let untaken = next.swap(files.len(), Ordering::SeqCst);
                let _ = tx.send(Msg::Unstarted(
                    untaken,
                    "--fail-fast stopped the run after a failure".into(),
                ));
            }
            let _ = tx.send(Msg::Event(Box::new(RunEvent::FileFinished {
                file: i,
                report,
            })));
            cleanup::set_group(0);
            crate::machine::vm::gate::forget_waits(group);
            // Another worker took this one's place when it was given up on.
            if control.is_abandoned() {
                break;
            }
        });
        spawned.unwrap_or_else(|e| {
            // No thread to be had: the run goes on with the workers it has.
            tracing::warn!("cannot start a worker thread: {e}");
            std::thread::spawn(|| {})
        })
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// What the main thread knows of a file that is running.
#[derive(Default)]
struct Running {
    control: Option<Arc<FileControl>>,
    /// Tests reported so far (a report written without the thread has only these).
    seen: Vec<TestReport>,
    /// Set when the file was stopped for its timeout.
    overdue: Option<Overdue>,
}

/// A file that ran out of time.
struct Overdue {
    console: Option<String>,
    /// Processes (QEMU, back-ends) killed with the file.
    killed: usize,
}

pub fn run(plan: super::Plan, config: &RunConfig, sink: &mut dyn FnMut(&RunEvent)) -> Summary {
    let started = Instant::now();
    let started_at = unix_now();
    let _in_progress = signals::RunInProgress::begin();
    let super::Plan {
        files,
        planned: plans,
    } = plan;
    let n = files.len();
    let jobs = config.jobs.max(1).min(n.max(1));
    sink(&RunEvent::RunStarted {
        files: plans.clone(),
        environment: super::environment::detect(config),
        jobs,
        started_at,
    });
    let (tx, rx) = mpsc::channel::<Msg>();
    let pool = Pool {
        files: Arc::new(files),
        config: config.clone(),
        tx,
        next: Arc::new(AtomicUsize::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    if signals::interrupted().is_some() {
        // Interrupted while planning: nothing starts, everything is reported as not run.
        pool.stop.store(true, Ordering::SeqCst);
    }
    let mut handles: Vec<_> = (0..jobs).map(|_| pool.spawn_worker()).collect();

    let mut order = Ordered::new(n);
    let mut summary = Summary {
        started_at,
        ..Default::default()
    };
    let mut running: Vec<Running> = (0..n).map(|_| Running::default()).collect();
    let mut interrupted: Option<Interruption> = None;
    while order.finished_count() < n {
        let msg = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ready = Vec::new();
        match msg {
            Some(Msg::Started(i, control)) => {
                if let Some(i) = interrupted {
                    // Taken just as the run stopped.
                    control.stop(StopReason::Interrupted(signals::name(i.signal)));
                    cleanup::kill_group(control.group);
                }
                running[i].control = Some(control);
            }
            Some(Msg::Unstarted(from, why)) => {
                for (i, plan) in plans.iter().enumerate().skip(from) {
                    ready.push(RunEvent::FileFinished {
                        file: i,
                        report: never_started(plan, &why),
                    });
                }
            }
            Some(Msg::Event(event)) => {
                let mut event = *event;
                let index = event.file();
                if index.is_some_and(|i| order.is_finished(i)) {
                    // The late words of a file whose report was already written.
                    continue;
                }
                match &mut event {
                    RunEvent::TestFinished { file, test } => {
                        lead_with_kernel(&mut test.status);
                        running[*file].seen.push(test.clone())
                    }
                    RunEvent::FileFinished { file, report } => {
                        let state = std::mem::take(&mut running[*file]);
                        complete(report, &plans[*file], &state);
                    }
                    _ => {}
                }
                ready.push(event);
            }
            None => {}
        }

        if interrupted.is_none() {
            if let Some(sig) = signals::interrupted() {
                let stop = Interruption { signal: sig };
                interrupted = Some(stop);
                pool.stop.store(true, Ordering::SeqCst);
                let untaken = pool.next.swap(n, Ordering::SeqCst);
                let why = format!("the run was interrupted by {}", stop.name());
                for (i, plan) in plans.iter().enumerate().skip(untaken) {
                    ready.push(RunEvent::FileFinished {
                        file: i,
                        report: never_started(plan, &why),
                    });
                }
                for r in &running {
                    if let Some(c) = &r.control {
                        c.stop(StopReason::Interrupted(stop.name()));
                        cleanup::kill_group(c.group);
                    }
                }
            }
        }

        // Deadlines: stop the file and kill its VMs; write its report if it does not stop.
        for (i, state) in running.iter_mut().enumerate() {
            let Some(control) = state.control.clone() else {
                continue;
            };
            if !control.is_stopped() && Instant::now() >= control.deadline() {
                control.dump_tasks(DUMP_PATIENCE);
                let console = control.console_tail(CONSOLE_TAIL_LINES);
                control.stop(StopReason::TimedOut(control.timeout()));
                let killed = cleanup::kill_group(control.group);
                state.overdue = Some(Overdue { console, killed });
            }
            let patience = if interrupted.is_some() {
                ABANDON_AFTER_INTERRUPT
            } else {
                ABANDON_AFTER
            };
            if control.stopped_for().is_some_and(|d| d >= patience) {
                cleanup::kill_group(control.group);
                control.abandon();
                let mut report = FileReport {
                    path: plans[i].path.clone(),
                    tests: std::mem::take(&mut state.seen),
                    started_at: unix_now(),
                    ..Default::default()
                };
                let state = std::mem::take(state);
                complete(&mut report, &plans[i], &state);
                ready.push(RunEvent::FileFinished { file: i, report });
                // Its thread is stuck; another takes its place.
                if !pool.stop.load(Ordering::SeqCst) {
                    handles.push(pool.spawn_worker());
                }
            }
        }
        for event in ready {
            if let Some(i) = event.file() {
                order.push(i, event);
            }
        }
        while let Some(event) = order.pop_ready() {
            if let RunEvent::FileFinished { report, .. } = &event {
                summary.counts.add(report.counts());
                summary.reports.push(report.clone());
            }
            sink(&event);
        }
    }
    drop(pool.tx);
    for h in handles {
        if h.is_finished() {
            let _ = h.join();
        }
    }
    summary.duration = started.elapsed();
    summary.interrupted = interrupted;
    sink(&RunEvent::RunFinished {
        summary: summary.clone(),
    });
    summary
}

/// A problem the kernel caused says so first, in every report: its message leads with the
/// kernel's own line (`Kernel panic - not syncing: …`, `BUG: …`, `WARNING: …`), then what
/// Provium saw (`vm:exec: the VM was lost: …`).
fn lead_problem(p: &mut Problem) {
    let Some(line) = p
        .console
        .as_ref()
        .and_then(crate::machine::vm::console::headline)
    else {
        return;
    };
    if !p.message.starts_with(&line) {
        p.message = format!("{line} ({})", p.message);
    }
}

fn lead_with_kernel(status: &mut Status) {
    if let Status::Failed(p) | Status::Errored(p) = status {
        lead_problem(p);
    }
}

/// The report of a file that never started: every planned test, not run.
fn never_started(plan: &PlannedFile, why: &str) -> FileReport {
    let mut report = FileReport {
        path: plan.path.clone(),
        suite: plan.suite.clone(),
        kernel: plan.kernel.clone(),
        started_at: unix_now(),
        ..Default::default()
    };
    fill_not_run(&mut report, plan, why);
    if report.tests.is_empty() {
        // Nothing was planned (a file that cannot be listed): the file itself is not run.
        report.tests.push(TestReport::not_run(
            "(file)",
            crate::event::Location {
                file: plan.path.clone(),
                line: 0,
            },
            why,
        ));
    }
    report
}

fn fill_not_run(report: &mut FileReport, plan: &PlannedFile, why: &str) {
    let reported: std::collections::HashSet<String> =
        report.tests.iter().map(|t| t.name.clone()).collect();
    for t in &plan.tests {
        if !reported.contains(&t.name) {
            report
                .tests
                .push(TestReport::not_run(&t.name, t.location.clone(), why));
        }
    }
}

/// Completes a file's report: a stopped file has one error where it stopped (a timeout) and
/// its unreached tests not run; a file that ended at an error outside tests reports the tests
/// it never reached as not run.
fn complete(report: &mut FileReport, plan: &PlannedFile, state: &Running) {
    report.suite = plan.suite.clone();
    report.kernel = plan.kernel.clone();
    // A report made without the file's own (a panic caught in its thread) keeps the tests the
    // file reported before it went.
    for t in &state.seen {
        if !report.tests.iter().any(|r| r.name == t.name) {
            report.tests.push(t.clone());
        }
    }
    let stop = state.control.as_ref().and_then(|c| c.stop_reason());
    let current = state.control.as_ref().and_then(|c| c.stopped_during());
    let Some(stop) = stop else {
        if let Some(p) = &report.file_error {
            let why = format!("the file stopped early: {}", p.message);
            fill_not_run(report, plan, &why);
        }
        lead_all(report);
        return;
    };
    let why = stop.to_string();
    let console = state
        .overdue
        .as_ref()
        .and_then(|o| o.console.clone())
        .or_else(|| report.console.clone());
    // What went wrong after the stop (a VM call that failed because the VM was killed) is a
    // consequence, not another error.
    let after = report.file_error.take();
    let timed_out = matches!(stop, StopReason::TimedOut(_));
    let mut message = why.clone();
    if let Some(o) = &state.overdue {
        if o.killed > 0 {
            message.push_str("; its VMs were killed");
        }
    }
    let excerpt = console.as_deref().map(|c| {
        let otherwise = if timed_out {
            ConsoleEvent::TimedOut
        } else {
            ConsoleEvent::VmLost
        };
        crate::machine::vm::console::excerpt(c, otherwise)
    });
    let detail = after
        .as_ref()
        .map(|p| format!("then: {}", p.message))
        .unwrap_or_default();
    let running_test = current.as_ref().map(|(name, _)| name.as_str());
    match (running_test, timed_out) {
        (Some(name), true) => {
            let problem = Problem {
                message: format!("{message} while this test ran"),
                location: None,
                detail,
                console: excerpt,
            };
            match report.tests.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    // Where the test was when it was stopped stays.
                    let location = t.status.problem().and_then(|p| p.location.clone());
                    t.status = Status::Errored(Problem {
                        location,
                        ..problem
                    });
                }
                None => {
                    let location = current.as_ref().map(|(_, l)| l.clone()).unwrap_or(
                        crate::event::Location {
                            file: plan.path.clone(),
                            line: 0,
                        },
                    );
                    report.tests.push(TestReport {
                        name: name.to_string(),
                        location,
                        status: Status::Errored(problem),
                        duration: Duration::ZERO,
                        output: String::new(),
                        observed: None,
                    });
                }
            }
        }
        (Some(name), false) => {
            // Interrupted: the running test did not finish; it is not run, not failed.
            match report.tests.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    t.status = Status::NotRun {
                        reason: why.clone(),
                    }
                }
                None => {
                    if let Some((_, l)) = &current {
                        report
                            .tests
                            .push(TestReport::not_run(name, l.clone(), &why));
                    }
                }
            }
        }
        (None, true) => {
            report.file_error = Some(Problem {
                message,
                location: None,
                detail,
                console: excerpt,
            })
        }
        (None, false) => {}
    }
    if console.is_some() {
        report.console = console;
    }
    fill_not_run(report, plan, &why);
    lead_all(report);
}

fn lead_all(report: &mut FileReport) {
    for t in &mut report.tests {
        lead_with_kernel(&mut t.status);
    }
    if let Some(p) = &mut report.file_error {
        lead_problem(p);
    }
}

/// Holds back the events of later files until earlier files are done, so that output does not
/// depend on scheduling. The file at the front streams live.
struct Ordered {
    front: usize,
    queues: BTreeMap<usize, Vec<RunEvent>>,
    finished: Vec<bool>,
    finished_count: usize,
    ready: VecDeque<RunEvent>,
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

    fn push(&mut self, index: usize, ev: RunEvent) {
        if self.finished[index] {
            return;
        }
        let last = matches!(ev, RunEvent::FileFinished { .. });
        if index == self.front {
            self.ready.push_back(ev);
        } else {
            self.queues.entry(index).or_default().push(ev);
        }
        if last {
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

    fn pop_ready(&mut self) -> Option<RunEvent> {
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
