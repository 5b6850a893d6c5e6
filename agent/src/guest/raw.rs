//! Raw system calls with buffers in executor memory.
//!
//! The `syscall` instruction is issued directly rather than through libc's `syscall(3)`, so the
//! kernel's return value reaches the host untouched: a negative errno on failure, never `-1` plus
//! `errno`.

use provium_agent::protocol::{Abi, SyscallCall, SyscallOutcome};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// The largest single buffer the agent allocates; larger requests are rejected rather than
/// letting a typo exhaust guest memory.
const MAX_BUFFER: usize = 256 << 20;
/// Alignment of every buffer: enough for any scalar or SIMD field of a uapi struct.
const BUFFER_ALIGN: usize = 64;

/// # Safety
/// This performs an arbitrary system call with arbitrary arguments: it can do anything to the
/// calling process. It runs only in executor processes, whose death the supervisor reports.
#[cfg(target_arch = "x86_64")]
pub unsafe fn syscall6(nr: i64, a: [i64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the syscall instruction with the kernel's calling convention (rcx and r11 are
    // clobbered); what the call does is the caller's to answer for.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        )
    };
    ret
}

/// # Safety
/// See the x86_64 version.
#[cfg(target_arch = "aarch64")]
pub unsafe fn syscall6(nr: i64, a: [i64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: svc 0 with the kernel's calling convention; see the x86_64 version.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack)
        )
    };
    ret
}

/// An i386 call (`int $0x80` from a 64-bit process): the kernel takes eax and ebx, ecx, edx,
/// esi, edi, ebp, each 32 bits, and answers in eax. rbx and rbp cannot be named as operands
/// (LLVM reserves them), so they are saved on the stack and loaded inside the block; r8–r11
/// are clobbered by the compat entry.
///
/// # Safety
/// As [`syscall6`]; every pointer argument must be below 4 GiB.
#[cfg(target_arch = "x86_64")]
pub unsafe fn syscall6_i386(nr: i64, a: [i64; 6]) -> i64 {
    let ret: u64;
    // SAFETY: as syscall6's; the block restores rbx and rbp before it ends.
    unsafe {
        core::arch::asm!(
            "push rbp",
            "push rbx",
            "mov ebx, {a0:e}",
            "mov ebp, {a5:e}",
            "int 0x80",
            "pop rbx",
            "pop rbp",
            a0 = in(reg) a[0],
            a5 = in(reg) a[5],
            inlateout("rax") nr as u32 as u64 => ret,
            in("rcx") a[1] as u32 as u64,
            in("rdx") a[2] as u32 as u64,
            in("rsi") a[3] as u32 as u64,
            in("rdi") a[4] as u32 as u64,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
        )
    };
    // The result is eax: -4095..-1 is an errno.
    ret as u32 as i32 as i64
}

/// # Safety
/// There is no i386 ABI beside aarch64's: every call is refused before it gets here.
#[cfg(target_arch = "aarch64")]
pub unsafe fn syscall6_i386(_nr: i64, _a: [i64; 6]) -> i64 {
    -(libc::ENOSYS as i64)
}

/// The mapping flag that places i386 buffers below 4 GiB; other guests have no i386 calls
/// (`validate` refuses them).
#[cfg(target_arch = "x86_64")]
const LOW_MAPPING: libc::c_int = libc::MAP_32BIT;
#[cfg(not(target_arch = "x86_64"))]
const LOW_MAPPING: libc::c_int = 0;

/// Where a buffer lives: the allocator's memory, or (for i386 calls, whose pointers are 32 bits)
/// a mapping below 4 GiB.
enum Memory {
    Heap(Layout),
    Low(usize),
}

/// Zeroed, aligned memory that lives for one call.
struct GuestBuffer {
    ptr: *mut u8,
    memory: Memory,
}

impl GuestBuffer {
    fn new(len: usize, data: &[u8], abi: Abi) -> Result<Self, String> {
        if len > MAX_BUFFER {
            return Err(format!(
                "buffer of {len} bytes exceeds the {MAX_BUFFER}-byte limit"
            ));
        }
        let (ptr, memory) = match abi {
            Abi::Native => {
                // A zero-length buffer still gets a unique, valid address.
                let layout = Layout::from_size_align(len.max(1), BUFFER_ALIGN)
                    .map_err(|e| format!("bad buffer layout: {e}"))?;
                // SAFETY: the layout has a non-zero size.
                let ptr = unsafe { alloc_zeroed(layout) };
                (ptr, Memory::Heap(layout))
            }
            Abi::I386 => {
                let size = len.max(1);
                // SAFETY: a fresh anonymous mapping; MAP_32BIT puts it in the low 2 GiB.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        size,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | LOW_MAPPING,
                        -1,
                        0,
                    )
                };
                if ptr == libc::MAP_FAILED {
                    return Err(format!(
                        "a buffer of {len} bytes below 4 GiB: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                (ptr as *mut u8, Memory::Low(size))
            }
        };
        if ptr.is_null() {
            return Err(format!("out of memory allocating {len} bytes"));
        }
        // SAFETY: `data.len() <= len` was checked by the caller; the region is ours.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
        Ok(GuestBuffer { ptr, memory })
    }

    fn address(&self) -> u64 {
        self.ptr as u64
    }

    fn contents(&self, len: usize) -> Vec<u8> {
        // SAFETY: the allocation holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }.to_vec()
    }

    fn write_u64(&mut self, offset: usize, value: u64) {
        // SAFETY: the caller checked `offset + 8 <= len`; unaligned writes are allowed.
        unsafe { (self.ptr.add(offset) as *mut u64).write_unaligned(value.to_le()) };
    }

    fn write_u32(&mut self, offset: usize, value: u32) {
        // SAFETY: the caller checked `offset + 4 <= len`; unaligned writes are allowed.
        unsafe { (self.ptr.add(offset) as *mut u32).write_unaligned(value.to_le()) };
    }
}

impl Drop for GuestBuffer {
    fn drop(&mut self) {
        match self.memory {
            // SAFETY: allocated with this layout in `new`.
            Memory::Heap(layout) => unsafe { dealloc(self.ptr, layout) },
            // SAFETY: mapped with this size in `new`.
            Memory::Low(size) => unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, size);
            },
        }
    }
}

