//! The `provium` command.
//!
//! Exit codes (as cargo-nextest's): 0 success; 1 a test failed or errored (or `doctor` found a
//! problem); 2 usage or configuration error; 130 interrupted.

mod bench;
mod check;
mod complete;
mod doctor;
mod fixture;
mod gen;
mod headers;
mod init;
mod junit;
mod kernel;
mod kernels;
mod project;
mod shell;
mod test;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// Tests Linux kernels where they run: raw syscalls in QEMU VMs, from YAML specs or Lua.
#[derive(Debug, Parser)]
#[command(name = "provium", version = crate::event::PROVIUM_VERSION, long_about = None)]
pub struct Cli {
    /// More diagnostics (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// When to colour: auto (a terminal; NO_COLOR and CLICOLOR_FORCE are honoured), always,
    /// never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starter project: provium.toml, a first spec and Lua test, editor support.
    Init(init::Args),
    /// Run Lua test files and YAML specs in VMs.
    Test(test::Args),
    /// Validate specs (and Lua syntax) without booting anything.
    Check(check::CheckArgs),
    /// Fixtures: list, build, clean, and find stale snapshots.
    Fixture(fixture::Args),
    /// Work with JUnit reports (merge shard reports).
    Junit(junit::Args),
    /// Print the Lua test a spec compiles to.
    Compile(check::CompileArgs),
    /// Write probing specs from kernel headers (one per syscall).
    Gen(gen::GenArgs),
    /// Run specs and write what the kernel answered into them as expectations.
    Record(gen::RecordArgs),
    /// Print what the header parser reads: syscalls, errnos, constants, structs, signatures.
    Headers(headers::Args),
    /// Check what Provium needs on this host, and say how to fix what is missing.
    Doctor(doctor::Args),
    /// List the kernels installed in the cache (what `--kernel` can name).
    Kernels,
    /// Configure and build a kernel tree for Provium (your own syscalls, your options).
    Kernel(kernel::Args),
    /// Measure boot time, round trips, batching and buffers against in-run baselines.
    Bench(bench::Args),
    /// A shell in a VM on this terminal, or one command with -c.
    Shell(shell::ShellArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionArgs),
    /// Print the manual page (roff), or write one per subcommand with --dir.
    Man(shell::ManArgs),
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// No test was selected (an empty directory, a filter that matches nothing): nothing ran, as
/// cargo-nextest's exit code 4.
pub const EXIT_NO_TESTS: u8 = 4;

/// `--arch`: x86_64 or aarch64 (or their Debian names, amd64 and arm64).
pub fn parse_arch(text: &str) -> Result<provium_compiler::linux::Arch, String> {
    text.parse()
}

/// `--abi`: x86_64, i386 or aarch64 (and their other names).
pub fn parse_abi(text: &str) -> Result<provium_compiler::linux::Abi, String> {
    text.parse()
}

/// `-j N`: at least one.
pub fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 file at a time".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A message on stderr; a closed stderr drops it (never a panic).
pub fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(anstream::stderr(), "{text}");
}

pub fn main() -> ExitCode {
    // `COMPLETE=bash provium …` (what the script of `provium completions bash` runs at each TAB)
    // answers with completions and exits here.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .bin("provium")
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    // Every output stream (anstream) follows the one choice.
    match cli.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    init_tracing(cli.verbose);
    crate::machine::signals::install();
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Test(args) => test::run(args, cli.verbose > 0),
        Command::Check(args) => check::check(args),
        Command::Compile(args) => check::compile(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Kernels => kernels::run(),
        Command::Kernel(args) => kernel::run(args),
        Command::Headers(args) => headers::run(args),
        Command::Gen(args) => gen::gen(args),
        Command::Record(args) => gen::record(args),
        Command::Bench(args) => bench::run(args),
        Command::Fixture(args) => fixture::run(args),
        Command::Junit(args) => junit::run(args),
        Command::Shell(args) => shell::shell(args),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
    };
    // Whatever a file abandoned at its timeout still holds (a run directory, a process) goes now.
    crate::machine::cleanup::cleanup_all();
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`provium compile x | head`): nothing more to say, as other
        // Unix tools.
        Err(e) if broken_pipe(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            crate::report::style::error(&format!("{e:#}"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
