//! Where readings of the computer's activity come from: the time since the last keyboard or
//! mouse input (X11's screensaver extension, or logind's idle hint), and the CPU used by other
//! programs (/proc). Behind one trait so that tests inject readings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::policy::Reading;

pub trait ActivitySource: Send {
    fn read(&mut self) -> Reading;
    /// What this source looks at, for the status page.
    fn describe(&self) -> String;
}

/// Readings set by hand: tests, and owners who script their own idle detection.
#[derive(Clone, Default)]
pub struct InjectedActivity {
    state: Arc<Mutex<Injected>>,
}

#[derive(Default)]
struct Injected {
    last_input: Option<Instant>,
    others_cpu: Option<f64>,
}

impl InjectedActivity {
    pub fn new() -> Self {
        Self::default()
    }

    /// The owner touched the keyboard now.
    pub fn input(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last_input = Some(Instant::now());
    }

    /// Forget any input: as if the owner had left long ago.
    pub fn away(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last_input = None;
    }

    pub fn set_others_cpu(&self, share: Option<f64>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).others_cpu = share;
    }
}

impl ActivitySource for InjectedActivity {
    fn read(&mut self) -> Reading {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Reading { input_idle: state.last_input.map(|t| t.elapsed()), others_cpu: state.others_cpu }
    }

    fn describe(&self) -> String {
        "injected readings".into()
    }
}

/// CPU used by programs other than this one, from /proc/stat and /proc/self/stat, averaged over
/// the last `window`.
pub struct ProcCpu {
    samples: std::collections::VecDeque<(Instant, CpuSample)>,
    window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Jiffies of all CPUs spent busy, and in total.
    pub busy: u64,
    pub total: u64,
    /// Jiffies this process used (all its threads).
    pub own: u64,
}

/// Parse the first line of /proc/stat (`cpu  user nice system idle iowait irq softirq steal ...`).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Parse utime + stime of /proc/<pid>/stat (fields 14 and 15, after the parenthesised name).
pub fn parse_proc_self_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) is index 11, stime index 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Others' share of the whole CPU between two samples.
pub fn others_share(before: &CpuSample, after: &CpuSample) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    if total == 0 {
        return None;
    }
    let busy = after.busy.saturating_sub(before.busy);
    let own = after.own.saturating_sub(before.own);
    Some((busy.saturating_sub(own) as f64 / total as f64).clamp(0.0, 1.0))
}

impl ProcCpu {
    pub fn new(window: Duration) -> Self {
        ProcCpu { samples: Default::default(), window }
    }

    fn sample() -> Option<CpuSample> {
        let (busy, total) = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let own = parse_proc_self_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(CpuSample { busy, total, own })
    }

    pub fn others(&mut self) -> Option<f64> {
        let now = Instant::now();
        let sample = Self::sample()?;
        self.samples.push_back((now, sample));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (_, first) = self.samples.front()?;
        others_share(first, &sample)
    }
}

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

/// Parse `loginctl show-session -p IdleHint -p IdleSinceHintMonotonic` output.
pub fn parse_logind(text: &str, now_monotonic_us: u64) -> Option<Duration> {
    let mut idle = None;
    let mut since = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("IdleHint", value)) => idle = Some(value.trim() == "yes"),
            Some(("IdleSinceHintMonotonic", value)) => since = value.trim().parse::<u64>().ok(),
            _ => {}
        }
    }
    match (idle?, since) {
        (false, _) => Some(Duration::ZERO),
        (true, Some(since)) if since > 0 => Some(Duration::from_micros(now_monotonic_us.saturating_sub(since))),
        (true, _) => Some(Duration::MAX),
    }
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

impl LogindIdle {
    pub fn connect() -> Option<LogindIdle> {
        let session = std::env::var("XDG_SESSION_ID").ok()?;
        let idle = LogindIdle { session };
        idle.idle().map(|_| idle)
    }

    pub fn idle(&self) -> Option<Duration> {
        let output = std::process::Command::new("loginctl")
            .args(["show-session", &self.session, "-p", "IdleHint", "-p", "IdleSinceHintMonotonic"])
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        parse_logind(&String::from_utf8_lossy(&output.stdout), monotonic_us())
    }
}

/// The machine's own sources: input idle time from X11 or logind (whichever is present), CPU
/// of other programs from /proc.
pub struct SystemActivity {
    input: Input,
    cpu: ProcCpu,
}

#[expect(clippy::large_enum_variant, reason = "one per engine, made once")]
enum Input {
    X11(X11Idle),
    Logind(LogindIdle),
    None,
}

impl SystemActivity {
    pub fn detect() -> Self {
        let input = match X11Idle::connect() {
            Some(x) => Input::X11(x),
            None => match LogindIdle::connect() {
                Some(l) => Input::Logind(l),
                None => Input::None,
            },
        };
        SystemActivity { input, cpu: ProcCpu::new(Duration::from_secs(1)) }
    }
}

impl ActivitySource for SystemActivity {
    fn read(&mut self) -> Reading {
        let input_idle = match &self.input {
            Input::X11(x) => x.idle(),
            Input::Logind(l) => l.idle(),
            Input::None => None,
        };
        Reading { input_idle, others_cpu: self.cpu.others() }
    }

    fn describe(&self) -> String {
        let input = match &self.input {
            Input::X11(_) => "X11 input idle time",
            Input::Logind(_) => "logind idle hint",
            Input::None => "no display (no user input)",
        };
        format!("{input}; CPU of other programs from /proc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_self_stat_parse() {
        let stat = "cpu  100 5 50 800 20 1 2 0 0 0\ncpu0 50 2 25 400 10 0 1 0 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((158, 978)));
        let own = "1234 (idle grid) S 1 1234 1234 0 -1 4194560 100 0 0 0 42 8 0 0 20 0 9 0";
        assert_eq!(parse_proc_self_stat(own), Some(50), "a name with spaces and parentheses is skipped");
        let a = CpuSample { busy: 100, total: 1000, own: 10 };
        let b = CpuSample { busy: 400, total: 2000, own: 110 };
        assert_eq!(others_share(&a, &b), Some(0.2));
        assert_eq!(others_share(&b, &b), None);
    }

    #[test]
    fn logind_hints() {
        assert_eq!(parse_logind("IdleHint=no\nIdleSinceHintMonotonic=0\n", 10), Some(Duration::ZERO));
        assert_eq!(
            parse_logind("IdleHint=yes\nIdleSinceHintMonotonic=4000000\n", 10_000_000),
            Some(Duration::from_secs(6))
        );
        assert_eq!(parse_logind("garbage", 0), None);
    }

    #[test]
    fn the_cpu_of_another_program_is_seen() {
        let mut cpu = ProcCpu::new(Duration::from_millis(600));
        cpu.others();
        // Another process spins for a while; this one sleeps.
        let mut child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let share = cpu.others().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        // One busy core out of `cores`, give or take what else the machine does.
        assert!(share > 0.5 / cores, "others' share {share}");
    }
}
