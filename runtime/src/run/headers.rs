//! Kernel headers on this host: where they are, and the provider specs use for `headers:`.
//!
//! The userspace include tree is, in order: `--include DIR` (`PROVIUM_INCLUDE`), the spec's
//! profile's `include` setting, `/usr/include`. The kernel tree (for syscall signatures) is
//! `--kernel-headers DIR` (`PROVIUM_KERNEL_HEADERS`), or the `linux-headers-*-common` tree that
//! `scripts/setup` unpacked beside the default kernel in the cache.

use provium_compiler::headers::tree::HeaderTree;
use provium_compiler::linux::Abi;
use provium_compiler::{HeaderProvider, HeaderSet};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub fn include_root() -> PathBuf {
    std::env::var_os("PROVIUM_INCLUDE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"))
}

/// The kernel headers tree with `include/linux/syscalls.h`, if one is known.
pub fn kernel_tree() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROVIUM_KERNEL_HEADERS").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = crate::machine::paths::kernels();
    let release = std::fs::read_to_string(base.join("default")).ok()?;
    let src = base.join(release.trim()).join("usr/src");
    std::fs::read_dir(&src)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("-common"))
                && p.join("include/linux/syscalls.h").is_file()
        })
}

/// The headers of a kernel `--kernel` names: a build tree's own (`usr/include` for the uapi,
/// the tree for `include/linux/syscalls.h`); an installed kernel's declarations beside it.
pub fn tree_of(target: &crate::machine::kernels::KernelTarget) -> HeaderTree {
    let mut t = tree();
    if let Some(include) = &target.include {
        t.root = include.clone();
    }
    // The tree the image came from (arch/x86/boot/bzImage → the tree), or an unpacked package.
    let declarations = target
        .image
        .ancestors()
        .skip(1)
        .take(5)
        .flat_map(|dir| {
            let mut candidates = vec![dir.to_path_buf()];
            if let Ok(entries) = std::fs::read_dir(dir.join("usr/src")) {
                candidates.extend(entries.flatten().map(|e| e.path()));
            }
            candidates
        })
        .find(|d| d.join("include/linux/syscalls.h").is_file());
    if let Some(d) = declarations {
        t.kernel = Some(d);
    }
    t
}

pub fn tree() -> HeaderTree {
    let mut t = HeaderTree::new(include_root());
    t.kernel = kernel_tree();
    t
}

/// A parsed header set: its include tree, the headers, and the ABI (i386's and arm64's differ).
type HeaderKey = (PathBuf, Vec<String>, Abi);

/// Loads headers for specs, once per include tree, header list and ABI.
#[derive(Debug, Default)]
struct Provider {
    /// The kernel a run compiles for, when it has headers of its own or the run has others.
    kernel: Option<Kernel>,
    cache: Mutex<HashMap<HeaderKey, HeaderSet>>,
    /// Syscall parameters by name, from the kernel tree's `include/linux/syscalls.h`.
    params: std::sync::OnceLock<HashMap<String, Vec<String>>>,
    /// Which uapi header defines each macro name, built the first time a name is unknown.
    defines: std::sync::OnceLock<HashMap<String, String>>,
}

/// Every `#define NAME` of the uapi headers under `root` (`linux/`, `asm/`, `asm-generic/` and
/// the arch directory), with the first header that defines it, as its include name. Read once
/// per process, on the error path only (about 900 files).
fn define_index(root: &std::path::Path) -> HashMap<String, String> {
    let mut index = HashMap::new();
    let dirs = [
        ("linux", root.join("linux")),
        ("asm", root.join("asm")),
        ("asm", root.join("x86_64-linux-gnu/asm")),
        ("asm-generic", root.join("asm-generic")),
    ];
    for (prefix, dir) in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "h"))
            .collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Some(base) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let include = format!("{prefix}/{base}");
            for line in text.lines() {
                let Some(rest) = line.trim_start().strip_prefix('#') else {
                    continue;
                };
                let Some(rest) = rest.trim_start().strip_prefix("define") else {
                    continue;
                };
                let name: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Include guards (`_LINUX_IPC_H`) are not constants anyone means.
                if !name.is_empty() && !name.starts_with('_') {
                    index.entry(name).or_insert_with(|| include.clone());
                }
            }
        }
    }
    index
}

fn root_for(profile: &str) -> PathBuf {
    if std::env::var_os("PROVIUM_INCLUDE").is_some() {
        return include_root();
    }
    let profiles = std::env::current_dir()
        .ok()
        .and_then(|d| crate::machine::profile::Profiles::discover(&d).ok());
    profiles
        .and_then(|p| p.get(profile).ok())
        .and_then(|p| p.include)
        .unwrap_or_else(include_root)
}

/// One kernel of a run: what reports call it, its uapi headers (`None`: the host's), and the
/// other kernels', where a header it lacks is read from (its cases then skip on it).
#[derive(Debug, Clone)]
struct Kernel {
    label: String,
    include: Option<PathBuf>,
    others: Vec<(String, Option<PathBuf>)>,
}

