//! `provium test PATHS...`: runs Lua test files and YAML specs.

use crate::profile::{Profiles, TransportChoice};
use crate::report::{json::Json, junit, terminal::Terminal, Tee};
use crate::run::discover::{self, TestFile};
use crate::run::filter::Filter;
use crate::run::{self, Reporter, RunConfig};
use crate::vm::BootOptions;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test files and directories (`*.lua`, `*.yaml`); directories are searched recursively.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run only tests whose `file::name` contains PATTERN, or matches it as a glob.
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// List the tests without running them (no VM is booted).
    #[arg(long)]
    list: bool,
    /// Show what tests print as it happens instead of with failures.
    #[arg(long)]
    no_capture: bool,
    /// Files run at the same time.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Stop starting new files after the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Accelerator for every VM (default: KVM where it works, else TCG).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    accel: Option<String>,
    /// Transport for every VM.
    #[arg(long, value_parser = ["virtio-serial", "vsock"])]
    transport: Option<String>,
    /// Keep each VM's run directory (console log, sockets) for debugging.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn run(args: Args, verbose: bool) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let profiles = Profiles::discover(&cwd)?;
    let mut files = discover::discover(&args.paths)?;
    let filter = args
        .filter
        .as_deref()
        .map(Filter::new)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(f) = &filter {
        files.retain(|file| f.may_match_file(&file.display));
    }
    let mut defaults = BootOptions {
        keep_run_dir: args.keep,
        ..Default::default()
    };
    if let Some(a) = &args.accel {
        defaults.accel = Some(a.parse().map_err(anyhow::Error::msg)?);
    }
    if let Some(t) = &args.transport {
        defaults.transport = Some(t.parse::<TransportChoice>().map_err(anyhow::Error::msg)?);
    }
    let config = RunConfig {
        filter,
        capture: !args.no_capture,
        list_only: args.list,
        jobs: args.jobs.max(1),
        fail_fast: args.fail_fast,
        profiles,
        defaults,
        record: false,
        compile: Some(crate::specs::compiler()),
    };
    if args.list {
        return list(files, &config);
    }
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    match args.format {
        Format::Human => reporters.push(Box::new(Terminal::new(verbose))),
        Format::Json => reporters.push(Box::new(Json::new())),
    }
    let mut tee = Tee(reporters);
    let summary = run::run(files, &config, &mut tee);
    if let Some(path) = &args.junit {
        junit::write(&summary, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if summary.is_success() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}

fn list(files: Vec<TestFile>, config: &RunConfig) -> Result<u8> {
    let summary = run::run(files, config, &mut NoReport);
    let mut out = std::io::stdout().lock();
    for r in &summary.reports {
        for t in &r.tests {
            writeln!(out, "{}::{}", r.path, t.name)?;
        }
        if let Some(p) = &r.file_error {
            writeln!(out, "{} (cannot list: {})", r.path, p.message)?;
        }
    }
    Ok(super::EXIT_OK)
}

struct NoReport;
impl Reporter for NoReport {}
