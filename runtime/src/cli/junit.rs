//! `provium junit merge -o OUT IN...`: one report from the reports of CI shards.

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
        /// The merged report to write (never one of the inputs).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// The shards' reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

pub fn run(args: Args) -> Result<u8> {
    match args.command {
        Command::Merge {
            output: out,
            inputs,
        } => {
            // `merge shard-*.xml` once wrote over the first shard: an output that is an input
            // is refused.
            let same = |a: &std::path::Path, b: &std::path::Path| match (
                std::fs::canonicalize(a),
                std::fs::canonicalize(b),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            };
            if let Some(clash) = inputs.iter().find(|i| same(i, &out)) {
                anyhow::bail!(
                    "the output {} is also an input; name another file with -o",
                    clash.display()
                );
            }
            let report = crate::report::junit::merge(&inputs)?;
            crate::report::junit::write_report(&report, &out, crate::machine::paths::write_output)?;
            super::say(&format!(
                "merged {} report(s): {} tests, {} failures, {} errors, {} skipped → {}",
                inputs.len(),
                report.tests,
                report.failures,
                report.errors,
                report.skipped,
                out.display()
            ));
            Ok(if report.failures + report.errors == 0 {
                super::EXIT_OK
            } else {
                super::EXIT_FAILED
            })
        }
    }
}
