//! The initramfs: the agent as `/init`, busybox when the host has a static one, the kernel
//! modules the agent loads, and a profile's extra files and archives.
//!
//! Archives are cached by the hash of everything that goes into them, and left uncompressed:
//! compressing cost 30–900 ms and gained nothing at boot in our measurements.

use crate::machine::cache_lease::{self, CacheLease};
use crate::machine::error::{IoContext, IoError};
use crate::machine::modules::ModuleFile;
use crate::machine::paths;
use crate::protocol::{MODPROBE_DEFERRED_PATH, MODULE_LIST_PATH};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped when the archive layout changes, so that old cache entries are not reused.
const LAYOUT_VERSION: &str = "provium-initramfs-1";

/// Why an initramfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{0}: file too large for a newc archive")]
    TooLarge(String),
}

type Result<T> = std::result::Result<T, InitramfsError>;

/// A host file copied into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    pub guest: String,
    pub host: PathBuf,
    pub mode: Option<u32>,
}

/// Everything an initramfs is made of.
#[derive(Debug, Clone, Default)]
pub struct InitramfsSpec {
    pub agent: Vec<u8>,
    pub busybox: Option<PathBuf>,
    pub modules: Vec<ModuleFile>,
    pub files: Vec<ExtraFile>,
    /// Prebuilt newc archives appended as they are (the kernel unpacks concatenated archives).
    pub archives: Vec<PathBuf>,
}

/// Returns the path of the archive for `spec`, building it on a cache miss, with a lease that
/// keeps it from collection until QEMU has read it (`None` only when the cache is read-only or
/// the archive is private to this process).
pub fn build_cached(spec: &InitramfsSpec) -> Result<(PathBuf, Option<CacheLease>)> {
    let key = cache_key(spec)?;
    let path = paths::initramfs_cache().join(format!("{key}.cpio"));
    if crate::machine::content_hash::cached_intact(&path) {
        // Gone since the check (collected): made again below.
        if let Some(lease) = CacheLease::take(&path) {
            return Ok((path, Some(lease)));
        }
    }
    let bytes = build(spec)?;
    let written = paths::write_cached_anywhere(&path, &bytes)
        .io_context(|| format!("writing {}", path.display()))?;
    let lease = CacheLease::take(&written);
    // A new archive is the moment old ones may have stopped being used: collect once a run.
    static COLLECTED: std::sync::Once = std::sync::Once::new();
    COLLECTED.call_once(|| {
        let removed = cache_lease::collect(&paths::initramfs_cache(), "cpio", cache_lease::IDLE);
        if removed > 0 {
            tracing::info!("removed {removed} initramfs archives unused for a week");
        }
    });
    Ok((written, lease))
}

fn cache_key(spec: &InitramfsSpec) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(LAYOUT_VERSION.as_bytes());
    let field = |h: &mut blake3::Hasher, bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&mut h, &spec.agent);
    if let Some(bb) = &spec.busybox {
        field(&mut h, &read(bb)?);
    }
    for m in &spec.modules {
        field(&mut h, m.guest_path.as_bytes());
        field(&mut h, &read(&m.host_path)?);
    }
    for f in &spec.files {
        field(&mut h, f.guest.as_bytes());
        field(&mut h, &f.mode.unwrap_or(0).to_le_bytes());
        field(&mut h, &read(&f.host)?);
    }
    for a in &spec.archives {
        field(&mut h, &read(a)?);
    }
    Ok(h.finalize().to_hex()[..32].to_string())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read(path).map_err(|e| IoError::reading(path, e))?)
}

struct Archive {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Archive {
    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        data: &[u8],
        rdev: Option<(u32, u32)>,
    ) -> Result<()> {
        self.ino += 1;
        let mut b = cpio::newc::Builder::new(name.trim_start_matches('/'))
            .ino(self.ino)
            .mode(mode)
            .nlink(if mode & 0o170000 == 0o040000 { 2 } else { 1 });
        if let Some((major, minor)) = rdev {
            b = b.rdev_major(major).rdev_minor(minor);
        }
        let size =
            u32::try_from(data.len()).map_err(|_| InitramfsError::TooLarge(name.to_string()))?;
        let mut w = b.write(&mut self.out, size);
        let writing = || format!("writing {name} into the archive");
        w.write_all(data).io_context(writing)?;
        w.finish().io_context(writing)?;
        Ok(())
    }

