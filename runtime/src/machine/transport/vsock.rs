//! vsock: the agent connects to the host (CID 2) on a port given on the kernel command line.
//!
//! Two host back ends:
//! - the kernel's `vhost-vsock` (`/dev/vhost-vsock`): QEMU gets a unique guest CID and the host
//!   listens with an AF_VSOCK socket on a port unique to the VM;
//! - the userspace vhost-user device `vhost-device-vsock` (crates.io), one per VM, where the
//!   kernel device is missing. Guest connections to port P arrive on the host as unix socket
//!   connections to `<uds-path>_P`. It maps guest memory, so RAM must be a shared memfd.

use super::{accept_unix, Connection, Transport, TransportKind};
use super::{AcceptError, PrepareError, QemuExited};
use crate::machine::cleanup::Supervised;
use crate::machine::error::{IoContext, IoError};
use crate::machine::qemu::MachineKind;
use provium_agent::protocol::DEFAULT_VSOCK_PORT;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which vsock implementation this host offers, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    UserSpace(PathBuf),
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::Kernel => "kernel vhost-vsock (/dev/vhost-vsock)".into(),
            Backend::UserSpace(p) => format!("vhost-user backend {}", p.display()),
        }
    }
}

/// The kernel device when it opens read-write, else `vhost-device-vsock` on PATH (or
/// `PROVIUM_VHOST_VSOCK`), else none.
pub fn detect_backend() -> Option<Backend> {
    if std::env::var_os("PROVIUM_VSOCK_FORCE_USERSPACE").is_none()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/vhost-vsock")
            .is_ok()
    {
        return Some(Backend::Kernel);
    }
    user_backend_binary().map(Backend::UserSpace)
}

fn user_backend_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROVIUM_VHOST_VSOCK").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Ok(p) = which::which("vhost-device-vsock") {
        return Some(p);
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?
        .join("bin/vhost-device-vsock");
    cargo_bin.is_file().then_some(cargo_bin)
}

enum Mode {
    Kernel {
        cid: u32,
        listener: ::vsock::VsockListener,
    },
    UserSpace {
        _daemon: Supervised,
        vhost_socket: PathBuf,
        listener: UnixListener,
    },
}

pub struct Vsock {
    mode: Mode,
    port: u32,
}

impl Vsock {
    pub fn prepare(run_dir: &Path) -> Result<Vsock, PrepareError> {
        match detect_backend() {
            Some(Backend::Kernel) => Ok(Self::kernel()?),
            Some(Backend::UserSpace(bin)) => Self::user_space(&bin, run_dir),
            None => Err(PrepareError::NoVsockBackend),
        }
    }

    fn kernel() -> Result<Vsock, IoError> {
        // Unique per VM so that concurrent VMs never share a CID or a listening port.
        let unique = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(next_sequence());
        let cid = 3 + unique % 0x3fff_0000;
        let port = 20_000 + unique % 40_000;
        let listener = ::vsock::VsockListener::bind_with_cid_port(::vsock::VMADDR_CID_ANY, port)
            .io_context(|| format!("listening on vsock port {port}"))?;
        Ok(Vsock {
            mode: Mode::Kernel { cid, listener },
            port,
        })
    }

    fn user_space(bin: &Path, run_dir: &Path) -> Result<Vsock, PrepareError> {
        let vhost_socket = run_dir.join("vhost-vsock.sock");
        let uds = run_dir.join("vsock.sock");
        let port = DEFAULT_VSOCK_PORT;
        // Listen before the guest can possibly connect.
        let listen_path = PathBuf::from(format!("{}_{port}", uds.display()));
        let listener = UnixListener::bind(&listen_path)
            .io_context(|| format!("binding {}", listen_path.display()))?;
        let log_path = run_dir.join("vhost-vsock.log");
        let creating = || format!("creating {}", log_path.display());
        let log = std::fs::File::create(&log_path).io_context(creating)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--guest-cid")
            .arg("3")
            .arg("--socket")
            .arg(&vhost_socket)
            .arg("--uds-path")
            .arg(&uds)
            .stdin(Stdio::null())
            .stdout(log.try_clone().io_context(creating)?)
            .stderr(log);
        let mut daemon = Supervised::spawn(cmd, "vhost-device-vsock")
            .io_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vhost_socket.exists() {
            if let Some(status) = daemon.try_wait() {
                let log =
                    std::fs::read_to_string(run_dir.join("vhost-vsock.log")).unwrap_or_default();
                return Err(PrepareError::BackendExited { status, log });
            }
            if Instant::now() > deadline {
                return Err(PrepareError::BackendSilent);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Vsock {
            mode: Mode::UserSpace {
                _daemon: daemon,
                vhost_socket,
                listener,
            },
            port,
        })
    }
}

fn next_sequence() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Transport for Vsock {
    fn kind(&self) -> TransportKind {
        TransportKind::Vsock
    }

    fn qemu_args(&self, machine: MachineKind) -> Vec<String> {
        let mmio = machine.mmio();
        match &self.mode {
            Mode::Kernel { cid, .. } => vec![
                "-device".into(),
                format!(
                    "{},guest-cid={cid}",
                    if mmio {
                        "vhost-vsock-device"
                    } else {
                        "vhost-vsock-pci"
                    }
                ),
            ],
            Mode::UserSpace { vhost_socket, .. } => vec![
                "-chardev".into(),
                format!("socket,id=vvsock,path={}", vhost_socket.display()),
                "-device".into(),
                format!(
                    "{},chardev=vvsock",
                    if mmio {
                        "vhost-user-vsock-device"
                    } else {
                        "vhost-user-vsock-pci"
                    }
                ),
            ],
        }
    }

    fn kernel_args(&self) -> Vec<String> {
        vec![
            "provium.transport=vsock".into(),
            format!("provium.port={}", self.port),
        ]
    }

    fn needs_shared_memory(&self) -> bool {
        matches!(self.mode, Mode::UserSpace { .. })
    }

    fn accept(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Result<(), QemuExited>,
    ) -> Result<Connection, AcceptError> {
        let accepting = || "accepting the vsock connection".to_string();
        match &self.mode {
            Mode::UserSpace { listener, .. } => {
                let stream = accept_unix(listener, deadline, alive, "vsock")?;
                Ok(Connection::new(Box::new(stream)).io_context(accepting)?)
            }
            Mode::Kernel { cid, listener } => {
                listener.set_nonblocking(true).io_context(accepting)?;
                loop {
                    match listener.accept() {
                        Ok((stream, addr)) if addr.cid() == *cid => {
                            stream.set_nonblocking(false).io_context(accepting)?;
                            return Ok(Connection::new(Box::new(stream)).io_context(accepting)?);
                        }
                        // Another guest found our port: not ours, drop it.
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            alive()?;
                            if Instant::now() > deadline {
                                return Err(AcceptError::TimedOut("vsock"));
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => return Err(IoError::new(accepting(), e).into()),
                    }
                }
            }
        }
    }
}
