//! `provium test PATHS...`: runs Lua test files and YAML specs.

use crate::fixture::FixtureUse;
use crate::profile::{Profiles, TransportChoice};
use crate::report::{json::Json, junit, terminal::Terminal, Tee};
use crate::run::discover::{self, TestFile};
use crate::run::filter::Filter;
use crate::run::last_run::LastRun;
use crate::run::partition::Partition;
use crate::run::{self, Reporter, RunConfig};
use crate::vm::gate;
use crate::vm::BootOptions;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Files run at the same time (default: one per CPU, as far as memory allows).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Boot every VM instead of resuming fixture snapshots.
    #[arg(long)]
    cold: bool,
    /// Seconds a file may run before its VMs are killed (a file or spec can set its own).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    timeout: f64,
    /// Run one shard of the files: `count:K/N` (round-robin) or `hash:K/N` (by path).
    #[arg(long, value_name = "KIND:K/N")]
    partition: Option<Partition>,
    /// Run only what failed (or did not run) in the last run here.
    #[arg(long)]
    rerun_failed: bool,
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
    let mut filter = args
        .filter
        .as_deref()
        .map(Filter::new)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if args.rerun_failed {
        let last = LastRun::load(&cwd)?;
        if last.is_clean() {
            anstream::eprintln!("provium: nothing failed in the last run");
            return Ok(super::EXIT_OK);
        }
        filter = Some(match filter {
            Some(f) => Filter::Both(Box::new(f), Box::new(last.filter())),
            None => last.filter(),
        });
    }
    if let Some(f) = &filter {
        files.retain(|file| f.may_match_file(&file.display));
    }
    if let Some(p) = &args.partition {
        files = p.select(files);
    }
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
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
    let jobs = match args.jobs {
        Some(j) => j.max(1),
        None => gate::default_jobs(profiles.get("minimal").map(|p| p.memory_mib).unwrap_or(256)),
    };
    if !args.list {
        // Files wait for room rather than overcommit the host.
        let memory = gate::host_available_mib()
            .map(|m| m * 9 / 10)
            .unwrap_or(u64::MAX);
        gate::set_budget(Some((memory, gate::host_cpus().max(jobs as u32))));
    }
    let config = RunConfig {
        filter,
        capture: !args.no_capture,
        list_only: args.list,
        jobs,
        fail_fast: args.fail_fast,
        fixtures: Some(FixtureUse::discover(&cwd, profiles.clone(), !args.cold)?),
        profiles,
        defaults,
        record: false,
        compile: Some(crate::specs::compiler()),
        timeout: Duration::from_secs_f64(args.timeout),
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
    let selected: Vec<String> = files.iter().map(|f| f.display.clone()).collect();
    let summary = run::run(files, &config, &mut tee);
    if let Err(e) = LastRun::from_summary(&summary, &selected).save(&cwd) {
        tracing::warn!("cannot record the run for --rerun-failed: {e:#}");
    }
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
    let summary = run::run(files, config, &mut run::Quiet);
    let mut out = std::io::stdout().lock();
    let mut unlisted = 0;
    for r in &summary.reports {
        for t in &r.tests {
            writeln!(out, "{}::{}", r.path, t.name)?;
        }
        if let Some(p) = &r.file_error {
            // On stderr: stdout stays a clean list for tools.
            anstream::eprintln!("{}: cannot list its tests: {}", r.path, p.message);
            unlisted += 1;
        }
    }
    Ok(if unlisted == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}