    /// Creates `path`'s parent directories once each.
    fn parents(&mut self, path: &str) -> Result<()> {
        let mut acc = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            acc.push('/');
            acc.push_str(part);
            if self.dirs.insert(acc.clone()) {
                let dir = acc.clone();
                self.entry(&dir, 0o040755, &[], None)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.parents(path)?;
        self.entry(path, 0o100000 | (mode & 0o7777), data, None)
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.parents(path)?;
        if self.dirs.insert(path.to_string()) {
            self.entry(path, 0o040000 | mode, &[], None)?;
        }
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.parents(path)?;
        self.entry(path, 0o120777, target.as_bytes(), None)
    }
}

/// Builds the archive bytes.
pub fn build(spec: &InitramfsSpec) -> Result<Vec<u8>> {
    let mut a = Archive {
        out: Vec::with_capacity(8 << 20),
        ino: 0,
        dirs: BTreeSet::new(),
    };
    for dir in [
        "/dev", "/proc", "/sys", "/tmp", "/run", "/root", "/etc", "/bin", "/sbin",
    ] {
        a.dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    a.entry("/dev/console", 0o020600, &[], Some((5, 1)))?;
    a.file("/init", 0o755, &spec.agent)?;
    a.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")?;
    a.file(
        "/etc/group",
        0o644,
        b"root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )?;
    if let Some(bb) = &spec.busybox {
        a.file("/bin/busybox", 0o755, &read(bb)?)?;
        for applet in busybox_applets(bb) {
            if applet == MODPROBE_APPLET {
                // The kernel runs /sbin/modprobe for every module it asks for while it boots
                // (crypto lookups), and busybox finds none of them: 70 ms of a boot under TCG
                // that a guest without it does not spend. The agent moves the link into place
                // as it starts, so tests and shells have it.
                a.symlink(MODPROBE_DEFERRED_PATH, "/bin/busybox")?;
            } else if applet != "bin/busybox" {
                a.symlink(&format!("/{applet}"), "/bin/busybox")?;
            }
        }
    }
    let mut list = String::new();
    for m in &spec.modules {
        a.file(&m.guest_path, 0o644, &read(&m.host_path)?)?;
        list.push_str(&m.guest_path);
        list.push('\n');
    }
    a.file(MODULE_LIST_PATH, 0o644, list.as_bytes())?;
    for f in &spec.files {
        let data = read(&f.host)?;
        let mode = match f.mode {
            Some(m) => m,
            None => host_mode(&f.host),
        };
        a.file(&f.guest, mode, &data)?;
    }
    let mut out = cpio::newc::trailer(a.out).io_context(|| "ending the archive".to_string())?;
    for archive in &spec.archives {
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&read(archive)?);
    }
    Ok(out)
}

fn host_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644)
}

/// busybox's `modprobe` applet, which the kernel runs to load modules it asks for.
const MODPROBE_APPLET: &str = "sbin/modprobe";

/// Applet paths (`bin/sh`, `usr/bin/awk`, …) that the host's busybox provides.
fn busybox_applets(busybox: &Path) -> Vec<String> {
    let listed = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match listed {
        Some(text) => text
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_string())
            .filter(|l| !l.is_empty() && !l.contains(".."))
            .collect(),
        // A busybox the host cannot run (another arch): the applets tests use most.
        None => [
            "bin/sh",
            "bin/ls",
            "bin/cat",
            "bin/echo",
            "bin/mkdir",
            "bin/uname",
            "bin/mount",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    }
}

/// Finds a statically linked busybox on the host: a dynamic one would not run in the guest.
pub fn find_static_busybox() -> Option<PathBuf> {
    find_static_busybox_for(provium_compiler::linux::Arch::host().unwrap_or_default())
}

