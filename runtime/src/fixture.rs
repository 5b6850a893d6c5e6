//! Fixtures: booted, prepared VMs saved once and resumed by every file that uses them.
//!
//! A fixture is defined by `fixtures/NAME.lua` (a script that creates, boots and prepares a VM
//! and returns it), by `[fixture.NAME]` in `provium.toml` (a profile, files and shell commands),
//! or implicitly by a profile's name (a plain boot). It is built lazily on first use, under a
//! lock so that parallel runs build it once, and cached under `$PROVIUM_HOME/fixtures` by the
//! content hash of everything it depends on: the definition, the profiles, the kernel image, the
//! agent, busybox, QEMU, and the host files it pushes. A change rebuilds it; nothing stale is
//! ever resumed. Each resume is a copy-on-write view of the snapshot.

use crate::profile::Profiles;
use crate::vm::{BootOptions, Snapshot, Vm, VmError};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Bumped when the snapshot layout changes.
const FORMAT: &str = "provium-fixture-2";

/// `[fixture.NAME]` in `provium.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureTable {
    #[serde(default = "minimal")]
    pub profile: String,
    /// Guest path → host path, put in the initramfs.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Shell commands run in the guest after boot; each must exit 0.
    #[serde(default)]
    pub setup: Vec<String>,
    pub memory: Option<String>,
    pub cpus: Option<u32>,
}

fn minimal() -> String {
    "minimal".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    fixture: BTreeMap<String, FixtureTable>,
}

#[derive(Debug, Clone)]
pub enum Source {
    Script {
        path: PathBuf,
        text: String,
    },
    Table(FixtureTable),
    /// A plain boot of a profile, with boot options (used for default `vm:boot()`).
    Profile {
        profile: String,
        opts: BootOptions,
    },
}

#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub source: Source,
}

impl Definition {
    /// Where the fixture is defined, in a word.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            Source::Script { .. } => "script",
            Source::Table(_) => "table",
            Source::Profile { .. } => "profile",
        }
    }

    /// The profile the fixture boots (a script's is known only once it runs: `minimal`).
    pub fn profile_name(&self) -> &str {
        match &self.source {
            Source::Profile { profile, .. } => profile,
            Source::Table(t) => &t.profile,
            Source::Script { .. } => "minimal",
        }
    }
}

/// How a run uses fixtures.
#[derive(Debug, Clone)]
pub struct FixtureUse {
    pub fixtures: std::sync::Arc<Fixtures>,
    /// Resume snapshots (the default); `false` (`--cold`) boots and prepares every time.
    pub snapshots: bool,
}

impl FixtureUse {
    pub fn discover(start: &Path, profiles: Profiles, snapshots: bool) -> Result<FixtureUse> {
        Ok(FixtureUse {
            fixtures: std::sync::Arc::new(Fixtures::discover(start, profiles)?),
            snapshots,
        })
    }
}

/// What a built fixture records beside its snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub name: String,
    pub key: String,
    /// The environment part of the key (see [`Fixtures::environment_hash`]).
    pub environment: String,
    /// The profiles it was built with: shared boot builds are judged only by projects with the
    /// same profiles.
    #[serde(default)]
    pub profiles: String,
    pub snapshot: Snapshot,
    /// Host files pushed into the guest, with their content hashes.
    pub files: BTreeMap<PathBuf, String>,
    pub built_unix: u64,
}

/// Fixtures of a project.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// The directory holding `fixtures/` and `provium.toml`.
    pub root: PathBuf,
    pub profiles: Profiles,
    tables: BTreeMap<String, FixtureTable>,
    /// The environment hash, computed once: every resume needs it, and it reads the agent,
    /// /proc/cpuinfo and every profile's kernel. A run does not see its environment change.
    environment: std::sync::OnceLock<String>,
}

pub fn cache_dir() -> PathBuf {
    crate::paths::home().join("fixtures")
}

/// A file's content hash, read once per process and file version (pushed files are checked
/// before every resume).
fn hash_file(path: &Path) -> Result<String> {
    static MEMO: std::sync::OnceLock<crate::vm::plan::Memo<String>> = std::sync::OnceLock::new();
    let hash = crate::vm::plan::memoized(&MEMO, path, || {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(blake3::hash(&data).to_hex()[..32].to_string())
    })?;
    Ok(hash.to_string())
}

