//! Memory shared between PID 1 and the front executor.
//!
//! The front executor serves the host directly, so that a syscall costs one guest context switch
//! less (under TCG a switch between processes costs as much as the virtio round trip itself).
//! PID 1 still has to answer for it when it dies, and to kill it when a call overruns its
//! timeout. The front executor therefore records here, before each call, which request and which
//! call it is running and until when; and it appends each finished batch outcome to a log, so
//! that the outcomes before a fatal call survive the process.

use provium_agent::protocol::SyscallOutcome;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Room for batch outcomes: reserved, not committed (`MAP_NORESERVE`), so only what a batch
/// writes costs memory.
const LOG_CAPACITY: usize = 64 << 20;

/// What the front executor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Busy {
    Idle = 0,
    Syscall = 1,
    Batch = 2,
    Other = 3,
}

#[repr(C)]
struct Header {
    /// Envelope id of the request in progress; 0 when idle.
    request: AtomicU64,
    busy: AtomicU32,
    /// Incremented before every syscall, so PID 1 can tell which call it timed out.
    call_seq: AtomicU32,
    /// CLOCK_MONOTONIC milliseconds at which the current call times out; 0 for none.
    deadline_ms: AtomicU64,
    /// The `call_seq` PID 1 killed for running past its deadline.
    timed_out_seq: AtomicU32,
    log_count: AtomicU32,
    log_len: AtomicU64,
    /// Length of the reason at [`REASON_AT`] when the executor found its descriptors disturbed.
    broken_len: AtomicU32,
}

const HEADER: usize = 4096;
/// Where, inside the header page, the reason for [`Control::set_broken`] is written.
const REASON_AT: usize = 1024;

/// One mapping, created by PID 1 before it forks the front executor.
pub struct Control {
    base: *mut u8,
    size: usize,
}

// SAFETY: the mapping is shared memory accessed through atomics (header) or by one writer at a
// time (the log, written by the executor while PID 1 waits).
unsafe impl Send for Control {}

/// A snapshot of the header, read by PID 1.
#[derive(Debug, Clone, Copy)]
pub struct State {
    pub request: u64,
    pub busy: Busy,
    pub call_seq: u32,
    pub deadline_ms: u64,
    pub timed_out_seq: u32,
}

impl Control {
    pub fn new() -> io::Result<Control> {
        let size = HEADER + LOG_CAPACITY;
        // SAFETY: a fresh anonymous shared mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Control {
            base: base as *mut u8,
            size,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a zero-initialised, suitably aligned Header.
        unsafe { &*(self.base as *const Header) }
    }

    pub fn begin(&self, request: u64, busy: Busy) {
        let h = self.header();
        h.broken_len.store(0, Ordering::Relaxed);
        h.log_count.store(0, Ordering::Relaxed);
        h.log_len.store(0, Ordering::Relaxed);
        h.busy.store(busy as u32, Ordering::Relaxed);
        h.request.store(request, Ordering::Release);
    }

    /// Marks the start of one syscall with its timeout (0 for none).
    pub fn start_call(&self, timeout_ms: u32) {
        let h = self.header();
        let deadline = if timeout_ms == 0 {
            0
        } else {
            monotonic_ms() + timeout_ms as u64
        };
        h.deadline_ms.store(deadline, Ordering::Relaxed);
        h.call_seq.fetch_add(1, Ordering::Release);
    }

    pub fn end_call(&self) {
        self.header().deadline_ms.store(0, Ordering::Release);
    }

    pub fn end(&self) {
        let h = self.header();
        h.deadline_ms.store(0, Ordering::Relaxed);
        h.busy.store(Busy::Idle as u32, Ordering::Relaxed);
        h.request.store(0, Ordering::Release);
    }

