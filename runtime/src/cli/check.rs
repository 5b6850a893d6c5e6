//! `provium check PATHS` (validate without booting) and `provium compile FILE` (print the Lua).

use super::style::{paint, BOLD, DIM, FAIL, OK};
use crate::run::discover::{self, FileKind};
use anyhow::Result;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Specs and directories to check (Lua files are checked for syntax).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Print each struct's size, alignment and field offsets.
    #[arg(long)]
    layout: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The spec to compile.
    file: PathBuf,
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn check(args: CheckArgs) -> Result<u8> {
    let files = discover::discover(&args.paths)?;
    let mut out = anstream::stdout();
    let mut problems = 0;
    let mut cases = 0;
    for f in &files {
        match f.kind {
            FileKind::Spec => match crate::specs::compile_file(&f.path, &f.display, color()) {
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
                Err((n, text)) => {
                    problems += n;
                    writeln!(out, "{} {}", paint(FAIL, " error"), f.display)?;
                    eprintln!("{text}");
                }
            },
            FileKind::Lua => {
                let code = std::fs::read_to_string(&f.path)?;
                let lua = mlua::Lua::new();
                match lua
                    .load(&code)
                    .set_name(format!("@{}", f.display))
                    .into_function()
                {
                    Ok(_) => writeln!(out, "{} {}", paint(OK, "    ok"), f.display)?,
                    Err(e) => {
                        problems += 1;
                        writeln!(out, "{} {}", paint(FAIL, " error"), f.display)?;
                        eprintln!("{}", crate::lua::errors::innermost(&e));
                    }
                }
            }
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
    match crate::specs::compile_file(&args.file, &display, color()) {
        Ok(c) => {
            print!("{}", c.lua);
            Ok(super::EXIT_OK)
        }
        Err((_, text)) => {
            eprintln!("{text}");
            Ok(super::EXIT_FAILED)
        }
    }
}
