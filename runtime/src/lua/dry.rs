//! What VM calls answer in `--list` mode, where files run without VMs: neutral values, so that
//! top-level set-up code does not stop the listing.

use crate::protocol::{SyscallOutcome, Termination};

/// What a VM call returns in `--list` mode, where files run without VMs: neutral values, so that
/// top-level set-up code does not stop the listing.
pub trait DryRun {
    fn dry() -> Self;
    /// Whether the invented value can steer the file (a number, bytes, an outcome): a file that
    /// uses one at its top level may define other tests when it really runs.
    fn informative() -> bool {
        true
    }
}

impl DryRun for () {
    fn dry() {}
    fn informative() -> bool {
        false
    }
}
impl DryRun for i64 {
    fn dry() -> i64 {
        0
    }
}
impl DryRun for u32 {
    fn dry() -> u32 {
        0
    }
}
impl DryRun for String {
    fn dry() -> String {
        String::new()
    }
}
impl DryRun for Vec<u8> {
    fn dry() -> Vec<u8> {
        Vec::new()
    }
}
impl DryRun for Vec<SyscallOutcome> {
    fn dry() -> Vec<SyscallOutcome> {
        Vec::new()
    }
}
impl DryRun for Vec<Vec<SyscallOutcome>> {
    fn dry() -> Vec<Vec<SyscallOutcome>> {
        Vec::new()
    }
}
impl DryRun for SyscallOutcome {
    fn dry() -> SyscallOutcome {
        crate::protocol::SyscallOutcome::Returned {
            ret: 0,
            buffers: Vec::new(),
        }
    }
}
impl DryRun for Vec<crate::machine::vm::VfsMount> {
    fn dry() -> Self {
        Vec::new()
    }
}
impl DryRun for crate::protocol::ExecResult {
    fn dry() -> Self {
        crate::protocol::ExecResult {
            termination: Some(Termination::Exited(0)),
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        }
    }
}

/// In `--list` mode: a successful call whose output buffers are zeros of their size, so that
/// set-up code that unpacks them (a pipe's descriptors) runs on to the tests.
pub(super) fn dry_outcome(call: &crate::protocol::SyscallCall) -> crate::protocol::SyscallOutcome {
    crate::protocol::SyscallOutcome::Returned {
        ret: 0,
        buffers: call
            .buffers
            .iter()
            .map(|b| b.output.then(|| vec![0; b.len as usize]))
            .collect(),
    }
}
