//! `provium junit merge OUT IN...`: one report from the reports of CI shards.

use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Combine shard reports (`--partition` runs) into one.
    Merge {
        /// The merged report to write.
        out: PathBuf,
        /// The shards' reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<u8> {
    match args.command {
        Command::Merge { out, inputs } => {
            let report = crate::report::junit::merge(&inputs)?;
            crate::report::junit::write_report(&report, &out)?;
            anstream::eprintln!(
                "merged {} report(s): {} tests, {} failures, {} errors, {} skipped → {}",
                inputs.len(),
                report.tests,
                report.failures,
                report.errors,
                report.skipped,
                out.display()
            );
            Ok(if report.failures + report.errors == 0 {
                super::EXIT_OK
            } else {
                super::EXIT_FAILED
            })
        }
    }
}