/// A stable key for a file without reading it again while unchanged (path, size, mtime).
fn file_identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{:?}",
            path.display(),
            m.len(),
            m.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        ),
        Err(_) => format!("{}:missing", path.display()),
    }
}

impl Fixtures {
    pub fn discover(start: &Path, profiles: Profiles) -> Result<Fixtures> {
        let root = profiles
            .source
            .as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| start.to_path_buf());
        let tables = match &profiles.source {
            Some(toml_path) => {
                let text = std::fs::read_to_string(toml_path)?;
                let cfg: ConfigFile = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", toml_path.display()))?;
                cfg.fixture
            }
            None => BTreeMap::new(),
        };
        // Host paths in a table are relative to provium.toml, as in profiles.
        let mut tables = tables;
        for t in tables.values_mut() {
            for host in t.files.values_mut() {
                if host.is_relative() {
                    *host = root.join(&*host);
                }
            }
        }
        Ok(Fixtures {
            root,
            profiles,
            tables,
            environment: std::sync::OnceLock::new(),
        })
    }

    /// Fixture names defined by scripts and `provium.toml`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(self.root.join("fixtures")) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "lua") {
                    if let Some(stem) = p.file_stem() {
                        names.push(stem.to_string_lossy().into());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    pub fn find(&self, name: &str) -> Result<Definition> {
        let script = self.root.join("fixtures").join(format!("{name}.lua"));
        if script.is_file() {
            let text = std::fs::read_to_string(&script)?;
            return Ok(Definition {
                name: name.into(),
                source: Source::Script { path: script, text },
            });
        }
        if let Some(t) = self.tables.get(name) {
            return Ok(Definition {
                name: name.into(),
                source: Source::Table(t.clone()),
            });
        }
        if self.profiles.names().iter().any(|p| p == name) {
            return Ok(Definition {
                name: name.into(),
                source: Source::Profile {
                    profile: name.into(),
                    opts: BootOptions::default(),
                },
            });
        }
        let mut known = self.names();
        known.extend(self.profiles.names());
        let hint = crate::suggest::did_you_mean(name, known.iter().map(String::as_str));
        bail!(
            "unknown fixture `{name}`{hint}: define fixtures/{name}.lua or [fixture.{name}] in provium.toml"
        )
    }

    /// The content hash a fixture's snapshot is cached under: its definition's and its
    /// environment's.
    pub fn key(&self, def: &Definition) -> Result<String> {
        Ok(combine(&[&definition_hash(def), &self.environment_hash()?]))
    }

    fn profiles_hash(&self) -> String {
        combine(&[&format!("{:?}", self.profiles)])
    }

    /// Everything a fixture depends on beside its definition: the profiles, every profile's
    /// kernel by content (a rebuilt kernel at the same path is another kernel) and modules, the
    /// agent, busybox, QEMU and the accelerator.
    pub fn environment_hash(&self) -> Result<String> {
        if let Some(h) = self.environment.get() {
            return Ok(h.clone());
        }
        let h = self.compute_environment_hash()?;
        Ok(self.environment.get_or_init(|| h).clone())
    }

    fn compute_environment_hash(&self) -> Result<String> {
        let mut parts = vec![
            FORMAT.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
            format!("{:?}", self.profiles),
        ];
        for name in self.profiles.names() {
            let kernel = self.profiles.get(&name).and_then(|p| p.resolve_kernel());
            match kernel {
                Ok((kernel, modules)) => {
                    parts.push(crate::vm::plan::open_kernel(&kernel)?.content_hash.clone());
                    parts.push(format!("{modules:?}"));
                }
                // A profile that cannot boot here changes nothing that could be resumed.
                Err(e) => parts.push(format!("{name}: {e}")),
            }
        }
        parts.push(
            blake3::hash(&crate::agent_binary::bytes()?)
                .to_hex()
                .to_string(),
        );
        if let Some(bb) = crate::initramfs::find_static_busybox() {
            parts.push(file_identity(&bb));
        }
        parts.push(file_identity(&crate::qemu::find_qemu()?));
        // A snapshot resumes only under the accelerator it was taken with; KVM can come and go
        // (permissions, a module unloaded).
        parts.push(crate::accel::detect().0.to_string());
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(combine(&refs))
    }

    /// Where a fixture's builds live: a profile's plain boot is the same in every project and
    /// shared by all; scripts and tables belong to their project.
    fn cache_for(&self, def: &Definition) -> PathBuf {
        match def.source {
            Source::Profile { .. } => boot_cache(),
            _ => self.cache(),
        }
    }

    fn dir_for(&self, def: &Definition, key: &str) -> PathBuf {
        self.cache_for(def)
            .join(format!("{}-{key}", dir_name(&def.name)))
    }

    /// A built, current fixture's metadata, if there is one.
    pub fn cached(&self, def: &Definition) -> Result<Option<(PathBuf, Meta)>> {
        let key = self.key(def)?;
        let dir = self.dir_for(def, &key);
        Ok(read_meta(&dir).filter(fresh).map(|m| (dir, m)))
    }

    /// This project's fixture builds: projects do not share (or see) each other's fixtures.
    pub fn cache(&self) -> PathBuf {
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        let base = root
            .file_name()
            .map(|n| dir_name(&n.to_string_lossy()))
            .unwrap_or_else(|| "root".into());
        let id = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
        cache_dir().join(format!("{base}-{}", &id[..12]))
    }

    /// A path as the user wrote it: relative to the project when inside it.
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    pub fn resume_def(&self, def: &Definition) -> Result<Vm, VmError> {
        let meta = self.ensure(def)?;
        Vm::resume(&meta.snapshot)
    }

    /// Boots and prepares the fixture's VM: for a snapshot when `snapshot_dir` is given (its
    /// RAM then lives there), or to use directly (`--cold`). Returns the VM and the host files
    /// it was given.
    pub fn materialize(
        &self,
        def: &Definition,
        snapshot_dir: Option<&Path>,
    ) -> Result<(Vm, Vec<PathBuf>), VmError> {
        let ram = snapshot_dir.map(|d| d.join("ram"));
        // Snapshots are resumed over virtio-serial, so they are taken over it.
        let transport = Some(crate::profile::TransportChoice::VirtioSerial);
        match &def.source {
            Source::Profile { profile, opts } => {
                let p = self.profiles.get(profile)?;
                let o = BootOptions {
                    snapshot_memory: ram,
                    transport,
                    ..opts.clone()
                };
                Ok((Vm::boot(&p, &o)?, o.host_files(&p)))
            }
            Source::Table(t) => {
                let p = self.profiles.get(&t.profile)?;
                let mut o = BootOptions {
                    snapshot_memory: ram,
                    transport,
                    files: t.files.clone(),
                    cpus: t.cpus,
                    ..Default::default()
                };
                if let Some(m) = &t.memory {
                    o.memory_mib = Some(
                        crate::profile::parse_memory(m)
                            .map_err(|e| anyhow::anyhow!("fixture `{}`: {e}", def.name))?,
                    );
                }
                let mut vm = Vm::boot(&p, &o)?;
                for cmd in &t.setup {
                    let r = vm.sh(cmd)?;
                    if r.termination != Some(crate::protocol::Termination::Exited(0)) {
                        return Err(anyhow::anyhow!(
                            "fixture `{}`: setup command `{cmd}` failed ({}): {}",
                            def.name,
                            match r.termination {
                                Some(t) => t.to_string(),
                                None => "timed out".into(),
                            },
                            String::from_utf8_lossy(&r.stderr).trim()
                        )
                        .into());
                    }
                }
                Ok((vm, o.host_files(&p)))
            }
            Source::Script { path, text } => {
                crate::lua::fixture::run_script(self, path, text, snapshot_dir)
            }
        }
    }

    /// Builds the fixture unless a current build exists. Parallel callers wait on a lock and
    /// find the build done.
    pub fn ensure(&self, def: &Definition) -> Result<Meta, VmError> {
        let key = self.key(def)?;
        let dir = self.dir_for(def, &key);
        if let Some(m) = read_meta(&dir).filter(fresh) {
            return Ok(m);
        }
        let cache = self.cache_for(def);
        std::fs::create_dir_all(&cache).map_err(anyhow::Error::from)?;
        let lock_path = cache.join(format!("{}.lock", dir_name(&def.name)));
        let lock = std::fs::File::create(&lock_path).map_err(anyhow::Error::from)?;
        // SAFETY: flock on an open file; released when `lock` is dropped.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(anyhow::anyhow!(
                "locking {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            )
            .into());
        }
        if let Some(m) = read_meta(&dir).filter(fresh) {
            return Ok(m);
        }
        tracing::info!(fixture = %def.name, "building the fixture");
        let meta = self.build(def, &key, &dir)?;
        drop(lock);
        // Older builds of this fixture are never resumed again (`built` lists only this
        // project's builds and the shared boot builds made with the same profiles).
        for (name, _, old, current) in self.built() {
            if name == def.name && !current && old != dir {
                let _ = std::fs::remove_dir_all(&old);
            }
        }
        if matches!(def.source, Source::Profile { .. }) {
            collect_old_boot_builds();
        }
        Ok(meta)
    }

    fn build(&self, def: &Definition, key: &str, dir: &Path) -> Result<Meta, VmError> {
        let cache = self.cache_for(def);
        // The caller holds this fixture's lock: any half-built directory of it belongs to a
        // run that was killed.
        remove_half_built(&cache, Some(&def.name));
        let pending = crate::cleanup::PendingDir::create(&cache.join(format!(
            ".{}-{key}.building-{}",
            dir_name(&def.name),
            std::process::id()
        )))
        .map_err(anyhow::Error::from)?;
        let building = pending.path().to_path_buf();
        let built = self
            .materialize(def, Some(&building))
            .and_then(|(mut vm, files)| {
                let snapshot = vm.snapshot(&building)?;
                // Resumed VMs show this boot log before their own console output.
                std::fs::copy(vm.console_log(), building.join("console.log"))
                    .map_err(|e| anyhow::anyhow!("saving the fixture's boot console: {e}"))?;
                Ok((snapshot, files))
            });
        // On failure, dropping `pending` removes the half-built directory.
        let (snapshot, files) = built?;
        // A fixture script may have booted other VMs on the way; only the saved one's RAM stays.
        if let Ok(entries) = std::fs::read_dir(&building) {
            for e in entries.flatten() {
                let p = e.path();
                let is_ram = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ram"));
                if is_ram && p != snapshot.ram {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&building, dir).map_err(anyhow::Error::from)?;
        // The RAM file keeps its name; only its directory moved.
        let mut snapshot = snapshot;
        let ram_name = snapshot
            .ram
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "ram".into());
        snapshot.ram = dir.join(&ram_name);
        snapshot.state = dir.join("state");
        snapshot.boot_console = Some(dir.join("console.log"));
        snapshot.info.fixture = Some(def.name.clone());
        if let Some(crate::qemu::SharedMemory::File { path, .. }) =
            &mut snapshot.launch.shared_memory
        {
            *path = snapshot.ram.clone();
        }
        let mut hashes = BTreeMap::new();
        for f in files {
            hashes.insert(f.clone(), hash_file(&f)?);
        }
        let meta = Meta {
            format: FORMAT.into(),
            name: def.name.clone(),
            key: key.to_string(),
            environment: self.environment_hash()?,
            profiles: self.profiles_hash(),
            snapshot,
            files: hashes,
            built_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(anyhow::Error::from)?;
        crate::paths::write_atomically(&dir.join("meta.json"), &text)
            .map_err(anyhow::Error::from)?;
        Ok(meta)
    }

    /// Built fixture directories: (name, key, directory, current?).
    pub fn built(&self) -> Vec<(String, String, PathBuf, bool)> {
        let mut out = Vec::new();
        let env = self.environment_hash().ok();
        let entries = [self.cache(), boot_cache()]
            .into_iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten();
        for e in entries.flatten() {
            let dir = e.path();
            let Some(meta) = read_meta(&dir) else {
                continue;
            };
            // Another project's plain boot: not this project's to judge or remove.
            if dir.starts_with(boot_cache()) && meta.profiles != self.profiles_hash() {
                continue;
            }
            let current = fresh(&meta)
                && match self.find(&meta.name) {
                    // A profile's fixture is built per set of boot options: any of them is
                    // current while the environment is.
                    Ok(d) if matches!(d.source, Source::Profile { .. }) => {
                        env.as_deref() == Some(meta.environment.as_str())
                    }
                    Ok(d) => self.key(&d).ok().as_deref() == Some(meta.key.as_str()),
                    Err(_) => false,
                };
            out.push((meta.name.clone(), meta.key.clone(), dir, current));
        }
        out.sort();
        out
    }
}

fn definition_hash(def: &Definition) -> String {
    match &def.source {
        Source::Script { text, .. } => combine(&["script", &def.name, text]),
        Source::Table(t) => combine(&["table", &def.name, &format!("{t:?}")]),
        Source::Profile { profile, opts } => {
            combine(&["profile", &def.name, profile, &format!("{opts:?}")])
        }
    }
}

/// A hash of length-prefixed parts (so that ["ab", "c"] and ["a", "bc"] differ).
fn combine(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..24].to_string()
}

