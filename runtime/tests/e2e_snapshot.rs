//! Snapshots of a booted VM, and resumes from them: copy-on-write, independent, fast.

mod common;

use provium::machine::vm::{BootOptions, Vm};
use provium::protocol::{Buffer, SyscallCall, SyscallOutcome};
use std::time::Instant;

#[test]
fn a_snapshot_resumes_twice_independently() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = common::boot_with(BootOptions {
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
