//! `provium bench spec|headers|fixture|suite`: what specs, header-generated suites, fixtures and
//! whole runs cost, against baselines measured in the same run.

use super::measure::{stats, Stats};
use crate::machine::profile::{Profile, TransportChoice};
use crate::machine::vm::{BootOptions, Vm};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// The spec language's costs: compiling 10,000 cases, and a case's cost in the guest, batched
/// and one by one, against a static C program making the same syscall in the same kind of guest.
pub struct SpecBench {
    pub compiled: usize,
    pub compile: Duration,
    pub cases: usize,
    pub batched_per_case: Duration,
    pub single_per_case: Duration,
    /// `None` when gcc is not available to build the C baseline.
    pub c_per_call: Option<Duration>,
}

fn table_spec(rows: usize, batched: bool) -> String {
    let mut s = String::from("suite: bench\ncases:\n  - name: \"close {{ fd }}\"\n    syscall: close\n    args: [\"{{ fd }}\"]\n    expect: EBADF\n");
    if !batched {
        // A case with its own condition is not batched: one round trip each.
        s.push_str("    requires: { arch: x86_64 }\n");
    }
    s.push_str("    table:\n");
    for i in 0..rows {
        s.push_str(&format!("      - {{ fd: {} }}\n", -1 - i as i64));
    }
    s
}

fn run_spec_file(
    dir: &std::path::Path,
    name: &str,
    text: &str,
) -> Result<crate::event::model::FileReport> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    let file = crate::run::discover::TestFile {
        path: path.clone(),
        display: name.to_string(),
        kind: crate::run::discover::FileKind::Spec,
        kernel: None,
    };
    let config = crate::run::RunConfig::new(crate::machine::profile::Profiles::builtin());
    let report = crate::run::run_file(&file, 0, &config, crate::lua::silent(), None);
    anyhow::ensure!(
        !report.is_bad(),
        "the benchmark spec failed: {:?}",
        report.file_error
    );
    Ok(report)
}

const C_BASELINE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_close, -1 - i);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld\n", ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"#;

fn c_baseline(profile: &Profile, dir: &std::path::Path, calls: usize) -> Result<Option<Duration>> {
    let src = dir.join("close_loop.c");
    let bin = dir.join("close_loop");
    std::fs::write(&src, C_BASELINE)?;
    let built = std::process::Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status();
    if !built.map(|s| s.success()).unwrap_or(false) {
        return Ok(None);
    }
    let mut opts = BootOptions::default();
    opts.files.insert("/opt/close_loop".into(), bin);
    let mut vm = Vm::boot(profile, &opts)?;
    let r = vm.root().exec(crate::protocol::ExecCall {
        argv: vec!["/opt/close_loop".into(), calls.to_string()],
        ..Default::default()
    })?;
    vm.shutdown()?;
    let ns: u64 = String::from_utf8_lossy(&r.stdout)
        .trim()
        .parse()
        .context("reading the C baseline's result")?;
    Ok(Some(Duration::from_nanos(ns)))
}

pub fn spec(profile: &Profile, cases: usize) -> Result<SpecBench> {
    let compiled = 10_000;
    let text = table_spec(compiled, true);
    let started = Instant::now();
    let c = provium_compiler::compile(&text, &provium_compiler::Options::new("bench.yaml"))
        .map_err(|d| anyhow::anyhow!("{}", d[0]))?;
    let compile = started.elapsed();
    anyhow::ensure!(c.model.cases.len() == compiled);

    let dir = tempfile::tempdir()?;
    let batched = run_spec_file(dir.path(), "batched.yaml", &table_spec(cases, true))?;
    let single = run_spec_file(dir.path(), "single.yaml", &table_spec(cases, false))?;
    let per = |r: &crate::event::model::FileReport| r.after_boot.unwrap_or_default() / cases as u32;
    Ok(SpecBench {
        compiled,
        compile,
        cases,
        batched_per_case: per(&batched),
        single_per_case: per(&single),
        c_per_call: c_baseline(profile, dir.path(), 100_000)?,
    })
}

/// The header work: parsing a whole include tree, generating the suite, recording it.
pub struct HeadersBench {
    pub headers: usize,
    pub parsed_ok: usize,
    pub parse: Duration,
    pub structs: usize,
    pub constants: usize,
    pub gen: Duration,
    pub gen_specs: usize,
    pub gen_cases: usize,
    pub recorded_specs: usize,
    pub recorded_cases: usize,
    pub record: Duration,
    pub jobs: usize,
}

