//! Boots the default VM and prints where the boot time went.
use provium::machine::profile::Profiles;
use provium::machine::vm::{plan, BootOptions, Vm};

fn main() -> anyhow::Result<()> {
    let profile = Profiles::builtin().get("minimal")?;
    if std::env::var_os("DUMP").is_some() {
        let p = plan::plan(&profile, &BootOptions::default())?;
        println!("{:?}", p);
    }
    for _ in 0..4 {
        let t = std::time::Instant::now();
        let p = plan::plan(&profile, &BootOptions::default())?;
        let planned = t.elapsed();
        let mut vm = Vm::launch(&p)?;
        let hello = vm.hello().clone();
        println!(
            "plan {:?}, wall {:?}, agent init at {} ms, ready at {} ms, timeline {:?}",
            planned,
            t.elapsed(),
            hello.timeline[0].1 / 1000,
            hello.ready_us / 1000,
            hello.timeline
        );
        vm.kill();
    }
    Ok(())
}
