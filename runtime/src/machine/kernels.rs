//! The kernels a run can target (`--kernel K`): a release installed in the cache (by
//! `scripts/setup`), a kernel image, or a kernel build tree used in place (its `bzImage` and its
//! modules, without `make modules_install`). Also each kernel's configuration, for `requires:
//! {config: …}`.

use crate::machine::error::IoError;
pub use crate::machine::kconfig::Config;
use crate::machine::paths;
use crate::machine::requirements::Missing;
use provium_compiler::linux::Arch;
use std::path::{Path, PathBuf};

/// Why `--kernel` names no kernel Provium can run.
#[derive(Debug, thiserror::Error)]
pub enum KernelTargetError {
    #[error("{}", missing.explain(&config.display().to_string()))]
    Unfit { config: PathBuf, missing: Missing },
    #[error(
        "{} looks like a kernel tree but holds no arch/x86/boot/bzImage or vmlinux (build it \
         with `make`)",
        .0.display()
    )]
    Unbuilt(PathBuf),
    #[error("{}: a build tree needs its .config ({cause})", tree.display())]
    NoConfig { tree: PathBuf, cause: IoError },
    #[error("{0} is a directory but not a kernel build tree (no Makefile or .config)")]
    NotATree(String),
    #[error(
        "no kernel `{spec}`: not a file, a build tree or an installed release (installed: {}; \
         `scripts/setup --kernel VERSION` fetches Debian's)",
        if installed.is_empty() { "none".to_string() } else { installed.join(", ") }
    )]
    Unknown {
        spec: String,
        installed: Vec<String>,
    },
    #[error("`{spec}` names several installed kernels: {}", matching.join(", "))]
    Ambiguous { spec: String, matching: Vec<String> },
    #[error(transparent)]
    Default(#[from] crate::machine::profile::ProfileError),
}

type Result<T> = std::result::Result<T, KernelTargetError>;

/// A kernel to run tests on.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTarget {
    /// What reports call it: the release (`6.12.117+deb12-cloud-amd64`), or the image's name.
    pub label: String,
    pub image: PathBuf,
    /// Its modules (a `/lib/modules/<release>` tree, or the build tree itself).
    pub modules: Option<PathBuf>,
    /// Its `.config` (a packaged kernel's `config-<release>`, a build tree's `.config`).
    pub config: Option<PathBuf>,
    /// Its own uapi headers (a build tree's `usr/include`, written by `make headers_install`):
    /// the syscall table and headers specs compile with on it. `None`: the host's
    /// `/usr/include` and the built-in tables.
    pub include: Option<PathBuf>,
    /// The architecture it runs on (read from the image).
    pub arch: Arch,
}

/// A build tree's installed uapi headers, when `make headers_install` wrote them.
fn tree_include(tree: &Path) -> Option<PathBuf> {
    let include = tree.join("usr/include");
    include.join("asm/unistd_64.h").is_file().then_some(include)
}

/// A kernel `scripts/setup` installed in the cache.
#[derive(Debug, Clone)]
pub struct Installed {
    pub release: String,
    pub dir: PathBuf,
    /// The one `minimal` boots when nothing else is said (for its architecture).
    pub default: bool,
    /// The architecture it runs on.
    pub arch: Arch,
}

/// The kernels in the cache, the default first, then by release.
pub fn installed() -> Vec<Installed> {
    let base = paths::kernels();
    let defaults: Vec<String> = Arch::ALL
        .iter()
        .map(|a| crate::machine::profile::default_file(*a))
        .filter_map(|f| std::fs::read_to_string(base.join(f)).ok())
        .map(|s| s.trim().to_string())
        .collect();
    let mut out: Vec<Installed> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let release = e.file_name().to_string_lossy().to_string();
            let dir = e.path();
            let image = dir.join("boot").join(format!("vmlinuz-{release}"));
            image.is_file().then(|| Installed {
                default: defaults.contains(&release),
                arch: crate::machine::kernel::arch_of(&image),
                release,
                dir,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.arch, !a.default, &a.release).cmp(&(b.arch, !b.default, &b.release)));
    out
}

