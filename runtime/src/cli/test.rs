//! `provium test PATHS...`: runs Lua test files and YAML specs.

use crate::machine::profile::{Profiles, TransportChoice};
use crate::machine::vm::gate;
use crate::machine::vm::BootOptions;
use crate::report::{json::Json, junit::JunitFile, terminal::Terminal, Reporter, Reporters};
use crate::run::discover;
use crate::run::filter::Filter;
use crate::run::last_run::LastRun;
use crate::run::partition::Partition;
use crate::run::{self, RunConfig};
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
    /// Files run at the same time (default: one per CPU, as far as memory allows).
    #[arg(short, long, value_name = "N", value_parser = super::parse_jobs)]
    jobs: Option<usize>,
    /// Boot every VM instead of resuming fixture snapshots.
    #[arg(long)]
    cold: bool,
    /// Seconds a file may run before its VMs are killed (a file or spec can set its own).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    timeout: f64,
    /// Seconds listing a file's tests may take before it runs (a loop at its top level that
    /// waits for a VM's answer cannot end while planning invents answers).
    #[arg(long, value_name = "SECS", default_value_t = crate::lua::PLAN_TIME_LIMIT.as_secs_f64())]
    plan_timeout: f64,
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
    /// Write a self-contained HTML report: tests × kernels, differing rows first.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Run every test on this kernel (repeat for several, compared in one run): a release
    /// installed in the cache (`6.12`), a kernel image, or a kernel build tree.
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Vec<String>,
    /// Run every spec under this system call ABI (repeat for several, compared in one run like
    /// kernels): x86_64, or i386 (`int $0x80`, on a kernel with CONFIG_IA32_EMULATION). Lua
    /// files choose theirs with `vm:abi()` and run once per kernel.
    #[arg(long, value_name = "ABI", value_parser = super::parse_abi)]
    abi: Vec<provium_compiler::linux::Abi>,
    /// Run every test on this architecture's guests (repeat for several, compared in one run
    /// like kernels): x86_64, or aarch64 (Debian's arm64 kernel, `scripts/setup --arch arm64`,
    /// emulated). With `--kernel`, each kernel is looked for among each architecture's.
    #[arg(long, value_name = "ARCH", value_parser = super::parse_arch)]
    arch: Vec<provium_compiler::linux::Arch>,
}

