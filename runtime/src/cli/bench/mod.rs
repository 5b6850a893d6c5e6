//! `provium bench`: prints each measurement with its in-run baseline and the ratio.

use crate::report::style::{paint, BOLD};
mod measure;
mod phases;
mod suites;

use crate::machine::profile::{Profiles, TransportChoice};
use crate::machine::vm::{BootOptions, Vm};
use anyhow::Result;
use measure as bench;
use measure::{ms, us};
use std::io::Write;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// Boots per variant.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Calls for the round-trip percentiles.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Profile to boot.
    #[arg(add = crate::cli::complete::profile(), long, default_value = "minimal")]
    profile: String,
    /// Boot this kernel instead of the profile's: an installed release, an image, or a build
    /// tree (`provium bench boot --kernel TREE` times your own kernel against its bare boot).
    /// Repeat it to time several kernels' boots in one run (`bench boot` only; the other
    /// parts use the first).
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Vec<String>,
    /// Cold boots and resumes for `fixture`.
    #[arg(long, default_value_t = 10)]
    resumes: usize,
    /// With `boot`: where a cold boot's and a resume's time goes, phase by phase (host and
    /// guest), with one syscall and the shutdown, median of `--boots` runs.
    #[arg(long)]
    phases: bool,
    /// The spec suite for `suite`.
    #[arg(long, default_value = "specs")]
    suite: std::path::PathBuf,
    /// Jobs for the parallel `suite` run (default: the CPU count).
    #[arg(short, long, value_parser = crate::cli::parse_jobs)]
    jobs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    All,
    Boot,
    Roundtrip,
    Batch,
    Buffer,
    Spec,
    Headers,
    Fixture,
    Suite,
    /// The suite on one kernel vs two in one run.
    Kernels,
    /// One case batched, isolated (a forked child) and in a fresh worker.
    Isolated,
    /// The whole headers-generated suite (gen, record, test) against cold boots.
    Generated,
}

