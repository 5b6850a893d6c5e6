//! `provium shell`: one command with `-c` (its output and exit status), and an interactive shell
//! on a terminal (a pseudo-terminal from `script`), typed into like a person would, both in the
//! profile's fixture resumed.

use crate::common::{provium, show};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn one_command_prints_and_exits_with_its_status() {
    let out = provium()
        .args(["shell", "-c", "uname -r; echo to-stderr >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("6."), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));
    let other = provium()
        .args(["shell", "--kernel", "6.12", "-c", "uname -r"])
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", show(&other));
    assert!(String::from_utf8_lossy(&other.stdout).starts_with("6.12."));
    // Without a terminal and without -c, it says what to do instead.
    let no_tty = provium()
        .args(["shell"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(no_tty.status.code(), Some(2), "{}", show(&no_tty));
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("provium shell -c"));
}

/// The shell resumes the profile's fixture (its kept console log starts with the snapshot's boot
/// and says where it resumed); `--cold` boots. Either way busybox's `modprobe` is in `/sbin`,
/// where the agent put it once the kernel had booted without it.
#[test]
fn the_shell_resumes_the_fixture_unless_told_to_boot() {
    let console = |extra: &[&str]| {
        let out = provium()
            .args(["shell", "--keep"])
            .args(extra)
            .args([
                "-c",
                "echo ran $(readlink /sbin/modprobe) $(ls /etc/provium/modprobe 2>/dev/null); \
                 echo provium-shell-mark > /dev/kmsg",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ran /bin/busybox"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let dir = stderr
            .lines()
            .find_map(|l| l.strip_prefix("provium shell: kept "))
            .and_then(|l| l.strip_suffix(" (its console.log)"))
            .unwrap_or_else(|| panic!("no kept directory in:\n{}", show(&out)))
            .to_string();
        let log = std::fs::read_to_string(std::path::Path::new(&dir).join("console.log"));
        std::fs::remove_dir_all(&dir).unwrap();
        log.unwrap()
    };
    // Both logs are the VM's own (the command's kernel message is in them).
    let resumed = console(&[]);
    assert!(resumed.contains("provium-shell-mark"), "{resumed}");
    assert!(
        resumed.contains("--- provium: resumed from the snapshot of `minimal` ---"),
        "{resumed}"
    );
    let booted = console(&["--cold"]);
    assert!(booted.contains("provium-shell-mark"), "{booted}");
    assert!(!booted.contains("resumed from the snapshot"), "{booted}");
}

#[test]
fn an_interactive_shell_runs_on_the_terminal() {
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} shell", env!("CARGO_BIN_EXE_provium")),
            "/dev/null",
        ])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) gives the shell a terminal");
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if seen.lock().unwrap().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no {what:?} in:\n{}", seen.lock().unwrap());
    };
    let mut stdin = child.stdin.take().unwrap();
    // The profile's fixture is resumed with the console port on this terminal: no boot.
    wait_for("resumed in");
    wait_for(" # ");
    stdin.write_all(b"echo hello-$((6*7)); tty\n").unwrap();
    wait_for("hello-42");
    wait_for("/dev/hvc0");
    stdin.write_all(b"exit 5\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the shell did not end:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    assert_eq!(status.code(), Some(5), "{}", seen.lock().unwrap());
}
