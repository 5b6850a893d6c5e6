//! Specs on the host side: compiling them for a run, with the header provider, and their
//! problems as typed report data (rendered for people only by reporters and `provium check`).

use crate::event::{Location, Problem};
use crate::lua::session::KernelNaming;
use provium_compiler::linux::Abi;
use provium_compiler::{Compiled, Diagnostic, Options};
use std::path::Path;
use std::sync::Arc;

/// Compiler options for a spec file: its profiles are those of the `provium.toml` nearest to
/// it (a spec in another project is checked against that project's profiles).
pub fn options(path: &Path, display: &str) -> Options {
    options_on(path, display, None, None)
}

/// Compiler options for a spec compiled for one kernel and ABI of a run: its names and
/// headers.
pub fn options_on(
    path: &Path,
    display: &str,
    naming: Option<&KernelNaming>,
    abi: Option<Abi>,
) -> Options {
    let mut o = Options::new(display);
    // The run's ABI, when it names one; else the spec's own `abi:` decides.
    o.abi = abi.unwrap_or_default();
    o.abi_chosen = abi.is_some();
    o.headers = match naming {
        Some(n) => super::headers::provider_on(n),
        None => super::headers::provider(),
    };
    o.kernel = naming.map(|n| n.names.clone());
    // PROVIUM_ISOLATION=worker: every case with credentials in a fresh worker, as before
    // isolated cases existed (the baseline `provium bench isolated` compares with).
    o.fork_isolated = std::env::var("PROVIUM_ISOLATION").as_deref() != Ok("worker");
    let dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(profiles) = dir.and_then(|d| crate::machine::profile::Profiles::discover(&d).ok()) {
        o.profiles = Some(profiles.names());
        // A profile written for an ABI (`abi = "i386"`) is a spec's `abi:` for the specs that
        // boot it.
        for name in profiles.names() {
            match profiles.get(&name) {
                Ok(p) if !p.abis.is_empty() => {
                    o.profile_abis.insert(name, p.abis);
                }
                Ok(_) => {}
                Err(e) => {
                    o.profile_problems.insert(name, e.to_string());
                }
            }
        }
    }
    o
}

/// A spec that does not compile: its diagnostics and the source they point into.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub diagnostics: Vec<Diagnostic>,
    pub source: String,
}

impl SpecErrors {
    /// The first problem, located, with every problem rendered (source snippets) as detail.
    pub fn problem(&self) -> Problem {
        let first = self.diagnostics.first();
        Problem {
            message: first
                .map(|d| match &d.help {
                    Some(h) => format!("{} ({h})", d.message),
                    None => d.message.clone(),
                })
                .unwrap_or_else(|| "the spec does not compile".into()),
            location: first.map(|d| Location {
                file: d.file.clone(),
                line: d.pos.line,
            }),
            // The first line of the rendering repeats the message and location.
            detail: render(&self.diagnostics, &self.source, false)
                .split_once('\n')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default(),
            console: None,
        }
    }
}

/// Compiles a spec file, or returns its problems.
pub fn compile_file(path: &Path, display: &str) -> Result<Compiled, SpecErrors> {
    compile_on(path, display, None, None)
}

/// Compiles a spec file for one kernel and ABI of a run (its names and headers).
pub fn compile_on(
    path: &Path,
    display: &str,
    naming: Option<&KernelNaming>,
    abi: Option<Abi>,
) -> Result<Compiled, SpecErrors> {
    let source = crate::run::discover::read_test_file(path).map_err(|e| SpecErrors {
        diagnostics: vec![{
            let mut d = Diagnostic::new(provium_compiler::spec::node::Pos { line: 1, col: 1 }, e);
            d.file = display.to_string();
            d
        }],
        source: String::new(),
    })?;
    let compiled = provium_compiler::compile(&source, &options_on(path, display, naming, abi))
        .map_err(|diagnostics| SpecErrors {
            diagnostics,
            source: source.clone(),
        })?;
    // What `check` accepts must also run: the Lua it compiles to must parse (a `lua:` block is
    // spliced in as written).
    let chunk = format!("{display}.lua");
    if let Some(p) = crate::lua::syntax_error(&compiled.lua, &chunk) {
        let map = crate::lua::SourceMap::new(&chunk, display, compiled.source_map.clone());
        let line = p.location.and_then(|l| map.line(l.line)).unwrap_or(1);
        let mut d = Diagnostic::new(
            provium_compiler::spec::node::Pos { line, col: 1 },
            format!(
                "the Lua this spec compiles to does not parse: {}",
                map.map_text(&p.message)
            ),
        )
        .help("check the `lua:` block at this line");
        d.file = display.to_string();
        return Err(SpecErrors {
            diagnostics: vec![d],
            source,
        });
    }
    // A `lua:` block is loaded when its case runs: it must parse too, and is reported at its
    // own lines.
    for block in lua_blocks(&compiled.model) {
        let padded = format!(
            "{}{}",
            "\n".repeat(block.first_line.saturating_sub(1) as usize),
            block.code
        );
        if let Some(p) = crate::lua::syntax_error(&padded, display) {
            let line = p.location.map(|l| l.line).unwrap_or(block.first_line);
            let mut d = Diagnostic::new(
                provium_compiler::spec::node::Pos { line, col: 1 },
                format!("this `lua:` block does not parse: {}", p.message),
            );
            d.file = display.to_string();
            return Err(SpecErrors {
                diagnostics: vec![d],
                source,
            });
        }
    }
    Ok(compiled)
}

/// Every `lua:` block of a spec: cases, their steps, set-up and tear-down.
fn lua_blocks(model: &provium_compiler::model::Model) -> Vec<&provium_compiler::model::LuaBlock> {
    use provium_compiler::model::{Body, Step, StepKind};
    fn from_steps(steps: &[Step]) -> impl Iterator<Item = &provium_compiler::model::LuaBlock> {
        steps.iter().filter_map(|s| match &s.kind {
            StepKind::Lua(b) => Some(b),
            _ => None,
        })
    }
    let mut out: Vec<_> = from_steps(&model.setup).collect();
    out.extend(from_steps(&model.teardown));
    for c in &model.cases {
        match &c.body {
            Body::Lua(b) => out.push(b),
            Body::Steps(steps) => out.extend(from_steps(steps)),
            Body::Call(_) => {}
        }
    }
    out
}
pub fn render(diags: &[Diagnostic], source: &str, color: bool) -> String {
    diags
        .iter()
        .map(|d| d.render(source, color))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compiles a YAML spec into the Lua chunk that runs it (the runner's hook, replaceable in
/// tests and benchmarks).
pub type SpecCompiler = Arc<
    dyn Fn(&Path, &str, Option<&KernelNaming>, Option<Abi>) -> Result<Compiled, SpecErrors>
        + Send
        + Sync,
>;

/// The compiler hook for `provium test`.
pub fn compiler() -> SpecCompiler {
    Arc::new(compile_on)
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
        provium_compiler::compile(
            src,
            &super::options(std::path::Path::new("h.yaml"), "h.yaml"),
        )
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
