use super::*;

fn compile(src: &str) -> Result<crate::Compiled, Vec<Diagnostic>> {
    crate::compile(src, &Options::new("t.yaml"))
}

fn errors(src: &str) -> Vec<String> {
    match compile(src) {
        Ok(c) => panic!("expected errors, compiled:\n{}", c.lua),
        Err(d) => d.iter().map(|d| d.headline()).collect(),
    }
}

fn lua(src: &str) -> String {
    match compile(src) {
        Ok(c) => c.lua,
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(|d| d.render(src, false))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn the_tour_compiles() {
    let out = lua(include_str!("../../../examples/tour.yaml"));
    assert!(
        out.contains("provium.pack(\"u64 u64 u64\", 0, 0, 0x80000000)"),
        "{out}"
    );
    assert!(out.contains("test(\"close on fd -1 is EBADF\""), "{out}");
    assert!(out.contains("test(\"fsync on fd 9999 is EBADF\""), "{out}");
    // A one-call case with credentials runs isolated, in a forked child.
    assert!(out.contains("vm:isolated{"), "{out}");
    assert!(
        out.contains("{as = {uid = 1000, gid = 1000, descriptors = \"inherit\"}"),
        "{out}"
    );
    assert!(
        out.contains("vm:batch{"),
        "independent cases are batched:\n{out}"
    );
}

#[test]
fn a_typo_repeated_by_every_row_is_one_problem_and_long_names_get_no_suggestion() {
    let rows: String = (0..1000)
        .map(|i| format!("      - {{fd: {i}}}\n"))
        .collect();
    let long = "x".repeat(10_000);
    let e = errors(&format!(
        "cases:\n  - name: \"c {{{{ fd }}}}\"\n    table:\n{rows}    syscall: {long}\n    args: [\"{{{{ fd }}}}\"]\n    expect: EBADF\n"
    ));
    assert_eq!(e.len(), 1, "{}", e.len());
    assert!(!e[0].contains("did you mean"), "{}", &e[0][..200]);
    let e = errors(&format!(
        "cases:\n  - name: \"c {{{{ fd }}}}\"\n    table:\n{rows}    syscall: clsoe\n    args: [\"{{{{ fd }}}}\"]\n    expect: EBADF\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("did you mean `close`?"), "{}", e[0]);
}

#[test]
fn typos_get_positions_and_suggestions() {
    let e = errors("cases:\n  - name: x\n    syscall: clsoe\n    args: [-1]\n    expect: EINVLA\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml:3:14: unknown syscall `clsoe`")
            && e[0].contains("did you mean `close`?"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("t.yaml:5:13: unknown errno `EINVLA`")
            && e[1].contains("did you mean `EINVAL`?"),
        "{}",
        e[1]
    );
    let e = errors("cases:\n  - name: x\n    syscall: close\n    args: [-1]\n    expct: EBADF\n");
    assert!(
        e[0].starts_with("t.yaml:5:5: unknown field `expct`")
            && e[0].contains("did you mean `expect`?"),
        "{}",
        e[0]
    );
    let e = errors("cases:\n  - name: x\n    syscall: openat\n    args: [AT_FDCWD, {cstr: /}, \"O_RDONLY|O_DIRECTROY\"]\n    expect: ok\n");
    assert!(
        e[0].starts_with("t.yaml:4:43: unknown constant `O_DIRECTROY`")
            && e[0].contains("O_DIRECTORY"),
        "{}",
        e[0]
    );
}

#[test]
fn values_out_of_range_and_bad_forms() {
    let e = errors("structs:\n  h: [{kind: u8}]\ncases:\n  - name: x\n    syscall: write\n    args: [1, {struct: h, set: {kind: 300}}, 1]\n    expect: ok\n");
    assert!(
        e[0].contains("300 is out of range for u8 field `h.kind`"),
        "{e:?}"
    );
    let e = errors("structs:\n  h: [{kind: u8}]\ncases:\n  - name: x\n    syscall: write\n    args: [1, {struct: h, set: {knd: 1}}, 1]\n    expect: ok\n");
    assert!(
        e[0].contains("struct `h` has no field `knd`") && e[0].contains("did you mean `kind`"),
        "{e:?}"
    );
    let e = errors(
        "cases:\n  - name: x\n    syscall: chmod\n    args: [{cstr: /}, 0600]\n    expect: ok\n",
    );
    assert!(e[0].contains("0o600"), "a 0600 gets the octal hint: {e:?}");
    let e = errors("cases:\n  - name: x\n    syscall: close\n    args: [$fd]\n    expect: ok\n");
    assert!(e[0].contains("`$fd` is never saved"), "{e:?}");
    let e = errors(
        "cases:\n  - name: x\n    syscall: write\n    args: [1, {cstring: x}, 1]\n    expect: ok\n",
    );
    assert!(
        e[0].contains("unknown argument form `cstring`") && e[0].contains("did you mean `cstr`"),
        "{e:?}"
    );
    let e = errors("cases:\n  - name: \"{{ cal }}\"\n    table: [{call: close}]\n    syscall: close\n    expect: ok\n");
    assert!(
        e[0].contains("unknown column `cal`") && e[0].contains("did you mean `call`"),
        "{e:?}"
    );
    let e = errors("requires: {kernel: \"~5\"}\ncases:\n  - {name: x, syscall: close, args: [-1], expect: EBADF}\n");
    assert!(e[0].contains("bad kernel version `~5`"), "{e:?}");
    let e = errors("cases:\n  - name: x\n    syscall: close\n    args: [-1]\n");
    assert!(e[0].contains("has no `expect:`"), "{e:?}");
    let e = errors("cases:\n  - name: x\n    as: {uid: 1, caps: [CAP_NET_ADMN]}\n    syscall: close\n    args: [-1]\n    expect: EBADF\n");
    assert!(
        e[0].contains("unknown capability") && e[0].contains("CAP_NET_ADMIN"),
        "{e:?}"
    );
}

#[test]
fn layouts_nested_structs_and_pointers() {
    let out = lua(r#"
structs:
  iovec: [{base: ptr}, {len: u64}]
  msg:
    - name: ptr
    - namelen: u32
    - iov: ptr
    - iovlen: u64
cases:
  - name: sendmsg with nested pointers
    syscall: sendmsg
    args: [-1, {struct: msg, set: {iov: {struct: iovec, set: {base: {cstr: hello}, len: 5}}, iovlen: 1}}, 0]
    expect: EBADF
"#);
    assert!(
        out.contains("provium.pack(\"ptr u32 x4 ptr u64\", 0, 0, 0, 1)"),
        "{out}"
    );
    assert!(out.contains("ptrs = {{buf_idx = 1, ptr_offset = 16, data = provium.pack(\"ptr u64\", 0, 5)}, {ptr = 1, ptr_offset = 0, data = \"hello\\0\"}}"), "{out}");
}

#[test]
fn matrix_rows_and_saved_values() {
    let out = lua(r#"
setup:
  - {syscall: pipe2, args: [{out: 8}, 0], save: {rfd: {out: 0, at: 0, type: i32}, wfd: {out: 0, at: 4, type: i32}}}
cases:
  - name: "{{ call }}"
    matrix: {call: [close, fsync], fd: [-1, 9999]}
    syscall: "{{ call }}"
    args: ["{{ fd }}"]
    expect: EBADF
  - name: write to the pipe
    syscall: write
    args: [$wfd, {str: abc}, 3]
    expect: 3
    save: written
  - name: read it back
    syscall: read
    args: ["$rfd", {out: 8}, "$written"]
    expect: {ret: 3, out: {1: {starts_with: abc}}}
"#);
    for name in [
        "close [call=close, fd=-1]",
        "close [call=close, fd=9999]",
        "fsync [call=fsync, fd=-1]",
    ] {
        let _ = name;
    }
    assert!(out.contains("test(\"close\", function()"), "{out}");
    assert!(
        out.contains("test(\"close (2)\", function()"),
        "duplicates are made unique:\n{out}"
    );
    assert!(
        out.contains("saved.rfd = provium.unpack(\"i32\", r.bufs[0])"),
        "{out}"
    );
    assert!(
        out.contains("saved.wfd = provium.unpack(\"x4 i32\", r.bufs[0])"),
        "{out}"
    );
    assert!(
        out.contains("args = {saved.rfd, 0, saved.written}"),
        "{out}"
    );
}

#[test]
fn ten_thousand_cases_compile_quickly() {
    let mut src = String::from("cases:\n  - name: \"close {{ fd }}\"\n    syscall: close\n    args: [\"{{ fd }}\"]\n    expect: EBADF\n    table:\n");
    for i in 0..10_000 {
        src.push_str(&format!("      - {{fd: {}}}\n", -1 - i));
    }
    let started = std::time::Instant::now();
    let c = compile(&src).unwrap();
    assert_eq!(c.model.cases.len(), 10_000);
    assert_eq!(
        c.lua.matches("vm:batch{").count(),
        5,
        "2,000 calls per round trip"
    );
    // Generous even for a debug build; `provium bench compile` measures the release build.
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn version_ranges() {
    use crate::requirement::KernelRange;
    assert!(">=5.6, <6.2".parse::<KernelRange>().is_ok());
    assert!("6.1".parse::<KernelRange>().is_ok());
    assert!(">= five".parse::<KernelRange>().is_err());
}

/// Inputs that once crashed or hung `provium check`: each ends at once with a located error.
#[test]
fn hostile_inputs_end_fast_with_a_located_error() {
    let case = |body: &str| format!("cases:\n  - name: x\n    expect: any\n{body}");
    let deep = format!(
        "    syscall: close\n    args: [{}1{}]\n",
        "(".repeat(800),
        ")".repeat(800)
    );
    let unary = format!(
        "    syscall: close\n    args: [\"{}1\"]\n",
        "-".repeat(1000)
    );
    let long_sum = format!(
        "    syscall: close\n    args: [\"{}\"]\n",
        vec!["1"; 5000].join("+")
    );
    let loops = "    syscall: close\n    args: [\"{{ 1 }}{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\"]\n";
    let matrix = format!(
        "    matrix:\n{}    syscall: close\n    args: [-1]\n",
        (0..8)
            .map(|i| format!(
                "      c{i}: [{}]\n",
                (0..100)
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .collect::<String>()
    );
    for (what, src, expected) in [
        (
            "nested parentheses",
            case(&deep),
            "nests more than 32 levels",
        ),
        (
            "prefix operators",
            case(&unary),
            "nests more than 32 levels",
        ),
        ("a long expression", case(&long_sum), "the limit is 4096"),
        ("nested template loops", case(loops), "ran out of fuel"),
        (
            "a matrix over the limit",
            case(&matrix),
            "more than 100,000 combinations",
        ),
    ] {
        let started = std::time::Instant::now();
        let errs = errors(&src);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("t.yaml:") && e.contains(expected)),
            "{what}: {errs:?}"
        );
        assert!(
            started.elapsed().as_secs() < 2,
            "{what} took {:?}",
            started.elapsed()
        );
    }
    // Many cases that are each fine, over the per-file limit: two matrices of 62,500 rows.
    let values = (0..250)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let matrix = |name: &str| {
        format!("  - name: {name}\n    matrix: {{a: [{values}], b: [{values}]}}\n    syscall: close\n    args: [-1]\n    expect: EBADF\n")
    };
    let two = format!("cases:\n{}{}", matrix("a"), matrix("b"));
    let errs = errors(&two);
    assert!(
        errs.iter()
            .any(|e| e.contains("expands to more than 100,000 cases")),
        "{errs:?}"
    );
    // Past the YAML reader's own limits: said as such.
    let huge: String = (0..130_000)
        .map(|i| format!("  - {{name: n{i}}}\n"))
        .collect();
    let errs = errors(&format!("cases:\n{huge}"));
    assert!(errs[0].contains("too large"), "{errs:?}");
}

#[test]
fn lua_blocks_are_code_not_templates_and_see_their_row() {
    let out = lua("cases:\n  - name: x\n    table: [{a: 1, s: hi}]\n    lua: |\n      local t = {{1}}\n      assert_eq(1, row.a)\n");
    assert!(out.contains("local t = {{1}}"), "{out}");
    assert!(
        out.contains("row = {[\"a\"] = 1, [\"s\"] = \"hi\"}"),
        "{out}"
    );
    // A block ending in `]` stays inside its string.
    let out = lua("cases:\n  - name: x\n    lua: \"x = {1}; y = x[1]\"\n");
    assert!(out.contains("y = x[1]]=]"), "{out}");
}

#[test]
fn a_file_name_with_a_newline_stays_in_comments() {
    let src = "cases:\n  - name: x\n    syscall: close\n    args: [-1]\n    expect: EBADF\n";
    let c = crate::compile(src, &Options::new("a\nos.exit(3)\n.yaml")).unwrap();
    assert!(
        !c.lua.lines().any(|l| l.trim_start().starts_with("os.exit")),
        "{}",
        c.lua
    );
    assert!(c.lua.contains("a\\nos.exit(3)\\n.yaml"), "{}", c.lua);
    // The source map still finds the case's line.
    let line = c
        .lua
        .lines()
        .position(|l| l.ends_with(".yaml:3"))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{}", c.lua));
    assert_eq!(c.source_map.line(line), Some(3));
}

#[test]
fn lua_blocks_save_names_and_ready_made_values_need_no_saving() {
    let src = "cases:\n  - name: x\n    steps:\n      - lua: 'saved.pid = 1'\n        save: [pid]\n      - { syscall: kill, args: [$pid, 0], expect: ok }\n  - name: y\n    syscall: kill\n    args: [$unused_pid, 0]\n    expect: ESRCH\n";
    let chunk = lua(src);
    assert!(
        chunk.contains("if rawget(saved, \"pid\") == nil then error("),
        "the promise is checked:\n{chunk}"
    );
    assert!(chunk.contains("saved.unused_pid"), "{chunk}");
    let e = errors("cases:\n  - name: x\n    steps:\n      - exec: 'true'\n        save: x\n");
    // An `exec:` step saves by pattern only.
    assert!(e[0].contains("saves from its output by pattern"), "{e:?}");
    let e =
        errors("cases:\n  - name: x\n    steps:\n      - exec: 'true'\n        save: {n: '%d+'}\n");
    assert!(e[0].contains("has no capture"), "{e:?}");
    let e = errors(
        "cases:\n  - name: x\n    syscall: kill\n    args: [$unused_pd, 0]\n    expect: ok\n",
    );
    assert!(e[0].contains("did you mean `unused_pid`"), "{e:?}");
    let e = errors("cases:\n  - name: x\n    syscall: sched_yield\n    expect: {one_of: []}\n");
    assert!(e[0].contains("empty `one_of:`"), "{e:?}");
    let e = errors("structs:\n  s: [{port: be12}]\ncases:\n  - name: x\n    syscall: write\n    args: [1, {struct: s}, 2]\n    expect: ok\n");
    assert!(e[0].contains("did you mean `be16`"), "{e:?}");
}

#[test]
fn suggestions_offer_a_call_its_own_constant_family() {
    // SFD_NONBLOCK is one edit away, but it belongs to signalfd: eventfd2 gets its own.
    let e = errors(
        "cases:\n  - name: x\n    syscall: eventfd2\n    args: [0, SFD_NONBLOK]\n    expect: ok\n",
    );
    assert!(e[0].contains("did you mean `EFD_NONBLOCK`"), "{e:?}");
    let e = errors("cases:\n  - name: x\n    syscall: signalfd4\n    args: [-1, 0, 8, SFD_NONBLOK]\n    expect: ok\n");
    assert!(e[0].contains("did you mean `SFD_NONBLOCK`"), "{e:?}");
    assert!(crate::linux::suggestible_in(
        "TFD_CLOEXEC",
        Some("timerfd_create")
    ));
    assert!(!crate::linux::suggestible_in(
        "TFD_CLOEXEC",
        Some("eventfd2")
    ));
    assert!(crate::linux::suggestible_in("O_CLOEXEC", Some("eventfd2")));
}

#[test]
fn a_column_yaml_reads_as_a_boolean_is_named_as_such() {
    let e = errors("cases:\n  - name: x\n    table: [{true: 1}]\n    syscall: close\n    args: [\"{{ true }}\"]\n    expect: ok\n");
    assert!(
        e[0].contains("reads as a boolean") && e[0].contains("quote it"),
        "{e:?}"
    );
}

#[test]
fn specs_are_yaml_1_2_so_n_y_on_off_yes_no_are_strings() {
    // YAML 1.1 reads all of these as booleans (the "Norway problem"); editors and the JSON
    // Schema validator read YAML 1.2, and so does the compiler.
    let out = lua("cases:\n  - name: \"{{ n }} {{ on }} {{ no }}\"\n    table: [{n: 1, y: 2, on: off, yes: no, no: NO}]\n    syscall: close\n    args: [\"{{ y }}\"]\n    expect: any\n");
    assert!(out.contains("test(\"1 off NO\""), "{out}");
    assert!(out.contains("args = {2}"), "{out}");
    let e = errors("share_vm: yes\ncases:\n  - name: x\n    syscall: getpid\n    expect: ok\n");
    assert!(
        e[0].contains("1:11") && e[0].contains("expected `true` or `false`"),
        "{e:?}"
    );
}

#[test]
fn the_new_keys_suggest_what_was_meant() {
    for (src, hint) in [
        ("cases:\n  - name: x\n    as: { uid: 0, umaks: 0o077 }\n    syscall: getpid\n    expect: ok\n", "did you mean `umask`"),
        ("cases:\n  - name: x\n    syscall: dup\n    args: [0]\n    repeat: { untill: EMFILE, at_most: 9 }\n    expect: EMFILE\n", "did you mean `until`"),
        ("cases:\n  - name: x\n    syscall: getpid\n    expect: { ok: true, raise: SIGPIPE }\n", "did you mean `raises`"),
        ("cases:\n  - name: x\n    syscall: getpid\n    expect: { raises: SIGPIPEE }\n", "did you mean `SIGPIPE`"),
        ("cases:\n  - name: x\n    as: { uid: 0, rlimits: { RLIMIT_NOFLIE: 4 } }\n    syscall: getpid\n    expect: ok\n", "did you mean `RLIMIT_NOFILE`"),
        ("cases:\n  - name: x\n    requires: { filesytem: ext4 }\n    syscall: getpid\n    expect: ok\n", "did you mean `filesystem`"),
        ("cases:\n  - name: x\n    as: { uid: nobody }\n    syscall: getpid\n    expect: ok\n", "`uid` is a number, not a name (`nobody` and `nogroup` are 65534)"),
    ] {
        let e = errors(src);
        assert!(e.iter().any(|m| m.contains(hint)), "{hint}: {e:?}");
    }
}

#[test]
fn the_model_holds_typed_values_and_the_emitter_spells_them() {
    use crate::model::{Body, CmpOp, Comparison, Condition, Data, Int, StepKind};
    let src = "cases:\n  - name: t\n    steps:\n      - { syscall: dup, args: [0], save: fd }\n      - syscall: close\n        args: [\"(__u64)$fd + O_RDWR\"]\n        expect: { ret: { lt: 0 }, errno: [EBADF] }\n      - { syscall: write, args: [1, {cstr: hi, len: 8}, 3] }\n";
    let compiled = compile(src).unwrap();
    let Body::Steps(steps) = &compiled.model.cases[0].body else {
        panic!("a steps case");
    };
    let StepKind::Call(close) = &steps[1].kind else {
        panic!("a call");
    };
    // A 64-bit cast of a saved value changes nothing: no mask.
    assert_eq!(
        close.args,
        vec![Int::Binary(
            crate::expr::BinOp::Add,
            Box::new(Int::Saved("fd".into())),
            Box::new(Int::Const(2))
        )]
    );
    let expect = close.expect.as_ref().unwrap();
    assert_eq!(
        expect.conditions,
        vec![
            Condition::Ret(vec![Comparison {
                op: CmpOp::Lt,
                value: Int::Const(0)
            }]),
            Condition::Errno(vec!["EBADF".into()]),
        ]
    );
    let StepKind::Call(write) = &steps[2].kind else {
        panic!("a call");
    };
    assert_eq!(
        write.bufs,
        vec![(
            1,
            Data::Padded(Box::new(Data::Bytes(b"hi\0".to_vec())), Int::Const(8))
        )]
    );
    let out = compiled.lua;
    assert!(out.contains("args = {(saved.fd + 2)}"), "{out}");
    assert!(
        out.contains("expect(r, {ret = {lt = 0}, errno = {\"EBADF\"}})"),
        "{out}"
    );
    assert!(out.contains("[1] = provium.pad(\"hi\\0\", 8)"), "{out}");
    // A narrower unsigned cast masks.
    let narrow = lua(&src.replace("(__u64)", "(__u16)"));
    assert!(narrow.contains("((saved.fd & 65535) + 2)"), "{narrow}");
}

#[test]
fn a_provider_that_knows_the_declarations_counts_arguments() {
    #[derive(Debug)]
    struct Declared;
    impl HeaderProvider for Declared {
        fn load(&self, _: &str, _: &[String], _: crate::linux::Abi) -> Result<HeaderSet, String> {
            Ok(HeaderSet::default())
        }
        fn syscall_params(&self, syscall: &str) -> Option<Vec<String>> {
            match syscall {
                "close" => Some(vec!["fd".into()]),
                "getpid" => Some(Vec::new()),
                _ => None,
            }
        }
    }
    let mut opts = Options::new("t.yaml");
    opts.headers = Some(std::sync::Arc::new(Declared));
    let e = crate::compile(
        "cases:\n  - {name: a, syscall: close, args: [1, 2], expect: ok}\n  - {name: b, syscall: getpid, args: [1], expect: ok}\n  - {name: c, syscall: close, args: [\"1.5\"], expect: ok}\n  - {name: d, syscall: dup, args: [1, 2, 3], expect: ok}\n",
        &opts,
    )
    .unwrap_err();
    let e: Vec<String> = e.iter().map(|d| d.headline()).collect();
    assert!(
        e.iter().any(|m| m.contains("2:41: `close` takes 1 argument (fd)")
            && m.contains("2 are given")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`getpid` takes no arguments") && m.contains("1 is given")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("argument 1 (fd):")), "{e:?}");
    // Unknown to the provider: not counted.
    assert!(!e.iter().any(|m| m.contains("`dup`")), "{e:?}");
}

/// A table cell is a template too, filled in with the row's other columns: the kernel gets the
/// rendered value, never the braces (which would fail, or pass, for the wrong reason).
#[test]
fn table_cells_are_rendered_before_the_case_uses_them() {
    let out = lua(
        "cases:\n  - name: \"open {{ n }}\"\n    table:\n      - { n: 300, p: {cstr: \"/tmp/{{ 'n' * n }}\"}, err: ENAMETOOLONG }\n    syscall: openat\n    args: [AT_FDCWD, \"{{ p }}\", O_RDONLY]\n    expect: \"{{ err }}\"\n",
    );
    assert!(out.contains(&"n".repeat(300)), "{out}");
    assert!(!out.contains("{{"), "{out}");
    let e = errors(
        "cases:\n  - name: x\n    table:\n      - { p: \"{{ p }}\" }\n    syscall: close\n    args: [\"{{ p }}\"]\n    expect: EBADF\n",
    );
    assert!(
        e.iter()
            .any(|m| m.contains("column `p` is still a template")),
        "{e:?}"
    );
}

/// `requires: {kernel: …}` is a template like the case's other conditions: a per-row bound.
#[test]
fn a_kernel_condition_takes_the_rows_value() {
    let out = lua(
        "cases:\n  - name: \"{{ fs }}\"\n    table:\n      - { fs: tmpfs, since: \">=6.6\" }\n      - { fs: ext4, since: \">=5.1\" }\n    requires: {kernel: \"{{ since }}\"}\n    syscall: close\n    args: [-1]\n    expect: EBADF\n",
    );
    assert!(out.contains(">=6.6") && out.contains(">=5.1"), "{out}");
    assert!(!out.contains("{{ since }}"), "{out}");
}

/// YAML anchors and merge keys work in specs (the manual says so).
#[test]
fn merge_keys_reuse_a_case() {
    let out = lua(
        "cases:\n  - &base {syscall: close, args: [-1], expect: EBADF, name: base}\n  - {<<: *base, name: again}\n",
    );
    assert!(
        out.contains("\"base\"") && out.contains("\"again\""),
        "{out}"
    );
}

/// Under i386 names resolve in i386's table, calls carry the ABI, the spec asks for the ABI,
/// a name only x86_64 has skips its case with why, and `{x86_64: A, i386: B}` picks per ABI.
#[test]
fn specs_compile_per_abi() {
    let src = "cases:\n  - name: getpid\n    syscall: getpid\n    expect: ok\n  - name: stat\n    syscall: {x86_64: newfstatat, i386: fstatat64}\n    args: [AT_FDCWD, {cstr: /}, {out: 144}, 0]\n    expect: 0\n  - name: only64\n    syscall: newfstatat\n    args: [AT_FDCWD, {cstr: /}, {out: 144}, 0]\n    expect: 0\n";
    let mut opts = Options::new("t.yaml");
    opts.abi = crate::linux::Abi::I386;
    let i386 = crate::compile(src, &opts).unwrap_or_else(|d| panic!("{}", d[0]));
    let native = compile(src).unwrap_or_else(|d| panic!("{}", d[0]));
    let nr = |c: &crate::Compiled, i: usize| match &c.model.cases[i].body {
        crate::model::Body::Call(call) => (call.nr, call.abi),
        _ => panic!("a call"),
    };
    assert_eq!(nr(&i386, 0), (20, crate::linux::Abi::I386));
    assert_eq!(nr(&native, 0), (39, crate::linux::Abi::X86_64));
    assert_eq!(nr(&i386, 1).0, 300); // fstatat64
    assert_eq!(nr(&native, 1).0, 262); // newfstatat
    assert!(i386.model.cases[2]
        .skip
        .as_deref()
        .is_some_and(|s| s.contains("`newfstatat` is not in the i386 syscall table")));
    assert!(native.model.cases[2].skip.is_none());
    assert!(i386.lua.contains("abi = \"i386\""), "{}", i386.lua);
    assert!(
        i386.lua.contains("provium.requires(vm, {abi = \"i386\"})"),
        "{}",
        i386.lua
    );
    assert!(!native.lua.contains("abi ="), "{}", native.lua);
    let e = crate::compile(
        "cases:\n  - name: x\n    syscall: {arm: getpid}\n    expect: ok\n",
        &opts,
    )
    .unwrap_err();
    assert!(
        e[0].message.contains("a syscall per ABI"),
        "{}",
        e[0].message
    );
}

/// Under i386 a spec struct takes C's i386 layout: `long` and pointers are 4 bytes, `u64` is
/// 4-aligned; a pointer field is packed as 4 bytes.
#[test]
fn spec_structs_take_the_abis_layout() {
    let src = "structs:\n  s: [{a: u32}, {b: u64}, {p: ptr}, {l: long}]\ncases:\n  - name: x\n    syscall: write\n    args: [1, {struct: s, set: {p: {str: hi}}}, {sizeof: s}]\n    expect: any\n";
    let mut opts = Options::new("t.yaml");
    opts.abi = crate::linux::Abi::I386;
    let i386 = crate::compile(src, &opts).unwrap_or_else(|d| panic!("{}", d[0]));
    let native = compile(src).unwrap_or_else(|d| panic!("{}", d[0]));
    assert_eq!(i386.model.layouts.get("s").unwrap().size, 20);
    assert_eq!(native.model.layouts.get("s").unwrap().size, 32);
    assert!(
        i386.lua.contains("provium.pack(\"u32 u64 u32 i32\""),
        "{}",
        i386.lua
    );
    assert!(
        native.lua.contains("provium.pack(\"u32 x4 u64 ptr i64\""),
        "{}",
        native.lua
    );
}

/// Under i386 a 64-bit argument travels as two: pread64's offset is its low and high halves,
/// and the buffers after it keep their arguments.
#[test]
fn i386_splits_64_bit_arguments() {
    let src = "cases:\n  - name: x\n    syscall: pread64\n    args: [3, {out: 8}, 8, -1]\n    expect: any\n  - name: y\n    syscall: fallocate\n    args: [3, 0, 0x100000000, \"$unused_fd + 1\"]\n    expect: any\n";
    let mut opts = Options::new("t.yaml");
    opts.abi = crate::linux::Abi::I386;
    let c = crate::compile(src, &opts).unwrap_or_else(|d| panic!("{}", d[0]));
    let call = |i: usize| match &c.model.cases[i].body {
        crate::model::Body::Call(call) => call.clone(),
        _ => panic!("a call"),
    };
    let pread = call(0);
    let consts: Vec<Option<i64>> = pread.args.iter().map(Int::as_const).collect();
    assert_eq!(
        consts,
        [
            Some(3),
            Some(0),
            Some(8),
            Some(0xffff_ffff),
            Some(0xffff_ffff)
        ]
    );
    assert_eq!(pread.bufs[0].0, 1);
    let fallocate = call(1);
    assert_eq!(fallocate.args.len(), 6);
    assert_eq!(fallocate.args[2].as_const(), Some(0));
    assert_eq!(fallocate.args[3].as_const(), Some(1));
    assert!(fallocate.args[4].as_const().is_none() && fallocate.args[5].as_const().is_none());
    assert!(c.lua.contains("& 4294967295"), "{}", c.lua);
}

/// A spec's `abi:` picks its ABI in a run that names none, and skips it in a run under another.
#[test]
fn a_specs_abi_key_picks_or_skips() {
    let src = "abi: i386\ncases:\n  - name: x\n    syscall: stat64\n    args: [{cstr: /}, {out: 96}]\n    expect: 0\n";
    let plain = compile(src).unwrap_or_else(|d| panic!("{}", d[0]));
    assert_eq!(plain.model.abi, crate::linux::Abi::I386);
    assert!(plain.model.skip.is_none());
    let mut x86 = Options::new("t.yaml");
    x86.abi_chosen = true;
    let skipped = crate::compile(src, &x86).unwrap_or_else(|d| panic!("{}", d[0]));
    assert_eq!(
        skipped.model.skip.as_deref(),
        Some("the spec is written for i386 (`abi:`)")
    );
    let e = errors("abi: [x86_64, arm]\ncases:\n  - {name: x, syscall: getpid, expect: ok}\n");
    assert!(e[0].contains("unknown ABI `arm`"), "{e:?}");
}
