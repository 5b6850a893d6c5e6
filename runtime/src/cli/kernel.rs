//! `provium kernel config|build TREE`: a kernel tree made ready for Provium, and built.

use crate::machine::kernel_build::{self, Base, Configured, Options};
use crate::report::style::{paint, BOLD, DIM, OK};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Write a Provium-ready .config (when the tree has none) or check the one it has.
    Config(TreeArgs),
    /// Configure if needed, build with make (and ccache when installed), print the image.
    Build(BuildArgs),
}

#[derive(Debug, clap::Args)]
struct TreeArgs {
    /// The kernel source tree.
    tree: PathBuf,
    /// Build in this directory (`make O=DIR`); its .config is the one used.
    #[arg(short = 'O', long = "out", value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where the configuration starts: tinyconfig (default, the fastest build), defconfig, or a
    /// configuration file.
    #[arg(
        long,
        value_name = "tinyconfig|defconfig|FILE",
        default_value = "tinyconfig"
    )]
    base: String,
    /// A fragment of your own options (`CONFIG_X=y` lines), merged after Provium's; repeatable.
    #[arg(long, value_name = "FILE")]
    fragment: Vec<PathBuf>,
    /// Merge the fragments onto the tree's existing .config instead of only checking it.
    #[arg(long)]
    merge: bool,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// make's parallel jobs (default: one per CPU).
    #[arg(short, long, value_name = "N", value_parser = super::parse_jobs)]
    jobs: Option<usize>,
}

fn options(a: &TreeArgs, jobs: usize) -> Options {
    let base = match a.base.as_str() {
        "tinyconfig" | "tiny" => Base::Tiny,
        "defconfig" => Base::Defconfig,
        file => Base::File(PathBuf::from(file)),
    };
    Options {
        tree: a.tree.clone(),
        out: a.out.clone(),
        base,
        fragments: a.fragment.clone(),
        merge: a.merge,
        jobs,
    }
}

fn said(c: &Configured, o: &Options) -> String {
    let config = o.objdir().join(".config");
    match c {
        Configured::Written => format!(
            "wrote {} (base, Provium's fragment, yours)",
            config.display()
        ),
        Configured::Merged => format!("merged the fragments into {}", config.display()),
        Configured::Kept => format!("{} has what Provium needs", config.display()),
    }
}

pub fn run(args: Args) -> Result<u8> {
    let mut out = anstream::stdout();
    match args.command {
        Sub::Config(a) => {
            let o = options(&a, 1);
            let c = kernel_build::configure(&o)?;
            writeln!(out, "{} {}", paint(OK, "configured"), said(&c, &o))?;
        }
        Sub::Build(b) => {
            let jobs = b.jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let o = options(&b.tree, jobs);
            let progress = Progress::new();
            let mut compiled = 0usize;
            let built = kernel_build::build(&o, &mut |line| {
                if line.trim_start().starts_with("CC ") {
                    compiled += 1;
                }
                progress.line(compiled, line);
            })?;
            progress.done();
            writeln!(
                out,
                "{} {}",
                paint(OK, "configured"),
                said(&built.configured, &o)
            )?;
            writeln!(
                out,
                "{} {} ({}) in {:.0} s, {compiled} files compiled",
                paint(OK, "     built"),
                paint(BOLD, &built.image.display().to_string()),
                built.release.as_deref().unwrap_or("release unknown"),
                built.seconds
            )?;
            writeln!(
                out,
                "{}",
                paint(
                    DIM,
                    &format!(
                        "      next: provium test --kernel {} SPECS (its syscalls and headers are the tree's own)",
                        o.objdir().display()
                    )
                )
            )?;
        }
    }
    Ok(super::EXIT_OK)
}

/// Progress while make runs: a spinner on a terminal; without one, a line every 30 s, so a CI
/// log shows the build is alive without thousands of lines.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: std::cell::Cell<std::time::Instant>,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let p = indicatif::ProgressBar::new_spinner();
            p.enable_steady_tick(std::time::Duration::from_millis(120));
            p
        });
        super::say(
            "    BUILDING the kernel (make; tinyconfig takes a few minutes, a rebuild seconds)",
        );
        Progress {
            bar,
            last: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    fn line(&self, compiled: usize, line: &str) {
        match &self.bar {
            Some(p) => p.set_message(format!("{compiled} files compiled: {}", line.trim())),
            None if self.last.get().elapsed() >= std::time::Duration::from_secs(30) => {
                self.last.set(std::time::Instant::now());
                super::say(&format!(
                    "    {compiled} files compiled; now: {}",
                    line.trim()
                ));
            }
            None => {}
        }
    }

    fn done(&self) {
        if let Some(p) = &self.bar {
            p.finish_and_clear();
        }
    }
}
