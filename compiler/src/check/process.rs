//! The process a case or step runs in: `as:` (credentials, capabilities kept or dropped, umask,
//! working directory, limits, the session it stands in, signals it catches and a timer).

use super::*;
use crate::diag::did_you_mean;
use crate::linux;
use crate::model::Creds;
use crate::spec::node::{Node, Value};

impl Checker<'_> {
    /// A constant id, umask or limit of `as:` (templates already filled in).
    pub(super) fn process_int(&mut self, node: &Node, what: &str) -> Option<i64> {
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

    pub(super) fn process_id(&mut self, node: &Node, what: &str) -> Option<u32> {
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
}
