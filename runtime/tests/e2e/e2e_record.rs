//! Nothing the user wrote is lost by `record` and `gen`: expectations are found by the YAML
//! parser (an `expect:` inside a string is text), block expectations are recorded, concurrent
//! records of one spec give what a lone record gives, a signal leaves no temporary file and
//! exits 128 + the signal, `gen` never overwrites a spec it did not write as it is now, and
//! `record --kernel` records the answers of the kernel named.

use crate::common::{provium_in as provium, show, write_file as write};

const SPEC: &str = r#"cases:
  - {name: "what to expect: EBADF", syscall: close, args: [-1], expect: 0}
  - name: a block expectation
    syscall: close
    args: [-1]
    expect:
      errno: EINVAL
"#;

const RECORDED: &str = r#"cases:
  - {name: "what to expect: EBADF", syscall: close, args: [-1], expect: EBADF}
  - name: a block expectation
    syscall: close
    args: [-1]
    expect: EBADF
"#;

#[test]
fn record_edits_what_the_parser_says_and_two_records_agree_with_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.yaml", SPEC);
    let out = provium(dir.path())
        .args(["record", "r.yaml", "--update", "--runs", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let lone = std::fs::read_to_string(dir.path().join("r.yaml")).unwrap();
    assert_eq!(lone, RECORDED);
    let out = provium(dir.path())
        .args(["check", "r.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    // Two at once on the same spec: the second waits for the first, and the result is the
    // lone record's.
    write(dir.path(), "r.yaml", SPEC);
    let spawn = || {
        provium(dir.path())
            .args(["record", "r.yaml", "--update", "--runs", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("r.yaml")).unwrap(),
        lone
    );
}

#[test]
fn a_signal_during_record_exits_with_it_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough to be interrupted: a case that sleeps.
    write(
        dir.path(),
        "slow.yaml",
        "cases:\n  - {name: waits, syscall: pause, timeout: 20, expect: any}\n",
    );
    let before = std::fs::read_to_string(dir.path().join("slow.yaml")).unwrap();
    let child = provium(dir.path())
        .args(["record", "slow.yaml", "--update", "--runs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("slow.yaml")).unwrap(),
        before
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp") || n.starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn gen_never_overwrites_a_spec_it_did_not_write_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |extra: &[&str]| {
        provium(dir.path())
            .args(["gen", "--syscalls", "close,dup", "--out", "g"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = gen(&[]);
    assert!(out.status.success(), "{}", show(&out));
    // Generating again over its own output is fine.
    let out = gen(&[]);
    assert!(out.status.success(), "{}", show(&out));
    // A hand edit, and a spec behind a symlink.
    let close = dir.path().join("g/close.yaml");
    let mut edited = std::fs::read_to_string(&close).unwrap();
    edited.push_str("# mine\n");
    std::fs::write(&close, &edited).unwrap();
    let elsewhere = dir.path().join("mine.yaml");
    std::fs::write(&elsewhere, "cases: []\n").unwrap();
    std::fs::remove_file(dir.path().join("g/dup.yaml")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("g/dup.yaml")).unwrap();
    let out = gen(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("close.yaml (changed since gen wrote it)")
            && stderr.contains("dup.yaml (a symlink)")
            && stderr.contains("--force"),
        "{}",
        show(&out)
    );
    assert_eq!(std::fs::read_to_string(&close).unwrap(), edited);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "cases: []\n");
    // --force replaces them, and the link itself, not what it points to.
    let out = gen(&["--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_ne!(std::fs::read_to_string(&close).unwrap(), edited);
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "cases: []\n");
}

#[test]
fn record_kernel_records_the_named_kernels_answers() {
    let dir = tempfile::tempdir().unwrap();
    // 451 became cachestat in 6.5: ENOSYS on 6.1; EBADF for a bad descriptor on 6.12.
    write(
        dir.path(),
        "k.yaml",
        "cases:\n  - {name: syscall 451, syscall: 451, args: [-1, 0, 0, 0], expect: any}\n",
    );
    let out = provium(dir.path())
        .args([
            "record", "k.yaml", "--update", "--runs", "1", "--kernel", "6.12",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = std::fs::read_to_string(dir.path().join("k.yaml")).unwrap();
    assert!(text.contains("expect: EBADF"), "{text}");
}
