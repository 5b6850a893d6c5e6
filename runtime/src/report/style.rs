//! Terminal styling. `anstream` strips the escapes when the output is not a terminal, and honours
//! `NO_COLOR` and `CLICOLOR_FORCE`.

use anstyle::{AnsiColor, Style};
use std::io::Write;

pub const OK: Style = AnsiColor::Green.on_default().bold();
pub const FAIL: Style = AnsiColor::Red.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub const DIM: Style = Style::new().dimmed();
pub const BOLD: Style = Style::new().bold();

pub fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

pub fn error(message: &str) {
    let mut err = anstream::stderr();
    let _ = writeln!(err, "{}: {message}", paint(FAIL, "error"));
}
