//! The plan of a run: the tests each selected file holds, found before anything boots by
//! running the file in list mode (VM calls answer neutral values and boot nothing), a few
//! milliseconds a file. Reports use it to name every selected test, whatever happens later.

use super::discover::{FileKind, TestFile};
use super::{run_file, RunConfig};
use crate::event::{PlannedFile, PlannedTest};
use crate::lua;

/// Plans `files` on up to `config.jobs` threads; the result is in the order of `files`.
pub fn plan(files: &[TestFile], config: &RunConfig) -> Vec<PlannedFile> {
    let threads = config.jobs.clamp(1, files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut planned: Vec<Option<PlannedFile>> = vec![None; files.len()];
    let slots = std::sync::Mutex::new(&mut planned);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let thread = std::thread::Builder::new().stack_size(super::schedule::WORKER_STACK);
            let _ = thread.spawn_scoped(scope, || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                let mut p = plan_file(file, config);
                p.kernel = config.kernel_of(file).map(|k| k.target.label.clone());
                crate::machine::sync::lock(&slots)[i] = Some(p);
            });
        }
    });
    files
        .iter()
        .zip(planned)
        .map(|(f, p)| {
            p.unwrap_or_else(|| {
                let mut p = unplanned(f, "the plan did not finish");
                p.kernel = config.kernel_of(f).map(|k| k.target.label.clone());
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
        kernel: None,
    }
}

/// One file's tests, by a list-mode run of it.
pub fn plan_file(file: &TestFile, config: &RunConfig) -> PlannedFile {
    let mut listing = config.clone();
    listing.settings.list_only = true;
    // A spec's suite name comes from its `suite:` key.
    let suite = match file.kind {
        FileKind::Spec => match (config.compile)(&file.path, &file.display) {
            Ok(c) => c.model.suite.clone(),
            Err(e) => return unplanned(file, &e.problem().message),
        },
        FileKind::Lua => file.display.clone(),
    };
    let report = run_file(file, 0, &listing, lua::silent(), None);
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
        plan_error: report.file_error.map(|p| p.message),
        kernel: None,
    }
}
