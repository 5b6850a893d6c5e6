//! virtio-serial: a virtserialport named `org.provium.agent`, backed by a unix socket on which
//! the host listens and QEMU connects; beside it the `org.provium.dump` port, on which the host
//! asks a hung VM for its tasks' stacks before killing it (see the agent's `dump` module).

use super::{accept_unix, AcceptError, Connection, QemuExited, Transport, TransportKind};
use crate::machine::error::{IoContext, IoError};
use crate::machine::qemu::MachineKind;
use provium_agent::protocol::{DUMP_PORT_NAME, SERIAL_PORT_NAME};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The virtio-serial bus's id: ports added later (`device_add`) name it as `vs0.0`.
pub const BUS: &str = "vs0";
/// The chardev of the console port on the host's terminal (`provium shell`), the guest's
/// `/dev/hvc0`: on a boot's command line, or hot-added to a resumed VM.
pub const TERMINAL_CHARDEV: &str = "terminal";

pub struct VirtioSerial {
    socket: PathBuf,
    listener: UnixListener,
    dump_socket: PathBuf,
    dump: UnixListener,
}

impl VirtioSerial {
    pub fn listen(run_dir: &Path) -> Result<VirtioSerial, IoError> {
        let bind = |name: &str| {
            let socket = run_dir.join(name);
            UnixListener::bind(&socket)
                .map(|l| (socket.clone(), l))
                .io_context(|| format!("binding {}", socket.display()))
        };
        let (socket, listener) = bind("agent.sock")?;
        // QEMU connects to it as it starts; the host accepts only when it needs a dump.
        let (dump_socket, dump) = bind("dump.sock")?;
        Ok(VirtioSerial {
            socket,
            listener,
            dump_socket,
            dump,
        })
    }
}

impl Transport for VirtioSerial {
    fn kind(&self) -> TransportKind {
        TransportKind::VirtioSerial
    }

    fn qemu_args(&self, machine: MachineKind) -> Vec<String> {
        let bus = if machine.mmio() {
            "virtio-serial-device"
        } else {
            "virtio-serial-pci"
        };
        vec![
            "-chardev".into(),
            format!("socket,id=agent,path={}", self.socket.display()),
            "-device".into(),
            format!("{bus},id={BUS},max_ports=3"),
            "-device".into(),
            format!("virtserialport,bus={BUS}.0,nr=1,chardev=agent,name={SERIAL_PORT_NAME}"),
            "-chardev".into(),
            format!("socket,id=dump,path={}", self.dump_socket.display()),
            "-device".into(),
            format!("virtserialport,bus={BUS}.0,nr=2,chardev=dump,name={DUMP_PORT_NAME}"),
        ]
    }

    fn kernel_args(&self) -> Vec<String> {
        vec!["provium.transport=virtio-serial".into()]
    }

    fn dump_port(&self) -> Option<UnixListener> {
        self.dump.try_clone().ok()
    }

    fn accept(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> Result<(), QemuExited>,
    ) -> Result<Connection, AcceptError> {
        let stream = accept_unix(&self.listener, deadline, alive, "virtio-serial")?;
        Ok(Connection::new(Box::new(stream))
            .io_context(|| "setting up the virtio-serial connection".into())?)
    }
}