fn from_installed(k: &Installed) -> KernelTarget {
    let modules = k.dir.join("lib/modules").join(&k.release);
    let config = k.dir.join("boot").join(format!("config-{}", k.release));
    KernelTarget {
        label: k.release.clone(),
        image: k.dir.join("boot").join(format!("vmlinuz-{}", k.release)),
        modules: modules.is_dir().then_some(modules),
        config: config.is_file().then_some(config),
        include: None,
        arch: k.arch,
    }
}

/// Checks a build tree's `.config` for what Provium needs (see `requirements`); the error names
/// every option missing, and every module the tree should have built but has not.
pub fn check_config(config: &Config, source: &Path, modules: Option<&Path>) -> Result<()> {
    let tree = modules.and_then(|m| crate::machine::modules::ModuleTree::open(m).ok());
    let missing = crate::machine::requirements::check(config, tree.as_ref());
    if missing.is_empty() {
        return Ok(());
    }
    Err(KernelTargetError::Unfit {
        config: source.to_path_buf(),
        missing,
    })
}

fn from_tree(tree: &Path) -> Result<KernelTarget> {
    let image = ["arch/x86/boot/bzImage", "arch/arm64/boot/Image", "vmlinux"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| KernelTargetError::Unbuilt(tree.to_path_buf()))?;
    let config_path = tree.join(".config");
    let config = Config::read(&config_path).map_err(|cause| KernelTargetError::NoConfig {
        tree: tree.to_path_buf(),
        cause,
    })?;
    check_config(&config, &config_path, Some(tree))?;
    let label = crate::machine::kernel::release_of(&image).unwrap_or_else(|| {
        tree.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| tree.display().to_string())
    });
    let arch = crate::machine::kernel::arch_of(&image);
    Ok(KernelTarget {
        label,
        image,
        // Modules are found in the tree itself (their .ko files and modules.builtin), when it
        // builds any.
        modules: config.enabled("CONFIG_MODULES").then(|| tree.to_path_buf()),
        config: Some(config_path),
        include: tree_include(tree),
        arch,
    })
}

fn from_image(image: &Path) -> KernelTarget {
    let release = crate::machine::kernel::release_of(image);
    let beside = |name: String| image.parent().map(|d| d.join(name));
    let config = release
        .as_ref()
        .and_then(|r| beside(format!("config-{r}")))
        .filter(|p| p.is_file());
    // An unpacked package (boot/vmlinuz-R beside lib/modules/R, as scripts/setup leaves it),
    // then the host's own.
    let modules = release.as_ref().and_then(|r| {
        let unpacked = image
            .parent()
            .and_then(Path::parent)
            .map(|root| root.join("lib/modules").join(r));
        unpacked
            .into_iter()
            .chain([PathBuf::from(format!("/lib/modules/{r}"))])
            .find(|p| p.is_dir())
    });
    // An image inside a build tree (arch/x86/boot/bzImage) has the tree's headers.
    let include = image.ancestors().nth(4).and_then(tree_include);
    KernelTarget {
        arch: crate::machine::kernel::arch_of(image),
        label: release.unwrap_or_else(|| image.display().to_string()),
        image: image.to_path_buf(),
        modules,
        config,
        include,
    }
}

/// Resolves what `--kernel` names: a build tree (a directory with a `Makefile`), a kernel image,
/// or an installed release, exactly or by prefix (`6.12`) among the host architecture's.
pub fn resolve(spec: &str) -> Result<KernelTarget> {
    resolve_for(spec, Arch::host().unwrap_or_default())
}

