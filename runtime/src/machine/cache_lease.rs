//! Leases on derived cache files (initramfs archives), so that unused ones can be collected
//! without pulling one from under a process that is about to boot from it.
//!
//! Each archive `KEY.cpio` has a sidecar `KEY.cpio.b3` (its content hash, see
//! [`paths::write_cached`]). A process that boots from an archive holds a shared `flock` on the
//! sidecar until QEMU has read the archive, and stamps the sidecar's mtime as the archive's last
//! use. Collection takes the exclusive lock without waiting, so an archive in use is never
//! removed, and checks the last use again under the lock, so one that was just picked is not
//! either. Archives pile up otherwise: one per agent build, profile and tool set.
//!
//! The same `flock` discipline guards fixture builds (`fixture::store`) and run directories
//! (`cleanup`), whose lock files are created already locked ([`create_locked`]).

use super::paths;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long an archive may go unused before a run that builds a new one removes it (the same
/// week fixture builds get).
pub const IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `flock(2)` on an open file; `false` when it could not be taken.
pub(crate) fn flock(f: &File, op: libc::c_int) -> bool {
    // SAFETY: flock on an open descriptor this function borrows.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// Whether the open file is still the one at `path` (a lock file can be unlinked, or its
/// directory renamed away, between open and flock).
pub(crate) fn still_at(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Creates the lock file `dir/name` already exclusively locked: it is created and locked under
/// another name, then renamed into place. Sweepers take a lock file nobody holds for a dead
/// owner's, so one created under its name and locked after could be swept (or its lock taken)
/// in between.
pub(crate) fn create_locked(dir: &Path, name: &str) -> std::io::Result<File> {
    let unnamed = dir.join(format!(".{name}.new"));
    let lock = File::create(&unnamed)?;
    // Nobody else can have opened it: its name is this directory's and new.
    if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::rename(&unnamed, dir.join(name))?;
    Ok(lock)
}

/// A shared lock on a cache file's sidecar: while it lives, collection leaves the file alone.
#[derive(Debug)]
pub struct CacheLease {
    _lock: File,
}

impl CacheLease {
    /// Leases the cache file at `path` and stamps its last use; `None` when it is gone (removed
    /// by a collection since it was checked: the caller makes it again).
    pub fn take(path: &Path) -> Option<CacheLease> {
        let side = paths::sidecar(path);
        let f = File::open(&side).ok()?;
        if !flock(&f, libc::LOCK_SH) || !still_at(&f, &side) || !path.exists() {
            return None;
        }
        // A read-only cache keeps its times; collection never runs there either.
        // SAFETY: futimens on an open descriptor with a null times pointer (now).
        unsafe { libc::futimens(f.as_raw_fd(), std::ptr::null()) };
        Some(CacheLease { _lock: f })
    }
}

/// Removes the files in `dir` ending in `.{ext}` that nobody has used for `idle` and nobody
/// holds a lease on, with their sidecars. Returns how many it removed. Errors are not fatal: a
/// file that cannot be removed stays for a later run.
pub fn collect(dir: &Path, ext: &str, idle: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let idle_since = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > idle)
    };
    let mut removed = 0;
    let sidecar_ext = format!("{ext}.b3");
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(&sidecar_ext) {
            // A hash whose file never came (its writer died between the two) or was removed.
            let file = path.with_extension("");
            if !file.exists() && idle_since(&path) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let side = paths::sidecar(&path);
        let Ok(lock) = File::open(&side) else {
            // No sidecar: never intact, so never used; made again if wanted.
            if idle_since(&path) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            continue;
        };
        // Someone leases it (or is collecting it): leave it.
        if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) || !still_at(&lock, &side) {
            continue;
        }
        // The last use is read under the lock: a process that just leased it stamped it.
        if !idle_since(&side) {
            continue;
        }
        // The archive goes first: a sidecar without its file is a miss, never a false hit.
        if std::fs::remove_file(&path).is_ok() {
            let _ = std::fs::remove_file(&side);
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets a file's mtime `age` in the past.
    fn age(path: &Path, age: Duration) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    fn entry(dir: &Path, name: &str, last_use: Duration) -> std::path::PathBuf {
        let path = dir.join(format!("{name}.cpio"));
        paths::write_cached(&path, name.as_bytes()).unwrap();
        age(&path, last_use);
        age(&paths::sidecar(&path), last_use);
        path
    }

    #[test]
    fn collection_removes_idle_archives_and_keeps_used_and_leased_ones() {
        let dir = tempfile::tempdir().unwrap();
        let week = IDLE + Duration::from_secs(60);
        let idle = entry(dir.path(), "idle", week);
        let recent = entry(dir.path(), "recent", Duration::from_secs(3600));
        let leased = entry(dir.path(), "leased", week);
        let lease = CacheLease::take(&leased).expect("a lease on an intact archive");
        // Leasing stamps the last use: the collector would keep it anyway; make it look idle
        // again to prove the lock alone keeps it.
        age(&paths::sidecar(&leased), week);
        // A hash whose archive never came, and an archive without its hash.
        let lone_hash = dir.path().join("lone.cpio.b3");
        std::fs::write(&lone_hash, b"0").unwrap();
        age(&lone_hash, week);
        let orphan = dir.path().join("orphan.cpio");
        std::fs::write(&orphan, b"no sidecar").unwrap();
        age(&orphan, week);

        assert_eq!(collect(dir.path(), "cpio", IDLE), 3);
        assert!(!idle.exists() && !paths::sidecar(&idle).exists());
        assert!(!orphan.exists() && !lone_hash.exists());
        assert!(recent.exists() && leased.exists());
        drop(lease);
        assert_eq!(collect(dir.path(), "cpio", IDLE), 1, "the lease is gone");
        assert!(!leased.exists() && recent.exists());
    }

    #[test]
    fn a_lease_on_a_collected_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(dir.path(), "gone", IDLE + Duration::from_secs(60));
        assert_eq!(collect(dir.path(), "cpio", IDLE), 1);
        assert!(CacheLease::take(&path).is_none());
    }
}
