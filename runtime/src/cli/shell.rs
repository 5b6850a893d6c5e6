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

/// Prints the shell's registration script: at each TAB it runs `COMPLETE=<shell> provium -- …`,
/// so options, subcommands and values (installed kernels, the project's profiles) come from the
/// binary as it is now. Source it from the shell's startup rather than saving it, so that an
/// upgraded provium never answers an old script.
pub fn completions(args: CompletionArgs) -> Result<u8> {
    use clap_complete::env::EnvCompleter;
    let shell: &dyn EnvCompleter = match args.shell {
        clap_complete::Shell::Bash => &clap_complete::env::Bash,
        clap_complete::Shell::Zsh => &clap_complete::env::Zsh,
        clap_complete::Shell::Fish => &clap_complete::env::Fish,
        clap_complete::Shell::Elvish => &clap_complete::env::Elvish,
        clap_complete::Shell::PowerShell => &clap_complete::env::Powershell,
        other => anyhow::bail!("no completions for {other}"),
    };
    // The script runs this very binary at each TAB, wherever it is (target/release, ~/.cargo).
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "provium".into());
    let mut out = std::io::stdout().lock();
    shell.write_registration("COMPLETE", "provium", "provium", &me, &mut out)?;
    Ok(super::EXIT_OK)
}

/// The manual's EXIT STATUS section (roff), from the codes the command returns.
fn exit_status_section() -> String {
    let codes: &[(u8, &str)] = &[
        (super::EXIT_OK, "Everything selected passed (skips aside)."),
        (
            super::EXIT_FAILED,
            "A test failed or errored or was not run, a spec did not compile, `check` found \
             problems, or `doctor` found something missing.",
        ),
        (
            super::EXIT_USAGE,
            "Usage or configuration error: a bad flag, an unknown path, a bad provium.toml, a \
             report that would replace an input.",
        ),
        (
            super::EXIT_NO_TESTS,
            "No test was selected: nothing booted and no report was written.",
        ),
        (
            129,
            "Interrupted by SIGHUP (130 for SIGINT, 143 for SIGTERM): every VM was stopped, \
             every temporary directory removed, and the reports of what finished written, the \
             rest reported as not run.",
        ),
    ];
    let mut out = String::from(".SH \"EXIT STATUS\"\n");
    for (code, text) in codes {
        out.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff_text(text)));
    }
    out
}

/// The manual's ENVIRONMENT section (roff).
fn environment_section() -> String {
    let vars: &[(&str, &str)] = &[
        ("PROVIUM_HOME", "The cache (kernels, initramfs archives, fixtures); default ~/.cache/provium. It may be read-only."),
        ("PROVIUM_KERNEL, PROVIUM_MODULES", "Another default kernel image and its /lib/modules/<release> tree."),
        ("PROVIUM_QEMU", "The QEMU binary (checked to answer --version like QEMU)."),
        ("PROVIUM_FIXTURE_KEEP_SECS", "How long an unused, superseded fixture build is kept; default an hour."),
        ("PROVIUM_GATE_DIR", "Where provium processes on the machine share their VM tickets; default /dev/shm/provium-gate."),
        ("PROVIUM_INCLUDE, PROVIUM_KERNEL_HEADERS", "The include tree and kernel headers tree `gen` and `headers` read."),
        ("PROVIUM_LOG", "Diagnostics, as tracing filters (debug, info)."),
        ("NO_COLOR, CLICOLOR_FORCE", "Colour off or on, unless --color says otherwise."),
    ];
    let mut out = String::from(".SH ENVIRONMENT\n");
    for (name, text) in vars {
        out.push_str(&format!(".TP\n\\fB{name}\\fR\n{}\n", roff_text(text)));
    }
    out
}

/// Text for a roff paragraph: a leading dot or quote would be a request, and backslashes escape.
fn roff_text(text: &str) -> String {
    let t = text.replace('\\', "\\e");
    if t.starts_with(['.', '\'']) {
        format!("\\&{t}")
    } else {
        t
    }
}

