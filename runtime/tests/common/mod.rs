//! Shared helpers for tests that boot the real kernel.
#![allow(dead_code)]

use provium::machine::profile::{Profiles, TransportChoice};
use provium::machine::vm::{BootOptions, Vm};
use provium::protocol::{Buffer, SyscallCall, SyscallOutcome};
use std::sync::{Mutex, MutexGuard, OnceLock};

pub const AT_FDCWD: i64 = -100;

pub fn boot(transport: TransportChoice) -> Vm {
    boot_with(BootOptions {
        transport: Some(transport),
        ..Default::default()
    })
}

pub fn boot_with(opts: BootOptions) -> Vm {
    let profile = Profiles::builtin()
        .get("minimal")
        .expect("built-in profile");
    match Vm::boot(&profile, &opts) {
        Ok(vm) => vm,
        Err(e) => panic!(
            "boot failed: {e}\n--- console ---\n{}",
            e.console_tail().unwrap_or("")
        ),
    }
}

/// The `minimal` profile's fixture resumed (built first if needed): the VM a test's
/// `provium.create("minimal")` and `vm:boot()` get by default.
pub fn resume_minimal() -> Vm {
    use provium::fixture::{Definition, Fixtures};
    let profiles = Profiles::builtin();
    let minimal = profiles.get("minimal").expect("built-in profile");
    let def = Definition::plain_boot(&minimal, &BootOptions::default()).expect("a plain boot");
    let cwd = std::env::current_dir().expect("a working directory");
    match Fixtures::discover(&cwd, profiles).and_then(|f| f.resume_def(&def)) {
        Ok(vm) => vm,
        Err(e) => panic!("resuming the minimal fixture failed: {e:#}"),
    }
}

/// One VM per transport, shared by the tests of a module, made again if a test lost it:
/// resumed from the `minimal` fixture over virtio-serial (the default path, and a resume costs
/// a tenth of a boot), booted over vsock (which QEMU cannot snapshot). A VM holds
/// a ticket at the machine-wide gate (one CPU) while it lives, so one that no test has used for
/// [`Shared::IDLE`] is shut down: the `provium` processes other tests start would otherwise wait
/// at the gate for VMs nobody uses until the binary ends.
pub struct Shared {
    slot: OnceLock<std::sync::Arc<Mutex<Slot>>>,
    transport: TransportChoice,
}

#[derive(Default)]
struct Slot {
    vm: Option<Vm>,
    last_used: Option<std::time::Instant>,
}

impl Shared {
    const IDLE: std::time::Duration = std::time::Duration::from_secs(2);

    pub const fn new(transport: TransportChoice) -> Shared {
        Shared {
            slot: OnceLock::new(),
            transport,
        }
    }

    pub fn get(&self) -> VmGuard<'_> {
        // A shared VM lives in a static, which is never dropped: at exit, its QEMU is killed and
        // its run directory removed (CI checks that no run directory is left behind).
        static AT_EXIT: std::sync::Once = std::sync::Once::new();
        extern "C" fn clean_up() {
            provium::machine::cleanup::cleanup_all();
        }
        // SAFETY: registering a plain function that only kills processes and removes
        // directories this process made.
        AT_EXIT.call_once(|| unsafe {
            libc::atexit(clean_up);
        });
        let m = self.slot.get_or_init(|| {
            let slot = std::sync::Arc::new(Mutex::new(Slot::default()));
            let watched = std::sync::Arc::downgrade(&slot);
            std::thread::spawn(move || shut_down_when_idle(watched));
            slot
        });
        let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
        if !guard.vm.as_ref().is_some_and(|vm| vm.is_running()) {
            guard.vm = Some(match self.transport {
                TransportChoice::VirtioSerial => resume_minimal(),
                other => boot(other),
            });
        }
        guard.last_used = Some(std::time::Instant::now());
        VmGuard(guard)
    }
}

/// Drops the slot's VM once it has been idle for [`Shared::IDLE`] (a test holding it is not
/// idle: the lock is held).
fn shut_down_when_idle(slot: std::sync::Weak<Mutex<Slot>>) {
    while let Some(slot) = slot.upgrade() {
        if let Ok(mut s) = slot.try_lock() {
            if s.vm.is_some() && s.last_used.is_some_and(|t| t.elapsed() > Shared::IDLE) {
                s.vm = None;
            }
        }
        drop(slot);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub struct VmGuard<'a>(MutexGuard<'a, Slot>);

impl std::ops::Deref for VmGuard<'_> {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        self.0.vm.as_ref().expect("booted")
    }
}

impl std::ops::DerefMut for VmGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vm {
        self.0.vm.as_mut().expect("booted")
    }
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn input(arg: u8, data: Vec<u8>) -> Buffer {
    Buffer {
        arg: Some(arg),
        len: data.len() as u32,
        data,
        output: false,
    }
}

pub fn output(arg: u8, len: u32) -> Buffer {
    Buffer {
        arg: Some(arg),
        data: vec![],
        len,
        output: true,
    }
}

