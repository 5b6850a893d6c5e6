//! `table:` and `matrix:` rows, and `{{ column }}` templates in a case (minijinja).
//!
//! A string that is exactly `{{ column }}` takes the row's value as it is, so `fd: -1` stays an
//! integer and keeps the row's position for error messages. Other strings are rendered as text.

use crate::diag::{did_you_mean, Diagnostic};
use crate::model::RowValue;
use crate::spec::node::{At, Node, Pos, Value};
use crate::spec::types;
use minijinja::{Environment, UndefinedBehavior};

/// Instructions one case's templates may take (minijinja's fuel): `{% for %}` over the rows of a
/// table is far below it, nested loops over `range(100000)` are far above.
const TEMPLATE_FUEL: u64 = 100_000;

/// Cases one spec may expand to (tables and matrices, over all its cases).
pub const MAX_CASES_PER_FILE: usize = 100_000;

/// One row of values.
#[derive(Debug, Clone)]
pub struct Row {
    /// Where the row is written.
    pub pos: Pos,
    /// Column names and values, in order.
    pub values: Vec<(String, Node)>,
    /// `call=close, fd=-1`, for names without templates.
    pub label: String,
}

fn label(values: &[(String, Node)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", v.scalar_text().unwrap_or_else(|| "…".into())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The case's rows, or `None` when it has no `table` or `matrix`.
pub fn rows(case: &types::Case, pos: Pos) -> Result<Option<Vec<Row>>, Diagnostic> {
    match (&case.table, &case.matrix) {
        (Some(_), Some(_)) => Err(Diagnostic::new(
            pos,
            "a case has `table` or `matrix`, not both",
        )),
        (Some(table), None) => {
            let mut rows = Vec::new();
            for r in table {
                let Some(m) = r.as_map() else {
                    return Err(Diagnostic::new(
                        r.pos,
                        "a table row is a map of column values: `- {call: close, fd: -1}`",
                    ));
                };
                let mut values = Vec::new();
                for (k, v) in m {
                    let Some(key) = k.as_str() else {
                        let why = match &k.value {
                            // Specs are YAML 1.2: only `true` and `false` are booleans.
                            crate::spec::node::Value::Bool(_) => "; this one reads as a boolean \
                                 (YAML takes true and false that way): quote it or pick another \
                                 name"
                                .to_string(),
                            _ => format!("; this one is {}", k.kind()),
                        };
                        return Err(Diagnostic::new(
                            k.pos,
                            format!("a column name is a string{why}"),
                        ));
                    };
                    values.push((key.to_string(), v.clone()));
                }
                let label = label(&values);
                rows.push(Row {
                    pos: r.pos,
                    values,
                    label,
                });
            }
            if rows.is_empty() {
                return Err(Diagnostic::new(pos, "the table has no rows"));
            }
            Ok(Some(rows))
        }
        (None, Some(matrix)) => {
            let mut rows: Vec<Vec<(String, Node)>> = vec![Vec::new()];
            for (name, values) in &matrix.0 {
                if values.is_empty() {
                    return Err(Diagnostic::new(
                        name.pos,
                        format!("matrix column `{}` has no values", name.value),
                    ));
                }
                // Checked before anything is allocated: 8 columns of 100 values would be 10^16.
                let product = rows
                    .len()
                    .checked_mul(values.len())
                    .filter(|n| *n <= MAX_CASES_PER_FILE);
                let Some(product) = product else {
                    return Err(Diagnostic::new(
                        name.pos,
                        format!(
                            "the matrix has more than {} combinations (at column `{}`)",
                            fmt_thousands(MAX_CASES_PER_FILE),
                            name.value
                        ),
                    ));
                };
                let mut next = Vec::with_capacity(product);
                for r in &rows {
                    for v in values {
                        let mut row = r.clone();
                        row.push((name.value.clone(), v.clone()));
                        next.push(row);
                    }
                }
                rows = next;
            }
            let pos = matrix.0.first().map(|(n, _)| n.pos).unwrap_or(pos);
            Ok(Some(
                rows.into_iter()
                    .map(|values| Row {
                        pos,
                        label: label(&values),
                        values,
                    })
                    .collect(),
            ))
        }
        (None, None) => Ok(None),
    }
}

/// `100000` as `100,000`.
pub fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A row's values, for `row` in `lua:` blocks.
pub fn row_values(row: &Row) -> Vec<(String, RowValue)> {
    fn value(n: &Node) -> RowValue {
        match &n.value {
            Value::Null => RowValue::Nil,
            Value::Bool(b) => RowValue::Bool(*b),
            Value::Int(i) => RowValue::Int(*i),
            Value::Float(f) => RowValue::Float(*f),
            Value::Str(s) => RowValue::Str(s.clone()),
            Value::Seq(items) => RowValue::Seq(items.iter().map(value).collect()),
            Value::Map(m) => RowValue::Map(
                m.iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), value(v)))
                    .collect(),
            ),
        }
    }
    row.values
        .iter()
        .map(|(k, v)| (k.clone(), value(v)))
        .collect()
}

