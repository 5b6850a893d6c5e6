//! Configuring and building a kernel tree for Provium (`provium kernel config|build TREE`).
//!
//! A tree without a `.config` gets one from a base (`make tinyconfig` by default, `defconfig`, or
//! a file), with Provium's fragment (`runtime/kernel/provium.config`) and the user's merged on
//! top by the kernel's own `scripts/kconfig/merge_config.sh`, then `make olddefconfig`; every
//! option a fragment asks for must survive that (an option whose dependency is off is dropped
//! silently by kconfig: here it is named). A tree that has a `.config` is checked, not changed,
//! unless asked to merge. The build is the kernel's `make` (through `ccache` when it is
//! installed, `O=DIR` trees too), then `make headers`, whose `usr/include` gives specs the tree's
//! own syscall table and uapi headers.

use crate::machine::error::{IoContext, IoError};
use crate::machine::kconfig::Config;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What every Provium kernel needs, option by option (see the file for why).
pub const FRAGMENT: &str = include_str!("../../kernel/provium.config");

/// Why a tree could not be configured or built.
#[derive(Debug, thiserror::Error)]
pub enum KernelBuildError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(
        "building a kernel needs {}; install them with `sudo apt-get install {}` (or run \
         scripts/setup --kernel-build)",
        .0.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", "),
        .0.iter().map(|(_, p)| *p).collect::<Vec<_>>().join(" ")
    )]
    MissingTools(Vec<(&'static str, &'static str)>),
    #[error("{} is not a kernel source tree ({why})", tree.display())]
    NotATree { tree: PathBuf, why: &'static str },
    #[error(
        "{} lacks what Provium needs: {}; `provium kernel config {} --merge` adds Provium's \
         fragment to it (or remove it for a new one)",
        config.display(),
        missing.join(", "),
        tree.display()
    )]
    ConfigLacks {
        config: PathBuf,
        tree: PathBuf,
        missing: Vec<String>,
    },
    #[error(
        "kconfig dropped options the fragments ask for (a dependency of each is off): {}",
        .0.join(", ")
    )]
    Dropped(Vec<String>),
    #[error("{what} failed ({status}):\n{output}")]
    Failed {
        what: &'static str,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("make succeeded but {} is not there", .0.display())]
    NoImage(PathBuf),
}

/// Where the configuration starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `make tinyconfig`: the smallest kernel, about 500 CPU-seconds to build.
    Tiny,
    /// `make defconfig`: the architecture's default, much larger.
    Defconfig,
    /// A configuration file of the user's.
    File(PathBuf),
}

/// How to configure and build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The kernel source tree.
    pub tree: PathBuf,
    /// `O=DIR`: where objects and the `.config` go (default: the tree itself).
    pub out: Option<PathBuf>,
    pub base: Base,
    /// The user's fragments, merged after Provium's.
    pub fragments: Vec<PathBuf>,
    /// Merge the fragments onto an existing `.config` instead of only checking it.
    pub merge: bool,
    /// Parallel jobs for `make`.
    pub jobs: usize,
}

impl Options {
    /// The directory holding `.config` and the objects.
    pub fn objdir(&self) -> &Path {
        self.out.as_deref().unwrap_or(&self.tree)
    }

    fn make(&self) -> Command {
        let mut c = Command::new("make");
        c.arg("-C").arg(&self.tree);
        if let Some(o) = &self.out {
            c.arg(format!("O={}", o.display()));
        }
        c
    }
}

/// A tool the kernel's build needs, how to tell it is there, and the Debian package with it.
struct Tool {
    what: &'static str,
    present: fn() -> bool,
    package: &'static str,
}

fn on_path(program: &str) -> bool {
    which::which(program).is_ok()
}

fn header(path: &str) -> bool {
    Path::new("/usr/include").join(path).is_file()
        || Path::new("/usr/include/x86_64-linux-gnu")
            .join(path)
            .is_file()
}

const TOOLS: &[Tool] = &[
    Tool {
        what: "make",
        present: || on_path("make"),
        package: "make",
    },
    Tool {
        what: "gcc",
        present: || on_path("gcc"),
        package: "gcc",
    },
    Tool {
        what: "flex",
        present: || on_path("flex"),
        package: "flex",
    },
    Tool {
        what: "bison",
        present: || on_path("bison"),
        package: "bison",
    },
    Tool {
        what: "bc",
        present: || on_path("bc"),
        package: "bc",
    },
    Tool {
        what: "perl",
        present: || on_path("perl"),
        package: "perl",
    },
    Tool {
        what: "libelf headers (gelf.h, for objtool)",
        present: || header("gelf.h"),
        package: "libelf-dev",
    },
    Tool {
        what: "OpenSSL headers (openssl/opensslv.h, for signing tools)",
        present: || header("openssl/opensslv.h"),
        package: "libssl-dev",
    },
];

