//! `--format json`: one JSON object per line on stdout, for tools.
//!
//! ```text
//! {"type":"test","file":"tests/a.lua","name":"getpid","status":"passed","duration":0.001,...}
//! {"type":"file-error","file":"tests/b.lua","message":"syntax error: ...","location":{...}}
//! {"type":"summary","passed":10,"failed":1,"errored":0,"skipped":2,"not_run":0,"duration":3.2}
//! ```

use super::Reporter;
use crate::event::{RunEvent, Summary};
use serde_json::json;
use std::io::Write;

pub struct Json {
    out: std::io::Stdout,
    files: Vec<String>,
}

impl Json {
    pub fn new() -> Json {
        Json {
            out: std::io::stdout(),
            files: Vec::new(),
        }
    }

    fn emit(&mut self, v: serde_json::Value) {
        let mut lock = self.out.lock();
        let _ = writeln!(lock, "{v}");
        let _ = lock.flush();
    }
}

impl Default for Json {
    fn default() -> Self {
        Json::new()
    }
}

impl Reporter for Json {
    fn report(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted { files, .. } => {
                self.files = files.iter().map(|f| f.path.clone()).collect()
            }
            RunEvent::FileFinished { file, report } => {
                let path = self.files.get(*file).cloned().unwrap_or_default();
                for t in &report.tests {
                    let mut v = serde_json::to_value(t).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("type".into(), json!("test"));
                        o.insert("file".into(), json!(path));
                    }
                    self.emit(v);
                }
                if let Some(p) = &report.file_error {
                    self.emit(json!({
                        "type": "file-error",
                        "file": path,
                        "message": p.message,
                        "location": p.location,
                        "detail": p.detail,
                        "console": report.console,
                    }));
                }
            }
            RunEvent::RunFinished { summary } => self.summary(summary),
            _ => {}
        }
    }
}

impl Json {
    fn summary(&mut self, s: &Summary) {
        self.emit(json!({
            "type": "summary",
            "passed": s.counts.passed,
            "failed": s.counts.failed,
            "errored": s.counts.errored,
            "skipped": s.counts.skipped,
            "not_run": s.counts.not_run,
            "interrupted": s.interrupted.map(|i| i.name()),
            "duration": s.duration.as_secs_f64(),
        }));
    }
}
