//! Profiles: which kernel to boot and how.
//!
//! The built-in profile `minimal` needs no configuration. `provium.toml` may define more under
//! `[profile.NAME]`; a profile may `inherits` another (by default `minimal`), overriding only
//! what it names. Relative paths are relative to the `provium.toml` that contains them.

use crate::machine::accel::Accel;
use crate::machine::error::{BadValue, IoError};
use crate::machine::paths;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why no profile (or no kernel for it) could be had.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{}: {cause}", path.display())]
    Toml {
        path: PathBuf,
        cause: toml::de::Error,
    },
    #[error("unknown profile `{name}`{hint} (known: {known})")]
    Unknown {
        name: String,
        hint: String,
        known: String,
    },
    #[error("profile `{0}`: `inherits` chain is too long (a cycle?)")]
    InheritsTooDeep(String),
    #[error("profile `{profile}`: {problem}")]
    Setting { profile: String, problem: BadValue },
    #[error("PROVIUM_KERNEL={} is not a file", .0.display())]
    KernelVariable(PathBuf),
    #[error(
        "no kernel found: run `scripts/setup` (installs a Debian kernel into {}), \
         or set PROVIUM_KERNEL to a bzImage",
        .0.display()
    )]
    NoKernel(PathBuf),
    #[error(
        "profile `{profile}` boots {arch}, and no {arch} kernel is installed: run \
         `scripts/setup --arch {}` or give the profile a `kernel`",
        arch.debian_name()
    )]
    NoKernelFor {
        profile: String,
        arch: provium_compiler::linux::Arch,
    },
}

impl ProfileError {
    fn setting(profile: &str, problem: BadValue) -> ProfileError {
        ProfileError::Setting {
            profile: profile.to_string(),
            problem,
        }
    }
}

/// The machine type QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// microvm when the kernel boots through PVH and has virtio-mmio; q35 otherwise.
    #[default]
    Auto,
    Microvm,
    Q35,
    Pc,
}

/// How the kernel is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootMethod {
    /// PVH with the extracted `vmlinux` where the kernel supports it, else the bzImage.
    #[default]
    Auto,
    Pvh,
    Bzimage,
}

/// How the host talks to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransportChoice {
    /// virtio-serial: works everywhere, fastest under TCG, and survives snapshots.
    #[default]
    Auto,
    VirtioSerial,
    Vsock,
}

impl std::str::FromStr for TransportChoice {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "auto" => Ok(Self::Auto),
            "virtio-serial" | "serial" => Ok(Self::VirtioSerial),
            "vsock" => Ok(Self::Vsock),
            other => Err(BadValue::new(
                "transport",
                other,
                "expected auto, virtio-serial or vsock",
            )),
        }
    }
}

impl std::str::FromStr for Machine {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "auto" => Ok(Self::Auto),
            "microvm" => Ok(Self::Microvm),
            "q35" => Ok(Self::Q35),
            "pc" => Ok(Self::Pc),
            other => Err(BadValue::new(
                "machine",
                other,
                "expected auto, microvm, q35 or pc",
            )),
        }
    }
}

/// A resolved profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// `None` until resolved: the built-in kernel search runs only when a VM boots.
    pub kernel: Option<PathBuf>,
    pub modules: Option<PathBuf>,
    /// Extra modules the agent loads at boot (dependencies are added).
    pub load_modules: Vec<String>,
    pub initramfs: Vec<PathBuf>,
    /// Guest path → host path, copied into the initramfs.
    pub files: BTreeMap<String, PathBuf>,
    /// Host programs put in the guest with the libraries they need (`mkfs.xfs`).
    pub tools: Vec<String>,
    pub kernel_args: Vec<String>,
    /// Add the kernel arguments that cut boot work (see `docs/profiles.md`).
    pub fast_boot: bool,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `None`: detect.
    pub accel: Option<Accel>,
    pub machine: Machine,
    pub boot: BootMethod,
    pub transport: TransportChoice,
    /// QEMU `-cpu` model; `None` picks `max` under TCG and `host` under KVM.
    pub cpu: Option<String>,
    /// Put the host's static busybox in the guest (for `exec` through a shell).
    pub busybox: bool,
    pub boot_timeout_s: u64,
    /// The userspace include tree for specs that name `headers:` (default `/usr/include`).
    pub include: Option<PathBuf>,
    /// What a test during which the kernel becomes tainted or reports a WARNING or BUG gets.
    pub taint: TaintPolicy,
    /// The system call ABIs specs booting this profile are written for (`abi = "i386"`):
    /// empty, each spec's own (x86_64 by default).
    pub abis: Vec<provium_compiler::linux::Abi>,
    /// The guest's architecture when the profile names one (`arch = "aarch64"`): without a
    /// `kernel`, it boots that architecture's default kernel. `None`: the host's.
    pub arch: Option<provium_compiler::linux::Arch>,
}

