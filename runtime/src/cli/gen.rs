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
    /// Generate from a kernel's own headers: a build tree (its syscall table and declarations,
    /// new syscalls included) or an installed release.
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Option<String>,
    /// Seconds each probe may block before it is killed.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Generate for this system call ABI: i386 takes its syscall table (asm/unistd_32.h) and
    /// the headers read with `-m32`, and every spec says `abi: i386`.
    #[arg(long, value_name = "ABI", value_parser = super::parse_abi, default_value = "x86_64")]
    abi: provium_compiler::linux::Abi,
    /// Generate for this architecture's guests: aarch64 takes arm64's syscall table and its
    /// headers (linux-libc-dev:arm64's `asm/`), and every spec says `abi: aarch64`.
    #[arg(long, value_name = "ARCH", value_parser = super::parse_arch, conflicts_with = "abi")]
    arch: Option<provium_compiler::linux::Arch>,
    /// Probe only what changed between two include trees: new syscalls, new flags, grown
    /// structs.
    #[arg(long, num_args = 2, value_names = ["OLD_INCLUDE", "NEW_INCLUDE"])]
    diff: Option<Vec<PathBuf>>,
    /// Print the deny list and exit.
    #[arg(long)]
    list_denied: bool,
    /// Replace specs that changed since `gen` wrote them (hand-written cases, recorded
    /// expectations, files behind symlinks); without it they are named and nothing is written.
    #[arg(long)]
    force: bool,
}

/// What `gen` last wrote into an output directory: each spec's content hash, so that a spec
/// someone changed since (an edit, a recording) is never overwritten unasked.
const MANIFEST: &str = ".provium-gen.json";

fn content_hash(data: &[u8]) -> String {
    blake3::hash(data).to_hex()[..32].to_string()
}

/// The specs of `specs` that `gen` would overwrite although they are not what it last wrote.
fn changed_since_gen(
    out: &std::path::Path,
    specs: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let manifest: std::collections::BTreeMap<String, String> = std::fs::read(out.join(MANIFEST))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default();
    specs
        .iter()
        .filter_map(|(name, text)| {
            let path = out.join(name);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                return Some(format!("{name} (a symlink)"));
            }
            let current = std::fs::read(&path).ok()?;
            if current == text.as_bytes() {
                return None;
            }
            match manifest.get(name) {
                Some(h) if *h == content_hash(&current) => None,
                Some(_) => Some(format!("{name} (changed since gen wrote it)")),
                None => Some(format!("{name} (not written by gen)")),
            }
        })
        .collect()
}

