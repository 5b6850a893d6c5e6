//! Provium's host runtime: it boots kernels in QEMU, talks to the guest agent, and runs tests.
//!
//! The layers follow the data, each using only the ones before it (see docs/architecture.md):
//!
//! - [`event`]: the run's vocabulary (test and file reports, the [`event::RunEvent`] stream);
//!   it depends on nothing, and every layer may use it;
//! - [`machine`]: kernels, initramfs, QEMU, transports, the agent client and [`machine::vm::Vm`];
//! - [`fixture`]: booted, prepared VMs saved once and resumed by the files that use them;
//! - [`lua`]: the Provium Lua API and the running of one test file;
//! - [`run`]: finding, planning and scheduling files, and the events of a run;
//! - [`report`]: the reporters, each a consumer of events;
//! - [`cli`]: the `provium` command.

pub mod cli;
pub mod event;
pub mod fixture;
pub mod lua;
pub mod machine;
pub mod report;
pub mod run;

pub use provium_agent::protocol;
