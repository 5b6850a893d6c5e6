//! Reading kernel headers: `#define`s, syscall numbers, errnos.

pub mod constants;
pub mod cparse;
pub mod defines;
pub mod enums;
pub mod signatures;
pub mod tables;
pub mod tree;

#[cfg(test)]
mod table_checks;
