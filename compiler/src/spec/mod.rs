//! The spec as written in YAML.

pub mod node;
pub mod types;