/// Removes the half-built directories (`.NAME-KEY.building-PID`) of fixture `name`, or of all
/// fixtures, in `cache`; returns how many. Only safe where no build can be running: under the
/// fixture's lock, or when the user asks (`provium fixture clean`).
pub fn remove_half_built(cache: &Path, name: Option<&str>) -> usize {
    let prefix = match name {
        Some(n) => format!(".{}-", dir_name(n)),
        None => ".".to_string(),
    };
    let Ok(entries) = std::fs::read_dir(cache) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(&prefix) && n.contains(".building-")
        })
        .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The shared builds of profiles' plain boots.
fn boot_cache() -> PathBuf {
    cache_dir().join("boot")
}

/// Shared boot builds are used by any project, so none can tell when one is garbage; builds
/// older than a week go (a rebuild costs one boot).
fn collect_old_boot_builds() {
    const MAX_AGE_SECS: u64 = 7 * 24 * 3600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Ok(entries) = std::fs::read_dir(boot_cache()) else {
        return;
    };
    for e in entries.flatten() {
        if let Some(meta) = read_meta(&e.path()) {
            if now.saturating_sub(meta.built_unix) > MAX_AGE_SECS {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let text = std::fs::read(dir.join("meta.json")).ok()?;
    let meta: Meta = serde_json::from_slice(&text).ok()?;
    (meta.format == FORMAT).then_some(meta)
}

/// Everything the snapshot needs is still there, and the pushed host files are unchanged.
fn fresh(m: &Meta) -> bool {
    let s = &m.snapshot;
    s.ram.is_file()
        && s.state.is_file()
        && s.launch.kernel.is_file()
        && s.launch.initrd.is_file()
        && m.files
            .iter()
            .all(|(p, h)| hash_file(p).ok().as_deref() == Some(h.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, text: &str) -> Definition {
        Definition {
            name: name.into(),
            source: Source::Script {
                path: format!("fixtures/{name}.lua").into(),
                text: text.into(),
            },
        }
    }

    #[test]
    fn a_definition_change_is_another_fixture() {
        let a = definition_hash(&script("base", "return vm"));
        assert_eq!(a, definition_hash(&script("base", "return vm")));
        assert_ne!(a, definition_hash(&script("base", "return  vm")));
        assert_ne!(a, definition_hash(&script("other", "return vm")));
        let boot = |memory| Definition {
            name: "minimal".into(),
            source: Source::Profile {
                profile: "minimal".into(),
                opts: BootOptions {
                    memory_mib: memory,
                    ..Default::default()
                },
            },
        };
        assert_ne!(
            definition_hash(&boot(None)),
            definition_hash(&boot(Some(512)))
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(combine(&["ab", "c"]), combine(&["a", "bc"]));
    }

    #[test]
    fn unknown_fixtures_suggest_a_defined_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("fixtures")).unwrap();
        std::fs::write(dir.path().join("fixtures/webroot.lua"), "return nil").unwrap();
        let f = Fixtures::discover(dir.path(), Profiles::builtin()).unwrap();
        assert_eq!(f.names(), ["webroot"]);
        let e = f.find("webrot").unwrap_err().to_string();
        assert!(e.contains("did you mean `webroot`"), "{e}");
        assert!(matches!(
            f.find("minimal").unwrap().source,
            Source::Profile { .. }
        ));
    }
}
