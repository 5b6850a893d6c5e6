//! From the spec as written to the checked [`Model`]: names resolved (syscalls, constants,
//! errnos, structs, saved values), layouts computed, table rows expanded, every value typed (no
//! Lua: that is the emitter's). Problems are collected, each with its position and a
//! suggestion where one helps.

use crate::diag::{did_you_mean, Diagnostic};
use crate::layout::{Layout, Layouts};
use crate::linux::Arch;
use crate::model::{self, Int, Model, Step};
use crate::spec::node::{At, Pos};
use crate::spec::types;
use std::collections::{BTreeSet, HashMap, HashSet};

mod buffers;
mod cases;
mod expect;
mod ints;
mod names;
mod process;
mod structs;

/// How to check a spec.
#[derive(Debug, Clone)]
pub struct Options {
    /// The path reports use for the spec.
    pub file: String,
    /// The architecture whose syscall table names resolve in.
    pub arch: Arch,
    /// Constants and structs from the headers a spec names (`headers:`), when available.
    pub headers: Option<std::sync::Arc<dyn HeaderProvider>>,
    /// The profile names the spec's project defines (`minimal` and those of its
    /// `provium.toml`); `profile:` must be one of them. `None`: not checked.
    pub profiles: Option<Vec<String>>,
    /// Cases with their own credentials run isolated, each in a forked child, many per round
    /// trip (the default); `false` runs each in a fresh worker (the slower path, kept as the
    /// baseline that benchmarks and comparisons use).
    pub fork_isolated: bool,
    /// The kernel the spec is compiled for, when it has names of its own (a build tree's
    /// syscall table), or when other kernels of the run have names it lacks.
    pub kernel: Option<std::sync::Arc<KernelNames>>,
    /// The system call ABI the spec's calls are made under: names resolve in its table, and a
    /// case calling a name it lacks is skipped with why.
    pub abi: crate::linux::Abi,
    /// Whether the run named `abi` (`--abi`): then a spec whose `abi:` does not list it skips;
    /// otherwise the spec's first `abi:` is used.
    pub abi_chosen: bool,
    /// Profiles written for ABIs (`abi = "i386"` in provium.toml): a spec booting one without
    /// its own `abi:` takes the profile's.
    pub profile_abis: std::collections::BTreeMap<String, Vec<crate::linux::Abi>>,
    /// Profiles that do not resolve, and why: a spec naming one is refused at `profile:`.
    pub profile_problems: std::collections::BTreeMap<String, String>,
}

/// The syscall names one kernel of a run knows, and those only other kernels of the run know.
#[derive(Debug, Clone, Default)]
pub struct KernelNames {
    /// What reports call the kernel (`6.1.0-57-cloud-amd64`).
    pub label: String,
    /// Its own table (name → number), from its uapi headers; `None`: the built-in table.
    pub syscalls: Option<std::collections::BTreeMap<String, i64>>,
    /// Syscalls other kernels of the run have and this one lacks, with their numbers there: a
    /// case that calls one is checked as it is written and skipped on this kernel, with why.
    pub elsewhere: std::collections::BTreeMap<String, i64>,
}

impl Options {
    /// Options for the spec `file`, on x86_64, without headers.
    pub fn new(file: impl Into<String>) -> Options {
        Options {
            file: file.into(),
            arch: Arch::X86_64,
            headers: None,
            profiles: None,
            fork_isolated: true,
            kernel: None,
            abi: crate::linux::Abi::X86_64,
            abi_chosen: false,
            profile_abis: Default::default(),
            profile_problems: Default::default(),
        }
    }
}

/// Kernel headers as a source of constants and struct layouts (see `headers::`).
pub trait HeaderProvider: std::fmt::Debug + Send + Sync {
    /// Loads headers by include name; an error is reported at the `headers:` entry.
    /// `profile` is the spec's profile, which may name its own include tree; `abi` the ABI the
    /// spec is compiled for (i386's: the headers preprocessed with `-m32`; arm64's: its own
    /// `asm/` headers).
    fn load(
        &self,
        profile: &str,
        names: &[String],
        abi: crate::linux::Abi,
    ) -> Result<HeaderSet, String>;

    /// The parameters of a syscall by name (`["fd", "buf", "count"]`; a parameter the header
    /// leaves unnamed is given by its type), from the kernel's `include/linux/syscalls.h` when
    /// the provider has it. A call given more arguments is an error, and messages name the
    /// parameter. `None`: not known here, nothing is checked.
    fn syscall_params(&self, _syscall: &str) -> Option<Vec<String>> {
        None
    }

