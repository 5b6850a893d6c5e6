//! The `vm` and `worker` objects of the Lua API.

use super::convert::{self, int, outcome_table, plain_call};
use super::errors;
use super::session::Session;
use crate::machine::profile::{parse_memory, Profile, TransportChoice};
use crate::machine::vm::{BootOptions, Vm, VmError};
use crate::protocol::{Credentials, ExecCall, SyscallCall, SyscallOutcome, Termination, WorkerId};
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// A VM handle's state, shared by the `vm` object and its workers.
pub struct VmSlot {
    pub profile: Profile,
    pub defaults: BootOptions,
    pub vm: Option<Vm>,
    /// Why the VM cannot be used (lost, shut down); shown by every later call.
    pub gone: Option<String>,
    /// The VM was lost (not shut down on purpose): a later test that needs it is not run,
    /// rather than failed again for the same reason.
    pub lost: bool,
    /// Host files put into the VM at boot (a fixture's cache key covers their content).
    pub pushed: Vec<PathBuf>,
}

impl VmSlot {
    pub fn new(profile: Profile, defaults: BootOptions) -> VmSlot {
        VmSlot {
            profile,
            defaults,
            vm: None,
            gone: None,
            lost: false,
            pushed: Vec::new(),
        }
    }

    /// Shuts the VM down if it runs (at the end of a file, or `provium.shutdown_all`).
    pub fn shutdown(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            let _ = vm.shutdown();
        }
        self.gone
            .get_or_insert_with(|| "the VM was shut down".into());
    }
}

/// Something syscalls can be sent to: the VM itself (worker 0) or a worker.
pub trait Target {
    fn slot(&self) -> &Rc<RefCell<VmSlot>>;
    fn worker(&self) -> WorkerId;
    fn label(&self) -> &'static str;
}

#[derive(Clone)]
pub struct LuaVm(pub Rc<RefCell<VmSlot>>);

impl Target for LuaVm {
    fn slot(&self) -> &Rc<RefCell<VmSlot>> {
        &self.0
    }
    fn worker(&self) -> WorkerId {
        0
    }
    fn label(&self) -> &'static str {
        "vm"
    }
}

pub struct LuaWorker {
    slot: Rc<RefCell<VmSlot>>,
    id: WorkerId,
    creds: Credentials,
}

impl Target for LuaWorker {
    fn slot(&self) -> &Rc<RefCell<VmSlot>> {
        &self.slot
    }
    fn worker(&self) -> WorkerId {
        self.id
    }
    fn label(&self) -> &'static str {
        "worker"
    }
}

/// What a VM call returns in `--list` mode, where files run without VMs: neutral values, so that
/// top-level set-up code does not stop the listing.
pub trait DryRun {
    fn dry() -> Self;
}

impl DryRun for () {
    fn dry() {}
}
impl DryRun for i64 {
    fn dry() -> i64 {
        0
    }
}
impl DryRun for u32 {
    fn dry() -> u32 {
        0
    }
}
impl DryRun for String {
    fn dry() -> String {
        String::new()
    }
}
impl DryRun for Vec<u8> {
    fn dry() -> Vec<u8> {
        Vec::new()
    }
}
impl DryRun for Vec<SyscallOutcome> {
    fn dry() -> Vec<SyscallOutcome> {
        Vec::new()
    }
}
impl DryRun for SyscallOutcome {
    fn dry() -> SyscallOutcome {
        SyscallOutcome::Returned {
            ret: 0,
            buffers: Vec::new(),
        }
    }
}
impl DryRun for Vec<crate::machine::vm::VfsMount> {
    fn dry() -> Self {
        Vec::new()
    }
}
impl DryRun for crate::protocol::ExecResult {
    fn dry() -> Self {
        crate::protocol::ExecResult {
            termination: Some(Termination::Exited(0)),
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
        }
    }
}

