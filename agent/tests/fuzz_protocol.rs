//! Fuzzes the protocol decoder on the stable toolchain: mutations of valid frames of every
//! message kind. Whatever arrives (from a guest a test may have corrupted, or from the host),
//! decoding ends without a panic and without allocating past the frame limit.
//! `PROVIUM_FUZZ_SECS` fuzzes for longer (see compiler/tests/fuzz_spec.rs).

#[path = "../../compiler/tests/fuzz/mutate.rs"]
mod mutate;

use provium_agent::protocol::*;
use std::io::Cursor;

fn frames() -> Vec<Vec<u8>> {
    let call = SyscallCall {
        nr: 257,
        args: [-100, 0, 0, 0o644, 0, 0],
        buffers: vec![
            Buffer {
                arg: Some(1),
                data: b"/tmp/x\0".to_vec(),
                len: 7,
                output: false,
            },
            Buffer {
                arg: None,
                data: vec![],
                len: 64,
                output: true,
            },
        ],
        patches: vec![PointerPatch {
            buffer: 0,
            offset: 0,
            target: 1,
        }],
        timeout_ms: 100,
        abi: provium_agent::protocol::Abi::I386,
    };
    let exec = ExecCall {
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        shell: false,
        env: vec![("A".into(), "b".into())],
        cwd: Some("/".into()),
        stdin: b"in".to_vec(),
        timeout_ms: 5,
    };
    let requests = [
        Request::Ping,
        Request::Run {
            worker: 0,
            op: Operation::Syscall(call.clone()),
        },
        Request::Run {
            worker: 3,
            op: Operation::Batch(vec![call.clone(), call]),
        },
        Request::Run {
            worker: 0,
            op: Operation::Exec(exec.clone()),
        },
        Request::Run {
            worker: 0,
            op: Operation::WriteFile {
                path: "/tmp/f".into(),
                data: vec![1, 2, 3],
                mode: 0o600,
                append: true,
            },
        },
        Request::Run {
            worker: 1,
            op: Operation::Background(exec),
        },
        Request::Spawn(Credentials {
            uid: 1000,
            gid: 1000,
            groups: vec![1, 2],
            caps: vec![12],
            euid: Some(0),
            egid: None,
            setup: provium_agent::protocol::ProcessSetup {
                umask: Some(0o077),
                cwd: Some("/tmp".into()),
                rlimits: vec![(7, 16, 16)],
                catch: vec![(14, false), (10, true)],
                timer: Some((14, 50_000)),
            },
            descriptors: provium_agent::protocol::Descriptors::Inherit,
            session: provium_agent::protocol::SessionPlace::Member,
        }),
        Request::SyncClock {
            unix_ns: 1,
            seed: vec![7; 32],
        },
        Request::Shutdown,
    ];
    let responses = [
        Response::Pong,
        Response::Syscall(SyscallOutcome::Returned {
            ret: -9,
            buffers: vec![None, Some(vec![0; 16])],
        }),
        Response::Batch(vec![
            SyscallOutcome::ExecutorDied(Termination::Signaled(11)),
            SyscallOutcome::TimedOut,
            SyscallOutcome::Rejected("x".into()),
            SyscallOutcome::ExecutorBroken("closed 4094".into()),
        ]),
        Response::Exec(ExecResult {
            termination: Some(Termination::Exited(3)),
            stdout: b"out".to_vec(),
            stderr: b"err".to_vec(),
            truncated: false,
        }),
        Response::Error(AgentError {
            kind: ErrorKind::Os(2),
            message: "no".into(),
        }),
        Response::Dmesg("log".into()),
    ];
    let hello = Hello {
        magic: HELLO_MAGIC,
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0".into(),
        release: "6.1".into(),
        machine: "x86_64".into(),
        transport: "virtio-serial".into(),
        ready_us: 1,
        module_errors: vec!["m: ENOENT".into()],
        timeline: vec![("init".into(), 1)],
    };
    let mut out = vec![encode_frame(&hello).unwrap()];
    for (id, r) in requests.iter().enumerate() {
        out.push(
            encode_frame(&Envelope {
                id: id as u64,
                body: r,
            })
            .unwrap(),
        );
    }
    for (id, r) in responses.iter().enumerate() {
        out.push(
            encode_frame(&Envelope {
                id: id as u64,
                body: r,
            })
            .unwrap(),
        );
    }
    out
}

#[test]
fn the_protocol_decoder_survives_mutated_frames() {
    let corpus = frames();
    let crashers =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-crashers"));
    // Lengths near the limits, and postcard's varint prefixes.
    let tokens: &[&[u8]] = &[
        &[0xff, 0xff, 0xff, 0xff],
        &[0x00, 0x00, 0x00, 0x04],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        &[0x00],
        &[0x01],
        &[0x7f],
    ];
    mutate::fuzz("protocol", &corpus, &crashers, tokens, 20_000, |input| {
        // A frame read from a stream, then its payload decoded as each message the two sides
        // read; and the payload on its own.
        let mut stream = Cursor::new(input);
        while let Ok(payload) = read_frame(&mut stream) {
            decode_all(&payload);
        }
        decode_all(input.get(4..).unwrap_or(&[]));
        Ok(())
    });
}

fn decode_all(payload: &[u8]) {
    let _ = decode_hello(payload);
    let _ = decode::<Envelope<Request>>(payload);
    let _ = decode::<Envelope<Response>>(payload);
    let _ = decode::<Operation>(payload);
    let _ = decode::<Response>(payload);
    let _ = decode::<Result<(), String>>(payload);
}
