//! virtio-serial: a virtserialport named `org.provium.agent`, backed by a unix socket on which
//! the host listens and QEMU connects.

use super::{accept_unix, Connection, Transport, TransportKind};
use crate::machine::qemu::MachineKind;
use provium_agent::protocol::SERIAL_PORT_NAME;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct VirtioSerial {
    socket: PathBuf,
    listener: UnixListener,
}

impl VirtioSerial {
    pub fn listen(run_dir: &Path) -> anyhow::Result<VirtioSerial> {
        let socket = run_dir.join("agent.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", socket.display()))?;
        Ok(VirtioSerial { socket, listener })
    }
}

impl Transport for VirtioSerial {
    fn kind(&self) -> TransportKind {
        TransportKind::VirtioSerial
    }

    fn qemu_args(&self, machine: MachineKind) -> Vec<String> {
        let bus = match machine {
            MachineKind::Microvm => "virtio-serial-device",
            MachineKind::Q35 | MachineKind::Pc => "virtio-serial-pci",
        };
        vec![
            "-chardev".into(),
            format!("socket,id=agent,path={}", self.socket.display()),
            "-device".into(),
            format!("{bus},id=vs0,max_ports=2"),
            "-device".into(),
            format!("virtserialport,bus=vs0.0,nr=1,chardev=agent,name={SERIAL_PORT_NAME}"),
        ]
    }

    fn kernel_args(&self) -> Vec<String> {
        vec!["provium.transport=virtio-serial".into()]
    }

    fn accept(
        &mut self,
        deadline: Instant,
        alive: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<Connection> {
        let stream = accept_unix(&self.listener, deadline, alive, "virtio-serial")?;
        Ok(Connection::new(Box::new(stream))?)
    }
}