/// Runs `f` on the booted VM; a fatal VM error marks the VM gone and records its console.
fn with_vm<T, R: DryRun>(
    lua: &Lua,
    target: &T,
    method: &str,
    f: impl FnOnce(&mut Vm, WorkerId) -> Result<R, VmError>,
) -> mlua::Result<R>
where
    T: Target + ?Sized,
{
    let label = target.label();
    if Session::get(lua).config.list_only {
        return Ok(R::dry());
    }
    let mut slot = target.slot().borrow_mut();
    let running = slot.vm.as_ref().is_some_and(|vm| vm.is_running());
    if !running {
        return Err(match &slot.gone {
            Some(why) if slot.lost => errors::not_run(format!("{label}:{method}: {why}")),
            Some(why) => errors::error(
                lua,
                format!("{label}:{method}: the VM is not available: {why}"),
            ),
            None => errors::error(
                lua,
                format!("{label}:{method}: the VM is not booted; call vm:boot() first"),
            ),
        });
    }
    let Some(vm) = slot.vm.as_mut() else {
        return Err(errors::error(
            lua,
            format!("{label}:{method}: the VM is gone"),
        ));
    };
    match f(vm, target.worker()) {
        Ok(r) => Ok(r),
        Err(e) if e.is_fatal() && stopped(lua).is_some() => {
            let why = stopped(lua).unwrap_or_default();
            slot.gone = Some(why.clone());
            slot.lost = true;
            Err(errors::error(
                lua,
                format!("{label}:{method}: {why}; its VM was killed"),
            ))
        }
        Err(e) => {
            if e.is_fatal() {
                slot.gone = Some(format!("the VM was lost in an earlier call ({e})"));
                slot.lost = true;
            }
            Err(vm_error(lua, &format!("{label}:{method}"), &e))
        }
    }
}

/// A VM error as a Lua error, with the console tail; a VM that is gone leaves its console in
/// the file's report too.
pub fn vm_error(lua: &Lua, what: &str, e: &VmError) -> mlua::Error {
    let console = e.console_tail().map(str::to_string);
    if let (true, Some(c)) = (e.is_fatal(), &console) {
        Session::get(lua).record_console(c);
    }
    errors::error_with(
        lua,
        format!("{what}: {e}"),
        console
            .map(|c| format!("console tail:\n{c}"))
            .unwrap_or_default(),
    )
}

/// Why the runner stopped the file (a timeout, an interrupt), if it did.
fn stopped(lua: &Lua) -> Option<String> {
    Session::get(lua)
        .config
        .control
        .as_ref()
        .and_then(|c| c.stopped_because())
}

fn syscall_label(nr: i64) -> String {
    match provium_compiler::linux::Arch::X86_64.syscall_name(nr) {
        Some(name) => format!("syscall {nr} ({name})"),
        None => format!("syscall {nr}"),
    }
}

/// A call's outcome when only a return is acceptable: death and timeouts are errors here.
fn expect_returned(
    lua: &Lua,
    method: &str,
    nr: i64,
    outcome: SyscallOutcome,
) -> mlua::Result<(i64, Vec<Option<Vec<u8>>>)> {
    let what = syscall_label(nr);
    match outcome {
        SyscallOutcome::Returned { ret, buffers } => Ok((ret, buffers)),
        SyscallOutcome::ExecutorDied(t) => Err(errors::error(
            lua,
            format!("{method}: {what} ended the executor ({t}); use vm:call to expect that"),
        )),
        SyscallOutcome::TimedOut => Err(errors::error(lua, format!("{method}: {what} timed out"))),
        SyscallOutcome::Rejected(why) => {
            Err(errors::error(lua, format!("{method}: {what}: {why}")))
        }
        SyscallOutcome::ExecutorBroken(why) => Err(errors::error(
            lua,
            format!("{method}: {what}: {}", super::expect::broken_message(&why)),
        )),
    }
}

fn run_call<T: Target + ?Sized>(
    lua: &Lua,
    target: &T,
    method: &str,
    call: SyscallCall,
) -> mlua::Result<SyscallOutcome> {
    if Session::get(lua).config.list_only {
        return Ok(dry_outcome(&call));
    }
    with_vm(lua, target, method, |vm, w| vm.worker(w).syscall(call))
}

/// In `--list` mode: a successful call whose output buffers are zeros of their size, so that
/// set-up code that unpacks them (a pipe's descriptors) runs on to the tests.
fn dry_outcome(call: &SyscallCall) -> SyscallOutcome {
    SyscallOutcome::Returned {
        ret: 0,
        buffers: call
            .buffers
            .iter()
            .map(|b| b.output.then(|| vec![0; b.len as usize]))
            .collect(),
    }
}

