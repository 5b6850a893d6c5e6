//! Content hashes of files, remembered across processes for as long as the host runs.
//!
//! Every process hashes its kernel image (fixtures are keyed by the kernel's content), and every
//! boot checks the 55 MB ELF cut out of it and its initramfs against the hashes recorded when
//! they were written: 4, 19 and 3 ms streamed, on each process's way to QEMU. A hash is kept in
//! `$PROVIUM_HOME/host/hashes/<boot id>/` with the file's identity (device, inode, size, mtime
//! and ctime, in nanoseconds) and used while the identity holds. Any write, `touch` or rename
//! changes the ctime, which no user program can set back, so a file changed through the file
//! system is hashed again; what could change under an unchanged identity (the disk itself, or a
//! crash between a write and its flush) is covered by the boot id: after a reboot every file is
//! hashed again once. A file changed less than [`SETTLED`] ago is not remembered, so that a file
//! system with coarse timestamps cannot hide a second write in the same tick.

use crate::machine::paths;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a file must have been left alone before its hash is remembered.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The content hash of the file at `path`, from the memo when its identity is the one hashed.
pub fn of(path: &Path) -> std::io::Result<blake3::Hash> {
    of_in(memo_dir().as_deref(), path, SETTLED)
}

/// Whether a derived cache file exists and is what was written: its content hash (remembered as
/// above) against the one recorded beside it, once per process and file version. A damaged file
/// (truncated, emptied, overwritten, replaced) is named in a warning and removed, so that the
/// caller makes it again.
pub fn cached_intact(path: &Path) -> bool {
    use std::collections::HashMap;
    /// Files verified in this process, with their identity when they were (a file too fresh
    /// to be remembered, or a read-only cache, is then not hashed again at every boot).
    static VERIFIED: std::sync::Mutex<Option<HashMap<PathBuf, Identity>>> =
        std::sync::Mutex::new(None);
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let identity = Identity::of(&meta);
    if let Some(known) = crate::machine::sync::lock(&VERIFIED).as_ref() {
        if known.get(path) == Some(&identity) {
            return true;
        }
    }
    let recorded = std::fs::read_to_string(paths::sidecar(path)).unwrap_or_default();
    let intact = meta.is_file()
        && of(path)
            .map(|hash| hash.to_hex().as_str() == recorded.trim())
            .unwrap_or(false);
    if intact {
        crate::machine::sync::lock(&VERIFIED)
            .get_or_insert_with(HashMap::new)
            .insert(path.to_path_buf(), identity);
    } else {
        tracing::warn!(
            "{} is damaged (its content does not match the hash recorded when it was written); \
             it is made again",
            path.display()
        );
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(paths::sidecar(path));
    }
    intact
}

/// What a file is, as far as telling whether it changed goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn line(&self, hash: &blake3::Hash) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            hash.to_hex()
        )
    }

    fn parse(line: &str) -> Option<(Identity, blake3::Hash)> {
        let mut words = line.trim_end_matches('\n').split(' ');
        let mut next = || words.next();
        let identity = Identity {
            dev: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            size: next()?.parse().ok()?,
            mtime_ns: next()?.parse().ok()?,
            ctime_ns: next()?.parse().ok()?,
        };
        let hash = blake3::Hash::from_hex(next()?).ok()?;
        next().is_none().then_some((identity, hash))
    }
}

