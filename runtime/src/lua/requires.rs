//! `provium.requires(vm, conditions)`: whether a test's conditions hold on a booted VM (kernel
//! range, arch, syscalls, root, kernel config, guest paths, file systems, modules), else the
//! reason, for `skip`. Compiled specs' `requires:` use it.

use super::errors;
use mlua::{Function, Lua, ObjectLike, Table, Value};
use provium_compiler::requirement::{ConfigCondition, KernelRange};

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
    if let Some(text) = req.get::<Option<String>>("kernel")? {
        // The compiler's type and rule: a spec and a Lua test get the same answer.
        let range: KernelRange = text
            .parse()
            .map_err(|e| errors::error(lua, format!("provium.requires: {e}")))?;
        let release = info_field("kernel_release")?;
        if release.is_empty() {
            return Ok(None);
        }
        if !range.contains(&release) {
            return Ok(Some(format!("needs kernel {text}, running {release}")));
        }
    }
    if let Some(arch) = req.get::<Option<String>>("arch")? {
        let have = info_field("arch")?;
        if !have.is_empty() && have != arch {
            return Ok(Some(format!("needs arch {arch}, running {have}")));
        }
    }
    // Another ABI than the kernel's own (`abi = "i386"`): it must answer a getpid, and the
    // syscall probes below use it.
    let abi: Option<String> = req.get("abi")?;
    if let Some(name) = &abi {
        let parsed: provium_compiler::linux::Abi = name
            .parse()
            .map_err(|e: String| errors::error(lua, format!("provium.requires: {e}")))?;
        if !parsed.is_native() {
            let probe = lua.create_table()?;
            probe.set("nr", parsed.syscall_number("getpid").unwrap_or(20))?;
            probe.set("abi", name.as_str())?;
            probe.set("timeout", 2.0)?;
            let outcome: Table = call.call((vm.clone(), probe))?;
            if outcome.get::<Option<i64>>("ret")?.is_none_or(|r| r <= 0) {
                return Ok(Some(format!(
                    "needs the {name} ABI, which this kernel lacks (built without \
                     CONFIG_IA32_EMULATION, or booted with ia32_emulation=0)"
                )));
            }
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
            if let Some(a) = &abi {
                probe.set("abi", a.as_str())?;
            }
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
        for text in &config {
            let condition: ConfigCondition = text
                .parse()
                .map_err(|e| errors::error(lua, format!("provium.requires: {e}")))?;
            if !condition.holds(|option| kernel_config.value(option)) {
                return Ok(Some(format!("needs {text} in the kernel's config")));
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
