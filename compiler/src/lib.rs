#![warn(missing_docs)]
//! Provium's compiler: YAML specs → checked model → Lua chunk; and kernel header parsing.
//!
//! ```
//! let spec = "cases:\n  - name: close(-1) is EBADF\n    syscall: close\n    args: [-1]\n    expect: EBADF\n";
//! let compiled = provium_compiler::compile(spec, &provium_compiler::Options::new("close.yaml")).unwrap();
//! assert!(compiled.lua.contains("expect("));
//! ```

pub mod check;
pub mod diag;
pub mod emit;
pub mod expr;
pub mod gen;
pub mod headers;
pub mod layout;
pub mod linux;
pub mod model;
pub mod record;
pub mod requirement;
pub mod source_map;
pub mod spec;
pub mod template;
pub mod verdict;

pub use check::{HeaderProvider, HeaderSet, KernelNames, Options};
pub use diag::Diagnostic;
pub use source_map::SourceMap;

/// Values a spec can read as `$NAME` without saving them: the runtime asks the guest when one
/// is first used (LTP's `tst_get_unused_pid()`, `TST_GET_UNUSED_PORT()`, `getdtablesize()`).
pub const READY_MADE: &[(&str, &str)] = &[
    ("unused_pid", "a pid no process has"),
    ("unused_port", "a free TCP port on IPv4"),
    (
        "unused_fd",
        "the highest descriptor number that is not open",
    ),
    (
        "fd_table_size",
        "the descriptor table size (RLIMIT_NOFILE's soft limit)",
    ),
];

/// A compiled spec: the checked model, the Lua chunk that runs it, and which spec line each
/// line of the chunk comes from.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The checked spec.
    pub model: model::Model,
    /// The Lua chunk that runs it.
    pub lua: String,
    /// Which spec line each line of the chunk comes from.
    pub source_map: SourceMap,
}

/// Checks and compiles a spec.
pub fn compile(source: &str, opts: &Options) -> Result<Compiled, Vec<Diagnostic>> {
    let model = check::check(source, opts)?;
    let (lua, source_map) = emit::emit(&model).map_err(|e| {
        let mut d = Diagnostic::new(spec::node::Pos { line: 1, col: 1 }, e);
        d.file = opts.file.clone();
        vec![d]
    })?;
    Ok(Compiled {
        model,
        lua,
        source_map,
    })
}

/// The JSON Schema of the spec format (`schemas/spec.schema.json`), for editors.
pub fn schema() -> String {
    let settings = schemars::generate::SchemaSettings::draft07();
    let generator = settings.into_generator();
    let schema = generator.into_root_schema_for::<spec::types::Spec>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
