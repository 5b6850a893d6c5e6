//! Provium's compiler: YAML specs to Lua chunks, and kernel header parsing.

pub mod expr;
pub mod headers;
pub mod linux;
