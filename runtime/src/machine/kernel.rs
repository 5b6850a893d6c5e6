//! Kernel images: reading a bzImage's setup header, cutting the uncompressed `vmlinux` out of it
//! for PVH boots, and finding what the kernel supports.
//!
//! Under TCG, decompressing the kernel is most of a bzImage boot (6.5 s against 2.5 s measured on
//! a Debian 6.1 kernel). The ELF `vmlinux` inside can be booted directly through the PVH entry
//! point when the kernel has `CONFIG_PVH`; QEMU loads it with `-kernel` as it would a bzImage.

use crate::machine::error::IoError;
use crate::machine::paths;
use provium_compiler::linux::Arch;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a kernel image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelImageError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{} is neither a bzImage, an ELF kernel nor an arm64 Image", .0.display())]
    NotAKernel(PathBuf),
    #[error(
        "the kernel image is damaged: its payload ({length} bytes at {offset}) lies outside the \
         file ({size} bytes)"
    )]
    PayloadOutside {
        length: u32,
        offset: u32,
        size: usize,
    },
    #[error("the kernel image is damaged: its payload does not decompress ({0})")]
    Damaged(DecompressError),
    #[error("{} changed while provium was using it", .0.display())]
    Changed(PathBuf),
}

/// Why a kernel payload (or a module) did not decompress.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("gzip data: {0}")]
    Gzip(std::io::Error),
    #[error("xz data: {0:?}")]
    Xz(lzma_rs::error::Error),
    #[error("zstd data: {0}")]
    Zstd(ruzstd::decoding::errors::FrameDecoderError),
    #[error("lz4 block: {0}")]
    Lz4(lz4_flex::block::DecompressError),
    #[error("{0}-compressed kernels are not supported for PVH")]
    Unsupported(&'static str),
    #[error("the decompressed payload is not an ELF image")]
    NotElf,
}

/// Why a kernel boots as a bzImage rather than through PVH.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPvh {
    #[error("the boot protocol is too old to locate the payload")]
    OldProtocol,
    #[error("{0}-compressed kernels are not supported for PVH")]
    Compression(&'static str),
    #[error("the kernel was built without CONFIG_PVH")]
    NoPvhNote,
}

/// What a kernel image is and what it can do.
#[derive(Debug, Clone)]
pub struct KernelImage {
    /// The image given in the profile.
    pub path: PathBuf,
    /// `uname -r` as embedded in the image, when it could be read.
    pub release: Option<String>,
    /// How the kernel boots PVH, or why it cannot: see [`KernelImage::pvh`].
    pvh: Pvh,
    /// The image's content hash (hex): a rebuilt kernel at the same path is another kernel.
    pub content_hash: String,
    /// The architecture it runs on.
    pub arch: Arch,
}

/// A kernel's PVH entry as far as opening the image tells.
#[derive(Debug, Clone)]
enum Pvh {
    /// Decided from the image itself (an ELF kernel, an arm64 Image).
    Known(PvhBoot),
    /// A bzImage: its decompressed ELF is (to be) cached at this path. It is checked, and made
    /// when missing or damaged, only when a boot asks ([`KernelImage::pvh`]): a resume and
    /// everything that only asks what the kernel is never read the 50 MB file.
    Extracted(PathBuf),
}

/// How a kernel boots through its PVH entry point.
#[derive(Debug, Clone)]
pub struct PvhBoot {
    /// An uncompressed ELF kernel with a PVH entry point, ready for `-kernel`.
    pub elf: Option<PathBuf>,
    /// Why PVH is not used, when it is not.
    pub unavailable: Option<String>,
}

/// arm64's `Image` header: the magic at 0x38 (Documentation/arch/arm64/booting.rst).
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";

/// Whether `image` starts like an arm64 `Image`.
fn is_arm64_image(image: &[u8]) -> bool {
    image.get(0x38..0x3c) == Some(ARM64_MAGIC)
}

