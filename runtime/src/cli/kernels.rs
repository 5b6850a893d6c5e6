//! `provium kernels`: the kernels installed in the cache, which `--kernel` can name, with
//! their architecture (each architecture has its default; `--arch` picks among them).

use crate::machine::kernels;
use crate::report::style::{paint, DIM, OK};
use anyhow::Result;
use std::io::Write;

pub fn run() -> Result<u8> {
    let mut out = anstream::stdout();
    let installed = kernels::installed();
    if installed.is_empty() {
        writeln!(
            out,
            "no kernel in {}: `scripts/setup` installs Debian's (`--kernel 6.12` for more)",
            crate::machine::paths::kernels().display()
        )?;
        return Ok(super::EXIT_OK);
    }
    for k in &installed {
        let has = |p: std::path::PathBuf, what: &str| {
            if p.exists() {
                what.to_string()
            } else {
                format!("no {what}")
            }
        };
        let details = [
            has(k.dir.join("lib/modules").join(&k.release), "modules"),
            has(
                k.dir.join("boot").join(format!("config-{}", k.release)),
                "config",
            ),
        ]
        .join(", ");
        writeln!(
            out,
            "{} {:<8} {:<32} {}",
            if k.default {
                paint(OK, "default")
            } else {
                "       ".to_string()
            },
            k.arch.name(),
            k.release,
            paint(DIM, &format!("{details}  {}", k.dir.display()))
        )?;
    }
    Ok(super::EXIT_OK)
}
