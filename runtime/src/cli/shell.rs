//! `provium completions SHELL` and `provium man`: shell completions and the manual page,
//! generated from the command line definition itself (clap_complete, clap_mangen), so they
//! cannot miss an option.

use anyhow::Result;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per subcommand (`provium-test.1`, …) into this directory instead of
    /// printing `provium.1`.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub fn completions(args: CompletionArgs) -> Result<u8> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "provium", &mut std::io::stdout());
    Ok(super::EXIT_OK)
}

pub fn man(args: ManArgs) -> Result<u8> {
    let cmd = super::Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(super::EXIT_OK)
}