/// Parses every header under `<root>/linux` (each on its own, as a program would include it),
/// generates the whole suite, and records `record_syscalls` of it.
pub fn headers(record_syscalls: &[&str], jobs: usize) -> Result<HeadersBench> {
    use provium_compiler::headers::tree::{linux_headers, HeaderTree};
    let tree = crate::run::headers::tree();
    let all = linux_headers(&tree.root);
    let started = Instant::now();
    let mut parsed_ok = 0;
    let mut structs = 0;
    let mut constants = 0;
    for h in &all {
        if let Ok(p) = HeaderTree::new(&tree.root).parse(std::slice::from_ref(h)) {
            parsed_ok += 1;
            structs += p.types.layouts().len();
            constants += p.constants().len();
        }
    }
    let parse = started.elapsed();

    let signatures = tree.signatures().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let hs: Vec<String> = provium_compiler::gen::GEN_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let parsed = tree.parse(&hs).map_err(anyhow::Error::msg)?;
    let numbers = tree.syscalls().map_err(anyhow::Error::msg)?;
    let opts = provium_compiler::gen::GenOptions {
        include: tree.root.display().to_string(),
        timeout: 2.0,
        ..Default::default()
    };
    let (specs, _) = provium_compiler::gen::generate(&signatures, &numbers, &parsed, &opts);
    let gen = started.elapsed();
    let gen_cases = specs
        .values()
        .map(|t| t.matches("\n  - name:").count())
        .sum();

    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    let mut recorded_cases = 0;
    for name in record_syscalls {
        let key = format!("{name}.yaml");
        let Some(text) = specs.get(&key) else {
            continue;
        };
        let path = dir.path().join(&key);
        std::fs::write(&path, text)?;
        recorded_cases += text.matches("\n  - name:").count();
        files.push(crate::run::discover::TestFile {
            path,
            display: key,
            kind: crate::run::discover::FileKind::Spec,
            kernel: None,
        });
    }
    let mut config = crate::run::RunConfig::new(crate::machine::profile::Profiles::builtin());
    config.jobs = jobs;
    config.settings.record = true;
    let started = Instant::now();
    let summary = crate::run::run(files.clone(), &config, &mut |_| {});
    let record = started.elapsed();
    anyhow::ensure!(
        summary.reports.iter().all(|r| r.file_error.is_none()),
        "recording failed: {:?}",
        summary.reports.iter().find_map(|r| r.file_error.as_ref())
    );
    Ok(HeadersBench {
        headers: all.len(),
        parsed_ok,
        parse,
        structs,
        constants,
        gen,
        gen_specs: specs.len(),
        gen_cases,
        recorded_specs: files.len(),
        recorded_cases,
        record,
        jobs,
    })
}

/// The syscalls `provium bench headers` records: 40 common ones.
pub const RECORDED: &[&str] = &[
    "read",
    "write",
    "close",
    "fstat",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "openat",
    "openat2",
    "mkdirat",
    "unlinkat",
    "renameat2",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "faccessat2",
    "statx",
    "getcwd",
    "chdir",
    "fchdir",
    "ftruncate",
    "truncate",
    "fcntl",
    "ioctl",
    "flock",
    "fsync",
    "fdatasync",
    "epoll_create1",
    "eventfd2",
    "memfd_create",
    "getrandom",
    "close_range",
];

pub struct FixtureBench {
    pub runs: usize,
    /// Building the fixture: one boot plus the snapshot.
    pub build: Duration,
    /// Building a fixture that prepares the plain boot (one command): a resume of the plain
    /// boot's build, the command and a snapshot (`Fixtures::derive`).
    pub derived_build: Duration,
    pub cold: Stats,
    pub resume: Stats,
}