fn to_value(n: &Node) -> minijinja::Value {
    match &n.value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Float(f) => minijinja::Value::from(*f),
        Value::Str(s) => minijinja::Value::from(s.clone()),
        Value::Seq(items) => minijinja::Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        Value::Map(m) => minijinja::Value::from(
            m.iter()
                .map(|(k, v)| (k.scalar_text().unwrap_or_default(), to_value(v)))
                .collect::<std::collections::BTreeMap<String, minijinja::Value>>(),
        ),
    }
}

struct Renderer<'a> {
    env: Environment<'static>,
    row: &'a Row,
    ctx: minijinja::Value,
}

impl Renderer<'_> {
    fn text(&self, template: &str, pos: Pos) -> Result<String, Diagnostic> {
        self.env.render_str(template, &self.ctx).map_err(|e| {
            let mut d = Diagnostic::new(
                pos,
                format!(
                    "in `{}`: {}",
                    crate::diag::excerpt(template),
                    e.detail().unwrap_or(&e.to_string())
                ),
            );
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                let columns: Vec<&str> = self.row.values.iter().map(|(k, _)| k.as_str()).collect();
                // The first name used inside `{{ }}` that the row lacks.
                let word = template
                    .split("{{")
                    .skip(1)
                    .filter_map(|part| part.split("}}").next())
                    .flat_map(|inner| inner.split(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
                    .find(|w| {
                        !w.is_empty()
                            && !w.chars().all(|c| c.is_ascii_digit())
                            && !columns.contains(w)
                    })
                    .unwrap_or("");
                d.message = format!(
                    "unknown column `{word}` in `{}` (the row has {})",
                    crate::diag::excerpt(template),
                    columns.join(", ")
                );
                d.help = did_you_mean(word, columns.iter().copied());
            }
            d
        })
    }

    fn node(&self, n: &Node) -> Result<Node, Diagnostic> {
        Ok(match &n.value {
            Value::Str(s) if s.contains("{{") || s.contains("{%") => {
                let inner = s
                    .trim()
                    .strip_prefix("{{")
                    .and_then(|r| r.strip_suffix("}}"))
                    .map(str::trim);
                if let Some(var) =
                    inner.filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    if let Some((_, value)) = self.row.values.iter().find(|(k, _)| k == var) {
                        return Ok(value.clone());
                    }
                }
                Node::new(Value::Str(self.text(s, n.pos)?), self.row.pos)
            }
            Value::Seq(items) => Node::new(
                Value::Seq(
                    items
                        .iter()
                        .map(|i| self.node(i))
                        .collect::<Result<_, _>>()?,
                ),
                n.pos,
            ),
            Value::Map(m) => Node::new(
                Value::Map(
                    m.iter()
                        .map(|(k, v)| Ok((k.clone(), self.node(v)?)))
                        .collect::<Result<_, Diagnostic>>()?,
                ),
                n.pos,
            ),
            _ => n.clone(),
        })
    }

    /// A value of the case with the row filled in (the newtype it is read as stays).
    fn opt<T: std::ops::Deref<Target = Node> + From<Node>>(
        &self,
        n: &Option<T>,
    ) -> Result<Option<T>, Diagnostic> {
        n.as_ref().map(|n| self.node(n).map(T::from)).transpose()
    }

    fn at(&self, a: &Option<At<String>>) -> Result<Option<At<String>>, Diagnostic> {
        a.as_ref()
            .map(|a| {
                Ok(At {
                    value: self.text(&a.value, a.pos)?,
                    pos: a.pos,
                })
            })
            .transpose()
    }

    fn step(&self, s: &At<types::Step>) -> Result<At<types::Step>, Diagnostic> {
        let v = &s.value;
        Ok(At {
            pos: s.pos,
            value: types::Step {
                name: self.at(&v.name)?,
                syscall: self.opt(&v.syscall)?,
                args: v
                    .args
                    .iter()
                    .map(|a| self.node(a).map(types::Arg::from))
                    .collect::<Result<_, _>>()?,
                expect: self.opt(&v.expect)?,
                skip_if: self.opt(&v.skip_if)?,
                save: self.opt(&v.save)?,
                as_: self.opt(&v.as_)?,
                timeout: v.timeout.clone(),
                exec: self.at(&v.exec)?,
                store: self.opt(&v.store)?,
                // Lua is code, not a template: `{{` in it is Lua (the row is `row` there).
                lua: v.lua.clone(),
            },
        })
    }
}

