//! A test's own syscalls against the agent's descriptors cost only the call that made them; the
//! VM, the next call and the file's other cases go on. Commands and file helpers start clean,
//! whatever a test did to its executor. Requests over the protocol's limits are refused before
//! they are sent. All against the real kernel.

use crate::common::*;
use provium::machine::profile::TransportChoice;
use provium::machine::vm::{Vm, VmError};
use provium::protocol::{Credentials, ExecCall, SyscallOutcome};

static VM: Shared = Shared::new(TransportChoice::VirtioSerial);

const GETPID: i64 = 39;
const CLOSE: i64 = 3;
const DUP2: i64 = 33;
const FCNTL: i64 = 72;
const PRLIMIT64: i64 = 302;
const CLOSE_RANGE: i64 = 436;
const UMASK: i64 = 95;
const CHDIR: i64 = 80;
const RT_SIGPROCMASK: i64 = 14;
const RT_SIGACTION: i64 = 13;
const F_SETFD: i64 = 2;
const F_SETFL: i64 = 4;
const O_NONBLOCK: i64 = 0o4000;
const RLIMIT_NOFILE: i64 = 7;
const RLIMIT_FSIZE: i64 = 1;

/// The agent keeps its descriptors at the top of a 4096-slot table (see agent/src/guest/guard.rs).
const LINK_READ: i64 = 4093;
const LINK_WRITE: i64 = 4094;
const CHANNEL: i64 = 4095;

fn broken(outcome: SyscallOutcome) -> String {
    match outcome {
        SyscallOutcome::ExecutorBroken(why) => why,
        other => panic!("expected the call to break the executor, got {other:?}"),
    }
}

/// The executor answers, and is a new process when `old` is given.
fn answers_from_a_fresh_executor(vm: &mut Vm, old: i64) {
    let pid = vm.root().syscall_args(GETPID, &[]).unwrap();
    assert!(pid > 0);
    assert_ne!(pid, old, "a fresh executor serves after the break");
    assert_eq!(vm.root().syscall_args(CLOSE, &[-1]).unwrap(), -9);
}

#[test]
fn closing_the_link_costs_only_that_call() {
    let mut vm = VM.get();
    let before = vm.root().syscall_args(GETPID, &[]).unwrap();
    let why = broken(
        vm.root()
            .syscall(call(CLOSE, &[LINK_WRITE], vec![]))
            .unwrap(),
    );
    assert!(
        why.contains("closed descriptor 4094") && why.contains("link to the host"),
        "{why}"
    );
    answers_from_a_fresh_executor(&mut vm, before);
}

#[test]
fn close_range_over_everything_costs_only_that_call() {
    let mut vm = VM.get();
    let before = vm.root().syscall_args(GETPID, &[]).unwrap();
    let started = std::time::Instant::now();
    let why = broken(
        vm.root()
            .syscall(call(CLOSE_RANGE, &[3, u32::MAX as i64, 0], vec![]))
            .unwrap(),
    );
    assert!(why.contains("closed descriptor"), "{why}");
    // Detected from the call's own answer (the call has no time limit: a detection that waited
    // for something would hang); the bound is generous so that a slow machine still meets it.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "detected without waiting for a timeout, took {:?}",
        started.elapsed()
    );
    answers_from_a_fresh_executor(&mut vm, before);
}

#[test]
fn replacing_and_changing_the_descriptors_is_seen() {
    let mut vm = VM.get();
    // dup2 onto the link needs the soft limit raised first: the slots are above it.
    let limit = call(
        PRLIMIT64,
        &[0, RLIMIT_NOFILE, 0, 0],
        vec![input(2, {
            let mut v = 4096u64.to_le_bytes().to_vec();
            v.extend(4096u64.to_le_bytes());
            v
        })],
    );
    assert_eq!(returned(vm.root().syscall(limit.clone()).unwrap()).0, 0);
    let why = broken(
        vm.root()
            .syscall(call(DUP2, &[0, LINK_READ], vec![]))
            .unwrap(),
    );
    assert!(why.contains("replaced descriptor 4093"), "{why}");

    let why = broken(
        vm.root()
            .syscall(call(FCNTL, &[LINK_WRITE, F_SETFL, O_NONBLOCK], vec![]))
            .unwrap(),
    );
    assert!(why.contains("status flags"), "{why}");
    // The shared link is blocking again for the fresh executor: calls still work.
    let why = broken(
        vm.root()
            .syscall(call(FCNTL, &[CHANNEL, F_SETFD, 0], vec![]))
            .unwrap(),
    );
    assert!(
        why.contains("close-on-exec") && why.contains("channel"),
        "{why}"
    );
    answers_from_a_fresh_executor(&mut vm, 0);
}

