//! `--filter PATTERN`: a substring of `file::test`, or a glob when the pattern has `*`, `?` or
//! `[`; and `--rerun-failed`: exactly the tests (and files) that failed last time.

use globset::{Glob, GlobMatcher};
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub enum Filter {
    Substring(String),
    Glob(GlobMatcher),
    /// These `file::test` names, and every test of these files.
    Only {
        tests: BTreeSet<String>,
        files: BTreeSet<String>,
    },
    /// Both filters.
    Both(Box<Filter>, Box<Filter>),
}

impl Filter {
    pub fn new(pattern: &str) -> Result<Filter, String> {
        if pattern.contains(['*', '?', '[']) {
            Glob::new(pattern)
                .map(|g| Filter::Glob(g.compile_matcher()))
                .map_err(|e| format!("bad --filter glob `{pattern}`: {e}"))
        } else {
            Ok(Filter::Substring(pattern.to_string()))
        }
    }

    pub fn matches(&self, file: &str, test: &str) -> bool {
        let full = format!("{file}::{test}");
        match self {
            Filter::Substring(s) => full.contains(s.as_str()),
            Filter::Glob(g) => g.is_match(&full),
            Filter::Only { tests, files } => files.contains(file) || tests.contains(&full),
            Filter::Both(a, b) => a.matches(file, test) && b.matches(file, test),
        }
    }

    /// Whether any test of `file` can match (a glob or substring that names another file
    /// cannot), so that files with nothing to run are not booted at all.
    pub fn may_match_file(&self, file: &str) -> bool {
        match self {
            Filter::Substring(s) => match s.split_once("::") {
                Some((f, _)) => file.ends_with(f) || file.contains(f),
                None => true,
            },
            Filter::Glob(_) => true,
            Filter::Only { tests, files } => {
                let prefix = format!("{file}::");
                files.contains(file) || tests.iter().any(|t| t.starts_with(&prefix))
            }
            Filter::Both(a, b) => a.may_match_file(file) && b.may_match_file(file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Filter;

    #[test]
    fn substring_and_glob() {
        let f = Filter::new("pipe").unwrap();
        assert!(f.matches("tests/a.lua", "pipe round trip"));
        assert!(!f.matches("tests/a.lua", "getpid"));
        let g = Filter::new("tests/*.lua::get*").unwrap();
        assert!(g.matches("tests/a.lua", "getpid is positive"));
        assert!(!g.matches("tests/a.lua", "pipe"));
        let scoped = Filter::new("b.lua::x").unwrap();
        assert!(!scoped.may_match_file("tests/a.lua"));
        assert!(scoped.may_match_file("tests/b.lua"));
    }

    #[test]
    fn only_and_both() {
        let only = Filter::Only {
            tests: ["a.lua::x".to_string()].into(),
            files: ["b.lua".to_string()].into(),
        };
        assert!(only.matches("a.lua", "x"));
        assert!(!only.matches("a.lua", "y"));
        assert!(only.matches("b.lua", "anything"));
        assert!(!only.may_match_file("c.lua"));
        let both = Filter::Both(Box::new(only), Box::new(Filter::new("b.lua::k").unwrap()));
        assert!(both.matches("b.lua", "k"));
        assert!(!both.matches("a.lua", "x"));
    }
}