/// A static busybox for guests of `arch`: the host's own for the host's architecture, else the
/// one `scripts/setup --arch arm64` unpacked (`$PROVIUM_HOME/kernels/aarch64/busybox`, beside
/// the kernels, so that a cache made of only `kernels/` has it too; Debian's
/// busybox-static:arm64 cannot be installed beside the amd64 one).
pub fn find_static_busybox_for(arch: provium_compiler::linux::Arch) -> Option<PathBuf> {
    if Some(arch) != provium_compiler::linux::Arch::host() {
        let own = crate::machine::paths::kernels()
            .join(arch.name())
            .join("busybox");
        return (own.is_file() && is_static_elf(&own)).then_some(own);
    }
    let candidates = [
        std::env::var_os("PROVIUM_BUSYBOX").map(PathBuf::from),
        Some(PathBuf::from("/bin/busybox")),
        Some(PathBuf::from("/usr/bin/busybox")),
        which::which("busybox").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file() && is_static_elf(p))
}

/// True for an ELF executable without a program interpreter. Its program headers sit near the
/// start: every process asks this of busybox (2 MB), which is read whole only when they do not.
pub fn is_static_elf(path: &Path) -> bool {
    use std::io::Read;
    const HEAD: u64 = 64 << 10;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(HEAD).read_to_end(&mut head));
    if read.is_err() {
        return false;
    }
    match interpreter_in(&head) {
        Some(has) => !has,
        None if head.len() as u64 == HEAD => {
            std::fs::read(path).is_ok_and(|data| interpreter_in(&data) == Some(false))
        }
        None => false,
    }
}

/// Whether the 64-bit ELF file starting with `data` names a program interpreter; None when
/// `data` is not one, or does not hold its program headers.
fn interpreter_in(data: &[u8]) -> Option<bool> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.program_headers(endian, data).ok()?;
    Some(
        headers
            .iter()
            .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_executables_are_told_from_dynamic_ones_by_their_head() {
        let dir = tempfile::tempdir().unwrap();
        // The dynamic one: this test binary. A static one: the agent.
        let dynamic = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&dynamic));
        let agent = dir.path().join("agent");
        std::fs::write(&agent, &*crate::machine::agent_binary::bytes().unwrap()).unwrap();
        assert!(is_static_elf(&agent));
        // Its first 64 bytes alone (no program headers), or no ELF at all: not one.
        let bytes = std::fs::read(&agent).unwrap();
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..64]).unwrap();
        assert!(!is_static_elf(&cut));
        let text = dir.path().join("text");
        std::fs::write(&text, b"#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&text));
        assert!(!is_static_elf(&dir.path().join("missing")));
    }

    #[test]
    fn archive_reads_back_with_parents_and_console() {
        let dir = tempfile::tempdir().unwrap();
        let extra = dir.path().join("data.txt");
        std::fs::write(&extra, b"hello").unwrap();
        let spec = InitramfsSpec {
            agent: b"\x7fELFagent".to_vec(),
            files: vec![ExtraFile {
                guest: "/opt/deep/data.txt".into(),
                host: extra,
                mode: Some(0o600),
            }],
            ..Default::default()
        };
        let bytes = build(&spec).unwrap();
        let mut names = Vec::new();
        let mut rest = &bytes[..];
        loop {
            let r = cpio::newc::Reader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            names.push((r.entry().name().to_string(), r.entry().mode()));
            rest = r.finish().unwrap();
        }
        let find = |n: &str| names.iter().find(|(name, _)| name == n).map(|(_, m)| *m);
        assert_eq!(find("init"), Some(0o100755));
        assert_eq!(find("dev/console"), Some(0o020600));
        assert_eq!(find("opt"), Some(0o040755));
        assert_eq!(find("opt/deep"), Some(0o040755));
        assert_eq!(find("opt/deep/data.txt"), Some(0o100600));
        let opt = names.iter().position(|(n, _)| n == "opt").unwrap();
        let file = names
            .iter()
            .position(|(n, _)| n == "opt/deep/data.txt")
            .unwrap();
        assert!(opt < file, "directories precede their files");
    }

    #[test]
    fn cache_key_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let spec = InitramfsSpec {
            agent: b"agent".to_vec(),
            files: vec![ExtraFile {
                guest: "/f".into(),
                host: f.clone(),
                mode: None,
            }],
            ..Default::default()
        };
        let k1 = cache_key(&spec).unwrap();
        std::fs::write(&f, b"two").unwrap();
        assert_ne!(k1, cache_key(&spec).unwrap());
    }
}
