//! The share of the CPU that programs other than this one use, from two samples of the
//! system's counters, averaged over a sliding window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One reading of the system's CPU counters, in the system's own unit (jiffies on Linux,
/// 100 ns on Windows, ticks on macOS): the three fields share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Time all CPUs spent busy, and in total.
    pub busy: u64,
    pub total: u64,
    /// Time this process used (all its threads).
    pub own: u64,
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

/// CPU used by programs other than this one, averaged over the last `window`.
pub struct OthersCpu {
    samples: VecDeque<(Instant, CpuSample)>,
    window: Duration,
}

impl OthersCpu {
    pub fn new(window: Duration) -> Self {
        OthersCpu { samples: VecDeque::new(), window }
    }

    /// Sample now; others' share since the oldest sample of the window (`None` at the first
    /// sample, or when the system gives no counters).
    pub fn others(&mut self) -> Option<f64> {
        let now = Instant::now();
        let sample = crate::imp::cpu_sample()?;
        self.samples.push_back((now, sample));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (_, first) = self.samples.front()?;
        others_share(first, &sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process that [`the_cpu_of_another_program_is_seen`] starts: this test
    /// binary itself, made to spin, is the other program on every platform.
    const SPIN: &str = "IDLEGRID_PLATFORM_TEST_SPIN";

    #[test]
    fn shares_between_samples() {
        let a = CpuSample { busy: 100, total: 1000, own: 10 };
        let b = CpuSample { busy: 400, total: 2000, own: 110 };
        assert_eq!(others_share(&a, &b), Some(0.2));
        assert_eq!(others_share(&b, &b), None);
        assert_eq!(others_share(&b, &a), None, "counters that went back give no share");
    }

    #[test]
    fn spin_when_asked() {
        if std::env::var_os(SPIN).is_some() {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn the_cpu_of_another_program_is_seen() {
        let mut cpu = OthersCpu::new(Duration::from_millis(600));
        cpu.others();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cpu::tests::spin_when_asked", "--nocapture"])
            .env(SPIN, "1")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Sample until the child's work shows (it needs a moment to start), within a deadline.
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut share = 0.0;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            share = cpu.others().unwrap_or(0.0);
            // One busy core out of `cores`, give or take what else the machine does.
            if share > 0.5 / cores {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(share > 0.5 / cores, "others' share {share}");
    }
}
