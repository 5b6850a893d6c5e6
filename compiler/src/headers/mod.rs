//! Reading kernel headers: `#define`s, syscall numbers, errnos.

pub mod constants;
pub mod defines;
pub mod enums;
pub mod tables;
