//! `provium gen`: probing specs written from syscall signatures and headers.
//!
//! One spec per syscall. Each case changes one argument from a harmless baseline:
//! - a descriptor: `-1` and an unused high descriptor;
//! - a user pointer: an address that is never mapped;
//! - a flags word whose flag family the headers define: each bit the family leaves undefined;
//! - an extensible struct and its size: too small, exact, larger with a zero tail, larger with a
//!   non-zero tail, and past a page.
//!
//! Cases start with `expect: any`; `provium record --update` writes what the kernel answered.
//! Every case runs in a worker (its own process) with a timeout, so a probe that blocks or kills
//! its process costs only its own case.

use crate::headers::signatures::{Role, Signature};
use crate::headers::tree::Parsed;
use std::collections::{BTreeMap, BTreeSet};

/// Calls that would end or wedge the executor, or the VM, without telling anything about
/// argument checking. `--allow` takes names off, `--deny` adds names.
pub const DENY: &[(&str, &str)] = &[
    ("exit", "ends the process"),
    ("exit_group", "ends the process"),
    ("reboot", "ends the VM"),
    ("kexec_load", "replaces the kernel"),
    ("kexec_file_load", "replaces the kernel"),
    ("pause", "blocks until a signal"),
    ("rt_sigsuspend", "blocks until a signal"),
    ("rt_sigtimedwait", "blocks until a signal"),
    ("rt_sigreturn", "restores a garbage context"),
    ("futex", "FUTEX_WAIT on a zero word blocks"),
    ("futex_waitv", "blocks"),
    ("execve", "replaces the executor"),
    ("execveat", "replaces the executor"),
    ("fork", "creates processes"),
    ("vfork", "creates processes"),
    ("clone", "creates processes"),
    ("clone3", "creates processes"),
    ("kill", "kill(-1, sig) reaches every process"),
    ("tkill", "signals threads"),
    ("tgkill", "signals threads"),
    ("ptrace", "attaches to processes"),
    ("init_module", "loads kernel code"),
    ("finit_module", "loads kernel code"),
    ("delete_module", "could unload the virtio drivers"),
    ("swapon", "changes memory management"),
    ("swapoff", "changes memory management"),
    ("settimeofday", "moves the clock"),
    ("clock_settime", "moves the clock"),
    ("adjtimex", "moves the clock"),
    ("clock_adjtime", "moves the clock"),
    ("syslog", "can clear the kernel log"),
    ("vhangup", "hangs up the console"),
    ("iopl", "changes I/O privileges"),
    ("ioperm", "changes I/O privileges"),
    ("arch_prctl", "ARCH_SET_FS breaks the process's TLS"),
    ("pivot_root", "changes the root"),
    ("mount", "changes the mount table"),
    ("umount2", "changes the mount table"),
    ("restart_syscall", "meaningless out of context"),
    ("acct", "writes accounting records"),
    ("sync", "slow, and tells nothing"),
];

/// Flag families: the constant prefixes whose bits a syscall's flags argument accepts.
pub const FLAG_FAMILIES: &[(&str, &str, &[&str])] = &[
    ("openat", "flags", &["O_"]),
    ("open", "flags", &["O_"]),
    ("pipe2", "flags", &["O_"]),
    ("dup3", "flags", &["O_"]),
    ("renameat2", "flags", &["RENAME_"]),
    ("unlinkat", "flag", &["AT_"]),
    ("linkat", "flags", &["AT_"]),
    ("statx", "flags", &["AT_"]),
    ("statx", "mask", &["STATX_"]),
    ("faccessat2", "flags", &["AT_"]),
    ("fchownat", "flag", &["AT_"]),
    ("utimensat", "flags", &["AT_"]),
    ("name_to_handle_at", "flag", &["AT_"]),
    ("epoll_create1", "flags", &["EPOLL_"]),
    ("memfd_create", "flags", &["MFD_"]),
    ("mmap", "prot", &["PROT_"]),
    ("mprotect", "prot", &["PROT_"]),
    ("pkey_mprotect", "prot", &["PROT_"]),
    ("mmap", "flags", &["MAP_"]),
    ("close_range", "flags", &["CLOSE_RANGE_"]),
    ("getrandom", "flags", &["GRND_"]),
    ("mount_setattr", "flags", &["AT_"]),
    ("fsopen", "flags", &["FSOPEN_"]),
    ("fsmount", "flags", &["FSMOUNT_"]),
    ("move_mount", "flags", &["MOVE_MOUNT_"]),
    ("open_tree", "flags", &["OPEN_TREE_", "AT_"]),
    ("pidfd_open", "flags", &["PIDFD_"]),
    ("signalfd4", "flags", &["SFD_", "O_"]),
    ("inotify_init1", "flags", &["IN_"]),
    ("fanotify_init", "flags", &["FAN_"]),
    ("userfaultfd", "flags", &["O_", "UFFD_"]),
    ("accept4", "flags", &["SOCK_"]),
    ("preadv2", "flags", &["RWF_"]),
    ("pwritev2", "flags", &["RWF_"]),
    ("sync_file_range", "flags", &["SYNC_FILE_RANGE_"]),
    ("mlock2", "flags", &["MLOCK_"]),
    ("membarrier", "flags", &["MEMBARRIER_"]),
];

