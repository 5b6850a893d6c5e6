//! The machine layer: from a profile to a running VM with a ready agent, and back to nothing.
//!
//! A [`profile`] names a kernel; [`vm::plan`] turns it into a [`qemu`] command line with an
//! [`initramfs`]; a [`transport`] carries the agent's [`protocol`](provium_agent::protocol)
//! through the [`client`]; [`vm::Vm`] is the API. [`cleanup`] makes sure no process or
//! directory outlives the host process.

pub mod accel;
pub mod agent_binary;
pub mod cache_lease;
pub mod cleanup;
pub mod client;
pub mod content_hash;
pub mod error;
pub mod initramfs;
pub mod kconfig;
pub mod kernel;
pub mod kernel_build;
pub mod kernels;
pub mod modules;
pub mod notice;
pub mod paths;
pub mod profile;
pub mod qemu;
pub mod qmp;
pub mod registry;
pub mod requirements;
pub mod signals;
pub mod sync;
pub mod tools;
pub mod transport;
pub mod tsc;
pub mod vm;