/// What the kernel's build needs that this host lacks, with the packages that have it.
pub fn missing_tools() -> Vec<(&'static str, &'static str)> {
    TOOLS
        .iter()
        .filter(|t| !(t.present)())
        .map(|t| (t.what, t.package))
        .collect()
}

/// Refuses at once, naming every missing tool and the command that installs them.
pub fn check_tools() -> Result<(), KernelBuildError> {
    let missing = missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    Err(KernelBuildError::MissingTools(missing))
}

/// Whether `tree` is a kernel source tree (its top Makefile sets VERSION and PATCHLEVEL).
pub fn check_tree(tree: &Path) -> Result<(), KernelBuildError> {
    let not_a_tree = |why| KernelBuildError::NotATree {
        tree: tree.to_path_buf(),
        why,
    };
    let text =
        std::fs::read_to_string(tree.join("Makefile")).map_err(|_| not_a_tree("no Makefile"))?;
    if !(text.contains("\nVERSION =") || text.starts_with("VERSION ="))
        || !text.contains("PATCHLEVEL =")
    {
        return Err(not_a_tree("its Makefile sets no VERSION and PATCHLEVEL"));
    }
    if !tree.join("scripts/kconfig/merge_config.sh").is_file() {
        return Err(not_a_tree(
            "it has no scripts/kconfig/merge_config.sh: a kernel older than 3.x?",
        ));
    }
    Ok(())
}

