//! Transports between the host and the agent, behind one trait.
//!
//! - [`serial::VirtioSerial`]: a named virtserialport backed by a host unix socket. Works on
//!   every host and kernel with `virtio_console`, is the fastest under TCG (about 180 µs per
//!   round trip), and survives snapshots.
//! - [`vsock::Vsock`]: AF_VSOCK. Through the kernel's `/dev/vhost-vsock` where it is usable,
//!   otherwise through the userspace vhost-user backend `vhost-device-vsock` with guest memory
//!   shared over a memfd.
//!
//! The guest always connects to the host (QEMU's chardev connects to the host's socket, the
//! agent connects to CID 2), so nothing the agent sends early can be lost.

pub mod connection;
pub mod serial;
pub mod vsock;

pub use connection::{Connection, TransportError};

use crate::machine::error::{IoContext, IoError};
use crate::machine::qemu::MachineKind;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    VirtioSerial,
    Vsock,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::VirtioSerial => "virtio-serial",
            TransportKind::Vsock => "vsock",
        }
    }

    /// Kernel modules the guest needs for this transport (dependencies are resolved later).
    pub fn guest_modules(self) -> &'static [&'static str] {
        match self {
            TransportKind::VirtioSerial => &["virtio_console"],
            TransportKind::Vsock => &["vmw_vsock_virtio_transport"],
        }
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transport, prepared before QEMU starts and connected once it runs.
pub trait Transport: Send {
    fn kind(&self) -> TransportKind;

    /// QEMU arguments that add the device.
    fn qemu_args(&self, machine: MachineKind) -> Vec<String>;

    /// `provium.*` kernel arguments that tell the agent where to look.
    fn kernel_args(&self) -> Vec<String>;

    /// The listener of the port on which the host asks the guest for a task dump, if this
    /// transport has one.
    fn dump_port(&self) -> Option<std::os::unix::net::UnixListener> {
        None
    }

    /// Whether guest RAM must be a shared memfd (vhost-user backends map it).
    fn needs_shared_memory(&self) -> bool {
        false
    }

    /// Waits for the guest side to connect. `alive` is polled between short waits and returns
    /// an error when QEMU has exited, so a dead VM never costs the whole timeout.
    fn accept(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Result<(), QemuExited>,
    ) -> Result<Connection, AcceptError>;
}

/// QEMU is gone (what `alive` answers while a transport waits for the guest).
#[derive(Debug, thiserror::Error)]
#[error("QEMU exited {when} ({status})")]
pub struct QemuExited {
    pub when: &'static str,
    pub status: std::process::ExitStatus,
}

/// Why the host side of a transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(
        "vsock needs /dev/vhost-vsock or the vhost-device-vsock backend: `modprobe \
         vhost_vsock`, or `cargo install vhost-device-vsock`"
    )]
    NoVsockBackend,
    #[error("vhost-device-vsock exited ({status}) before listening:\n{log}")]
    BackendExited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("vhost-device-vsock did not create its socket within 10 s")]
    BackendSilent,
}

/// Why the guest's agent did not connect.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    QemuExited(#[from] QemuExited),
    #[error("timed out waiting for the {0} connection")]
    TimedOut(&'static str),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Prepares a transport of `kind` in the VM's run directory.
pub fn prepare(kind: TransportKind, run_dir: &Path) -> Result<Box<dyn Transport>, PrepareError> {
    Ok(match kind {
        TransportKind::VirtioSerial => Box::new(serial::VirtioSerial::listen(run_dir)?),
        TransportKind::Vsock => Box::new(vsock::Vsock::prepare(run_dir)?),
    })
}

/// Accepts on a nonblocking unix listener in slices, checking `alive` between them.
pub(crate) fn accept_unix(
    listener: &std::os::unix::net::UnixListener,
    deadline: Instant,
    alive: &mut dyn FnMut() -> Result<(), QemuExited>,
    what: &'static str,
) -> Result<std::os::unix::net::UnixStream, AcceptError> {
    use std::os::fd::AsRawFd;
    let accepting = || format!("accepting the {what} connection");
    listener.set_nonblocking(true).io_context(accepting)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).io_context(accepting)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(IoError::new(accepting(), e).into()),
        }
        alive()?;
        let slice = (Instant::now() + std::time::Duration::from_millis(50)).min(deadline);
        match connection::wait(listener.as_raw_fd(), libc::POLLIN, Some(slice)) {
            Ok(()) => {}
            Err(TransportError::TimedOut) if Instant::now() < deadline => {}
            Err(TransportError::TimedOut) => return Err(AcceptError::TimedOut(what)),
            Err(e) => return Err(AcceptError::Transport(e)),
        }
    }
}
