//! Reporters: peers that consume the run's events. Adding one is one file implementing
//! [`Reporter::report`]; the terminal, JUnit, KTAP and JSON reporters are examples.

pub mod differences;
pub mod html;
pub mod json;
pub mod junit;
pub mod ktap;
pub mod matrix;
pub mod style;
pub mod terminal;

use crate::event::RunEvent;

/// Receives every event of a run, in order (see [`RunEvent`]).
/// How a reporter writes the file a user named (`--junit`, `--html`): the command passes its
/// writer (atomic, and streaming to pipes), so that reporters need nothing below the event
/// layer.
pub type WriteFile = fn(&std::path::Path, &[u8]) -> std::io::Result<()>;

pub trait Reporter {
    fn report(&mut self, event: &RunEvent);

    /// Called after the run: a reporter that writes a file says here if it could not.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Several reporters as one.
#[derive(Default)]
pub struct Reporters(pub Vec<Box<dyn Reporter>>);

impl Reporters {
    pub fn push(&mut self, r: impl Reporter + 'static) {
        self.0.push(Box::new(r));
    }
}

impl Reporter for Reporters {
    fn report(&mut self, event: &RunEvent) {
        for r in &mut self.0 {
            r.report(event);
        }
    }

    /// Every reporter finishes; the first failure is returned.
    fn finish(&mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for r in &mut self.0 {
            let result = r.finish();
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