/// `CONFIG_X=value` lines of a fragment (comments and `# CONFIG_X is not set` aside).
fn fragment_options(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Options a fragment asked for that the configuration does not have (kconfig dropped them:
/// a dependency is off), as `CONFIG_X=y (is: not set)`.
pub fn dropped(config: &Config, fragment: &str) -> Vec<String> {
    fragment_options(fragment)
        .into_iter()
        .filter(|(k, v)| config.value(k) != Some(v.as_str()))
        .map(|(k, v)| format!("{k}={v} (is: {})", config.value(&k).unwrap_or("not set")))
        .collect()
}

/// What `configure` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Configured {
    /// A new `.config` from the base and the fragments.
    Written,
    /// The fragments merged onto the existing `.config`.
    Merged,
    /// The existing `.config` already has what Provium needs.
    Kept,
}

fn run_quiet(mut c: Command, what: &'static str) -> Result<(), KernelBuildError> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .io_context(|| format!("running {what}"))?;
    if !out.status.success() {
        return Err(KernelBuildError::Failed {
            what,
            status: out.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// Makes sure the tree has a Provium-ready `.config` (see the module's comment).
pub fn configure(o: &Options) -> Result<Configured, KernelBuildError> {
    check_tree(&o.tree)?;
    check_tools()?;
    let objdir = o.objdir().to_path_buf();
    std::fs::create_dir_all(&objdir).io_context(|| format!("creating {}", objdir.display()))?;
    let config_path = objdir.join(".config");
    let user: Vec<(PathBuf, String)> = o
        .fragments
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .map(|t| (f.clone(), t))
                .io_context(|| format!("reading the fragment {}", f.display()))
        })
        .collect::<Result<_, _>>()?;
    let had = config_path.is_file();
    if had && !o.merge {
        let config = Config::read(&config_path)?;
        let mut missing = dropped(&config, FRAGMENT);
        for (_, text) in &user {
            missing.extend(dropped(&config, text));
        }
        if missing.is_empty() {
            return Ok(Configured::Kept);
        }
        return Err(KernelBuildError::ConfigLacks {
            config: config_path,
            tree: o.tree.clone(),
            missing,
        });
    }
    if !had {
        match &o.base {
            Base::Tiny => run_quiet(
                {
                    let mut c = o.make();
                    c.arg("tinyconfig");
                    c
                },
                "make tinyconfig",
            )?,
            Base::Defconfig => run_quiet(
                {
                    let mut c = o.make();
                    c.arg("defconfig");
                    c
                },
                "make defconfig",
            )?,
            Base::File(f) => {
                std::fs::copy(f, &config_path).io_context(|| {
                    format!("copying {} to {}", f.display(), config_path.display())
                })?;
            }
        }
    }
    // Provium's fragment, then the user's (theirs win where both set an option).
    let dir = tempfile::tempdir().io_context(|| "creating a directory for the fragment".into())?;
    let ours = dir.path().join("provium.config");
    std::fs::write(&ours, FRAGMENT).io_context(|| format!("writing {}", ours.display()))?;
    let mut merge = Command::new(o.tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(&o.tree)
        .arg("-m")
        .arg("-O")
        .arg(&objdir)
        .arg(&config_path)
        .arg(&ours)
        .args(&o.fragments);
    run_quiet(merge, "scripts/kconfig/merge_config.sh")?;
    run_quiet(
        {
            let mut c = o.make();
            c.arg("olddefconfig");
            c
        },
        "make olddefconfig",
    )?;
    let config = Config::read(&config_path)?;
    let mut lost = dropped(&config, FRAGMENT);
    for (f, text) in &user {
        lost.extend(
            dropped(&config, text)
                .into_iter()
                .map(|d| format!("{d} from {}", f.display())),
        );
    }
    if !lost.is_empty() {
        return Err(KernelBuildError::Dropped(lost));
    }
    Ok(if had {
        Configured::Merged
    } else {
        Configured::Written
    })
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: PathBuf,
    pub release: Option<String>,
    pub configured: Configured,
    pub seconds: f64,
}

/// Configures (if needed) and builds the tree; `progress` hears each line `make` prints.
pub fn build(o: &Options, progress: &mut dyn FnMut(&str)) -> Result<Built, KernelBuildError> {
    let started = std::time::Instant::now();
    let configured = configure(o)?;
    let ccache = which::which("ccache").is_ok();
    let mut make = o.make();
    make.arg(format!("-j{}", o.jobs.max(1)));
    if ccache {
        // Rebuilds after `make clean`, and of a second tree from the same source, are cheap.
        make.arg("CC=ccache gcc");
    }
    make.arg("all");
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let status = stream(make, &mut |line| {
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
        progress(line);
    })?;
    if !status.success() {
        return Err(KernelBuildError::Failed {
            what: "make",
            status,
            output: format!(
                "its last lines:\n{}",
                tail.into_iter().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    // The tree's own uapi headers (its syscall table, new headers) for specs: `make headers`
    // writes usr/include (`headers_install` would also need rsync).
    let mut headers = o.make();
    headers.arg("headers");
    run_quiet(headers, "make headers")?;
    let image = o.objdir().join("arch/x86/boot/bzImage");
    if !image.is_file() {
        return Err(KernelBuildError::NoImage(image));
    }
    Ok(Built {
        release: crate::machine::kernel::release_of(&image),
        image,
        configured,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `c`, handing each line of its output (stdout and stderr) to `line`.
fn stream(mut c: Command, line: &mut dyn FnMut(&str)) -> Result<std::process::ExitStatus, IoError> {
    let (reader, writer) = std::io::pipe().io_context(|| "a pipe for make's output".into())?;
    let writer2 = writer
        .try_clone()
        .io_context(|| "a pipe for make's output".into())?;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .io_context(|| "running make".into())?;
    // The child holds the write ends now; ours are closed when `c` is dropped.
    drop(c);
    for l in std::io::BufReader::new(reader).lines() {
        match l {
            Ok(l) => line(&l),
            Err(_) => break,
        }
    }
    child.wait().io_context(|| "waiting for make".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_kconfig_dropped_are_named() {
        let config = Config::parse("CONFIG_VIRTIO=y\nCONFIG_PCI=y\n");
        let d = dropped(&config, "# comment\nCONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\n");
        assert_eq!(d, ["CONFIG_VIRTIO_PCI=y (is: not set)"]);
    }

    #[test]
    fn the_fragment_has_what_every_boot_checks_for() {
        let config = Config::parse(FRAGMENT);
        assert!(
            crate::machine::requirements::check(&config, None).is_empty(),
            "{:?}",
            crate::machine::requirements::check(&config, None)
        );
    }

    #[test]
    fn a_directory_that_is_not_a_kernel_tree_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_tree(d.path())
            .unwrap_err()
            .to_string()
            .contains("no Makefile"));
        std::fs::write(d.path().join("Makefile"), "all:\n").unwrap();
        assert!(check_tree(d.path())
            .unwrap_err()
            .to_string()
            .contains("VERSION"));
    }
}