pub fn gen(mut args: GenArgs) -> Result<u8> {
    if let Some(arch) = args.arch {
        args.abi = arch.native_abi();
    }
    let mut out = anstream::stdout();
    if args.list_denied {
        for (name, why) in gen::DENY {
            writeln!(out, "{name:<18} {}", paint(DIM, why))?;
        }
        return Ok(super::EXIT_OK);
    }
    let project = super::project::root(&std::env::current_dir()?);
    let mut tree = match &args.kernel {
        Some(k) => crate::run::headers::tree_of(
            &crate::machine::kernels::resolve(k).with_context(|| format!("--kernel {k}"))?,
        ),
        None => crate::run::headers::tree(),
    };
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
        abi: args.abi,
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
        None if args.abi != provium_compiler::linux::Abi::X86_64 => {
            let parsed = tree
                .parse_in(&headers, args.abi)
                .map_err(anyhow::Error::msg)?;
            let numbers: Vec<(String, u32)> = args
                .abi
                .syscalls()
                .iter()
                .map(|(n, nr)| (n.to_string(), *nr))
                .collect();
            gen::generate(&signatures, &numbers, &parsed, &opts)
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
    let conflicts = changed_since_gen(&args.out, &specs);
    if !conflicts.is_empty() && !args.force {
        const SHOWN: usize = 10;
        let mut list = conflicts
            .iter()
            .take(SHOWN)
            .map(|c| format!("  {c}"))
            .collect::<Vec<_>>()
            .join("\n");
        if conflicts.len() > SHOWN {
            list.push_str(&format!("\n  … and {} more", conflicts.len() - SHOWN));
        }
        super::say(&format!(
            "provium gen: {} spec{} in {} would be overwritten although gen did not write {} \
             as {} now; nothing was written:\n{list}\nKeep them (write elsewhere with --out), \
             or replace them with --force.",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            args.out.display(),
            if conflicts.len() == 1 { "it" } else { "them" },
            if conflicts.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        ));
        return Ok(super::EXIT_FAILED);
    }
    super::project::write_editor_files(&project)?;
    let mut cases = 0;
    let mut manifest: std::collections::BTreeMap<String, String> =
        std::fs::read(args.out.join(MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default();
    for (name, text) in &specs {
        cases += text.matches("\n  - name:").count();
        let path = args.out.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            // --force replaces the link itself, never the file it points to.
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        crate::machine::paths::write_output(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        manifest.insert(name.clone(), content_hash(text.as_bytes()));
    }
    crate::machine::paths::write_output(
        &args.out.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
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
    /// The reference kernel whose answers are recorded: an installed release (`6.12`), an
    /// image, or a build tree (default: the profiles' own).
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Option<String>,
    /// Record on this architecture's guests (a suite `provium gen --arch aarch64` wrote):
    /// its default kernel, or `--kernel` among its own.
    #[arg(long, value_name = "ARCH", value_parser = super::parse_arch)]
    arch: Option<provium_compiler::linux::Arch>,
}

/// A spec being recorded: locked against other `provium record` runs from before the first run
/// until it is written, and its text as it was read, so that an edit made meanwhile is never
/// overwritten.
struct Held {
    _lock: std::fs::File,
    text: String,
}

/// Takes an exclusive lock on `path` (waiting, with a word, for another record of it) and reads
/// it.
fn hold(path: &std::path::Path, display: &str) -> Result<Held> {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::open(path).with_context(|| format!("opening {display}"))?;
    // SAFETY: flock on an open descriptor.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        super::say(&format!(
            "provium: {display} is being recorded by another provium; waiting for it"
        ));
        // SAFETY: as above, waiting.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("locking {display}: {}", std::io::Error::last_os_error());
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {display}"))?;
    Ok(Held { _lock: lock, text })
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
    let reference = super::test::kernel_targets(args.kernel.as_slice(), args.arch.as_slice())?
        .into_iter()
        .next();
    // Locked from before the first run until written: two records of one spec, or a record
    // and an edit, never mix.
    let _in_progress = crate::machine::signals::RunInProgress::begin();
    let held: Vec<Held> = files
        .iter()
        .map(|f| hold(&f.path, &f.display))
        .collect::<Result<_>>()?;
    let mut config = RunConfig::new(profiles.clone());
    config.jobs = args.jobs.max(1);
    config.settings.fixtures = Some(crate::lua::fixture_script::discover(&cwd, profiles, true)?);
    config.settings.defaults = defaults;
    config.settings.record = true;
    // The reference kernel runs every spec with its own names (a tree's new syscalls).
    let config = match reference {
        Some(target) => config.with_kernels(vec![target]),
        None => config,
    };
    let started = std::time::Instant::now();
    // Each run's observations, per file; a file that failed to run in any run is not recorded.
    let mut observed: Vec<Vec<Vec<(u32, String, bool)>>> = vec![Vec::new(); files.len()];
    let mut failed: Vec<Option<String>> = vec![None; files.len()];
    for _ in 0..args.runs {
        let summary = run::run(files.clone(), &config, &mut |_| {});
        if let Some(sig) = summary.interrupted {
            super::say(&format!(
                "provium: interrupted by {}; nothing was recorded",
                sig.name()
            ));
            return Ok(sig.exit_code());
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
        let source = held[i].text.clone();
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
            let naming = config
                .kernels
                .first()
                .and_then(|k| k.settings.naming.clone());
            if let Err(why) =
                write_recorded(&file.path, &file.display, &source, &text, naming.as_deref())
            {
                problems += 1;
                writeln!(out, "{} {}: {why}", paint(WARN, "   error"), file.display)?;
            }
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

/// Writes a recorded spec, atomically, unless it changed since it was read (an edit made during
/// the record is kept and named); then checks it, and puts the original back if the recorded
/// text does not check (a bug in recording never costs the user their spec).
fn write_recorded(
    path: &std::path::Path,
    display: &str,
    read: &str,
    recorded: &str,
    naming: Option<&crate::lua::session::KernelNaming>,
) -> std::result::Result<(), String> {
    let now = std::fs::read_to_string(path).map_err(|e| format!("reading it again: {e}"))?;
    if now != read {
        return Err("it changed while it was recorded; not written (record it again)".into());
    }
    crate::machine::paths::write_output(path, recorded.as_bytes())
        .map_err(|e| format!("writing it: {e}"))?;
    if let Err(e) = crate::run::specs::compile_on(path, display, naming, None) {
        let restored = crate::machine::paths::write_output(path, read.as_bytes());
        return Err(format!(
            "the recorded spec does not check ({}); {} (a bug in provium record: please \
             report it)",
            e.problem().message,
            match restored {
                Ok(()) => "the original is back".to_string(),
                Err(r) => format!("and the original could not be put back: {r}"),
            }
        ));
    }
    Ok(())
}