/// The headers `gen` reads for constants and structs.
pub const GEN_HEADERS: &[&str] = &[
    "linux/openat2.h",
    "linux/sched.h",
    "linux/sched/types.h",
    "linux/mount.h",
    "linux/perf_event.h",
    "linux/landlock.h",
    "linux/time_types.h",
    "linux/uio.h",
    "linux/capability.h",
    "linux/aio_abi.h",
    "linux/stat.h",
    "linux/fcntl.h",
    "linux/fs.h",
    "linux/mman.h",
    "linux/memfd.h",
    "linux/eventpoll.h",
    "linux/close_range.h",
    "linux/random.h",
    "linux/pidfd.h",
    "linux/signalfd.h",
    "linux/inotify.h",
    "linux/fanotify.h",
    "linux/userfaultfd.h",
    "linux/rseq.h",
    "linux/futex.h",
];

/// What `gen` writes: file name → spec text.
pub type Specs = BTreeMap<String, String>;

/// The bytes a struct argument's buffer gets (its layout, then zeros).
const STRUCT_ROOM: usize = 4096;

/// Options for one generation.
#[derive(Debug, Clone, Default)]
pub struct GenOptions {
    /// Only these syscalls (all when empty).
    pub only: Vec<String>,
    /// Syscalls taken off the deny list.
    pub allow: Vec<String>,
    /// Syscalls added to the deny list.
    pub deny: Vec<String>,
    /// The include tree, named in the generated comments.
    pub include: String,
    /// Seconds each probe may block.
    pub timeout: f64,
    /// The spec schema, relative to the directory the specs go to (their `$schema` line).
    pub schema: String,
    /// The ABI the specs are for (`abi: i386` in each, under i386).
    pub abi: crate::linux::Abi,
}

/// Bits a family defines (every value of every constant with one of the prefixes).
fn family_bits(parsed: &Parsed, prefixes: &[&str]) -> Option<u64> {
    let mut mask = 0u64;
    let mut found = false;
    for c in parsed.constants() {
        if prefixes.iter().any(|p| c.name.starts_with(p)) {
            if let Ok(v) = c.value {
                mask |= v as u64;
                found = true;
            }
        }
    }
    found.then_some(mask)
}

fn denied(name: &str, opts: &GenOptions) -> Option<&'static str> {
    if opts.allow.iter().any(|a| a == name) {
        return None;
    }
    if opts.deny.iter().any(|d| d == name) {
        return Some("denied with --deny");
    }
    DENY.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// A harmless value for a parameter: the probes change one parameter at a time from these.
fn baseline(sig: &Signature, i: usize, parsed: &Parsed) -> String {
    let p = &sig.params[i];
    match p.role {
        Role::Fd if p.name.contains("dfd") || p.name.contains("dirfd") => "AT_FDCWD".into(),
        Role::Fd => "0".into(),
        Role::UserPtr => {
            if let Some(s) = p
                .points_to
                .as_deref()
                .filter(|s| parsed.types.spec_layout(s).is_some())
            {
                // Zeros past the struct: a call that reads an array of them (`utimes[2]`) or more
                // than it was told reads zeros, not whatever the buffer happens to be next to.
                return format!("{{struct: {s}, len: {STRUCT_ROOM}}}");
            }
            if p.ty.contains("char")
                && (p.name.contains("name") || p.name.contains("path") || p.name.contains("file"))
            {
                // A path of the syscall's own: specs share a VM (`share_vm`), so one spec's
                // files must not be another's.
                return format!("{{cstr: /tmp/provium-gen-{}}}", sig.name);
            }
            "{out: 4096}".into()
        }
        Role::Size => {
            let prev = i.checked_sub(1).map(|j| &sig.params[j]);
            match prev
                .and_then(|q| q.points_to.as_deref())
                .filter(|s| parsed.types.spec_layout(s).is_some())
            {
                Some(s) => format!("{{sizeof: {s}}}"),
                None => "0".into(),
            }
        }
        // One element: the array argument before it holds exactly one struct. (As a size in
        // bytes it made the kernel read past the buffer, and answer differently run to run.)
        Role::Count => {
            let prev = i.checked_sub(1).map(|j| &sig.params[j]);
            match prev
                .and_then(|q| q.points_to.as_deref())
                .filter(|s| parsed.types.spec_layout(s).is_some())
            {
                Some(_) => "1".into(),
                None => "0".into(),
            }
        }
        // setrlimit and prlimit64 with resource 0 set RLIMIT_CPU to 0: the kernel kills the
        // executor at its next tick, or not, depending on timing. A descriptor limit of 0 is
        // harmless in a worker that ends with the case.
        Role::Other if p.name == "resource" => "RLIMIT_NOFILE".into(),
        Role::Flags | Role::Other => "0".into(),
    }
}

