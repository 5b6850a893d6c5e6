//! Running test files: discovery, filtering, a plan of the tests each file holds, scheduling
//! on worker threads, and one ordered stream of [`RunEvent`]s for the reporters.
//!
//! Every selected test appears in every report, whatever happens: the plan lists each file's
//! tests before anything boots, and a file that stops early (a lost VM, a timeout, an interrupt,
//! `--fail-fast`) reports the tests it never reached as not run.

pub mod discover;
pub mod environment;
pub mod filter;
pub mod headers;
pub mod last_run;
pub mod partition;
pub mod plan;
mod schedule;
pub mod specs;

use crate::event::{FileReport, Problem, RunEvent, Summary};
use crate::lua::control::{FileControl, DEFAULT_FILE_TIMEOUT};
use crate::lua::{self, Emit, SessionConfig, Settings};
use crate::machine::kernels::KernelTarget;
use crate::machine::profile::Profiles;
use discover::{FileKind, TestFile};
use filter::Filter;
use specs::SpecCompiler;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use plan::{plan, plan_run, Plan};

/// How to run.
#[derive(Clone)]
pub struct RunConfig {
    /// What every file's session shares.
    pub settings: Settings,
    pub filter: Option<Filter>,
    pub jobs: usize,
    pub fail_fast: bool,
    /// Compiles a YAML spec into the Lua chunk that runs it.
    pub compile: SpecCompiler,
    /// How long a file may run unless it says otherwise (`provium.timeout`, a spec's `timeout:`).
    pub timeout: Duration,
    /// `--kernel`: every file runs on each of these; empty, on the profiles' own kernels.
    pub kernels: Vec<KernelRun>,
}

/// One kernel (and ABI) of a run over several: the target, and the settings whose profiles and
/// fixtures boot it (fixtures are kept per kernel, as their keys include the kernel) and whose
/// ABI specs are compiled for.
#[derive(Clone)]
pub struct KernelRun {
    pub target: KernelTarget,
    pub settings: Settings,
}

impl KernelRun {
    /// What reports call this column: the kernel, and the ABI when it is not x86_64's
    /// (`6.1.0-57-cloud-amd64 i386`, `6.1.0-57-cloud-arm64 aarch64`): columns are arch ×
    /// kernel × ABI.
    pub fn label(&self) -> String {
        match self.settings.abi {
            None | Some(provium_compiler::linux::Abi::X86_64) => self.target.label.clone(),
            Some(abi) => format!("{} {abi}", self.target.label),
        }
    }
}

impl RunConfig {
    /// A run with `profiles` and the defaults: one file at a time, output captured, specs
    /// compiled, no fixtures, the default file timeout.
    pub fn new(profiles: Profiles) -> RunConfig {
        RunConfig {
            settings: Settings::new(profiles),
            filter: None,
            jobs: 1,
            fail_fast: false,
            compile: specs::compiler(),
            timeout: DEFAULT_FILE_TIMEOUT,
            kernels: Vec::new(),
        }
    }

    /// Runs every file on each of `targets`, in that order. Each compiles specs with its own
    /// names: a build tree's syscall table and uapi headers, and knowing which names only the
    /// other kernels have (cases that need them skip on this one).
    pub fn with_kernels(mut self, targets: Vec<KernelTarget>) -> RunConfig {
        let namings = kernel_namings(&targets);
        self.kernels = targets
            .into_iter()
            .zip(namings)
            .map(|(target, naming)| {
                let mut settings = self.settings.clone();
                settings.naming = naming;
                // Another architecture's kernel: specs compile for its own ABI, and Lua files
                // get its numbers as `provium.nr`.
                if Some(target.arch) != provium_compiler::linux::Arch::host() {
                    settings.abi = Some(target.arch.native_abi());
                }
                settings.profiles = settings
                    .profiles
                    .with_kernel(&target.image, target.modules.as_deref());
                if let Some(f) = &mut settings.fixtures {
                    f.fixtures = Arc::new(f.fixtures.with_profiles(settings.profiles.clone()));
                }
                KernelRun { target, settings }
            })
            .collect();
        self
    }

