//! Framing: a little-endian `u32` length, then that many bytes of postcard; frames over
//! [`MAX_FRAME`] are refused by both sides, and the guest's first frame is checked as a
//! [`Hello`] of this protocol version.

use super::{Hello, HelloPrefix, HELLO_MAGIC, MAX_FRAME, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Errors reading or writing frames.
#[derive(Debug)]
pub enum FrameError {
    /// Reading or writing the stream failed (the peer is gone).
    Io(io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME`].
    TooLarge(usize),
    /// The payload did not decode as the expected message.
    Decode(postcard::Error),
    /// The message could not be encoded.
    Encode(postcard::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "transport error: {e}"),
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            FrameError::Decode(e) => write!(f, "undecodable message: {e}"),
            FrameError::Encode(e) => write!(f, "cannot encode message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Decode(e) | FrameError::Encode(e) => Some(e),
            FrameError::TooLarge(_) => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Encodes a message into a complete frame (length prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = postcard::to_extend(msg, vec![0u8; 4]).map_err(FrameError::Encode)?;
    let len = out.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Writes one message as a frame.
pub fn write_message<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Reads the next frame's payload. A frame over the limit is consumed and discarded, so that the
/// stream stays in step, and reported as [`FrameError::TooLarge`].
pub fn read_frame<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        io::copy(&mut r.take(len as u64), &mut io::sink())?;
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(payload)
}

/// Decodes a payload; trailing bytes are an error, so that a corrupted frame is not half-read.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(value)
}

/// Reads and decodes one message.
pub fn read_message<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<T, FrameError> {
    let payload = read_frame(r)?;
    decode(&payload)
}

/// Checks a hello payload: magic first, then the version, then the rest.
pub fn decode_hello(payload: &[u8]) -> Result<Hello, HelloError> {
    let (prefix, _) = postcard::take_from_bytes::<HelloPrefix>(payload)
        .map_err(|e| HelloError::NotAnAgent(e.to_string()))?;
    if prefix.magic != HELLO_MAGIC {
        return Err(HelloError::NotAnAgent(format!(
            "bad magic {:02x?}",
            prefix.magic
        )));
    }
    if prefix.protocol != PROTOCOL_VERSION {
        return Err(HelloError::VersionMismatch {
            agent: prefix.protocol,
            host: PROTOCOL_VERSION,
        });
    }
    decode(payload).map_err(|e| HelloError::NotAnAgent(e.to_string()))
}

/// Why a hello was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The peer did not greet like a Provium agent.
    NotAnAgent(String),
    /// The agent speaks another protocol version.
    VersionMismatch {
        /// The agent's version.
        agent: u32,
        /// This host's version.
        host: u32,
    },
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::NotAnAgent(why) => {
                write!(f, "the guest did not greet like a Provium agent ({why})")
            }
            HelloError::VersionMismatch { agent, host } => write!(
                f,
                "the guest agent speaks protocol version {agent}, this host speaks {host}: \
                 rebuild the agent and the host from the same release"
            ),
        }
    }
}

impl std::error::Error for HelloError {}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn hello(protocol: u32) -> Hello {
        Hello {
            magic: HELLO_MAGIC,
            protocol,
            agent_version: "0.1.0".into(),
            release: "6.1.0".into(),
            machine: "x86_64".into(),
            transport: "virtio-serial".into(),
            ready_us: 1,
            module_errors: vec![],
            timeline: vec![],
        }
    }

    #[test]
    fn frames_round_trip() {
        let req = Envelope {
            id: 7,
            body: Request::Run {
                worker: 0,
                op: Operation::Syscall(SyscallCall {
                    nr: 39,
                    ..Default::default()
                }),
            },
        };
        let frame = encode_frame(&req).unwrap();
        assert_eq!(
            u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        let back: Envelope<Request> = read_message(&mut &frame[..]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_frame_is_skipped_and_reported() {
        let mut bytes = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        bytes.resize(4 + MAX_FRAME + 1, 0xaa);
        bytes.extend(
            encode_frame(&Envelope {
                id: 1,
                body: Request::Ping,
            })
            .unwrap(),
        );
        let mut r = &bytes[..];
        assert!(matches!(read_frame(&mut r), Err(FrameError::TooLarge(_))));
        let next: Envelope<Request> = read_message(&mut r).unwrap();
        assert_eq!(next.id, 1);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut payload = postcard::to_allocvec(&Envelope {
            id: 1,
            body: Request::Ping,
        })
        .unwrap();
        payload.push(0);
        assert!(decode::<Envelope<Request>>(&payload).is_err());
    }

    #[test]
    fn hello_version_mismatch_is_named() {
        let payload = postcard::to_allocvec(&hello(PROTOCOL_VERSION + 1)).unwrap();
        let err = decode_hello(&payload).unwrap_err();
        assert!(matches!(err, HelloError::VersionMismatch { .. }));
        assert!(err.to_string().contains("protocol version"));
    }

    #[test]
    fn hello_from_something_else_is_refused() {
        assert!(matches!(
            decode_hello(b"Linux version 6.1"),
            Err(HelloError::NotAnAgent(_))
        ));
        let ok = postcard::to_allocvec(&hello(PROTOCOL_VERSION)).unwrap();
        assert_eq!(decode_hello(&ok).unwrap().release, "6.1.0");
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: every prefix and a range of byte patterns.
        let good = encode_frame(&Envelope {
            id: 3,
            body: Response::Syscall(SyscallOutcome::Returned {
                ret: -9,
                buffers: vec![Some(vec![1, 2, 3]), None],
            }),
        })
        .unwrap();
        for cut in 0..good.len() {
            let _ = read_message::<_, Envelope<Response>>(&mut &good[..cut]);
            let _ = decode::<Envelope<Response>>(&good[4..cut.max(4)]);
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut junk = vec![0u8; (x % 64) as usize];
            for b in junk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let _ = decode::<Envelope<Response>>(&junk);
            let _ = decode_hello(&junk);
        }
    }
}
