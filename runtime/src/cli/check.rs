//! `provium check PATHS` (validate without booting) and `provium compile FILE` (print the Lua).

use crate::report::style::{paint, BOLD, DIM, FAIL, OK};
use crate::run::discover::{self, FileKind};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Specs and directories to check (Lua files are checked for syntax).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Print each struct's size, alignment and field offsets.
    #[arg(long)]
    layout: bool,
    /// Check with a kernel's own names: a build tree's syscall table and uapi headers.
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The spec to compile.
    file: PathBuf,
}

/// Whether diagnostics on stderr are coloured: anstream's choice (`--color`, a terminal,
/// NO_COLOR, CLICOLOR_FORCE), as for every other output.
fn color() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

pub fn check(args: CheckArgs) -> Result<u8> {
    // The project's provium.toml is input too: `test` refuses a bad one, so `check` does.
    crate::machine::profile::Profiles::discover(&std::env::current_dir()?)?;
    let naming = match &args.kernel {
        Some(k) => {
            let target = crate::machine::kernels::resolve(k)
                .map_err(|e| anyhow::anyhow!("--kernel {k}: {e:#}"))?;
            crate::run::kernel_namings(&[target]).pop().flatten()
        }
        None => None,
    };
    let files = discover::discover(&args.paths)?;
    let mut out = anstream::stdout();
    let mut problems = 0;
    let mut cases = 0;
    for f in &files {
        match f.kind {
            FileKind::Spec => {
                match crate::run::specs::compile_on(&f.path, &f.display, naming.as_deref(), None) {
                    Ok(c) => {
                        cases += c.model.cases.len();
                        writeln!(
                            out,
                            "{} {} {}",
                            paint(OK, "    ok"),
                            f.display,
                            paint(DIM, &format!("({} cases)", c.model.cases.len()))
                        )?;
                        if args.layout {
                            print_layouts(&mut out, &c.model.layouts)?;
                        }
                    }
                    Err(e) => {
                        problems += e.diagnostics.len().max(1);
                        writeln!(out, "{} {}", paint(FAIL, " error"), f.display)?;
                        say(&crate::run::specs::render(
                            &e.diagnostics,
                            &e.source,
                            color(),
                        ));
                    }
                }
            }
            FileKind::Lua => match discover::read_test_file(&f.path) {
                Ok(code) => match crate::lua::syntax_error(&code, &f.display) {
                    None => writeln!(out, "{} {}", paint(OK, "    ok"), f.display)?,
                    Some(p) => {
                        problems += 1;
                        writeln!(out, "{} {}", paint(FAIL, " error"), f.display)?;
                        match p.location {
                            Some(l) => say(&format!("{l}: {}", p.message)),
                            None => say(&format!("{}: {}", f.display, p.message)),
                        }
                    }
                },
                Err(why) => {
                    problems += 1;
                    writeln!(out, "{} {}", paint(FAIL, " error"), f.display)?;
                    say(&format!("{}: {why}", f.display));
                }
            },
        }
    }
    writeln!(
        out,
        "{} {} file{}, {cases} spec case{}, {problems} problem{}",
        paint(if problems == 0 { OK } else { FAIL }, "checked"),
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if cases == 1 { "" } else { "s" },
        if problems == 1 { "" } else { "s" }
    )?;
    Ok(if problems == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}

fn print_layouts(out: &mut impl Write, layouts: &provium_compiler::layout::Layouts) -> Result<()> {
    for name in layouts.names() {
        let Some(l) = layouts.get(name) else { continue };
        writeln!(
            out,
            "        {} {}: size {}, align {}{}",
            paint(BOLD, "struct"),
            l.name,
            l.size,
            l.align,
            if l.packed { ", packed" } else { "" }
        )?;
        writeln!(out, "          {:>6} {:>5}  field", "offset", "size")?;
        for f in &l.fields {
            writeln!(
                out,
                "          {:>6} {:>5}  {} {}",
                f.offset,
                f.size,
                f.name,
                paint(DIM, &f.ty.to_string())
            )?;
        }
    }
    Ok(())
}

pub fn compile(args: CompileArgs) -> Result<u8> {
    let display = args.file.display().to_string();
    if !args.file.is_file() {
        // As `test` and `check` say it: a path that is not there is a usage error.
        discover::discover(std::slice::from_ref(&args.file))?;
        anyhow::bail!("{display}: not a spec file");
    }
    match crate::run::specs::compile_file(&args.file, &display) {
        Ok(c) => {
            std::io::stdout().lock().write_all(c.lua.as_bytes())?;
            Ok(super::EXIT_OK)
        }
        Err(e) => {
            say(&crate::run::specs::render(
                &e.diagnostics,
                &e.source,
                color(),
            ));
            Ok(super::EXIT_FAILED)
        }
    }
}

/// A message on stderr; a closed stderr drops it.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}
