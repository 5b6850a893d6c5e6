//! `provium gen` (probing specs from headers) and `provium record` (observed outcomes written
//! into specs as expectations).

use crate::machine::profile::Profiles;
use crate::machine::vm::BootOptions;
use crate::report::style::{paint, BOLD, DIM, OK, WARN};
use crate::run::discover::{self, FileKind};
use crate::run::{self, RunConfig};
use anyhow::{bail, Context, Result};
use provium_compiler::gen::{self, GenOptions};
use provium_compiler::headers::tree::HeaderTree;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Where to write the specs (one per syscall).
    #[arg(long, short, default_value = "specs/gen")]
    out: PathBuf,
    /// Only these syscalls (comma-separated); default: every syscall not denied.
    #[arg(long, value_delimiter = ',')]
    syscalls: Vec<String>,
    /// Take these off the deny list.
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
    /// Add these to the deny list.
    #[arg(long, value_delimiter = ',')]
    deny: Vec<String>,
    /// The userspace include tree (default: /usr/include).
    #[arg(long, value_name = "DIR", env = "PROVIUM_INCLUDE")]
    include: Option<PathBuf>,
    /// A kernel headers tree with include/linux/syscalls.h (default: the one in the cache).
    #[arg(long, value_name = "DIR", env = "PROVIUM_KERNEL_HEADERS")]
    kernel_headers: Option<PathBuf>,
    /// Seconds each probe may block before it is killed.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Probe only what changed between two include trees: new syscalls, new flags, grown
    /// structs.
    #[arg(long, num_args = 2, value_names = ["OLD_INCLUDE", "NEW_INCLUDE"])]
    diff: Option<Vec<PathBuf>>,
    /// Print the deny list and exit.
    #[arg(long)]
    list_denied: bool,
}