pub fn man(args: ManArgs) -> Result<u8> {
    // `help` is clap's, not a page of its own: a SEE ALSO entry for provium-help(1) would name
    // a page that does not exist.
    let cmd = super::Cli::command().disable_help_subcommand(true);
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
        }
        None => {
            let man = clap_mangen::Man::new(cmd);
            let mut out = Vec::new();
            man.render_title(&mut out)?;
            man.render_name_section(&mut out)?;
            man.render_synopsis_section(&mut out)?;
            man.render_description_section(&mut out)?;
            man.render_options_section(&mut out)?;
            man.render_subcommands_section(&mut out)?;
            out.extend_from_slice(exit_status_section().as_bytes());
            out.extend_from_slice(environment_section().as_bytes());
            man.render_version_section(&mut out)?;
            std::io::Write::write_all(&mut std::io::stdout(), &out)?;
        }
    }
    Ok(super::EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The profile whose VM the shell runs in.
    #[arg(add = crate::cli::complete::profile(), long, default_value = "minimal")]
    profile: String,
    /// Another kernel: an installed release (`6.12`), an image, or a build tree.
    #[arg(add = crate::cli::complete::kernel(), long)]
    kernel: Option<String>,
    /// The guest's architecture: aarch64 boots Debian's arm64 kernel (`scripts/setup --arch
    /// arm64`), or `--kernel` among arm64's.
    #[arg(long, value_parser = super::parse_arch)]
    arch: Option<provium_compiler::linux::Arch>,
    /// Run this command through the guest's shell, print what it prints, and exit with its
    /// status.
    #[arg(short = 'c', value_name = "COMMAND")]
    command: Option<String>,
    /// Boot the kernel instead of resuming the profile's fixture (a fresh boot: its own
    /// boot log, boot id and clocks).
    #[arg(long)]
    cold: bool,
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
    let target = super::test::kernel_targets(args.kernel.as_slice(), args.arch.as_slice())?;
    if let Some(target) = target.into_iter().next() {
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
        let (mut vm, _) = resumed_or_booted(profiles, &profile, false, &args)?;
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
        // Its RAM is a private copy and it has no disk: a power-off would save nothing.
        vm.kill();
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
    // The profile's fixture resumed with the guest's /dev/hvc0 on this terminal (QEMU puts it
    // in raw mode): the console port is hot-added once the guest runs, so no boot is needed.
    super::say(&format!(
        "provium shell: starting `{}`; `exit` or Ctrl-D leaves",
        profile.name
    ));
    let (mut vm, resumed) = resumed_or_booted(profiles, &profile, true, &args)?;
    let info = vm.info().clone();
    super::say(&format!(
        "provium shell: {} ({}, {}), {} in {:.2} s",
        info.kernel_release,
        info.accel,
        info.transport,
        if resumed { "resumed" } else { "booted" },
        info.boot_ms as f64 / 1e3
    ));
    let term = std::env::var("TERM").unwrap_or_else(|_| "vt100".into());
    // The shell owns /dev/hvc0 as its controlling terminal, so job control and Ctrl-C work.
    // setsid runs as a child of this shell (not exec'd: as a process group leader it would
    // fork and return at once), and the job lasts as long as the interactive shell.
    let job = vm.root().background(crate::protocol::ExecCall {
        // A resumed VM's console port was hot-added: its device node appears a moment later.
        argv: vec![concat!(
            "n=0; while [ ! -e /dev/hvc0 ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done; ",
            "setsid -c sh -i </dev/hvc0 >/dev/hvc0 2>&1; status=$?; exit $status"
        )
        .into()],
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
    vm.kill();
    Ok(code)
}

/// The VM a shell runs in, and whether it was resumed: the profile's plain-boot build resumed
/// (built first if needed), or booted with `--cold`, for a profile without one, or, with the
/// reason said, when no build can be made or resumed here.
fn resumed_or_booted(
    profiles: crate::machine::profile::Profiles,
    profile: &crate::machine::profile::Profile,
    terminal: bool,
    args: &ShellArgs,
) -> Result<(crate::machine::vm::Vm, bool)> {
    let boot = || {
        let opts = crate::machine::vm::BootOptions {
            terminal,
            keep_run_dir: args.keep,
            ..Default::default()
        };
        crate::machine::vm::Vm::boot(profile, &opts)
    };
    // The build every `vm:boot()` of the profile resumes; a profile whose boots are one of a
    // kind (vsock, which QEMU cannot snapshot) has none and boots.
    let plain = crate::fixture::Definition::plain_boot(profile, &Default::default());
    let Some(def) = plain.filter(|_| !args.cold) else {
        return Ok((boot()?, false));
    };
    let cwd = std::env::current_dir()?;
    let uses = crate::lua::fixture_script::discover(&cwd, profiles, true)?;
    match uses.fixtures.resume_def_on(&def, terminal) {
        Ok(vm) => Ok((vm, true)),
        Err(e) => {
            super::say(&format!(
                "provium shell: the fixture of `{}` did not resume ({e:#}); booting instead",
                profile.name
            ));
            Ok((boot()?, false))
        }
    }
}

fn print_kept(vm: &crate::machine::vm::Vm) {
    if let Some(dir) = &vm.info().run_dir {
        super::say(&format!("provium shell: kept {dir} (its console.log)"));
    }
}
