//! `provium bench`: performance measured against a baseline taken in the same run, so that the
//! ratios hold on any machine. This file holds the measurements of one VM; `suites` those of
//! specs and runs.
//!
//! - `boot`: cold boot to a ready agent for each boot variant; the baseline is what a plain QEMU
//!   script does (pc machine, compressed bzImage, no extra kernel arguments).
//! - `roundtrip`: `getpid` latency, p50 and p99, against the agent's no-op ping (the floor set
//!   by the transport).
//! - `batch`: 1,000 `close(-1)` as single calls against one batch.
//! - `buffer`: a 1 MiB buffer through `read(2)` against a 16-byte one.
//! - `fixture`: resuming a fixture against a cold boot of the same VM.
//! - `suite`: the project's spec suite, cold at `-j1` (the baseline), with fixtures at `-j1`
//!   and at `-jN`.

use crate::machine::profile::{BootMethod, Machine, Profile, TransportChoice};
use crate::machine::vm::{BootOptions, Vm};
use crate::protocol::{Buffer, SyscallCall};
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// One boot variant.
#[derive(Debug, Clone)]
pub struct BootVariant {
    pub name: &'static str,
    pub machine: Machine,
    pub boot: BootMethod,
    pub fast_boot: bool,
    pub cpu: Option<&'static str>,
}

pub fn boot_variants(arch: provium_compiler::linux::Arch) -> Vec<BootVariant> {
    let v = |name, machine, boot, fast_boot, cpu| BootVariant {
        name,
        machine,
        boot,
        fast_boot,
        cpu,
    };
    if arch == provium_compiler::linux::Arch::Aarch64 {
        // arm64 has one board (virt) and boots its Image as it is: what varies is the CPU
        // model, whose pointer authentication TCG emulates (QARMA5 for `max`, cheaper with
        // QEMU's own algorithm or none).
        let virt = |name, fast_boot, cpu| v(name, Machine::Auto, BootMethod::Auto, fast_boot, cpu);
        return vec![
            virt("virt, -cpu max (baseline)", false, Some("max")),
            virt("virt, -cpu max,pauth=off", false, Some("max,pauth=off")),
            virt(
                "virt, -cpu max,pauth-impdef=on",
                false,
                Some("max,pauth-impdef=on"),
            ),
            virt(
                "virt, -cpu max,pauth-impdef=on + fast args (default)",
                true,
                None,
            ),
        ];
    }
    vec![
        v(
            "pc + bzImage (baseline)",
            Machine::Pc,
            BootMethod::Bzimage,
            false,
            None,
        ),
        v(
            "pc + PVH vmlinux",
            Machine::Pc,
            BootMethod::Pvh,
            false,
            None,
        ),
        v(
            "q35 + qboot + PVH",
            Machine::Q35,
            BootMethod::Pvh,
            false,
            None,
        ),
        v(
            "microvm + PVH",
            Machine::Microvm,
            BootMethod::Pvh,
            false,
            None,
        ),
        v(
            "q35 + qboot + PVH + fast args",
            Machine::Q35,
            BootMethod::Pvh,
            true,
            None,
        ),
        // The default before ERMS and FSRM were hidden (see `plan::TCG_X86_64_CPU`).
        v(
            "microvm + PVH + fast args, -cpu max",
            Machine::Microvm,
            BootMethod::Pvh,
            true,
            Some("max"),
        ),
        v(
            "microvm + PVH + fast args, -cpu qemu64",
            Machine::Microvm,
            BootMethod::Pvh,
            true,
            Some("qemu64"),
        ),
        v(
            "microvm + PVH + fast args (default)",
            Machine::Microvm,
            BootMethod::Pvh,
            true,
            None,
        ),
    ]
}

/// Median and spread of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub min: Duration,
    pub max: Duration,
}

