//! The guest's serial console log, and its tail for error reports.

use crate::event::{ConsoleEvent, ConsoleExcerpt};
use provium_agent::protocol::DUMP_START;
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

/// The first line of each thing the kernel reports, and what it is. The formats are the
/// kernel's own (`panic()`, `__warn()`, `die()`, `BUG()`, KASAN and friends).
const MARKERS: &[(&str, ConsoleEvent)] = &[
    ("Kernel panic - not syncing", ConsoleEvent::KernelPanic),
    ("Oops:", ConsoleEvent::Oops),
    ("general protection fault", ConsoleEvent::Oops),
    ("kernel BUG at", ConsoleEvent::Bug),
    ("BUG:", ConsoleEvent::Bug),
    ("UBSAN:", ConsoleEvent::Bug),
    ("WARNING:", ConsoleEvent::Warning),
];

/// Lines shown before the first report (what led to it) and in all.
const BEFORE: usize = 3;
const EXCERPT_LINES: usize = 80;
/// Lines shown when the kernel reported nothing.
const PLAIN_TAIL: usize = 40;

/// Lines every boot of some kernels prints that look like trouble and are not (microvm has no
/// PCI config space; 6.12 says so as "Fatal"): an excerpt never starts with them.
const HARMLESS: &[&str] = &[
    "PCI: Fatal: No config space access function found",
    "PCI: System does not support PCI",
];

/// A console line without its log level and timestamp.
fn body(line: &str) -> &str {
    let line = match line.trim_start().strip_prefix('<') {
        Some(rest) => rest.split_once('>').map(|(_, r)| r).unwrap_or(line),
        None => line,
    };
    match line.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map(|(_, b)| b).unwrap_or(line),
        None => line,
    }
}

/// The kernel's own line for the worst thing an excerpt shows (`Kernel panic - not syncing:
/// Fatal exception`), without its timestamp: what a report leads with.
pub fn headline(excerpt: &ConsoleExcerpt) -> Option<String> {
    if !excerpt.event.is_kernel() {
        return None;
    }
    excerpt
        .text
        .lines()
        .map(body)
        .find(|b| {
            MARKERS
                .iter()
                .any(|(m, e)| *e == excerpt.event && b.starts_with(m))
        })
        .map(|b| b.trim().to_string())
}

/// The worst thing the kernel reported in `text`, and the line where its first report starts.
pub fn kernel_event(text: &str) -> Option<(ConsoleEvent, usize)> {
    let mut worst: Option<ConsoleEvent> = None;
    let mut first = None;
    for (i, line) in text.lines().enumerate() {
        // The log level (`<4>`, in `dmesg` text) and the timestamp (`[    1.234567] `) come
        // before the marker.
        let body = body(line);
        if let Some((_, event)) = MARKERS.iter().find(|(m, _)| body.starts_with(m)) {
            first.get_or_insert(i);
            worst = worst.max(Some(*event));
        }
    }
    Some((worst?, first?))
}

/// The part of a console worth showing: from just before the kernel's first report of trouble,
/// headed by the worst it reported; when it reported nothing, the last lines under `otherwise`.
/// The most lines of a task dump an excerpt keeps.
const DUMP_LINES: usize = 200;

pub fn excerpt(text: &str, otherwise: ConsoleEvent) -> ConsoleExcerpt {
    let lines: Vec<&str> = text.lines().collect();
    match kernel_event(text) {
        Some((event, first)) => {
            let start = first.saturating_sub(BEFORE);
            let end = (start + EXCERPT_LINES).min(lines.len());
            ConsoleExcerpt {
                event,
                text: lines[start..end].join("\n"),
            }
        }
        None if otherwise == ConsoleEvent::TimedOut && text.contains(DUMP_START) => {
            // The task dump the VM printed before it was killed (see `vm::dump`) is the
            // excerpt: where each task was.
            let first = lines
                .iter()
                .rposition(|l| l.contains(DUMP_START))
                .unwrap_or(0);
            let end = (first + DUMP_LINES).min(lines.len());
            ConsoleExcerpt {
                event: otherwise,
                text: lines[first..end].join("\n"),
            }
        }
        None => {
            let tail = &lines[lines.len().saturating_sub(PLAIN_TAIL)..];
            let skip = tail
                .iter()
                .take_while(|l| HARMLESS.iter().any(|h| body(l).starts_with(h)))
                .count();
            ConsoleExcerpt {
                event: otherwise,
                text: tail[skip..].join("\n"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_kernel_report_heads_an_excerpt_that_starts_at_the_first() {
        let mut console = String::new();
        for i in 0..200 {
            console.push_str(&format!("[    0.{i:06}] boot line {i}\n"));
        }
        console.push_str("[    1.000000] WARNING: CPU: 0 PID: 1 at fs/open.c:12 do_x+0x1/0x2\n");
        console.push_str("[    1.000001] Call Trace:\n");
        console.push_str("[    1.000002] BUG: kernel NULL pointer dereference, address: 0\n");
        console.push_str("[    1.000003] Kernel panic - not syncing: Fatal exception\n");
        let e = excerpt(&console, ConsoleEvent::VmLost);
        assert_eq!(e.event, ConsoleEvent::KernelPanic);
        assert!(
            e.text.starts_with("[    0.000197] boot line 197"),
            "{}",
            e.text
        );
        assert!(e.text.ends_with("Fatal exception"));
        assert!(e
            .render()
            .starts_with("--- kernel panic: guest console ---\n"));
        let quiet = excerpt(&"ok\n".repeat(100), ConsoleEvent::TimedOut);
        assert_eq!(quiet.event, ConsoleEvent::TimedOut);
        assert_eq!(quiet.text.lines().count(), PLAIN_TAIL);
        // Words in the middle of a line are not reports.
        assert!(kernel_event("echo BUG: not at the start\n").is_none());
        assert_eq!(
            kernel_event("BUG: soft lockup\n"),
            Some((ConsoleEvent::Bug, 0))
        );
    }

    #[test]
    fn harmless_boot_lines_never_start_an_excerpt_and_reports_lead_with_the_kernels_line() {
        let console = "[    0.1] PCI: Fatal: No config space access function found\n[    0.2] ok\n";
        let e = excerpt(console, ConsoleEvent::TimedOut);
        assert_eq!(e.text, "[    0.2] ok");
        let panic = excerpt(
            "[    1.0] sysrq: Trigger a crash\n[    1.1] Kernel panic - not syncing: sysrq triggered crash\n",
            ConsoleEvent::VmLost,
        );
        assert_eq!(
            headline(&panic).as_deref(),
            Some("Kernel panic - not syncing: sysrq triggered crash")
        );
        assert_eq!(headline(&e), None);
    }

    #[test]
    fn tail_keeps_last_lines_and_strips_control_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console.log");
        std::fs::write(&p, "one\ntwo\r\nthree\x1b[0m\nfour\n").unwrap();
        assert_eq!(super::tail(&p, 2), "three[0m\nfour");
        assert_eq!(super::tail(&dir.path().join("missing"), 5), "");
    }
}
