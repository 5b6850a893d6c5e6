//! `provium bench boot --phases`: where a cold boot's and a resume's time goes, phase by phase
//! (the VM's own `VmInfo::phases`, host and guest), then one syscall and the shutdown, each the
//! median of several runs interleaved so that a change in host load affects both alike.

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

pub fn phases(profile: &Profile, runs: usize, progress: &mut dyn FnMut(&str)) -> Result<Phases> {
    use crate::fixture::{Definition, Source};
    let runs = runs.max(1);
    let opts = BootOptions {
        transport: Some(TransportChoice::VirtioSerial),
        ..Default::default()
    };
    let cwd = std::env::current_dir()?;
    let profiles = crate::machine::profile::Profiles::discover(&cwd)?;
    let fixtures = crate::lua::fixture_script::discover(&cwd, profiles, true)?.fixtures;
    let def = Definition {
        name: format!("bench-{}", profile.name),
        source: Source::Profile {
            profile: profile.name.clone(),
            opts: opts.clone(),
        },
    };
    progress("building the fixture (when it is not built)");
    let meta = fixtures.ensure(&def)?;
    let plan = crate::machine::vm::plan::plan(profile, &opts)?;
    let mut bare = Vec::new();
    let mut cold_ready = Vec::new();
    let mut resume_ready = Vec::new();
    let mut cold = Vec::new();
    let mut resume = Vec::new();
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
    }
    let ms = |samples: &mut Vec<Duration>| stats(samples).p50.as_secs_f64() * 1e3;
    Ok(Phases {
        runs,
        bare_ms: ms(&mut bare),
        cold_ready_ms: ms(&mut cold_ready),
        resume_ready_ms: ms(&mut resume_ready),
        cold: medians(&cold),
        resume: medians(&resume),
    })
}

/// `bench boot --phases` for one kernel: the split of a cold boot and a resume, the bare boot
/// beside them, and a syscall's round trip on a resumed VM (getpid against the agent's ping).
pub fn print(
    out: &mut impl std::io::Write,
    label: Option<&str>,
    profile: &Profile,
    boots: usize,
    calls: usize,
) -> Result<()> {
    use crate::report::style::{paint, BOLD};
    let on = label.map(|l| format!(" on {l}")).unwrap_or_default();
    let p = super::with_steps(|progress| phases(profile, boots, progress))?;
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
    for (what, ms) in [
        ("cold boot to a ready agent", p.cold_ready_ms),
        ("cold boot + one syscall + shutdown", total(&p.cold)),
        ("resume to a ready agent", p.resume_ready_ms),
        ("resume + one syscall + shutdown", total(&p.resume)),
    ] {
        writeln!(
            out,
            "  {what:<36} {ms:>8.1} ms  {:.3}× the bare boot",
            ms / p.bare_ms
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