struct Case {
    comment: String,
    name: String,
    args: Vec<String>,
}

fn probes(sig: &Signature, parsed: &Parsed) -> Vec<Case> {
    let base: Vec<String> = (0..sig.params.len())
        .map(|i| baseline(sig, i, parsed))
        .collect();
    let with = |i: usize, v: String| {
        let mut a = base.clone();
        a[i] = v;
        a
    };
    let mut cases = vec![Case {
        comment: "every argument at its baseline".into(),
        name: format!("{} with baseline arguments", sig.name),
        args: base.clone(),
    }];
    for (i, p) in sig.params.iter().enumerate() {
        let what = format!("{} ({})", p.name, p.ty);
        match p.role {
            Role::Fd => {
                for v in ["-1", "9999"] {
                    cases.push(Case {
                        comment: format!("{what}: a bad descriptor"),
                        name: format!("{} with {} {v}", sig.name, p.name),
                        args: with(i, v.into()),
                    });
                }
            }
            Role::UserPtr => cases.push(Case {
                comment: format!("{what}: an address that is never mapped"),
                name: format!("{} with {} unmapped", sig.name, p.name),
                args: with(i, "{bad_ptr}".into()),
            }),
            Role::Flags => {
                let family = FLAG_FAMILIES
                    .iter()
                    .find(|(s, n, _)| *s == sig.name && *n == p.name)
                    .map(|(_, _, f)| *f);
                let Some(defined) = family.and_then(|f| family_bits(parsed, f)) else {
                    continue;
                };
                let bits = if p.ty.contains("64") || p.ty.contains("long") {
                    64
                } else {
                    32
                };
                for bit in 0..bits {
                    if defined & (1u64 << bit) == 0 {
                        cases.push(Case {
                            comment: format!(
                                "{what}: bit {bit}, which no {} constant defines",
                                family.unwrap_or_default().join("/")
                            ),
                            name: format!("{} with {} bit {bit}", sig.name, p.name),
                            args: with(i, format!("\"1 << {bit}\"")),
                        });
                    }
                }
            }
            Role::Size => {
                let prev = i.checked_sub(1).map(|j| &sig.params[j]);
                let Some(s) = prev.and_then(|q| q.points_to.clone()) else {
                    continue;
                };
                let Some(layout) = parsed.types.spec_layout(&s) else {
                    continue;
                };
                let size = layout.size;
                let ptr = i - 1;
                let mut tail = vec!["00"; size + 8];
                if let Some(last) = tail.last_mut() {
                    *last = "01";
                }
                let sizes: [(String, String, String); 5] = [
                    (
                        "0".into(),
                        format!("{{struct: {s}, len: {STRUCT_ROOM}}}"),
                        "no struct at all".into(),
                    ),
                    (
                        (size - 1).to_string(),
                        format!("{{struct: {s}, len: {STRUCT_ROOM}}}"),
                        "one byte short".into(),
                    ),
                    (
                        (size + 8).to_string(),
                        format!("{{struct: {s}, len: {}}}", size + 8),
                        "larger, with a zero tail".into(),
                    ),
                    (
                        (size + 8).to_string(),
                        format!("{{bytes: \"{}\"}}", tail.join(" ")),
                        "larger, with a non-zero tail".into(),
                    ),
                    (
                        "4097".into(),
                        format!("{{struct: {s}, len: 4097}}",),
                        "past a page".into(),
                    ),
                ];
                for (n, buf, why) in sizes {
                    let mut a = base.clone();
                    a[ptr] = buf;
                    a[i] = n.clone();
                    cases.push(Case {
                        comment: format!("{what} of struct {s} ({size} bytes): {why}"),
                        name: format!("{} with {} {n} ({why})", sig.name, p.name),
                        args: a,
                    });
                }
            }
            // No elements at all; more than one would make the kernel read past the buffer.
            Role::Count => cases.push(Case {
                comment: format!("{what}: an empty array"),
                name: format!("{} with {} 0", sig.name, p.name),
                args: with(i, "0".into()),
            }),
            Role::Other => {}
        }
    }
    cases
}

