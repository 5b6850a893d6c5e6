//! The Provium guest agent: PID 1 of the test VM.
//!
//! It prepares a minimal userland, finds its transport to the host, greets it, then serves
//! requests. Raw system calls run in forked executor processes so that nothing a test does can
//! take PID 1 (and with it the kernel) down.

#[cfg(target_os = "linux")]
mod guest;

#[cfg(target_os = "linux")]
fn main() {
    guest::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("provium-agent runs only inside a Linux guest");
    std::process::exit(2);
}