    /// Runs every spec under each of `abis` too (kernels × ABIs, kernel by kernel): on the
    /// default kernel when no kernel was given. x86_64 alone changes nothing. A kernel of
    /// another architecture runs the ABIs it has (its own stands for x86_64's: `--abi x86_64
    /// --abi i386 --arch aarch64` runs arm64's own once).
    pub fn with_abis(mut self, abis: &[provium_compiler::linux::Abi]) -> anyhow::Result<RunConfig> {
        if abis.is_empty() {
            return Ok(self);
        }
        if self.kernels.is_empty() {
            let target = crate::machine::kernels::default_target()?;
            self = self.with_kernels(vec![target]);
        }
        self.kernels = self
            .kernels
            .iter()
            .flat_map(|k| {
                let arch = k.target.arch;
                let mut own: Vec<provium_compiler::linux::Abi> = abis
                    .iter()
                    .map(|&a| if a.is_native() { arch.native_abi() } else { a })
                    .filter(|a| arch.abis().contains(a))
                    .collect();
                own.dedup();
                if own.is_empty() {
                    own.push(arch.native_abi());
                }
                own.into_iter().map(move |abi| {
                    let mut k = k.clone();
                    k.settings.abi = Some(abi);
                    k
                })
            })
            .collect();
        Ok(self)
    }

    /// The same run in list mode, on every kernel: VM calls answer invented values, nothing
    /// boots, test bodies do not run.
    pub fn listing(&self) -> RunConfig {
        let mut c = self.clone();
        c.settings.list_only = true;
        for k in &mut c.kernels {
            k.settings.list_only = true;
        }
        c
    }

    /// The kernel a file's run targets, in a run over several.
    pub fn kernel_of(&self, file: &TestFile) -> Option<&KernelRun> {
        file.kernel.and_then(|k| self.kernels.get(k))
    }

    /// The settings a file runs with: its kernel's, or the run's.
    fn settings_for(&self, file: &TestFile) -> &Settings {
        self.kernel_of(file)
            .map(|k| &k.settings)
            .unwrap_or(&self.settings)
    }

    /// The files of the run: each once, or once per kernel (file by file, so that every
    /// kernel's run of a file starts early). A spec runs under every ABI of the run; a Lua
    /// file chooses its ABI itself (`vm:abi`), so it runs once per kernel, under its own ABI.
    pub fn expand(&self, files: Vec<TestFile>) -> Vec<TestFile> {
        if self.kernels.is_empty() {
            return files;
        }
        let native = |k: &KernelRun| k.settings.abi.is_none_or(|a| a.is_native());
        let any_native = self.kernels.iter().any(native);
        files
            .into_iter()
            .flat_map(|f| {
                let kernels: Vec<usize> = (0..self.kernels.len())
                    .filter(|&k| {
                        f.kind == FileKind::Spec || !any_native || native(&self.kernels[k])
                    })
                    .collect();
                kernels.into_iter().map(move |k| TestFile {
                    kernel: Some(k),
                    ..f.clone()
                })
            })
            .collect()
    }
}

