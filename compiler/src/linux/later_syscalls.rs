// Syscalls newer than the headers the main table comes from, from linux-source-6.12's
// arch/x86/entry/syscalls/syscall_64.tbl (checked against it by `cargo test -p provium-compiler`).
// They only name numbers in reports (451 is cachestat); specs compile with the headers' table
// or the kernel's own, so a name here never compiles for a kernel that lacks it.

/// Later x86_64 syscall names and numbers, in number order.
pub const LATER_SYSCALLS: &[(&str, u32)] = &[
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("mseal", 462),
];
