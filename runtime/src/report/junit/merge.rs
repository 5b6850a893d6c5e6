//! `provium junit merge`: the reports of shards as one.

use super::text;
use quick_junit::{Report, TestSuite};
use std::collections::BTreeMap;
use std::time::Duration;

/// The file a suite reports (its `file` property; older reports name suites by path).
fn suite_file(s: &TestSuite) -> String {
    let prop = |name: &str| {
        s.properties
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.value.to_string())
    };
    let file = prop("file").unwrap_or_else(|| s.name.to_string());
    match prop("kernel") {
        Some(k) => format!("{file} [{k}]"),
        None => file,
    }
}

/// Combines the reports of shards: suites of the same file (one file split over runs) are
/// joined, suites are sorted by file as one run orders them, and the run's time is the slowest
/// shard's (shards run side by side). Output is carried over byte for byte.
pub fn merge(inputs: &[std::path::PathBuf]) -> anyhow::Result<Report> {
    let mut suites: BTreeMap<(String, String), TestSuite> = BTreeMap::new();
    let mut time = Duration::ZERO;
    let mut timestamp = None;
    for path in inputs {
        let xml = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let shard = Report::deserialize(text::protect_xml(&xml).as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: not a JUnit report: {e}", path.display()))?;
        time = time.max(shard.time.unwrap_or_default());
        timestamp = match (timestamp, shard.timestamp) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        for s in shard.test_suites {
            let key = (suite_file(&s), s.name.to_string());
            match suites.get_mut(&key) {
                Some(existing) => {
                    existing.add_test_cases(s.test_cases);
                    for p in s.properties {
                        if !existing.properties.iter().any(|q| q.name == p.name) {
                            existing.add_property(p);
                        }
                    }
                    let t = existing.time.unwrap_or_default() + s.time.unwrap_or_default();
                    existing.set_time(t);
                }
                None => {
                    suites.insert(key, s);
                }
            }
        }
    }
    let mut report = Report::new("provium");
    report.set_time(time);
    if let Some(ts) = timestamp {
        report.set_timestamp(ts);
    }
    report.add_test_suites(suites.into_values());
    Ok(report)
}
