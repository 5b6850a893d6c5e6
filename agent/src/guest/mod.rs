//! Everything that runs inside the guest.

mod boot;
mod clean;
mod control;
mod creds;
mod dump;
mod exec;
mod executor;
mod front;
mod guard;
mod inherit;
mod isolated;
mod jobs;
mod link;
mod raw;
mod reply;
mod spawn;
mod supervisor;
mod sys;

use std::io::Write;

/// Entry point. As PID 1 the agent boots the guest; otherwise (`--stdio`) it serves the protocol
/// on stdin/stdout, which lets the host test the agent without a VM.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--version") {
        println!("provium-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if std::process::id() == 1 {
        // `provium_poweroff` on the kernel command line (handed to init as an argument): the
        // bare boot a cold boot is measured against, init doing nothing but power off.
        if args.iter().any(|a| a == "provium_poweroff") {
            sys::power_off();
        }
        install_pid1_panic_hook();
        jobs::set_root("/run/provium/jobs");
        supervisor::run_as_init();
    } else if args.iter().any(|a| a == "--stdio") {
        let dir = std::env::temp_dir().join(format!("provium-agent-jobs-{}", std::process::id()));
        jobs::set_root(&dir.to_string_lossy());
        supervisor::run_on_stdio();
    } else {
        eprintln!(
            "provium-agent: runs as /init inside a Provium VM, or with --stdio for host-side tests"
        );
        std::process::exit(2);
    }
}

/// PID 1 must never exit or the kernel panics; a bug in the agent powers the VM off instead, so
/// the host sees a clean exit with the message on the console.
fn install_pid1_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "provium-agent: fatal: {info}");
        sys::power_off();
    }));
}

/// Writes a diagnostic line to the console (PID 1's stderr is /dev/console).
pub fn log(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "provium-agent: {msg}");
}
