//! `provium fixture list|build|clean|stale`: the fixtures of the project and their cached
//! snapshots.

use crate::machine::profile::Profiles;
use crate::report::style::{paint, BOLD, DIM, OK, WARN};
use anyhow::Result;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Fixtures defined here (fixtures/*.lua, [fixture.NAME]) and whether a current build exists.
    List,
    /// Build fixtures now (all defined ones if none are named); current builds are kept.
    Build {
        names: Vec<String>,
        /// Rebuild even when a current build exists.
        #[arg(long)]
        force: bool,
    },
    /// Remove cached builds (all of them if no fixture is named).
    Clean {
        names: Vec<String>,
        /// Remove only builds that no longer match their definition.
        #[arg(long)]
        stale: bool,
    },
    /// List cached builds that no longer match their definition (they are never resumed).
    Stale,
}

pub fn run(args: Args) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let fixtures =
        crate::lua::fixture_script::discover(&cwd, Profiles::discover(&cwd)?, true)?.fixtures;
    let mut out = anstream::stdout();
    match args.command {
        Command::List => {
            let names = fixtures.names();
            if names.is_empty() {
                writeln!(
                    out,
                    "no fixtures defined in {} (fixtures/NAME.lua or [fixture.NAME] in provium.toml)",
                    fixtures.root.display()
                )?;
            }
            for name in names {
                let def = fixtures.find(&name)?;
                let state = match fixtures.cached(&def) {
                    Ok(Some((dir, _))) => paint(OK, &format!("built  {}", dir.display())),
                    Ok(None) => paint(DIM, "not built (built on first use)"),
                    Err(e) => paint(WARN, &format!("cannot tell: {e:#}")),
                };
                writeln!(out, "{:<20} {:<8} {state}", paint(BOLD, &name), def.kind())?;
            }
            // Profiles' own fixtures, built for plain `vm:boot()` calls.
            let defined = fixtures.names();
            for b in fixtures.built() {
                if defined.contains(&b.name) {
                    continue;
                }
                let state = if b.current {
                    paint(OK, &format!("built  {}", b.dir.display()))
                } else {
                    paint(WARN, &format!("stale  {}", b.dir.display()))
                };
                writeln!(out, "{:<20} {:<8} {state}", paint(BOLD, &b.name), "boot")?;
            }
            Ok(super::EXIT_OK)
        }
        Command::Build { names, force } => {
            let names = if names.is_empty() {
                fixtures.names()
            } else {
                names
            };
            let mut failed = 0;
            for name in names {
                let def = fixtures.find(&name)?;
                if force {
                    // Builds in use by another process stay; the new build is found first.
                    fixtures.clean(std::slice::from_ref(&name), false);
                }
                let started = Instant::now();
                let was_built = fixtures.cached(&def)?.is_some();
                let meta = match fixtures.ensure(&def) {
                    Ok(m) => m,
                    Err(e) => {
                        // A fixture that does not build is a failure, like a test's; the
                        // others are still built.
                        let tail = e
                            .console_tail()
                            .map(|c| format!("\nconsole tail:\n{c}"))
                            .unwrap_or_default();
                        crate::report::style::error(&format!("fixture `{name}`: {e}{tail}"));
                        failed += 1;
                        continue;
                    }
                };
                let what = if was_built { "current" } else { "built" };
                writeln!(
                    out,
                    "{} {name} ({:.1} s) {}",
                    paint(OK, what),
                    started.elapsed().as_secs_f64(),
                    paint(DIM, &meta.key)
                )?;
            }
            Ok(if failed == 0 {
                super::EXIT_OK
            } else {
                super::EXIT_FAILED
            })
        }
        Command::Clean { names, stale } => {
            let cleaned = fixtures.clean(&names, stale);
            let in_use = if cleaned.in_use > 0 {
                format!(
                    "; {} in use by a running provium, left alone",
                    cleaned.in_use
                )
            } else {
                String::new()
            };
            writeln!(
                out,
                "removed {} fixture build(s) from {}{in_use}",
                cleaned.removed,
                fixtures.cache().display()
            )?;
            Ok(super::EXIT_OK)
        }
        Command::Stale => {
            let stale: Vec<_> = fixtures
                .built()
                .into_iter()
                .filter(|b| !b.current)
                .collect();
            if stale.is_empty() {
                writeln!(out, "no stale fixture builds")?;
            }
            for b in stale {
                writeln!(
                    out,
                    "{:<20} {} {}",
                    b.name,
                    paint(DIM, &b.key),
                    b.dir.display()
                )?;
            }
            Ok(super::EXIT_OK)
        }
    }
}
