//! The guest's serial console log, and its tail for error reports.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The last `lines` lines of the console log (at most 64 KiB are read), with control characters
/// other than newlines and tabs removed so that a garbled console cannot corrupt a terminal or
/// an XML report.
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 << 10;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = f.take(WINDOW).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let all: Vec<&str> = clean.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_last_lines_and_strips_control_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        std::fs::write(&p, "one\ntwo\r\nthree\x1b[0m\nfour\n").unwrap();
        assert_eq!(super::tail(&p, 2), "three[0m\nfour");
        assert_eq!(super::tail(&dir.path().join("missing"), 5), "");
    }
}
