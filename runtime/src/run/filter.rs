//! `--filter PATTERN`: a substring of `file::test`, or a glob when the pattern has `*`, `?` or
//! `[`.

use globset::{Glob, GlobMatcher};

#[derive(Debug, Clone)]
pub enum Filter {
    Substring(String),
    Glob(GlobMatcher),
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
}
