//! `--format json`: one JSON object per line on stdout, for tools.
//!
//! ```text
//! {"type":"test","file":"tests/a.lua","name":"getpid","status":"passed","duration":0.001,...}
//! {"type":"file-error","file":"tests/b.lua","message":"syntax error: ...","location":{...}}
//! {"type":"summary","passed":10,"failed":1,"errored":0,"skipped":2,"not_run":0,"duration":3.2}
//! ```

use crate::run::discover::TestFile;
use crate::run::model::{FileReport, TestReport};
use crate::run::{Reporter, Summary};
use serde_json::json;
use std::io::Write;

pub struct Json {
    out: std::io::Stdout,
}

impl Json {
    pub fn new() -> Json {
        Json {
            out: std::io::stdout(),
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
    fn test_finished(&mut self, file: &TestFile, t: &TestReport) {
        let mut v = serde_json::to_value(t).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), json!("test"));
            o.insert("file".into(), json!(file.display));
        }
        self.emit(v);
    }

    fn file_finished(&mut self, file: &TestFile, report: &FileReport) {
        if let Some(p) = &report.file_error {
            self.emit(json!({
                "type": "file-error",
                "file": file.display,
                "message": p.message,
                "location": p.location,
                "detail": p.detail,
                "console": report.console,
            }));
        }
    }

    fn run_finished(&mut self, s: &Summary) {
        self.emit(json!({
            "type": "summary",
            "passed": s.counts.passed,
            "failed": s.counts.failed,
            "errored": s.counts.errored,
            "skipped": s.counts.skipped,
            "not_run": s.not_run,
            "duration": s.duration.as_secs_f64(),
        }));
    }
}
