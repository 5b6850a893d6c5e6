//! Provium's guest agent and the wire protocol it shares with the host.
//!
//! The library part is only the [`protocol`]: the host runtime depends on it with
//! `default-features = false`. The guest binary (`src/main.rs`, feature `guest`) runs as PID 1
//! inside the test VM.

#[warn(missing_docs)]
pub mod protocol;
