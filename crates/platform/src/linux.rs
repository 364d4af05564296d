//! Linux: input idle time from X11's screensaver extension or logind's idle hint, CPU from
//! /proc, SCHED_IDLE (else nice 19), power from /sys/class/power_supply.

use std::path::Path;
use std::time::Duration;

use crate::parse::{self, PowerState, PowerSupply};

pub use crate::unix::{available_bytes, is_disk_full_code, thread_cpu_time};

pub const CPU_SOURCE: &str = "/proc";

/// Idle time from the X server's screensaver extension.
pub struct X11Idle {
    connection: x11rb::rust_connection::RustConnection,
    root: u32,
}

impl X11Idle {
    /// Connect to `$DISPLAY`; `None` when there is no display.
    pub fn connect() -> Option<X11Idle> {
        use x11rb::connection::Connection;
        std::env::var_os("DISPLAY")?;
        let (connection, screen) = x11rb::connect(None).ok()?;
        let root = connection.setup().roots.get(screen)?.root;
        let idle = X11Idle { connection, root };
        idle.idle().map(|_| idle)
    }

    pub fn idle(&self) -> Option<Duration> {
        use x11rb::protocol::screensaver::ConnectionExt as _;
        let reply = self.connection.screensaver_query_info(self.root).ok()?.reply().ok()?;
        Some(Duration::from_millis(reply.ms_since_user_input as u64))
    }
}

/// Idle time from systemd-logind's idle hint of this session (via `loginctl`).
pub struct LogindIdle {
    session: String,
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

impl LogindIdle {
    fn connect() -> Option<LogindIdle> {
        let session = std::env::var("XDG_SESSION_ID").ok()?;
        let idle = LogindIdle { session };
        idle.idle().map(|_| idle)
    }

    fn idle(&self) -> Option<Duration> {
        let output = std::process::Command::new("loginctl")
            .args(["show-session", &self.session, "-p", "IdleHint", "-p", "IdleSinceHintMonotonic"])
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        parse::parse_logind(&String::from_utf8_lossy(&output.stdout), monotonic_us())
    }
}

#[expect(clippy::large_enum_variant, reason = "one per engine, made once")]
pub enum InputIdle {
    X11(X11Idle),
    Logind(LogindIdle),
    None,
}

impl InputIdle {
    pub fn detect() -> Self {
        match X11Idle::connect() {
            Some(x) => InputIdle::X11(x),
            None => match LogindIdle::connect() {
                Some(l) => InputIdle::Logind(l),
                None => InputIdle::None,
            },
        }
    }

    pub fn idle(&mut self) -> Option<Duration> {
        match self {
            InputIdle::X11(x) => x.idle(),
            InputIdle::Logind(l) => l.idle(),
            InputIdle::None => None,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            InputIdle::X11(_) => "X11 input idle time",
            InputIdle::Logind(_) => "logind idle hint",
            InputIdle::None => "no display (no user input)",
        }
    }
}

pub fn cpu_sample() -> Option<crate::CpuSample> {
    let (busy, total) = parse::parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let own = parse::parse_proc_self_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some(crate::CpuSample { busy, total, own })
}

pub fn lower_this_thread() -> Option<String> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return Some("SCHED_IDLE".into());
    }
    // SAFETY: setpriority on the calling thread; on Linux a thread id is a process id here.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } == 0 {
        return Some("nice 19".into());
    }
    None
}

pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname").ok().or_else(crate::unix::gethostname)
}

pub fn power_state() -> PowerState {
    power_from_folder(Path::new("/sys/class/power_supply"))
}

/// The power state from a folder laid out as /sys/class/power_supply.
fn power_from_folder(folder: &Path) -> PowerState {
    let Ok(entries) = std::fs::read_dir(folder) else { return PowerState::UNKNOWN };
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
    let supplies: Vec<PowerSupply> = entries
        .flatten()
        .filter_map(|entry| {
            let dir = entry.path();
            Some(PowerSupply {
                kind: read(&dir, "type")?,
                online: read(&dir, "online"),
                status: read(&dir, "status"),
                scope: read(&dir, "scope"),
                capacity: read(&dir, "capacity"),
            })
        })
        .collect();
    parse::power_from_supplies(&supplies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::PowerSource;

    #[test]
    fn power_supplies_are_read_from_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        for (name, files) in [
            ("AC", &[("type", "Mains\n"), ("online", "0\n")][..]),
            ("BAT0", &[("type", "Battery\n"), ("status", "Discharging\n"), ("capacity", "42\n")][..]),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            for (file, text) in files {
                std::fs::write(dir.path().join(name).join(file), text).unwrap();
            }
        }
        assert_eq!(
            power_from_folder(dir.path()),
            PowerState { source: PowerSource::Battery, battery_percent: Some(42) }
        );
        std::fs::write(dir.path().join("AC").join("online"), "1\n").unwrap();
        assert_eq!(power_from_folder(dir.path()).source, PowerSource::Mains);
        assert_eq!(power_from_folder(&dir.path().join("absent")), PowerState::UNKNOWN);
    }
}
