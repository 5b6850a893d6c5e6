//! Errors raised into Lua by Provium's functions, and the caller's `file:line` they carry.

use crate::event::{ConsoleExcerpt, Location, SkipKind};
use mlua::Lua;
use std::fmt;

/// What a Provium function raises. The test runner tells them apart: an assertion is a test
/// failure, a skip is a skip, anything else is an error.
#[derive(Debug, Clone)]
pub enum Raised {
    Assertion {
        message: String,
        location: Option<Location>,
        detail: String,
    },
    Skip {
        reason: String,
        kind: SkipKind,
    },
    /// The test cannot run: what it needs was lost earlier (its VM), or its file was stopped.
    NotRun {
        reason: String,
    },
    Error {
        message: String,
        location: Option<Location>,
        detail: String,
        /// What the guest console showed, when the error is about the VM.
        console: Option<ConsoleExcerpt>,
    },
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (message, location) = match self {
            Raised::Assertion {
                message, location, ..
            }
            | Raised::Error {
                message, location, ..
            } => (message, location),
            Raised::Skip { reason, .. } => return write!(f, "skipped: {reason}"),
            Raised::NotRun { reason } => return write!(f, "not run: {reason}"),
        };
        match location {
            Some(l) => write!(f, "{l}: {message}"),
            None => f.write_str(message),
        }
    }
}

impl std::error::Error for Raised {}

/// The Lua code that called the running Rust function (`level` 1), as `file:line`.
pub fn caller(lua: &Lua, level: usize) -> Option<Location> {
    // Walk up past C functions (pcall, our wrappers) to the first Lua frame.
    for l in level..level + 8 {
        let found = lua.inspect_stack(l, |d| {
            let source = d.source();
            let line = d.current_line();
            (
                source.what.to_string(),
                source.source.map(|s| s.to_string()),
                line,
            )
        })?;
        if let (what, Some(src), Some(line)) = found {
            if what != "C" {
                let loc = Location {
                    file: chunk_file(&src),
                    line: line as u32,
                };
                return Some(match lua.app_data_ref::<std::rc::Rc<super::Session>>() {
                    Some(s) => s.map_location(loc),
                    None => loc,
                });
            }
        }
    }
    None
}

/// `@path/file.lua` → `path/file.lua`; `=name` → `name`.
pub fn chunk_file(source: &str) -> String {
    source
        .strip_prefix('@')
        .or_else(|| source.strip_prefix('='))
        .unwrap_or(source)
        .to_string()
}

/// The test cannot go on for a reason outside it (a VM lost in an earlier test).
/// A skip (`skip(reason)`), raised by the runtime itself.
pub fn skip_error(reason: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raised::Skip {
        reason: reason.into(),
        kind: crate::event::SkipKind::Skip,
    })
}

pub fn not_run(reason: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raised::NotRun {
        reason: reason.into(),
    })
}

/// An error at the caller's location.
pub fn error(lua: &Lua, message: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raised::Error {
        message: message.into(),
        location: caller(lua, 1),
        detail: String::new(),
        console: None,
    })
}

/// An error with extra detail (what a command printed) at the caller's location.
pub fn error_with(lua: &Lua, message: impl Into<String>, detail: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raised::Error {
        message: message.into(),
        location: caller(lua, 1),
        detail: detail.into(),
        console: None,
    })
}

/// An error about a VM, with what its console showed, at the caller's location.
pub fn vm_failure(
    lua: &Lua,
    message: impl Into<String>,
    console: Option<ConsoleExcerpt>,
) -> mlua::Error {
    mlua::Error::external(Raised::Error {
        message: message.into(),
        location: caller(lua, 1),
        detail: String::new(),
        console,
    })
}

pub fn assertion(lua: &Lua, message: impl Into<String>, detail: impl Into<String>) -> mlua::Error {
    mlua::Error::external(Raised::Assertion {
        message: message.into(),
        location: caller(lua, 1),
        detail: detail.into(),
    })
}

/// Finds a [`Raised`] inside an mlua error (callbacks wrap what they return).
pub fn raised(err: &mlua::Error) -> Option<&Raised> {
    match err {
        mlua::Error::CallbackError { cause, .. } => raised(cause),
        mlua::Error::WithContext { cause, .. } => raised(cause),
        mlua::Error::ExternalError(e) => e.downcast_ref::<Raised>(),
        _ => None,
    }
}

/// The innermost message of an mlua error, without mlua's own tracebacks.
pub fn innermost(err: &mlua::Error) -> String {
    match err {
        mlua::Error::CallbackError { cause, .. } => innermost(cause),
        mlua::Error::WithContext { cause, context } => format!("{context}: {}", innermost(cause)),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::BadArgument {
            to,
            pos,
            name,
            cause,
            ..
        } => {
            let what = name
                .as_deref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default();
            let func = to.as_deref().unwrap_or("function");
            format!("bad argument #{pos}{what} to {func}: {}", innermost(cause))
        }
        mlua::Error::FromLuaConversionError { from, to, message } => format!(
            "expected {to}, got {from}{}",
            message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Splits `file:line: message` as Lua formats runtime errors.
pub fn split_location(message: &str) -> (Option<Location>, String) {
    let mut parts = message.splitn(3, ':');
    if let (Some(file), Some(line), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
        if let Ok(line) = line.trim().parse::<u32>() {
            if !file.is_empty() && !file.contains('\n') {
                return (
                    Some(Location {
                        file: file.to_string(),
                        line,
                    }),
                    rest.trim_start().to_string(),
                );
            }
        }
    }
    (None, message.to_string())
}

/// What a test is told when its call disturbed the agent's descriptors.
pub fn broken_message(why: &str) -> String {
    format!("{why}; the agent replaced the executor, and the next call runs in a fresh one")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_messages_split_into_location_and_text() {
        let (loc, msg) = split_location("tests/a.lua:12: attempt to index a nil value");
        assert_eq!(loc.unwrap().to_string(), "tests/a.lua:12");
        assert_eq!(msg, "attempt to index a nil value");
        let (loc, msg) = split_location("no location here");
        assert!(loc.is_none());
        assert_eq!(msg, "no location here");
    }
}
