//! Fuzzes the spec compiler on the stable toolchain: mutations of every shipped spec and
//! example (and of each input that once failed, kept in `tests/fuzz/crashers/`). Every input
//! must end within 2 s, without a panic, compiled to a Lua chunk that loads or with diagnostics
//! that each point at a line of it.
//!
//! `cargo test -p provium-compiler --test fuzz_spec` makes a few thousand executions from a
//! fixed seed; `PROVIUM_FUZZ_SECS=3600 cargo test --release -p provium-compiler --test
//! fuzz_spec -- --nocapture` fuzzes for an hour (`PROVIUM_FUZZ_SEED` picks another sequence).

#[path = "fuzz/mutate.rs"]
mod mutate;

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Words of the spec language, for whole-token mutations.
const TOKENS: &[&[u8]] = &[
    b"{{ ",
    b" }}",
    b"{% for x in range(9) %}",
    b"{% endfor %}",
    b"cases:\n",
    b"  - name: x\n",
    b"syscall: ",
    b"args: [",
    b"]",
    b"expect: ",
    b"EBADF",
    b"ok",
    b"any",
    b"save: ",
    b"$fd",
    b"steps:\n",
    b"finally:\n",
    b"skip_if: ",
    b"$repeat",
    b"save: {n: \"(%d+)\"}",
    b"drop_caps: [",
    b"session: inherit",
    b"catch: [SIGALRM]",
    b"timer: {after: 0.05, signal: ",
    b"store: {at: \"$addr + 4\", type: u32, value: ",
    b"lua: |\n",
    b"exec: ",
    b"table: [",
    b"matrix: {",
    b"as: {uid: ",
    b"requires: {",
    b"structs:\n",
    b"constants:\n",
    b"headers: [",
    b"{cstr: ",
    b"{bytes: ",
    b"{struct: ",
    b"{ptr: ",
    b"{out: ",
    b"{sizeof: ",
    b"set: {",
    b"u64",
    b"i32",
    b"char[",
    b"packed: true",
    b"align: ",
    b"fields:",
    b"timeout: ",
    b"repeat: {until: EMFILE, at_most: ",
    b"raises: ",
    b"one_of: [",
    b"euid: ",
    b"rlimits: {RLIMIT_NOFILE: [",
    b"umask: 0o",
    b"filesystem: ",
    b"module: ",
    b"be16",
    b"$unused_pid",
    b"save: [",
    b"xfail: ",
    b"skip: ",
    b"fixture: ",
    b"profile: ",
    b"suite: ",
    b"&a ",
    b"*a",
    b"!!str ",
    b"<<: *a",
    b"---\n",
    b"...\n",
    b"? ",
    b"|-",
    b">+",
    b"\t",
    b"\xc3\x28",
    b"1 << 64",
    b"~0",
    b"-(",
    b"(u64)",
    b"$",
    b"\"",
    b"'",
    b"#",
    b": ",
    b", ",
    b"- ",
];

#[test]
fn the_spec_compiler_survives_mutated_specs() {
    let root = root();
    let corpus: Vec<Vec<u8>> = mutate::corpus(
        &[root.join("specs"), root.join("examples")],
        &["yaml", "yml"],
    )
    .into_iter()
    .map(|(_, d)| d)
    .collect();
    assert!(corpus.len() >= 10, "the corpus is the shipped specs");
    let crashers = root.join("compiler/tests/fuzz/crashers/spec");
    let execs = mutate::fuzz("spec", &corpus, &crashers, TOKENS, 3000, |input| {
        let text = String::from_utf8_lossy(input);
        match provium_compiler::compile(&text, &provium_compiler::Options::new("fuzz.yaml")) {
            // A spec that checks must compile to a chunk that loads.
            Ok(c) => match mlua::Lua::new().load(&c.lua).into_function() {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("checked, but its Lua does not load: {e}")),
            },
            Err(diags) => {
                // Lines as YAML counts them: a lone `\r` ends one too.
                let lines = text
                    .replace("\r\n", "\n")
                    .replace('\r', "\n")
                    .lines()
                    .count() as u32
                    + 1;
                match diags
                    .iter()
                    .find(|d| d.file != "fuzz.yaml" || d.pos.line == 0 || d.pos.line > lines)
                {
                    Some(d) => Err(format!("a diagnostic without a place in the input: {d}")),
                    None if diags.is_empty() => Err("an error without a diagnostic".into()),
                    None => Ok(()),
                }
            }
        }
    });
    assert!(execs > 0);
}
