//! Issue acceptance: the same raw-syscall checks against the real kernel, over both transports.

use crate::common::*;
use provium::machine::profile::TransportChoice;
use provium::protocol::{
    ExecCall, PointerPatch, Response, SyscallCall, SyscallOutcome, Termination,
};

const EBADF: i64 = 9;
const ENOENT: i64 = 2;
const ENOSYS: i64 = 38;
const EFAULT: i64 = 14;
const EEXIST: i64 = 17;

macro_rules! transport_tests {
    ($module:ident, $transport:expr) => {
        mod $module {
            use super::*;
            static VM: Shared = Shared::new($transport);

            #[test]
            fn hello_names_the_transport() {
                let vm = VM.get();
                assert_eq!(vm.info().transport, stringify!($module).replace('_', "-"));
            }
            #[test]
            fn getpid_is_positive() {
                assert!(VM.get().root().syscall_args(39, &[]).unwrap() > 0);
            }
            #[test]
            fn close_minus_one_is_ebadf() {
                assert_eq!(VM.get().root().syscall_args(3, &[-1]).unwrap(), -EBADF);
            }
            #[test]
            fn unknown_syscall_is_enosys() {
                assert_eq!(VM.get().root().syscall_args(1000, &[]).unwrap(), -ENOSYS);
            }
            #[test]
            fn uname_fills_its_buffer() {
                super::uname_fills_its_buffer(&mut VM.get());
            }
            #[test]
            fn uname_with_a_bad_pointer_is_efault() {
                assert_eq!(VM.get().root().syscall_args(63, &[1]).unwrap(), -EFAULT);
            }
            #[test]
            fn openat_of_a_missing_file_is_enoent() {
                super::openat_missing(&mut VM.get());
            }
            #[test]
            fn mkdirat_twice_is_eexist() {
                super::mkdirat_twice(&mut VM.get(), stringify!($module));
            }
            #[test]
            fn pipe_write_read_round_trip() {
                super::pipe_round_trip(&mut VM.get());
            }
            #[test]
            fn writev_through_pointer_patching() {
                super::writev_patched(&mut VM.get());
            }
            #[test]
            fn exec_uname_matches_hello() {
                super::exec_uname(&mut VM.get());
            }
            #[test]
            fn exit_group_is_reported_and_the_next_call_works() {
                super::exit_group_survived(&mut VM.get());
            }
            #[test]
            fn garbage_frames_leave_the_agent_serving() {
                super::garbage(&mut VM.get());
            }
        }
    };
}

transport_tests!(virtio_serial, TransportChoice::VirtioSerial);
transport_tests!(vsock, TransportChoice::Vsock);

fn uname_fills_its_buffer(vm: &mut provium::machine::vm::Vm) {
    let (ret, bufs) = returned(
        vm.root()
            .syscall(call(63, &[], vec![output(0, 390)]))
            .unwrap(),
    );
    assert_eq!(ret, 0);
    let buf = bufs[0].as_ref().expect("output buffer");
    assert!(
        buf.starts_with(b"Linux"),
        "uname buffer starts {:?}",
        &buf[..16]
    );
}

fn openat_missing(vm: &mut provium::machine::vm::Vm) {
    let c = call(257, &[AT_FDCWD, 0, 0], vec![input(1, cstr("/nonexistent"))]);
    assert_eq!(returned(vm.root().syscall(c).unwrap()).0, -ENOENT);
}

fn mkdirat_twice(vm: &mut provium::machine::vm::Vm, tag: &str) {
    let path = format!("/tmp/mkdir-twice-{tag}");
    let mk = || call(258, &[AT_FDCWD, 0, 0o755], vec![input(1, cstr(&path))]);
    assert_eq!(returned(vm.root().syscall(mk()).unwrap()).0, 0);
    assert_eq!(returned(vm.root().syscall(mk()).unwrap()).0, -EEXIST);
}

