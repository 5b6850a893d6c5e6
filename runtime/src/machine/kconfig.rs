//! A kernel's configuration (`.config`, `config-<release>`): what Provium checks a kernel
//! against before it boots, and what `requires: {config: …}` reads.

use crate::machine::error::IoError;
use std::collections::BTreeMap;
use std::path::Path;

/// A kernel configuration: `CONFIG_X` → `y`, `m`, a value; absent or `is not set` means off.
#[derive(Debug, Clone, Default)]
pub struct Config {
    options: BTreeMap<String, String>,
}

impl Config {
    pub fn read(path: &Path) -> Result<Config, IoError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::reading(path, e))?;
        Ok(Config::parse(&text))
    }

    pub fn parse(text: &str) -> Config {
        let options = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("CONFIG_"))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        Config { options }
    }

    /// `y` or `m`.
    pub fn enabled(&self, option: &str) -> bool {
        matches!(self.value(option), Some("y" | "m"))
    }

    pub fn value(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
}