/// Cold boots against resumes of the same VM from a fixture, both until the VM is ready for
/// requests: the agent's hello for a boot; for a resume, the answers to a ping and to the
/// clock and RNG refresh.
pub fn fixture(
    profile: &Profile,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<FixtureBench> {
    use crate::fixture::{Definition, Source};
    let runs = runs.max(1);
    let profiles = crate::machine::profile::Profiles::discover(&std::env::current_dir()?)?;
    let fixtures =
        crate::lua::fixture_script::discover(&std::env::current_dir()?, profiles, true)?.fixtures;
    let opts = BootOptions {
        transport: Some(TransportChoice::VirtioSerial),
        ..Default::default()
    };
    let def = Definition {
        name: format!("bench-{}", profile.name),
        source: Source::Profile {
            profile: profile.name.clone(),
            opts: opts.clone(),
        },
    };
    // A fresh build each time: its cost is part of the figure.
    if let Some((dir, _)) = fixtures.cached(&def)? {
        let _ = std::fs::remove_dir_all(dir);
    }
    progress("building the fixture");
    let started = Instant::now();
    let meta = fixtures.ensure(&def)?;
    let build = started.elapsed();
    // A fixture that prepares the plain boot, built as a run builds it: on the plain boot's
    // own build, made first (untimed) when missing.
    let prepared = Definition {
        name: format!("bench-{}-prepared", profile.name),
        source: Source::Table(crate::fixture::FixtureTable {
            profile: profile.name.clone(),
            setup: vec!["mkdir -p /srv/prepared".into()],
            ..Default::default()
        }),
    };
    // Removed the way `provium fixture clean` removes a build (not one a process is using).
    fixtures.clean(std::slice::from_ref(&prepared.name), false);
    if let Some(plain) = Definition::plain_boot(profile, &BootOptions::default()) {
        fixtures.ensure(&plain)?;
    }
    progress("building a fixture on the plain boot's build");
    let started = Instant::now();
    fixtures.ensure(&prepared)?;
    let derived_build = started.elapsed();
    let mut cold = Vec::new();
    let mut resume = Vec::new();
    // Interleaved, so that a change in host load affects both alike.
    for i in 0..runs {
        progress(&format!("cold boot {}/{runs}", i + 1));
        let started = Instant::now();
        let mut vm = Vm::boot(profile, &opts)?;
        cold.push(started.elapsed());
        vm.kill();
        progress(&format!("resume {}/{runs}", i + 1));
        let started = Instant::now();
        let mut vm = Vm::resume(&meta.snapshot)?;
        resume.push(started.elapsed());
        vm.kill();
    }
    Ok(FixtureBench {
        runs,
        build,
        derived_build,
        cold: stats(&mut cold),
        resume: stats(&mut resume),
    })
}

pub struct SuiteRun {
    pub label: String,
    pub wall: Duration,
    pub tests: usize,
}

/// The project's own spec suite (`specs/`): `-j1` booting every VM, `-j1` resuming fixtures,
/// and `-jN` resuming fixtures. Every run must pass.
pub fn suite(dir: &std::path::Path, jobs: usize) -> Result<Vec<SuiteRun>> {
    let cwd = std::env::current_dir()?;
    let profiles = crate::machine::profile::Profiles::discover(&cwd)?;
    let files = crate::run::discover::discover(&[dir.to_path_buf()])?;
    anyhow::ensure!(!files.is_empty(), "no specs under {}", dir.display());
    let mut out = Vec::new();
    // The fixture is built before the timed runs: its one-off cost is not a per-run cost.
    let uses = crate::lua::fixture_script::discover(&cwd, profiles.clone(), true)?;
    for (label, jobs, snapshots) in [
        ("-j1, every VM booted (--cold)".to_string(), 1, false),
        ("-j1, fixtures resumed".to_string(), 1, true),
        (format!("-j{jobs}, fixtures resumed"), jobs, true),
    ] {
        let mut config = crate::run::RunConfig::new(profiles.clone());
        config.jobs = jobs;
        config.settings.fixtures = Some(crate::fixture::FixtureUse {
            fixtures: uses.fixtures.clone(),
            snapshots,
        });
        if snapshots && out.len() == 1 {
            // Warm-up: builds the profile's fixture.
            crate::run::run(files[..1].to_vec(), &config, &mut |_| {});
        }
        let started = Instant::now();
        let summary = crate::run::run(files.clone(), &config, &mut |_| {});
        let wall = started.elapsed();
        anyhow::ensure!(
            summary.is_success(),
            "the suite failed in the `{label}` run: {:?}",
            summary.counts
        );
        out.push(SuiteRun {
            label,
            wall,
            tests: summary.counts.run(),
        });
    }
    Ok(out)
}

/// The suite on one kernel, then on that kernel and a second one in one run (`--kernel A
/// --kernel B`), both resuming fixtures with `jobs` files at once: what a second kernel costs.
/// `None` when only one kernel is installed.
pub fn kernels(dir: &std::path::Path, jobs: usize) -> Result<Option<(SuiteRun, SuiteRun)>> {
    let installed = crate::machine::kernels::installed();
    let (Some(first), Some(second)) = (installed.first(), installed.get(1)) else {
        return Ok(None);
    };
    let cwd = std::env::current_dir()?;
    let profiles = crate::machine::profile::Profiles::discover(&cwd)?;
    let files = crate::run::discover::discover(&[dir.to_path_buf()])?;
    let uses = crate::lua::fixture_script::discover(&cwd, profiles.clone(), true)?;
    let targets = [
        crate::machine::kernels::resolve(&first.release)?,
        crate::machine::kernels::resolve(&second.release)?,
    ];
    let config = |n: usize| {
        let mut c = crate::run::RunConfig::new(profiles.clone());
        c.jobs = jobs;
        c.settings.fixtures = Some(crate::fixture::FixtureUse {
            fixtures: uses.fixtures.clone(),
            snapshots: true,
        });
        c.with_kernels(targets[..n].to_vec())
    };
    let mut runs = Vec::new();
    for n in [1, 2] {
        let c = config(n);
        // Warm-up: each kernel's fixture is built before the timed run.
        crate::run::run(files[..1].to_vec(), &c, &mut |_| {});
        let started = Instant::now();
        let summary = crate::run::run(files.clone(), &c, &mut |_| {});
        let wall = started.elapsed();
        anyhow::ensure!(
            summary.counts.failed + summary.counts.errored + summary.counts.not_run == 0,
            "the suite failed on {n} kernel(s): {:?}",
            summary.counts
        );
        runs.push(SuiteRun {
            label: match n {
                1 => format!("-j{jobs}, on {}", first.release),
                _ => format!("-j{jobs}, on {} and {}", first.release, second.release),
            },
            wall,
            tests: summary.counts.run(),
        });
    }
    let two = runs.pop().expect("two runs");
    let one = runs.pop().expect("two runs");
    Ok(Some((one, two)))
}

/// `provium bench generated`: the whole headers-generated suite as a user runs it (`provium
/// gen`, `provium record --update -j N`, `provium test -j N`, as subprocesses of this binary),
/// against cold boots measured in the same run, and the test run again with every case in a
/// fresh worker (`PROVIUM_ISOLATION=worker`, the path before isolated cases) whose outcomes
/// must be identical.
pub struct GeneratedBench {
    pub cold_boot: Duration,
    pub cases: usize,
    pub gen: Duration,
    pub record: Duration,
    pub test: Duration,
    pub worker_test: Duration,
    /// Tests whose status or observed answer differs between the two test runs.
    pub differing: Vec<String>,
}

pub fn generated(
    profile: &crate::machine::profile::Profile,
    jobs: usize,
) -> Result<GeneratedBench> {
    use std::process::Command;
    let mut boots = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut vm = crate::machine::vm::Vm::boot(profile, &Default::default())?;
        boots.push(t.elapsed());
        vm.kill();
    }
    boots.sort();
    let cold_boot = boots[boots.len() / 2];
    let me = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str], worker: bool| -> Result<(Duration, std::process::Output)> {
        let mut c = Command::new(&me);
        c.current_dir(dir.path()).args(args).env("NO_COLOR", "1");
        if worker {
            c.env("PROVIUM_ISOLATION", "worker");
        }
        let t = Instant::now();
        let out = c.output()?;
        Ok((t.elapsed(), out))
    };
    let j = jobs.to_string();
    let (gen, out) = run(&["gen", "--out", "gen"], false)?;
    anyhow::ensure!(
        out.status.success(),
        "provium gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (record, out) = run(&["record", "gen", "--update", "-j", &j], false)?;
    anyhow::ensure!(
        out.status.success(),
        "provium record failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let outcomes = |out: &std::process::Output| -> std::collections::BTreeMap<String, String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "test")
            .map(|e| {
                (
                    format!(
                        "{}::{}",
                        e["file"].as_str().unwrap_or(""),
                        e["name"].as_str().unwrap_or("")
                    ),
                    format!("{} {}", e["status"], e["observed"]),
                )
            })
            .collect()
    };
    let (test, forked) = run(&["test", "gen", "-j", &j, "--format", "json"], false)?;
    let (worker_test, worker) = run(&["test", "gen", "-j", &j, "--format", "json"], true)?;
    let (a, b) = (outcomes(&forked), outcomes(&worker));
    let mut differing: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {v} / {}",
                b.get(k).map(String::as_str).unwrap_or("missing")
            )
        })
        .collect();
    differing.extend(
        b.keys()
            .filter(|k| !a.contains_key(*k))
            .map(|k| format!("{k}: missing")),
    );
    Ok(GeneratedBench {
        cold_boot,
        cases: a.len(),
        gen,
        record,
        test,
        worker_test,
        differing,
    })
}
