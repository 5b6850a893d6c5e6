//! Errors shared by the machine layer's operations.
//!
//! Each operation has its own error type beside it (`PlanError`, `BootError`, `RestoreError`,
//! `AcceptError`, `QmpError`, …), as firecracker does, so a caller tells a boot failure from a
//! restore failure by matching, not by reading text. What they share is here: an I/O error that
//! says what was being done, and a setting whose value is not one of the choices.
//!
//! Every `Display` is the whole message (the cause included): the CLI prints these one per line,
//! and Lua scripts see them as strings.

use std::path::Path;

/// An I/O operation failed; `action` says which ("reading /boot/vmlinuz-6.1").
#[derive(Debug, thiserror::Error)]
#[error("{action}: {cause}")]
pub struct IoError {
    pub action: String,
    pub cause: std::io::Error,
}

impl IoError {
    pub fn new(action: impl Into<String>, cause: std::io::Error) -> IoError {
        IoError {
            action: action.into(),
            cause,
        }
    }

    /// "reading PATH" failed.
    pub fn reading(path: &Path, cause: std::io::Error) -> IoError {
        IoError::new(format!("reading {}", path.display()), cause)
    }
}

/// Adds what was being done to an `io::Result`.
pub trait IoContext<T> {
    fn io_context(self, action: impl FnOnce() -> String) -> Result<T, IoError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, action: impl FnOnce() -> String) -> Result<T, IoError> {
        self.map_err(|cause| IoError::new(action(), cause))
    }
}

/// A setting's value is malformed or not one of the choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {what} `{given}` ({expected})")]
pub struct BadValue {
    /// The setting ("transport", "memory size").
    pub what: &'static str,
    pub given: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl BadValue {
    pub fn new(what: &'static str, given: impl Into<String>, expected: &'static str) -> BadValue {
        BadValue {
            what,
            given: given.into(),
            expected,
        }
    }
}
