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
