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

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The profile to boot.
    #[arg(long, default_value = "minimal")]
    profile: String,
    /// Another kernel: an installed release (`6.12`), an image, or a build tree.
    #[arg(long)]
    kernel: Option<String>,
    /// Run this command through the guest's shell, print what it prints, and exit with its
    /// status (the VM is resumed from the profile's fixture).
    #[arg(short = 'c', value_name = "COMMAND")]
    command: Option<String>,
    /// Keep the VM's run directory (console log) and print it.
    #[arg(long)]
    keep: bool,
}

fn profile_for(
    args: &ShellArgs,
) -> Result<(
    crate::machine::profile::Profiles,
    crate::machine::profile::Profile,
)> {
    let cwd = std::env::current_dir()?;
    let mut profiles = crate::machine::profile::Profiles::discover(&cwd)?;
    if let Some(k) = &args.kernel {
        let target = crate::machine::kernels::resolve(k)?;
        profiles = profiles.with_kernel(&target.image, target.modules.as_deref());
    }
    let profile = profiles.get(&args.profile)?;
    Ok((profiles, profile))
}

/// `provium shell`: an interactive busybox shell in a VM on this terminal (as `vng` gives), or
/// one command with `-c`.
pub fn shell(args: ShellArgs) -> Result<u8> {
    use std::io::{IsTerminal, Write};
    let (profiles, profile) = profile_for(&args)?;
    if args.keep {
        crate::machine::cleanup::keep_run_dirs();
    }
    if let Some(command) = &args.command {
        // One command: the profile's fixture is resumed, as a test's VM would be.
        let cwd = std::env::current_dir()?;
        let uses = crate::lua::fixture::discover(&cwd, profiles, true)?;
        let def = crate::fixture::Definition {
            name: profile.name.clone(),
            source: crate::fixture::Source::Profile {
                profile: profile.name.clone(),
                opts: Default::default(),
            },
        };
        let mut vm = match uses.fixtures.resume_def(&def) {
            Ok(vm) => vm,
            Err(_) => crate::machine::vm::Vm::boot(&profile, &Default::default())?,
        };
        let result = vm.root().exec(crate::protocol::ExecCall {
            argv: vec![command.clone()],
            shell: true,
            env: vec![("PATH".into(), "/bin:/sbin:/usr/bin:/usr/sbin".into())],
            cwd: None,
            stdin: Vec::new(),
            timeout_ms: 0,
        })?;
        std::io::stdout().write_all(&result.stdout)?;
        std::io::stderr().write_all(&result.stderr)?;
        print_kept(&vm);
        let _ = vm.shutdown();
        let status = match result.termination {
            Some(crate::protocol::Termination::Exited(code)) => code.clamp(0, 255) as u8,
            Some(_) | None => super::EXIT_FAILED,
        };
        if result.truncated {
            // What was asked for was not all delivered: said, and not a success.
            super::say(&format!(
                "provium shell: the command's output was cut: the agent keeps at most {} MiB \
                 of each stream (redirect it to a file in the guest and read that in parts)",
                crate::protocol::EXEC_OUTPUT_LIMIT >> 20
            ));
            return Ok(status.max(super::EXIT_FAILED));
        }
        return Ok(status);
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!("an interactive shell needs a terminal; run one command with `provium shell -c COMMAND`");
    }
    // A cold boot with the guest's /dev/hvc0 on this terminal (QEMU puts it in raw mode).
    let opts = crate::machine::vm::BootOptions {
        terminal: true,
        keep_run_dir: args.keep,
        ..Default::default()
    };
    super::say(&format!(
        "provium shell: booting `{}`; `exit` or Ctrl-D leaves",
        profile.name
    ));
    let mut vm = crate::machine::vm::Vm::boot(&profile, &opts)?;
    let info = vm.info().clone();
    super::say(&format!(
        "provium shell: {} ({}, {})",
        info.kernel_release, info.accel, info.transport
    ));
    let term = std::env::var("TERM").unwrap_or_else(|_| "vt100".into());
    // The shell owns /dev/hvc0 as its controlling terminal, so job control and Ctrl-C work.
    // setsid runs as a child of this shell (not exec'd: as a process group leader it would
    // fork and return at once), and the job lasts as long as the interactive shell.
    let job = vm.root().background(crate::protocol::ExecCall {
        argv: vec!["setsid -c sh -i </dev/hvc0 >/dev/hvc0 2>&1; status=$?; exit $status".into()],
        shell: true,
        env: vec![
            ("PATH".into(), "/bin:/sbin:/usr/bin:/usr/sbin".into()),
            ("HOME".into(), "/".into()),
            ("TERM".into(), term),
            ("PS1".into(), format!("{} # ", info.kernel_release)),
        ],
        cwd: None,
        stdin: Vec::new(),
        timeout_ms: 0,
    })?;
    let code = loop {
        let r = vm
            .root()
            .job_wait(job, std::time::Duration::from_secs(3600))?;
        // What the shell could not put on the terminal (it could not open it) comes back here.
        std::io::stderr().write_all(&r.stderr)?;
        match r.termination {
            Some(crate::protocol::Termination::Exited(c)) => break c.clamp(0, 255) as u8,
            Some(_) => break super::EXIT_FAILED,
            None => continue,
        }
    };
    print_kept(&vm);
    let _ = vm.shutdown();
    Ok(code)
}

fn print_kept(vm: &crate::machine::vm::Vm) {
    if let Some(dir) = &vm.info().run_dir {
        super::say(&format!("provium shell: kept {dir} (its console.log)"));
    }
}
