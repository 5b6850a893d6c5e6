//! The host's TSC frequency, passed to microvm guests as `tsc_early_khz`.
//!
//! microvm has no HPET or PM timer, and PIT calibration under TCG is flaky: about one boot in four
//! hung in our measurements. With the frequency given, 0 hangs in over 100 boots. Under TCG the
//! guest TSC runs at the host's rate. Measuring it busy-waits 24 ms, which every process that
//! boots a kernel paid before QEMU could start; the frequency cannot change while the host runs,
//! so it is measured once per host boot and kept in `$PROVIUM_HOME/host/tsc_khz` with the host's
//! boot id (a stale or unreadable file is measured again and replaced).

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Frequencies outside this range are not a TSC's (a damaged file, a broken measurement).
const PLAUSIBLE_KHZ: std::ops::RangeInclusive<u64> = 100_000..=20_000_000;

pub fn host_tsc_khz() -> Option<u64> {
    static KHZ: OnceLock<Option<u64>> = OnceLock::new();
    *KHZ.get_or_init(|| {
        let file = crate::machine::paths::host_facts().join("tsc_khz");
        let Some(boot) = crate::machine::paths::host_boot_id() else {
            return measure();
        };
        if let Some(khz) = remembered(&file, &boot) {
            return Some(khz);
        }
        let khz = measure()?;
        // A value kept for the whole host boot must not be one disturbed measurement (a
        // preemption at the wrong moment): it is kept only when a second one agrees.
        if !agree(khz, measure()?) {
            tracing::debug!("two TSC measurements disagree; not kept");
            return Some(khz);
        }
        // A read-only or full cache only costs the next process the measurement again.
        if let Err(e) = remember(&file, &boot, khz) {
            tracing::debug!("{} not written: {e}", file.display());
        }
        Some(khz)
    })
}

/// Two measurements of one frequency, within 0.1 % of each other.
fn agree(a: u64, b: u64) -> bool {
    a.abs_diff(b) * 1000 <= a.max(b)
}

/// The frequency kept in `file`, when it was measured during the boot `boot`.
fn remembered(file: &Path, boot: &str) -> Option<u64> {
    let text = crate::machine::paths::read_small(file, 128)?;
    let (id, khz) = text.trim_end().split_once(' ')?;
    let khz: u64 = khz.parse().ok()?;
    (id == boot && PLAUSIBLE_KHZ.contains(&khz)).then_some(khz)
}

fn remember(file: &Path, boot: &str, khz: u64) -> std::io::Result<()> {
    crate::machine::paths::write_atomically(file, format!("{boot} {khz}\n").as_bytes())
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
    PLAUSIBLE_KHZ.contains(&khz).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frequency_is_kept_for_its_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host").join("tsc_khz");
        assert_eq!(remembered(&file, "boot-a"), None, "nothing kept yet");
        remember(&file, "boot-a", 2_596_256).unwrap();
        assert_eq!(remembered(&file, "boot-a"), Some(2_596_256));
        assert_eq!(
            remembered(&file, "boot-b"),
            None,
            "another boot measures again"
        );
        for damaged in [
            "",
            "boot-a",
            "boot-a \n",
            "boot-a 2596256x\n",
            "boot-a 12\n",
            "boot-a 99999999999\n",
            "boot-a  2596256\n",
        ] {
            std::fs::write(&file, damaged).unwrap();
            assert_eq!(remembered(&file, "boot-a"), None, "{damaged:?}");
        }
        std::fs::write(&file, vec![b'1'; 4096]).unwrap();
        assert_eq!(remembered(&file, "boot-a"), None);
    }

    #[test]
    fn only_agreeing_measurements_are_kept() {
        assert!(agree(2_596_256, 2_596_256));
        assert!(agree(2_596_256, 2_598_000));
        assert!(!agree(2_596_256, 2_600_000));
        assert!(!agree(2_596_256, 1_298_128));
    }

    #[test]
    fn this_host_has_a_boot_id_and_a_plausible_tsc() {
        assert!(crate::machine::paths::host_boot_id().is_some());
        if cfg!(target_arch = "x86_64") {
            assert!(measure().is_some_and(|k| PLAUSIBLE_KHZ.contains(&k)));
        }
    }
}
