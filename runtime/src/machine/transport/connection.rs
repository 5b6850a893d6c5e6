//! A framed, deadline-aware byte stream to the agent.
//!
//! Reads are buffered so that a receive that times out keeps what has arrived: the boot loop
//! waits for the hello in short slices while it watches QEMU. Every length prefix is checked
//! against the protocol's limit before anything is allocated.

use provium_agent::protocol::MAX_FRAME;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// Anything the agent's bytes can arrive on.
pub trait Stream: Read + Write + AsRawFd + Send {}
impl<T: Read + Write + AsRawFd + Send> Stream for T {}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the guest closed the connection")]
    Closed,
    #[error("timed out waiting for the guest")]
    TimedOut,
    #[error("the guest sent a frame of {0} bytes, over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("transport I/O error: {0}")]
    Io(#[from] io::Error),
}

pub struct Connection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const READ_CHUNK: usize = 256 << 10;

impl Connection {
    pub fn new(stream: Box<dyn Stream>) -> io::Result<Connection> {
        set_nonblocking(stream.as_raw_fd())?;
        Ok(Connection {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Sends a complete frame (length prefix included).
    pub fn send(&mut self, frame: &[u8], deadline: Option<Instant>) -> Result<(), TransportError> {
        let mut sent = 0;
        while sent < frame.len() {
            match self.stream.write(&frame[sent..]) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(self.raw_fd(), libc::POLLOUT, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(TransportError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Receives the next frame's payload. On a timeout, bytes already read stay buffered.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Result<Vec<u8>, TransportError> {
        loop {
            if let Some(payload) = self.take_frame()? {
                return Ok(payload);
            }
            self.fill(deadline)?;
        }
    }

    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        let avail = self.end - self.start;
        if avail < 4 {
            return Ok(None);
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(prefix) as usize;
        if len > MAX_FRAME {
            // The stream cannot be trusted past this point.
            return Err(TransportError::TooLarge(len));
        }
        if avail < 4 + len {
            if self.buf.len() < 4 + len {
                self.compact();
                self.buf.resize(4 + len, 0);
            }
            return Ok(None);
        }
        let payload = self.buf[self.start + 4..self.start + 4 + len].to_vec();
        self.start += 4 + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_CHUNK {
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
        Ok(Some(payload))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        if self.end == self.buf.len() {
            self.compact();
            if self.end == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(self.raw_fd(), libc::POLLIN, deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(TransportError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for `events` on `fd` until `deadline`.
pub fn wait(
    fd: RawFd,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> Result<(), TransportError> {
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(TransportError::TimedOut);
                }
                // Round up so a sub-millisecond remainder does not spin.
                ((d - now).as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.into());
        }
        if ret > 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provium_agent::protocol::{encode_frame, Envelope, Request};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Connection::new(Box::new(a)).unwrap(), b)
    }

    #[test]
    fn partial_frames_survive_timeouts() {
        let (mut conn, mut peer) = pair();
        let frame = encode_frame(&Envelope {
            id: 9,
            body: Request::Ping,
        })
        .unwrap();
        peer.write_all(&frame[..3]).unwrap();
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert!(matches!(conn.recv(soon), Err(TransportError::TimedOut)));
        peer.write_all(&frame[3..]).unwrap();
        let payload = conn.recv(None).unwrap();
        assert_eq!(payload, frame[4..]);
    }

    #[test]
    fn oversized_length_is_refused_without_allocating() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(conn.recv(None), Err(TransportError::TooLarge(_))));
    }

    #[test]
    fn large_frames_and_back_to_back_frames() {
        let (mut conn, peer) = pair();
        let big = vec![7u8; 3 << 20];
        let mut frame = (big.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&big);
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.push(42);
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            peer.write_all(&frame).unwrap();
            peer
        });
        assert_eq!(conn.recv(None).unwrap().len(), 3 << 20);
        assert_eq!(conn.recv(None).unwrap(), [42]);
        drop(writer.join().unwrap());
        assert!(matches!(conn.recv(None), Err(TransportError::Closed)));
    }
}