impl Provider {
    /// `names` from this kernel's headers; a header it lacks that another kernel of the run has
    /// is read from that one, and the set says why the spec cannot run here.
    fn load_on(
        &self,
        k: &Kernel,
        profile: &str,
        names: &[String],
        abi: Abi,
    ) -> Result<HeaderSet, String> {
        let own = k.include.clone().unwrap_or_else(|| root_for(profile));
        let lacks: Vec<&String> = names
            .iter()
            .filter(|n| {
                provium_compiler::headers::tables::find_header(&own, abi.arch().multiarch(), n)
                    .is_none()
            })
            .collect();
        if lacks.is_empty() {
            return self.load_from(&own, names, abi);
        }
        let elsewhere = k.others.iter().find_map(|(_, inc)| {
            let root = inc.clone().unwrap_or_else(|| root_for(profile));
            lacks
                .iter()
                .all(|n| {
                    provium_compiler::headers::tables::find_header(&root, abi.arch().multiarch(), n)
                        .is_some()
                })
                .then_some(root)
        });
        let Some(root) = elsewhere else {
            return self.load_from(&own, names, abi);
        };
        let mut set = self.load_from(&root, names, abi)?;
        set.absent = Some(format!(
            "{} {} not among {}'s headers",
            lacks
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if lacks.len() == 1 { "is" } else { "are" },
            k.label
        ));
        Ok(set)
    }
}

impl Provider {
    /// `names` parsed from the include tree `root`, once per tree and list.
    fn load_from(
        &self,
        root: &std::path::Path,
        names: &[String],
        abi: Abi,
    ) -> Result<HeaderSet, String> {
        let root = root.to_path_buf();
        let key = (root.clone(), names.to_vec(), abi);
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let parsed = HeaderTree::new(&root).parse_in(names, abi)?;
        let mut set = HeaderSet::default();
        for c in parsed.constants() {
            if let Ok(v) = c.value {
                set.constants.insert(c.name, v);
            }
        }
        for name in parsed.types.layouts().keys() {
            if let Some(l) = parsed.types.spec_layout(name) {
                set.layouts.push(l);
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, set.clone());
        }
        Ok(set)
    }
}

impl HeaderProvider for Provider {
    fn load(&self, profile: &str, names: &[String], abi: Abi) -> Result<HeaderSet, String> {
        match &self.kernel {
            Some(k) => self.load_on(k, profile, names, abi),
            None => self.load_from(&root_for(profile), names, abi),
        }
    }

    fn defining(&self, name: &str) -> Option<String> {
        let root = match &self.kernel {
            Some(k) => k.include.clone().unwrap_or_else(include_root),
            None => include_root(),
        };
        let index = self.defines.get_or_init(|| define_index(&root));
        index.get(name).cloned()
    }

    fn syscall_params(&self, syscall: &str) -> Option<Vec<String>> {
        let table = self.params.get_or_init(|| {
            // Read once per process (about 2 ms); without a kernel tree nothing is checked.
            let signatures = tree().signatures().unwrap_or_default();
            let mut table: HashMap<String, Vec<String>> = HashMap::new();
            for sig in signatures {
                let params: Vec<String> = sig
                    .params
                    .iter()
                    .map(|p| {
                        if p.name.is_empty() {
                            p.ty.clone()
                        } else {
                            p.name.clone()
                        }
                    })
                    .collect();
                // Variants under #ifdef (clone's argument orders): the longest counts.
                let entry = table.entry(sig.name).or_default();
                if params.len() >= entry.len() {
                    *entry = params;
                }
            }
            table
        });
        // x86_64 names some entry points without the `new` of their sys_ function (`stat` is
        // sys_newstat, `uname` sys_newuname).
        table
            .get(syscall)
            .or_else(|| table.get(&format!("new{syscall}")))
            .cloned()
    }
}

/// The provider for specs compiled for one kernel of a run: its headers, the others' for what
/// it lacks. One per kernel and process.
pub fn provider_on(naming: &crate::lua::session::KernelNaming) -> Option<Arc<dyn HeaderProvider>> {
    type Providers = Mutex<HashMap<String, Arc<Provider>>>;
    static PROVIDERS: std::sync::OnceLock<Providers> = std::sync::OnceLock::new();
    let label = naming.names.label.clone();
    let mut all = crate::machine::sync::lock(PROVIDERS.get_or_init(Default::default));
    let p = all
        .entry(label.clone())
        .or_insert_with(|| {
            Arc::new(Provider {
                kernel: Some(Kernel {
                    label,
                    include: naming.include.clone(),
                    others: naming.others.clone(),
                }),
                ..Default::default()
            })
        })
        .clone();
    let p: Arc<dyn HeaderProvider> = p;
    Some(p)
}

/// The provider specs use.
pub fn provider() -> Option<Arc<dyn HeaderProvider>> {
    static PROVIDER: std::sync::OnceLock<Arc<Provider>> = std::sync::OnceLock::new();
    let p: Arc<dyn HeaderProvider> = PROVIDER
        .get_or_init(|| Arc::new(Provider::default()))
        .clone();
    Some(p)
}