pub fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    Stats {
        p50: pick(0.5),
        p99: pick(0.99),
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

pub struct BootResult {
    pub variant: BootVariant,
    /// Boots that did not reach the agent (hung or crashed), out of the runs.
    pub failed: usize,
    pub wall: Stats,
    /// Guest time from kernel start to the agent's hello.
    pub guest_ready: Stats,
}

fn opts_for(v: &BootVariant, transport: TransportChoice) -> BootOptions {
    BootOptions {
        machine: Some(v.machine),
        boot: Some(v.boot),
        fast_boot: Some(v.fast_boot),
        cpu: v.cpu.map(String::from),
        transport: Some(transport),
        ..Default::default()
    }
}

/// Boots each variant `runs` times; wall time is from `Vm::boot` to the hello.
pub fn boot(
    profile: &Profile,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BootResult>> {
    let mut results = Vec::new();
    let arch = profile
        .resolve_kernel()
        .map(|(k, _)| crate::machine::kernel::arch_of(&k))
        .unwrap_or_default();
    for variant in boot_variants(arch) {
        let mut wall = Vec::new();
        let mut guest = Vec::new();
        let mut failed = 0;
        let mut opts = opts_for(&variant, TransportChoice::VirtioSerial);
        opts.timeout = Some(Duration::from_secs(30));
        for i in 0..runs {
            progress(&format!("{} ({}/{runs})", variant.name, i + 1));
            let started = Instant::now();
            match Vm::boot(profile, &opts) {
                Ok(mut vm) => {
                    wall.push(started.elapsed());
                    guest.push(Duration::from_millis(vm.info().guest_ready_ms));
                    vm.kill();
                }
                Err(e) if e.console_tail().is_some() => failed += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("booting variant `{}`", variant.name))
                }
            }
            // Two failures before any success: this kernel does not boot this way (each
            // failure waits out the 30 s limit, so the rest would only cost minutes).
            if wall.is_empty() && failed >= 2 {
                break;
            }
        }
        if wall.is_empty() {
            // A kernel may not boot on every machine (a tinyconfig tree without ACPI has no PCI
            // interrupt routing on pc): the variant is left out and said, the others measured.
            progress(&format!(
                "variant `{}`: {failed} boots failed; left out",
                variant.name
            ));
            eprintln!(
                "bench: variant `{}` did not boot this kernel; left out",
                variant.name
            );
            continue;
        }
        results.push(BootResult {
            failed,
            variant,
            wall: stats(&mut wall),
            guest_ready: stats(&mut guest),
        });
    }
    Ok(results)
}

/// A syscall's number on the VM's own architecture (arm64's getpid is 172, x86_64's 39).
fn nr(vm: &Vm, name: &str) -> i64 {
    let arch: provium_compiler::linux::Arch = vm.info().arch.parse().unwrap_or_default();
    arch.syscall_number(name).map(i64::from).unwrap_or(-1)
}

pub struct RoundTrip {
    pub ping: Stats,
    pub getpid: Stats,
    /// getpid through i386's `int $0x80` (20), when the kernel has IA32 emulation.
    pub getpid_i386: Option<Stats>,
    pub calls: usize,
}

pub fn roundtrip(vm: &mut Vm, calls: usize) -> Result<RoundTrip> {
    let i386_getpid = || SyscallCall {
        nr: 20,
        abi: crate::protocol::Abi::I386,
        ..Default::default()
    };
    let has_i386 = matches!(
        vm.root().syscall(i386_getpid())?,
        crate::protocol::SyscallOutcome::Returned { ret, .. } if ret > 0
    );
    let getpid_nr = nr(vm, "getpid");
    let mut time = |f: &mut dyn FnMut(&mut Vm) -> Result<()>| -> Result<Stats> {
        for _ in 0..100 {
            f(vm)?;
        }
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            f(vm)?;
            samples.push(t.elapsed());
        }
        Ok(stats(&mut samples))
    };
    let ping = time(&mut |vm| Ok(vm.ping()?))?;
    let getpid = time(&mut |vm| {
        vm.root().syscall_args(getpid_nr, &[])?;
        Ok(())
    })?;
    let getpid_i386 = if has_i386 {
        Some(time(&mut |vm| {
            vm.root().syscall(i386_getpid())?;
            Ok(())
        })?)
    } else {
        None
    };
    Ok(RoundTrip {
        ping,
        getpid,
        getpid_i386,
        calls,
    })
}

pub struct BatchResult {
    pub calls: usize,
    pub single: Duration,
    pub batched: Duration,
    /// The same batch of i386 `close(-1)` (6, `int $0x80`, each call's buffers below 4 GiB).
    pub batched_i386: Duration,
}

pub fn batch(vm: &mut Vm, calls: usize) -> Result<BatchResult> {
    let close_nr = nr(vm, "close");
    let close = || SyscallCall {
        nr: close_nr,
        args: [-1, 0, 0, 0, 0, 0],
        ..Default::default()
    };
    let t = Instant::now();
    for _ in 0..calls {
        vm.root().syscall(close())?;
    }
    let single = t.elapsed();
    let t = Instant::now();
    let outcomes = vm.root().batch((0..calls).map(|_| close()).collect())?;
    let batched = t.elapsed();
    anyhow::ensure!(
        outcomes.len() == calls,
        "batch answered {} outcomes",
        outcomes.len()
    );
    let close_i386 = || SyscallCall {
        nr: 6,
        args: [-1, 0, 0, 0, 0, 0],
        abi: crate::protocol::Abi::I386,
        ..Default::default()
    };
    let t = Instant::now();
    let outcomes = vm
        .root()
        .batch((0..calls).map(|_| close_i386()).collect())?;
    let batched_i386 = t.elapsed();
    anyhow::ensure!(
        outcomes.len() == calls,
        "the i386 batch answered {} outcomes",
        outcomes.len()
    );
    Ok(BatchResult {
        calls,
        single,
        batched,
        batched_i386,
    })
}

