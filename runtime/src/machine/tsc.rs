//! The host's TSC frequency, passed to microvm guests as `tsc_early_khz`.
//!
//! microvm has no HPET or PM timer, and PIT calibration under TCG is flaky: about one boot in four
//! hung in our measurements. With the frequency given, 0 hangs in over 100 boots. Under TCG the
//! guest TSC runs at the host's rate, so the host measures it once per process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn host_tsc_khz() -> Option<u64> {
    static KHZ: OnceLock<Option<u64>> = OnceLock::new();
    *KHZ.get_or_init(measure)
}

#[cfg(target_arch = "x86_64")]
fn measure() -> Option<u64> {
    let mut samples: Vec<u64> = (0..3)
        .map(|_| {
            // SAFETY: rdtsc has no preconditions on x86_64.
            let t0 = unsafe { core::arch::x86_64::_rdtsc() };
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(8) {}
            // SAFETY: as above.
            let t1 = unsafe { core::arch::x86_64::_rdtsc() };
            let us = start.elapsed().as_micros().max(1) as u64;
            t1.wrapping_sub(t0) * 1000 / us
        })
        .collect();
    samples.sort_unstable();
    let khz = samples[1];
    (khz > 100_000).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure() -> Option<u64> {
    None
}
