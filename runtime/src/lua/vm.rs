//! The `vm` and `worker` objects of the Lua API.

use super::errors;
use super::options::{apply_boot_options, credentials};
use super::session::Session;
use super::slot::{LuaAbiView, LuaVm, LuaWorker, Target};
use super::target::add_target_methods;
use super::use_vm::with_vm;
use crate::fixture::FixtureError;
use crate::machine::vm::Vm;
use mlua::{MultiValue, Table, UserData, UserDataMethods, Value};
use std::time::Duration;

impl UserData for LuaVm {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("info", |lua, this| {
            let slot = this.0.borrow();
            match slot.vm.as_ref() {
                Some(vm) => lua.to_value(vm.info()),
                None => Ok(Value::Nil),
            }
        });
        fields.add_field_method_get("profile", |_, this| {
            Ok(this.0.borrow().profile.name.clone())
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_target_methods(methods);
        methods.add_method("abi", |lua, this, name: String| abi_view(lua, this, &name));

        methods.add_method("boot", |lua, this, opts: Option<Table>| {
            let mut slot = this.0.borrow_mut();
            if slot.vm.as_ref().is_some_and(|vm| vm.is_running()) {
                return Err(errors::error(lua, "vm:boot: the VM is already booted"));
            }
            let mut options = slot.defaults.clone();
            if let Some(t) = &opts {
                apply_boot_options(lua, t, &mut options)?;
            }
            let session = Session::get(lua);
            if session.config.settings.list_only {
                return Ok(());
            }
            if let Some(resumed) =
                super::fixture::resume_plain_boot(lua, &session, &slot.profile, &options)
            {
                let (vm, key) = resumed?;
                slot.set_vm(vm);
                slot.pool_key = Some(key);
                return Ok(());
            }
            // In a fixture script's build every VM keeps its RAM in the build, and a plain boot
            // starts from the profile's plain boot build (`Fixtures::derive`).
            let mut builder = None;
            if let Some(dir) = &session.config.snapshot_dir {
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                options.snapshot_memory = Some(dir.join(format!("ram-{n}")));
                builder = session.config.settings.fixtures.as_ref();
            }
            slot.pushed = options.host_files(&slot.profile);
            session.boot_started(&format!("`{}`", slot.profile.name));
            let result = match builder {
                Some(uses) => uses.fixtures.boot_for_build(&slot.profile, &options),
                None => Vm::boot(&slot.profile, &options).map_err(FixtureError::from),
            };
            session.boot_finished();
            match result {
                Ok(vm) => {
                    session.record_vm(&vm);
                    slot.set_vm(vm);
                    Ok(())
                }
                Err(e) => {
                    slot.gone = Some(format!("its boot failed ({e})"));
                    slot.lost = true;
                    Err(super::fixture::fixture_error(lua, "vm:boot", &e))
                }
            }
        });

        methods.add_method("is_booted", |_, this, ()| {
            Ok(this
                .0
                .borrow()
                .vm
                .as_ref()
                .is_some_and(|vm| vm.is_running()))
        });

        methods.add_method("dmesg", |lua, this, pattern: Option<String>| {
            let log = with_vm(lua, this, "dmesg", |vm, _| vm.dmesg())?;
            let Some(pattern) = pattern else {
                return lua.create_string(&log);
            };
            let find: mlua::Function = lua.globals().get::<Table>("string")?.get("find")?;
            let mut kept = Vec::new();
            for line in log.lines() {
                let hit: Value = find.call((line, pattern.as_str()))?;
                if !hit.is_nil() {
                    kept.push(line);
                }
            }
            lua.create_string(kept.join("\n"))
        });

        methods.add_method("console", |lua, this, lines: Option<usize>| {
            let slot = this.0.borrow();
            let text = slot
                .vm
                .as_ref()
                .map(|vm| vm.console_tail(lines.unwrap_or(40)))
                .unwrap_or_default();
            lua.create_string(text)
        });

        methods.add_method("mount_vfs", |lua, this, ()| {
            let results = with_vm(lua, this, "mount_vfs", |vm, _| vm.mount_vfs())?;
            let t = lua.create_table()?;
            for (target, result) in results {
                let v = match result {
                    Ok(true) => "mounted".to_string(),
                    Ok(false) => "already mounted".to_string(),
                    Err(errno) => provium_compiler::linux::errno_name(errno)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("errno {errno}")),
                };
                t.set(target, v)?;
            }
            Ok(t)
        });

        methods.add_method(
            "wait_until",
            |lua, _this, (condition, opts): (mlua::Function, Option<Table>)| {
                let mut timeout = 10.0f64;
                let mut interval = 0.1f64;
                if let Some(o) = &opts {
                    for pair in o.pairs::<String, Value>() {
                        let (k, v) = pair?;
                        match k.as_str() {
                            "timeout" => timeout = lua.unpack(v)?,
                            "interval" => interval = lua.unpack(v)?,
                            other => {
                                let hint =
                                    provium_compiler::diag::did_you_mean_suffix(other, ["timeout", "interval"]);
                                return Err(errors::error(
                                    lua,
                                    format!("wait_until: unknown option `{other}`{hint}"),
                                ));
                            }
                        }
                    }
                }
                if Session::get(lua).config.settings.list_only {
                    return Ok(MultiValue::new());
                }
                let deadline =
                    std::time::Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 86_400.0));
                let interval = Duration::from_secs_f64(interval.clamp(0.001, 60.0));
                let mut attempts = 0u32;
                let mut last_error;
                loop {
                    attempts += 1;
                    match condition.call::<MultiValue>(()) {
                        Ok(values) => {
                            let truthy = values
                                .front()
                                .is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
                            if truthy {
                                return Ok(values);
                            }
                            last_error = None;
                        }
                        // A condition that raises is not met yet (the file may not exist yet);
                        // the last error is shown if time runs out.
                        Err(e) => last_error = Some(errors::innermost(&e)),
                    }
                    if std::time::Instant::now() >= deadline {
                        let why = last_error
                            .map(|e| format!("; the last attempt raised: {e}"))
                            .unwrap_or_default();
                        return Err(errors::error(
                            lua,
                            format!(
                                "wait_until: the condition was not met within {timeout} s ({attempts} attempts){why}"
                            ),
                        ));
                    }
                    std::thread::sleep(interval);
                }
            },
        );

        methods.add_method("spawn", |lua, this, opts: Option<Table>| {
            let creds = credentials(lua, opts.as_ref())?;
            let c = creds.clone();
            let id = with_vm(lua, this, "spawn", |vm, _| vm.spawn_worker(c))?;
            Ok(LuaWorker {
                slot: this.0.clone(),
                id,
                creds,
            })
        });

        methods.add_method("shutdown", |_, this, ()| {
            this.0.borrow_mut().shutdown();
            Ok(())
        });

        methods.add_method("kill", |_, this, ()| {
            let mut slot = this.0.borrow_mut();
            if let Some(mut vm) = slot.vm.take() {
                vm.kill();
            }
            slot.gone = Some("the VM was killed".into());
            Ok(())
        });
    }
}