pub fn call(nr: i64, args: &[i64], buffers: Vec<Buffer>) -> SyscallCall {
    let mut a = [0i64; 6];
    a[..args.len()].copy_from_slice(args);
    SyscallCall {
        nr,
        args: a,
        buffers,
        ..Default::default()
    }
}

/// The return value and output buffers of a call that returned.
pub fn returned(outcome: SyscallOutcome) -> (i64, Vec<Option<Vec<u8>>>) {
    match outcome {
        SyscallOutcome::Returned { ret, buffers } => (ret, buffers),
        other => panic!("expected the call to return, got {other:?}"),
    }
}

/// The repository's root (where `specs/` and `docs/` are).
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// This build's `provium`, without colours.
pub fn provium() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_provium"));
    c.env("NO_COLOR", "1");
    c
}

/// Writes `text` to `dir/name`, creating directories on the way.
pub fn write_file(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("a file name")).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An empty cache (`PROVIUM_HOME`) that shares the installed kernels: what a fresh machine
/// builds (vmlinux, initramfs, fixtures) is built again there.
pub fn fresh_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    link_kernels(home.path());
    home
}

/// Links the installed kernels into the cache at `home`.
pub fn link_kernels(home: &std::path::Path) {
    std::os::unix::fs::symlink(provium::machine::paths::kernels(), home.join("kernels")).unwrap();
}

/// Removes a temporary project's fixture builds from the cache however the test ends (they
/// live under the project's name, which no later run has: nothing else would remove them).
/// Only the fixtures the project defines: `provium fixture clean` with no name would also take
/// the plain-boot builds every project with the built-in profiles shares, and the other tests'
/// next runs would boot to build them again.
pub struct FixtureCleanup<'a>(pub &'a std::path::Path);
impl Drop for FixtureCleanup<'_> {
    fn drop(&mut self) {
        let names = provium::machine::profile::Profiles::discover(self.0)
            .ok()
            .and_then(|p| provium::fixture::Fixtures::discover(self.0, p).ok())
            .map(|f| f.names())
            .unwrap_or_default();
        if !names.is_empty() {
            let _ = provium_in(self.0)
                .args(["fixture", "clean"])
                .args(names)
                .output();
        }
    }
}

/// A gate of its own for a run whose VMs mostly sleep (a file waiting out its timeout in
/// `pause`): in the gate every provium on the machine shares, two such VMs hold both CPU tickets
/// of a 2-core machine while the cores idle, and every other test's VMs wait for them.
pub fn own_gate<'a>(
    cmd: &'a mut std::process::Command,
    dir: &std::path::Path,
) -> &'a mut std::process::Command {
    cmd.env("PROVIUM_GATE_DIR", dir.join(".gate"))
}

/// This build's `provium`, run in `dir`, without colours.
pub fn provium_in(dir: &std::path::Path) -> std::process::Command {
    let mut c = provium();
    c.current_dir(dir);
    c
}

/// A command's exit code and output, for assertion messages.
pub fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `PROVIUM_QEMU` that counts the VMs started (one line each in the returned file; the
/// `--version` probe is not counted), then runs the real QEMU.
pub fn qemu_counter(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let real = provium::machine::qemu::find_qemu().expect("QEMU is installed");
    let count = dir.join("qemu-starts");
    let wrapper = dir.join("counting-qemu");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] || echo \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            count.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, count)
}

/// Lines in `path` (0 when it does not exist).
pub fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The kacs tree `scripts/setup` built (examples/custom-syscall; its tinyconfig has no IA32
/// emulation); a missing one fails, saying how to build it.
pub fn kacs_tree() -> std::path::PathBuf {
    let out = std::process::Command::new(root().join("examples/custom-syscall/build.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The DOM of an HTML report as headless chromium renders it (scripts/setup installs it).
pub fn rendered_dom(html: &std::path::Path) -> String {
    let out = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (scripts/setup installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One run of the bundled specs, `provium test specs/ -j 2 --junit FILE` from the repository
/// root, shared by the tests that read it (the run is 19 resumed VMs).
pub struct SpecsRun {
    pub output: std::process::Output,
    /// The JUnit report it wrote.
    pub junit: String,
}

/// The bundled specs' run at `-j 2`, made by the first test that asks.
pub fn bundled_specs_at_j2() -> &'static SpecsRun {
    static RUN: std::sync::OnceLock<SpecsRun> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("specs.xml");
        let output = provium()
            .current_dir(root())
            .args(["test", "specs/", "-j", "2", "--junit"])
            .arg(&junit)
            .output()
            .unwrap();
        SpecsRun {
            junit: std::fs::read_to_string(&junit).unwrap_or_default(),
            output,
        }
    })
}

/// Builds the `minimal` fixture, if the cache lacks it, through a file without a short time
/// limit: on an empty cache a loaded machine may not boot and save it within the few seconds
/// that the files under test allow themselves.
pub fn warm_fixture(dir: &std::path::Path) {
    write_file(
        dir,
        "warm.lua",
        "local vm = provium.create()\nvm:boot()\ntest(\"boots\", function() end)\n",
    );
    let out = provium_in(dir).args(["test", "warm.lua"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
}