    /// The uapi header that defines `name` (`linux/ipc.h` for `IPC_PRIVATE`), for the hint of a
    /// constant the spec does not know: asked only on that error path. `None`: no header does,
    /// or the provider cannot tell.
    fn defining(&self, _name: &str) -> Option<String> {
        None
    }
}

/// What a spec's `headers:` made available.
#[derive(Debug, Clone, Default)]
pub struct HeaderSet {
    /// Constants by name.
    pub constants: HashMap<String, i64>,
    /// Struct layouts.
    pub layouts: Vec<Layout>,
    /// Why the kernel the spec is compiled for lacks some of the headers, which were read from
    /// another kernel of the run instead (`linux/kacs.h is not among 6.1.0-57's headers`): the
    /// spec checks as written, and every case skips on this kernel with that reason.
    pub absent: Option<String>,
}

/// The address agents guarantee unmapped (`provium.bad_ptr`).
pub const BAD_POINTER: i64 = 0x1000;

/// A buffer argument: its contents, and sub-buffers reached through pointers in it.
#[derive(Debug, Clone)]
struct Buffer {
    data: model::Data,
    subs: Vec<(usize, Buffer)>,
    output: bool,
}

enum Arg {
    Int(Int),
    Buf(Buffer),
}

struct Packed {
    pieces: Vec<model::Piece>,
    subs: Vec<(usize, Buffer)>,
}

struct Checker<'a> {
    opts: &'a Options,
    source: &'a str,
    diags: Vec<Diagnostic>,
    constants: HashMap<String, i64>,
    const_order: Vec<String>,
    syscalls: Vec<(String, i64)>,
    layouts: Layouts,
    saved: BTreeSet<String>,
    /// Reads of saved values, to check that something saves them.
    reads: Vec<(String, Pos)>,
    profile: String,
    /// Cases expanded so far (tables and matrices of every case count).
    expanded: usize,
    /// The row being expanded (`row` in `lua:` blocks).
    row: Vec<(String, model::RowValue)>,
    /// The syscall whose arguments are being checked (suggestions prefer its constants).
    in_call: Option<String>,
    /// Why the whole spec cannot run on the kernel it is compiled for (a header it lacks).
    unavailable_here: Option<String>,
    /// Why the case being checked cannot run there (a syscall it lacks).
    case_unavailable: Option<String>,
}

/// The most problems one spec reports: the rest are counted, not listed (a 100,000-row table
/// with the same mistake in every row says it once).
const MAX_DIAGNOSTICS: usize = 50;

/// How deep a spec's YAML may nest. The deepest real spec nests about 10 levels (a struct
/// inside a buffer inside an argument of a step of a case); every level costs stack in the
/// reader and in the checker, and a runner's worker thread has 2 MiB.
pub const MAX_YAML_DEPTH: usize = 32;

/// YAML 1.2, as editors and JSON Schema validators read it: only `true` and `false` are
/// booleans, so a column or value `n`, `y`, `on`, `off`, `yes` or `no` stays a string (YAML
/// 1.1's "Norway problem" would turn `{n: 1}` into a boolean key).
pub fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: MAX_YAML_DEPTH },
        strict_booleans: true,
    }
}

