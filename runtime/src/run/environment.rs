//! What a run's reports start with: Provium's version, the accelerator and the kernels.

use super::RunConfig;
use crate::event::{KernelRef, RunEnvironment, PROVIUM_VERSION};
use crate::machine::{accel, kernel};

/// The environment of a run with `config`: every profile's kernel (each read once, from its
/// setup header), or in a run over several kernels (`--kernel`) each of those, and the
/// accelerator VMs will use.
pub fn detect(config: &RunConfig) -> RunEnvironment {
    let accelerator = match config.settings.defaults.accel {
        Some(a) => a.to_string(),
        None => accel::detect().0.to_string(),
    };
    let mut kernels: Vec<KernelRef> = Vec::new();
    if !config.kernels.is_empty() {
        // Every profile boots the run's kernel of the file; each kernel is one entry.
        for k in &config.kernels {
            kernels.push(KernelRef {
                profile: "*".into(),
                path: k.target.image.display().to_string(),
                release: kernel::release_of(&k.target.image).or(Some(k.target.label.clone())),
            });
        }
        return RunEnvironment {
            provium: PROVIUM_VERSION.to_string(),
            accelerator,
            kernels,
        };
    }
    let profiles = &config.settings.profiles;
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
