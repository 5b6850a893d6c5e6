//! Where Provium keeps its cache: `$PROVIUM_HOME`, by default `~/.cache/provium`.
//!
//! ```text
//! $PROVIUM_HOME/
//!   kernels/<release>/         kernels installed by scripts/setup (boot/, lib/modules/)
//!   vmlinux/<hash>.elf         uncompressed kernels cut out of bzImages, for PVH boots
//!   initramfs/<hash>.cpio      generated initramfs archives, by content hash
//!   host/tsc_khz               the host's measured TSC frequency, with the host's boot id
//!   host/hashes/<boot id>/     content hashes of files by identity, for this host boot
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

/// The host's boot id: a new one after every reboot (and on another machine sharing the cache).
/// What is kept in [`host_facts`] holds for one boot.
pub fn host_boot_id() -> Option<String> {
    // Read once per process: it cannot change while the process runs.
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .then(|| id.to_string())
    })
    .clone()
}

/// A small file Provium keeps (a fact about the host, a remembered hash) as text, when it is at
/// most `max` bytes: a longer one is not one of ours, and is not read whole.
pub fn read_small(path: &Path, max: u64) -> Option<String> {
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path).ok()?, max + 1),
        &mut text,
    )
    .ok()?;
    if text.len() as u64 > max {
        return None;
    }
    String::from_utf8(text).ok()
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

/// Writes a derived cache file (an extracted vmlinux, an initramfs) with a `.b3` file beside
/// it holding its content hash, so that `content_hash::cached_intact` can tell a damaged copy.
pub fn write_cached(path: &Path, data: &[u8]) -> std::io::Result<()> {
    // The hash goes first: a reader between the two sees no file yet (a miss), never a file
    // without its hash, which it would take for a damaged one and remove under the writer.
    // Names are content hashes, so a hash already there is this content's.
    write_atomically(&sidecar(path), blake3::hash(data).to_hex().as_bytes())?;
    write_atomically(path, data)
}