fn pipe_round_trip(vm: &mut provium::machine::vm::Vm) {
    let (ret, bufs) = returned(
        vm.root()
            .syscall(call(293, &[0, 0], vec![output(0, 8)]))
            .unwrap(),
    );
    assert_eq!(ret, 0);
    let fds = bufs[0].as_ref().unwrap();
    let rfd = i32::from_le_bytes(fds[0..4].try_into().unwrap()) as i64;
    let wfd = i32::from_le_bytes(fds[4..8].try_into().unwrap()) as i64;
    let msg = b"provium\x00\x01\x02".to_vec();
    let n = msg.len() as i64;
    let (ret, _) = returned(
        vm.root()
            .syscall(call(1, &[wfd, 0, n], vec![input(1, msg.clone())]))
            .unwrap(),
    );
    assert_eq!(ret, n);
    let (ret, bufs) = returned(
        vm.root()
            .syscall(call(0, &[rfd, 0, n], vec![output(1, n as u32)]))
            .unwrap(),
    );
    assert_eq!(ret, n);
    assert_eq!(bufs[0].as_deref(), Some(&msg[..]));
    for fd in [rfd, wfd] {
        assert_eq!(vm.root().syscall_args(3, &[fd]).unwrap(), 0);
    }
}

fn writev_patched(vm: &mut provium::machine::vm::Vm) {
    let (_, bufs) = returned(
        vm.root()
            .syscall(call(293, &[0, 0], vec![output(0, 8)]))
            .unwrap(),
    );
    let fds = bufs[0].as_ref().unwrap();
    let rfd = i32::from_le_bytes(fds[0..4].try_into().unwrap()) as i64;
    let wfd = i32::from_le_bytes(fds[4..8].try_into().unwrap()) as i64;
    // struct iovec[2] { void *base; size_t len; }: the bases are patched by the agent.
    let mut iov = vec![0u8; 32];
    iov[8..16].copy_from_slice(&5u64.to_le_bytes());
    iov[24..32].copy_from_slice(&6u64.to_le_bytes());
    let mut c = call(20, &[wfd, 0, 2], vec![input(1, iov)]);
    c.buffers.push(provium::protocol::Buffer {
        arg: None,
        data: b"hello".to_vec(),
        len: 5,
        output: false,
    });
    c.buffers.push(provium::protocol::Buffer {
        arg: None,
        data: b" world".to_vec(),
        len: 6,
        output: false,
    });
    c.patches = vec![
        PointerPatch {
            buffer: 0,
            offset: 0,
            target: 1,
        },
        PointerPatch {
            buffer: 0,
            offset: 16,
            target: 2,
        },
    ];
    assert_eq!(returned(vm.root().syscall(c).unwrap()).0, 11);
    let (ret, bufs) = returned(
        vm.root()
            .syscall(call(0, &[rfd, 0, 11], vec![output(1, 11)]))
            .unwrap(),
    );
    assert_eq!(ret, 11);
    assert_eq!(bufs[0].as_deref(), Some(&b"hello world"[..]));
    vm.root().syscall_args(3, &[rfd]).unwrap();
    vm.root().syscall_args(3, &[wfd]).unwrap();
}

fn exec_uname(vm: &mut provium::machine::vm::Vm) {
    let r = vm
        .root()
        .exec(ExecCall {
            argv: vec!["uname".into(), "-r".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.termination, Some(Termination::Exited(0)));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        vm.hello().release
    );
}

fn exit_group_survived(vm: &mut provium::machine::vm::Vm) {
    let before = vm.root().syscall_args(39, &[]).unwrap();
    let died = vm
        .root()
        .syscall(SyscallCall {
            nr: 231,
            args: [3, 0, 0, 0, 0, 0],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(died, SyscallOutcome::ExecutorDied(Termination::Exited(3)));
    let after = vm.root().syscall_args(39, &[]).unwrap();
    assert!(
        after > 0 && after != before,
        "a new executor serves ({before} -> {after})"
    );
}

fn garbage(vm: &mut provium::machine::vm::Vm) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..100 {
        let len = (x % 200) as usize + 1;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        match vm.send_raw_frame(&junk).unwrap() {
            Response::Error(_) => {}
            // A few random payloads happen to decode as a valid request (a ping, say).
            other => eprintln!("garbage frame {i} decoded as a request: {other:?}"),
        }
    }
    assert_eq!(vm.root().syscall_args(3, &[-1]).unwrap(), -EBADF);
}