pub fn gen(args: GenArgs) -> Result<u8> {
    let mut out = anstream::stdout();
    if args.list_denied {
        for (name, why) in gen::DENY {
            writeln!(out, "{name:<18} {}", paint(DIM, why))?;
        }
        return Ok(super::EXIT_OK);
    }
    let project = super::project::root(&std::env::current_dir()?);
    let mut tree = crate::run::headers::tree();
    if let Some(i) = &args.include {
        tree.root = i.clone();
    }
    if let Some(k) = &args.kernel_headers {
        tree.kernel = Some(k.clone());
    }
    let signatures = tree.signatures().map_err(anyhow::Error::msg)?;
    let opts = GenOptions {
        only: args.syscalls.clone(),
        allow: args.allow.clone(),
        deny: args.deny.clone(),
        include: tree.root.display().to_string(),
        timeout: args.timeout,
        // The specs' `$schema` line names the project's own copy (refreshed below).
        schema: super::project::relative(&args.out, &super::project::schema_path(&project))
            .display()
            .to_string(),
    };
    let headers: Vec<String> = gen::GEN_HEADERS.iter().map(|h| h.to_string()).collect();
    let started = std::time::Instant::now();
    let (specs, skipped) = match &args.diff {
        Some(trees) => {
            let old = HeaderTree::new(&trees[0]);
            let new = HeaderTree::new(&trees[1]);
            let diff = provium_compiler::gen::diff::compare(&old, &new, &headers)
                .map_err(anyhow::Error::msg)?;
            for line in diff.describe() {
                writeln!(out, "{} {line}", paint(DIM, "changed:"))?;
            }
            let parsed = new.parse(&headers).map_err(anyhow::Error::msg)?;
            let numbers = new.syscalls().map_err(anyhow::Error::msg)?;
            let mut o = opts.clone();
            o.include = trees[1].display().to_string();
            (
                provium_compiler::gen::diff::generate(&diff, &signatures, &numbers, &parsed, &o),
                Vec::new(),
            )
        }
        None => {
            let parsed = tree.parse(&headers).map_err(anyhow::Error::msg)?;
            let numbers = tree.syscalls().map_err(anyhow::Error::msg)?;
            gen::generate(&signatures, &numbers, &parsed, &opts)
        }
    };
    if specs.is_empty() {
        bail!("nothing to generate (check --syscalls, or the headers given to --diff)");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    super::project::write_editor_files(&project)?;
    let mut cases = 0;
    for (name, text) in &specs {
        cases += text.matches("\n  - name:").count();
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    for (name, why) in &skipped {
        writeln!(
            out,
            "{} {name}: {}",
            paint(WARN, "  denied"),
            paint(DIM, why)
        )?;
    }
    writeln!(
        out,
        "{} {} specs, {cases} cases in {} ({} ms); next: provium record {} --update",
        paint(OK, "generated"),
        specs.len(),
        args.out.display(),
        started.elapsed().as_millis(),
        args.out.display()
    )?;
    Ok(super::EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Specs and directories to record.
    paths: Vec<PathBuf>,
    /// Write the observed outcomes into the specs (default: only show what would change).
    #[arg(long)]
    update: bool,
    /// Files run at the same time.
    #[arg(short, long, default_value_t = 1, value_parser = super::parse_jobs)]
    jobs: usize,
    #[arg(long, value_parser = ["kvm", "tcg"])]
    accel: Option<String>,
    /// Run every case this many times; an answer that differs between runs is recorded as all
    /// the answers seen (`[EAGAIN, EBADF]`, `{ one_of: [0, { died: { signal: 9 } }] }`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
}

pub fn record(args: RecordArgs) -> Result<u8> {
    let mut files = discover::discover(&args.paths)?;
    files.retain(|f| f.kind == FileKind::Spec);
    if files.is_empty() {
        bail!("no specs under {:?}", args.paths);
    }
    let mut defaults = BootOptions::default();
    if let Some(a) = &args.accel {
        defaults.accel = Some(a.parse().map_err(anyhow::Error::msg)?);
    }
    let cwd = std::env::current_dir()?;
    let profiles = Profiles::discover(&cwd)?;
    let mut config = RunConfig::new(profiles.clone());
    config.jobs = args.jobs.max(1);
    config.settings.fixtures = Some(crate::lua::fixture::discover(&cwd, profiles, true)?);
    config.settings.defaults = defaults;
    config.settings.record = true;
    let started = std::time::Instant::now();
    // Each run's observations, per file; a file that failed to run in any run is not recorded.
    let mut observed: Vec<Vec<Vec<(u32, String, bool)>>> = vec![Vec::new(); files.len()];
    let mut failed: Vec<Option<String>> = vec![None; files.len()];
    for _ in 0..args.runs {
        let summary = run::run(files.clone(), &config, &mut |_| {});
        if let Some(sig) = summary.interrupted {
            bail!("interrupted by {}; nothing was recorded", sig.name());
        }
        for (i, report) in summary.reports.iter().enumerate() {
            match &report.file_error {
                Some(p) => {
                    failed[i].get_or_insert_with(|| p.message.clone());
                }
                None => observed[i].push(report.observations.clone()),
            }
        }
    }
    let mut out = anstream::stdout();
    let mut total_changed = 0;
    let mut problems = 0;
    let mut nondeterministic = 0;
    for (i, file) in files.iter().enumerate() {
        if let Some(message) = &failed[i] {
            problems += 1;
            writeln!(
                out,
                "{} {}: {message}",
                paint(WARN, "   error"),
                file.display
            )?;
            continue;
        }
        let source = std::fs::read_to_string(&file.path)?;
        let (edits, differing) = provium_compiler::record::merge_runs(&source, &observed[i]);
        for line in &differing {
            nondeterministic += 1;
            writeln!(
                out,
                "{} {}:{line}: the answer differed between runs or rows; all of them are kept",
                paint(WARN, " varying"),
                file.display
            )?;
        }
        let (text, changed) = provium_compiler::record::apply(&source, &edits);
        total_changed += changed.len();
        if changed.is_empty() {
            continue;
        }
        writeln!(
            out,
            "{} {} ({} expectation{})",
            paint(BOLD, if args.update { "recorded" } else { "  differs" }),
            file.display,
            changed.len(),
            if changed.len() == 1 { "" } else { "s" }
        )?;
        if args.update {
            crate::machine::paths::write_output(&file.path, text.as_bytes())?;
        }
    }
    writeln!(
        out,
        "{} {} specs over {} run{}, {total_changed} expectation{} {}{} in {:.1} s",
        paint(OK, "recorded"),
        files.len(),
        args.runs,
        if args.runs == 1 { "" } else { "s" },
        if total_changed == 1 { "" } else { "s" },
        if args.update {
            "written"
        } else {
            "would change (run with --update)"
        },
        if nondeterministic > 0 {
            format!(", {nondeterministic} varying")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    )?;
    Ok(if problems > 0 {
        super::EXIT_FAILED
    } else {
        super::EXIT_OK
    })
}