/// Runs a call that must return, and answers what the buffer methods return: the return value,
/// the argument buffers in argument order, then the sub-buffers at `outputs` (pointer specs).
fn call_with_buffers<T: Target + ?Sized>(
    lua: &Lua,
    target: &T,
    method: &str,
    call: SyscallCall,
    outputs: &[usize],
) -> mlua::Result<MultiValue> {
    let nr = call.nr;
    let c = call.clone();
    let (ret, buffers) = expect_returned(lua, method, nr, run_call(lua, target, method, call)?)?;
    let mut out = vec![Value::Integer(ret)];
    out.extend(strings(lua, convert::arg_buffers(&c, &buffers))?);
    let subs: Vec<Vec<u8>> = outputs
        .iter()
        .map(|&i| buffers.get(i).cloned().flatten().unwrap_or_default())
        .collect();
    out.extend(strings(lua, subs)?);
    Ok(MultiValue::from_vec(out))
}

fn strings(lua: &Lua, bufs: Vec<Vec<u8>>) -> mlua::Result<MultiValue> {
    bufs.into_iter()
        .map(|b| lua.create_string(&b).map(Value::String))
        .collect()
}

fn add_target_methods<T: Target + UserData + 'static, M: UserDataMethods<T>>(methods: &mut M) {
    methods.add_method("syscall", |lua, this, args: MultiValue| {
        let mut args = args.into_iter();
        let nr = args.next().unwrap_or(Value::Nil);
        let rest: Vec<Value> = args.collect();
        let call = plain_call(lua, "syscall", &nr, &rest)?;
        let n = call.nr;
        let (ret, _) = expect_returned(lua, "syscall", n, run_call(lua, this, "syscall", call)?)?;
        Ok(ret)
    });

    methods.add_method("syscall_buf", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        if args.len() < 3 {
            return Err(errors::error(
                lua,
                "syscall_buf(nr, buf_arg_index, data, args...): too few arguments",
            ));
        }
        let idx = int(lua, &args[1], "syscall_buf: buffer index")?;
        let mut call = plain_call(lua, "syscall_buf", &args[0], &args[3..])?;
        let bufs = lua.create_table()?;
        bufs.set(idx, args[2].clone())?;
        convert::add_indexed_buffers(lua, "syscall_buf", &mut call, &bufs)?;
        call_with_buffers(lua, this, "syscall_buf", call, &[])
    });

    methods.add_method("syscall_bufs", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        let Some(Value::Table(bufs)) = args.get(1).cloned() else {
            return Err(errors::error(
                lua,
                "syscall_bufs(nr, {[idx]=data, ...}, args...): the second argument must be a table",
            ));
        };
        let mut call = plain_call(lua, "syscall_bufs", &args[0], &args[2..])?;
        convert::add_indexed_buffers(lua, "syscall_bufs", &mut call, &bufs)?;
        call_with_buffers(lua, this, "syscall_bufs", call, &[])
    });

    methods.add_method("syscall_ptr", |lua, this, args: MultiValue| {
        let args: Vec<Value> = args.into_iter().collect();
        let (Some(Value::Table(bufs)), Some(Value::Table(ptrs))) =
            (args.get(1).cloned(), args.get(2).cloned())
        else {
            return Err(errors::error(
                lua,
                "syscall_ptr(nr, bufs, ptrs, args...): bufs and ptrs must be tables",
            ));
        };
        let mut call = plain_call(lua, "syscall_ptr", &args[0], &args[3..])?;
        convert::add_indexed_buffers(lua, "syscall_ptr", &mut call, &bufs)?;
        let outputs = convert::add_pointer_specs(lua, "syscall_ptr", &mut call, &ptrs)?;
        call_with_buffers(lua, this, "syscall_ptr", call, &outputs)
    });

    methods.add_method(
        "ioctl",
        |lua, this, (fd, cmd, data): (Value, Value, Value)| {
            let nr = Value::Integer(16);
            let fd = int(lua, &fd, "ioctl: fd")?;
            let cmd = int(lua, &cmd, "ioctl: request")?;
            let mut call = plain_call(
                lua,
                "ioctl",
                &nr,
                &[Value::Integer(fd), Value::Integer(cmd)],
            )?;
            match &data {
                Value::String(_) => {
                    let bufs = lua.create_table()?;
                    bufs.set(2, data.clone())?;
                    convert::add_indexed_buffers(lua, "ioctl", &mut call, &bufs)?;
                }
                Value::Nil => {}
                other => call.args[2] = int(lua, other, "ioctl: argument")?,
            }
            // Without a buffer there are no argument buffers: only the return value comes back.
            call_with_buffers(lua, this, "ioctl", call, &[])
        },
    );

    methods.add_method(
        "ioctl_buf",
        |lua, this, (fd, cmd, data, ptrs): (Value, Value, Value, Option<Table>)| {
            let fd = int(lua, &fd, "ioctl_buf: fd")?;
            let cmd = int(lua, &cmd, "ioctl_buf: request")?;
            let mut call = plain_call(
                lua,
                "ioctl_buf",
                &Value::Integer(16),
                &[Value::Integer(fd), Value::Integer(cmd)],
            )?;
            let bufs = lua.create_table()?;
            bufs.set(2, data)?;
            convert::add_indexed_buffers(lua, "ioctl_buf", &mut call, &bufs)?;
            let outputs = match ptrs {
                Some(p) => convert::add_pointer_specs(lua, "ioctl_buf", &mut call, &p)?,
                None => Vec::new(),
            };
            call_with_buffers(lua, this, "ioctl_buf", call, &outputs)
        },
    );

    methods.add_method("call", |lua, this, spec: Value| {
        let Value::Table(spec) = spec else {
            return Err(errors::error(
                lua,
                "call{nr=, args=, bufs=, ptrs=, timeout=}: expected a table",
            ));
        };
        let (call, outputs) = convert::call_from_table(lua, "call", &spec)?;
        let c = call.clone();
        let outcome = run_call(lua, this, "call", call)?;
        outcome_table(lua, &c, &outcome, &outputs)
    });

    methods.add_method("batch", |lua, this, calls: Value| {
        let Value::Table(calls) = calls else {
            return Err(errors::error(
                lua,
                "batch{ {nr, args...}, ... }: expected a list of calls",
            ));
        };
        let mut built = Vec::new();
        for (i, c) in calls.sequence_values::<Value>().enumerate() {
            let Value::Table(t) = c? else {
                return Err(errors::error(
                    lua,
                    format!("batch: call {} must be a table", i + 1),
                ));
            };
            built.push(convert::call_from_table(
                lua,
                &format!("batch: call {}", i + 1),
                &t,
            )?);
        }
        let requests: Vec<SyscallCall> = built.iter().map(|(c, _)| c.clone()).collect();
        let outcomes = if Session::get(lua).config.list_only {
            requests.iter().map(dry_outcome).collect()
        } else {
            with_vm(lua, this, "batch", |vm, w| vm.worker(w).batch(requests))?
        };
        let results = lua.create_table()?;
        for ((call, outputs), outcome) in built.iter().zip(&outcomes) {
            results.push(outcome_table(lua, call, outcome, outputs)?)?;
        }
        Ok(results)
    });

    methods.add_method("exec", |lua, this, (cmd, opts): (Value, Option<Table>)| {
        let call = exec_call(lua, &cmd, opts.as_ref())?;
        let result = with_vm(lua, this, "exec", |vm, w| vm.worker(w).exec(call))?;
        exec_result(lua, result)
    });

    methods.add_method(
        "background",
        |lua, this, (cmd, opts): (Value, Option<Table>)| {
            let call = exec_call(lua, &cmd, opts.as_ref())?;
            let id = with_vm(lua, this, "background", |vm, w| {
                vm.worker(w).background(call)
            })?;
            Ok(LuaJob {
                id,
                worker: this.worker(),
            })
        },
    );

    methods.add_method(
        "job_wait",
        |lua, this, (job, timeout): (Value, Option<f64>)| {
            let id = job_id(lua, "job_wait", &job)?;
            let timeout = Duration::from_secs_f64(timeout.unwrap_or(30.0).clamp(0.0, 86_400.0));
            let result = with_vm(lua, this, "job_wait", |vm, w| {
                vm.worker(w).job_wait(id, timeout)
            })?;
            let running = result.termination.is_none();
            let t = exec_result(lua, result)?;
            t.set("running", running)?;
            Ok(t)
        },
    );

    methods.add_method("job_kill", |lua, this, job: Value| {
        let id = job_id(lua, "job_kill", &job)?;
        with_vm(lua, this, "job_kill", |vm, w| vm.worker(w).job_kill(id))
    });

    methods.add_method("json", |lua, this, (cmd, opts): (Value, Option<Table>)| {
        let call = exec_call(lua, &cmd, opts.as_ref())?;
        let shown = call.argv.join(" ");
        let r = with_vm(lua, this, "json", |vm, w| vm.worker(w).exec(call))?;
        if Session::get(lua).config.list_only {
            return Ok(Value::Nil);
        }
        if r.termination != Some(Termination::Exited(0)) {
            return Err(errors::error_with(
                lua,
                format!(
                    "json: `{shown}` {}",
                    match r.termination {
                        Some(t) => t.to_string(),
                        None => "timed out".into(),
                    }
                ),
                String::from_utf8_lossy(&r.stderr).trim().to_string(),
            ));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&r.stdout).map_err(|e| {
            let text = String::from_utf8_lossy(&r.stdout);
            let preview: String = text.chars().take(200).collect();
            errors::error_with(
                lua,
                format!("json: `{shown}` did not print JSON: {e}"),
                format!("stdout: {preview}"),
            )
        })?;
        let options = mlua::serde::SerializeOptions::new()
            .serialize_none_to_null(false)
            .serialize_unit_to_null(false);
        lua.to_value_with(&parsed, options)
    });

    methods.add_method("read_file", |lua, this, path: String| {
        let data = with_vm(lua, this, "read_file", |vm, w| {
            vm.worker(w).read_file(&path)
        })?;
        lua.create_string(&data)
    });

    methods.add_method(
        "write_file",
        |lua, this, (path, data, mode): (String, mlua::LuaString, Value)| {
            let data = data.as_bytes().to_vec();
            let mode = file_mode(lua, &mode)?;
            with_vm(lua, this, "write_file", |vm, w| {
                vm.worker(w).write_file(&path, &data, mode)
            })
        },
    );
}

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
            if session.config.list_only {
                return Ok(());
            }
            if let Some(resumed) =
                super::fixture::resume_plain_boot(lua, &session, &slot.profile, &options)
            {
                slot.vm = Some(resumed?);
                slot.gone = None;
                slot.lost = false;
                return Ok(());
            }
            if let Some(dir) = &session.config.snapshot_dir {
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                options.snapshot_memory = Some(dir.join(format!("ram-{n}")));
            }
            slot.pushed = options.host_files(&slot.profile);
            session.boot_started(&format!("`{}`", slot.profile.name));
            let result = Vm::boot(&slot.profile, &options);
            session.boot_finished();
            match result {
                Ok(vm) => {
                    session.record_vm(&vm);
                    slot.vm = Some(vm);
                    slot.gone = None;
                    slot.lost = false;
                    Ok(())
                }
                Err(e) => {
                    slot.gone = Some(format!("its boot failed ({e})"));
                    slot.lost = true;
                    Err(vm_error(lua, "vm:boot", &e))
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
                if Session::get(lua).config.list_only {
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
        methods.add_method("kill", |lua, this, ()| {
            with_vm(lua, this, "kill", |vm, w| vm.kill_worker(w))
        });
    }
}

/// A background job started by `vm:background` (or a worker's).
pub struct LuaJob {
    pub id: u32,
    pub worker: WorkerId,
}

impl UserData for LuaJob {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| Ok(this.id));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            Ok(format!("job {}", this.id))
        });
    }
}