#[test]
fn a_batch_goes_on_past_a_call_that_broke_its_executor() {
    let mut vm = VM.get();
    let outcomes = vm
        .root()
        .batch(vec![
            call(GETPID, &[], vec![]),
            call(CLOSE, &[LINK_READ], vec![]),
            call(CLOSE, &[-1], vec![]),
        ])
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(returned(outcomes[0].clone()).0 > 0);
    assert!(broken(outcomes[1].clone()).contains("4093"));
    assert_eq!(returned(outcomes[2].clone()).0, -9);
}

#[test]
fn a_worker_that_closes_its_channel_is_replaced() {
    let mut vm = VM.get();
    let w = vm.spawn_worker(Credentials::default()).unwrap();
    let why = broken(
        vm.worker(w)
            .syscall(call(CLOSE, &[CHANNEL], vec![]))
            .unwrap(),
    );
    assert!(why.contains("channel"), "{why}");
    assert!(returned(vm.worker(w).syscall(call(GETPID, &[], vec![])).unwrap()).0 > 0);
    vm.kill_worker(w).unwrap();
}

#[test]
fn dup2_onto_every_descriptor_under_the_limit_leaves_the_agent_alone() {
    let mut vm = VM.get();
    // LTP dup205's pattern: every slot under the soft limit.
    let calls: Vec<_> = (3..1024).map(|fd| call(DUP2, &[0, fd], vec![])).collect();
    let outcomes = vm.root().batch(calls).unwrap();
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, SyscallOutcome::Returned { ret, .. } if *ret >= 3)));
    assert_eq!(
        returned(
            vm.root()
                .syscall(call(CLOSE_RANGE, &[3, 1023, 0], vec![]))
                .unwrap()
        )
        .0,
        0
    );
    assert!(vm.root().syscall_args(GETPID, &[]).unwrap() > 0);
}

fn sh(vm: &mut Vm, script: &str) -> (i32, String) {
    let r = vm.root().sh(script).unwrap();
    let code = match r.termination {
        Some(provium::protocol::Termination::Exited(c)) => c,
        other => panic!("`{script}` ended with {other:?}"),
    };
    (code, String::from_utf8_lossy(&r.stdout).trim().to_string())
}

#[test]
fn commands_inherit_no_agent_descriptor_and_cannot_write_to_the_link() {
    let mut vm = VM.get();
    // Only stdio, and the directory ls itself reads.
    let (_, fds) = sh(&mut vm, "ls /proc/self/fd | sort -n | tr '\\n' ' '");
    assert_eq!(fds, "0 1 2 3", "descriptors a command starts with");
    let (code, _) = sh(&mut vm, "printf garbage >&4094");
    assert_ne!(code, 0, "the link is not open in commands");
    assert!(vm.root().syscall_args(GETPID, &[]).unwrap() > 0);
}