impl UserData for LuaWorker {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.id));
        fields.add_field_method_get("uid", |_, this| Ok(this.creds.uid));
        fields.add_field_method_get("gid", |_, this| Ok(this.creds.gid));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_target_methods(methods);
        methods.add_method("abi", |lua, this, name: String| abi_view(lua, this, &name));
        methods.add_method("kill", |lua, this, ()| {
            with_vm(lua, this, "kill", |vm, w| vm.kill_worker(w))
        });
    }
}

use mlua::LuaSerdeExt;

/// `vm:abi(name)`: a view of the same executor whose calls use that ABI.
fn abi_view<T: Target>(lua: &mlua::Lua, this: &T, name: &str) -> mlua::Result<LuaAbiView> {
    let abi: provium_compiler::linux::Abi = name
        .parse()
        .map_err(|e: String| errors::error(lua, format!("vm:abi: {e}")))?;
    // Another architecture's ABI would send its numbers to this guest's own entry: the test
    // does not apply here, and skips saying so.
    let guest = super::session::guest_arch(lua);
    if !guest.abis().contains(&abi) {
        return Err(errors::skip_error(format!(
            "{abi} is not an ABI of this {guest} guest"
        )));
    }
    Ok(LuaAbiView {
        slot: this.slot().clone(),
        worker: this.worker(),
        abi,
    })
}

impl UserData for LuaAbiView {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("abi", |_, this| Ok(this.abi.name()));
        // The view's own numbers: `v:syscall(v.nr.getpid)`.
        fields.add_field_method_get("nr", |lua, this| {
            let provium: Table = lua.globals().get("provium")?;
            provium.get::<Table>(format!("nr_{}", this.abi.name()))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_target_methods(methods);
    }
}
