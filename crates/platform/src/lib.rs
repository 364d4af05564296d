//! What the compute engine needs from the operating system, behind one small interface, so
//! that the engine's own code is the same on Linux, Windows and macOS:
//!
//! - [`InputIdle`]: time since the owner last used the keyboard or mouse (Linux: X11's
//!   screensaver extension or logind's idle hint; Windows: `GetLastInputInfo`; macOS: the
//!   HID system's idle time through CoreGraphics' event source);
//! - [`OthersCpu`]: the share of the CPU other programs use (Linux: /proc; Windows:
//!   `GetSystemTimes` and `GetProcessTimes`; macOS: `host_statistics` and `getrusage`);
//! - [`lower_this_thread`]: the lowest scheduling priority for task threads (Linux:
//!   SCHED_IDLE, else nice 19; Windows: `THREAD_PRIORITY_IDLE`; macOS: the background band);
//! - [`power_state`]: on mains or on battery (Linux: /sys/class/power_supply; Windows:
//!   `GetSystemPowerStatus`; macOS: `pmset -g batt`);
//! - [`default_data_dir`] and [`create_private_dir`]: where the engine keeps its data and
//!   that only the owner reads it;
//! - [`service`]: running the engine as a service (systemd user unit, launchd agent, Windows
//!   service);
//! - free space, full-disk errors, thread CPU time and the host name.
//!
//! Every parser of what the system prints is pure and lives in [`parse`], so its tests run on
//! every platform.

mod cpu;
mod dirs;
pub mod parse;
pub mod service;

#[cfg(unix)]
mod unix;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
use other as imp;

use std::path::Path;
use std::time::Duration;

#[cfg(target_os = "linux")]
pub use linux::X11Idle;

pub use cpu::{CpuSample, OthersCpu, others_share};
pub use dirs::{Os, create_private_dir, data_dir_for, default_data_dir, make_executable, private_file};
pub use parse::{PowerSource, PowerState};

/// The operating system this build runs on.
pub const THIS_OS: Os = if cfg!(windows) {
    Os::Windows
} else if cfg!(target_os = "macos") {
    Os::MacOs
} else if cfg!(target_os = "linux") {
    Os::Linux
} else {
    Os::Other
};

/// Where the time since the owner's last input comes from.
pub struct InputIdle {
    source: imp::InputIdle,
}

impl InputIdle {
    /// Find this computer's source (on Linux, X11 first, then logind; none without either).
    pub fn detect() -> InputIdle {
        InputIdle { source: imp::InputIdle::detect() }
    }

    /// Time since the last keyboard or mouse input; `None` when no source can tell.
    pub fn idle(&mut self) -> Option<Duration> {
        self.source.idle()
    }

    /// What this source looks at, for the status page.
    pub fn describe(&self) -> &'static str {
        self.source.describe()
    }
}

/// Lower the calling thread's priority as far as the system allows; returns what was applied,
/// for the status page (`"normal (could not lower)"` when nothing was).
pub fn lower_this_thread() -> String {
    imp::lower_this_thread().unwrap_or_else(|| "normal (could not lower)".into())
}

/// CPU time the calling thread has used; `None` if the system cannot tell.
pub fn thread_cpu_time() -> Option<Duration> {
    imp::thread_cpu_time()
}

/// Bytes available to this (unprivileged) process on the file system holding `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    imp::available_bytes(path)
}

/// Whether an I/O error means the disk (or the owner's quota) is full.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    if error.kind() == std::io::ErrorKind::StorageFull {
        return true;
    }
    if error.raw_os_error().is_some_and(imp::is_disk_full_code) {
        return true;
    }
    // SQLite reports a full disk in its own words.
    error.to_string().contains("database or disk is full")
}

/// This computer's name, as the system gives it.
pub fn hostname() -> Option<String> {
    imp::hostname().map(|name| name.trim().to_string()).filter(|name| !name.is_empty())
}

/// Whether the computer runs on mains or on battery now. May run a system tool (macOS):
/// read it every few seconds, not at every tick.
pub fn power_state() -> PowerState {
    imp::power_state()
}

/// Where the CPU use of other programs is read from, for the status page.
pub fn cpu_source() -> &'static str {
    imp::CPU_SOURCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calling_thread_can_be_lowered() {
        let (granted, applied) = std::thread::spawn(|| {
            let granted = lower_this_thread();
            #[cfg(target_os = "linux")]
            // SAFETY: reading the calling thread's policy.
            let applied = unsafe { libc::sched_getscheduler(0) } == libc::SCHED_IDLE || granted == "nice 19";
            #[cfg(windows)]
            // SAFETY: reading the calling thread's priority through its pseudo-handle.
            let applied = unsafe {
                use windows_sys::Win32::System::Threading::{
                    GetCurrentThread, GetThreadPriority, THREAD_PRIORITY_IDLE,
                };
                GetThreadPriority(GetCurrentThread()) == THREAD_PRIORITY_IDLE
            };
            #[cfg(not(any(target_os = "linux", windows)))]
            let applied = true;
            (granted, applied)
        })
        .join()
        .unwrap();
        assert_ne!(granted, "normal (could not lower)");
        assert!(applied, "the system does not show what was applied: {granted}");
    }

    #[test]
    fn thread_cpu_time_counts_work_not_sleep() {
        let (before, after_sleep, after_work) = std::thread::spawn(|| {
            let before = thread_cpu_time().expect("the system tells a thread's CPU time");
            std::thread::sleep(Duration::from_millis(200));
            let after_sleep = thread_cpu_time().unwrap();
            let mut x = 0u64;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            (before, after_sleep, thread_cpu_time().unwrap())
        })
        .join()
        .unwrap();
        assert!(after_sleep - before < Duration::from_millis(150), "sleeping used {:?}", after_sleep - before);
        assert!(after_work > after_sleep, "spinning used no CPU time");
    }

    #[test]
    fn the_data_folders_disk_has_room_and_full_disks_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("absent/deeper")).is_err());
        assert!(is_disk_full(&std::io::Error::from(std::io::ErrorKind::StorageFull)));
        assert!(is_disk_full(&std::io::Error::other("database or disk is full")));
        assert!(!is_disk_full(&std::io::Error::from(std::io::ErrorKind::NotFound)));
        #[cfg(unix)]
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(libc::ENOSPC)));
        #[cfg(windows)]
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(112)));
    }

    #[test]
    fn a_host_name_and_a_power_state_are_read_without_failing() {
        assert!(hostname().is_some_and(|name| !name.contains('\n')));
        let state = power_state();
        if let Some(percent) = state.battery_percent {
            assert!(percent <= 100, "{state:?}");
        }
        assert!(!InputIdle::detect().describe().is_empty());
        assert!(!cpu_source().is_empty());
    }
}
