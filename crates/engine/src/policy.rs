//! Whether tasks may run now (P3.3, P3.4): a pure function of the owner's settings, what the
//! computer's activity looks like, the hour of the week, and the time. Hysteresis keeps tasks
//! from flapping: the owner's return suspends at once, but running again needs the computer to
//! stay free for a while, and other programs must use the CPU for a few seconds before they
//! count as busy.

use std::time::Duration;

use crate::settings::{OwnerSettings, RunMode, WeekMinute};

/// One look at the computer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Time since the last keyboard or mouse input; `None` when no source can tell (no display
    /// counts as no user input).
    pub input_idle: Option<Duration>,
    /// Share of the whole CPU used by programs other than the engine, 0..1.
    pub others_cpu: Option<f64>,
    /// Whether the computer runs on battery; `None` when the system does not say.
    pub on_battery: Option<bool>,
}

/// Why tasks do not run.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    OwnerActive {
        input_ago: Duration,
    },
    OtherProgramsBusy {
        share: f64,
    },
    OutsideHours {
        opens_in_minutes: u32,
    },
    /// Unplugged, and the owner keeps the battery for themselves (`run_on_battery = false`).
    OnBattery,
    /// The computer became free, but not long enough ago.
    Settling {
        remaining: Duration,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::OwnerActive { input_ago } => {
                write!(f, "the computer is in use (last input {} s ago)", input_ago.as_secs())
            }
            Reason::OtherProgramsBusy { share } => write!(f, "other programs use {:.0}% of the CPU", share * 100.0),
            Reason::OutsideHours { opens_in_minutes } => {
                write!(f, "outside the allowed hours (next in {opens_in_minutes} min)")
            }
            Reason::OnBattery => f.write_str("the computer runs on battery"),
            Reason::Settling { remaining } => {
                write!(f, "the computer just became free; running again in {} s", remaining.as_secs().max(1))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Run,
    Wait(Reason),
}

/// How long other programs must be busy before tasks yield to them.
pub const CPU_BUSY_FOR: Duration = Duration::from_secs(3);

/// Remembers what hysteresis needs between two readings.
#[derive(Debug, Clone, Default)]
pub struct Governor {
    /// Since when the computer has been free (no owner, CPU not busy); `None` while busy.
    /// Signed: at start-up it is set far enough back to count as settled.
    free_since_ms: Option<i64>,
    /// Since when other programs have used more than the allowed share.
    cpu_busy_since_ms: Option<u64>,
    started: bool,
}

impl Governor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decide(
        &mut self,
        settings: &OwnerSettings,
        reading: Reading,
        week_minute: WeekMinute,
        now_ms: u64,
    ) -> Verdict {
        if !settings.run_hours.contains(week_minute) {
            return Verdict::Wait(Reason::OutsideHours {
                opens_in_minutes: settings.run_hours.minutes_until_open(week_minute),
            });
        }
        if !settings.run_on_battery && reading.on_battery == Some(true) {
            // Back on mains, an idle-only engine settles first, as after the owner's return.
            self.started = true;
            self.free_since_ms = None;
            return Verdict::Wait(Reason::OnBattery);
        }
        if settings.mode == RunMode::Continuous {
            // At the lowest OS priority the owner's programs always come first.
            return Verdict::Run;
        }
        let first = !self.started;
        self.started = true;
        let owner = reading.input_idle.filter(|idle| *idle < settings.idle_after());
        let cpu_over = reading.others_cpu.filter(|share| *share > settings.others_cpu_busy_max);
        self.cpu_busy_since_ms = match cpu_over {
            Some(_) => Some(self.cpu_busy_since_ms.unwrap_or(now_ms)),
            None => None,
        };
        let cpu_busy = match (cpu_over, self.cpu_busy_since_ms) {
            (Some(share), Some(since)) if now_ms.saturating_sub(since) >= CPU_BUSY_FOR.as_millis() as u64 => {
                Some(share)
            }
            _ => None,
        };
        if let Some(input_ago) = owner {
            self.free_since_ms = None;
            return Verdict::Wait(Reason::OwnerActive { input_ago });
        }
        if let Some(share) = cpu_busy {
            self.free_since_ms = None;
            return Verdict::Wait(Reason::OtherProgramsBusy { share });
        }
        // Free now. At start-up the computer counts as free for long enough already.
        let resume_after = settings.resume_after().as_millis() as i64;
        let now = now_ms as i64;
        let since = *self.free_since_ms.get_or_insert(if first { now - resume_after } else { now });
        let free_for = now - since;
        if free_for >= resume_after {
            Verdict::Run
        } else {
            Verdict::Wait(Reason::Settling { remaining: Duration::from_millis((resume_after - free_for) as u64) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::WeeklySchedule;

    fn idle_only() -> OwnerSettings {
        OwnerSettings {
            mode: RunMode::IdleOnly,
            idle_after_secs: 180,
            resume_after_secs: 10,
            ..OwnerSettings::default()
        }
    }

    fn reading(input_ago_secs: Option<u64>, cpu: f64) -> Reading {
        Reading { input_idle: input_ago_secs.map(Duration::from_secs), others_cpu: Some(cpu), on_battery: None }
    }

    #[test]
    fn the_owner_suspends_at_once_and_tasks_resume_after_a_quiet_while() {
        let s = idle_only();
        let mut g = Governor::new();
        assert_eq!(g.decide(&s, reading(Some(600), 0.0), 0, 1_000), Verdict::Run, "idle at start: run at once");
        assert!(matches!(g.decide(&s, reading(Some(0), 0.0), 0, 2_000), Verdict::Wait(Reason::OwnerActive { .. })));
        // Input stops; the owner still counts as present for idle_after.
        assert!(matches!(g.decide(&s, reading(Some(100), 0.0), 0, 102_000), Verdict::Wait(Reason::OwnerActive { .. })));
        assert!(matches!(g.decide(&s, reading(Some(181), 0.0), 0, 183_000), Verdict::Wait(Reason::Settling { .. })));
        assert_eq!(g.decide(&s, reading(Some(191), 0.0), 0, 193_000), Verdict::Run);
    }

    #[test]
    fn no_display_counts_as_no_input() {
        let mut g = Governor::new();
        assert_eq!(g.decide(&idle_only(), Reading::default(), 0, 0), Verdict::Run);
    }

    #[test]
    fn a_short_cpu_spike_does_not_suspend_but_a_lasting_one_does() {
        let s = idle_only();
        let mut g = Governor::new();
        assert_eq!(g.decide(&s, reading(None, 0.9), 0, 1_000), Verdict::Run);
        assert_eq!(g.decide(&s, reading(None, 0.9), 0, 2_500), Verdict::Run, "1.5 s of load is a spike");
        assert_eq!(g.decide(&s, reading(None, 0.1), 0, 3_000), Verdict::Run);
        assert_eq!(g.decide(&s, reading(None, 0.9), 0, 4_000), Verdict::Run);
        assert!(matches!(g.decide(&s, reading(None, 0.9), 0, 7_500), Verdict::Wait(Reason::OtherProgramsBusy { .. })));
        assert!(matches!(g.decide(&s, reading(None, 0.1), 0, 8_000), Verdict::Wait(Reason::Settling { .. })));
        assert_eq!(g.decide(&s, reading(None, 0.1), 0, 18_000), Verdict::Run);
    }

    #[test]
    fn hours_apply_in_both_modes_and_continuous_ignores_activity() {
        let hours = WeeklySchedule::parse(&["daily 02:00-04:00".to_string()]).unwrap();
        let continuous =
            OwnerSettings { mode: RunMode::Continuous, run_hours: hours.clone(), ..OwnerSettings::default() };
        let mut g = Governor::new();
        assert_eq!(
            g.decide(&continuous, reading(Some(0), 1.0), 3 * 60, 0),
            Verdict::Run,
            "continuous runs under any load"
        );
        assert_eq!(
            g.decide(&continuous, reading(None, 0.0), 5 * 60, 0),
            Verdict::Wait(Reason::OutsideHours { opens_in_minutes: 21 * 60 })
        );
        let idle = OwnerSettings { run_hours: hours, ..idle_only() };
        assert!(matches!(
            Governor::new().decide(&idle, reading(None, 0.0), 12 * 60, 0),
            Verdict::Wait(Reason::OutsideHours { .. })
        ));
    }

    #[test]
    fn on_battery_tasks_wait_unless_the_owner_allows_it() {
        let unplugged = Reading { on_battery: Some(true), ..Reading::default() };
        let continuous = OwnerSettings { mode: RunMode::Continuous, ..OwnerSettings::default() };
        let mut g = Governor::new();
        assert_eq!(g.decide(&continuous, unplugged, 0, 0), Verdict::Wait(Reason::OnBattery));
        let plugged = Reading { on_battery: Some(false), ..Reading::default() };
        assert_eq!(g.decide(&continuous, plugged, 0, 1_000), Verdict::Run);
        let allowed = OwnerSettings { run_on_battery: true, ..continuous };
        assert_eq!(g.decide(&allowed, unplugged, 0, 2_000), Verdict::Run);
        // Idle-only: plugged in again, the computer settles before tasks resume.
        let s = idle_only();
        let mut g = Governor::new();
        assert_eq!(g.decide(&s, unplugged, 0, 0), Verdict::Wait(Reason::OnBattery));
        assert!(matches!(g.decide(&s, plugged, 0, 1_000), Verdict::Wait(Reason::Settling { .. })));
        assert_eq!(g.decide(&s, plugged, 0, 11_000), Verdict::Run);
        assert_eq!(g.decide(&s, Reading::default(), 0, 12_000), Verdict::Run, "no power information: run");
        assert_eq!(Reason::OnBattery.to_string(), "the computer runs on battery");
    }
}