/// The kernels of `--kernel` × `--arch`: each kernel among each architecture's installed ones,
/// or each architecture's default kernel when no kernel is named.
pub fn kernel_targets(
    kernels: &[String],
    arches: &[provium_compiler::linux::Arch],
) -> Result<Vec<crate::machine::kernels::KernelTarget>> {
    use crate::machine::kernels;
    let targets = if arches.is_empty() {
        kernels
            .iter()
            .map(|k| kernels::resolve(k).with_context(|| format!("--kernel {k}")))
            .collect::<Result<Vec<_>>>()?
    } else {
        let mut targets = Vec::new();
        for &arch in arches {
            if kernels.is_empty() {
                targets.push(
                    kernels::default_target_for(arch).with_context(|| format!("--arch {arch}"))?,
                );
            }
            for k in kernels {
                targets.push(
                    kernels::resolve_for(k, arch)
                        .with_context(|| format!("--kernel {k} --arch {arch}"))?,
                );
            }
        }
        targets
    };
    Ok(kernels::distinct_labels(targets))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    /// KTAP version 1 (kselftest, KUnit), one subtest per file.
    Ktap,
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
    let kernels = kernel_targets(&args.kernel, &args.arch)?;
    let outputs: Vec<(&str, &std::path::Path)> = [("--junit", &args.junit), ("--html", &args.html)]
        .into_iter()
        .filter_map(|(flag, p)| p.as_deref().map(|p| (flag, p)))
        .collect();
    check_outputs(&outputs, &files)?;
    let timeout = crate::lua::control::timeout_from_secs(args.timeout)
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let plan_limit = crate::lua::control::timeout_from_secs(args.plan_timeout)
        .map_err(|e| anyhow::anyhow!("--plan-timeout: {e}"))?;
    if args.keep {
        // Resumed VMs too, not only booted ones; each kept directory is printed.
        crate::machine::cleanup::keep_run_dirs();
    }
    let mut defaults = BootOptions {
        keep_run_dir: args.keep,
        ..Default::default()
    };
    if let Some(a) = &args.accel {
        defaults.accel = Some(a.parse().map_err(anyhow::Error::msg)?);
    }
    if let Some(t) = &args.transport {
        defaults.transport = Some(t.parse::<TransportChoice>()?);
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
        settings: crate::lua::Settings {
            capture: !args.no_capture,
            list_only: false,
            plan_limit,
            fixtures: Some(crate::lua::fixture_script::discover(
                &cwd,
                profiles.clone(),
                !args.cold,
            )?),
            profiles,
            defaults,
            record: false,
            naming: None,
            abi: None,
        },
        filter,
        jobs,
        fail_fast: args.fail_fast,
        compile: crate::run::specs::compiler(),
        timeout,
        kernels: Vec::new(),
    }
    .with_kernels(kernels)
    .with_abis(&args.abi)?;
    // From here a signal stops the run and its reports are still written (planning included).
    let _in_progress = crate::machine::signals::RunInProgress::begin();
    let plan = {
        // Planning is milliseconds a file; a long one (thousands of files, a file that loops
        // until planning's time limit) is said, also without a terminal.
        let done = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let watcher = {
            let done = done.clone();
            let n = files.len() * config.kernels.len().max(1);
            std::thread::spawn(move || {
                let (lock, cv) = &*done;
                let guard = crate::machine::sync::lock(lock);
                let (finished, _) = cv
                    .wait_timeout_while(guard, std::time::Duration::from_secs(2), |d| !*d)
                    .unwrap_or_else(|p| p.into_inner());
                if !*finished {
                    super::say(&format!(
                        "    PLANNING {n} file{} (listing their tests; nothing boots)",
                        if n == 1 { "" } else { "s" }
                    ));
                }
            })
        };
        let plan = run::plan_run(files.clone(), &config);
        *crate::machine::sync::lock(&done.0) = true;
        done.1.notify_all();
        let _ = watcher.join();
        plan
    };
    if args.list {
        return list(&plan.planned, args.format);
    }
    if plan.is_empty() && crate::machine::signals::interrupted().is_none() {
        super::say(&format!(
            "provium: no tests selected ({} file{} searched{}); nothing was run",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if args.filter.is_some() {
                ", with the filter"
            } else {
                ""
            }
        ));
        return Ok(super::EXIT_NO_TESTS);
    }
    let mut reporters = Reporters::default();
    match args.format {
        Format::Human => reporters.push(Terminal::new(verbose)),
        Format::Json => reporters.push(Json::stdout()),
        Format::Ktap => reporters.push(crate::report::ktap::Ktap::stdout()),
    }
    if let Some(path) = &args.junit {
        reporters.push(JunitFile::new(path, crate::machine::paths::write_output));
    }
    if let Some(path) = &args.html {
        reporters.push(crate::report::html::HtmlFile::new(
            path,
            crate::machine::paths::write_output,
        ));
    }
    let selected: Vec<String> = files.iter().map(|f| f.display.clone()).collect();
    let summary = run::run_plan(plan, &config, &mut |e| reporters.report(e));
    if let Err(e) = LastRun::from_summary(&summary, &selected).save(&cwd) {
        tracing::warn!("cannot record the run for --rerun-failed: {e:#}");
    }
    reporters.finish()?;
    Ok(if let Some(i) = summary.interrupted {
        i.exit_code()
    } else if summary.is_success() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}

/// Outputs never replace inputs, nor each other, nor the run's own terminal output: a report
/// path that is one of the test files, another report's path, or the file standard output or
/// error already goes to is refused before anything runs.
fn check_outputs(
    outputs: &[(&str, &std::path::Path)],
    inputs: &[discover::TestFile],
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
    let id_of = |p: &std::path::Path| std::fs::metadata(p).ok().map(identity);
    let fd_id = |fd: i32| {
        // SAFETY: a plain C struct, all zeroes is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor number with a valid buffer; a closed one fails.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    let regular = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    let inputs: Vec<((u64, u64), &str)> = inputs
        .iter()
        .filter_map(|f| id_of(&f.path).map(|id| (id, f.display.as_str())))
        .collect();
    for (i, (flag, path)) in outputs.iter().enumerate() {
        let Some(id) = id_of(path) else { continue };
        if let Some((_, name)) = inputs.iter().find(|(i, _)| *i == id) {
            anyhow::bail!(
                "{flag} {}: that is {name}, one of the test files; a report never replaces an input",
                path.display()
            );
        }
        for (other, other_path) in &outputs[..i] {
            if id_of(other_path) == Some(id) {
                anyhow::bail!(
                    "{flag} and {other} both name {}; give each report its own file",
                    path.display()
                );
            }
        }
        // A regular file that is this run's stdout or stderr (`--junit /dev/stdout > log`):
        // the report would replace the terminal log. Pipes and terminals are streams, and
        // written through.
        for (fd, stream) in [(1, "standard output"), (2, "standard error")] {
            if regular(path) && fd_id(fd) == Some(id) {
                anyhow::bail!(
                    "{flag} {}: that is this run's {stream}, where the terminal report goes; \
                     name another file (or use --format json or --format ktap on stdout)",
                    path.display()
                );
            }
        }
    }
    // Two reports naming one new file.
    for (i, (flag, path)) in outputs.iter().enumerate() {
        for (other, other_path) in &outputs[..i] {
            if path == other_path {
                anyhow::bail!(
                    "{flag} and {other} both name {}; give each report its own file",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// `--list`: `file::test` per line on stdout; files that cannot be listed on stderr.
fn list(plans: &[crate::event::PlannedFile], format: Format) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut unlisted = 0;
    if format == Format::Json {
        crate::report::json::write_line(
            &mut out,
            &crate::report::json::JsonEvent::List {
                format: crate::report::json::FORMAT,
                files: plans,
            },
        )?;
    }
    for p in plans {
        for t in p.tests.iter().filter(|_| format != Format::Json) {
            writeln!(out, "{}::{}", p.display(), t.name)?;
        }
        if p.provisional {
            super::say(&format!(
                "{}: its tests depend on what its VMs answer; a run may define more than \
                 the {} listed",
                p.display(),
                p.tests.len()
            ));
        }
        if let Some(why) = &p.plan_error {
            // On stderr: stdout stays a clean list for tools.
            super::say(&format!("{}: cannot list its tests: {why}", p.path));
            unlisted += 1;
        }
    }
    Ok(if unlisted == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_FAILED
    })
}
