//! Error answers shared by PID 1 and the executors.

use super::sys;
use provium_agent::protocol::{AgentError, ErrorKind, Response};
use std::io;

/// A request that could not be carried out as asked.
pub fn bad_request(message: String) -> Response {
    Response::Error(AgentError {
        kind: ErrorKind::BadRequest,
        message,
    })
}

/// A system call made on the request's behalf failed.
pub fn os_error(context: &str, e: &io::Error) -> Response {
    Response::Error(AgentError {
        kind: ErrorKind::Os(sys::errno_of(e)),
        message: format!("{context}: {e}"),
    })
}