/// [`write_cached`], or, when the cache cannot be written (a read-only or full `PROVIUM_HOME`), the same
/// file in a directory of this process, removed when it exits. Returns where it was written.
pub fn write_cached_anywhere(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    match write_cached(path, data) {
        Ok(()) => Ok(path.to_path_buf()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EROFS)
                    | Some(libc::EACCES)
                    | Some(libc::EPERM)
                    | Some(libc::ENOSPC)
                    | Some(libc::EDQUOT)
            ) =>
        {
            let dir = runtime_base().join(format!("provium-cache-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            crate::machine::registry::remember_dir(&dir);
            let private = dir.join(path.file_name().unwrap_or_default());
            write_cached(&private, data)?;
            tracing::info!(
                "{} cannot be written ({e}); using {}",
                path.display(),
                private.display()
            );
            Ok(private)
        }
        Err(e) => Err(e),
    }
}

/// The file beside a cache file that holds its content hash (`KEY.cpio.b3`).
pub(crate) fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".b3");
    path.with_file_name(name)
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
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A pipe or device, named directly or through a link the kernel resolves (`/dev/stdout`,
    // a shell's `>(…)` as `/dev/fd/63`, whose target `pipe:[…]` is no path): written through.
    if let Ok(m) = std::fs::metadata(path) {
        let t = m.file_type();
        if t.is_fifo() || t.is_char_device() || t.is_block_device() {
            let mut f = if t.is_fifo() {
                open_fifo(path, FIFO_PATIENCE)?
            } else {
                std::fs::OpenOptions::new().write(true).open(path)?
            };
            return f.write_all(data).and_then(|()| f.flush());
        }
    }
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
                // Written through, as a stream. A FIFO's reader may come late (a shell's
                // `<(…)`, a reader started after the run): it is waited for, within reason.
                let mut f = if t.is_fifo() {
                    open_fifo(&target, FIFO_PATIENCE)?
                } else {
                    std::fs::OpenOptions::new().write(true).open(&target)?
                };
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
    let mut tmp = tempfile::Builder::new()
        .prefix(".provium-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // A signal that ends the process meanwhile removes it (no destructor runs then).
    crate::machine::registry::remember_dir(tmp.path());
    let written = (|| {
        tmp.write_all(data)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok::<(), std::io::Error>(())
    })();
    let tmp_path = tmp.path().to_path_buf();
    let result = written.and_then(|()| tmp.persist(&target).map(|_| ()).map_err(|e| e.error));
    crate::machine::registry::forget_dir(&tmp_path);
    result
}

/// How long a report waits for a FIFO's reader.
const FIFO_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens a FIFO for writing once it has a reader, waiting at most `patience`; then in blocking
/// mode, so the report streams to it.
fn open_fifo(path: &Path, patience: std::time::Duration) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = std::time::Instant::now() + patience;
    loop {
        // O_NONBLOCK: without a reader the open fails (ENXIO) instead of hanging.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => {
                // SAFETY: fcntl on an open descriptor.
                unsafe {
                    let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
                return Ok(f);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if std::time::Instant::now() >= deadline {
                    return Err(std::io::Error::other(format!(
                        "a FIFO that nobody read within {} s",
                        patience.as_secs()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Copies a sparse file (a guest RAM file) to a new file: only its data extents are read, and
/// blocks of zeros in them are not written, so a 256 MiB RAM file with 90 MiB of data costs 90
/// MiB to read and less to keep.
pub fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(from)?;
    let len = src.metadata()?.len();
    let dst = std::fs::File::create(to)?;
    dst.set_len(len)?;
    let mut offset: i64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while (offset as u64) < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(src.as_raw_fd(), offset, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data past offset
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        let mut left = (end - data) as u64;
        // In the kernel first where it is a reflink or stays in one file system; by hand
        // across file systems (a build's RAM in /dev/shm copied into the cache), where the
        // kernel would write every zero page the guest touched.
        let (mut at_src, mut at_dst) = (data, data);
        if same_file_system(&src, &dst) {
            while left > 0 {
                // SAFETY: copy_file_range between two open descriptors, offsets by pointer.
                let n = unsafe {
                    libc::copy_file_range(
                        src.as_raw_fd(),
                        &mut at_src,
                        dst.as_raw_fd(),
                        &mut at_dst,
                        left as usize,
                        0,
                    )
                };
                if n <= 0 {
                    break;
                }
                left -= n as u64;
            }
        }
        let mut at = (end - left as i64) as u64;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            write_nonzero_blocks(&dst, &buf[..n], at)?;
            at += n as u64;
            left -= n as u64;
        }
        offset = end;
    }
    Ok(())
}

/// Writes `data` at `at`, leaving out the 4 KiB blocks that are all zeros: the destination was
/// sized with `set_len`, so they read as zeros from its holes.
fn write_nonzero_blocks(dst: &std::fs::File, data: &[u8], at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let mut run: Option<usize> = None; // start of the current run of non-zero blocks
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let zero = block.iter().all(|&b| b == 0);
        match (zero, run) {
            (false, None) => run = Some(i * BLOCK),
            (true, Some(start)) => {
                dst.write_all_at(&data[start..i * BLOCK], at + start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        dst.write_all_at(&data[start..], at + start as u64)?;
    }
    Ok(())
}

fn same_file_system(a: &std::fs::File, b: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Where a fixture build keeps its guest's RAM while the guest runs: a RAM-backed file system
/// (`/dev/shm`) when there is one with room for it. Under TCG every first write to a page of a
/// file on a disk file system is a page fault through that file system's `page_mkwrite` (block
/// reservation, journal): a build in the cache took about 0.2 to 0.4 CPU-seconds more than one
/// in `/dev/shm`, whose RAM is then copied into the cache (BENCHMARKS.md, "Fixture builds").
/// `None`: build in the cache, as on a machine without a usable `/dev/shm`.
pub fn build_ram_base(memory_mib: u32) -> Option<PathBuf> {
    ram_backed_with_room(&ram_dir(), memory_mib)
}

/// The RAM-backed directory builds use when they can (see [`build_ram_base`]):
/// `$PROVIUM_RAM_DIR` if set (a directory that is no tmpfs turns this off), else `/dev/shm`.
pub fn ram_dir() -> PathBuf {
    match std::env::var_os("PROVIUM_RAM_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(RAM_BACKED_DIR),
    }
}

pub const RAM_BACKED_DIR: &str = "/dev/shm";

/// `dir` if it is a tmpfs with room for twice `memory_mib` and 64 MiB more. Its files grow as
/// the guest touches memory, and a tmpfs that fills up under a guest kills it (`SIGBUS`), so
/// the margin covers other builds and other users of the directory.
pub fn ram_backed_with_room(dir: &Path, memory_mib: u32) -> Option<PathBuf> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs fills a plain struct for a valid path.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 || s.f_type != libc::TMPFS_MAGIC {
        return None;
    }
    let free_mib = (s.f_bavail as u64).saturating_mul(s.f_bsize as u64) >> 20;
    let writable = {
        // SAFETY: access with a valid path.
        unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    };
    (writable && free_mib >= 2 * memory_mib as u64 + 64).then(|| dir.to_path_buf())
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

    /// Data extents are copied byte for byte, holes stay holes (a RAM file is mostly holes).
    #[test]
    fn copy_sparse_keeps_data_and_holes() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let mut f = std::fs::File::create(&from).unwrap();
        f.set_len(64 << 20).unwrap();
        let chunk: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        for at in [0u64, 20 << 20, (64 << 20) - (3 << 20)] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&chunk).unwrap();
        }
        drop(f);
        copy_sparse(&from, &to).unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap());
        let allocated = std::fs::metadata(&to).unwrap().blocks() * 512;
        assert!(
            allocated < 16 << 20,
            "holes were filled: {allocated} bytes allocated"
        );
    }

    /// Across file systems (a build's RAM from /dev/shm into the cache), blocks of zeros inside
    /// data extents are left as holes too.
    #[test]
    fn zero_blocks_in_data_are_not_written() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("to");
        // 8 MiB of data: zeros, with one non-zero byte in every 64th block and in the last.
        let mut data = vec![0u8; 8 << 20];
        for (i, b) in data.chunks_mut(4096).enumerate() {
            if i % 64 == 0 || i == 2047 {
                b[100] = i as u8 | 1;
            }
        }
        let dst = std::fs::File::create(&to).unwrap();
        dst.set_len(16 << 20).unwrap();
        write_nonzero_blocks(&dst, &data, 4 << 20).unwrap();
        drop(dst);
        let mut expected = vec![0u8; 16 << 20];
        expected[4 << 20..12 << 20].copy_from_slice(&data);
        assert!(std::fs::read(&to).unwrap() == expected, "content differs");
        let allocated = std::fs::metadata(&to).unwrap().blocks() * 512;
        assert!(
            allocated <= 1 << 20,
            "zeros were written: {allocated} bytes"
        );
    }

    #[test]
    fn only_a_tmpfs_with_room_holds_a_builds_ram() {
        assert_eq!(
            ram_backed_with_room(Path::new("/proc"), 256),
            None,
            "not a tmpfs"
        );
        assert_eq!(ram_backed_with_room(Path::new("/no/such/dir"), 256), None);
        if ram_backed_with_room(Path::new(RAM_BACKED_DIR), 1).is_some() {
            assert_eq!(
                ram_backed_with_room(Path::new(RAM_BACKED_DIR), u32::MAX),
                None,
                "no room"
            );
        }
    }

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
        let e = open_fifo(&fifo, std::time::Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("nobody read"), "{e}");
        // A reader that comes late gets the whole report.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::fs::read(&fifo).unwrap()
            })
        };
        write_output(&fifo, b"late but whole").unwrap();
        assert_eq!(reader.join().unwrap(), b"late but whole");
        assert!(write_output(d.path(), b"x")
            .unwrap_err()
            .to_string()
            .contains("directory"));
    }
}