/// The same, a prefix (`6.1`) naming one of `arch`'s installed kernels: `--arch aarch64
/// --kernel 6.1` is Debian's arm64 6.1. An exact release, a file or a tree is what it is.
pub fn resolve_for(spec: &str, arch: Arch) -> Result<KernelTarget> {
    let path = Path::new(spec);
    if path.is_dir() {
        if path.join("Makefile").is_file() || path.join(".config").is_file() {
            return from_tree(path);
        }
        return Err(KernelTargetError::NotATree(spec.to_string()));
    }
    if path.is_file() {
        return Ok(from_image(path));
    }
    let all = installed();
    if let Some(k) = all.iter().find(|k| k.release == spec) {
        return Ok(from_installed(k));
    }
    let matching: Vec<&Installed> = all
        .iter()
        .filter(|k| {
            k.arch == arch
                && k.release
                    .strip_prefix(spec)
                    .is_some_and(|rest| rest.starts_with(['.', '-', '+']))
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(from_installed(one)),
        [] => Err(KernelTargetError::Unknown {
            spec: spec.to_string(),
            installed: all.iter().map(|k| k.release.clone()).collect(),
        }),
        many => Err(KernelTargetError::Ambiguous {
            spec: spec.to_string(),
            matching: many.iter().map(|k| k.release.clone()).collect(),
        }),
    }
}

/// Targets as reports name them: two kernels of one release (a rebuilt tree beside the
/// package, a copy) are told apart by their paths, so that neither column hides the other.
pub fn distinct_labels(mut targets: Vec<KernelTarget>) -> Vec<KernelTarget> {
    let labels: Vec<String> = targets.iter().map(|t| t.label.clone()).collect();
    for t in &mut targets {
        if labels.iter().filter(|l| **l == t.label).count() > 1 {
            t.label = format!("{} ({})", t.label, t.image.display());
        }
    }
    targets
}

/// The default kernel of `arch` as a target: the host's default, or the one `scripts/setup
/// --arch arm64` installed.
pub fn default_target_for(arch: Arch) -> Result<KernelTarget> {
    if Some(arch) == Arch::host() {
        return default_target();
    }
    let (image, modules) = crate::machine::profile::cached_kernel_for(arch).ok_or_else(|| {
        crate::machine::profile::ProfileError::NoKernelFor {
            profile: "minimal".into(),
            arch,
        }
    })?;
    let mut t = from_image(&image);
    if modules.is_some() {
        t.modules = modules;
    }
    Ok(t)
}

/// The default kernel as a target (what `minimal` boots).
pub fn default_target() -> Result<KernelTarget> {
    let (image, modules) = crate::machine::profile::find_default_kernel()?;
    let mut t = from_image(&image);
    if modules.is_some() {
        t.modules = modules;
    }
    Ok(t)
}

/// The configuration of the kernel `image`, from the host: `config-<release>` beside a
/// packaged kernel, or the `.config` of the build tree it was built in.
pub fn config_beside(image: &Path) -> Option<Config> {
    let release = crate::machine::kernel::release_of(image);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let (Some(dir), Some(r)) = (image.parent(), &release) {
        candidates.push(dir.join(format!("config-{r}")));
    }
    // arch/x86/boot/bzImage → the tree's .config; a tree's vmlinux is at its root.
    for up in [3, 0] {
        if let Some(tree) = image.ancestors().nth(up + 1) {
            candidates.push(tree.join(".config"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| Config::read(&p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_what_provium_needs_is_refused_naming_the_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("arch/x86/boot")).unwrap();
        std::fs::write(dir.path().join("arch/x86/boot/bzImage"), b"not really").unwrap();
        std::fs::write(dir.path().join("Makefile"), "").unwrap();
        std::fs::write(
            dir.path().join(".config"),
            "CONFIG_BLK_DEV_INITRD=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_PROC_FS=y\n",
        )
        .unwrap();
        let e = resolve(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CONFIG_VIRTIO_CONSOLE or CONFIG_VIRTIO_VSOCKETS")
                && e.contains("CONFIG_DEVTMPFS")
                && !e.contains("CONFIG_VIRTIO_MMIO"),
            "{e}"
        );
    }
}
