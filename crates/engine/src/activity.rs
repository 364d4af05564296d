//! Where readings of the computer's activity come from: the time since the last keyboard or
//! mouse input, the CPU used by other programs and whether the computer runs on battery, read
//! through `idlegrid-platform` (X11 or logind and /proc on Linux, their counterparts on
//! Windows and macOS). Behind one trait so that tests inject readings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlegrid_platform::{InputIdle, OthersCpu, PowerState};

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
    on_battery: Option<bool>,
}

impl InjectedActivity {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Injected> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner touched the keyboard now.
    pub fn input(&self) {
        self.state().last_input = Some(Instant::now());
    }

    /// Forget any input: as if the owner had left long ago.
    pub fn away(&self) {
        self.state().last_input = None;
    }

    pub fn set_others_cpu(&self, share: Option<f64>) {
        self.state().others_cpu = share;
    }

    /// Unplugged (`Some(true)`), plugged in, or unknown.
    pub fn set_on_battery(&self, on_battery: Option<bool>) {
        self.state().on_battery = on_battery;
    }
}

impl ActivitySource for InjectedActivity {
    fn read(&mut self) -> Reading {
        let state = self.state();
        Reading {
            input_idle: state.last_input.map(|t| t.elapsed()),
            others_cpu: state.others_cpu,
            on_battery: state.on_battery,
        }
    }

    fn describe(&self) -> String {
        "injected readings".into()
    }
}

/// How often the power state is read (on macOS it runs `pmset`).
const POWER_EVERY: Duration = Duration::from_secs(10);

/// The machine's own sources, from `idlegrid-platform`.
pub struct SystemActivity {
    input: InputIdle,
    cpu: OthersCpu,
    power: Option<(Instant, PowerState)>,
}

impl SystemActivity {
    pub fn detect() -> Self {
        SystemActivity { input: InputIdle::detect(), cpu: OthersCpu::new(Duration::from_secs(1)), power: None }
    }

    fn power(&mut self) -> PowerState {
        match self.power {
            Some((read_at, state)) if read_at.elapsed() < POWER_EVERY => state,
            _ => {
                let state = idlegrid_platform::power_state();
                self.power = Some((Instant::now(), state));
                state
            }
        }
    }
}

impl ActivitySource for SystemActivity {
    fn read(&mut self) -> Reading {
        let power = self.power();
        let on_battery = match power.source {
            idlegrid_platform::PowerSource::Unknown => None,
            _ => Some(power.on_battery()),
        };
        Reading { input_idle: self.input.idle(), others_cpu: self.cpu.others(), on_battery }
    }

    fn describe(&self) -> String {
        format!("{}; CPU of other programs from {}", self.input.describe(), idlegrid_platform::cpu_source())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_readings_are_read_back() {
        let injected = InjectedActivity::new();
        let mut source = injected.clone();
        assert_eq!(source.read(), Reading::default());
        injected.input();
        injected.set_others_cpu(Some(0.5));
        injected.set_on_battery(Some(true));
        let reading = source.read();
        assert!(reading.input_idle.is_some_and(|idle| idle < Duration::from_secs(60)));
        assert_eq!((reading.others_cpu, reading.on_battery), (Some(0.5), Some(true)));
        injected.away();
        assert_eq!(source.read().input_idle, None);
    }

    #[test]
    fn the_system_is_read_through_the_platform() {
        let mut system = SystemActivity::detect();
        let first = system.read();
        assert_eq!(first.others_cpu, None, "one sample gives no share yet");
        assert!(system.describe().contains("CPU of other programs from"));
    }
}
