//! A small QMP (QEMU Machine Protocol) client: JSON lines over a unix socket.
//!
//! Provium needs five commands (capabilities, parameters, migrate, migrate-incoming,
//! query-migrate); a generated client for the whole schema (the qapi crate) costs half a minute
//! of build time for that, so this speaks the protocol directly with serde_json.

use crate::machine::error::{IoContext, IoError};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// What went wrong talking to QEMU's monitor.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("QMP greeting expected, got {0}")]
    Greeting(Value),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("QMP sent invalid JSON ({cause}): {line:.200}")]
    Json {
        line: String,
        cause: serde_json::Error,
    },
    #[error("QMP {command}: {desc}")]
    Command { command: String, desc: String },
    #[error("migration {0}")]
    Migration(String),
    #[error("migration did not complete in time")]
    MigrationTimeout,
}

type Result<T> = std::result::Result<T, QmpError>;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// The largest line accepted from QEMU; a QMP reply is small.
const MAX_LINE: usize = 1 << 20;

impl Qmp {
    /// Connects (retrying until `deadline`: QEMU creates the socket as it starts), reads the
    /// greeting and negotiates capabilities.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Qmp> {
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err(e) => {
                    return Err(
                        IoError::new(format!("connecting to QMP at {}", path.display()), e).into(),
                    )
                }
            }
        };
        let setup = || format!("setting up the QMP socket {}", path.display());
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .io_context(setup)?;
        let writer = stream.try_clone().io_context(setup)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Greeting(greeting));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE as u64)
            .read_line(&mut line)
            .io_context(|| "reading from QMP".into())?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|cause| QmpError::Json { line, cause })
    }

    /// Sends several commands at once and waits for all their answers, in order: one trip
    /// through QEMU's main loop instead of one per command.
    pub fn execute_pipelined(&mut self, commands: &[(&str, Value)]) -> Result<Vec<Value>> {
        let mut text = String::new();
        for (command, arguments) in commands {
            text.push_str(&json!({ "execute": command, "arguments": arguments }).to_string());
            text.push('\n');
        }
        self.writer
            .write_all(text.as_bytes())
            .io_context(|| "writing to QMP".into())?;
        let mut answers = Vec::with_capacity(commands.len());
        for (command, _) in commands {
            loop {
                let v = self.read()?;
                if let Some(r) = v.get("return") {
                    answers.push(r.clone());
                    break;
                }
                if let Some(e) = v.get("error") {
                    return Err(QmpError::Command {
                        command: command.to_string(),
                        desc: e
                            .get("desc")
                            .and_then(Value::as_str)
                            .unwrap_or("error")
                            .to_string(),
                    });
                }
                // Anything else is an asynchronous event.
            }
        }
        Ok(answers)
    }

    /// Runs a command; its error is an error here.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let mut answers = self.execute_pipelined(&[(command, arguments)])?;
        answers.pop().ok_or_else(|| QmpError::Command {
            command: command.to_string(),
            desc: "no answer".into(),
        })
    }

    /// Waits for `query-migrate` to report `completed` (or fail).
    pub fn wait_migration(&mut self, deadline: Instant) -> Result<()> {
        loop {
            let r = self.execute("query-migrate", json!({}))?;
            match r.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    let desc = r.get("error-desc").and_then(Value::as_str);
                    return Err(QmpError::Migration(desc.unwrap_or("failed").to_string()));
                }
                _ if Instant::now() > deadline => return Err(QmpError::MigrationTimeout),
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}
