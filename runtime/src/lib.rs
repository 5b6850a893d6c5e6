//! Provium's host runtime: it boots kernels in QEMU, talks to the guest agent, and runs tests.
//!
//! The modules follow the data: a [`profile`] names a kernel; [`vm::plan`] turns it into a
//! [`qemu`] command line with an [`initramfs`]; a [`transport`] carries the agent's
//! [`protocol`](provium_agent::protocol) through the [`client`]; [`vm::Vm`] is the API.

pub mod accel;
pub mod agent_binary;
pub mod cleanup;
pub mod client;
pub mod fixture;
pub mod headers;
pub mod initramfs;
pub mod kernel;
pub mod lua;
pub mod modules;
pub mod paths;
pub mod profile;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod run;
pub mod specs;
pub mod suggest;
pub mod sync;
pub mod transport;
pub mod tsc;
pub mod vm;

pub use provium_agent::protocol;
pub mod bench;
pub mod cli;
