//! Conditions, steps and cases (tables and matrices expanded); the process a case runs in is
//! `process`.

use super::*;
use crate::diag::did_you_mean;
use crate::linux::Arch;
use crate::model::{self, Body, Creds, Requires, Step, StepKind};
use crate::requirement::{ConfigCondition, KernelRange};
use crate::spec::node::{At, Node, Value};
use crate::spec::types;
use crate::template;

impl Checker<'_> {
    // ---- conditions ---------------------------------------------------------------------

    pub(super) fn requires(&mut self, r: &types::Requires) -> Requires {
        let mut out = Requires {
            line: 0,
            ..Default::default()
        };
        if let Some(k) = &r.kernel {
            out.line = k.pos.line;
            match k.value.parse::<KernelRange>() {
                Ok(range) => out.kernel = Some(range),
                Err(e) => self.error(k.pos, e.to_string()),
            }
        }
        if let Some(a) = &r.arch {
            out.line = out.line.max(a.pos.line);
            if a.value.parse::<Arch>().is_err() && a.value != "aarch64" {
                self.error(a.pos, format!("unknown arch `{}`", a.value));
            }
            out.arch = Some(a.value.clone());
        }
        if let Some(s) = &r.syscall {
            out.line = out.line.max(s.pos.line);
            let names: Vec<Node> = match &s.value {
                Value::Seq(items) => items.clone(),
                _ => vec![s.0.clone()],
            };
            for n in &names {
                if let Some((nr, name)) = self.resolve_syscall(n) {
                    out.syscalls.push((name, nr));
                }
            }
        }
        if let Some(root) = &r.root {
            out.line = out.line.max(root.pos.line);
            out.root = Some(root.value);
        }
        for (names, what) in [
            (&r.config, "config"),
            (&r.path, "path"),
            (&r.filesystem, "filesystem"),
            (&r.module, "module"),
        ] {
            let Some(names) = names else { continue };
            out.line = out.line.max(names.pos.line);
            let items: Vec<Node> = match &names.value {
                Value::Seq(items) => items.clone(),
                _ => vec![names.0.clone()],
            };
            for n in &items {
                let Value::Str(text) = &n.value else {
                    self.error(n.pos, format!("requires.{what}: expected a string"));
                    continue;
                };
                if what == "filesystem" || what == "module" {
                    let fine = !text.is_empty()
                        && text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
                    if !fine {
                        self.error(n.pos, format!("requires.{what}: `{text}` is not a name"));
                    }
                    if what == "filesystem" {
                        out.filesystems.push(text.clone());
                    } else {
                        out.modules.push(text.clone());
                    }
                } else if what == "config" {
                    match text.parse::<ConfigCondition>() {
                        Ok(c) => out.config.push(c),
                        Err(e) => self.error(n.pos, e.to_string()),
                    }
                } else {
                    if !text.starts_with('/') {
                        self.error(n.pos, format!("requires.path: `{text}` must be absolute"));
                    }
                    out.paths.push(text.clone());
                }
            }
        }
        out
    }

    /// `repeat: {until: EMFILE, at_most: 4096}`.
    fn repeat(&mut self, node: &Node) -> Option<(Vec<String>, u32)> {
        const MAX: i64 = 1_000_000;
        let Some(map) = node.as_map() else {
            self.error(node.pos, "`repeat:` is `{until: EMFILE, at_most: 4096}`");
            return None;
        };
        let mut until = Vec::new();
        let mut at_most = None;
        for (k, v) in map {
            match k.as_str().unwrap_or("") {
                "until" => {
                    let items = one_or_many(v);
                    for it in items {
                        until.push(self.errno_name(it)?);
                    }
                }
                "at_most" => {
                    let n = self.process_int(v, "at_most")?;
                    if !(1..=MAX).contains(&n) {
                        self.error(v.pos, format!("`at_most` is 1 to {MAX}, not {n}"));
                        return None;
                    }
                    at_most = Some(n as u32);
                }
                other => {
                    let hint = did_you_mean(other, ["until", "at_most"]);
                    self.error_help(k.pos, format!("unknown `repeat:` key `{other}`"), hint);
                    return None;
                }
            }
        }
        match (until.is_empty(), at_most) {
            (false, Some(n)) => Some((until, n)),
            _ => {
                self.error(
                    node.pos,
                    "`repeat:` needs `until` (an errno) and `at_most` (a count)",
                );
                None
            }
        }
    }

    /// `store: {at: "$addr + 4", type: u32, value: 1}`.
    fn store(&mut self, node: &Node) -> Option<StepKind> {
        const TYPES: [&str; 8] = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"];
        let Some(map) = node.as_map() else {
            self.error(
                node.pos,
                "`store:` is `{at: \"$addr + 4\", type: u32, value: 1}`",
            );
            return None;
        };
        let (mut at, mut kind, mut value) = (None, None, None);
        for (k, v) in map {
            match k.as_str().unwrap_or("") {
                "at" => at = self.int(v, "store: at"),
                "value" => value = self.int(v, "store: value"),
                "type" => match v.as_str().filter(|t| TYPES.contains(t)) {
                    Some(t) => kind = Some(t.to_string()),
                    None => {
                        let hint = did_you_mean(v.as_str().unwrap_or(""), TYPES);
                        self.error_help(
                            v.pos,
                            "`type:` is u8, u16, u32, u64, i8, i16, i32 or i64",
                            hint,
                        );
                    }
                },
                other => {
                    let hint = did_you_mean(other, ["at", "type", "value"]);
                    self.error_help(k.pos, format!("unknown `store:` key `{other}`"), hint);
                }
            }
        }
        match (at, kind, value) {
            (Some(at), Some(kind), Some(value)) => Some(StepKind::Store { at, kind, value }),
            _ => {
                for (key, missing) in [
                    ("at", !map.iter().any(|(k, _)| k.as_str() == Some("at"))),
                    ("type", !map.iter().any(|(k, _)| k.as_str() == Some("type"))),
                    (
                        "value",
                        !map.iter().any(|(k, _)| k.as_str() == Some("value")),
                    ),
                ] {
                    if missing {
                        self.error(node.pos, format!("`store:` needs `{key}`"));
                    }
                }
                None
            }
        }
    }

    // ---- steps and cases -----------------------------------------------------------------

    /// The names a `lua:` step or case saves: `save: pid` or `save: [pid, port]`. The code
    /// sets them (`saved.pid = ...`); the compiled spec checks that it did.
    fn lua_saves(&mut self, save: Option<&Node>) -> Vec<String> {
        let Some(node) = save else {
            return Vec::new();
        };
        let items = one_or_many(node);
        let mut names = Vec::new();
        for it in items {
            match it.as_str() {
                Some(name) if is_ident(name) => {
                    self.saved.insert(name.to_string());
                    names.push(name.to_string());
                }
                _ => self.error(
                    it.pos,
                    "a `lua:` block saves the names it sets in `saved`: `save: pid` or `save: [pid, port]`",
                ),
            }
        }
        names
    }

    /// `save:` of an `exec:` step: names and the Lua patterns whose one capture, in the
    /// command's output, is the integer to keep.
    fn exec_saves(&mut self, node: &Node) -> Vec<(String, String)> {
        let Some(map) = node.as_map() else {
            self.error(
                node.pos,
                "an `exec:` step saves from its output by pattern: `save: {ncpus: \"0%-(%d+)\"}` (a Lua pattern with one capture)",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let name = k.as_str().unwrap_or("");
            if !super::is_ident(name) {
                self.error(k.pos, format!("`{name}` is not a valid name to save"));
                continue;
            }
            let Some(pattern) = v.as_str() else {
                self.error(v.pos, "a pattern is a string: `\"0%-(%d+)\"`");
                continue;
            };
            if !pattern.contains('(') || !pattern.contains(')') {
                self.error(
                    v.pos,
                    format!("pattern `{pattern}` has no capture: put the number in parentheses (`(%d+)`)"),
                );
                continue;
            }
            self.saved.insert(name.to_string());
            out.push((name.to_string(), pattern.to_string()));
        }
        out
    }

    pub(super) fn lua_block(&mut self, code: &At<String>) -> model::LuaBlock {
        // A block scalar (`lua: |`) starts on the line after the key.
        let at = crate::diag::byte_offset(self.source, code.pos);
        let first_char = self.source[at..].chars().next();
        let first_line = if matches!(first_char, Some('|' | '>')) {
            code.pos.line + 1
        } else {
            code.pos.line
        };
        model::LuaBlock {
            code: code.value.clone(),
            first_line,
            row: self.row.clone(),
            saves: Vec::new(),
        }
    }

    pub(super) fn step(&mut self, step: &At<types::Step>, expect_ok: bool) -> Option<Step> {
        let s = &step.value;
        let kinds = [
            s.syscall.is_some(),
            s.lua.is_some(),
            s.exec.is_some(),
            s.store.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.error(
                step.pos,
                "a step has exactly one of `syscall`, `lua`, `exec` or `store`",
            );
            return None;
        }
        let creds = s.as_.as_ref().map(|c| self.creds(c));
        let kind = if let Some(sys) = &s.syscall {
            StepKind::Call({
                let mut call = self.call(
                    sys,
                    &s.args,
                    s.expect.as_deref(),
                    s.save.as_deref(),
                    s.timeout.as_ref(),
                    expect_ok,
                )?;
                call.skip_if = s
                    .skip_if
                    .as_deref()
                    .and_then(|n| self.expect(n))
                    .map(Box::new);
                call
            })
        } else if let Some(code) = &s.lua {
            let mut block = self.lua_block(code);
            block.saves = self.lua_saves(s.save.as_deref());
            StepKind::Lua(block)
        } else if let Some(store) = &s.store {
            self.store(store)?
        } else {
            StepKind::Exec {
                command: s.exec.as_ref()?.value.clone(),
                saves: s
                    .save
                    .as_deref()
                    .map(|n| self.exec_saves(n))
                    .unwrap_or_default(),
            }
        };
        if s.syscall.is_none() && (s.expect.is_some() || !s.args.is_empty()) {
            self.error(
                step.pos,
                "`args` and `expect` go with `syscall`; `save` with `syscall`, `lua` or `exec`",
            );
        }
        Some(Step {
            line: step.pos.line,
            label: s.name.as_ref().map(|n| n.value.clone()),
            creds,
            kind,
        })
    }

    pub(super) fn case(&mut self, case: &At<types::Case>) -> Vec<model::Case> {
        let rows = match template::rows(&case.value, case.pos) {
            Ok(rows) => rows,
            Err(d) => {
                self.diags.push(d);
                return Vec::new();
            }
        };
        let count = rows.as_ref().map_or(1, Vec::len);
        self.expanded = self.expanded.saturating_add(count);
        if self.expanded > template::MAX_CASES_PER_FILE {
            if self.expanded - count <= template::MAX_CASES_PER_FILE {
                self.error(
                    case.pos,
                    format!(
                        "the spec expands to more than {} cases; split it into several files",
                        template::fmt_thousands(template::MAX_CASES_PER_FILE)
                    ),
                );
            }
            return Vec::new();
        }
        let Some(rows) = rows else {
            if template::has_templates(&case.value) {
                return match template::render_case(&case.value, &template::empty_row(case.pos)) {
                    Ok(rendered) => self
                        .one_case(&rendered, case.pos.line)
                        .into_iter()
                        .collect(),
                    Err(d) => {
                        self.diags.push(d);
                        Vec::new()
                    }
                };
            }
            return self
                .one_case(&case.value, case.pos.line)
                .into_iter()
                .collect();
        };
        let mut out = Vec::new();
        for row in rows {
            self.row = template::row_values(&row);
            match template::render_case(&case.value, &row) {
                Ok(rendered) => out.extend(self.one_case(&rendered, row.pos.line)),
                Err(d) => self.diags.push(d),
            }
        }
        self.row = Vec::new();
        out
    }

    pub(super) fn one_case(&mut self, c: &types::Case, line: u32) -> Option<model::Case> {
        let kinds = [c.syscall.is_some(), c.steps.is_some(), c.lua.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.error(
                c.name.pos,
                format!(
                    "case `{}` needs exactly one of `syscall`, `steps` or `lua`",
                    c.name.value
                ),
            );
            return None;
        }
        let save_misplaced = c.save.is_some() && c.lua.is_none();
        if c.syscall.is_none() && (c.expect.is_some() || !c.args.is_empty() || save_misplaced) {
            self.error(
                c.name.pos,
                "`args`, `expect` and `save` go with `syscall` (`save` also with `lua`); in `steps`, give them per step",
            );
            return None;
        }
        self.case_unavailable = None;
        let mut creds = c.as_.as_ref().map(|cr| self.creds(cr));
        let requires = c.requires.as_ref().map(|r| self.requires(r));
        let repeat = match &c.repeat {
            Some(node) if c.syscall.is_none() => {
                self.error(node.pos, "`repeat:` goes with a one-call case (`syscall:`)");
                return None;
            }
            Some(node) => {
                let r = self.repeat(node)?;
                // What a repetition exhausts (descriptors, memory) must not be the shared
                // executor's: without `as:`, the case gets a root process of its own.
                creds.get_or_insert_with(Creds::default);
                Some(r)
            }
            None => None,
        };
        let body = if let Some(sys) = &c.syscall {
            if c.expect.is_none() {
                self.error(
                    c.name.pos,
                    format!(
                        "case `{}` has no `expect:` (use `expect: any` to only run it)",
                        c.name.value
                    ),
                );
                return None;
            }
            let reads_before = self.reads.len();
            let mut call = self.call(
                sys,
                &c.args,
                c.expect.as_deref(),
                c.save.as_deref(),
                c.timeout.as_ref(),
                false,
            )?;
            if repeat.is_some() {
                // `$repeat` is the repetition's count, known here: not a saved value.
                let mut i = reads_before;
                while i < self.reads.len() {
                    if self.reads[i].0 == "repeat" {
                        self.reads.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            call.repeat = repeat.map(Box::new);
            call.skip_if = c
                .skip_if
                .as_deref()
                .and_then(|n| self.expect(n))
                .map(Box::new);
            Body::Call(call)
        } else if let Some(steps) = &c.steps {
            let steps: Vec<Step> = steps.iter().filter_map(|s| self.step(s, false)).collect();
            Body::Steps(steps)
        } else {
            let mut block = self.lua_block(c.lua.as_ref()?);
            block.saves = self.lua_saves(c.save.as_deref());
            Body::Lua(block)
        };
        Some(model::Case {
            name: c.name.value.clone(),
            line,
            requires,
            xfail: c.xfail.as_ref().map(|x| x.value.clone()),
            // A syscall this kernel lacks (another of the run has it) skips the case here.
            skip: self
                .case_unavailable
                .take()
                .or_else(|| c.skip.as_ref().map(|x| x.value.clone())),
            creds,
            body,
            // Clean-up: `ok` unless the step says otherwise, like teardown.
            finally: c
                .finally
                .iter()
                .flatten()
                .filter_map(|s| self.step(s, true))
                .collect(),
            abi: self.opts.abi,
        })
    }
}
