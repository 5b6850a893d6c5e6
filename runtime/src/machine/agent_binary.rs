//! The guest agent binary. It is built by `build.rs` as a static executable and embedded here,
//! so a `provium` binary always carries an agent that speaks its protocol. `PROVIUM_AGENT`
//! overrides it (for agent development).

use crate::machine::error::{IoContext, IoError};
use std::borrow::Cow;

static EMBEDDED: &[u8] = include_bytes!(env!("PROVIUM_AGENT_PATH"));

pub fn bytes() -> Result<Cow<'static, [u8]>, IoError> {
    match std::env::var_os("PROVIUM_AGENT").filter(|v| !v.is_empty()) {
        Some(path) => Ok(Cow::Owned(std::fs::read(&path).io_context(|| {
            format!(
                "reading PROVIUM_AGENT={}",
                std::path::Path::new(&path).display()
            )
        })?)),
        None => Ok(Cow::Borrowed(EMBEDDED)),
    }
}

/// The path the embedded agent was built at (for host-side tests that run it with `--stdio`).
pub fn build_path() -> &'static str {
    env!("PROVIUM_AGENT_PATH")
}
