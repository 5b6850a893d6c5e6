//! Where Provium keeps its cache: `$PROVIUM_HOME`, by default `~/.cache/provium`.
//!
//! ```text
//! $PROVIUM_HOME/
//!   kernels/<release>/         kernels installed by scripts/setup (boot/, lib/modules/)
//!   vmlinux/<hash>.elf         uncompressed kernels cut out of bzImages, for PVH boots
//!   initramfs/<hash>.cpio      generated initramfs archives, by content hash
//!   host/tsc_khz               the host's measured TSC frequency
//! ```

use std::path::PathBuf;

pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROVIUM_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(cache).join("provium");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    home.join(".cache").join("provium")
}

pub fn kernels() -> PathBuf {
    home().join("kernels")
}

pub fn vmlinux_cache() -> PathBuf {
    home().join("vmlinux")
}

pub fn initramfs_cache() -> PathBuf {
    home().join("initramfs")
}

pub fn host_facts() -> PathBuf {
    home().join("host")
}

/// Where per-VM runtime directories (sockets, console logs) are created. Unix socket paths are
/// limited to 107 bytes, so this stays short.
pub fn runtime_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROVIUM_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::temp_dir()
}

/// Writes `data` to `path` atomically (write to a temporary file, then rename), so that a
/// concurrent reader or an interrupted run never sees half a cache entry.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
