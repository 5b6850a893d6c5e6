//! `provium.requires(vm, conditions)`: whether a test's conditions hold on a booted VM (kernel
//! range, arch, syscalls, root, kernel config, guest paths, file systems, modules), else the
//! reason, for `skip`. Compiled specs' `requires:` use it.

use super::errors;
use mlua::{Function, Lua, ObjectLike, Table, Value};

/// `5.6`, `6.1.0-48-cloud-amd64` → `[5, 6]`, `[6, 1, 0]`.
fn version(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn compare(a: &[u32], b: &[u32]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Whether `release` is in `range` (`>=5.6, <6.2`).
pub fn kernel_in_range(release: &str, range: &str) -> Result<bool, String> {
    let have = version(release);
    for (op, want) in provium_compiler::check::parse_version_range(range)? {
        let o = compare(&have, &want);
        let ok = match op.as_str() {
            "<" => o.is_lt(),
            "<=" => o.is_le(),
            ">" => o.is_gt(),
            ">=" => o.is_ge(),
            _ => o.is_eq(),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The configuration of the kernel `vm` boots: from the host (beside the image, or its build
/// tree), else the guest's `/proc/config.gz`.
fn kernel_config(
    lua: &Lua,
    vm: &mlua::AnyUserData,
) -> mlua::Result<crate::machine::kernels::Config> {
    let image = vm
        .borrow::<super::slot::LuaVm>()
        .ok()
        .and_then(|v| v.0.borrow().profile.resolve_kernel().ok())
        .map(|(image, _)| image);
    if let Some(c) = image
        .as_deref()
        .and_then(crate::machine::kernels::config_beside)
    {
        return Ok(c);
    }
    let read: Function = vm.get("read_file")?;
    let gz: mlua::Result<mlua::LuaString> = read.call((vm.clone(), "/proc/config.gz"));
    let text = gz.ok().and_then(|data| {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&data.as_bytes()[..])
            .read_to_string(&mut text)
            .ok()
            .map(|_| text)
    });
    match text {
        Some(t) => Ok(crate::machine::kernels::Config::parse(&t)),
        None => Err(errors::error(
            lua,
            format!(
                "provium.requires: no configuration for the kernel {}: no config-<release> \
                 beside it, no build tree .config, and no /proc/config.gz in the guest",
                image.map(|p| p.display().to_string()).unwrap_or_default()
            ),
        )),
    }
}

/// `nil` when `req` holds on `vm`, else the reason (for `skip`).
pub fn requires(lua: &Lua, (vm, req): (mlua::AnyUserData, Table)) -> mlua::Result<Option<String>> {
    let call: Function = vm.get("call")?;
    let info: Value = vm.get("info")?;
    // A field of `vm.info`, empty when the VM has no info table.
    let info_field = |key: &str| -> mlua::Result<String> {
        match &info {
            Value::Table(t) => t.get::<String>(key),
            _ => Ok(String::new()),
        }
    };
    if let Some(range) = req.get::<Option<String>>("kernel")? {
        let release = info_field("kernel_release")?;
        if release.is_empty() {
            return Ok(None);
        }
        match kernel_in_range(&release, &range) {
            Ok(true) => {}
            Ok(false) => return Ok(Some(format!("needs kernel {range}, running {release}"))),
            Err(e) => return Err(errors::error(lua, e)),
        }
    }
    if let Some(arch) = req.get::<Option<String>>("arch")? {
        let have = info_field("arch")?;
        if !have.is_empty() && have != arch {
            return Ok(Some(format!("needs arch {arch}, running {have}")));
        }
    }
    if let Some(syscalls) = req.get::<Option<Table>>("syscalls")? {
        for s in syscalls.sequence_values::<Table>() {
            let s = s?;
            let name: String = s.get(1)?;
            let nr: i64 = s.get(2)?;
            // All-minus-one arguments are invalid for every syscall, so a present one answers
            // with an error other than ENOSYS (or ends the executor, which is replaced).
            let probe = lua.create_table()?;
            probe.set("nr", nr)?;
            probe.set("args", vec![-1i64; 6])?;
            probe.set("timeout", 2.0)?;
            let outcome: Table = call.call((vm.clone(), probe))?;
            if outcome.get::<Option<i64>>("ret")? == Some(-38) {
                return Ok(Some(format!(
                    "needs syscall {name} ({nr}), which this kernel lacks"
                )));
            }
        }
    }
    let list = |key: &str| -> mlua::Result<Vec<String>> {
        Ok(match req.get::<Value>(key)? {
            Value::Nil => Vec::new(),
            Value::String(s) => vec![s.to_str()?.to_string()],
            Value::Table(t) => t.sequence_values::<String>().collect::<mlua::Result<_>>()?,
            other => {
                return Err(errors::error(
                    lua,
                    format!(
                        "provium.requires: `{key}` must be a string or a list, not {}",
                        other.type_name()
                    ),
                ))
            }
        })
    };
    let config = list("config")?;
    if !config.is_empty() {
        let kernel_config = kernel_config(lua, &vm)?;
        for condition in &config {
            let holds = config_holds(&kernel_config, condition)
                .map_err(|e| errors::error(lua, format!("provium.requires: {e}")))?;
            if !holds {
                return Ok(Some(format!("needs {condition} in the kernel's config")));
            }
        }
    }
    for path in list("path")? {
        // faccessat(AT_FDCWD, path, F_OK): present when it answers 0.
        let probe = lua.create_table()?;
        probe.set("nr", 269)?;
        probe.set("args", vec![-100i64, 0, 0, 0])?;
        let bufs = lua.create_table()?;
        bufs.set(1, format!("{path}\0"))?;
        probe.set("bufs", bufs)?;
        let outcome: Table = call.call((vm.clone(), probe))?;
        if outcome.get::<Option<i64>>("ret")? != Some(0) {
            return Ok(Some(format!("needs {path} in the guest")));
        }
    }
    let filesystems = list("filesystem")?;
    if !filesystems.is_empty() {
        let read: Function = vm.get("read_file")?;
        let known: String = read.call((vm.clone(), "/proc/filesystems"))?;
        for fs in &filesystems {
            // Lines are `nodev\ttmpfs` or `\text4`: the name is the last field.
            let listed = known
                .lines()
                .any(|l| l.split_whitespace().last() == Some(fs.as_str()));
            if !listed {
                return Ok(Some(format!(
                    "needs file system {fs}, which this kernel does not list in /proc/filesystems \
                     (built without it, or its module is not in the profile)"
                )));
            }
        }
    }
    for module in list("module")? {
        // /sys/module/NAME exists for a loaded module and for a built-in one with parameters.
        let probe = lua.create_table()?;
        probe.set("nr", 269)?;
        probe.set("args", vec![-100i64, 0, 0, 0])?;
        let bufs = lua.create_table()?;
        bufs.set(1, format!("/sys/module/{}\0", module.replace('-', "_")))?;
        probe.set("bufs", bufs)?;
        let outcome: Table = call.call((vm.clone(), probe))?;
        if outcome.get::<Option<i64>>("ret")? != Some(0) {
            return Ok(Some(format!(
                "needs module {module} (no /sys/module/{module} in the guest)"
            )));
        }
    }
    if let Some(root) = req.get::<Option<bool>>("root")? {
        let syscall: Function = vm.get("syscall")?;
        let euid: i64 = syscall.call((vm.clone(), 107))?;
        if root != (euid == 0) {
            return Ok(Some(if root {
                "needs root".into()
            } else {
                "needs a non-root user".into()
            }));
        }
    }
    Ok(None)
}

/// Whether a condition holds for a kernel's config: `CONFIG_X` (built in or a module),
/// `CONFIG_X=y`, `CONFIG_X=m`, `CONFIG_X=VALUE`, `!CONFIG_X` (not set). The `CONFIG_` prefix may
/// be left out. Parsed by the compiler's rule, so that specs and Lua accept the same conditions.
fn config_holds(config: &crate::machine::kernels::Config, condition: &str) -> Result<bool, String> {
    let c = provium_compiler::check::config_condition(condition)?;
    let holds = match &c.value {
        None => config.enabled(&c.option),
        Some(v) => config.value(&c.option) == Some(v.as_str()),
    };
    Ok(holds != c.negated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_ranges() {
        assert!(kernel_in_range("6.1.0-48-cloud-amd64", ">=5.6").unwrap());
        assert!(!kernel_in_range("6.1.0-48-cloud-amd64", ">=6.2").unwrap());
        assert!(kernel_in_range("6.1.0", ">=5.6, <6.2").unwrap());
        assert!(kernel_in_range("5.6.0", ">=5.6").unwrap());
        assert!(!kernel_in_range("5.5.19", ">=5.6").unwrap());
        assert!(kernel_in_range("6.1.0", "==6.1").unwrap());
        assert!(kernel_in_range("6.1", "nonsense").is_err());
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn config_conditions() {
        let c = crate::machine::kernels::Config::parse(
            "CONFIG_KSM=y\nCONFIG_TUN=m\n# CONFIG_KASAN is not set\nCONFIG_HZ=250\nCONFIG_LOCALVERSION=\"-x\"\n",
        );
        assert!(config_holds(&c, "CONFIG_KSM").unwrap());
        assert!(config_holds(&c, "KSM=y").unwrap());
        assert!(config_holds(&c, "CONFIG_TUN").unwrap());
        assert!(!config_holds(&c, "CONFIG_TUN=y").unwrap());
        assert!(config_holds(&c, "CONFIG_TUN=m").unwrap());
        assert!(config_holds(&c, "!CONFIG_KASAN").unwrap());
        assert!(!config_holds(&c, "CONFIG_KASAN").unwrap());
        assert!(config_holds(&c, "CONFIG_HZ=250").unwrap());
        assert!(config_holds(&c, "CONFIG_LOCALVERSION=-x").unwrap());
        assert!(config_holds(&c, "CONFIG_X Y").is_err());
    }
}