/// `taint` in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaintPolicy {
    /// The test fails, with the taint letters and the kernel's report (the default).
    #[default]
    Fail,
    /// The test keeps its status; its output says what happened.
    Flag,
    /// Not checked.
    Ignore,
}

impl Profile {
    pub fn minimal() -> Profile {
        Profile {
            name: "minimal".into(),
            kernel: None,
            modules: None,
            load_modules: Vec::new(),
            initramfs: Vec::new(),
            files: BTreeMap::new(),
            tools: Vec::new(),
            kernel_args: Vec::new(),
            fast_boot: true,
            memory_mib: 256,
            cpus: 1,
            accel: None,
            machine: Machine::Auto,
            boot: BootMethod::Auto,
            transport: TransportChoice::Auto,
            cpu: None,
            busybox: true,
            boot_timeout_s: 60,
            include: None,
            taint: TaintPolicy::Fail,
            abis: Vec::new(),
            arch: None,
        }
    }

    /// The kernel image and modules directory this profile boots.
    pub fn resolve_kernel(&self) -> Result<(PathBuf, Option<PathBuf>), ProfileError> {
        if let Some(k) = &self.kernel {
            return Ok((k.clone(), self.modules.clone()));
        }
        let found = match self.arch {
            Some(arch) if Some(arch) != provium_compiler::linux::Arch::host() => {
                cached_kernel_for(arch).ok_or_else(|| ProfileError::NoKernelFor {
                    profile: self.name.clone(),
                    arch,
                })?
            }
            _ => find_default_kernel()?,
        };
        Ok((found.0, self.modules.clone().or(found.1)))
    }
}

/// Where the default kernel comes from, in order: `PROVIUM_KERNEL` (with `PROVIUM_MODULES`), the
/// kernel `scripts/setup` installed in the cache, the host's own `/boot/vmlinuz-$(uname -r)`.
pub fn find_default_kernel() -> Result<(PathBuf, Option<PathBuf>), ProfileError> {
    if let Some(k) = std::env::var_os("PROVIUM_KERNEL").filter(|v| !v.is_empty()) {
        let kernel = PathBuf::from(k);
        if !kernel.is_file() {
            return Err(ProfileError::KernelVariable(kernel));
        }
        let modules = std::env::var_os("PROVIUM_MODULES")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        return Ok((kernel, modules));
    }
    if let Some(found) = cached_kernel() {
        return Ok(found);
    }
    let release = host_release();
    let boot = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    if std::fs::File::open(&boot).is_ok() {
        let modules = PathBuf::from(format!("/lib/modules/{release}"));
        return Ok((boot, modules.is_dir().then_some(modules)));
    }
    Err(ProfileError::NoKernel(paths::kernels()))
}

/// The kernel installed by `scripts/setup`: `kernels/default` names the release directory.
pub fn cached_kernel() -> Option<(PathBuf, Option<PathBuf>)> {
    cached_kernel_named("default")
}

/// The file under `kernels/` naming `arch`'s default release: `default` for the host's,
/// `default-aarch64` for another architecture's, as `scripts/setup --arch arm64` writes it.
pub fn default_file(arch: provium_compiler::linux::Arch) -> String {
    if Some(arch) == provium_compiler::linux::Arch::host() {
        "default".to_string()
    } else {
        format!("default-{arch}")
    }
}

/// The default kernel of `arch` in the cache (see [`default_file`]).
pub fn cached_kernel_for(
    arch: provium_compiler::linux::Arch,
) -> Option<(PathBuf, Option<PathBuf>)> {
    cached_kernel_named(&default_file(arch))
}

fn cached_kernel_named(file: &str) -> Option<(PathBuf, Option<PathBuf>)> {
    let base = paths::kernels();
    let release = std::fs::read_to_string(base.join(file))
        .ok()
        .map(|s| s.trim().to_string())?;
    let dir = base.join(&release);
    let kernel = dir.join("boot").join(format!("vmlinuz-{release}"));
    let modules = dir.join("lib/modules").join(&release);
    kernel
        .is_file()
        .then(|| (kernel, modules.is_dir().then_some(modules)))
}

fn host_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parses sizes like `512M`, `1G`, `256` (MiB) into MiB.
pub fn parse_memory(text: &str) -> Result<u32, BadValue> {
    let bad = |expected| BadValue::new("memory size", text, expected);
    let t = text.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let mult = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "M" => 1,
                "G" => 1024,
                _ => return Err(bad("use M or G, e.g. 512M")),
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let n: u32 = num.trim().parse().map_err(|_| bad("e.g. 512M or 1G"))?;
    let mib = n.checked_mul(mult).ok_or_else(|| bad("too large"))?;
    if mib < 64 {
        return Err(bad("below the 64M a kernel needs"));
    }
    Ok(mib)
}