/// An arm64 `Image` is uncompressed: its banner (`Linux version 6.1.0-57-cloud-arm64 (…`)
/// gives the release.
fn banner_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let at = memchr::memmem::find(image, BANNER)? + BANNER.len();
    let rest = image.get(at..at + 256.min(image.len() - at))?;
    let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The architecture of the kernel image at `path`, from its first bytes (an unreadable or
/// unknown image is x86_64's: the boot reports what is wrong with it).
pub fn arch_of(path: &Path) -> Arch {
    let mut head = [0u8; 64];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_ok() && is_arm64_image(&head) {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

const SETUP_HEADER_MAGIC: &[u8; 4] = b"HdrS";

/// How much of a bzImage its setup header and version string are read from: the real-mode
/// setup code is at most 64 sectors (32 KiB) and the version string lies within it.
const HEAD_BYTES: u64 = 64 << 10;

/// Fields of the x86 boot protocol's setup header that Provium reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    pub protocol: u16,
    pub setup_sects: u8,
    pub payload_offset: u32,
    pub payload_length: u32,
    pub version_string: Option<String>,
}

impl SetupHeader {
    pub fn parse(image: &[u8]) -> Option<SetupHeader> {
        let u16_at = |o: usize| Some(u16::from_le_bytes(image.get(o..o + 2)?.try_into().ok()?));
        let u32_at = |o: usize| Some(u32::from_le_bytes(image.get(o..o + 4)?.try_into().ok()?));
        if image.get(0x202..0x206)? != SETUP_HEADER_MAGIC {
            return None;
        }
        let setup_sects = match *image.get(0x1f1)? {
            0 => 4,
            n => n,
        };
        let version_string = u16_at(0x20e).and_then(|ptr| {
            let start = ptr as usize + 0x200;
            let bytes = image.get(start..)?;
            let end = bytes.iter().position(|&b| b == 0)?.min(256);
            Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
        });
        Some(SetupHeader {
            protocol: u16_at(0x206)?,
            setup_sects,
            payload_offset: u32_at(0x248)?,
            payload_length: u32_at(0x24c)?,
            version_string,
        })
    }

    /// The release (`uname -r`) is the first word of the version string.
    pub fn release(&self) -> Option<String> {
        self.version_string
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string)
    }

    /// The compressed payload, located through the header (boot protocol 2.08 and later).
    pub fn payload<'a>(&self, image: &'a [u8]) -> Option<&'a [u8]> {
        if self.protocol < 0x0208 {
            return None;
        }
        let start = (self.setup_sects as usize + 1) * 512 + self.payload_offset as usize;
        image.get(start..start.checked_add(self.payload_length as usize)?)
    }
}

/// Compression formats a kernel payload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Lz4Legacy,
    Zstd,
    Other(&'static str),
}

impl Compression {
    pub fn detect(payload: &[u8]) -> Compression {
        match payload {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Compression::Xz,
            [0x02, 0x21, 0x4c, 0x18, ..] => Compression::Lz4Legacy,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Other("bzip2"),
            [0x89, b'L', b'Z', b'O', ..] => Compression::Other("lzo"),
            [0x5d, 0, 0, ..] => Compression::Other("lzma"),
            _ => Compression::Other("unknown"),
        }
    }
}

/// Decompresses a kernel payload. The kernel build appends the uncompressed size as four bytes,
/// which every decoder here tolerates.
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(payload.len() * 4);
    match Compression::detect(payload) {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(payload)
                .read_to_end(&mut out)
                .map_err(DecompressError::Gzip)?;
        }
        Compression::Xz => {
            lzma_rs::xz_decompress(&mut std::io::BufReader::new(payload), &mut out)
                .map_err(DecompressError::Xz)?;
        }
        Compression::Zstd => {
            let mut dec =
                ruzstd::decoding::StreamingDecoder::new(payload).map_err(DecompressError::Zstd)?;
            // Trailing size bytes after the frame end the stream with an error once the frame is
            // complete; what was decoded is kept and validated as ELF below.
            let _ = dec.read_to_end(&mut out);
        }
        Compression::Lz4Legacy => decompress_lz4_legacy(payload, &mut out)?,
        Compression::Other(name) => return Err(DecompressError::Unsupported(name)),
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(DecompressError::NotElf);
    }
    Ok(out)
}

/// The kernel's "legacy" LZ4 format (`lz4 -l`): a magic, then blocks of at most 8 MiB, each
/// preceded by its compressed size.
fn decompress_lz4_legacy(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DecompressError> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK: usize = 8 << 20;
    let mut rest = &payload[4..];
    let mut block = vec![0u8; BLOCK];
    while rest.len() > 4 {
        let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if size == MAGIC {
            rest = &rest[4..];
            continue;
        }
        let size = size as usize;
        if size > rest.len() - 4 {
            // The appended uncompressed-size word, or the end of the stream.
            break;
        }
        let n = lz4_flex::block::decompress_into(&rest[4..4 + size], &mut block)
            .map_err(DecompressError::Lz4)?;
        out.extend_from_slice(&block[..n]);
        rest = &rest[4 + size..];
    }
    Ok(())
}

