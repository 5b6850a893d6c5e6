//! Layouts against gcc's own offsetof/sizeof for real uapi structs.

use super::*;
use std::process::Command;

/// (header, struct) pairs: at least 30, including the ones the design names.
pub const PROBED: &[(&str, &str)] = &[
    ("linux/openat2.h", "open_how"),
    ("linux/sched.h", "clone_args"),
    ("linux/stat.h", "statx"),
    ("linux/stat.h", "statx_timestamp"),
    ("linux/eventpoll.h", "epoll_event"),
    ("linux/mount.h", "mount_attr"),
    ("linux/in.h", "sockaddr_in"),
    ("linux/in.h", "ip_mreqn"),
    ("linux/in6.h", "sockaddr_in6"),
    ("linux/un.h", "sockaddr_un"),
    ("linux/uio.h", "iovec"),
    ("linux/time_types.h", "__kernel_timespec"),
    ("linux/time_types.h", "__kernel_itimerspec"),
    ("linux/input.h", "input_event"),
    ("linux/input.h", "input_absinfo"),
    ("linux/perf_event.h", "perf_event_attr"),
    ("linux/perf_event.h", "perf_event_mmap_page"),
    ("linux/io_uring.h", "io_uring_sqe"),
    ("linux/io_uring.h", "io_uring_cqe"),
    ("linux/io_uring.h", "io_uring_params"),
    ("linux/sched/types.h", "sched_attr"),
    ("linux/time_types.h", "__kernel_old_timeval"),
    ("linux/time_types.h", "__kernel_sock_timeval"),
    ("linux/aio_abi.h", "iocb"),
    ("linux/aio_abi.h", "io_event"),
    ("linux/netlink.h", "sockaddr_nl"),
    ("linux/netlink.h", "nlmsghdr"),
    ("linux/seccomp.h", "seccomp_data"),
    ("linux/seccomp.h", "seccomp_notif"),
    ("linux/filter.h", "sock_filter"),
    ("linux/filter.h", "sock_fprog"),
    ("linux/fanotify.h", "fanotify_event_metadata"),
    ("linux/inotify.h", "inotify_event"),
    ("linux/fiemap.h", "fiemap"),
    ("linux/fiemap.h", "fiemap_extent"),
    ("linux/fs.h", "fsxattr"),
    ("linux/fs.h", "file_clone_range"),
    ("linux/userfaultfd.h", "uffdio_api"),
    ("linux/userfaultfd.h", "uffd_msg"),
    ("linux/landlock.h", "landlock_ruleset_attr"),
    ("linux/rtc.h", "rtc_time"),
    ("asm/stat.h", "stat"),
    ("asm/ldt.h", "user_desc"),
    ("linux/bpf.h", "bpf_insn"),
    ("linux/capability.h", "__user_cap_data_struct"),
];

fn probe_program(types: &CTypes) -> (String, usize) {
    let mut c = String::from("#include <stddef.h>\nint printf(const char *, ...);\n");
    let mut seen = std::collections::BTreeSet::new();
    for (h, _) in PROBED {
        if seen.insert(h) {
            c.push_str(&format!("#include <{h}>\n"));
        }
    }
    c.push_str("int main(void) {\n");
    let mut fields = 0;
    for (_, s) in PROBED {
        let l = types
            .layouts()
            .remove(*s)
            .unwrap_or_else(|| panic!("struct {s} was not parsed"));
        let tag = match l.kind {
            Kind::Struct => "struct",
            Kind::Union => "union",
        };
        c.push_str(&format!(
            "  printf(\"S {s} %zu %zu\\n\", sizeof({tag} {s}), _Alignof({tag} {s}));\n"
        ));
        for f in l.fields.iter().filter(|f| f.bits.is_none()) {
            fields += 1;
            // A flexible array member has no size.
            let size = if matches!(f.ty, CType::Array(_, None)) {
                "(size_t)0".to_string()
            } else {
                format!("sizeof((({tag} {s} *)0)->{})", f.name)
            };
            c.push_str(&format!(
                "  printf(\"F {s} {n} %zu %zu\\n\", offsetof({tag} {s}, {n}), {size});\n",
                n = f.name
            ));
        }
    }
    c.push_str("  return 0;\n}\n");
    (c, fields)
}

