//! The spec as written in YAML.

pub mod node;
pub mod shapes;
pub mod types;