/// The bytes a pointer takes inside a buffer under `abi`.
fn pointer_size(abi: Abi) -> u64 {
    match abi {
        Abi::Native => 8,
        Abi::I386 => 4,
    }
}

/// Checks a call before anything is allocated, so a bad request never half-runs.
fn validate(call: &SyscallCall) -> Result<(), String> {
    let mut bound = [false; 6];
    for (i, b) in call.buffers.iter().enumerate() {
        if (b.len as usize) < b.data.len() {
            return Err(format!(
                "buffer {i}: len {} is smaller than its {} data bytes",
                b.len,
                b.data.len()
            ));
        }
        if let Some(arg) = b.arg {
            let slot = bound
                .get_mut(arg as usize)
                .ok_or_else(|| format!("buffer {i}: argument index {arg} is out of range 0..=5"))?;
            if *slot {
                return Err(format!("buffer {i}: argument {arg} already has a buffer"));
            }
            *slot = true;
        }
    }
    for (i, p) in call.patches.iter().enumerate() {
        let holder = call
            .buffers
            .get(p.buffer as usize)
            .ok_or_else(|| format!("pointer patch {i}: no buffer {} to write into", p.buffer))?;
        if call.buffers.get(p.target as usize).is_none() {
            return Err(format!(
                "pointer patch {i}: no buffer {} to point at",
                p.target
            ));
        }
        let width = pointer_size(call.abi);
        if p.offset as u64 + width > holder.len as u64 {
            return Err(format!(
                "pointer patch {i}: offset {} does not leave {width} bytes in buffer {} of {} bytes",
                p.offset, p.buffer, holder.len
            ));
        }
    }
    if call.abi == Abi::I386 && !cfg!(target_arch = "x86_64") {
        return Err("the i386 ABI exists only on x86_64 guests".into());
    }
    Ok(())
}