/// `[profile.NAME]` in `provium.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub inherits: Option<String>,
    pub kernel: Option<PathBuf>,
    pub modules: Option<PathBuf>,
    pub load_modules: Option<Vec<String>>,
    pub initramfs: Option<Vec<PathBuf>>,
    pub files: Option<BTreeMap<String, PathBuf>>,
    pub tools: Option<Vec<String>>,
    pub kernel_args: Option<Vec<String>>,
    pub fast_boot: Option<bool>,
    pub memory: Option<String>,
    pub cpus: Option<u32>,
    pub accel: Option<String>,
    pub machine: Option<Machine>,
    pub boot: Option<BootMethod>,
    pub transport: Option<TransportChoice>,
    pub cpu: Option<String>,
    pub busybox: Option<bool>,
    pub boot_timeout: Option<u64>,
    pub include: Option<PathBuf>,
    pub taint: Option<TaintPolicy>,
    /// `abi = "i386"` or `abi = ["x86_64", "i386"]`.
    pub abi: Option<AbiSetting>,
    /// `arch = "aarch64"`: the guest's architecture (its default kernel, QEMU and agent).
    pub arch: Option<String>,
}

/// A profile's `abi`: one name or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AbiSetting {
    One(String),
    Many(Vec<String>),
}

/// The parts of `provium.toml` this module reads; other tables belong to other modules.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub profile: BTreeMap<String, ProfileConfig>,
    /// `[fixture.NAME]` tables, read by the fixture layer; named here so that a misspelled
    /// top-level key is an error, not silently ignored.
    #[serde(default)]
    pub fixture: BTreeMap<String, toml::Value>,
}

/// All profiles known in a project.
#[derive(Debug, Clone)]
pub struct Profiles {
    configs: BTreeMap<String, ProfileConfig>,
    base_dir: PathBuf,
    pub source: Option<PathBuf>,
    /// `--kernel`: every profile boots this kernel (image, modules) instead of its own.
    kernel_override: Option<(PathBuf, Option<PathBuf>)>,
}

impl Profiles {
    /// Only the built-in profiles.
    pub fn builtin() -> Profiles {
        Profiles {
            configs: BTreeMap::new(),
            base_dir: PathBuf::from("."),
            source: None,
            kernel_override: None,
        }
    }