/// This host boot's memo directory (older boots' are removed when it is made); None when the
/// boot id cannot be read, and then nothing is remembered.
fn memo_dir() -> Option<PathBuf> {
    let boot = paths::host_boot_id()?;
    let hashes = paths::host_facts().join("hashes");
    let dir = hashes.join(&boot);
    if !dir.is_dir() && std::fs::create_dir_all(&dir).is_ok() {
        for old in std::fs::read_dir(&hashes).into_iter().flatten().flatten() {
            if old.file_name() != boot.as_str() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    Some(dir)
}

fn memo_file(memo: &Path, path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let key = blake3::hash(absolute.as_os_str().as_encoded_bytes()).to_hex();
    memo.join(&key[..32])
}

fn remembered(file: &Path) -> Option<(Identity, blake3::Hash)> {
    Identity::parse(&paths::read_small(file, 256)?)
}

fn of_in(memo: Option<&Path>, path: &Path, settled: Duration) -> std::io::Result<blake3::Hash> {
    let before = Identity::of(&std::fs::metadata(path)?);
    let file = memo.map(|m| memo_file(m, path));
    if let Some((identity, hash)) = file.as_deref().and_then(remembered) {
        if identity == before {
            return Ok(hash);
        }
    }
    let mut hasher = blake3::Hasher::new();
    let mut opened = std::fs::File::open(path)?;
    hasher.update_reader(&mut opened)?;
    let hash = hasher.finalize();
    // Remembered only when nothing changed while it was read, and the file has settled.
    let after = Identity::of(&opened.metadata()?);
    let changed_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|now| now.as_nanos() as i128 - after.ctime_ns)
        .unwrap_or(0);
    if let Some(file) = file {
        if after == before && changed_ns >= settled.as_nanos() as i128 {
            // A read-only or full cache only costs the next process the hash again.
            let _ = paths::write_atomically(&file, after.line(&hash).as_bytes());
        }
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        let file = dir.path().join("kernel");
        std::fs::write(&file, b"first content").unwrap();
        (dir, memo, file)
    }

    #[test]
    fn a_hash_is_remembered_while_the_file_keeps_its_identity() {
        let (_dir, memo, file) = setup();
        let first = of_in(Some(&memo), &file, Duration::ZERO).unwrap();
        assert_eq!(first, blake3::hash(b"first content"));
        // Plant another hash under the same identity: it is what comes back, unread.
        let planted = blake3::hash(b"planted");
        let identity = Identity::of(&std::fs::metadata(&file).unwrap());
        std::fs::write(memo_file(&memo, &file), identity.line(&planted)).unwrap();
        assert_eq!(of_in(Some(&memo), &file, Duration::ZERO).unwrap(), planted);
        // The same content rewritten, its mtime set back: the ctime still tells (after a pause
        // longer than a coarse timestamp's tick, which SETTLED stands for outside tests).
        std::thread::sleep(Duration::from_millis(50));
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, b"first content").unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(mtime).unwrap();
        assert_eq!(of_in(Some(&memo), &file, Duration::ZERO).unwrap(), first);
    }

    #[test]
    fn a_changed_file_is_hashed_again_and_a_fresh_one_is_not_remembered() {
        let (_dir, memo, file) = setup();
        of_in(Some(&memo), &file, Duration::ZERO).unwrap();
        std::fs::write(&file, b"second").unwrap();
        let fresh = of_in(Some(&memo), &file, Duration::from_secs(3600)).unwrap();
        assert_eq!(fresh, blake3::hash(b"second"));
        // Not settled: the memo still holds the first identity, which no longer matches.
        let (identity, hash) = remembered(&memo_file(&memo, &file)).unwrap();
        assert_eq!(hash, blake3::hash(b"first content"));
        assert_ne!(identity, Identity::of(&std::fs::metadata(&file).unwrap()));
    }

    /// A reader that checks a new cache entry while another thread or process writes it must
    /// never take the half-written entry for a damaged one and remove it under the writer.
    #[test]
    fn a_cache_file_being_written_is_never_taken_for_a_damaged_one() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let entry = {
            let dir = d.path().to_path_buf();
            move |n: usize| dir.join(format!("entry-{n}.cpio"))
        };
        let (stop, current) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let reader = {
            let (stop, current, entry) = (stop.clone(), current.clone(), entry.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    cached_intact(&entry(current.load(Ordering::Relaxed)));
                }
            })
        };
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < std::time::Duration::from_secs(2) {
            n += 1;
            // A new key each time, as a miss writes one; the reader looks at it at once.
            current.store(n, Ordering::Relaxed);
            paths::write_cached(&entry(n), format!("content {n}").as_bytes()).unwrap();
            assert!(
                entry(n).exists(),
                "write {n} was removed as damaged while it was written"
            );
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn damaged_cache_files_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        for damage in ["empty", "truncate", "garble", "delete", "directory"] {
            let p = d.path().join(format!("{damage}.elf"));
            paths::write_cached(&p, &vec![7u8; 8192]).unwrap();
            assert!(cached_intact(&p), "{damage}: intact after writing");
            match damage {
                "empty" => std::fs::write(&p, b"").unwrap(),
                "truncate" => std::fs::write(&p, vec![7u8; 100]).unwrap(),
                "garble" => std::fs::write(&p, vec![8u8; 8192]).unwrap(),
                "delete" => std::fs::remove_file(&p).unwrap(),
                _ => {
                    std::fs::remove_file(&p).unwrap();
                    std::fs::create_dir(&p).unwrap();
                }
            }
            assert!(!cached_intact(&p), "{damage}: seen as damaged");
        }
    }

    #[test]
    fn damaged_memos_are_ignored() {
        let (_dir, memo, file) = setup();
        let want = blake3::hash(b"first content");
        let identity = Identity::of(&std::fs::metadata(&file).unwrap());
        let good = identity.line(&want);
        std::fs::create_dir_all(&memo).unwrap();
        for damaged in [
            String::new(),
            "garbage\n".into(),
            good.replace(&want.to_hex().to_string(), "zz"),
            format!("{} extra\n", good.trim_end()),
            good[..good.len() / 2].to_string(),
            "1".repeat(100_000),
        ] {
            std::fs::write(memo_file(&memo, &file), &damaged).unwrap();
            assert_eq!(
                of_in(Some(&memo), &file, Duration::from_secs(3600)).unwrap(),
                want,
                "{damaged:.40?}"
            );
        }
        assert_eq!(of_in(None, &file, Duration::ZERO).unwrap(), want);
        assert!(of_in(Some(&memo), &memo.join("missing"), Duration::ZERO).is_err());
    }
}
