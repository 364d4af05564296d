//! Other systems: the engine runs, without input idle time, CPU readings or power state.

use std::path::Path;
use std::time::Duration;

use crate::parse::PowerState;

pub const CPU_SOURCE: &str = "none on this system";

pub struct InputIdle;

impl InputIdle {
    pub fn detect() -> Self {
        InputIdle
    }

    pub fn idle(&mut self) -> Option<Duration> {
        None
    }

    pub fn describe(&self) -> &'static str {
        "no input idle time on this system"
    }
}

pub fn cpu_sample() -> Option<crate::CpuSample> {
    None
}

pub fn lower_this_thread() -> Option<String> {
    None
}

pub fn thread_cpu_time() -> Option<Duration> {
    None
}

pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|_| u64::MAX)
}

pub fn is_disk_full_code(_code: i32) -> bool {
    false
}

pub fn hostname() -> Option<String> {
    None
}

pub fn power_state() -> PowerState {
    PowerState::UNKNOWN
}
