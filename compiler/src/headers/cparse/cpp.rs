//! Preprocessing headers with gcc (`gcc -E`) and mapping the output back to `file:line`.

use super::ParseError;
use crate::linux::{Abi, Arch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The include directories for a root such as `/usr/include`: the multiarch directory first.
pub fn include_dirs(root: &Path) -> Vec<PathBuf> {
    include_dirs_for(root, Arch::X86_64.multiarch())
}

/// The same for another architecture's multiarch directory (`aarch64-linux-gnu`).
pub fn include_dirs_for(root: &Path, multiarch: &str) -> Vec<PathBuf> {
    let arch = root.join(multiarch);
    let mut dirs = Vec::new();
    if arch.is_dir() {
        dirs.push(arch);
    }
    dirs.push(root.to_path_buf());
    dirs
}

/// The preprocessed code with every `#define` left in place (`gcc -E -dD`).
pub fn preprocess_with_defines(root: &Path, headers: &[String]) -> Result<String, ParseError> {
    preprocess_with_defines_in(root, headers, Abi::X86_64)
}

/// The same under a data model: `gcc -m32` for i386's (the uapi headers choose their i386
/// definitions, `__i386__` set; no multilib is needed to preprocess).
pub fn preprocess_with_defines_in(
    root: &Path,
    headers: &[String],
    abi: Abi,
) -> Result<String, ParseError> {
    let multiarch = abi.arch().multiarch();
    match abi {
        Abi::X86_64 => run_cpp(root, multiarch, headers, &["-dD"]),
        // arm64's `asm/` headers (linux-libc-dev:arm64) under arm64's predefined macros; the
        // host's gcc preprocesses them as well as a cross compiler would.
        Abi::Aarch64 => run_cpp(
            root,
            multiarch,
            headers,
            &[
                "-dD",
                "-U__x86_64__",
                "-U__amd64__",
                "-D__aarch64__",
                "-D__AARCH64EL__",
            ],
        ),
        Abi::I386 => {
            // A header that reaches glibc's features.h includes gnu/stubs-32.h, which only a
            // 32-bit libc (multilib, which conflicts with the cross compilers) installs. It
            // lists functions glibc lacks; for layouts an empty one is the same.
            let shim = tempfile::tempdir().map_err(|e| ParseError::Gcc(e.to_string()))?;
            let gnu = shim.path().join("gnu");
            std::fs::create_dir(&gnu)
                .and_then(|()| std::fs::write(gnu.join("stubs-32.h"), ""))
                .map_err(|e| ParseError::Gcc(e.to_string()))?;
            let shim_dir = shim.path().to_string_lossy().into_owned();
            run_cpp(
                root,
                multiarch,
                headers,
                &["-dD", "-m32", "-idirafter", &shim_dir],
            )
        }
    }
}

/// Runs `gcc -E` over `#include` lines for `headers`; `-dM` gives the macros instead.
pub fn preprocess(root: &Path, headers: &[String], macros: bool) -> Result<String, ParseError> {
    run_cpp(
        root,
        Arch::X86_64.multiarch(),
        headers,
        if macros { &["-dM"] } else { &[] },
    )
}

/// Separates `#define`s (with their `file:line`) from the code; their lines become blank so
/// that the code's line markers still count right.
pub fn split_defines(
    text: &str,
    root: &Path,
) -> (String, Vec<(String, crate::headers::defines::Define)>) {
    let lines = LineMap::new(text);
    let mut code = String::with_capacity(text.len());
    let mut defines = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("#define") || t.starts_with("#undef") {
            if t.starts_with("#define") {
                for d in crate::headers::defines::parse(line) {
                    let origin = lines.origin(offset, root);
                    if !origin.starts_with("<") {
                        defines.push((origin, d));
                    }
                }
            }
            code.push('\n');
        } else {
            code.push_str(line);
        }
        offset += line.len();
    }
    (code, defines)
}

fn run_cpp(
    root: &Path,
    multiarch: &str,
    headers: &[String],
    flags: &[&str],
) -> Result<String, ParseError> {
    let mut source = String::new();
    for h in headers {
        source.push_str(&format!("#include <{h}>\n"));
    }
    let program = std::env::var("PROVIUM_CC").unwrap_or_else(|_| "gcc".into());
    let mut cmd = Command::new(&program);
    cmd.args(["-E", "-nostdinc", "-x", "c"]);
    cmd.args(flags);
    for d in include_dirs_for(root, multiarch) {
        cmd.arg("-I").arg(d);
    }
    // glibc's headers pull in the compiler's own (stddef.h and friends).
    if let Some(gcc_inc) = gcc_include_dir() {
        cmd.arg("-I").arg(gcc_inc);
    }
    cmd.arg("-");
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| ParseError::NoCompiler {
        program: program.clone(),
        why: e.to_string(),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(source.as_bytes())
            .map_err(|e| ParseError::Gcc(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ParseError::Gcc(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or(err.trim());
        let mut why = first.to_string();
        if first.contains("Never include") {
            why.push_str(" (name the header it points to instead)");
        }
        return Err(ParseError::Gcc(why));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn gcc_include_dir() -> Option<PathBuf> {
    let out = Command::new("gcc")
        .arg("-print-file-name=include")
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_dir().then_some(p)
}

/// Maps offsets of preprocessed text back to `file:line` through gcc's line markers.
pub(super) struct LineMap {
    /// (offset where a marker's line starts, file, line of the next text line)
    marks: Vec<(usize, String, u32)>,
    text_lines: Vec<usize>,
}

impl LineMap {
    pub(super) fn new(text: &str) -> LineMap {
        let mut marks = Vec::new();
        let mut text_lines = Vec::new();
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            text_lines.push(offset);
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.split_whitespace();
                if let (Some(n), Some(f)) = (parts.next(), parts.next()) {
                    if let Ok(n) = n.parse::<u32>() {
                        marks.push((offset + line.len(), f.trim_matches('"').to_string(), n));
                    }
                }
            }
            offset += line.len();
        }
        LineMap { marks, text_lines }
    }

    pub(super) fn origin(&self, offset: usize, root: &Path) -> String {
        let Some(i) = self.marks.iter().rposition(|(o, _, _)| *o <= offset) else {
            return String::new();
        };
        let (start, file, line) = &self.marks[i];
        let lines_between = self
            .text_lines
            .iter()
            .filter(|&&l| l >= *start && l <= offset)
            .count()
            .saturating_sub(1);
        let file = include_dirs(root)
            .iter()
            .find_map(|d| {
                Path::new(file)
                    .strip_prefix(d)
                    .ok()
                    .map(|p| p.display().to_string())
            })
            .unwrap_or_else(|| file.clone());
        format!("{file}:{}", *line as usize + lines_between)
    }
}
