//! Finding the transport to the host: a named virtio-serial port, or a vsock connection.

use super::sys;
use provium_agent::protocol::{DEFAULT_VSOCK_PORT, SERIAL_PORT_NAME};
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// How long the agent keeps looking for its transport before giving up and powering off.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Kind {
    VirtioSerial,
    Vsock { port: u32 },
}

impl Kind {
    pub fn from_settings(settings: &std::collections::HashMap<String, String>) -> Kind {
        match settings.get("transport").map(String::as_str) {
            Some("vsock") => Kind::Vsock {
                port: settings
                    .get("port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(DEFAULT_VSOCK_PORT),
            },
            _ => Kind::VirtioSerial,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::VirtioSerial => "virtio-serial",
            Kind::Vsock { .. } => "vsock",
        }
    }
}

pub fn connect(kind: &Kind) -> io::Result<File> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let attempt = match kind {
            Kind::VirtioSerial => open_serial_port(SERIAL_PORT_NAME),
            Kind::Vsock { port } => connect_vsock(*port),
        };
        match attempt {
            Ok(file) => return Ok(file),
            Err(e) if start.elapsed() > DISCOVERY_TIMEOUT => return Err(e),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// The port appears asynchronously after `virtio_console` binds; its name is in sysfs.
pub fn open_serial_port(wanted: &str) -> io::Result<File> {
    for entry in std::fs::read_dir("/sys/class/virtio-ports")? {
        let entry = entry?;
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == wanted {
            let dev = format!("/dev/{}", entry.file_name().to_string_lossy());
            return std::fs::OpenOptions::new().read(true).write(true).open(dev);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "agent port not present yet",
    ))
}

fn connect_vsock(port: u32) -> io::Result<File> {
    // SAFETY: plain socket creation.
    let fd = sys::cvt(unsafe {
        libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: we own the new descriptor; File closes it on every path.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain old data.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = libc::VMADDR_CID_HOST;
    addr.svm_port = port;
    // SAFETY: valid address of the right length.
    sys::cvt(unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_vm as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(file)
}
