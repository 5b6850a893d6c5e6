//! Kernel headers for specs that name them (`headers: [linux/openat2.h]`).

use provium_compiler::HeaderProvider;
use std::sync::Arc;

/// The provider specs use, if kernel headers are available on this host.
pub fn provider() -> Option<Arc<dyn HeaderProvider>> {
    None
}