#[test]
fn commands_and_file_helpers_start_clean_whatever_the_executor_did() {
    let mut vm = VM.get();
    // Disturb the executor: umask, working directory, a tiny file-size limit, SIGPIPE ignored
    // and SIGINT blocked.
    assert!(vm.root().syscall_args(UMASK, &[0o077]).unwrap() >= 0);
    let cd = call(CHDIR, &[0], vec![input(0, cstr("/proc"))]);
    assert_eq!(returned(vm.root().syscall(cd).unwrap()).0, 0);
    let mut limit = 16u64.to_le_bytes().to_vec();
    limit.extend(u64::MAX.to_le_bytes());
    let fsize = call(PRLIMIT64, &[0, RLIMIT_FSIZE, 0, 0], vec![input(2, limit)]);
    assert_eq!(returned(vm.root().syscall(fsize).unwrap()).0, 0);
    let mut ignore = 1u64.to_le_bytes().to_vec(); // SIG_IGN
    ignore.extend([0u8; 24]);
    let sigpipe = call(RT_SIGACTION, &[13, 0, 0, 8], vec![input(1, ignore)]);
    assert_eq!(returned(vm.root().syscall(sigpipe).unwrap()).0, 0);
    let block = call(
        RT_SIGPROCMASK,
        &[0, 0, 0, 8],
        vec![input(1, (1u64 << 1).to_le_bytes().to_vec())],
    );
    assert_eq!(returned(vm.root().syscall(block).unwrap()).0, 0);

    let (_, state) = sh(
        &mut vm,
        "umask; pwd; ulimit -f; grep -E '^Sig(Blk|Ign)' /proc/self/status | tr -s '\\t\\n' '  '",
    );
    assert_eq!(
        state, "0022\n/\nunlimited\nSigBlk: 0000000000000000 SigIgn: 0000000000000000",
        "a command's starting state"
    );
    let r = vm
        .root()
        .exec(ExecCall {
            argv: vec!["pwd".into()],
            cwd: Some("/tmp".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "/tmp");

    // A file helper writes past the executor's 16-byte limit, with the documented mode.
    let data = vec![b'x'; 4096];
    vm.root().write_file("/tmp/clean-helper", &data, 0).unwrap();
    assert_eq!(vm.root().read_file("/tmp/clean-helper").unwrap(), data);
    let (_, mode) = sh(&mut vm, "stat -c %a /tmp/clean-helper");
    assert_eq!(mode, "644");
    // The executor itself still has what the test gave it.
    assert_eq!(vm.root().syscall_args(UMASK, &[0o022]).unwrap(), 0o077);
    // The other tests get a fresh one: exit(0) ends this one.
    let exit = vm.root().syscall(call(60, &[0], vec![])).unwrap();
    assert!(matches!(exit, SyscallOutcome::ExecutorDied(_)), "{exit:?}");
}

#[test]
fn requests_over_the_limits_are_refused_and_the_vm_goes_on() {
    let mut vm = VM.get();
    let too_much_data = call(1, &[-1, 0, 0], vec![input(1, vec![0; (64 << 20) + 1])]);
    let e = vm.root().syscall(too_much_data).unwrap_err();
    assert!(matches!(e, VmError::Unsendable(_)), "{e}");
    let too_much_output = call(0, &[-1, 0, 0], vec![output(1, 100 << 20)]);
    let e = vm.root().syscall(too_much_output).unwrap_err();
    assert!(e.to_string().contains("output buffers"), "{e}");
    let too_big = call(0, &[-1, 0, 0], vec![output(1, (256 << 20) + 1)]);
    assert!(vm
        .root()
        .syscall(too_big)
        .unwrap_err()
        .to_string()
        .contains("256 MiB"));
    // A large buffer that does not travel is fine: read(-1, buf, n) into 100 MiB.
    let mut big_input = input(1, Vec::new());
    big_input.len = 100 << 20;
    let (ret, _) = returned(
        vm.root()
            .syscall(call(0, &[-1, 0, 16], vec![big_input]))
            .unwrap(),
    );
    assert_eq!(ret, -9);
    assert!(vm.is_running());
    assert!(vm.root().syscall_args(GETPID, &[]).unwrap() > 0);
}

/// The spec from the issue: LTP dup205's `dup2` onto a high descriptor, then a syscall and a
/// command; and `close_range` over every descriptor in the middle of a file. Every case is in
/// the JUnit report; only the case that broke the executor fails, and it says how.
#[test]
fn specs_that_touch_every_descriptor_lose_no_case() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fds.yaml"),
        r#"
cases:
  - name: dup2 onto 1021
    syscall: dup2
    args: [0, 1021]
    expect: 1021
  - name: getpid after it
    syscall: getpid
    expect: ok
  - name: a command after it
    steps:
      - exec: "true"
  - name: close_range over everything
    syscall: close_range
    args: [3, 0xffffffff, 0]
    expect: 0
  - name: a case after the close_range
    syscall: close
    args: [-1]
    expect: EBADF
"#,
    )
    .unwrap();
    let junit = dir.path().join("out.xml");
    let started = std::time::Instant::now();
    let out = provium_in(dir.path())
        .args(["test", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    assert!(started.elapsed().as_secs() < 30, "{}", show(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 5, "{xml}");
    let case = |name: &str| {
        xml.split("<testcase ")
            .find(|c| c.starts_with(&format!("name=\"{name}\"")))
            .unwrap_or_else(|| panic!("no case {name}\n{xml}"))
            .to_string()
    };
    for ok in [
        "dup2 onto 1021",
        "getpid after it",
        "a command after it",
        "a case after the close_range",
    ] {
        let c = case(ok);
        assert!(
            !c.contains("<error") && !c.contains("<failure"),
            "{ok}\n{xml}"
        );
    }
    let broken = case("close_range over everything");
    assert!(
        broken.contains("<error") && broken.contains("the call closed descriptor"),
        "{xml}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}