fn job_id(lua: &Lua, method: &str, v: &Value) -> mlua::Result<u32> {
    match v {
        Value::UserData(ud) => match ud.borrow::<LuaJob>() {
            Ok(job) => Ok(job.id),
            Err(_) => Err(errors::error(
                lua,
                format!("{method}: expected a job from vm:background()"),
            )),
        },
        other => {
            let n = int(lua, other, &format!("{method}: job"))?;
            u32::try_from(n)
                .map_err(|_| errors::error(lua, format!("{method}: bad job number {n}")))
        }
    }
}

/// A file mode: an integer (`tonumber("600", 8)`), or an octal string (`"600"`, `"0o600"`).
fn file_mode(lua: &Lua, v: &Value) -> mlua::Result<u32> {
    let mode = match v {
        Value::Nil => return Ok(0),
        Value::String(s) => {
            let text = s.to_string_lossy();
            let digits = text.trim_start_matches("0o");
            u32::from_str_radix(digits, 8).map_err(|_| {
                errors::error(lua, format!("write_file: mode `{text}` is not octal"))
            })?
        }
        other => int(lua, other, "write_file: mode")? as u32,
    };
    if mode > 0o7777 {
        return Err(errors::error(
            lua,
            format!("write_file: mode {mode:o} is above 7777"),
        ));
    }
    Ok(mode)
}

