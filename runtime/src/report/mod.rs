//! Reporters: the terminal, JUnit XML and JSON lines.

pub mod json;
pub mod junit;
pub mod terminal;

use crate::run::discover::TestFile;
use crate::run::model::{FileReport, TestReport};
use crate::run::{Reporter, Summary};

/// Sends every event to several reporters.
pub struct Tee(pub Vec<Box<dyn Reporter>>);

impl Reporter for Tee {
    fn run_started(&mut self, files: &[TestFile]) {
        self.0.iter_mut().for_each(|r| r.run_started(files));
    }
    fn file_started(&mut self, file: &TestFile) {
        self.0.iter_mut().for_each(|r| r.file_started(file));
    }
    fn boot_started(&mut self, file: &TestFile, profile: &str) {
        self.0
            .iter_mut()
            .for_each(|r| r.boot_started(file, profile));
    }
    fn boot_finished(&mut self, file: &TestFile) {
        self.0.iter_mut().for_each(|r| r.boot_finished(file));
    }
    fn test_finished(&mut self, file: &TestFile, test: &TestReport) {
        self.0.iter_mut().for_each(|r| r.test_finished(file, test));
    }
    fn output(&mut self, file: &TestFile, text: &str) {
        self.0.iter_mut().for_each(|r| r.output(file, text));
    }
    fn file_finished(&mut self, file: &TestFile, report: &FileReport) {
        self.0
            .iter_mut()
            .for_each(|r| r.file_finished(file, report));
    }
    fn run_finished(&mut self, summary: &Summary) {
        self.0.iter_mut().for_each(|r| r.run_finished(summary));
    }
}
