//! Snapshots of a booted VM, and resumes from them: copy-on-write, independent, fast.

use provium::machine::vm::{BootOptions, Vm};
use provium::protocol::{Buffer, SyscallCall, SyscallOutcome};
use std::time::Instant;

#[test]
fn a_snapshot_resumes_twice_independently() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = crate::common::boot_with(BootOptions {
        snapshot_memory: Some(dir.path().join("ram")),
        ..Default::default()
    });
    vm.root()
        .write_file("/tmp/prepared", b"by the fixture", 0)
        .unwrap();
    let snap = vm.snapshot(dir.path()).expect("snapshot");
    assert!(!vm.is_running());
    let ram_before = std::fs::read(dir.path().join("ram")).unwrap();
    assert!(
        std::fs::metadata(&snap.state).unwrap().len() < 1 << 20,
        "RAM stays out of the state file"
    );

    let started = Instant::now();
    let mut a =
        Vm::resume(&snap).unwrap_or_else(|e| panic!("{e}\n{}", e.console_tail().unwrap_or("")));
    let resume_time = started.elapsed();
    let mut b = Vm::resume(&snap).unwrap();
    for vm in [&mut a, &mut b] {
        assert_eq!(
            vm.root().read_file("/tmp/prepared").unwrap(),
            b"by the fixture"
        );
        assert_eq!(vm.root().syscall_args(3, &[-1]).unwrap(), -9);
        assert_eq!(
            String::from_utf8_lossy(&vm.root().sh("echo hi").unwrap().stdout).trim(),
            "hi"
        );
    }
    a.root().write_file("/tmp/mine", b"a", 0).unwrap();
    assert!(
        b.root().read_file("/tmp/mine").is_err(),
        "b does not see a's writes"
    );
    // The guest clock was set forward to the host's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let guest: u64 = String::from_utf8_lossy(&a.root().sh("date +%s").unwrap().stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(guest + 5 >= now, "guest clock {guest} vs host {now}");
    // Two resumes of one snapshot start from the same RNG state, yet must not draw the same
    // numbers. (The kernel's own interrupt entropy already separates them on this host; the
    // host seed each resume mixes in makes sure of it where interrupts are too regular.)
    let draw = |vm: &mut Vm| -> Vec<u8> {
        let out = vm
            .root()
            .syscall(SyscallCall {
                nr: 318, // getrandom(buf, 32, 0)
                args: [0, 32, 0, 0, 0, 0],
                buffers: vec![Buffer {
                    arg: Some(0),
                    data: Vec::new(),
                    len: 32,
                    output: true,
                }],
                ..Default::default()
            })
            .unwrap();
        match out {
            SyscallOutcome::Returned { ret: 32, buffers } => buffers[0].clone().unwrap(),
            other => panic!("getrandom: {other:?}"),
        }
    };
    assert_ne!(draw(&mut a), draw(&mut b), "resumes share their RNG state");
    drop(a);
    drop(b);
    assert_eq!(
        std::fs::read(dir.path().join("ram")).unwrap(),
        ram_before,
        "the snapshot never changes"
    );
    eprintln!("resume to ready: {resume_time:?}");
}

/// `bench boot --phases` splits a cold boot and a resume into their phases (the VM's own
/// records), measures the bare boot beside them and prints the two ratios; no figure is
/// asserted, only that every part is there and each phase took some time.
#[test]
fn bench_boot_phases_splits_a_boot_and_a_resume() {
    // A project of its own: the whole-process run must leave its last-run record alone (other
    // tests run `provium test` in the repository meanwhile).
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = crate::common::FixtureCleanup(dir.path());
    let out = crate::common::provium_in(dir.path())
        .args(["bench", "boot", "--phases", "--boots", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", crate::common::show(&out));
    for phase in [
        "plan (kernel, modules, initramfs)",
        "kernel to init",
        "agent modules",
        "QMP: incoming migration",
        "one syscall (getpid)",
        "shutdown",
        "bare boot (same kernel and command line, init powers off at once)",
        "cold boot + one syscall + shutdown",
        "resume to a ready agent",
    ] {
        assert!(text.contains(phase), "no `{phase}` in:\n{text}");
    }
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name}:\n{text}"))
            .to_string()
    };
    assert!(!line("kernel to init").contains(" 0.0 ms"), "{text}");
    assert!(
        line("cold boot to a ready agent").contains("× the bare boot"),
        "{text}"
    );
    // What a user's runs cost, whole `provium test --cold` and `provium test` processes (no
    // provium.toml: the built-in profile is measured).
    for whole in [
        "provium test --cold, whole process",
        "provium test (resumed), whole process",
    ] {
        assert!(line(whole).contains("× the bare boot"), "{text}");
    }
    assert!(
        !dir.path().join(".provium").exists(),
        "the measured run wrote no last-run record into the project"
    );
}
