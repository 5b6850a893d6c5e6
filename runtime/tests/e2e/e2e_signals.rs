//! A run stopped by a signal (a closed terminal, a cancelled CI job, Ctrl-C) exits within
//! seconds with 128 + the signal, writes the reports of what finished with the rest not run,
//! and leaves no QEMU process and no run directory. Writes to a closed stdout end quietly.

use crate::common::show;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two files that each pass a test, then block in the guest until killed.
fn project(dir: &Path) {
    for name in ["a", "b"] {
        std::fs::write(
            dir.join(format!("{name}.lua")),
            format!(
                r#"
local vm = provium.create()
vm:boot()
test("{name} passes", function() assert_errno(vm:syscall(provium.nr.close, -1), "EBADF") end)
test("{name} blocks", function() vm:call{{nr = provium.nr.pause, timeout = 600}} end)
test("{name} never reached", function() end)
"#
            ),
        )
        .unwrap();
    }
}

/// The runs of these tests hold VMs blocked in the guest; the admission gate counts VMs across
/// processes, so two such runs at once would wait on each other: they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn provium(dir: &Path, runtime: &Path) -> Command {
    let mut c = crate::common::provium_in(dir);
    // These runs need both files' VMs at once: they tell the gate so by counting only their
    // own VMs (a gate of their own), so another provium run on the machine (a CI job beside
    // this one) cannot hold one file back past the test's patience.
    c.env("PROVIUM_RUNTIME_DIR", runtime)
        .env("PROVIUM_GATE_DIR", dir.join(".gate"))
        .args(["test", "-j", "2", "--junit", "report.xml"]);
    c
}

/// QEMU processes whose command line names `runtime` (this test's run directories).
fn qemus_under(runtime: &Path) -> Vec<String> {
    let needle = runtime.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains("qemu-system") && text.contains(&needle) {
                found.push(text);
            }
        }
    }
    found
}

/// Reads what the run prints until both files are past their first test (`a passes` printed,
/// both QEMUs running), failing after two minutes. It polls the output rather than blocking on
/// it: the second QEMU may start after the last line before the blocking tests, and a blocked
/// read would then wait for the file timeout (300 s) instead of seeing it.
fn until_both_files_started(output: &mut (impl Read + AsRawFd), runtime: &Path) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 4096];
    while !(seen.contains("a passes") && qemus_under(runtime).len() == 2) {
        assert!(Instant::now() < deadline, "the run did not start: {seen}");
        let mut pfd = libc::pollfd {
            fd: output.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
            continue;
        }
        match output.read(&mut buf) {
            Ok(0) | Err(_) => panic!("provium ended early: {seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both files' first tests passed, the blocked ones not run: the report of an interrupted run.
fn check_report(dir: &Path, runtime: &Path, code: Option<i32>, expected: i32, output: &str) {
    assert_eq!(code, Some(expected), "exit status\n{output}");
    let xml = std::fs::read_to_string(dir.join("report.xml"))
        .unwrap_or_else(|e| panic!("no JUnit report: {e}\n{output}"));
    for name in ["a", "b"] {
        assert!(xml.contains(&format!("name=\"{name} passes\"")), "{xml}");
        assert!(
            xml.contains(&format!("name=\"{name} never reached\"")),
            "{xml}"
        );
    }
    assert!(
        xml.contains("not run: the run was interrupted by SIG"),
        "{xml}"
    );
    assert_eq!(
        qemus_under(runtime),
        Vec::<String>::new(),
        "QEMU left running"
    );
    let left: Vec<_> = std::fs::read_dir(runtime)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "run directories left behind: {left:?}");
}

#[test]
fn sigterm_stops_the_run_and_writes_its_report() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    project(dir.path());
    let mut child = provium(dir.path(), runtime.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = until_both_files_started(&mut stdout, runtime.path());
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = wait_with_deadline(&mut child, Duration::from_secs(5));
    let took = stopped.elapsed();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let output = format!("took {took:?}\n{seen}{rest}\n--- stderr ---\n{err}");
    check_report(dir.path(), runtime.path(), code, 143, &output);
    assert!(
        rest.contains("interrupted by SIGTERM"),
        "the summary says so\n{output}"
    );
}

#[test]
fn a_closed_terminal_stops_the_run_and_writes_its_report() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    project(dir.path());
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills two descriptors.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    // The child must not inherit the master: the terminal hangs up only when every descriptor
    // of the master is closed.
    // SAFETY: fcntl on descriptors we own.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    // SAFETY: we own both new descriptors.
    let (master_fd, slave_fd) =
        unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let tty = slave_fd.as_raw_fd();
    let mut cmd = provium(dir.path(), runtime.path());
    cmd.stdin(Stdio::from(slave_fd.try_clone().unwrap()))
        .stdout(Stdio::from(slave_fd.try_clone().unwrap()))
        .stderr(Stdio::from(slave_fd.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; the terminal becomes the child's own.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(tty, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave_fd);
    let mut terminal = std::fs::File::from(master_fd);
    let seen = until_both_files_started(&mut terminal, runtime.path());
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    // Closing the terminal hangs it up: the session leader gets SIGHUP, and its writes to the
    // terminal fail from then on.
    drop(terminal);
    let code = wait_with_deadline(&mut child, Duration::from_secs(5));
    let output = format!("took {:?}\n{seen}", stopped.elapsed());
    check_report(dir.path(), runtime.path(), code, 129, &output);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let spec = crate::common::root().join("specs/close.yaml");
    // A pipe whose reading end is already closed: the first write meets EPIPE.
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: we own both new descriptors.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_provium"))
        .args(["compile"])
        .arg(&spec)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{}", show(&out));
    assert!(stderr.trim().is_empty(), "nothing to say\n{}", show(&out));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
