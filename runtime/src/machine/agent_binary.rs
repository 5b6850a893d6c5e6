//! The guest agents. Each is built by `build.rs` as a static executable and embedded here, so a
//! `provium` binary always carries agents that speak its protocol: the host's own (x86_64), and
//! aarch64's when Debian's arm64 toolchain was there at build time. `PROVIUM_AGENT` (and
//! `PROVIUM_AGENT_AARCH64`) override them (for agent development).

use crate::machine::error::{IoContext, IoError};
use provium_compiler::linux::Arch;
use std::borrow::Cow;

static EMBEDDED: &[u8] = include_bytes!(env!("PROVIUM_AGENT_PATH"));
static EMBEDDED_AARCH64: &[u8] = include_bytes!(env!("PROVIUM_AGENT_AARCH64_PATH"));

/// The x86_64 agent.
pub fn bytes() -> Result<Cow<'static, [u8]>, IoError> {
    from_env("PROVIUM_AGENT", EMBEDDED)
}

/// The agent for guests of `arch`, or why this build has none.
pub fn bytes_for(arch: Arch) -> Result<Cow<'static, [u8]>, AgentMissing> {
    match arch {
        Arch::X86_64 => bytes().map_err(AgentMissing::Io),
        Arch::Aarch64 => {
            let agent =
                from_env("PROVIUM_AGENT_AARCH64", EMBEDDED_AARCH64).map_err(AgentMissing::Io)?;
            if agent.is_empty() {
                return Err(AgentMissing::NotBuilt {
                    arch,
                    why: env!("PROVIUM_AGENT_AARCH64_MISSING"),
                });
            }
            Ok(agent)
        }
    }
}

/// Why there is no agent for an architecture.
#[derive(Debug, thiserror::Error)]
pub enum AgentMissing {
    #[error(transparent)]
    Io(IoError),
    #[error(
        "this provium was built without the {arch} guest agent ({why}); run `scripts/setup \
         --arch arm64` and build again"
    )]
    NotBuilt { arch: Arch, why: &'static str },
}

fn from_env(var: &str, embedded: &'static [u8]) -> Result<Cow<'static, [u8]>, IoError> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => Ok(Cow::Owned(std::fs::read(&path).io_context(|| {
            format!("reading {var}={}", std::path::Path::new(&path).display())
        })?)),
        None => Ok(Cow::Borrowed(embedded)),
    }
}

/// The path the embedded agent was built at (for host-side tests that run it with `--stdio`).
pub fn build_path() -> &'static str {
    env!("PROVIUM_AGENT_PATH")
}
