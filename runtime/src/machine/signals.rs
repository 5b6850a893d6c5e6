//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, a cancelled CI job, a closed terminal) all stop Provium
//! the same way: every VM is stopped, every temporary directory removed, and the process exits
//! with 128 + the signal (130, 143, 129), as shells expect.
//!
//! While a run is in progress, the first signal only stops it: the runner reports what finished
//! and the rest as not run, the command writes its reports, then exits with the signal's status.
//! A second signal, or a run that has not finished 15 s later, exits at once. Nothing here can
//! panic: messages to a closed terminal are dropped.

use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

static INTERRUPT: AtomicI32 = AtomicI32::new(0);
static RUNNERS: AtomicUsize = AtomicUsize::new(0);

/// How long a run may take to write its reports after the first signal.
const GRACE: Duration = Duration::from_secs(15);

/// Starts the thread that receives the signals (once per process).
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("provium-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    received(sig);
                }
            });
    });
}

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "\nprovium: {text}");
}

fn received(sig: i32) {
    let first = INTERRUPT
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    let name = name(sig);
    if !first || RUNNERS.load(Ordering::SeqCst) == 0 {
        say(&format!("{name}: stopping VMs"));
        exit_now(sig);
    }
    say(&format!(
        "{name}: stopping the run and writing its reports (again to stop at once)"
    ));
    // Every VM call in flight fails at once; the runner turns that into reports.
    super::registry::kill_all_processes();
    std::thread::spawn(move || {
        std::thread::sleep(GRACE);
        say("the run did not stop in time; exiting");
        exit_now(sig);
    });
}

fn exit_now(sig: i32) -> ! {
    super::registry::cleanup_all();
    std::process::exit(128 + sig)
}

/// The signal that interrupted this process, if one did.
pub fn interrupted() -> Option<i32> {
    match INTERRUPT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// Held by a run in progress: a first signal then leaves it to the run to stop and report.
pub struct RunInProgress(());

impl RunInProgress {
    pub fn begin() -> RunInProgress {
        install();
        RUNNERS.fetch_add(1, Ordering::SeqCst);
        RunInProgress(())
    }
}

impl Drop for RunInProgress {
    fn drop(&mut self) {
        RUNNERS.fetch_sub(1, Ordering::SeqCst);
    }
}
