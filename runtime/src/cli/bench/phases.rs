//! `provium bench boot --phases`: where a cold boot's and a resume's time goes, phase by phase
//! (the VM's own `VmInfo::phases`, host and guest), then one syscall and the shutdown, each the
//! median of several runs interleaved so that a change in host load affects both alike. These
//! VMs boot in this process, whose caches are warm after the first; whole `provium test
//! --cold` and `provium test` processes beside them are what a user's runs cost.

use super::measure::stats;
use crate::machine::profile::{Profile, TransportChoice};
use crate::machine::vm::{BootOptions, Vm};
use anyhow::Result;
use std::time::{Duration, Instant};

/// Median milliseconds per phase, in the order the phases come, and the bare boot's.
pub struct Phases {
    pub runs: usize,
    /// The same kernel and command line with an init that powers off at once: QEMU's start to
    /// its exit (the physical limit).
    pub bare_ms: f64,
    /// A cold boot to a ready agent (its phases' sum), and a resume's.
    pub cold_ready_ms: f64,
    pub resume_ready_ms: f64,
    pub cold: Vec<(String, f64)>,
    pub resume: Vec<(String, f64)>,
    /// `provium test --cold` of a one-test file, the whole process (its start, planning, the
    /// boot, the test, the VM stopped, its exit), as a user runs it, and `provium test` of the
    /// same file (resumed from the fixture); None when the profile comes from a `provium.toml`
    /// (the child runs in a scratch directory, not to touch the project's last-run record,
    /// where only the built-in profiles are found).
    pub process_ms: Option<WholeProcess>,
}

/// Medians of whole `provium test` processes, in milliseconds.
pub struct WholeProcess {
    pub cold: f64,
    pub resumed: f64,
}

/// Runs `provium test` (`--cold`: booting) on a file that boots `profile` and makes one call.
fn whole_process(
    profile: &str,
    kernel: Option<&str>,
    scratch: &std::path::Path,
    cold: bool,
) -> Result<Duration> {
    let file = scratch.join("one-call.lua");
    std::fs::write(
        &file,
        format!(
            "local vm = provium.create({profile:?})\nvm:boot()\n\
             test(\"getpid\", function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n"
        ),
    )?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["test", "--color", "never"])
        .args(cold.then_some("--cold"))
        .args(kernel.map(|k| ["--kernel", k]).into_iter().flatten())
        .arg(&file)
        .current_dir(scratch)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let t = Instant::now();
    let out = cmd.output()?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "provium test{} {} failed: {}",
        if cold { " --cold" } else { "" },
        file.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

/// Medians per phase name, keeping the first run's order.
fn medians(runs: &[Vec<(String, Duration)>]) -> Vec<(String, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(name, _)| {
            let mut samples: Vec<Duration> = runs
                .iter()
                .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, d)| *d))
                .collect();
            (name.clone(), stats(&mut samples).p50.as_secs_f64() * 1e3)
        })
        .collect()
}

/// What one VM's life costs: its boot (or resume) phases, a getpid, the shutdown.
fn life(mut vm: Vm, since: Instant) -> Result<Vec<(String, Duration)>> {
    let started = since.elapsed();
    let mut out: Vec<(String, Duration)> = vm
        .info()
        .phases
        .iter()
        .map(|p| (p.name.clone(), Duration::from_secs_f64(p.ms / 1e3)))
        .collect();
    let accounted: Duration = out.iter().map(|(_, d)| *d).sum();
    out.push((
        "the rest (host bookkeeping)".into(),
        started.saturating_sub(accounted),
    ));
    let t = Instant::now();
    vm.root().syscall_args(39, &[])?;
    out.push(("one syscall (getpid)".into(), t.elapsed()));
    let t = Instant::now();
    vm.shutdown()?;
    out.push(("shutdown".into(), t.elapsed()));
    Ok(out)
}

