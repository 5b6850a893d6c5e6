//! Completions that know the machine: `--kernel <TAB>` lists the installed kernels (by release
//! and by the short version `--kernel` also takes) and paths (an image or a build tree);
//! `--profile <TAB>` lists the profiles of the project around the current directory.
//!
//! clap_complete's dynamic engine (`COMPLETE=bash provium`) asks the binary itself at each TAB,
//! so the lists are the machine's, not a script's frozen copy.

use clap_complete::engine::{
    ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter,
};
use std::ffi::OsStr;

/// The completer for every `--kernel` option.
pub fn kernel() -> ArgValueCompleter {
    ArgValueCompleter::new(kernels)
}

/// The completer for every `--profile` option.
pub fn profile() -> ArgValueCompleter {
    ArgValueCompleter::new(profiles)
}

fn kernels(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy();
    let mut out = Vec::new();
    // A path is being typed: an image or a build tree.
    if typed.contains('/') || typed.starts_with('.') || typed.starts_with('~') {
        return PathCompleter::any().complete(current);
    }
    let installed = crate::machine::kernels::installed();
    let mut short: Vec<String> = Vec::new();
    for k in &installed {
        // `6.12.118+deb12-cloud-amd64` is also `6.12`, when that names only it.
        let version: String = k.release.split(['-', '+']).next().unwrap_or("").into();
        let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let unique = installed
            .iter()
            .filter(|o| {
                o.release
                    .strip_prefix(&major_minor)
                    .is_some_and(|rest| rest.starts_with(['.', '-', '+']))
            })
            .count()
            == 1;
        if unique && !short.contains(&major_minor) {
            short.push(major_minor.clone());
            out.push(
                CompletionCandidate::new(major_minor)
                    .help(Some(format!("installed: {}", k.release).into())),
            );
        }
        let help = if k.default {
            "installed (the default kernel)"
        } else {
            "installed"
        };
        out.push(CompletionCandidate::new(k.release.clone()).help(Some(help.into())));
    }
    out.retain(|c| c.get_value().to_string_lossy().starts_with(&*typed));
    // Nothing installed matches: a build tree or an image in the current directory.
    if out.is_empty() {
        out.extend(PathCompleter::any().complete(current));
    }
    out
}

fn profiles(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy();
    let cwd = std::env::current_dir().unwrap_or_default();
    let profiles = crate::machine::profile::Profiles::discover(&cwd)
        .unwrap_or_else(|_| crate::machine::profile::Profiles::builtin());
    profiles
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&*typed))
        .map(CompletionCandidate::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_being_typed_completes_as_a_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("linux-tree")).unwrap();
        let typed = format!("{}/linux-", dir.path().display());
        let found: Vec<String> = kernels(OsStr::new(&typed))
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert!(
            found.iter().any(|f| f.ends_with("linux-tree/")),
            "{found:?}"
        );
    }
}
