//! Choosing the accelerator: KVM where it really works, TCG (software emulation) elsewhere.
//!
//! `/dev/kvm` existing is not enough: on nested or software hypervisors it opens fine and guests
//! then hang in firmware. KVM is used only when the device answers the API version ioctl and the
//! CPU advertises hardware virtualisation (`vmx` or `svm`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Accel {
    type Err = crate::machine::error::BadValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(crate::machine::error::BadValue::new(
                "accelerator",
                other,
                "expected kvm or tcg",
            )),
        }
    }
}

/// The accelerator to use on this host, and why.
pub fn detect() -> (Accel, String) {
    match kvm_usable() {
        Ok(()) => (
            Accel::Kvm,
            "/dev/kvm answers and the CPU has vmx/svm".into(),
        ),
        Err(why) => (Accel::Tcg, why.to_string()),
    }
}

/// Why KVM is not used.
#[derive(Debug, thiserror::Error)]
enum KvmUnusable {
    #[error("/dev/kvm is not usable ({0})")]
    Device(std::io::Error),
    #[error("/dev/kvm answers API version {0}, not 12")]
    ApiVersion(libc::c_int),
    #[error(
        "/dev/kvm exists but the CPU advertises no vmx/svm (a nested or software hypervisor, \
         where guests hang): using TCG"
    )]
    NoHardwareVirtualisation,
}

fn kvm_usable() -> Result<(), KvmUnusable> {
    use std::os::fd::AsRawFd;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw_virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(KvmUnusable::Device)?;
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != 12 {
        return Err(KvmUnusable::ApiVersion(version));
    }
    if !hw_virt {
        return Err(KvmUnusable::NoHardwareVirtualisation);
    }
    Ok(())
}
