//! The kernel's health around each test. A test during which the kernel becomes tainted (new
//! bits in `/proc/sys/kernel/tainted`) or reports a `WARNING`, `BUG`, Oops, KASAN, UBSAN or
//! lockdep splat fails with the taint letters and the kernel's report on that test (LTP checks
//! taint after every test too). A profile's `taint = "flag"` keeps the status and notes it in the
//! test's output instead; `"ignore"` turns the check off.
//!
//! Every VM keeps a mark (taint bits, console length) taken when it became ready and moved after
//! each test, so that what a batch of calls before a test did is charged to the first test
//! after it rather than lost.

use super::session::Session;
use super::slot::{console_len, HealthMark, VmSlot};
use crate::event::{ConsoleEvent, ConsoleExcerpt, Problem, Status};
use crate::machine::profile::TaintPolicy;
use crate::machine::vm::{console, Vm};
use std::io::{Read, Seek, SeekFrom};

/// At most this much new console is read after a test.
const MAX_NEW_CONSOLE: u64 = 1 << 20;

fn console_since(vm: &Vm, from: u64) -> String {
    let Ok(mut f) = std::fs::File::open(vm.console_log()) else {
        return String::new();
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = f.take(MAX_NEW_CONSOLE).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The kernel's taint flags by bit (`Documentation/admin-guide/tainted-kernels.rst`).
const TAINT: &[(char, &str)] = &[
    ('P', "proprietary module"),
    ('F', "module force-loaded"),
    ('S', "SMP with CPUs not designed for it"),
    ('R', "module force-unloaded"),
    ('M', "machine check"),
    ('B', "bad page"),
    ('U', "taint requested by userspace"),
    ('D', "the kernel died (an Oops or BUG)"),
    ('A', "ACPI table overridden"),
    ('W', "a WARNING was issued"),
    ('C', "staging driver"),
    ('I', "firmware bug workaround"),
    ('O', "out-of-tree module"),
    ('E', "unsigned module"),
    ('L', "soft lockup"),
    ('K', "live patched"),
    ('X', "auxiliary taint"),
    ('T', "struct randomization plugin"),
    ('N', "in-kernel test"),
];

/// `W (a WARNING was issued), U (taint requested by userspace)`.
pub fn describe_taint(bits: u64) -> String {
    let mut parts = Vec::new();
    for (i, (letter, what)) in TAINT.iter().enumerate() {
        if bits & (1 << i) != 0 {
            parts.push(format!("{letter} ({what})"));
        }
    }
    let known = (1u64 << TAINT.len()) - 1;
    if bits & !known != 0 {
        parts.push(format!("bits {:#x}", bits & !known));
    }
    parts.join(", ")
}

/// What went wrong in the kernel since `mark`, if anything, with the kernel's report when it
/// made one; moves the mark.
fn check(slot: &mut VmSlot) -> Option<(String, Option<ConsoleExcerpt>)> {
    let policy = slot.profile.taint;
    if policy == TaintPolicy::Ignore {
        return None;
    }
    let mark = slot.health?;
    let vm = slot.vm.as_mut().filter(|vm| vm.is_running())?;
    if vm.requests() == mark.requests && console_len(vm) == mark.console_len {
        // Nothing reached the guest since the last check (a test that only checked outcomes
        // of an earlier batch), and the kernel printed nothing.
        return None;
    }
    let now = HealthMark::of(vm);
    slot.health = Some(now);
    let new_bits = now.tainted & !mark.tainted;
    let text = console_since(vm, mark.console_len);
    let event = console::kernel_event(&text).map(|(e, _)| e);
    if new_bits == 0 && event.is_none() {
        return None;
    }
    // A taint with nothing on the console (userspace asked for it) has no report to show.
    let excerpt = event.map(|_| console::excerpt(&text, ConsoleEvent::Tainted));
    let message = match (new_bits, event) {
        (0, Some(e)) => format!("the kernel reported a {e} during this test"),
        (bits, Some(e)) => format!(
            "the kernel reported a {e} and became tainted during this test: {}",
            describe_taint(bits)
        ),
        (bits, None) => format!(
            "the kernel became tainted during this test: {}",
            describe_taint(bits)
        ),
    };
    Some((message, excerpt))
}

/// After a test: a kernel that went wrong during it fails the test (or flags it), per profile.
pub fn after_test(session: &Session, status: &mut Status, output: &mut String) {
    let slots: Vec<_> = session.vms.borrow().clone();
    for slot in slots {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            continue;
        };
        let policy = slot.profile.taint;
        let Some((message, excerpt)) = check(&mut slot) else {
            continue;
        };
        match policy {
            TaintPolicy::Fail => match status {
                Status::Failed(p) | Status::Errored(p) => {
                    p.detail.push_str(&format!("\nalso: {message}"));
                    if p.console.is_none() {
                        p.console = excerpt;
                    }
                }
                _ => {
                    *status = Status::Failed(Problem {
                        console: excerpt,
                        ..Problem::new(message)
                    })
                }
            },
            TaintPolicy::Flag => {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&format!("provium: {message}\n"));
                if let Some(e) = excerpt {
                    output.push_str(&e.render());
                    output.push('\n');
                }
            }
            TaintPolicy::Ignore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn taint_letters() {
        assert_eq!(
            super::describe_taint(1 << 9 | 1 << 6),
            "U (taint requested by userspace), W (a WARNING was issued)"
        );
        assert_eq!(super::describe_taint(1 << 40), "bits 0x10000000000");
    }
}