/// Whether an ELF kernel has a PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub fn has_pvh_note(elf: &[u8]) -> bool {
    use object::read::elf::{ElfFile64, ProgramHeader};
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    let Ok(file) = ElfFile64::<object::Endianness>::parse(elf) else {
        return false;
    };
    let endian = file.endian();
    for ph in file.elf_program_headers() {
        let Ok(Some(mut notes)) = ph.notes(endian, elf) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen"
                && note.n_type(endian) == object::elf::NoteType(XEN_ELFNOTE_PHYS32_ENTRY)
            {
                return true;
            }
        }
    }
    false
}

/// The release a bzImage says it is (`uname -r`), from its setup header alone (the first
/// 64 KiB): cheap enough to ask before a run. An arm64 Image has no such header: its banner
/// is searched once per process and file version (the whole image, tens of MiB, is read; every
/// boot's plan asks). `None` for ELF kernels and unreadable files.
pub fn release_of(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64 << 10);
    std::fs::File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_end(&mut head)
        .ok()?;
    if is_arm64_image(&head) {
        type Seen = std::sync::Mutex<
            std::collections::HashMap<(PathBuf, Option<std::time::SystemTime>), Option<String>>,
        >;
        static SEEN: std::sync::OnceLock<Seen> = std::sync::OnceLock::new();
        let key = (
            path.to_path_buf(),
            std::fs::metadata(path).and_then(|m| m.modified()).ok(),
        );
        let seen = SEEN.get_or_init(Default::default);
        if let Some(hit) = crate::machine::sync::lock(seen).get(&key) {
            return hit.clone();
        }
        let release = banner_release(&std::fs::read(path).ok()?);
        crate::machine::sync::lock(seen).insert(key, release.clone());
        return release;
    }
    SetupHeader::parse(&head)?.release()
}

impl KernelImage {
    /// Inspects `path`: its architecture, release and content hash. A bzImage's PVH-bootable
    /// ELF is only located here ([`KernelImage::pvh`] checks or makes it).
    pub fn open(path: &Path) -> Result<KernelImage, KernelImageError> {
        let reading = |e| IoError::new(format!("reading kernel {}", path.display()), e);
        let mut head = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
            .map_err(reading)?;
        // Every process opens its kernel, a resume too: a bzImage whose ELF is cached is known
        // by its head and its content hash (remembered across processes: `content_hash`), and
        // is never read whole; the ELF is checked when a boot uses it.
        let bzimage = !is_arm64_image(&head) && !head.starts_with(b"\x7fELF");
        if let Some(header) = SetupHeader::parse(&head).filter(|_| bzimage) {
            let hash = crate::machine::content_hash::of(path)
                .map_err(reading)?
                .to_hex();
            let cached = paths::vmlinux_cache().join(format!("{}.elf", &hash[..32]));
            if cached.is_file() && paths::sidecar(&cached).is_file() {
                return Ok(KernelImage {
                    path: path.to_path_buf(),
                    release: header.release(),
                    pvh: Pvh::Extracted(cached),
                    content_hash: hash.to_string(),
                    arch: Arch::X86_64,
                });
            }
        }
        let image = std::fs::read(path).map_err(reading)?;
        let hash = blake3::hash(&image).to_hex();
        let known = |elf: Option<PathBuf>, unavailable: Option<String>| {
            Pvh::Known(PvhBoot { elf, unavailable })
        };
        if is_arm64_image(&image) {
            return Ok(KernelImage {
                path: path.to_path_buf(),
                release: banner_release(&image),
                pvh: known(None, Some("an arm64 Image boots as itself".into())),
                content_hash: hash.to_string(),
                arch: Arch::Aarch64,
            });
        }
        if image.starts_with(b"\x7fELF") {
            let pvh = has_pvh_note(&image);
            return Ok(KernelImage {
                path: path.to_path_buf(),
                release: None,
                pvh: known(
                    pvh.then(|| path.to_path_buf()),
                    (!pvh).then(|| "the ELF kernel has no PVH note".to_string()),
                ),
                content_hash: hash.to_string(),
                arch: Arch::X86_64,
            });
        }
        let header = SetupHeader::parse(&image)
            .ok_or_else(|| KernelImageError::NotAKernel(path.to_path_buf()))?;
        let cached = paths::vmlinux_cache().join(format!("{}.elf", &hash[..32]));
        // A new kernel is decompressed now: a damaged image is refused before anything is
        // planned.
        Ok(KernelImage {
            path: path.to_path_buf(),
            release: header.release(),
            pvh: Pvh::Known(extract_into(&header, &image, &cached)?),
            content_hash: hash.to_string(),
            arch: Arch::X86_64,
        })
    }