#[test]
fn layouts_agree_with_gcc() {
    let root = Path::new("/usr/include");
    let headers: Vec<String> = PROBED.iter().map(|(h, _)| h.to_string()).collect();
    let text = preprocess(root, &headers, false).expect("gcc preprocesses the uapi headers");
    let types = parse(&text, root).expect("lang-c parses them");
    let (program, fields) = probe_program(&types);
    assert!(
        PROBED.len() >= 30 && fields > 200,
        "{} structs, {fields} fields",
        PROBED.len()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.c"), &program).unwrap();
    let exe = dir.path().join("probe");
    let out = Command::new("gcc")
        .arg(dir.path().join("probe.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let layouts = types.layouts();
    let mut checked = 0;
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[0] {
            "S" => {
                let l = &layouts[w[1]];
                assert_eq!(
                    (l.size, l.align),
                    (w[2].parse().unwrap(), w[3].parse().unwrap()),
                    "size and alignment of {}",
                    w[1]
                );
            }
            _ => {
                let l = &layouts[w[1]];
                let f = l.fields.iter().find(|f| f.name == w[2]).unwrap();
                assert_eq!(
                    (f.offset, f.size),
                    (w[3].parse().unwrap(), w[4].parse().unwrap()),
                    "{}.{}",
                    w[1],
                    w[2]
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, PROBED.len() + fields);
}

#[test]
fn bitfields_unions_and_attributes() {
    let src = r#"
typedef unsigned long long __u64;
typedef unsigned int __u32;
typedef __u64 __aligned_u64 __attribute__((aligned(8)));
struct bits { __u64 a : 1, b : 2; __u32 c : 31; __u32 d : 2; __u64 e; };
struct p { char c; int i; } __attribute__((packed));
struct al { char c; } __attribute__((aligned(16)));
union u { char c[3]; int i; };
struct anon { int x; union { int y; long z; }; struct { char p, q; }; };
struct flex { int n; char data[]; };
struct ptrs { void (*fn)(int); char *s; int arr[2][3]; };
"#;
    let types = parse(src, Path::new("/")).unwrap();
    let l = types.layouts();
    let bits = &l["bits"];
    assert_eq!(bits.size, 24, "gcc says 24");
    assert_eq!(
        bits.fields.iter().find(|f| f.name == "d").unwrap().bits,
        Some((64, 2))
    );
    assert_eq!(l["p"].size, 5);
    assert_eq!((l["al"].size, l["al"].align), (16, 16));
    assert_eq!((l["u"].size, l["u"].align), (4, 4));
    let anon = &l["anon"];
    assert_eq!(anon.size, 24);
    assert_eq!(
        anon.fields.iter().find(|f| f.name == "z").unwrap().offset,
        8
    );
    assert_eq!(
        anon.fields.iter().find(|f| f.name == "q").unwrap().offset,
        17
    );
    assert_eq!(l["flex"].size, 4);
    assert_eq!(l["ptrs"].size, 40);
}

/// The same structs under i386's data model (`gcc -E -m32`, ILP32 layouts) against `gcc -m32`'s
/// own sizeof/offsetof, read from its assembly (no 32-bit libc is needed: nothing is linked).
/// asm/stat.h's `struct stat` is i386's own there; `stat64` is added for it.
#[test]
fn layouts_agree_with_gcc_m32() {
    use crate::layout::c::DataModel;
    let root = Path::new("/usr/include");
    let mut probed: Vec<(&str, &str)> = PROBED.to_vec();
    probed.push(("asm/stat.h", "stat64"));
    let headers: Vec<String> = probed.iter().map(|(h, _)| h.to_string()).collect();
    let text =
        crate::headers::cparse::preprocess_with_defines_in(root, &headers, crate::linux::Abi::I386)
            .expect("gcc -m32 preprocesses the uapi headers");
    let (code, _) = split_defines(&text, root);
    let types = parse_in(&code, root, DataModel::Ilp32).expect("lang-c parses them");
    let layouts = types.layouts();
    let mut c = String::from("#include <stddef.h>\n");
    let mut seen = std::collections::BTreeSet::new();
    for (h, _) in &probed {
        if seen.insert(*h) {
            c.push_str(&format!("#include <{h}>\n"));
        }
    }
    let mut probes: Vec<(String, usize)> = Vec::new();
    for (_, s) in &probed {
        let l = layouts
            .get(*s)
            .unwrap_or_else(|| panic!("struct {s} was not parsed under -m32"));
        let tag = match l.kind {
            Kind::Struct => "struct",
            Kind::Union => "union",
        };
        probes.push((format!("sizeof({tag} {s})"), l.size));
        probes.push((format!("_Alignof({tag} {s})"), l.align));
        for f in l.fields.iter().filter(|f| f.bits.is_none()) {
            probes.push((format!("offsetof({tag} {s}, {})", f.name), f.offset));
        }
    }
    for (i, (expr, _)) in probes.iter().enumerate() {
        c.push_str(&format!("int probe{i} = {expr};\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("probe.c");
    std::fs::write(&src, &c).unwrap();
    // As the preprocessing does: an empty gnu/stubs-32.h stands in for multilib's.
    std::fs::create_dir(dir.path().join("gnu")).unwrap();
    std::fs::write(dir.path().join("gnu/stubs-32.h"), "").unwrap();
    let mut cmd = Command::new("gcc");
    cmd.args(["-m32", "-S", "-o", "-", "-nostdinc", "-idirafter"]);
    cmd.arg(dir.path());
    for d in include_dirs(root) {
        cmd.arg("-I").arg(d);
    }
    let gcc_include = Command::new("gcc")
        .arg("-print-file-name=include")
        .output()
        .unwrap();
    cmd.arg("-I")
        .arg(String::from_utf8_lossy(&gcc_include.stdout).trim());
    let out = cmd.arg(&src).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asm = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = asm.lines().collect();
    assert!(probes.len() > 250, "{} probes", probes.len());
    for (i, (expr, ours)) in probes.iter().enumerate() {
        let at = lines
            .iter()
            .position(|l| *l == format!("probe{i}:"))
            .unwrap_or_else(|| panic!("probe{i} ({expr}) not in the assembly"));
        let value = lines[at + 1].trim();
        let gcc: usize = match value.strip_prefix(".long") {
            Some(n) => n.trim().parse().unwrap(),
            None if value.starts_with(".zero") => 0,
            None => panic!("probe{i}: {value}"),
        };
        assert_eq!(gcc, *ours, "{expr}: gcc -m32 says {gcc}, Provium {ours}");
    }
    // Where i386 differs: its own struct stat, stat64's st_size at 44, a 4-byte iovec_len.
    assert_eq!(
        layouts["stat64"]
            .fields
            .iter()
            .find(|f| f.name == "st_size")
            .unwrap()
            .offset,
        44
    );
    assert_eq!(layouts["iovec"].size, 8);
    assert_eq!(layouts["stat"].size, 64);
}
