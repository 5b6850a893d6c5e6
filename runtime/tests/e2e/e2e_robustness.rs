//! A guest that crashes, hangs or misbehaves is reported with its console, and nothing is left
//! behind. All against the real kernel.

use crate::common::*;
use provium::machine::profile::TransportChoice;
use provium::machine::vm::{BootOptions, VmError};
use provium::protocol::{Credentials, SyscallCall, SyscallOutcome, Termination};
use std::io::BufRead;
use std::time::Duration;

static VM: Shared = Shared::new(TransportChoice::VirtioSerial);

fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); look at its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[test]
fn a_blocking_syscall_times_out_and_the_vm_goes_on() {
    let mut vm = VM.get();
    let pause = SyscallCall {
        nr: 34,
        timeout_ms: 400,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    assert_eq!(vm.root().syscall(pause).unwrap(), SyscallOutcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(vm.root().syscall_args(39, &[]).unwrap() > 0);
}

#[test]
fn a_batch_survives_a_fatal_call_in_the_middle() {
    let mut vm = VM.get();
    let close = || call(3, &[-1], vec![]);
    let calls = vec![
        close(),
        close(),
        call(231, &[7], vec![]),
        close(),
        call(39, &[], vec![]),
    ];
    let outcomes = vm.root().batch(calls).unwrap();
    assert_eq!(outcomes.len(), 5);
    assert_eq!(returned(outcomes[0].clone()).0, -9);
    assert_eq!(returned(outcomes[1].clone()).0, -9);
    assert_eq!(
        outcomes[2],
        SyscallOutcome::ExecutorDied(Termination::Exited(7))
    );
    assert_eq!(returned(outcomes[3].clone()).0, -9);
    assert!(returned(outcomes[4].clone()).0 > 0);
}

#[test]
fn a_fault_in_the_executor_is_a_result() {
    let mut vm = VM.get();
    // kill(getpid(), SIGSEGV) from inside the executor.
    let pid = vm.root().syscall_args(39, &[]).unwrap();
    let outcome = vm.root().syscall(call(62, &[pid, 11], vec![])).unwrap();
    assert_eq!(
        outcome,
        SyscallOutcome::ExecutorDied(Termination::Signaled(11))
    );
    assert_eq!(vm.root().syscall_args(3, &[-1]).unwrap(), -9);
}

#[test]
fn megabyte_buffers_round_trip() {
    let mut vm = VM.get();
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
    vm.root().write_file("/tmp/big", &data, 0o600).unwrap();
    assert_eq!(vm.root().read_file("/tmp/big").unwrap(), data);
    // And through a syscall buffer: read(2) of the file into a 1 MiB output buffer.
    let (fd, _) = returned(
        vm.root()
            .syscall(call(
                257,
                &[AT_FDCWD, 0, 0],
                vec![input(1, cstr("/tmp/big"))],
            ))
            .unwrap(),
    );
    assert!(fd >= 0);
    let (n, bufs) = returned(
        vm.root()
            .syscall(call(0, &[fd, 0, 1 << 20], vec![output(1, 1 << 20)]))
            .unwrap(),
    );
    assert_eq!(n, 1 << 20);
    assert_eq!(bufs[0].as_deref(), Some(&data[..]));
    vm.root().syscall_args(3, &[fd]).unwrap();
}

#[test]
fn workers_run_with_their_credentials() {
    let mut vm = VM.get();
    vm.root()
        .write_file("/tmp/secret", b"root only", 0o600)
        .unwrap();
    let open = || call(257, &[AT_FDCWD, 0, 0], vec![input(1, cstr("/tmp/secret"))]);
    let root_fd = returned(vm.root().syscall(open()).unwrap()).0;
    assert!(root_fd >= 0, "root opens its 0600 file");
    vm.root().syscall_args(3, &[root_fd]).unwrap();
    let user = vm
        .spawn_worker(Credentials {
            uid: 1000,
            gid: 1000,
            ..Credentials::default()
        })
        .unwrap();
    assert_eq!(
        returned(
            vm.worker(user)
                .syscall(SyscallCall {
                    nr: 102,
                    ..Default::default()
                })
                .unwrap()
        )
        .0,
        1000
    );
    assert_eq!(
        returned(vm.worker(user).syscall(open()).unwrap()).0,
        -13,
        "EACCES"
    );
    let err = vm.worker(user).read_file("/tmp/secret").unwrap_err();
    assert!(matches!(err, VmError::Agent(_)), "{err}");
    vm.kill_worker(user).unwrap();
    assert!(matches!(
        vm.worker(user).syscall(SyscallCall::default()),
        Err(VmError::Agent(_))
    ));
}

#[test]
fn dmesg_reads_the_kernel_log() {
    let mut vm = VM.get();
    let log = vm.dmesg().unwrap();
    assert!(
        log.contains("Linux version"),
        "{}",
        &log[..log.len().min(200)]
    );
}

#[test]
fn a_kernel_crash_is_reported_with_the_console_tail() {
    let mut vm = boot(TransportChoice::VirtioSerial);
    let pid = vm.qemu_pid();
    let err = vm
        .root()
        .write_file("/proc/sysrq-trigger", b"c", 0)
        .expect_err("the guest crashed");
    let console = err.console_tail().expect("a lost VM carries its console");
    assert!(console.contains("sysrq"), "console tail:\n{console}");
    assert!(matches!(err, VmError::Lost { .. }), "{err}");
    assert!(!vm.is_running());
    drop(vm);
    assert!(!alive(pid));
}

#[test]
fn a_boot_that_fails_shows_the_console() {
    let profile = provium::machine::profile::Profiles::builtin()
        .get("minimal")
        .unwrap();
    let opts = BootOptions {
        kernel_args: vec!["rdinit=/no/such/init".into()],
        ..Default::default()
    };
    let err = provium::machine::vm::Vm::boot(&profile, &opts)
        .err()
        .expect("boot fails");
    assert!(matches!(err, VmError::Boot { .. }), "{err}");
    let console = err.console_tail().unwrap_or("");
    assert!(
        console.contains("Kernel panic") || console.contains("init"),
        "console tail:\n{console}"
    );
}

#[test]
fn a_hung_boot_times_out() {
    let profile = provium::machine::profile::Profiles::builtin()
        .get("minimal")
        .unwrap();
    let opts = BootOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = provium::machine::vm::Vm::boot(&profile, &opts)
        .err()
        .expect("boot times out");
    assert!(
        err.to_string().contains("timeout") || err.to_string().contains("timed out"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn shutdown_is_graceful_and_qemu_is_gone() {
    let mut vm = boot(TransportChoice::VirtioSerial);
    let pid = vm.qemu_pid();
    let dir = vm.run_dir().to_path_buf();
    vm.shutdown().unwrap();
    assert!(!alive(pid));
    assert!(matches!(vm.ping(), Err(VmError::NotRunning)));
    drop(vm);
    assert!(!dir.exists(), "the run directory is removed");
}

/// Run by `killing_the_host_kills_qemu` in a child process: boots, prints QEMU's pid, waits.
#[test]
#[ignore = "helper, run by killing_the_host_kills_qemu"]
fn helper_boot_and_wait() {
    if std::env::var_os("PROVIUM_TEST_HELPER").is_none() {
        return;
    }
    let vm = boot(TransportChoice::VirtioSerial);
    println!(
        "QEMU_PID={} RUN_DIR={}",
        vm.qemu_pid(),
        vm.run_dir().display()
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn killing_the_host_kills_qemu() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "e2e_robustness::helper_boot_and_wait",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("PROVIUM_TEST_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("QEMU_PID="))
        .expect("helper printed the QEMU pid");
    let mut fields = line.split_whitespace();
    let pid: u32 = fields.next().unwrap()["QEMU_PID=".len()..].parse().unwrap();
    let run_dir = std::path::PathBuf::from(&fields.next().unwrap()["RUN_DIR=".len()..]);
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no destructor, no handler runs.
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "QEMU {pid} outlived its killed host");
    // The next run sweeps the orphaned run directory.
    assert!(run_dir.exists());
    provium::machine::cleanup::sweep_stale();
    assert!(!run_dir.exists());
}

/// A `PROVIUM_QEMU` wrapper that runs QEMU as its child instead of exec'ing it (a shell script
/// adding `nice` or logging, say): the QEMUs of a fixture build and of a resumed file are
/// stopped with the wrapper, not left running.
#[test]
fn a_qemu_wrapper_that_does_not_exec_leaves_no_qemu_behind() {
    let home = fresh_home();
    let qemu = which::which("qemu-system-x86_64").unwrap();
    let wrapper = home.path().join("qemu-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\n'{}' \"$@\"\n", qemu.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "t.lua",
        "local vm = provium.create()\nvm:boot()\ntest(\"answers\", function() assert(vm:syscall(provium.nr.getpid) > 0) end)\n",
    );
    let out = provium_in(dir.path())
        .args(["test", "t.lua"])
        .env("PROVIUM_HOME", home.path())
        .env("PROVIUM_QEMU", &wrapper)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // Every QEMU this run started names the home (its initramfs, its fixture's RAM).
    let marker = home.path().display().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("qemu-system") && c.contains(&marker))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU left running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