    /// How the kernel boots PVH. For a bzImage the cached ELF is checked against its content
    /// hash (once per process and file version) and extracted again when it is missing or
    /// damaged: a boot never loads a damaged copy.
    pub fn pvh(&self) -> Result<PvhBoot, KernelImageError> {
        let cached = match &self.pvh {
            Pvh::Known(boot) => return Ok(boot.clone()),
            Pvh::Extracted(cached) => cached,
        };
        if crate::machine::content_hash::cached_intact(cached) {
            return Ok(PvhBoot {
                elf: Some(cached.clone()),
                unavailable: None,
            });
        }
        let image = std::fs::read(&self.path)
            .map_err(|e| IoError::new(format!("reading kernel {}", self.path.display()), e))?;
        // The image changed since it was opened: another kernel, which the caller must open.
        if blake3::hash(&image).to_hex().as_str() != self.content_hash {
            return Err(KernelImageError::Changed(self.path.clone()));
        }
        let header = SetupHeader::parse(&image)
            .ok_or_else(|| KernelImageError::NotAKernel(self.path.clone()))?;
        extract_into(&header, &image, cached)
    }
}

/// Decompresses a bzImage's PVH-bootable ELF into the cache at `cached` (or a private place
/// when the cache is read-only).
fn extract_into(
    header: &SetupHeader,
    image: &[u8],
    cached: &Path,
) -> Result<PvhBoot, KernelImageError> {
    Ok(match extract_pvh_elf(header, image)? {
        Ok(elf) => {
            let written = paths::write_cached_anywhere(cached, &elf)
                .map_err(|e| IoError::new(format!("caching {}", cached.display()), e))?;
            PvhBoot {
                elf: Some(written),
                unavailable: None,
            }
        }
        Err(why) => PvhBoot {
            elf: None,
            unavailable: Some(why.to_string()),
        },
    })
}

/// The PVH-bootable ELF inside a bzImage; `Ok(Err(why))` when the kernel simply cannot boot
/// that way (an old boot protocol, a compression not handled here, no `CONFIG_PVH`), and an
/// error when the image is damaged: a payload in a known format that does not decompress would
/// only hang QEMU's own decompressor, so it is refused before anything boots.
fn extract_pvh_elf(
    header: &SetupHeader,
    image: &[u8],
) -> Result<Result<Vec<u8>, NoPvh>, KernelImageError> {
    let Some(payload) = header.payload(image) else {
        if header.protocol >= 0x0208 {
            return Err(KernelImageError::PayloadOutside {
                length: header.payload_length,
                offset: header.payload_offset,
                size: image.len(),
            });
        }
        return Ok(Err(NoPvh::OldProtocol));
    };
    if let Compression::Other(name) = Compression::detect(payload) {
        return Ok(Err(NoPvh::Compression(name)));
    }
    let elf = decompress(payload).map_err(KernelImageError::Damaged)?;
    if !has_pvh_note(&elf) {
        return Ok(Err(NoPvh::NoPvhNote));
    }
    Ok(Ok(elf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 0x1000];
        img[0x1f1] = 1; // one setup sector: payload base is 1024
        img[0x202..0x206].copy_from_slice(SETUP_HEADER_MAGIC);
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x310].copy_from_slice(b"6.1.0-test (x)\0\0");
        img[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.truncate(1024 + 16);
        img.extend_from_slice(payload);
        img
    }

    #[test]
    fn header_locates_payload_and_release() {
        let img = fake_bzimage(b"\x1f\x8bpayload");
        let h = SetupHeader::parse(&img).unwrap();
        assert_eq!(h.release().as_deref(), Some("6.1.0-test"));
        assert_eq!(h.payload(&img).unwrap(), b"\x1f\x8bpayload");
        assert_eq!(
            Compression::detect(h.payload(&img).unwrap()),
            Compression::Gzip
        );
    }

    #[test]
    fn garbage_is_not_a_bzimage() {
        assert!(SetupHeader::parse(b"short").is_none());
        assert!(SetupHeader::parse(&[0u8; 4096]).is_none());
    }

    #[test]
    fn lz4_legacy_round_trip() {
        let data: Vec<u8> = b"\x7fELF"
            .iter()
            .copied()
            .chain((0..100_000u32).map(|i| (i % 251) as u8))
            .collect();
        let block = lz4_flex::block::compress(&data);
        let mut payload = vec![0x02, 0x21, 0x4c, 0x18];
        payload.extend_from_slice(&(block.len() as u32).to_le_bytes());
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(decompress(&payload).unwrap(), data);
    }

    #[test]
    fn gzip_round_trip_and_non_elf_rejected() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"not an elf").unwrap();
        let payload = enc.finish().unwrap();
        let err = decompress(&payload).unwrap_err();
        assert!(err.to_string().contains("not an ELF"));
    }
}
