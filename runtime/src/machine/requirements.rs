//! What a kernel must have for Provium, checked from its configuration before anything boots.
//!
//! A kernel that lacks one of these does not fail quickly on its own: the agent never reaches
//! the host and the boot times out a minute later. Its `.config` (a build tree's, or the
//! `config-<release>` a package puts beside the image) says so in a millisecond, so every boot
//! plan, `--kernel` and `provium doctor` check it first and name every missing option, or the
//! module and where modules come from (`PROVIUM_MODULES`, `modules =`) when an option is built as
//! a module and no module tree was given.

use crate::machine::kconfig::Config;
use crate::machine::modules::ModuleTree;

/// One need: at least one of the options, built in (`y`), or as a module (`m`) whose `.ko` is
/// in the module tree the VM is given.
pub struct Need {
    pub any_of: &'static [&'static str],
    /// The module each option builds, when it is one (same order as `any_of`).
    pub modules: &'static [&'static str],
    pub why: &'static str,
}

/// What every Provium kernel needs, for the agent to start and reach the host.
pub const NEEDS: &[Need] = &[
    Need {
        any_of: &["CONFIG_BLK_DEV_INITRD"],
        modules: &[],
        why: "the agent starts from an initramfs",
    },
    Need {
        any_of: &["CONFIG_BINFMT_ELF"],
        modules: &[],
        why: "the agent is an ELF program",
    },
    Need {
        any_of: &["CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_PCI"],
        modules: &["virtio_mmio", "virtio_pci"],
        why: "a virtio bus",
    },
    Need {
        any_of: &["CONFIG_VIRTIO_CONSOLE", "CONFIG_VIRTIO_VSOCKETS"],
        modules: &["virtio_console", "vmw_vsock_virtio_transport"],
        why: "a transport to the host (virtio-serial or vsock)",
    },
    Need {
        any_of: &["CONFIG_DEVTMPFS"],
        modules: &[],
        why: "device nodes for the transport",
    },
    Need {
        any_of: &["CONFIG_PROC_FS"],
        modules: &[],
        why: "/proc for the agent",
    },
    Need {
        any_of: &["CONFIG_SYSFS"],
        modules: &[],
        why: "the agent finds its transport's port in /sys",
    },
    Need {
        any_of: &["CONFIG_FUTEX"],
        modules: &[],
        why: "the agent's threads wait on futexes",
    },
    Need {
        any_of: &["CONFIG_MULTIUSER"],
        modules: &[],
        why: "workers and `as:` cases change credentials",
    },
];

/// The option that builds `module`, for the drivers Provium chooses machines and transports
/// by.
fn option_of(module: &str) -> Option<&'static str> {
    Some(match module {
        "virtio_mmio" => "CONFIG_VIRTIO_MMIO",
        "virtio_pci" => "CONFIG_VIRTIO_PCI",
        "virtio_console" => "CONFIG_VIRTIO_CONSOLE",
        "vmw_vsock_virtio_transport" => "CONFIG_VIRTIO_VSOCKETS",
        _ => return None,
    })
}

/// Whether `config` builds `module` into the kernel; `None` for a module this does not know.
pub fn builtin(config: &Config, module: &str) -> Option<bool> {
    option_of(module).map(|o| config.value(o) == Some("y"))
}

/// Why a kernel cannot run Provium's agent, as far as its configuration tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Options none of which is set, each with why it is needed.
    pub options: Vec<String>,
    /// Modules the kernel needs but that no module tree provides.
    pub modules: Vec<String>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.options.is_empty() && self.modules.is_empty()
    }

    /// One sentence: what is missing and what to do.
    pub fn explain(&self, kernel: &str) -> String {
        let mut parts = Vec::new();
        if !self.options.is_empty() {
            parts.push(format!(
                "{kernel} lacks what Provium needs: {}; see docs/profiles.md for the config \
                 fragment",
                self.options.join(", ")
            ));
        }
        if !self.modules.is_empty() {
            parts.push(format!(
                "{kernel} builds {} as {} and no modules were given: set PROVIUM_MODULES to its \
                 /lib/modules/<release> tree (or `modules =` in the profile)",
                self.modules.join(", "),
                if self.modules.len() == 1 {
                    "a module"
                } else {
                    "modules"
                }
            ));
        }
        parts.join("; ")
    }
}

/// Checks `config` against [`NEEDS`], with the module tree the VM will get (if any).
pub fn check(config: &Config, modules: Option<&ModuleTree>) -> Missing {
    let mut missing = Missing {
        options: Vec::new(),
        modules: Vec::new(),
    };
    for need in NEEDS {
        let builtin = need.any_of.iter().any(|o| config.value(o) == Some("y"));
        if builtin {
            continue;
        }
        let as_module: Vec<&str> = need
            .any_of
            .iter()
            .zip(need.modules)
            .filter(|(o, _)| config.value(o) == Some("m"))
            .map(|(_, m)| *m)
            .collect();
        if as_module.is_empty() {
            missing
                .options
                .push(format!("{} ({})", need.any_of.join(" or "), need.why));
            continue;
        }
        let provided = modules.is_some_and(|t| as_module.iter().any(|m| t.has(m)));
        if !provided {
            missing.modules.push(as_module.join(" or "));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_modules_are_named() {
        let c = Config::parse(
            "CONFIG_BLK_DEV_INITRD=y\nCONFIG_BINFMT_ELF=y\nCONFIG_VIRTIO_PCI=y\n\
             CONFIG_VIRTIO_CONSOLE=m\nCONFIG_PROC_FS=y\nCONFIG_SYSFS=y\nCONFIG_FUTEX=y\n\
             CONFIG_MULTIUSER=y\n",
        );
        let m = check(&c, None);
        assert_eq!(m.options.len(), 1, "{m:?}");
        assert!(m.options[0].contains("CONFIG_DEVTMPFS"));
        assert_eq!(m.modules, vec!["virtio_console".to_string()]);
        let text = m.explain("k");
        assert!(text.contains("PROVIUM_MODULES") && text.contains("virtio_console"));
    }

    #[test]
    fn a_complete_config_passes() {
        let c = Config::parse(
            &NEEDS
                .iter()
                .map(|n| format!("{}=y\n", n.any_of[0]))
                .collect::<String>(),
        );
        assert!(check(&c, None).is_empty());
    }
}
