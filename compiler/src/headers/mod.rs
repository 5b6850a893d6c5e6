//! Reading kernel headers: `#define`s, syscall numbers, errnos.

pub mod defines;
pub mod tables;
