//! Names: kernel headers, constants, syscalls.

use super::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::linux::{self};
use crate::spec::node::{Entries, Node, Value};

impl Checker<'_> {
    // ---- names ---------------------------------------------------------------------------

    pub(super) fn lookup_const(&self, name: &str) -> Option<i64> {
        self.constants
            .get(name)
            .copied()
            .or_else(|| self.opts.abi.constant(name))
            .or_else(|| linux::errno_number(name).map(i64::from))
    }

    pub(super) fn const_hint(&self, name: &str) -> Option<String> {
        // A name a uapi header defines is not a typo: say which header to add.
        if let Some(header) = self.opts.headers.as_ref().and_then(|h| h.defining(name)) {
            return Some(format!(
                "`{name}` is defined in {header}: add `headers: [{header}]` to the spec"
            ));
        }
        let spec = self.const_order.iter().map(String::as_str);
        let call = self.in_call.as_deref();
        let builtin = linux::constants()
            .iter()
            .map(|(n, _, _)| *n)
            .filter(move |n| linux::suggestible_in(n, call));
        let errnos = linux::errnos().map(|e| e.name);
        did_you_mean(name, spec.chain(builtin).chain(errnos))
    }

    pub(super) fn constants(&mut self, entries: &Entries<crate::spec::types::Integer>) {
        for (name, node) in &entries.0 {
            if !is_ident(&name.value) {
                self.error(
                    name.pos,
                    format!("`{}` is not a valid constant name", name.value),
                );
                continue;
            }
            if let Some(Int::Const(v)) = self.int(node, &format!("constant `{}`", name.value)) {
                self.constants.insert(name.value.clone(), v);
                self.const_order.push(name.value.clone());
            } else if !self.diags.iter().any(|d| d.pos.line == node.pos.line) {
                self.error(
                    node.pos,
                    format!("constant `{}` must not use saved values", name.value),
                );
            }
        }
    }

    pub(super) fn resolve_syscall(&mut self, node: &Node) -> Option<(i64, String)> {
        let abi = self.opts.abi;
        // `{x86_64: newfstatat, i386: fstatat64}`: the name this ABI calls it.
        if let Value::Map(pairs) = &node.value {
            let mut mine = None;
            for (k, v) in pairs {
                match k.as_str().map(str::parse::<linux::Abi>) {
                    Some(Ok(a)) if a == abi => mine = Some(v),
                    Some(Ok(_)) => {}
                    _ => {
                        let hint = did_you_mean(
                            k.as_str().unwrap_or(""),
                            linux::Abi::ALL.iter().map(|a| a.name()),
                        );
                        self.error_help(
                            k.pos,
                            "a syscall per ABI is `{x86_64: NAME, i386: NAME, aarch64: NAME}`",
                            hint,
                        );
                        return None;
                    }
                }
            }
            return match mine {
                Some(v) => self.resolve_syscall(v),
                None => {
                    self.case_unavailable
                        .get_or_insert(format!("no syscall is given for {abi}"));
                    Some((-1, "syscall".into()))
                }
            };
        }
        if abi != linux::Abi::X86_64 {
            return self.resolve_in_abi(node, abi);
        }
        let arch = self.opts.arch;
        match &node.value {
            Value::Int(n) => Some((*n, arch.syscall_name(*n).unwrap_or("syscall").to_string())),
            Value::Str(s) => {
                let s = s.trim();
                if let Some((_, nr)) = self.syscalls.iter().find(|(n, _)| n == s) {
                    return Some((*nr, s.to_string()));
                }
                let kernel = self.opts.kernel.clone();
                match kernel.as_ref().and_then(|k| k.syscalls.as_ref()) {
                    // The kernel's own table (a build tree's new syscalls are in it).
                    Some(table) => {
                        if let Some(nr) = table.get(s) {
                            return Some((*nr, s.to_string()));
                        }
                    }
                    None => {
                        if let Some(nr) = arch.syscall_number(s) {
                            return Some((nr as i64, s.to_string()));
                        }
                    }
                }
                if let Some(k) = &kernel {
                    if let Some(nr) = k.elsewhere.get(s) {
                        // Another kernel of the run has it: checked as written, skipped here.
                        self.case_unavailable
                            .get_or_insert(format!("`{s}` is not in {}'s syscall table", k.label));
                        return Some((*nr, s.to_string()));
                    }
                }
                if let Ok(n) = s.parse::<i64>() {
                    return Some((n, arch.syscall_name(n).unwrap_or("syscall").to_string()));
                }
                let custom = self.syscalls.iter().map(|(n, _)| n.as_str());
                let own: Vec<&str> = match kernel.as_ref().and_then(|k| k.syscalls.as_ref()) {
                    Some(t) => t.keys().map(String::as_str).collect(),
                    None => arch.syscalls().iter().map(|(n, _)| *n).collect(),
                };
                let hint = did_you_mean(s, custom.chain(own));
                let mut d = Diagnostic::new(
                    node.pos,
                    format!("unknown syscall `{s}` for {arch} (add it under `syscalls:` if a module provides it)"),
                )
                .len(s.len());
                d.help = hint;
                self.diags.push(d);
                None
            }
            _ => {
                self.error(
                    node.pos,
                    format!("a syscall is a name or a number, not {}", node.kind()),
                );
                None
            }
        }
    }

    /// A syscall under another ABI than the kernel's own: its table only (a kernel's own table
    /// is x86_64's). A name only x86_64 has skips the case here, with why.
    fn resolve_in_abi(&mut self, node: &Node, abi: linux::Abi) -> Option<(i64, String)> {
        match &node.value {
            Value::Int(n) => {
                // A number is the x86_64 syscall the spec was written for. It means the same
                // here when it names the same syscall in both tables (424 on are shared by
                // every architecture), or none in either (1000 is ENOSYS everywhere).
                let x86 = linux::Abi::X86_64.syscall_name(*n);
                let here = abi.syscall_name(*n);
                if x86 == here {
                    return Some((*n, here.unwrap_or("syscall").to_string()));
                }
                self.case_unavailable.get_or_insert(format!(
                    "syscall {n} is given by number, which names another syscall under {abi} \
                     (give it per ABI: `syscall: {{x86_64: {n}, {abi}: N}}`)"
                ));
                // Not named: its signature is not the one the spec was written against.
                Some((*n, "syscall".to_string()))
            }
            Value::Str(s) => {
                let s = s.trim();
                if let Some((_, nr)) = self.syscalls.iter().find(|(n, _)| n == s) {
                    self.case_unavailable.get_or_insert(format!(
                        "`{s}` is the spec's own syscall number, which is x86_64's"
                    ));
                    return Some((*nr, s.to_string()));
                }
                if let Some(nr) = abi.syscall_number(s) {
                    if let Some(why) = linux::differs_under(abi, s) {
                        self.case_unavailable
                            .get_or_insert(format!("`{s}` under i386 {why}"));
                    }
                    return Some((nr as i64, s.to_string()));
                }
                if let Ok(n) = s.parse::<i64>() {
                    return Some((n, abi.syscall_name(n).unwrap_or("syscall").to_string()));
                }
                if let Some(nr) = linux::Abi::X86_64.syscall_number(s) {
                    self.case_unavailable.get_or_insert(if abi.is_native() {
                        // arm64 never had the calls the *at family replaced.
                        format!("{abi} has no `{s}` syscall")
                    } else {
                        format!(
                            "`{s}` is not in the {abi} syscall table (give the case \
                             `syscall: {{x86_64: {s}, {abi}: NAME}}`)"
                        )
                    });
                    return Some((nr as i64, s.to_string()));
                }
                let hint = did_you_mean(s, abi.syscalls().iter().map(|(n, _)| *n));
                let mut d = Diagnostic::new(node.pos, format!("unknown syscall `{s}` for {abi}"))
                    .len(s.len());
                d.help = hint;
                self.diags.push(d);
                None
            }
            _ => {
                self.error(
                    node.pos,
                    format!("a syscall is a name or a number, not {}", node.kind()),
                );
                None
            }
        }
    }
}
