//! The contact schedule (P3.5): with none, the engine stays connected whenever the network is
//! up; with one, it contacts the server in short windows every so often, and only inside the
//! allowed hours (the seed's "dial scheduler").

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::LocalClock;
use crate::settings::ContactSchedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Contact allowed, until the instant if any.
    Open { until: Option<Instant> },
    /// No contact now; look again after this long.
    Closed { retry_in: Duration },
}

pub struct ContactGate {
    schedule: ContactSchedule,
    clock: Arc<dyn LocalClock>,
    started: Instant,
}

/// How long a scheduled contact lasts: long enough to exchange what is queued.
const BURST: Duration = Duration::from_secs(20);

impl ContactGate {
    pub fn new(schedule: ContactSchedule, clock: Arc<dyn LocalClock>) -> Self {
        ContactGate { schedule, clock, started: Instant::now() }
    }

    pub fn describe(&self) -> String {
        if self.schedule.is_continuous() {
            return "whenever the network is up".into();
        }
        let every = if self.schedule.every_seconds == 0 {
            "continuously".into()
        } else {
            format!("every {} s", self.schedule.every_seconds)
        };
        format!("{every}, within {}", self.schedule.hours.describe())
    }

    pub fn window(&self, now: Instant) -> Window {
        if self.schedule.is_continuous() {
            return Window::Open { until: None };
        }
        let minute = self.clock.week_minute();
        if !self.schedule.hours.contains(minute) {
            // Check again soon: the clock may be moved (tests) or the hour may turn.
            return Window::Closed { retry_in: Duration::from_secs(1) };
        }
        if self.schedule.every_seconds == 0 {
            return Window::Open { until: Some(now + Duration::from_secs(60)) };
        }
        let period = Duration::from_secs(self.schedule.every_seconds);
        let burst = BURST.min(period / 2).max(Duration::from_millis(500));
        let since = now.duration_since(self.started);
        let into = Duration::from_nanos((since.as_nanos() % period.as_nanos()) as u64);
        if into < burst {
            Window::Open { until: Some(now + (burst - into)) }
        } else {
            Window::Closed { retry_in: (period - into).min(Duration::from_secs(1)) }
        }
    }

    /// Wait until contact is allowed; returns when the window closes (`None`: never).
    pub async fn wait_open(&self, stop: &tokio_util::sync::CancellationToken) -> Option<Option<Instant>> {
        loop {
            match self.window(Instant::now()) {
                Window::Open { until } => return Some(until),
                Window::Closed { retry_in } => {
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(retry_in) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::settings::WeeklySchedule;

    #[test]
    fn continuous_hours_and_periodic_windows() {
        let clock = ManualClock::at(3 * 60);
        let always = ContactGate::new(ContactSchedule::default(), Arc::new(clock.clone()));
        assert_eq!(always.window(Instant::now()), Window::Open { until: None });
        let hours = WeeklySchedule::parse(&["daily 02:00-04:00".to_string()]).unwrap();
        let gate = ContactGate::new(ContactSchedule { every_seconds: 600, hours }, Arc::new(clock.clone()));
        let start = gate.started;
        assert!(matches!(gate.window(start + Duration::from_secs(5)), Window::Open { until: Some(_) }));
        assert!(matches!(gate.window(start + Duration::from_secs(30)), Window::Closed { .. }), "between windows");
        assert!(matches!(gate.window(start + Duration::from_secs(605)), Window::Open { .. }), "the next window");
        clock.set(5 * 60);
        assert!(matches!(gate.window(start + Duration::from_secs(5)), Window::Closed { .. }), "outside the hours");
    }
}
