//! Where Provium keeps its cache: `$PROVIUM_HOME`, by default `~/.cache/provium`.
//!
//! ```text
//! $PROVIUM_HOME/
//!   kernels/<release>/         kernels installed by scripts/setup (boot/, lib/modules/)
//!   vmlinux/<hash>.elf         uncompressed kernels cut out of bzImages, for PVH boots
//!   initramfs/<hash>.cpio      generated initramfs archives, by content hash
//!   host/tsc_khz               the host's measured TSC frequency
//! ```

use std::path::{Path, PathBuf};

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
/// concurrent reader or an interrupted run never sees half a cache entry. For Provium's own
/// files (the cache); files a user names go through [`write_output`].
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes a file a user named (`--junit`, `--html`, `record --update`, the last-run record):
///
/// - a regular file, or a path that does not exist yet, is replaced atomically (a reader never
///   sees half a report); a replaced file keeps its mode, a new one gets the umask's (0644
///   under the usual 022), as `>` in a shell would;
/// - a symlink is followed: the file it points to is replaced, the link stays;
/// - a device (`/dev/null`, `/dev/stdout`) or a FIFO is written through, never replaced (as
///   root, a rename would put a regular file where `/dev/full` was);
/// - a FIFO nobody reads, a directory or a socket is refused with a clear error.
pub fn write_output(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Write};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| {
            // A dangling link: create what it points to.
            std::fs::read_link(path)
                .map(|t| path.parent().unwrap_or(Path::new(".")).join(t))
                .unwrap_or_else(|_| path.to_path_buf())
        }),
        _ => path.to_path_buf(),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mode = match &existing {
        Some(m) if m.is_file() => m.permissions().mode() & 0o7777,
        Some(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_block_device() || t.is_fifo() {
                // O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of hanging.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(if t.is_fifo() { libc::O_NONBLOCK } else { 0 })
                    .open(&target)
                    .map_err(|e| {
                        if e.raw_os_error() == Some(libc::ENXIO) {
                            Error::other("a FIFO that nobody reads")
                        } else {
                            e
                        }
                    })?;
                return f.write_all(data).and_then(|()| f.flush());
            }
            let what = if m.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(Error::other(format!("{what}; not replaced")));
        }
        None => 0o666 & !current_umask(),
    };
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

/// The process's umask (read by setting it and putting it back).
fn current_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        // SAFETY: umask cannot fail; it is set back at once, before any file is created by
        // this call (the value is read once per process).
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old as u32
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn regular_files_are_replaced_keeping_their_mode_and_new_ones_get_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let kept = d.path().join("kept.xml");
        std::fs::write(&kept, "old").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_output(&kept, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "new");
        assert_eq!(mode(&kept), 0o640);
        let fresh = d.path().join("sub/fresh.xml");
        write_output(&fresh, b"x").unwrap();
        assert_eq!(mode(&fresh), 0o666 & !current_umask());
    }

    #[test]
    fn links_are_followed_and_devices_and_fifos_written_through() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.xml");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("link.xml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_output(&link, b"through the link").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "through the link");

        let null_link = d.path().join("null.xml");
        std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
        write_output(&null_link, b"gone").unwrap();
        write_output(Path::new("/dev/null"), b"gone").unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &std::fs::metadata("/dev/null").unwrap().file_type()
        ));
        let full = write_output(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");

        let fifo = d.path().join("fifo.xml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = write_output(&fifo, b"x").unwrap_err();
        assert!(e.to_string().contains("nobody reads"), "{e}");
        assert!(write_output(d.path(), b"x")
            .unwrap_err()
            .to_string()
            .contains("directory"));
    }
}