    /// Appends a finished batch outcome. Returns false when the log is full.
    pub fn log(&self, outcome: &SyscallOutcome) -> bool {
        let h = self.header();
        let used = h.log_len.load(Ordering::Relaxed) as usize;
        let Ok(bytes) = postcard::to_allocvec(outcome) else {
            return false;
        };
        if used + 4 + bytes.len() > LOG_CAPACITY {
            return false;
        }
        // SAFETY: the range lies inside the log region, which only this process writes.
        unsafe {
            let at = self.base.add(HEADER + used);
            std::ptr::copy_nonoverlapping((bytes.len() as u32).to_le_bytes().as_ptr(), at, 4);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(4), bytes.len());
        }
        h.log_len
            .store((used + 4 + bytes.len()) as u64, Ordering::Release);
        h.log_count.fetch_add(1, Ordering::Release);
        true
    }

    /// The outcomes logged so far (read by PID 1 after the executor died).
    pub fn logged(&self) -> Vec<SyscallOutcome> {
        let h = self.header();
        let len = (h.log_len.load(Ordering::Acquire) as usize).min(LOG_CAPACITY);
        // SAFETY: the log region holds `len` bytes written by the (now dead) executor.
        let log = unsafe { std::slice::from_raw_parts(self.base.add(HEADER), len) };
        let mut out = Vec::new();
        let mut rest = log;
        while rest.len() >= 4 {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(item) = rest.get(4..4 + n) else {
                break;
            };
            match postcard::from_bytes(item) {
                Ok(o) => out.push(o),
                Err(_) => break,
            }
            rest = &rest[4 + n..];
        }
        out
    }

    pub fn state(&self) -> State {
        let h = self.header();
        let busy = match h.busy.load(Ordering::Acquire) {
            1 => Busy::Syscall,
            2 => Busy::Batch,
            3 => Busy::Other,
            _ => Busy::Idle,
        };
        State {
            request: h.request.load(Ordering::Acquire),
            busy,
            call_seq: h.call_seq.load(Ordering::Acquire),
            deadline_ms: h.deadline_ms.load(Ordering::Acquire),
            timed_out_seq: h.timed_out_seq.load(Ordering::Acquire),
        }
    }

    /// Says why the executor is about to end itself (its call disturbed the agent's
    /// descriptors), for PID 1 to pass on.
    pub fn set_broken(&self, reason: &str) {
        let bytes = &reason.as_bytes()[..reason.len().min(HEADER - REASON_AT)];
        // SAFETY: the range lies inside the header page, past the Header struct; only this
        // process writes it, and PID 1 reads it after this process has ended.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(REASON_AT), bytes.len())
        };
        self.header()
            .broken_len
            .store(bytes.len() as u32, Ordering::Release);
    }

    /// The reason given by [`Control::set_broken`], if any.
    pub fn broken_reason(&self) -> Option<String> {
        let len =
            (self.header().broken_len.load(Ordering::Acquire) as usize).min(HEADER - REASON_AT);
        if len == 0 {
            return None;
        }
        // SAFETY: the executor wrote `len` bytes there before it ended.
        let bytes = unsafe { std::slice::from_raw_parts(self.base.add(REASON_AT), len) };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    pub fn mark_timed_out(&self, seq: u32) {
        self.header().timed_out_seq.store(seq, Ordering::Release);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // SAFETY: unmapping the region mapped in `new`.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

/// Milliseconds since boot, the clock call deadlines are kept in.
pub fn monotonic_ms() -> u64 {
    super::sys::monotonic_us() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_survives_and_reads_back() {
        let c = Control::new().unwrap();
        c.begin(7, Busy::Batch);
        let a = SyscallOutcome::Returned {
            ret: -9,
            buffers: vec![],
        };
        let b = SyscallOutcome::Returned {
            ret: 3,
            buffers: vec![Some(vec![1, 2])],
        };
        assert!(c.log(&a));
        assert!(c.log(&b));
        c.start_call(1000);
        let s = c.state();
        assert_eq!(s.request, 7);
        assert_eq!(s.busy, Busy::Batch);
        assert!(s.deadline_ms > 0);
        assert_eq!(c.logged(), vec![a, b]);
        assert_eq!(c.broken_reason(), None);
        c.set_broken("the call closed descriptor 4094");
        assert_eq!(
            c.broken_reason().as_deref(),
            Some("the call closed descriptor 4094")
        );
        c.end();
        assert_eq!(c.state().request, 0);
    }
}
