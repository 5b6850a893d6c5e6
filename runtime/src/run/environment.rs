//! What a run's reports start with: Provium's version, the accelerator and the kernels.

use super::RunConfig;
use crate::event::{KernelRef, RunEnvironment, PROVIUM_VERSION};
use crate::machine::{accel, kernel};

/// The environment of a run with `config`: every profile's kernel (each read once, from its
/// setup header) and the accelerator VMs will use.
pub fn detect(config: &RunConfig) -> RunEnvironment {
    let accelerator = match config.settings.defaults.accel {
        Some(a) => a.to_string(),
        None => accel::detect().0.to_string(),
    };
    let profiles = &config.settings.profiles;
    let mut kernels: Vec<KernelRef> = Vec::new();
    for name in profiles.names() {
        let Ok((path, _)) = profiles.get(&name).and_then(|p| p.resolve_kernel()) else {
            continue;
        };
        let path = path.display().to_string();
        let release = kernels
            .iter()
            .find(|k| k.path == path)
            .map(|k| k.release.clone())
            .unwrap_or_else(|| kernel::release_of(std::path::Path::new(&path)));
        kernels.push(KernelRef {
            profile: name,
            path,
            release,
        });
    }
    RunEnvironment {
        provium: PROVIUM_VERSION.to_string(),
        accelerator,
        kernels,
    }
}