pub fn phases(
    profile: &Profile,
    kernel: Option<&str>,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Phases> {
    use crate::fixture::{Definition, Source};
    let runs = runs.max(1);
    let opts = BootOptions {
        transport: Some(TransportChoice::VirtioSerial),
        ..Default::default()
    };
    let cwd = std::env::current_dir()?;
    let profiles = crate::machine::profile::Profiles::discover(&cwd)?;
    let builtin = profiles.source.is_none();
    let scratch = tempfile::tempdir()?;
    let (mut process_cold, mut process_resumed) = (Vec::new(), Vec::new());
    let fixtures = crate::lua::fixture_script::discover(&cwd, profiles, true)?.fixtures;
    // The profile's plain boot, the build every `vm:boot()` of it resumes: already built
    // wherever the profile has run, and not a build of the bench's own to make and keep.
    let def = Definition::plain_boot(profile, &opts).unwrap_or_else(|| Definition {
        name: format!("bench-{}", profile.name),
        source: Source::Profile {
            profile: profile.name.clone(),
            opts: opts.clone(),
        },
    });
    progress("building the fixture (when it is not built)");
    let meta = fixtures.ensure(&def)?;
    let plan = crate::machine::vm::plan::plan(profile, &opts)?;
    let mut bare = Vec::new();
    let mut cold_ready = Vec::new();
    let mut resume_ready = Vec::new();
    let mut cold = Vec::new();
    let mut resume = Vec::new();
    if builtin {
        // The resumed process's fixture (built now when it is not yet), outside the medians.
        whole_process(&profile.name, kernel, scratch.path(), false)?;
    }
    for i in 0..runs {
        progress(&format!("bare boot {}/{runs}", i + 1));
        bare.push(crate::machine::vm::bare_boot(&plan)?);
        progress(&format!("cold boot {}/{runs}", i + 1));
        let t = Instant::now();
        let vm = Vm::boot(profile, &opts)?;
        cold_ready.push(t.elapsed());
        cold.push(life(vm, t)?);
        progress(&format!("resume {}/{runs}", i + 1));
        let t = Instant::now();
        let vm = Vm::resume(&meta.snapshot)?;
        resume_ready.push(t.elapsed());
        resume.push(life(vm, t)?);
        if builtin {
            progress(&format!("provium test --cold {}/{runs}", i + 1));
            process_cold.push(whole_process(&profile.name, kernel, scratch.path(), true)?);
            progress(&format!("provium test {}/{runs}", i + 1));
            process_resumed.push(whole_process(&profile.name, kernel, scratch.path(), false)?);
        }
    }
    let ms = |samples: &mut Vec<Duration>| stats(samples).p50.as_secs_f64() * 1e3;
    Ok(Phases {
        runs,
        bare_ms: ms(&mut bare),
        cold_ready_ms: ms(&mut cold_ready),
        resume_ready_ms: ms(&mut resume_ready),
        cold: medians(&cold),
        resume: medians(&resume),
        process_ms: builtin.then(|| WholeProcess {
            cold: ms(&mut process_cold),
            resumed: ms(&mut process_resumed),
        }),
    })
}

/// `bench boot --phases` for one kernel: the split of a cold boot and a resume, the bare boot
/// beside them, and a syscall's round trip on a resumed VM (getpid against the agent's ping).
pub fn print(
    out: &mut impl std::io::Write,
    label: Option<&str>,
    kernel: Option<&str>,
    profile: &Profile,
    boots: usize,
    calls: usize,
) -> Result<()> {
    use crate::report::style::{paint, BOLD};
    let on = label.map(|l| format!(" on {l}")).unwrap_or_default();
    let p = super::with_steps(|progress| phases(profile, kernel, boots, progress))?;
    writeln!(
        out,
        "{}",
        paint(
            BOLD,
            &format!(
                "Where the time goes{on}: a cold boot and a resume (median of {})",
                p.runs
            )
        )
    )?;
    for (title, rows) in [
        ("cold boot", &p.cold),
        ("resume from the fixture", &p.resume),
    ] {
        writeln!(out, "  {title}")?;
        let total: f64 = rows.iter().map(|(_, ms)| ms).sum();
        for (name, ms) in rows.iter() {
            writeln!(
                out,
                "    {name:<44} {ms:>9.1} ms  {:>5.1} %",
                ms / total * 100.0
            )?;
        }
        writeln!(out, "    {:<44} {total:>9.1} ms", "total")?;
    }
    writeln!(
        out,
        "  bare boot (same kernel and command line, init powers off at once)  {:>8.1} ms",
        p.bare_ms
    )?;
    let total = |rows: &[(String, f64)]| rows.iter().map(|(_, ms)| ms).sum::<f64>();
    let mut ratios = vec![
        ("cold boot to a ready agent", p.cold_ready_ms),
        ("cold boot + one syscall + shutdown", total(&p.cold)),
        ("resume to a ready agent", p.resume_ready_ms),
        ("resume + one syscall + shutdown", total(&p.resume)),
    ];
    if let Some(whole) = &p.process_ms {
        ratios.push(("provium test --cold, whole process", whole.cold));
        ratios.push(("provium test (resumed), whole process", whole.resumed));
    }
    for (what, ms) in ratios {
        writeln!(
            out,
            "  {what:<38} {ms:>8.1} ms  {:.3}× the bare boot",
            ms / p.bare_ms
        )?;
    }
    if p.process_ms.is_none() {
        writeln!(
            out,
            "  provium test, whole processes: not measured (the profile is a provium.toml's)"
        )?;
    }
    let mut vm = Vm::boot(profile, &BootOptions::default())?;
    let r = super::measure::roundtrip(&mut vm, calls.min(2_000))?;
    vm.kill();
    writeln!(
        out,
        "  round trip ({} calls): ping p50 {}, getpid p50 {} ({:.2}× the ping)",
        r.calls,
        super::measure::us(r.ping.p50),
        super::measure::us(r.getpid.p50),
        r.getpid.p50.as_secs_f64() / r.ping.p50.as_secs_f64()
    )?;
    writeln!(out)?;
    Ok(())
}
