//! Which spec line each line of a compiled chunk comes from: built by the emitter from the
//! chunk it wrote, used by the runtime to point errors at the YAML.

/// Chunk line (1-based) → spec line. A line without its own mark takes the nearest one above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMap {
    lines: Vec<Option<u32>>,
}

impl SourceMap {
    /// The spec line of a line of the chunk.
    pub fn line(&self, chunk_line: u32) -> Option<u32> {
        self.lines.get(chunk_line as usize).copied().flatten()
    }

    /// Reads the marks the emitter ends statements with (`-- FILE:LINE`, `mark` being
    /// `-- FILE:`).
    pub(crate) fn from_marks(code: &str, mark: &str) -> SourceMap {
        let mut last = None;
        let mut lines = vec![None];
        for line in code.lines() {
            if let Some(at) = line.rfind(mark) {
                if let Ok(n) = line[at + mark.len()..].trim().parse::<u32>() {
                    last = Some(n);
                }
            }
            lines.push(last);
        }
        SourceMap { lines }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_nearest_mark_above() {
        let code = "local vm = x  -- s.yaml:3\nfoo()\nbar()  -- s.yaml:10\n";
        let m = SourceMap::from_marks(code, "-- s.yaml:");
        assert_eq!(m.line(1), Some(3));
        assert_eq!(m.line(2), Some(3));
        assert_eq!(m.line(3), Some(10));
        assert_eq!(m.line(4), None);
    }
}
