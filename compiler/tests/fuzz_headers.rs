//! Fuzzes the kernel-header parsers (`#define`s, enums, syscall signatures, the syscall and
//! errno tables, C struct declarations) on the stable toolchain: mutations of real uapi headers
//! from the host (`linux-libc-dev`, installed by scripts/setup). Every input must end within 2 s
//! without a panic. `PROVIUM_FUZZ_SECS` fuzzes for longer (see fuzz_spec.rs).

#[path = "fuzz/mutate.rs"]
mod mutate;

use provium_compiler::headers::{cparse, defines, enums, signatures, tables};
use std::path::{Path, PathBuf};

const TOKENS: &[&[u8]] = &[
    b"#define ",
    b"#ifdef X\n",
    b"#endif\n",
    b"struct s {",
    b"};",
    b"union {",
    b"enum e {",
    b"= ",
    b"(",
    b")",
    b"[",
    b"]",
    b"__u64 ",
    b"__u32 ",
    b"char ",
    b"unsigned ",
    b"*",
    b";",
    b",",
    b"__attribute__((packed))",
    b"_IOW('f', 1, int)",
    b"asmlinkage long sys_x(",
    b"int a:3;",
    b"#define __NR_x ",
    b"#define EFOO ",
    b"\\\n",
    b"/*",
    b"*/",
    b"//",
    b"0x",
    b"1UL << ",
];

#[test]
fn the_header_parsers_survive_mutated_headers() {
    let include = Path::new("/usr/include");
    let names = [
        "linux/openat2.h",
        "linux/stat.h",
        "linux/fs.h",
        "linux/io_uring.h",
        "linux/perf_event.h",
        "asm/unistd_64.h",
        "asm-generic/errno.h",
        "asm-generic/errno-base.h",
    ];
    let corpus: Vec<Vec<u8>> = names
        .iter()
        .filter_map(|n| {
            std::fs::read(include.join(n))
                .or_else(|_| std::fs::read(include.join("x86_64-linux-gnu").join(n)))
                .ok()
        })
        .collect();
    assert!(
        corpus.len() >= 4,
        "the corpus is the host's uapi headers (scripts/setup installs linux-libc-dev)"
    );
    let crashers = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz/crashers/headers"
    ));
    mutate::fuzz("headers", &corpus, &crashers, TOKENS, 1500, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = defines::parse(&text);
        let _ = enums::parse(&text);
        let _ = signatures::parse(&text, "fuzz.h");
        let _ = tables::syscalls(&text);
        let _ = tables::errnos(&[&text]);
        let _ = cparse::parse(&enums::strip(&text), Path::new("/nonexistent"));
        Ok(())
    });
}
