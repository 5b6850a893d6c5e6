//! `provium headers syscalls|errnos|constants|structs|signatures`: what the header parser reads.

use crate::report::style::{paint, BOLD, DIM};
use anyhow::{bail, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    what: What,
    /// Headers to read (`linux/openat2.h`); for constants and structs, default: the built-in set.
    headers: Vec<String>,
    /// The userspace include tree (default: /usr/include).
    #[arg(long, value_name = "DIR", env = "PROVIUM_INCLUDE")]
    include: Option<PathBuf>,
    /// A kernel headers tree with include/linux/syscalls.h (default: the one in the cache).
    #[arg(long, value_name = "DIR", env = "PROVIUM_KERNEL_HEADERS")]
    kernel_headers: Option<PathBuf>,
    /// Read a kernel's own headers: a build tree (its uapi headers and syscall declarations, new
    /// syscalls included), or an installed release.
    #[arg(add = crate::cli::complete::kernel(), long, value_name = "KERNEL")]
    kernel: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    Syscalls,
    Errnos,
    Constants,
    Structs,
    Signatures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// A constant to print, from the built-in table or parsed headers.
struct Constant {
    name: String,
    value: Result<i64, String>,
    origin: String,
}

pub fn run(args: Args) -> Result<u8> {
    let mut tree = match &args.kernel {
        Some(k) => crate::run::headers::tree_of(
            &crate::machine::kernels::resolve(k)
                .map_err(|e| anyhow::anyhow!("--kernel {k}: {e:#}"))?,
        ),
        None => crate::run::headers::tree(),
    };
    if let Some(i) = &args.include {
        tree.root = i.clone();
    }
    if let Some(k) = &args.kernel_headers {
        tree.kernel = Some(k.clone());
    }
    let builtin = args.headers.is_empty();
    let headers: Vec<String> = if builtin {
        provium_compiler::headers::tables::builtin_includes()
    } else {
        args.headers.clone()
    };
    let mut out = anstream::stdout();
    let json = args.format == Format::Json;
    match args.what {
        What::Syscalls => {
            let table = tree.syscalls().map_err(anyhow::Error::msg)?;
            if json {
                let v: Vec<_> = table
                    .iter()
                    .map(|(n, nr)| serde_json::json!({"name": n, "nr": nr}))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for (n, nr) in &table {
                    writeln!(out, "{nr:>5}  {n}")?;
                }
            }
        }
        What::Errnos => {
            let table = tree.errnos().map_err(anyhow::Error::msg)?;
            if json {
                let v: Vec<_> = table
                    .iter()
                    .map(|e| serde_json::json!({"name": e.name, "number": e.number, "description": e.description, "alias_of": e.alias_of}))
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for e in &table {
                    writeln!(
                        out,
                        "{:>4}  {:<16} {}",
                        e.number,
                        e.name,
                        paint(DIM, &e.description)
                    )?;
                }
            }
        }
        What::Constants => {
            // Without headers: the built-in set every spec can use, as Provium carries it.
            let constants: Vec<Constant> = if builtin {
                provium_compiler::linux::constants()
                    .iter()
                    .map(|(name, value, header)| Constant {
                        name: name.to_string(),
                        value: Ok(*value),
                        origin: header.to_string(),
                    })
                    .collect()
            } else {
                let parsed = tree.parse(&headers).map_err(anyhow::Error::msg)?;
                parsed
                    .constants()
                    .into_iter()
                    .map(|c| Constant {
                        name: c.name,
                        value: c.value,
                        origin: c.origin,
                    })
                    .collect()
            };
            if json {
                let v: Vec<_> = constants
                    .iter()
                    .map(|c| match &c.value {
                        Ok(v) => {
                            serde_json::json!({"name": c.name, "value": v, "origin": c.origin})
                        }
                        Err(e) => {
                            serde_json::json!({"name": c.name, "error": e, "origin": c.origin})
                        }
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for c in &constants {
                    match &c.value {
                        Ok(v) => writeln!(
                            out,
                            "{:<40} {:>20}  {}",
                            c.name,
                            format!("{v:#x}"),
                            paint(DIM, &c.origin)
                        )?,
                        Err(e) => writeln!(
                            out,
                            "{:<40} {:>20}  {}",
                            c.name,
                            paint(DIM, "?"),
                            paint(DIM, &format!("{e} ({})", c.origin))
                        )?,
                    }
                }
            }
        }
        What::Structs => {
            let parsed = tree.parse(&headers).map_err(anyhow::Error::msg)?;
            let layouts = parsed.types.layouts();
            if json {
                let v: Vec<_> = layouts
                    .values()
                    .map(|l| {
                        serde_json::json!({
                            "name": l.name, "kind": format!("{:?}", l.kind).to_lowercase(),
                            "size": l.size, "align": l.align, "origin": l.origin,
                            "fields": l.fields.iter().map(|f| serde_json::json!({
                                "name": f.name, "offset": f.offset, "size": f.size,
                                "bit_offset": f.bits.map(|b| b.0), "bit_width": f.bits.map(|b| b.1),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                for l in layouts.values() {
                    writeln!(
                        out,
                        "{} {}: size {}, align {}  {}",
                        paint(BOLD, &format!("{:?}", l.kind).to_lowercase()),
                        l.name,
                        l.size,
                        l.align,
                        paint(DIM, &l.origin)
                    )?;
                    for f in &l.fields {
                        let bits = f
                            .bits
                            .map(|(b, w)| format!(" bits {}+{w}", b % 8))
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "  {:>6} {:>5}  {}{}",
                            f.offset,
                            f.size,
                            f.name,
                            paint(DIM, &bits)
                        )?;
                    }
                }
            }
        }
        What::Signatures => {
            let sigs = match tree.signatures() {
                Ok(s) => s,
                Err(e) => bail!(e),
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&sigs)?)?;
            } else {
                for s in &sigs {
                    let params: Vec<String> = s
                        .params
                        .iter()
                        .map(|p| format!("{} {}", p.ty, p.name))
                        .collect();
                    writeln!(
                        out,
                        "{}({})  {}",
                        s.name,
                        params.join(", "),
                        paint(DIM, &s.origin)
                    )?;
                }
            }
        }
    }
    Ok(super::EXIT_OK)
}