/// Checks a spec; all problems found are returned together.
pub fn check(source: &str, opts: &Options) -> Result<Model, Vec<Diagnostic>> {
    let spec: types::Spec = match serde_saphyr::from_str_with_options(source, yaml_options()) {
        Ok(s) => s,
        Err(e) => return Err(vec![crate::diag::from_yaml_error(&opts.file, source, &e)]),
    };
    // The spec's `abi:` (the ABIs it is written for), or its profile's, against the run's.
    let profile = spec
        .profile
        .as_ref()
        .map_or("minimal", |p| p.value.as_str());
    let written_for = match spec.abi.as_deref() {
        Some(node) => Some(spec_abis(node)),
        None => opts.profile_abis.get(profile).cloned().map(Ok),
    };
    let (abi_opts, not_for_this_abi) = match written_for {
        None => (None, None),
        Some(list) => match list {
            Err(mut d) => {
                d.file = opts.file.clone();
                return Err(vec![d]);
            }
            Ok(list) if list.contains(&opts.abi) => (None, None),
            // Checked as written (under its own ABI), and skipped in this run.
            Ok(list) if opts.abi_chosen => (
                Some(Options {
                    abi: list[0],
                    ..opts.clone()
                }),
                Some(format!(
                    "the spec is written for {} (`abi:`)",
                    list.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                )),
            ),
            // Written for another architecture's guests (`abi: aarch64` on an x86_64 run):
            // checked as written, and skipped here.
            Ok(list) if list.iter().all(|a| a.arch() != opts.abi.arch()) => (
                Some(Options {
                    abi: list[0],
                    ..opts.clone()
                }),
                Some(format!(
                    "the spec is written for {} guests (`abi:`), and this one is {}",
                    list[0].arch(),
                    opts.abi.arch()
                )),
            ),
            Ok(list) => (
                Some(Options {
                    abi: list[0],
                    ..opts.clone()
                }),
                None,
            ),
        },
    };
    let opts = abi_opts.as_ref().unwrap_or(opts);
    let mut c = Checker {
        opts,
        source,
        diags: Vec::new(),
        constants: HashMap::new(),
        const_order: Vec::new(),
        syscalls: Vec::new(),
        layouts: Layouts::empty(crate::layout::c::DataModel::of(opts.abi)),
        saved: BTreeSet::new(),
        reads: Vec::new(),
        profile: "minimal".into(),
        expanded: 0,
        row: Vec::new(),
        in_call: None,
        unavailable_here: not_for_this_abi,
        case_unavailable: None,
    };
    let model = c.spec(spec);
    let mut diags = c.diags;
    for d in &mut diags {
        d.file = opts.file.clone();
    }
    diags.sort_by_key(|d| d.pos);
    diags.dedup();
    if diags.len() > MAX_DIAGNOSTICS {
        let more = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        let mut last = Diagnostic::new(
            diags[MAX_DIAGNOSTICS - 1].pos,
            format!("… and {more} more problems like these"),
        );
        last.file = opts.file.clone();
        diags.push(last);
    }
    match model {
        Some(m) if diags.is_empty() => Ok(m),
        _ => Err(diags),
    }
}