fn apply_boot_options(lua: &Lua, t: &Table, o: &mut BootOptions) -> mlua::Result<()> {
    for pair in t.pairs::<String, Value>() {
        let (key, value) = pair?;
        match key.as_str() {
            "memory" => {
                let mib = match &value {
                    Value::Integer(n) => parse_memory(&n.to_string()),
                    Value::String(s) => parse_memory(&s.to_string_lossy()),
                    other => Err(format!(
                        "expected \"512M\" or a number of MiB, got {}",
                        other.type_name()
                    )),
                };
                o.memory_mib =
                    Some(mib.map_err(|e| errors::error(lua, format!("vm:boot: memory: {e}")))?);
            }
            "cpus" => {
                let n = int(lua, &value, "vm:boot: cpus")?;
                if !(1..=64).contains(&n) {
                    return Err(errors::error(
                        lua,
                        format!("vm:boot: cpus must be 1 to 64, got {n}"),
                    ));
                }
                o.cpus = Some(n as u32);
            }
            "timeout" => {
                let secs: f64 = lua.unpack(value)?;
                o.timeout = Some(Duration::from_secs_f64(secs.max(0.1)));
            }
            "files" => {
                let Value::Table(files) = value else {
                    return Err(errors::error(
                        lua,
                        "vm:boot: files must be a table {guest_path = host_path}",
                    ));
                };
                for pair in files.pairs::<String, String>() {
                    let (guest, host) = pair?;
                    let host = PathBuf::from(host);
                    if !host.is_file() {
                        return Err(errors::error(
                            lua,
                            format!("vm:boot: files: {} does not exist", host.display()),
                        ));
                    }
                    o.files.insert(guest, host);
                }
            }
            "transport" => {
                let s: String = lua.unpack(value)?;
                o.transport = Some(
                    s.parse::<TransportChoice>()
                        .map_err(|e| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "accel" => {
                let s: String = lua.unpack(value)?;
                o.accel = Some(
                    s.parse()
                        .map_err(|e: String| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "machine" => {
                let s: String = lua.unpack(value)?;
                o.machine = Some(
                    s.parse()
                        .map_err(|e: String| errors::error(lua, format!("vm:boot: {e}")))?,
                );
            }
            "kernel_args" => {
                let args: Vec<String> = lua.unpack(value)?;
                o.kernel_args.extend(args);
            }
            other => {
                let known = [
                    "memory",
                    "cpus",
                    "timeout",
                    "files",
                    "transport",
                    "accel",
                    "machine",
                    "kernel_args",
                ];
                let hint = provium_compiler::diag::did_you_mean_suffix(other, known);
                return Err(errors::error(
                    lua,
                    format!("vm:boot: unknown option `{other}`{hint}"),
                ));
            }
        }
    }
    Ok(())
}

fn credentials(lua: &Lua, opts: Option<&Table>) -> mlua::Result<Credentials> {
    let mut c = Credentials::default();
    let Some(t) = opts else { return Ok(c) };
    for pair in t.pairs::<String, Value>() {
        let (key, value) = pair?;
        match key.as_str() {
            "uid" => c.uid = int(lua, &value, "spawn: uid")? as u32,
            "gid" => c.gid = int(lua, &value, "spawn: gid")? as u32,
            "groups" => {
                let groups: Vec<i64> = lua.unpack(value)?;
                c.groups = groups.into_iter().map(|g| g as u32).collect();
            }
            "caps" => {
                let Value::Table(caps) = value else {
                    return Err(errors::error(
                        lua,
                        "spawn: caps must be a list of names (\"CAP_NET_ADMIN\") or numbers",
                    ));
                };
                for cap in caps.sequence_values::<Value>() {
                    let n = match cap? {
                        Value::String(s) => {
                            let name = s.to_string_lossy().to_ascii_uppercase();
                            let full = if name.starts_with("CAP_") {
                                name
                            } else {
                                format!("CAP_{name}")
                            };
                            provium_compiler::linux::capability(&full).ok_or_else(|| {
                                let hint = provium_compiler::diag::did_you_mean_suffix(
                                    &full,
                                    provium_compiler::linux::capabilities(),
                                );
                                errors::error(
                                    lua,
                                    format!("spawn: unknown capability `{full}`{hint}"),
                                )
                            })?
                        }
                        other => int(lua, &other, "spawn: capability")? as u8,
                    };
                    c.caps.push(n);
                }
            }
            other => {
                let hint = provium_compiler::diag::did_you_mean_suffix(
                    other,
                    ["uid", "gid", "groups", "caps"],
                );
                return Err(errors::error(
                    lua,
                    format!("spawn: unknown option `{other}`{hint}"),
                ));
            }
        }
    }
    if c.gid == 0 && c.uid != 0 && !t.contains_key("gid")? {
        c.gid = c.uid;
    }
    Ok(c)
}

fn exec_call(lua: &Lua, cmd: &Value, opts: Option<&Table>) -> mlua::Result<ExecCall> {
    let mut call = match cmd {
        Value::String(s) => ExecCall {
            argv: vec![s.to_string_lossy().to_string()],
            shell: true,
            ..Default::default()
        },
        Value::Table(t) => {
            let argv: Vec<String> = t.sequence_values::<String>().collect::<mlua::Result<_>>()?;
            if argv.is_empty() {
                return Err(errors::error(lua, "exec: argv is empty"));
            }
            ExecCall {
                argv,
                ..Default::default()
            }
        }
        other => {
            return Err(errors::error(
                lua,
                format!(
                    "exec: expected a shell command (string) or argv (list), got {}",
                    other.type_name()
                ),
            ))
        }
    };
    if let Some(o) = opts {
        if let Some(env) = o.get::<Option<Table>>("env")? {
            let mut vars: BTreeMap<String, String> = BTreeMap::new();
            for pair in env.pairs::<String, String>() {
                let (k, v) = pair?;
                vars.insert(k, v);
            }
            call.env = vars.into_iter().collect();
        }
        if let Some(stdin) = o.get::<Option<mlua::LuaString>>("stdin")? {
            call.stdin = stdin.as_bytes().to_vec();
        }
        if let Some(t) = o.get::<Option<f64>>("timeout")? {
            call.timeout_ms = (t * 1000.0).clamp(1.0, u32::MAX as f64) as u32;
        }
        call.cwd = o.get::<Option<String>>("cwd")?;
    }
    Ok(call)
}

fn exec_result(lua: &Lua, r: crate::protocol::ExecResult) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let output: mlua::Function = lua.named_registry_value("provium.output")?;
    t.set(
        "stdout",
        output.call::<Value>(lua.create_string(&r.stdout)?)?,
    )?;
    t.set(
        "stderr",
        output.call::<Value>(lua.create_string(&r.stderr)?)?,
    )?;
    t.set("truncated", r.truncated)?;
    match r.termination {
        Some(Termination::Exited(code)) => {
            t.set("ok", code == 0)?;
            t.set("exit_code", code)?;
            t.set("timed_out", false)?;
        }
        Some(Termination::Signaled(sig)) => {
            t.set("ok", false)?;
            t.set("signal", sig)?;
            t.set("timed_out", false)?;
        }
        None => {
            t.set("ok", false)?;
            t.set("timed_out", true)?;
        }
    }
    Ok(t)
}

use mlua::LuaSerdeExt;
