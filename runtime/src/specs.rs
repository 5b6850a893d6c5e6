//! Specs on the host side: compiling them for a run, with the header provider and diagnostics
//! rendered for people.

use crate::run::discover::TestFile;
use crate::run::SpecCompiler;
use provium_compiler::{Compiled, Diagnostic, Options};
use std::sync::Arc;

/// Compiler options for a spec file.
pub fn options(display: &str) -> Options {
    let mut o = Options::new(display);
    o.headers = crate::headers::provider();
    o
}

/// Compiles a spec file, or renders its problems (with source snippets) as text.
pub fn compile_file(
    path: &std::path::Path,
    display: &str,
    color: bool,
) -> Result<Compiled, (usize, String)> {
    let source =
        std::fs::read_to_string(path).map_err(|e| (1, format!("{display}: cannot read: {e}")))?;
    provium_compiler::compile(&source, &options(display))
        .map_err(|diags| (diags.len(), render(&diags, &source, color)))
}

pub fn render(diags: &[Diagnostic], source: &str, color: bool) -> String {
    diags
        .iter()
        .map(|d| d.render(source, color))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The compiler hook for `provium test`: a spec that does not compile is a file error whose
/// message is the first problem and whose detail shows them all.
pub fn compiler() -> SpecCompiler {
    Arc::new(|file: &TestFile| {
        compile_file(&file.path, &file.display, false)
            .map(|c| c.lua)
            .map_err(|(_, text)| text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiler_and_the_agent_agree_on_the_bad_pointer() {
        assert_eq!(
            provium_compiler::check::BAD_POINTER,
            crate::protocol::BAD_POINTER as i64
        );
    }
}

#[cfg(test)]
mod header_tests {
    fn compile(src: &str) -> Result<provium_compiler::Compiled, Vec<provium_compiler::Diagnostic>> {
        provium_compiler::compile(src, &super::options("h.yaml"))
    }

    #[test]
    fn header_constants_and_structs_are_usable_by_name() {
        let c = compile(
            "headers: [linux/openat2.h]\ncases:\n  - name: x\n    syscall: openat2\n    args: [AT_FDCWD, {cstr: /}, {struct: open_how, set: {resolve: RESOLVE_CACHED}}, {sizeof: open_how}]\n    expect: ok\n",
        )
        .unwrap_or_else(|d| panic!("{}", d[0]));
        assert!(
            c.lua.contains("provium.pack(\"u64 u64 u64\", 0, 0, 32)"),
            "{}",
            c.lua
        );
    }

    #[test]
    fn a_struct_that_disagrees_with_its_header_names_the_field() {
        let err = compile(
            "headers: [linux/openat2.h]\nstructs:\n  open_how:\n    - flags: u64\n    - resolve: u64\n    - mode: u64\ncases:\n  - {name: x, syscall: close, args: [-1], expect: EBADF}\n",
        )
        .unwrap_err();
        let text: Vec<String> = err.iter().map(|d| d.headline()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("field `mode` is at offset 16")
                    && t.contains("at 8 with size 8 in the header")),
            "{text:?}"
        );
    }

    #[test]
    fn a_missing_header_is_reported_at_the_headers_line() {
        let err = compile("headers: [linux/nope.h]\ncases:\n  - {name: x, syscall: close, args: [-1], expect: EBADF}\n").unwrap_err();
        assert!(err[0].headline().starts_with("h.yaml:1:"), "{}", err[0]);
        assert!(
            err[0].message.contains("linux/nope.h not found"),
            "{}",
            err[0]
        );
    }
}
