//! What the runner can do to a running file from outside its thread: know its VMs' consoles,
//! know which test runs, change its deadline (`provium.timeout`), and stop it (a timeout, an
//! interrupted run).

use crate::event::Location;
use crate::machine::sync::lock;
use crate::machine::vm::dump::DumpTarget;
use crate::machine::vm::Vm;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default time a file may run.
pub const DEFAULT_FILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest time limit a file may be given: a week (the compiler's limit, so that `check`
/// and `test` agree).
pub const MAX_FILE_TIMEOUT: Duration =
    Duration::from_secs(provium_compiler::check::MAX_TIMEOUT_SECS as u64);

/// A file time limit from seconds, as `--timeout`, `provium.timeout` and a spec's `timeout:`
/// give it.
pub fn timeout_from_secs(secs: f64) -> Result<Duration, String> {
    provium_compiler::check::check_timeout(secs).map(Duration::from_secs_f64)
}

/// Why the runner stopped a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    TimedOut(Duration),
    /// The run was interrupted by this signal (its name).
    Interrupted(&'static str),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::TimedOut(t) => {
                write!(f, "the file timed out after {:.0} s", t.as_secs_f64())
            }
            StopReason::Interrupted(sig) => write!(f, "the run was interrupted by {sig}"),
        }
    }
}

/// A stop: why, when, and the test that was running (its name and where it is defined).
type Stop = (StopReason, Instant, Option<(String, Location)>);

#[derive(Debug)]
pub struct FileControl {
    /// The run group of the file's processes (see `cleanup::set_group`).
    pub group: u64,
    started: Instant,
    timeout: Mutex<Duration>,
    stopped: AtomicBool,
    /// Why and when the file was stopped, and the test that was running then.
    stop: Mutex<Option<Stop>>,
    abandoned: AtomicBool,
    consoles: Mutex<Vec<PathBuf>>,
    /// Where to ask the file's VMs for a task dump before they are killed.
    dumps: Mutex<Vec<DumpTarget>>,
    current: Mutex<Option<(String, Location)>>,
}

impl FileControl {
    pub fn new(group: u64, timeout: Duration) -> FileControl {
        FileControl {
            group,
            started: Instant::now(),
            timeout: Mutex::new(timeout),
            stopped: AtomicBool::new(false),
            stop: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            consoles: Mutex::new(Vec::new()),
            dumps: Mutex::new(Vec::new()),
            current: Mutex::new(None),
        }
    }

    /// Remembers a VM's console log, to show its tail if the file is stopped.
    pub fn watch(&self, vm: &Vm) {
        lock(&self.consoles).push(vm.console_log().to_path_buf());
        if let Some(target) = vm.dump_target() {
            let mut dumps = lock(&self.dumps);
            // A file may boot many VMs: forget those that are gone.
            dumps.retain(|t| t.console.is_file());
            dumps.push(target);
        }
    }

    /// Asks the file's VMs that still run to print their tasks' stacks on their consoles, and
    /// waits up to `patience` for them: the excerpt of a file that timed out then shows where
    /// it hangs.
    pub fn dump_tasks(&self, patience: Duration) -> usize {
        let mut dumps = lock(&self.dumps);
        dumps.retain(|t| t.console.is_file());
        crate::machine::vm::dump::request(&dumps, patience)
    }

    pub fn set_timeout(&self, timeout: Duration) {
        *lock(&self.timeout) = timeout.min(MAX_FILE_TIMEOUT);
    }

    pub fn timeout(&self) -> Duration {
        *lock(&self.timeout)
    }

    /// When the file runs out of time: its limit counts from the start, without the time its
    /// VMs waited at the machine-wide gate for another run's VMs (that wait is not the file's).
    pub fn deadline(&self) -> Instant {
        let t = self.timeout();
        let start = self.started + crate::machine::vm::gate::waited(self.group);
        start
            .checked_add(t)
            .unwrap_or_else(|| start + MAX_FILE_TIMEOUT)
    }

    /// How long the file's VMs have waited at the gate so far.
    pub fn waited(&self) -> Duration {
        crate::machine::vm::gate::waited(self.group)
    }

    pub fn set_current(&self, test: Option<(&str, &Location)>) {
        *lock(&self.current) = test.map(|(n, l)| (n.to_string(), l.clone()));
    }

    /// The test running now, and where it is defined.
    pub fn current(&self) -> Option<(String, Location)> {
        lock(&self.current).clone()
    }

    /// Stops the file: the Lua hook ends the running test, the tests not reached are not run.
    /// The first reason stays.
    pub fn stop(&self, reason: StopReason) {
        let running = self.current();
        lock(&self.stop).get_or_insert_with(|| (reason, Instant::now(), running));
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// The test that was running when the file was stopped.
    pub fn stopped_during(&self) -> Option<(String, Location)> {
        lock(&self.stop).as_ref().and_then(|(_, _, t)| t.clone())
    }

    pub fn is_stopped(&self) -> bool {
        self.observe_interrupt();
        self.stopped.load(Ordering::SeqCst)
    }

    /// The signal handler kills every VM at once, before the runner gets round to stopping
    /// each file: a VM call that fails then must already see the file as interrupted, or its
    /// test would be reported as an error and the file would go on to its next tests.
    fn observe_interrupt(&self) {
        if !self.stopped.load(Ordering::SeqCst) {
            if let Some(sig) = crate::machine::signals::interrupted() {
                self.stop(StopReason::Interrupted(crate::machine::signals::name(sig)));
            }
        }
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.observe_interrupt();
        lock(&self.stop).as_ref().map(|(r, _, _)| r.clone())
    }

    /// Why the file was stopped, as a test that was not run says it.
    pub fn stopped_because(&self) -> Option<String> {
        self.stop_reason().map(|r| r.to_string())
    }

    /// How long ago the file was stopped.
    pub fn stopped_for(&self) -> Option<Duration> {
        lock(&self.stop).as_ref().map(|(_, t, _)| t.elapsed())
    }

    /// The runner gave up waiting for the file's thread and wrote its report without it.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// The tail of the newest console of the file's VMs that still exists.
    pub fn console_tail(&self, lines: usize) -> Option<String> {
        lock(&self.consoles)
            .iter()
            .rev()
            .filter(|p| p.is_file())
            .map(|p| crate::machine::vm::console::tail(p, lines))
            .find(|t| !t.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_bad_timeouts_are_refused_and_deadlines_never_overflow() {
        assert!(timeout_from_secs(1e308).unwrap_err().contains("a week"));
        assert!(timeout_from_secs(f64::NAN).is_err());
        assert!(timeout_from_secs(-1.0).is_err());
        assert_eq!(timeout_from_secs(2.5).unwrap(), Duration::from_millis(2500));
        let c = FileControl::new(1, Duration::from_secs(1));
        c.set_timeout(Duration::MAX);
        assert_eq!(c.timeout(), MAX_FILE_TIMEOUT);
        assert!(c.deadline() > Instant::now());
    }

    #[test]
    fn the_first_stop_reason_stays() {
        let c = FileControl::new(1, Duration::from_secs(1));
        assert!(c.stopped_because().is_none());
        c.stop(StopReason::TimedOut(Duration::from_secs(6)));
        c.stop(StopReason::Interrupted("SIGINT"));
        assert_eq!(
            c.stopped_because().as_deref(),
            Some("the file timed out after 6 s")
        );
    }
}