/// Each kernel's names in a run over `targets`: its own syscall table and headers (a build
/// tree's), and the syscalls only the others have. `None` for a kernel with nothing of either.
pub fn kernel_namings(
    targets: &[KernelTarget],
) -> Vec<Option<Arc<crate::lua::session::KernelNaming>>> {
    let tables: Vec<Option<std::collections::BTreeMap<String, i64>>> =
        targets.iter().map(kernel_syscalls).collect();
    let builtin = || -> std::collections::BTreeMap<String, i64> {
        provium_compiler::linux::Arch::X86_64
            .syscalls()
            .iter()
            .map(|(n, nr)| (n.to_string(), *nr as i64))
            .collect()
    };
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let own = tables[i].clone();
            let mine = own.clone().unwrap_or_else(builtin);
            let mut elsewhere = std::collections::BTreeMap::new();
            for (j, other) in tables.iter().enumerate() {
                if j == i {
                    continue;
                }
                for (name, nr) in other.clone().unwrap_or_else(builtin) {
                    if !mine.contains_key(&name) {
                        elsewhere.entry(name).or_insert(nr);
                    }
                }
            }
            let others: Vec<(String, Option<std::path::PathBuf>)> = targets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| (o.label.clone(), o.include.clone()))
                .collect();
            if own.is_none() && elsewhere.is_empty() && t.include.is_none() {
                return None;
            }
            Some(Arc::new(crate::lua::session::KernelNaming {
                names: Arc::new(provium_compiler::KernelNames {
                    label: t.label.clone(),
                    syscalls: own,
                    elsewhere,
                }),
                include: t.include.clone(),
                others,
            }))
        })
        .collect()
}

/// A kernel's syscall table from its own uapi headers (a build tree's), if it has them.
fn kernel_syscalls(t: &KernelTarget) -> Option<std::collections::BTreeMap<String, i64>> {
    let include = t.include.as_ref()?;
    let table = provium_compiler::headers::tree::HeaderTree::new(include)
        .syscalls()
        .ok()?;
    Some(table.into_iter().map(|(n, nr)| (n, nr as i64)).collect())
}

/// Runs `files` with up to `config.jobs` files at a time, sending every event of the run to
/// `sink` (in file order, whatever order the files finish in), and returns the summary that the
/// last event carries.
pub fn run(files: Vec<TestFile>, config: &RunConfig, sink: &mut dyn FnMut(&RunEvent)) -> Summary {
    let _in_progress = crate::machine::signals::RunInProgress::begin();
    run_plan(plan_run(files, config), config, sink)
}

/// Runs a plan made by [`plan_run`] with the same `config` (nothing is planned again).
pub fn run_plan(plan: Plan, config: &RunConfig, sink: &mut dyn FnMut(&RunEvent)) -> Summary {
    schedule::run(plan, config, sink)
}

/// Runs one file on the current thread; its events go to `emit`.
pub fn run_file(
    file: &TestFile,
    index: usize,
    config: &RunConfig,
    emit: Emit,
    control: Option<Arc<FileControl>>,
) -> FileReport {
    let filter = config.filter.clone().map(|f| {
        let display = file.display.clone();
        Rc::new(move |name: &str| f.matches(&display, name)) as lua::TestFilter
    });
    let mut settings = config.settings_for(file).clone();
    if let Some(own) = settings.profiles.nearest_for(&file.path) {
        if let Some(f) = &mut settings.fixtures {
            f.fixtures = Arc::new(f.fixtures.with_profiles(own.clone()));
        }
        settings.profiles = own;
    }
    let mut session = SessionConfig {
        index,
        emit,
        filter,
        control,
        ..SessionConfig::new(&file.display, settings)
    };
    let error_report = |problem: Problem| FileReport {
        path: file.display.clone(),
        file_error: Some(problem),
        started_at: crate::event::unix_now(),
        ..Default::default()
    };
    match file.kind {
        FileKind::Lua => match discover::read_test_file(&file.path) {
            Ok(code) => lua::run_chunk(session, &file.display, &code),
            Err(why) => error_report(Problem::new(format!("{}: {why}", file.display))),
        },
        FileKind::Spec => match (config.compile)(
            &file.path,
            &file.display,
            config.settings_for(file).naming.as_deref(),
            config.settings_for(file).abi,
        ) {
            Ok(compiled) => {
                let chunk = format!("{}.lua", file.display);
                session.source_map = Some(lua::SourceMap::new(
                    &chunk,
                    &file.display,
                    compiled.source_map.clone(),
                ));
                lua::run_chunk(session, &chunk, &compiled.lua)
            }
            Err(errors) => error_report(errors.problem()),
        },
    }
}
