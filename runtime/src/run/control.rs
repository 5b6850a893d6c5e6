//! What the runner can do to a running file from outside its thread: know its VMs' consoles,
//! know which test runs, change its deadline (`provium.timeout`), and cancel it.

use crate::sync::lock;
use crate::vm::Vm;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default time a file may run.
pub const DEFAULT_FILE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct FileControl {
    /// The run group of the file's processes (see `cleanup::set_group`).
    pub group: u64,
    started: Instant,
    timeout: Mutex<Duration>,
    cancelled: AtomicBool,
    cancelled_at: Mutex<Option<Instant>>,
    abandoned: AtomicBool,
    consoles: Mutex<Vec<PathBuf>>,
    current: Mutex<Option<String>>,
}

impl FileControl {
    pub fn new(group: u64, timeout: Duration) -> FileControl {
        FileControl {
            group,
            started: Instant::now(),
            timeout: Mutex::new(timeout),
            cancelled: AtomicBool::new(false),
            cancelled_at: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            consoles: Mutex::new(Vec::new()),
            current: Mutex::new(None),
        }
    }

    /// Remembers a VM's console log, to show its tail if the file times out.
    pub fn watch(&self, vm: &Vm) {
        lock(&self.consoles).push(vm.console_log().to_path_buf());
    }

    pub fn set_timeout(&self, timeout: Duration) {
        *lock(&self.timeout) = timeout;
    }

    pub fn timeout(&self) -> Duration {
        *lock(&self.timeout)
    }

    pub fn deadline(&self) -> Instant {
        self.started + self.timeout()
    }

    pub fn set_current(&self, test: Option<&str>) {
        *lock(&self.current) = test.map(str::to_string);
    }

    pub fn current(&self) -> Option<String> {
        lock(&self.current).clone()
    }

    pub fn cancel(&self) {
        lock(&self.cancelled_at).get_or_insert_with(Instant::now);
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// The runner gave up waiting for the file's thread and wrote its report without it.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// How long ago the file was cancelled.
    pub fn cancelled_for(&self) -> Option<Duration> {
        lock(&self.cancelled_at).map(|t| t.elapsed())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The tail of the newest console of the file's VMs that still exists.
    pub fn console_tail(&self, lines: usize) -> Option<String> {
        lock(&self.consoles)
            .iter()
            .rev()
            .filter(|p| p.is_file())
            .map(|p| crate::vm::console::tail(p, lines))
            .find(|t| !t.trim().is_empty())
    }
}
