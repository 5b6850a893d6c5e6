//! `provium gen --diff OLD NEW`: probes for what changed between two header trees only.

use super::{baseline, probes, spec_text, GenOptions, Specs, FLAG_FAMILIES};
use crate::headers::signatures::{Role, Signature};
use crate::headers::tree::{HeaderTree, Parsed};
use std::collections::{BTreeMap, BTreeSet};

/// What changed between two include trees.
#[derive(Debug, Default)]
pub struct Diff {
    /// Syscalls only the new tree has, with their numbers.
    pub new_syscalls: Vec<(String, u32)>,
    /// Flag constants that are new or changed: (name, value).
    pub new_flags: Vec<(String, i64)>,
    /// Structs whose size changed: (name, old size, new size).
    pub grown: Vec<(String, usize, usize)>,
}

impl Diff {
    /// One line per change, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (n, nr) in &self.new_syscalls {
            out.push(format!("new syscall {n} ({nr})"));
        }
        for (n, v) in &self.new_flags {
            out.push(format!("new flag {n} = {v:#x}"));
        }
        for (n, a, b) in &self.grown {
            out.push(format!("struct {n}: {a} -> {b} bytes"));
        }
        if out.is_empty() {
            out.push("no syscalls, flags or struct sizes changed".into());
        }
        out
    }
}

fn constants(p: &Parsed) -> BTreeMap<String, i64> {
    p.constants()
        .into_iter()
        .filter_map(|c| c.value.ok().map(|v| (c.name, v)))
        .collect()
}

fn sizes(p: &Parsed) -> BTreeMap<String, usize> {
    p.types
        .layouts()
        .into_iter()
        .map(|(n, l)| (n, l.size))
        .collect()
}

/// What changed from `old` to `new` in `headers`.
pub fn compare(old: &HeaderTree, new: &HeaderTree, headers: &[String]) -> Result<Diff, String> {
    let old_calls: BTreeSet<String> = old.syscalls()?.into_iter().map(|(n, _)| n).collect();
    let mut d = Diff {
        new_syscalls: new
            .syscalls()?
            .into_iter()
            .filter(|(n, _)| !old_calls.contains(n))
            .collect(),
        ..Default::default()
    };
    let (po, pn) = (old.parse(headers)?, new.parse(headers)?);
    let (co, cn) = (constants(&po), constants(&pn));
    let prefixes: BTreeSet<&str> = FLAG_FAMILIES
        .iter()
        .flat_map(|(_, _, f)| f.iter().copied())
        .collect();
    for (name, v) in &cn {
        if prefixes.iter().any(|p| name.starts_with(p)) && co.get(name) != Some(v) {
            d.new_flags.push((name.clone(), *v));
        }
    }
    let (so, sn) = (sizes(&po), sizes(&pn));
    for (name, size) in &sn {
        if let Some(old_size) = so.get(name) {
            if old_size != size {
                d.grown.push((name.clone(), *old_size, *size));
            }
        }
    }
    Ok(d)
}

/// Probing specs for what changed only.
pub fn generate(
    d: &Diff,
    signatures: &[Signature],
    numbers: &[(String, u32)],
    parsed: &Parsed,
    opts: &GenOptions,
) -> Specs {
    let mut specs = Specs::new();
    let sig = |n: &str| signatures.iter().find(|s| s.name == n);
    for (name, nr) in &d.new_syscalls {
        let text = match sig(name) {
            Some(s) => spec_text(s, &probes(s, parsed), opts),
            None => {
                // No signature yet: call it with zeros, so a regression suite still pins it.
                let s = Signature {
                    name: name.clone(),
                    params: Vec::new(),
                    origin: format!("asm/unistd_64.h (number {nr})"),
                };
                spec_text(&s, &probes(&s, parsed), opts)
            }
        };
        specs.insert(format!("diff-{name}.yaml"), text);
    }
    // New flags: for every syscall whose flags argument takes that family, a case with the flag.
    let mut by_call: BTreeMap<String, Vec<super::Case>> = BTreeMap::new();
    for (flag, value) in &d.new_flags {
        for (call, param, families) in FLAG_FAMILIES {
            if !families.iter().any(|f| flag.starts_with(f)) {
                continue;
            }
            let Some(s) = sig(call) else { continue };
            if !numbers.iter().any(|(n, _)| n == call) {
                continue;
            }
            let Some(i) = s.params.iter().position(|p| p.name == *param) else {
                continue;
            };
            let mut args: Vec<String> = (0..s.params.len())
                .map(|j| baseline(s, j, parsed))
                .collect();
            args[i] = flag.clone();
            by_call
                .entry(call.to_string())
                .or_default()
                .push(super::Case {
                    comment: format!("{param}: the new flag {flag} ({value:#x})"),
                    name: format!("{call} with {param} {flag}"),
                    args,
                });
        }
    }
    // Grown structs: the old size, the new size, and past the new size with a non-zero tail.
    for (name, old, new) in &d.grown {
        for s in signatures {
            let Some(i) = s
                .params
                .iter()
                .position(|p| p.points_to.as_deref() == Some(name.as_str()))
            else {
                continue;
            };
            let Some(size_at) = s
                .params
                .get(i + 1)
                .filter(|p| p.role == Role::Size)
                .map(|_| i + 1)
            else {
                continue;
            };
            if !numbers.iter().any(|(n, _)| *n == s.name) {
                continue;
            }
            let base: Vec<String> = (0..s.params.len())
                .map(|j| baseline(s, j, parsed))
                .collect();
            let mut tail = vec!["00"; new + 8];
            if let Some(l) = tail.last_mut() {
                *l = "01";
            }
            for (size, buf, why) in [
                (
                    *old,
                    format!("{{struct: {name}}}"),
                    format!("the old size ({old})"),
                ),
                (
                    *new,
                    format!("{{struct: {name}}}"),
                    format!("the new size ({new})"),
                ),
                (
                    new + 8,
                    format!("{{bytes: \"{}\"}}", tail.join(" ")),
                    "past the new size, non-zero tail".to_string(),
                ),
            ] {
                let mut a = base.clone();
                a[i] = buf;
                a[size_at] = size.to_string();
                by_call
                    .entry(s.name.clone())
                    .or_default()
                    .push(super::Case {
                        comment: format!("struct {name} grew from {old} to {new} bytes: {why}"),
                        name: format!("{} with {name} of {size} bytes", s.name),
                        args: a,
                    });
            }
        }
    }
    for (call, cases) in by_call {
        if let Some(s) = sig(&call) {
            specs
                .entry(format!("diff-{call}.yaml"))
                .or_insert_with(|| spec_text(s, &cases, opts));
        }
    }
    specs
}