/// Syscall families whose objects outlive the process that made them and are visible to any
/// other (SysV IPC ids, POSIX message queues, keys): their specs keep a VM of their own, since
/// a queue one spec made would change what another's `msgrcv` does.
const KERNEL_OBJECTS: &[&str] = &[
    "msg",
    "sem",
    "shm",
    "mq_",
    "add_key",
    "request_key",
    "keyctl",
];

/// Whether a generated spec's cases leave nothing another file could see (their paths are the
/// syscall's own): its VM may pass to the next file.
fn shares_vm(syscall: &str) -> bool {
    !KERNEL_OBJECTS.iter().any(|p| syscall.starts_with(p))
}

fn spec_text(sig: &Signature, cases: &[Case], opts: &GenOptions) -> String {
    let mut s = format!(
        "# yaml-language-server: $schema={}\n\
         # Generated by `provium gen` from {} and the headers under {}.\n\
         # Each case changes one argument of {} from a harmless baseline. `expect: any` is filled in\n\
         # by `provium record --update`; after that, a different answer from another kernel fails.\n\
         # This is an ordinary spec: edit it freely.\n\
         suite: \"gen: {}\"\n\
         {}{}headers: [{}]\n\
         cases:\n",
        opts.schema,
        sig.origin,
        opts.include,
        sig.name,
        sig.name,
        abi_line(opts),
        if shares_vm(&sig.name) { "share_vm: true\n" } else { "" },
        GEN_HEADERS.join(", ")
    );
    for c in cases {
        s.push_str(&format!("  # {}\n", c.comment));
        // A JSON string is a YAML double-quoted scalar.
        let name = serde_json::to_string(&c.name).unwrap_or_default();
        s.push_str(&format!("  - name: {name}\n"));
        s.push_str(&format!(
            "    as: {{ uid: 0 }}\n    timeout: {}\n",
            opts.timeout
        ));
        s.push_str(&format!("    syscall: {}\n", sig.name));
        s.push_str(&format!("    args: [{}]\n", c.args.join(", ")));
        s.push_str("    expect: any\n");
    }
    s
}

/// `abi: i386` for a suite generated for another ABI than x86_64.
fn abi_line(opts: &GenOptions) -> String {
    match opts.abi {
        crate::linux::Abi::X86_64 => String::new(),
        abi => format!("abi: {abi}\n"),
    }
}

/// Specs for every syscall with a signature and a number, not denied.
pub fn generate(
    signatures: &[Signature],
    numbers: &[(String, u32)],
    parsed: &Parsed,
    opts: &GenOptions,
) -> (Specs, Vec<(String, String)>) {
    let mut specs = Specs::new();
    let mut skipped = Vec::new();
    let known: BTreeSet<&str> = numbers.iter().map(|(n, _)| n.as_str()).collect();
    for sig in signatures {
        if !opts.only.is_empty() && !opts.only.contains(&sig.name) {
            continue;
        }
        if !known.contains(sig.name.as_str()) {
            continue;
        }
        if let Some(why) = denied(&sig.name, opts) {
            skipped.push((sig.name.clone(), why.to_string()));
            continue;
        }
        let cases = probes(sig, parsed);
        specs.insert(format!("{}.yaml", sig.name), spec_text(sig, &cases, opts));
    }
    if opts.only.is_empty() {
        specs.insert("enosys.yaml".into(), enosys_spec(numbers, opts));
    }
    (specs, skipped)
}

/// Numbers past the end of the table, and in gaps inside it.
pub fn enosys_spec(numbers: &[(String, u32)], opts: &GenOptions) -> String {
    let used: BTreeSet<u32> = numbers.iter().map(|(_, n)| *n).collect();
    let last = used.iter().next_back().copied().unwrap_or(0);
    let mut probes: Vec<u32> = (last + 1..=last + 4).collect();
    probes.extend((0..last).filter(|n| !used.contains(n)).take(8));
    probes.push(1000);
    let mut s = format!(
        "# yaml-language-server: $schema={}\n\
         # Generated by `provium gen` from {}'s syscall table under {}: numbers that name no\n\
         # syscall (past the end of the table, and gaps in it).\n\
         suite: \"gen: unused syscall numbers\"\n\
         {}cases:\n",
        opts.schema,
        opts.abi,
        opts.include,
        abi_line(opts)
    );
    for n in probes {
        s.push_str(&format!(
            "  - name: \"syscall {n}\"\n    as: {{ uid: 0 }}\n    timeout: {}\n    syscall: {n}\n    expect: any\n",
            opts.timeout
        ));
    }
    s
}

pub mod diff;