/// The ABIs a spec's `abi:` names (`i386`, or `[x86_64, i386]`).
fn spec_abis(node: &crate::spec::node::Node) -> Result<Vec<crate::linux::Abi>, Diagnostic> {
    let mut out = Vec::new();
    for item in one_or_many(node) {
        match item.as_str().map(str::parse::<crate::linux::Abi>) {
            Some(Ok(a)) => out.push(a),
            Some(Err(e)) => return Err(Diagnostic::new(item.pos, e)),
            None => {
                return Err(Diagnostic::new(
                    item.pos,
                    "`abi:` is an ABI name or a list of them (`x86_64`, `i386`)",
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(Diagnostic::new(node.pos, "`abi:` names no ABI"));
    }
    Ok(out)
}

/// A value that may be one item or a list of them (`caps: CAP_X` or `caps: [CAP_X, CAP_Y]`).
fn one_or_many(node: &crate::spec::node::Node) -> Vec<&crate::spec::node::Node> {
    match &node.value {
        crate::spec::node::Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'a> Checker<'a> {
    /// A time limit as `provium test` takes it: positive, finite, at most [`MAX_TIMEOUT_SECS`].
    pub(super) fn timeout(&mut self, t: &crate::spec::node::At<f64>, key: &str) -> Option<f64> {
        match check_timeout(t.value) {
            Ok(v) => Some(v),
            Err(why) => {
                self.error(t.pos, format!("`{key}:` {why}"));
                None
            }
        }
    }

    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(pos, message));
    }

    pub(super) fn error_help(
        &mut self,
        pos: Pos,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::new(pos, message);
        d.help = help;
        self.diags.push(d);
    }

    /// The column of text inside a (possibly quoted) scalar at `pos`.
    pub(super) fn inner_pos(&self, pos: Pos, offset: usize) -> Pos {
        let at = crate::diag::byte_offset(self.source, pos);
        let quoted = matches!(self.source.as_bytes().get(at), Some(b'"' | b'\''));
        Pos {
            line: pos.line,
            col: pos.col + offset as u32 + quoted as u32,
        }
    }

    pub(super) fn spec(&mut self, spec: types::Spec) -> Option<Model> {
        if let (Some(p), Some(known)) = (&spec.profile, &self.opts.profiles) {
            if !known.contains(&p.value) {
                let help = crate::diag::did_you_mean(&p.value, known.iter().map(String::as_str))
                    .or_else(|| Some(format!("profiles here: {}", known.join(", "))));
                self.error_help(
                    p.pos,
                    format!(
                        "unknown profile `{}` (profiles come from the nearest provium.toml)",
                        p.value
                    ),
                    help,
                );
            }
        }
        let profile = spec
            .profile
            .as_ref()
            .map_or("minimal", |p| p.value.as_str());
        if let Some(why) = self.opts.profile_problems.get(profile) {
            let pos = spec
                .profile
                .as_ref()
                .map_or(Pos { line: 1, col: 1 }, |p| p.pos);
            self.error(pos, why.clone());
        }
        if !spec.headers.is_empty() {
            self.profile = spec
                .profile
                .as_ref()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| "minimal".into());
            self.headers(&spec.headers);
        }
        self.constants(&spec.constants);
        for (name, nr) in &spec.syscalls.0 {
            if !is_ident(&name.value) {
                self.error(
                    name.pos,
                    format!("`{}` is not a valid syscall name", name.value),
                );
            }
            self.syscalls.push((name.value.clone(), nr.value));
        }
        self.structs(&spec.structs);
        let requires = spec.requires.as_ref().map(|r| self.requires(r));
        let setup: Vec<Step> = spec
            .setup
            .iter()
            .filter_map(|s| self.step(s, true))
            .collect();
        // A setup call this ABI cannot make as written (`mmap` under i386): no case can run.
        if let Some(why) = self.case_unavailable.take() {
            self.unavailable_here
                .get_or_insert(format!("its setup: {why}"));
        }
        let mut cases = Vec::new();
        for case in &spec.cases {
            cases.extend(self.case(case));
        }
        if spec.cases.is_empty() {
            self.error(Pos { line: 1, col: 1 }, "the spec has no `cases:`");
        }
        let teardown: Vec<Step> = spec
            .teardown
            .iter()
            .filter_map(|s| self.step(s, true))
            .collect();
        let reads = std::mem::take(&mut self.reads);
        for (name, pos) in reads {
            let ready = crate::READY_MADE.iter().map(|(n, _)| *n);
            if !self.saved.contains(&name) && !ready.clone().any(|n| n == name) {
                if name == "repeat" {
                    self.error(
                        pos,
                        "`$repeat` is the count of a repetition: it goes in a case with `repeat:`",
                    );
                    continue;
                }
                let hint = did_you_mean(&name, self.saved.iter().map(String::as_str).chain(ready));
                self.error_help(
                    pos,
                    format!("`${name}` is never saved (add `save: {name}` to an earlier step)"),
                    hint,
                );
            }
        }
        let mut names = HashSet::new();
        for c in &mut cases {
            if !names.insert(c.name.clone()) {
                let mut n = 2;
                while names.contains(&format!("{} ({n})", c.name)) {
                    n += 1;
                }
                c.name = format!("{} ({n})", c.name);
                names.insert(c.name.clone());
            }
        }
        Some(Model {
            file: self.opts.file.clone(),
            suite: spec
                .suite
                .map(|s| s.value)
                .unwrap_or_else(|| self.opts.file.clone()),
            profile: spec
                .profile
                .map(|p| p.value)
                .unwrap_or_else(|| "minimal".into()),
            fixture: spec.fixture.map(|f| f.value),
            timeout: spec.timeout.and_then(|t| self.timeout(&t, "timeout")),
            skip: self.unavailable_here.take(),
            share_vm: spec.share_vm.map(|s| s.value).unwrap_or(false),
            fork_isolated: self.opts.fork_isolated,
            abi: self.opts.abi,
            requires,
            layouts: self.layouts.clone(),
            setup,
            teardown,
            cases,
        })
    }

    pub(super) fn headers(&mut self, headers: &[At<String>]) {
        let Some(provider) = self.opts.headers.clone() else {
            self.error(
                headers[0].pos,
                "this build cannot read kernel headers; remove `headers:` or use `provium`",
            );
            return;
        };
        let names: Vec<String> = headers.iter().map(|h| h.value.clone()).collect();
        match provider.load(&self.profile, &names, self.opts.abi) {
            Ok(set) => {
                if let Some(why) = set.absent {
                    self.unavailable_here.get_or_insert(why);
                }
                for (k, v) in set.constants {
                    self.constants.entry(k).or_insert(v);
                }
                for l in set.layouts {
                    self.layouts.insert(l);
                }
            }
            Err(e) => self.error(headers[0].pos, e),
        }
    }
}

#[cfg(test)]
mod tests;

/// The longest time limit anything may be given: a week. Longer is a typo (or `1e308`), and a
/// deadline must stay representable. The runtime refuses the same (`provium.timeout`,
/// `--timeout`, `vm:boot{timeout}`).
pub const MAX_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// Checks a time limit in seconds: positive, finite, at most a week.
pub fn check_timeout(secs: f64) -> Result<f64, String> {
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("expected a positive number of seconds, got {secs}"));
    }
    if secs > MAX_TIMEOUT_SECS {
        let shown = if secs < 1e9 {
            secs.to_string()
        } else {
            format!("{secs:e}")
        };
        return Err(format!(
            "{shown} s is more than the limit of {MAX_TIMEOUT_SECS} s (a week)"
        ));
    }
    Ok(secs)
}
