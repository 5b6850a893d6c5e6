//! The front executor: serves the host directly.
//!
//! Requests for the VM's own executor (worker 0) run right here, with no hop through PID 1: under
//! TCG a process switch costs about as much as the virtio round trip, so the hop would double
//! the cost of every syscall. Everything else (workers, dmesg, spawn, shutdown) is handed to
//! PID 1 over the channel; PID 1 writes the answer to the host and then lets the front go on, so
//! the two never write to the link at the same time.
//!
//! Before each call the front records in [`Control`] what it is running, so that if the call
//! kills it PID 1 can answer for it.

use super::control::{Busy, Control};
use super::executor;
use super::guard::{self, AgentFds, Guard};
use super::raw;
use super::reply::bad_request;
use provium_agent::protocol::{
    decode, read_frame, read_message, write_message, Envelope, FrameError, Operation, Request,
    Response, SyscallCall,
};
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

/// Exit status telling PID 1 that the link to the host is gone (vsock closed, stdio ended).
pub const EXIT_LINK_LOST: i32 = 90;

/// Slack PID 1's watchdog gives a command beyond its own timeout.
const EXEC_GRACE_MS: u32 = 5000;

pub fn serve(mut chan: File, fds: AgentFds, guard: &Guard, control: &Control, serial: bool) -> ! {
    // SAFETY: prepare_child put the link on these descriptors; nothing else owns them.
    let (mut reader, mut writer) = unsafe {
        (
            File::from_raw_fd(fds.link_read),
            File::from_raw_fd(fds.link_write),
        )
    };
    let me = std::process::id();
    loop {
        let payload = match read_frame(&mut reader) {
            Ok(p) => p,
            Err(FrameError::Io(e)) => {
                // A serial port reads EOF while the host side is disconnected (for example
                // while a snapshot is taken); it comes back on the same port.
                if serial && e.kind() == std::io::ErrorKind::UnexpectedEof {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                // SAFETY: leaving the child at once; PID 1 reconnects.
                unsafe { libc::_exit(EXIT_LINK_LOST) }
            }
            Err(e) => {
                reply(&mut writer, 0, bad_request(e.to_string()));
                continue;
            }
        };
        let envelope: Envelope<Request> = match decode(&payload) {
            Ok(env) => env,
            Err(e) => {
                reply(&mut writer, 0, bad_request(e.to_string()));
                continue;
            }
        };
        match envelope.body {
            Request::Ping => reply(&mut writer, envelope.id, Response::Pong),
            // Right after a resume, from the root executor: no hop through PID 1, whose code
            // paths are as cold as any after a restore. A test may have dropped this
            // executor's privileges; PID 1 then does it.
            Request::SyncClock { unix_ns, ref seed } => {
                match super::boot::sync_clock(unix_ns, seed) {
                    Ok(()) => reply(&mut writer, envelope.id, Response::Done),
                    Err(_) => hand_to_pid1(&mut chan, &payload),
                }
            }
            // Asked around every test: answered here, without the hop through PID 1 (which
            // doubled the cost of a one-call test); PID 1 answers if this executor cannot read
            // the file (a test chrooted it, or unmounted its /proc).
            Request::Tainted => match super::sys::tainted() {
                Ok(bits) => reply(&mut writer, envelope.id, Response::Tainted(bits)),
                Err(_) => hand_to_pid1(&mut chan, &payload),
            },
            Request::Run { worker: 0, op } => {
                let response = run(op, envelope.id, guard, control, me);
                reply(&mut writer, envelope.id, response);
            }
            _ => hand_to_pid1(&mut chan, &payload),
        }
    }
}

fn hand_to_pid1(chan: &mut File, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    let sent = chan.write_all(&frame);
    let acked = sent.is_ok() && read_message::<_, ()>(chan).is_ok();
    if !acked {
        // PID 1 is shutting the VM down or replacing this executor.
        // SAFETY: immediate exit of the child.
        unsafe { libc::_exit(0) }
    }
}

/// Ends the front when `call` disturbed the agent's descriptors: the reason goes to PID 1,
/// which answers for the request (the answer could not reach the host from here) and starts a
/// fresh front.
fn check_after(call: &SyscallCall, guard: &Guard, control: &Control) {
    if !guard.may_be_touched_by(call.nr, &call.args) {
        return;
    }
    if let Err(reason) = guard.check() {
        control.set_broken(&reason);
        // SAFETY: immediate exit of the child; PID 1 reads the reason from the control area.
        unsafe { libc::_exit(guard::EXIT_BROKEN) }
    }
}

fn run(op: Operation, id: u64, guard: &Guard, control: &Control, me: u32) -> Response {
    match op {
        Operation::Syscall(call) => {
            control.begin(id, Busy::Syscall);
            control.start_call(call.timeout_ms);
            let outcome = raw::perform(&call, me);
            check_after(&call, guard, control);
            control.end();
            Response::Syscall(outcome)
        }
        Operation::Batch(calls) => {
            control.begin(id, Busy::Batch);
            let mut outcomes = Vec::with_capacity(calls.len());
            for call in &calls {
                control.start_call(call.timeout_ms);
                let outcome = raw::perform(call, me);
                check_after(call, guard, control);
                control.end_call();
                control.log(&outcome);
                outcomes.push(outcome);
            }
            control.end();
            Response::Batch(outcomes)
        }
        other => {
            control.begin(id, Busy::Other);
            let limit = match &other {
                Operation::Exec(c) if c.timeout_ms > 0 => {
                    c.timeout_ms.saturating_add(EXEC_GRACE_MS)
                }
                Operation::JobWait { timeout_ms, .. } => timeout_ms.saturating_add(EXEC_GRACE_MS),
                // Each case has its own deadline, enforced here; this bounds them all.
                Operation::Isolated(cases) => cases
                    .iter()
                    .map(|c| {
                        if c.timeout_ms == 0 {
                            30_000
                        } else {
                            c.timeout_ms
                        }
                    })
                    .fold(EXEC_GRACE_MS, u32::saturating_add),
                _ => 0,
            };
            control.start_call(limit);
            let response = executor::run(other, me, guard.fds());
            control.end();
            response
        }
    }
}

fn reply(writer: &mut File, id: u64, body: Response) {
    if let Err(e) = write_message(writer, &Envelope { id, body }) {
        let fallback = Envelope {
            id,
            body: bad_request(format!("cannot send the answer: {e}")),
        };
        if write_message(writer, &fallback).is_err() {
            // SAFETY: the link is gone; PID 1 reconnects.
            unsafe { libc::_exit(EXIT_LINK_LOST) }
        }
    }
}
