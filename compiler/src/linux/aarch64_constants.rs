// Generated from aarch64's uapi headers (see headers::tables::BUILTIN_HEADERS) against
// x86_64's. Do not edit: `cargo test -p provium-compiler` checks it against the system
// headers, and PROVIUM_BLESS=1 regenerates it.

/// Name and aarch64's value, where it differs from x86_64's (`None`: aarch64 lacks it).
pub const DIFFERENT: &[(&str, Option<i64>)] = &[
    ("O_DIRECT", Some(65536)),
    ("O_LARGEFILE", Some(131072)),
    ("O_DIRECTORY", Some(16384)),
    ("O_NOFOLLOW", Some(32768)),
    ("O_TMPFILE", Some(4210688)),
    ("NSIG", None),
    ("MINSIGSTKSZ", Some(5120)),
    ("SIGSTKSZ", Some(16384)),
];
