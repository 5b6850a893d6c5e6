use provium::profile::Profiles;
use provium::vm::{BootOptions, Vm};

#[test]
fn smoke() {
    let profile = Profiles::builtin().get("minimal").unwrap();
    let t = std::time::Instant::now();
    let mut vm = match Vm::boot(&profile, &BootOptions::default()) {
        Ok(vm) => vm,
        Err(e) => panic!("{e}\n--- console ---\n{}", e.console_tail().unwrap_or("")),
    };
    eprintln!("booted in {:?}: {:?}", t.elapsed(), vm.info());
    eprintln!("getpid = {}", vm.syscall_args(39, &[]).unwrap());
    eprintln!("close(-1) = {}", vm.syscall_args(3, &[-1]).unwrap());
    vm.shutdown().unwrap();
}