/// What one case costs, three ways, in the same VM (`provium bench isolated`).
pub struct IsolatedResult {
    pub cases: usize,
    /// Per case: one call in a batch of the VM's own executor (no isolation; the baseline).
    pub batched: Duration,
    /// Per case: one call in its own forked child, all cases in one `Isolated` round trip.
    pub isolated: Duration,
    /// Per case: a fresh worker with root credentials, the call, the worker killed.
    pub worker: Duration,
}

pub fn isolated(vm: &mut Vm, cases: usize) -> Result<IsolatedResult> {
    use crate::protocol::{Credentials, IsolatedCase};
    let getuid_nr = nr(vm, "getuid");
    let getuid = || SyscallCall {
        nr: getuid_nr,
        ..Default::default()
    };
    let t = Instant::now();
    vm.root().batch((0..cases).map(|_| getuid()).collect())?;
    let batched = t.elapsed() / cases as u32;
    let root = Credentials::default();
    let t = Instant::now();
    let results = vm.root().isolated(
        (0..cases)
            .map(|_| IsolatedCase {
                calls: vec![getuid()],
                creds: Some(root.clone()),
                ..Default::default()
            })
            .collect(),
    )?;
    let isolated = t.elapsed() / cases as u32;
    anyhow::ensure!(
        results.iter().all(|r| r.len() == 1),
        "an isolated case did not answer"
    );
    let t = Instant::now();
    for _ in 0..cases {
        let w = vm.spawn_worker(root.clone())?;
        vm.worker(w).syscall(getuid())?;
        vm.kill_worker(w)?;
    }
    let worker = t.elapsed() / cases as u32;
    Ok(IsolatedResult {
        cases,
        batched,
        isolated,
        worker,
    })
}

pub struct BufferResult {
    pub small: Stats,
    pub large: Stats,
    pub large_bytes: usize,
}

/// `read(2)` from a file into a buffer of each size (the buffer travels both ways).
pub fn buffer(vm: &mut Vm, runs: usize) -> Result<BufferResult> {
    let large_bytes = 1 << 20;
    let data = vec![0x5a; large_bytes];
    vm.root().write_file("/tmp/bench-buffer", &data, 0o644)?;
    let pread = nr(vm, "pread64");
    let mut measure = |size: usize| -> Result<Stats> {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let call = SyscallCall {
                nr: pread, // pread64(fd, buf, count, 0)
                args: [0, 0, size as i64, 0, 0, 0],
                buffers: vec![Buffer {
                    arg: Some(1),
                    data: vec![0; size],
                    len: size as u32,
                    output: true,
                }],
                ..Default::default()
            };
            let mut call = call;
            call.args[0] = bench_fd(vm)?;
            let t = Instant::now();
            vm.root().syscall(call)?;
            samples.push(t.elapsed());
        }
        Ok(stats(&mut samples))
    };
    let small = measure(16)?;
    let large = measure(large_bytes)?;
    Ok(BufferResult {
        small,
        large,
        large_bytes,
    })
}

/// An fd open on the benchmark file in the VM's executor (opened once, then reused).
fn bench_fd(vm: &mut Vm) -> Result<i64> {
    let mut path = b"/tmp/bench-buffer".to_vec();
    path.push(0);
    // F_GETFD on fd 100 tells whether it is already ours.
    let fcntl = nr(vm, "fcntl");
    if vm.root().syscall_args(fcntl, &[100, 1])? >= 0 {
        return Ok(100);
    }
    let open = SyscallCall {
        nr: nr(vm, "openat"),
        args: [-100, 0, 0, 0, 0, 0],
        buffers: vec![Buffer {
            arg: Some(1),
            len: path.len() as u32,
            data: path,
            output: false,
        }],
        ..Default::default()
    };
    let fd = match vm.root().syscall(open)? {
        crate::protocol::SyscallOutcome::Returned { ret, .. } if ret >= 0 => ret,
        other => anyhow::bail!("opening the benchmark file: {other:?}"),
    };
    anyhow::ensure!(
        vm.root().syscall_args(33, &[fd, 100])? == 100,
        "dup2 to fd 100"
    );
    vm.root().syscall_args(3, &[fd])?;
    Ok(100)
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