/// Runs one call in this process. `executor_pid` lets a child created by a raw `fork`/`clone`
/// leave at once instead of serving requests as a second executor.
pub fn perform(call: &SyscallCall, executor_pid: u32) -> SyscallOutcome {
    if let Err(why) = validate(call) {
        return SyscallOutcome::Rejected(why);
    }
    let mut memory = Vec::with_capacity(call.buffers.len());
    for b in &call.buffers {
        match GuestBuffer::new(b.len as usize, &b.data, call.abi) {
            Ok(m) => memory.push(m),
            Err(why) => return SyscallOutcome::Rejected(why),
        }
    }
    for p in &call.patches {
        let address = memory[p.target as usize].address();
        match call.abi {
            Abi::Native => memory[p.buffer as usize].write_u64(p.offset as usize, address),
            // Below 4 GiB by construction (MAP_32BIT).
            Abi::I386 => memory[p.buffer as usize].write_u32(p.offset as usize, address as u32),
        }
    }
    let mut args = call.args;
    for (b, m) in call.buffers.iter().zip(&memory) {
        if let Some(arg) = b.arg {
            args[arg as usize] = m.address() as i64;
        }
    }
    // SAFETY: see `syscall6`; this is the executor's whole purpose.
    let ret = unsafe {
        match call.abi {
            Abi::Native => syscall6(call.nr, args),
            Abi::I386 => syscall6_i386(call.nr, args),
        }
    };
    if std::process::id() != executor_pid {
        // A child of a raw fork/clone/vfork: it must not touch the executor's channel.
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) };
    }
    let buffers = call
        .buffers
        .iter()
        .zip(&memory)
        .map(|(b, m)| b.output.then(|| m.contents(b.len as usize)))
        .collect();
    SyscallOutcome::Returned { ret, buffers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provium_agent::protocol::{Buffer, PointerPatch};

    fn run(call: SyscallCall) -> SyscallOutcome {
        perform(&call, std::process::id())
    }

    #[test]
    fn raw_errno_is_negative() {
        let call = SyscallCall {
            nr: libc::SYS_close,
            args: [-1, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        assert_eq!(
            run(call),
            SyscallOutcome::Returned {
                ret: -(libc::EBADF as i64),
                buffers: vec![]
            }
        );
    }

    /// i386 calls through `int $0x80` on the host's kernel (Debian's have IA32 emulation):
    /// getpid (20) is the process's pid, close(-1) (6) is EBADF with the result sign-extended,
    /// and a writev (146) through an iovec whose 4-byte base the agent patched below 4 GiB
    /// writes the bytes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_calls_take_32_bit_arguments_and_low_buffers() {
        let i386 = |nr: i64, args: [i64; 6]| SyscallCall {
            nr,
            args,
            abi: Abi::I386,
            ..Default::default()
        };
        if !std::path::Path::new("/proc/sys/abi").exists() {
            return; // a host kernel without IA32 emulation
        }
        let pid = std::process::id() as i64;
        assert_eq!(
            run(i386(20, [0; 6])),
            SyscallOutcome::Returned {
                ret: pid,
                buffers: vec![]
            }
        );
        assert_eq!(
            run(i386(6, [-1, 0, 0, 0, 0, 0])),
            SyscallOutcome::Returned {
                ret: -(libc::EBADF as i64),
                buffers: vec![]
            }
        );
        let mut fds = [0i32; 2];
        // SAFETY: a valid two-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let call = SyscallCall {
            buffers: vec![
                // struct iovec (i386): a 4-byte base, then a 4-byte length of 5.
                Buffer {
                    arg: Some(1),
                    len: 8,
                    data: vec![0, 0, 0, 0, 5, 0, 0, 0],
                    output: false,
                },
                Buffer {
                    arg: None,
                    len: 5,
                    data: b"hello".to_vec(),
                    output: false,
                },
            ],
            patches: vec![PointerPatch {
                buffer: 0,
                offset: 0,
                target: 1,
            }],
            ..i386(146, [fds[1] as i64, 0, 1, 0, 0, 0])
        };
        assert_eq!(
            run(call),
            SyscallOutcome::Returned {
                ret: 5,
                buffers: vec![None, None]
            }
        );
        let mut got = [0u8; 5];
        // SAFETY: reading into a valid buffer from our pipe.
        assert_eq!(unsafe { libc::read(fds[0], got.as_mut_ptr().cast(), 5) }, 5);
        assert_eq!(&got, b"hello");
        // SAFETY: closing our pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn uname_fills_an_output_buffer() {
        let call = SyscallCall {
            nr: libc::SYS_uname,
            buffers: vec![Buffer {
                arg: Some(0),
                data: vec![],
                len: 390,
                output: true,
            }],
            ..Default::default()
        };
        match run(call) {
            SyscallOutcome::Returned { ret: 0, buffers } => {
                assert!(buffers[0].as_ref().unwrap().starts_with(b"Linux"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn writev_through_patched_iovec() {
        let (r, w) = crate::guest::sys::socketpair().unwrap();
        use std::os::fd::AsRawFd;
        let mut iov = vec![0u8; 32];
        iov[8..16].copy_from_slice(&3u64.to_le_bytes());
        iov[24..32].copy_from_slice(&2u64.to_le_bytes());
        let call = SyscallCall {
            nr: libc::SYS_writev,
            args: [w.as_raw_fd() as i64, 0, 2, 0, 0, 0],
            buffers: vec![
                Buffer {
                    arg: Some(1),
                    len: 32,
                    data: iov,
                    output: false,
                },
                Buffer {
                    arg: None,
                    len: 3,
                    data: b"abc".to_vec(),
                    output: false,
                },
                Buffer {
                    arg: None,
                    len: 2,
                    data: b"de".to_vec(),
                    output: false,
                },
            ],
            patches: vec![
                PointerPatch {
                    buffer: 0,
                    offset: 0,
                    target: 1,
                },
                PointerPatch {
                    buffer: 0,
                    offset: 16,
                    target: 2,
                },
            ],
            ..Default::default()
        };
        assert!(matches!(run(call), SyscallOutcome::Returned { ret: 5, .. }));
        let mut got = [0u8; 5];
        use std::io::Read;
        std::fs::File::from(r).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcde");
    }

    #[test]
    fn bad_requests_are_rejected_not_run() {
        let bad = [
            SyscallCall {
                buffers: vec![Buffer {
                    arg: Some(6),
                    len: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            SyscallCall {
                buffers: vec![Buffer {
                    arg: None,
                    len: 1,
                    data: vec![1, 2],
                    output: false,
                }],
                ..Default::default()
            },
            SyscallCall {
                buffers: vec![Buffer {
                    arg: Some(0),
                    len: 4,
                    ..Default::default()
                }],
                patches: vec![PointerPatch {
                    buffer: 0,
                    offset: 0,
                    target: 0,
                }],
                ..Default::default()
            },
            SyscallCall {
                buffers: vec![Buffer {
                    arg: Some(0),
                    len: u32::MAX,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ];
        for call in bad {
            assert!(matches!(run(call), SyscallOutcome::Rejected(_)));
        }
    }
}
