//! macOS: input idle time from the HID system through CoreGraphics' combined event source,
//! CPU from `host_statistics` and `getrusage`, the background priority band, power from
//! `pmset -g batt`.

use std::time::Duration;

use crate::parse::{self, PowerState};

pub use crate::unix::{available_bytes, is_disk_full_code, thread_cpu_time};

pub const CPU_SOURCE: &str = "host_statistics";

#[link(name = "ApplicationServices", kind = "framework")]
unsafe extern "C" {
    /// Seconds since the last event of `event_type` in the event source state `state`.
    fn CGEventSourceSecondsSinceLastEventType(state: i32, event_type: u32) -> f64;
}

unsafe extern "C" {
    /// The host port of this machine (libSystem; libc's binding is deprecated in favour of
    /// a crate this one does not need for one function).
    fn mach_host_self() -> libc::mach_port_t;
}

/// `kCGEventSourceStateCombinedSessionState`: every input of the login session.
const COMBINED_SESSION_STATE: i32 = 0;
/// `kCGAnyInputEventType`.
const ANY_INPUT_EVENT: u32 = !0;

pub struct InputIdle;

impl InputIdle {
    pub fn detect() -> Self {
        InputIdle
    }

    pub fn idle(&mut self) -> Option<Duration> {
        // SAFETY: a pure query of the window server with constant arguments.
        let seconds = unsafe { CGEventSourceSecondsSinceLastEventType(COMBINED_SESSION_STATE, ANY_INPUT_EVENT) };
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
    }

    pub fn describe(&self) -> &'static str {
        "HID idle time (CoreGraphics)"
    }
}

pub fn cpu_sample() -> Option<crate::CpuSample> {
    let mut info = libc::host_cpu_load_info { cpu_ticks: [0; libc::CPU_STATE_MAX as usize] };
    let mut count = libc::HOST_CPU_LOAD_INFO_COUNT;
    // SAFETY: host_statistics fills `count` natural_t words of the struct we own.
    let status = unsafe {
        libc::host_statistics(
            mach_host_self(),
            libc::HOST_CPU_LOAD_INFO,
            (&mut info as *mut libc::host_cpu_load_info).cast(),
            &mut count,
        )
    };
    if status != 0 {
        return None;
    }
    let ticks = info.cpu_ticks.map(u64::from);
    let total: u64 = ticks.iter().sum();
    let busy = total - ticks[libc::CPU_STATE_IDLE as usize];
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the buffer we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded.
    let usage = unsafe { usage.assume_init() };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let own = (micros(usage.ru_utime) + micros(usage.ru_stime)) * hz / 1_000_000;
    Some(crate::CpuSample { busy, total, own })
}

pub fn lower_this_thread() -> Option<String> {
    // SAFETY: setpriority on the calling thread (who 0 with PRIO_DARWIN_THREAD).
    if unsafe { libc::setpriority(libc::PRIO_DARWIN_THREAD, 0, libc::PRIO_DARWIN_BG) } == 0 {
        return Some("background band (PRIO_DARWIN_BG)".into());
    }
    // SAFETY: setpriority on the calling thread's process.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } == 0 {
        return Some("nice 19".into());
    }
    None
}

pub fn hostname() -> Option<String> {
    crate::unix::gethostname()
}

pub fn power_state() -> PowerState {
    match std::process::Command::new("pmset").args(["-g", "batt"]).output() {
        Ok(output) if output.status.success() => parse::parse_pmset(&String::from_utf8_lossy(&output.stdout)),
        _ => PowerState::UNKNOWN,
    }
}
