//! Conditions, credentials, steps and cases (tables and matrices expanded).

use super::*;
use crate::diag::did_you_mean;
use crate::linux::{self, Arch};
use crate::model::{self, Body, Creds, Requires, Step, StepKind};
use crate::requirement::{ConfigCondition, KernelRange};
use crate::spec::node::{At, Node, Value};
use crate::spec::types;
use crate::template;

impl Checker<'_> {
    // ---- conditions, credentials ---------------------------------------------------------

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

    /// A constant id, umask or limit of `as:` (templates already filled in).
    fn process_int(&mut self, node: &Node, what: &str) -> Option<i64> {
        match self.int(node, what)? {
            Int::Const(v) => Some(v),
            _ => {
                self.error(
                    node.pos,
                    format!("`{what}` is a constant (saved values come too late)"),
                );
                None
            }
        }
    }

    fn process_id(&mut self, node: &Node, what: &str) -> Option<u32> {
        if let Some(name) = node.as_str().filter(|n| is_ident(n)) {
            if self.lookup_const(name).is_none() {
                // Ids are numbers: the guest's initramfs has no user database to look names up.
                let known = match name {
                    "root" => " (`root` is 0)",
                    "nobody" | "nogroup" => " (`nobody` and `nogroup` are 65534)",
                    _ => "",
                };
                self.error(node.pos, format!("`{what}` is a number, not a name{known}"));
                return None;
            }
        }
        let v = self.process_int(node, what)?;
        match u32::try_from(v) {
            Ok(id) => Some(id),
            Err(_) => {
                self.error(
                    node.pos,
                    format!("`{what}` {v} is not a valid id (0 to 4294967295)"),
                );
                None
            }
        }
    }

    /// `as: {uid, gid, euid, egid, groups, caps, drop_caps, umask, cwd, rlimits, session}`.
    pub(super) fn creds(&mut self, node: &Node) -> Creds {
        const KEYS: [&str; 13] = [
            "uid",
            "gid",
            "euid",
            "egid",
            "groups",
            "caps",
            "drop_caps",
            "umask",
            "cwd",
            "rlimits",
            "session",
            "catch",
            "timer",
        ];
        let mut c = Creds::default();
        let Some(map) = node.as_map() else {
            self.error(
                node.pos,
                "`as:` is a map: `{uid: 1000, umask: 0o077, rlimits: {RLIMIT_NOFILE: 16}}`",
            );
            return c;
        };
        let mut gid = None;
        for (k, v) in map {
            let key = k.as_str().unwrap_or("");
            match key {
                "uid" => c.uid = self.process_id(v, "uid").unwrap_or(0),
                "gid" => gid = self.process_id(v, "gid"),
                "euid" => c.euid = self.process_id(v, "euid"),
                "egid" => c.egid = self.process_id(v, "egid"),
                "groups" => {
                    let items = one_or_many(v);
                    for g in items {
                        if let Some(g) = self.process_id(g, "groups") {
                            c.groups.push(g);
                        }
                    }
                }
                "caps" | "drop_caps" => {
                    let items = one_or_many(v);
                    let mut named = Vec::new();
                    for cap in items {
                        let shown = cap.as_str().unwrap_or("").to_string();
                        let name = shown.to_ascii_uppercase();
                        let full = if name.starts_with("CAP_") {
                            name
                        } else {
                            format!("CAP_{name}")
                        };
                        if linux::capability(&full).is_none() {
                            let hint = did_you_mean(&full, linux::capabilities());
                            self.error_help(cap.pos, format!("unknown capability `{shown}`"), hint);
                        }
                        named.push((shown, full));
                    }
                    if key == "caps" {
                        c.caps.extend(named.into_iter().map(|(shown, _)| shown));
                    } else if map.iter().any(|(k, _)| k.as_str() == Some("caps")) {
                        self.error(
                            k.pos,
                            "`caps:` lists what to keep and `drop_caps:` what to drop: use one",
                        );
                    } else {
                        // Every capability but the dropped ones (LTP's "root without
                        // CAP_SYS_ADMIN"), kept exactly as a `caps:` list would be.
                        let dropped: Vec<String> = named.into_iter().map(|(_, f)| f).collect();
                        c.caps.extend(
                            linux::capabilities()
                                .filter(|n| !dropped.iter().any(|d| d == n))
                                .map(str::to_string),
                        );
                    }
                }
                "umask" => {
                    c.umask = self.process_int(v, "umask").and_then(|m| {
                        if (0..=0o777).contains(&m) {
                            Some(m as u32)
                        } else {
                            self.error(v.pos, format!("umask {m:#o} is more than 0o777"));
                            None
                        }
                    })
                }
                "cwd" => match v.as_str() {
                    Some(p) => c.cwd = Some(p.to_string()),
                    None => self.error(v.pos, "`cwd` is a path in the guest"),
                },
                "rlimits" => self.rlimits(v, &mut c),
                "session" => match v.as_str() {
                    Some("own") => c.inherit_session = false,
                    Some("inherit") => c.inherit_session = true,
                    _ => self.error(
                        v.pos,
                        "`session` is `own` (the case's process leads a session, the default) or \
                         `inherit` (it leads a process group in the agent's session)",
                    ),
                },
                "catch" => self.catch(v, &mut c),
                "timer" => self.timer(v, &mut c),
                other => {
                    let hint = did_you_mean(other, KEYS);
                    self.error_help(k.pos, format!("unknown `as:` key `{other}`"), hint);
                }
            }
        }
        c.gid = gid.unwrap_or(c.uid);
        c
    }

    /// `catch: [SIGALRM]` (an empty handler: an interrupted call answers EINTR) or
    /// `catch: {SIGALRM: restart, SIGUSR1: interrupt}` (`restart`: with `SA_RESTART`).
    fn catch(&mut self, node: &Node, c: &mut Creds) {
        const USAGE: &str = "`catch:` lists signals (`[SIGALRM]`) or maps each to `restart` or \
                             `interrupt` (`{SIGALRM: restart}`)";
        match &node.value {
            Value::Map(pairs) => {
                for (k, v) in pairs {
                    let restart = match v.as_str() {
                        Some("restart") => true,
                        Some("interrupt") => false,
                        _ => {
                            self.error(v.pos, USAGE);
                            continue;
                        }
                    };
                    if let Some(n) = self.catchable(k) {
                        c.catch.push((n, restart));
                    }
                }
            }
            Value::Seq(_) | Value::Str(_) | Value::Int(_) => {
                for item in one_or_many(node) {
                    if let Some(n) = self.catchable(item) {
                        c.catch.push((n, false));
                    }
                }
            }
            _ => self.error(node.pos, USAGE),
        }
    }

    /// A signal a handler can be installed for (not SIGKILL or SIGSTOP).
    fn catchable(&mut self, node: &Node) -> Option<i64> {
        let n = self.signal(node)?;
        if n == 9 || n == 19 {
            self.error(node.pos, "SIGKILL and SIGSTOP cannot be caught");
            return None;
        }
        Some(n)
    }

    /// `timer: 0.05` (SIGALRM after 50 ms) or `timer: {after: 0.05, signal: SIGUSR1}`.
    fn timer(&mut self, node: &Node, c: &mut Creds) {
        const USAGE: &str =
            "`timer:` is seconds (`0.05`, SIGALRM) or `{after: 0.05, signal: SIGUSR1}`";
        let seconds = |n: &Node| match n.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        };
        let (after, signal) = match &node.value {
            Value::Map(pairs) => {
                let mut after = None;
                let mut signal = Some(14); // SIGALRM
                for (k, v) in pairs {
                    match k.as_str() {
                        Some("after") => after = seconds(v),
                        Some("signal") => signal = self.signal(v),
                        _ => {
                            let hint = did_you_mean(k.as_str().unwrap_or(""), ["after", "signal"]);
                            self.error_help(k.pos, USAGE, hint);
                            return;
                        }
                    }
                }
                (after, signal)
            }
            _ => (seconds(node), Some(14)),
        };
        match (after, signal) {
            (Some(after), Some(signal)) if after > 0.0 && after <= 3600.0 => {
                c.timer = Some((signal, (after * 1e6).round() as u64))
            }
            (Some(_), Some(_)) => self.error(node.pos, "`timer:` fires after 0 to 3600 seconds"),
            (None, _) => self.error(node.pos, USAGE),
            (_, None) => {} // the signal's own error is reported
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

    /// `rlimits: {RLIMIT_NOFILE: [soft, hard], RLIMIT_FSIZE: 4096}`.
    fn rlimits(&mut self, node: &Node, c: &mut Creds) {
        let Some(map) = node.as_map() else {
            self.error(node.pos, "`rlimits:` maps a resource to a limit: `{RLIMIT_NOFILE: [16, 16]}` or `{RLIMIT_FSIZE: 4096}`");
            return;
        };
        for (k, v) in map {
            let name = k.as_str().unwrap_or("");
            let resource = match linux::constant(name).filter(|_| name.starts_with("RLIMIT_")) {
                Some(r) => r,
                None => {
                    let hint = did_you_mean(
                        name,
                        linux::constants()
                            .iter()
                            .map(|(n, _, _)| *n)
                            .filter(|n| n.starts_with("RLIMIT_")),
                    );
                    self.error_help(k.pos, format!("unknown resource `{name}`"), hint);
                    continue;
                }
            };
            let mut limit = |n: &Node| -> Option<i64> {
                if n.as_str() == Some("unlimited") {
                    return Some(-1);
                }
                self.process_int(n, name)
            };
            let (soft, hard) = match &v.value {
                Value::Seq(items) if items.len() == 2 => (limit(&items[0]), limit(&items[1])),
                Value::Seq(_) => {
                    self.error(v.pos, format!("`{name}` is one limit or `[soft, hard]`"));
                    continue;
                }
                _ => {
                    let l = limit(v);
                    (l, l)
                }
            };
            if let (Some(soft), Some(hard)) = (soft, hard) {
                c.rlimits.push((resource, soft, hard));
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