    /// Reads `provium.toml` at `path`.
    pub fn load(path: &Path) -> Result<Profiles, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::reading(path, e))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|cause| ProfileError::Toml {
            path: path.to_path_buf(),
            cause,
        })?;
        Ok(Profiles {
            configs: file.profile,
            base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            source: Some(path.to_path_buf()),
            kernel_override: None,
        })
    }

    /// Finds `provium.toml` in `start` or its ancestors; built-ins only when there is none.
    pub fn discover(start: &Path) -> Result<Profiles, ProfileError> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let candidate = d.join("provium.toml");
            if candidate.is_file() {
                return Profiles::load(&candidate);
            }
            dir = d.parent();
        }
        Ok(Profiles::builtin())
    }

    /// The profiles of the `provium.toml` nearest to `file`, when that is another file than
    /// this one's (a test in a sub-project names that project's profiles); the kernel a run
    /// over several kernels gave stays.
    pub fn nearest_for(&self, file: &Path) -> Option<Profiles> {
        let dir = std::fs::canonicalize(file).ok()?.parent()?.to_path_buf();
        let found = Profiles::discover(&dir).ok()?;
        let theirs = std::fs::canonicalize(found.source.as_ref()?).ok()?;
        let ours = self
            .source
            .as_ref()
            .and_then(|s| std::fs::canonicalize(s).ok());
        if ours.as_ref() == Some(&theirs) {
            return None;
        }
        Some(Profiles {
            kernel_override: self.kernel_override.clone(),
            ..found
        })
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = vec!["minimal".into()];
        names.extend(self.configs.keys().filter(|k| *k != "minimal").cloned());
        names
    }

    pub fn get(&self, name: &str) -> Result<Profile, ProfileError> {
        let mut p = self.resolve(name, 0)?;
        if let Some((image, modules)) = &self.kernel_override {
            p.kernel = Some(image.clone());
            p.modules = modules.clone();
        }
        Ok(p)
    }

    /// The same profiles, each booting `image` with `modules` (a run over several kernels).
    pub fn with_kernel(&self, image: &Path, modules: Option<&Path>) -> Profiles {
        Profiles {
            kernel_override: Some((image.to_path_buf(), modules.map(Path::to_path_buf))),
            ..self.clone()
        }
    }

    fn resolve(&self, name: &str, depth: usize) -> Result<Profile, ProfileError> {
        if depth > 16 {
            return Err(ProfileError::InheritsTooDeep(name.to_string()));
        }
        let Some(cfg) = self.configs.get(name) else {
            if name == "minimal" {
                return Ok(Profile::minimal());
            }
            let names = self.names();
            let hint =
                provium_compiler::diag::did_you_mean_suffix(name, names.iter().map(String::as_str));
            return Err(ProfileError::Unknown {
                name: name.to_string(),
                hint,
                known: names.join(", "),
            });
        };
        let parent = cfg.inherits.as_deref().unwrap_or("minimal");
        let mut p = if parent == name {
            Profile::minimal()
        } else {
            self.resolve(parent, depth + 1)?
        };
        p.name = name.to_string();
        let abs = |path: &PathBuf| {
            if path.is_absolute() {
                path.clone()
            } else {
                self.base_dir.join(path)
            }
        };
        if let Some(k) = &cfg.kernel {
            p.kernel = Some(abs(k));
        }
        if let Some(m) = &cfg.modules {
            p.modules = Some(abs(m));
        }
        if let Some(v) = &cfg.load_modules {
            p.load_modules = v.clone();
        }
        if let Some(v) = &cfg.initramfs {
            p.initramfs = v.iter().map(abs).collect();
        }
        if let Some(v) = &cfg.files {
            p.files = v.iter().map(|(g, h)| (g.clone(), abs(h))).collect();
        }
        if let Some(v) = &cfg.tools {
            p.tools = v.clone();
        }
        if let Some(v) = &cfg.kernel_args {
            p.kernel_args = v.clone();
        }
        if let Some(v) = cfg.fast_boot {
            p.fast_boot = v;
        }
        if let Some(m) = &cfg.memory {
            p.memory_mib = parse_memory(m).map_err(|e| ProfileError::setting(name, e))?;
        }
        if let Some(c) = cfg.cpus {
            if c == 0 {
                let zero = BadValue::new("cpus", "0", "at least 1");
                return Err(ProfileError::setting(name, zero));
            }
            p.cpus = c;
        }
        if let Some(a) = &cfg.accel {
            p.accel = match a.as_str() {
                "auto" => None,
                other => Some(other.parse().map_err(|e| ProfileError::setting(name, e))?),
            };
        }
        if let Some(m) = cfg.machine {
            p.machine = m;
        }
        if let Some(b) = cfg.boot {
            p.boot = b;
        }
        if let Some(t) = cfg.transport {
            p.transport = t;
        }
        if let Some(c) = &cfg.cpu {
            p.cpu = Some(c.clone());
        }
        if let Some(b) = cfg.busybox {
            p.busybox = b;
        }
        if let Some(t) = cfg.taint {
            p.taint = t;
        }
        if let Some(a) = &cfg.arch {
            p.arch = Some(a.parse().map_err(|_| {
                ProfileError::setting(name, BadValue::new("arch", a, "expected x86_64 or aarch64"))
            })?);
        }
        if let Some(a) = &cfg.abi {
            let names: Vec<&str> = match a {
                AbiSetting::One(n) => vec![n.as_str()],
                AbiSetting::Many(ns) => ns.iter().map(String::as_str).collect(),
            };
            p.abis = names
                .into_iter()
                .map(|n| {
                    n.parse().map_err(|_| {
                        ProfileError::setting(
                            name,
                            BadValue::new("abi", n, "expected x86_64, i386 or aarch64"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(t) = cfg.boot_timeout {
            p.boot_timeout_s = t;
        }
        if let Some(i) = &cfg.include {
            p.include = Some(abs(i));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("1G"), Ok(1024));
        assert_eq!(parse_memory("2GiB"), Ok(2048));
        assert_eq!(parse_memory("256"), Ok(256));
        assert!(parse_memory("12K").is_err());
        assert!(parse_memory("32M").is_err());
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn profiles_inherit_and_resolve_paths() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("provium.toml");
        std::fs::write(
            &toml,
            r#"
[profile.base]
kernel = "k/bzImage"
memory = "512M"
kernel_args = ["a=1"]

[profile.child]
inherits = "base"
cpus = 2
transport = "vsock"
"#,
        )
        .unwrap();
        let profiles = Profiles::load(&toml).unwrap();
        let child = profiles.get("child").unwrap();
        assert_eq!(child.kernel, Some(dir.path().join("k/bzImage")));
        assert_eq!(child.memory_mib, 512);
        assert_eq!(child.cpus, 2);
        assert_eq!(child.transport, TransportChoice::Vsock);
        assert_eq!(child.kernel_args, ["a=1"]);
        let err = profiles.get("chlid").unwrap_err().to_string();
        assert!(err.contains("did you mean `child`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("provium.toml");
        std::fs::write(&toml, "[profile.x]\nmemroy = \"1G\"\n").unwrap();
        let err = Profiles::load(&toml).unwrap_err().to_string();
        assert!(err.contains("memroy"), "{err}");
    }
}