pub fn run(args: Args) -> Result<u8> {
    let discovered = Profiles::discover(&std::env::current_dir()?)?;
    // Each kernel asked for, as a profile set booting it; none: the profiles' own.
    let mut kernels: Vec<(Option<String>, Profiles)> = Vec::new();
    for k in &args.kernel {
        let t = crate::machine::kernels::resolve(k)
            .map_err(|e| anyhow::anyhow!("--kernel {k}: {e:#}"))?;
        kernels.push((
            Some(t.label.clone()),
            discovered.with_kernel(&t.image, t.modules.as_deref()),
        ));
    }
    if kernels.is_empty() {
        kernels.push((None, discovered));
    }
    let profiles = kernels[0].1.clone();
    let profile = profiles.get(&args.profile)?;
    let mut out = anstream::stdout();
    let all = args.what == What::All;
    if args.phases {
        // Each kernel's split in one run (`--kernel` twice: x86_64's and arm64's side by side),
        // each against its own bare boot, with a syscall's round trip on a resumed VM.
        for (i, (label, kernel_profiles)) in kernels.iter().enumerate() {
            let profile = kernel_profiles.get(&args.profile)?;
            let kernel = args.kernel.get(i).map(String::as_str);
            phases::print(
                &mut out,
                label.as_deref(),
                kernel,
                &profile,
                args.boots,
                args.calls,
            )?;
        }
        if args.what == What::Boot {
            return Ok(0);
        }
    }
    if all || args.what == What::Boot {
        // The default variant's median per kernel, compared at the end.
        let mut defaults: Vec<(String, Duration)> = Vec::new();
        for (label, kernel_profiles) in &kernels {
            let profile = kernel_profiles.get(&args.profile)?;
            let on = label
                .as_deref()
                .map(|l| format!(" on {l}"))
                .unwrap_or_default();
            writeln!(
                out,
                "{}",
                paint(
                    BOLD,
                    &format!("Cold boot to a ready agent{on} (median of {})", args.boots)
                )
            )?;
            let results = with_steps(|progress| bench::boot(&profile, args.boots, progress))?;
            let baseline = results[0].wall.p50;
            writeln!(
                out,
                "  {:<42} {:>9} {:>11} {:>12} {:>8} {:>6}",
                "variant", "wall p50", "min–max", "guest ready", "speed-up", "hangs"
            )?;
            for r in &results {
                writeln!(
                    out,
                    "  {:<42} {:>9} {:>11} {:>12} {:>7.2}× {:>6}",
                    r.variant.name,
                    ms(r.wall.p50),
                    format!(
                        "{:.1}–{:.1}s",
                        r.wall.min.as_secs_f64(),
                        r.wall.max.as_secs_f64()
                    ),
                    ms(r.guest_ready.p50),
                    baseline.as_secs_f64() / r.wall.p50.as_secs_f64(),
                    format!("{}/{}", r.failed, args.boots)
                )?;
            }
            if let Some(d) = results
                .iter()
                .find(|r| r.variant.name.contains("(default)"))
            {
                defaults.push((
                    label
                        .clone()
                        .unwrap_or_else(|| "the profile's kernel".into()),
                    d.wall.p50,
                ));
            }
            writeln!(out)?;
        }
        if let [(first, base), rest @ ..] = defaults.as_slice() {
            for (label, t) in rest {
                writeln!(
                    out,
                    "  default variant: {label} {} against {first} {}: {:.2}× its time",
                    ms(*t),
                    ms(*base),
                    t.as_secs_f64() / base.as_secs_f64()
                )?;
            }
            if !rest.is_empty() {
                writeln!(out)?;
            }
        }
    }
    if all || args.what == What::Fixture {
        let f = with_steps(|progress| suites::fixture(&profile, args.resumes, progress))?;
        writeln!(
            out,
            "{}",
            paint(
                BOLD,
                &format!("Fixture resume against a cold boot (median of {})", f.runs)
            )
        )?;
        writeln!(
            out,
            "  cold boot to ready (baseline)  p50 {:>8}   min–max {}–{}",
            ms(f.cold.p50),
            ms(f.cold.min),
            ms(f.cold.max)
        )?;
        writeln!(
            out,
            "  resume to ready                p50 {:>8}   min–max {}–{}   {:.1}× faster",
            ms(f.resume.p50),
            ms(f.resume.min),
            ms(f.resume.max),
            f.cold.p50.as_secs_f64() / f.resume.p50.as_secs_f64()
        )?;
        writeln!(
            out,
            "  building the fixture (once)        {:>8}",
            ms(f.build)
        )?;
        writeln!(
            out,
            "  building a fixture on its build    {:>8}   {:.1}× faster (a resume, one command, a snapshot)",
            ms(f.derived_build),
            f.build.as_secs_f64() / f.derived_build.as_secs_f64()
        )?;
        writeln!(out)?;
    }
    if all || args.what == What::Suite {
        let jobs = args
            .jobs
            .unwrap_or_else(|| crate::machine::vm::gate::host_cpus() as usize);
        let runs = suites::suite(&args.suite, jobs)?;
        writeln!(
            out,
            "{}",
            paint(
                BOLD,
                &format!(
                    "The spec suite ({}, {} tests)",
                    args.suite.display(),
                    runs[0].tests
                )
            )
        )?;
        let base = runs[0].wall;
        for r in &runs {
            writeln!(
                out,
                "  {:<34} {:>9}   {:.1}×",
                r.label,
                ms(r.wall),
                base.as_secs_f64() / r.wall.as_secs_f64()
            )?;
        }
        writeln!(out)?;
    }
    if all || args.what == What::Kernels {
        let jobs = args
            .jobs
            .unwrap_or_else(|| crate::machine::vm::gate::host_cpus() as usize);
        writeln!(
            out,
            "{}",
            paint(
                BOLD,
                &format!("The spec suite on two kernels ({})", args.suite.display())
            )
        )?;
        match suites::kernels(&args.suite, jobs)? {
            None => writeln!(
                out,
                "  needs two installed kernels (scripts/setup installs 6.12)"
            )?,
            Some((one, two)) => {
                for r in [&one, &two] {
                    writeln!(
                        out,
                        "  {:<62} {:>9}  {} tests",
                        r.label,
                        ms(r.wall),
                        r.tests
                    )?;
                }
                writeln!(
                    out,
                    "  the second kernel costs {:.2}× the first (goal: at most 1.00×: its own boots and cases, in parallel)",
                    two.wall.as_secs_f64() / one.wall.as_secs_f64() - 1.0
                )?;
            }
        }
        writeln!(out)?;
    }
    if all || args.what == What::Generated {
        let jobs = args
            .jobs
            .unwrap_or_else(|| crate::machine::vm::gate::host_cpus() as usize);
        let g = suites::generated(&profile, jobs)?;
        let boots5 = g.cold_boot * 5;
        writeln!(
            out,
            "{}",
            paint(
                BOLD,
                &format!("The headers-generated suite ({} cases, -j{jobs})", g.cases)
            )
        )?;
        writeln!(
            out,
            "  5 cold boots (baseline: 5 × the median of 5)   {:>9}",
            ms(boots5)
        )?;
        writeln!(
            out,
            "  provium gen                                  {:>9}",
            ms(g.gen)
        )?;
        writeln!(
            out,
            "  provium record --update                      {:>9}   {:.2}× the baseline",
            ms(g.record),
            g.record.as_secs_f64() / boots5.as_secs_f64()
        )?;
        writeln!(
            out,
            "  provium test (isolated cases)                {:>9}   {:.2}× the baseline (goal: at most 1.00×)",
            ms(g.test),
            g.test.as_secs_f64() / boots5.as_secs_f64()
        )?;
        writeln!(
            out,
            "  provium test, a fresh worker per case        {:>9}   {:.2}× the baseline; isolated is {:.1}× faster",
            ms(g.worker_test),
            g.worker_test.as_secs_f64() / boots5.as_secs_f64(),
            g.worker_test.as_secs_f64() / g.test.as_secs_f64()
        )?;
        writeln!(
            out,
            "  outcomes differing between the two test runs: {}",
            g.differing.len()
        )?;
        for d in g.differing.iter().take(20) {
            writeln!(out, "    {d}")?;
        }
        writeln!(out)?;
    }
    if all || args.what == What::Headers {
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let h = suites::headers(suites::RECORDED, jobs)?;
        writeln!(out, "{}", paint(BOLD, "Headers"))?;
        writeln!(
            out,
            "  parsing linux/*.h one by one      {:>8}   ({} of {} headers; {} structs, {} constants)",
            ms(h.parse), h.parsed_ok, h.headers, h.structs, h.constants
        )?;
        writeln!(
            out,
            "  generating the suite              {:>8}   ({} specs, {} cases)",
            ms(h.gen),
            h.gen_specs,
            h.gen_cases
        )?;
        writeln!(
            out,
            "  recording {} syscalls (-j{})       {:>8}   ({} cases, {:.1} s per spec with its boot)",
            h.recorded_specs,
            h.jobs,
            ms(h.record),
            h.recorded_cases,
            h.record.as_secs_f64() * h.jobs as f64 / h.recorded_specs.max(1) as f64
        )?;
        writeln!(out)?;
    }
    if all || args.what == What::Spec {
        let s = suites::spec(&profile, 2000)?;
        writeln!(out, "{}", paint(BOLD, "Specs"))?;
        writeln!(
            out,
            "  compiling {} cases       {:>8}",
            s.compiled,
            ms(s.compile)
        )?;
        writeln!(
            out,
            "  per case, batched        {:>8}   ({} cases of close(-1))",
            us(s.batched_per_case),
            s.cases
        )?;
        writeln!(
            out,
            "  per case, one by one     {:>8}   ({:.1}× the batched case)",
            us(s.single_per_case),
            s.single_per_case.as_secs_f64() / s.batched_per_case.as_secs_f64()
        )?;
        match s.c_per_call {
            Some(c) => writeln!(
                out,
                "  static C, same syscall   {:>8}   (baseline: a batched case costs {:.1}× a C call)",
                format!("{:.2} µs", c.as_secs_f64() * 1e6),
                s.batched_per_case.as_secs_f64() / c.as_secs_f64()
            )?,
            None => writeln!(out, "  static C baseline skipped: gcc with static libc is not available")?,
        }
        writeln!(out)?;
    }
    for transport in [TransportChoice::VirtioSerial, TransportChoice::Vsock] {
        if !(all
            || matches!(
                args.what,
                What::Roundtrip | What::Batch | What::Buffer | What::Isolated
            ))
        {
            break;
        }
        let opts = BootOptions {
            transport: Some(transport),
            ..Default::default()
        };
        let mut vm = match Vm::boot(&profile, &opts) {
            Ok(vm) => vm,
            Err(e) if transport == TransportChoice::Vsock => {
                writeln!(out, "vsock: skipped ({e})")?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let name = vm.info().transport.clone();
        if all || args.what == What::Roundtrip {
            let r = bench::roundtrip(&mut vm, args.calls)?;
            writeln!(
                out,
                "{}",
                paint(BOLD, &format!("Round trip over {name} ({} calls)", r.calls))
            )?;
            writeln!(
                out,
                "  ping (agent no-op, baseline)  p50 {:>7}  p99 {:>7}",
                us(r.ping.p50),
                us(r.ping.p99)
            )?;
            writeln!(
                out,
                "  getpid                        p50 {:>7}  p99 {:>7}  ({:.2}× the ping)",
                us(r.getpid.p50),
                us(r.getpid.p99),
                r.getpid.p50.as_secs_f64() / r.ping.p50.as_secs_f64()
            )?;
            match &r.getpid_i386 {
                Some(i) => writeln!(
                    out,
                    "  getpid, i386 (int $0x80)      p50 {:>7}  p99 {:>7}  ({:.2}× x86_64's)",
                    us(i.p50),
                    us(i.p99),
                    i.p50.as_secs_f64() / r.getpid.p50.as_secs_f64()
                )?,
                None => writeln!(out, "  getpid, i386: skipped (no IA32 emulation)")?,
            }
        }
        if all || args.what == What::Batch {
            let b = bench::batch(&mut vm, 1000)?;
            writeln!(
                out,
                "{}",
                paint(
                    BOLD,
                    &format!("Batching over {name}: {} × close(-1)", b.calls)
                )
            )?;
            writeln!(
                out,
                "  single calls {:>8}   one batch {:>8}   {:.1}× faster",
                ms(b.single),
                ms(b.batched),
                b.single.as_secs_f64() / b.batched.as_secs_f64()
            )?;
            writeln!(
                out,
                "  one batch of i386 calls {:>8}   {:.2}× the x86_64 batch",
                ms(b.batched_i386),
                b.batched_i386.as_secs_f64() / b.batched.as_secs_f64()
            )?;
        }
        if all || args.what == What::Isolated {
            let r = bench::isolated(&mut vm, 200)?;
            writeln!(
                out,
                "{}",
                paint(
                    BOLD,
                    &format!("One case, three ways, over {name} ({} cases each)", r.cases)
                )
            )?;
            writeln!(
                out,
                "  in a batch of the VM's executor (no isolation, baseline)  {:>9} per case",
                us(r.batched)
            )?;
            writeln!(
                out,
                "  isolated: a forked child each, one round trip           {:>9} per case   {:.1}× the baseline",
                us(r.isolated),
                r.isolated.as_secs_f64() / r.batched.as_secs_f64()
            )?;
            writeln!(
                out,
                "  a fresh worker each (spawn, call, kill)                 {:>9} per case   {:.1}× the baseline, {:.1}× isolated",
                us(r.worker),
                r.worker.as_secs_f64() / r.batched.as_secs_f64(),
                r.worker.as_secs_f64() / r.isolated.as_secs_f64()
            )?;
        }
        if all || args.what == What::Buffer {
            let b = bench::buffer(&mut vm, 50)?;
            let mib_s = (2 * b.large_bytes) as f64 / (1 << 20) as f64 / b.large.p50.as_secs_f64();
            writeln!(
                out,
                "{}",
                paint(
                    BOLD,
                    &format!("Buffers over {name}: pread into a buffer that travels both ways")
                )
            )?;
            writeln!(
                out,
                "  16 B p50 {:>8}   1 MiB p50 {:>8}   ({:.0} MiB/s, {:.1}× the 16 B call)",
                us(b.small.p50),
                ms(b.large.p50),
                mib_s,
                b.large.p50.as_secs_f64() / b.small.p50.as_secs_f64()
            )?;
        }
        vm.shutdown()?;
        writeln!(out)?;
    }
    Ok(super::EXIT_OK)
}

/// Runs `work` with a line on stderr showing the step it reports (hidden when stderr is not a
/// terminal), cleared when it ends.
pub(super) fn with_steps<T>(work: impl FnOnce(&mut dyn FnMut(&str)) -> T) -> T {
    let steps = step_line();
    let result = work(&mut |step| steps.set_message(step.to_string()));
    steps.finish_and_clear();
    result
}

fn step_line() -> indicatif::ProgressBar {
    let p = indicatif::ProgressBar::new_spinner();
    p.set_style(
        indicatif::ProgressStyle::with_template("  {spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    p.enable_steady_tick(std::time::Duration::from_millis(100));
    p
}
