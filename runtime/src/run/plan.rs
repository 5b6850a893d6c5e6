//! The plan of a run: the tests each selected file holds, found before anything boots by
//! running the file in list mode (VM calls answer invented, neutral values and boot nothing), a
//! few milliseconds a file. Reports use it to name every selected test, whatever happens later.
//!
//! A run is planned once: the plan that `--list` prints, that decides "no tests selected", and
//! that the scheduler completes reports from are the same value ([`Plan`]). Planning never
//! executes a test body and never boots a VM, on any kernel.
//!
//! A file whose top level uses VM answers (`if vm:syscall(...) > 0 then test(...) end`) may
//! define other tests when it really runs: its plan is provisional. Such a file runs even when
//! none of its planned tests is selected, and reports the tests it defines as it defines them.
//! Planning a file stops after [`PLAN_TIME_LIMIT`] (a loop waiting for an answer that planning
//! can only invent would never end); the file is then provisional too.

use super::discover::{FileKind, TestFile};
use super::{run_file, RunConfig};
use crate::event::{PlannedFile, PlannedTest};
use crate::lua;

pub use crate::lua::PLAN_TIME_LIMIT;

/// The files of a run (one per file and kernel) and what each is expected to report.
#[derive(Clone)]
pub struct Plan {
    pub files: Vec<TestFile>,
    pub planned: Vec<PlannedFile>,
}

impl Plan {
    /// Tests the plan selected.
    pub fn selected(&self) -> usize {
        self.planned.iter().map(|p| p.tests.len()).sum()
    }

    /// Whether anything will run: a selected test, or a file that cannot say before it runs.
    pub fn is_empty(&self) -> bool {
        self.planned
            .iter()
            .all(|p| p.tests.is_empty() && p.plan_error.is_none() && !p.provisional)
    }
}

/// Plans a run: `files` on each kernel of `config`, each planned once, in order. With a filter,
/// files none of whose tests are selected are left out of the run (not booted, not reported),
/// unless their plan is provisional or could not be made.
pub fn plan_run(files: Vec<TestFile>, config: &RunConfig) -> Plan {
    let files = config.expand(files);
    let planned = plan(&files, config);
    let (files, planned) = if config.filter.is_some() {
        files
            .into_iter()
            .zip(planned)
            .filter(|(_, p)| !p.tests.is_empty() || p.plan_error.is_some() || p.provisional)
            .unzip()
    } else {
        (files, planned)
    };
    Plan { files, planned }
}

/// Plans `files` on up to `config.jobs` threads; the result is in the order of `files`. A signal
/// stops planning: the files not planned yet say so, and the run reports them as not run.
pub fn plan(files: &[TestFile], config: &RunConfig) -> Vec<PlannedFile> {
    let listing = config.listing();
    let threads = config.jobs.clamp(1, files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut planned: Vec<Option<PlannedFile>> = vec![None; files.len()];
    let slots = std::sync::Mutex::new(&mut planned);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let thread = std::thread::Builder::new().stack_size(super::schedule::WORKER_STACK);
            let _ = thread.spawn_scoped(scope, || loop {
                if crate::machine::signals::interrupted().is_some() {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let mut p = plan_file(file, &listing);
                p.kernel = config.kernel_of(file).map(super::KernelRun::label);
                crate::machine::sync::lock(&slots)[i] = Some(p);
            });
        }
    });
    let why = match crate::machine::signals::interrupted() {
        Some(sig) => format!(
            "the run was interrupted by {} while it was planned",
            crate::machine::signals::name(sig)
        ),
        None => "the plan did not finish".to_string(),
    };
    files
        .iter()
        .zip(planned)
        .map(|(f, p)| {
            p.unwrap_or_else(|| {
                let mut p = unplanned(f, &why);
                p.kernel = config.kernel_of(f).map(super::KernelRun::label);
                p
            })
        })
        .collect()
}

fn unplanned(file: &TestFile, why: &str) -> PlannedFile {
    PlannedFile {
        path: file.display.clone(),
        suite: file.display.clone(),
        tests: Vec::new(),
        plan_error: Some(why.to_string()),
        provisional: false,
        kernel: None,
    }
}

/// One file's tests, by a list-mode run of it (`listing` has `list_only` set on every kernel).
fn plan_file(file: &TestFile, listing: &RunConfig) -> PlannedFile {
    // A spec's suite name comes from its `suite:` key.
    let suite = match file.kind {
        FileKind::Spec => match (listing.compile)(
            &file.path,
            &file.display,
            listing
                .kernel_of(file)
                .and_then(|k| k.settings.naming.as_deref()),
            listing.kernel_of(file).and_then(|k| k.settings.abi),
        ) {
            Ok(c) => c.model.suite.clone(),
            Err(e) => return unplanned(file, &e.problem().message),
        },
        FileKind::Lua => file.display.clone(),
    };
    let report = run_file(file, 0, listing, lua::silent(), None);
    // A compiled spec defines every case unconditionally (the emitter writes one `test()` per
    // case at the chunk's top level; conditions skip inside the test), so its plan is exact even
    // though its batches run at the top level on invented answers.
    let provisional =
        report.listing_stopped || (file.kind == FileKind::Lua && report.invented_answers > 0);
    PlannedFile {
        path: file.display.clone(),
        suite,
        tests: report
            .tests
            .into_iter()
            .map(|t| PlannedTest {
                name: t.name,
                location: t.location,
            })
            .collect(),
        // An error after invented answers (a top-level `assert(fd >= 3)`) or out of planning
        // time is not the file's: the file runs and says what it does.
        plan_error: report
            .file_error
            .filter(|_| !provisional)
            .map(|p| p.message),
        provisional,
        kernel: None,
    }
}
