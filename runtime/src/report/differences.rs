//! The terminal's table of tests that differ between kernels, laid out for the terminal's width:
//! the kernel columns keep their width and the test column gives way (its names shortened in
//! the middle, `specs/k.yaml::sysc…451 exists`), never narrower than a readable minimum. Without
//! a terminal (a CI log) nothing is shortened.

use super::matrix::{Matrix, Row};

/// The indent of the table under the results.
const INDENT: &str = "             ";
/// The test column never shrinks below this.
const MIN_NAME: usize = 24;

/// The header and one line per row (uncoloured).
pub fn lines(m: &Matrix, rows: &[&Row], columns: Option<usize>) -> (String, Vec<String>) {
    let name = |r: &Row| format!("{}::{}", r.file, r.test);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .map(|c| c.as_ref().map(|c| c.text()).unwrap_or_else(|| "-".into()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..m.kernels.len())
        .map(|k| {
            cells
                .iter()
                .map(|c| c[k].chars().count())
                .chain(std::iter::once(m.kernels[k].chars().count()))
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut width = rows
        .iter()
        .map(|r| name(r).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    if let Some(cols) = columns {
        let others: usize = INDENT.len() + widths.iter().map(|w| w + 2).sum::<usize>();
        width = width.min(cols.saturating_sub(others).max(MIN_NAME));
    }
    let mut head = format!("{INDENT}{:<width$}", "test");
    for (k, w) in m.kernels.iter().zip(&widths) {
        head.push_str(&format!("  {k:<w$}"));
    }
    let body = rows
        .iter()
        .zip(&cells)
        .map(|(r, c)| {
            let mut line = format!("{INDENT}{:<width$}", shorten(&name(r), width));
            for (text, w) in c.iter().zip(&widths) {
                line.push_str(&format!("  {text:<w$}"));
            }
            line.trim_end().to_string()
        })
        .collect();
    (head.trim_end().to_string(), body)
}

/// `text` in at most `max` characters, cut in the middle: the file's start and the test's end
/// are what tell rows apart.
fn shorten(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max || max < 5 {
        return text.to_string();
    }
    let keep = max - 1;
    let front = keep / 2;
    let back = keep - front;
    let chars: Vec<char> = text.chars().collect();
    let mut out: String = chars[..front].iter().collect();
    out.push('…');
    out.extend(&chars[n - back..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileReport, Status, Summary, TestReport};

    fn summary() -> Summary {
        let file = |kernel: &str, ok: bool| FileReport {
            path: "specs/a-rather-long-directory/with-a-long-name.yaml".into(),
            kernel: Some(kernel.into()),
            tests: vec![TestReport {
                status: if ok {
                    Status::Passed
                } else {
                    Status::Failed(crate::event::Problem {
                        message: "x".into(),
                        location: None,
                        detail: String::new(),
                        console: None,
                    })
                },
                ..TestReport::not_run(
                    "syscall 451 exists on this kernel and answers",
                    crate::event::Location {
                        file: "f".into(),
                        line: 1,
                    },
                    "",
                )
            }],
            ..Default::default()
        };
        Summary {
            reports: vec![
                file("6.1.0-57-cloud-amd64", false),
                file("6.12.118+deb12-cloud-amd64", true),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_test_column_gives_way_to_the_terminal_width() {
        let s = summary();
        let m = Matrix::new(&s);
        let rows: Vec<&Row> = m.differing().collect();
        assert_eq!(rows.len(), 1);
        let (_, wide) = lines(&m, &rows, None);
        assert!(wide[0].contains("with-a-long-name.yaml::syscall 451 exists on this kernel"));
        let (head, narrow) = lines(&m, &rows, Some(100));
        assert!(head.chars().count() <= 100, "{head}");
        assert!(narrow[0].chars().count() <= 100, "{}", narrow[0]);
        assert!(
            narrow[0].contains('…') && narrow[0].contains("answers"),
            "{}",
            narrow[0]
        );
        // Never narrower than readable, even on a tiny terminal.
        let (_, tiny) = lines(&m, &rows, Some(10));
        assert!(tiny[0].trim_start().chars().count() >= MIN_NAME);
    }
}