/// Whether any string of the case is a template (outside tables too: `{{ "a" * 300 }}`).
pub fn has_templates(case: &types::Case) -> bool {
    fn node(n: &Node) -> bool {
        match &n.value {
            Value::Str(s) => s.contains("{{") || s.contains("{%"),
            Value::Seq(items) => items.iter().any(node),
            Value::Map(m) => m.iter().any(|(_, v)| node(v)),
            _ => false,
        }
    }
    fn opt<T: std::ops::Deref<Target = Node>>(n: &Option<T>) -> bool {
        n.as_ref().is_some_and(|n| node(n))
    }
    let text = |s: &Option<At<String>>| s.as_ref().is_some_and(|a| a.value.contains("{{"));
    case.name.value.contains("{{")
        || opt(&case.syscall)
        || case.args.iter().any(|a| node(a))
        || opt(&case.expect)
        || opt(&case.as_)
        || case.requires.as_ref().is_some_and(|q| {
            text(&q.kernel)
                || opt(&q.filesystem)
                || opt(&q.module)
                || opt(&q.path)
                || opt(&q.config)
        })
        || text(&case.xfail)
        || text(&case.skip)
        || case.steps.iter().chain(&case.finally).any(|steps| {
            steps.iter().any(|s| {
                opt(&s.value.syscall)
                    || s.value.args.iter().any(|a| node(a))
                    || opt(&s.value.expect)
                    || text(&s.value.exec)
                    || opt(&s.value.store)
            })
        })
}

/// The first string in `n` that still holds a template.
fn unrendered(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) if s.contains("{{") || s.contains("{%") => Some(s.clone()),
        Value::Seq(items) => items.iter().find_map(unrendered),
        Value::Map(m) => m.iter().find_map(|(_, v)| unrendered(v)),
        _ => None,
    }
}

/// A row with no values, for templates outside tables.
pub fn empty_row(pos: Pos) -> Row {
    Row {
        pos,
        values: Vec::new(),
        label: String::new(),
    }
}

/// The case with one row's values filled in.
pub fn render_case(case: &types::Case, row: &Row) -> Result<types::Case, Diagnostic> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A template is a few substitutions; loops that would run for ever run out of fuel and
    // are an error at their position.
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(32);
    let ctx_of = |values: &[(String, Node)]| {
        minijinja::Value::from(
            values
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<std::collections::BTreeMap<String, minijinja::Value>>(),
        )
    };
    // A cell is a template too, rendered with the row's other columns: `{{ 'n' * 300 }}` in a
    // cell must reach the kernel as 300 n's, not as the braces (which would fail, or pass, for
    // the wrong reason).
    let cells = Renderer {
        env: env.clone(),
        row,
        ctx: ctx_of(&row.values),
    };
    let mut values = Vec::with_capacity(row.values.len());
    for (k, v) in &row.values {
        let rendered = cells.node(v)?;
        if let Some(left) = unrendered(&rendered) {
            return Err(Diagnostic::new(
                v.pos,
                format!(
                    "column `{k}` is still a template after its row is filled in (`{}`): a cell \
                     may use the row's other columns, not itself",
                    crate::diag::excerpt(&left)
                ),
            ));
        }
        values.push((k.clone(), rendered));
    }
    let row = &Row {
        pos: row.pos,
        values,
        label: row.label.clone(),
    };
    let r = Renderer {
        env,
        row,
        ctx: ctx_of(&row.values),
    };
    let templated = case.name.value.contains("{{") || case.name.value.contains("{%");
    let name = if templated {
        r.text(&case.name.value, case.name.pos)?
    } else if row.values.is_empty() {
        case.name.value.clone()
    } else {
        format!("{} [{}]", case.name.value, row.label)
    };
    Ok(types::Case {
        name: At {
            value: name,
            pos: row.pos,
        },
        syscall: r.opt(&case.syscall)?,
        args: case
            .args
            .iter()
            .map(|a| r.node(a).map(types::Arg::from))
            .collect::<Result<_, _>>()?,
        expect: r.opt(&case.expect)?,
        skip_if: r.opt(&case.skip_if)?,
        save: r.opt(&case.save)?,
        as_: r.opt(&case.as_)?,
        requires: case
            .requires
            .as_ref()
            .map(|q| -> Result<types::Requires, Diagnostic> {
                Ok(types::Requires {
                    // A per-row bound (`kernel: "{{ since }}"`: each file system's version).
                    kernel: r.at(&q.kernel)?,
                    filesystem: r.opt(&q.filesystem)?,
                    module: r.opt(&q.module)?,
                    path: r.opt(&q.path)?,
                    config: r.opt(&q.config)?,
                    ..q.clone()
                })
            })
            .transpose()?,
        xfail: r.at(&case.xfail)?,
        skip: r.at(&case.skip)?,
        timeout: case.timeout.clone(),
        repeat: r.opt(&case.repeat)?,
        table: None,
        matrix: None,
        steps: case
            .steps
            .as_ref()
            .map(|s| s.iter().map(|st| r.step(st)).collect::<Result<_, _>>())
            .transpose()?,
        finally: case
            .finally
            .as_ref()
            .map(|s| s.iter().map(|st| r.step(st)).collect::<Result<_, _>>())
            .transpose()?,
        lua: case.lua.clone(),
    })
}
