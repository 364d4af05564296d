//! Pure readings of what each system reports: /proc and logind on Linux, power supplies on
//! Linux, `pmset` on macOS, `GetSystemPowerStatus` on Windows. Compiled everywhere, so that
//! their tests run on every platform.

use std::time::Duration;

/// Where the computer's power comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerSource {
    Mains,
    Battery,
    /// The system does not say (a desktop without power supply information, or an error).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerState {
    pub source: PowerSource,
    /// Charge of the system's battery, when it has one.
    pub battery_percent: Option<u8>,
}

impl PowerState {
    pub const UNKNOWN: PowerState = PowerState { source: PowerSource::Unknown, battery_percent: None };

    pub fn on_battery(&self) -> bool {
        self.source == PowerSource::Battery
    }
}

/// The first line of /proc/stat (`cpu  user nice system idle iowait irq softirq steal ...`):
/// (busy, total) jiffies.
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

/// utime + stime of /proc/<pid>/stat (fields 14 and 15, after the parenthesised name).
pub fn parse_proc_self_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) is index 11, stime index 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `loginctl show-session -p IdleHint -p IdleSinceHintMonotonic` output: the idle time.
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

/// One entry of /sys/class/power_supply: its files `type`, `online`, `status`, `scope` and
/// `capacity`, trimmed (absent files as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerSupply {
    pub kind: String,
    pub online: Option<String>,
    pub status: Option<String>,
    pub scope: Option<String>,
    pub capacity: Option<String>,
}

/// The computer's power from its power supplies: on mains when any mains (or USB) supply is
/// online; on battery when none is and a system battery discharges. Batteries of devices
/// (a wireless mouse) do not count.
pub fn power_from_supplies(supplies: &[PowerSupply]) -> PowerState {
    let system_batteries: Vec<&PowerSupply> =
        supplies.iter().filter(|s| s.kind == "Battery" && s.scope.as_deref() != Some("Device")).collect();
    let battery_percent =
        system_batteries.iter().filter_map(|b| b.capacity.as_deref()?.parse::<u8>().ok()).map(|p| p.min(100)).min();
    let external: Vec<&PowerSupply> =
        supplies.iter().filter(|s| matches!(s.kind.as_str(), "Mains" | "USB" | "UPS")).collect();
    let source = if external.iter().any(|s| s.online.as_deref() == Some("1")) {
        PowerSource::Mains
    } else if system_batteries.iter().any(|b| b.status.as_deref() == Some("Discharging")) {
        PowerSource::Battery
    } else if !system_batteries.is_empty() || !external.is_empty() {
        PowerSource::Mains
    } else {
        PowerSource::Unknown
    };
    PowerState { source, battery_percent }
}

/// `pmset -g batt` output (macOS): `Now drawing from 'AC Power'` or `'Battery Power'`, then
/// a line per battery with its charge (`-InternalBattery-0 (id=...)\t95%; discharging; ...`).
pub fn parse_pmset(text: &str) -> PowerState {
    let source = match text.lines().next() {
        Some(line) if line.contains("'AC Power'") => PowerSource::Mains,
        Some(line) if line.contains("'Battery Power'") => PowerSource::Battery,
        Some(line) if line.contains("'UPS Power'") => PowerSource::Mains,
        _ => PowerSource::Unknown,
    };
    let battery_percent = text
        .lines()
        .skip(1)
        .filter(|line| line.contains("InternalBattery"))
        .find_map(|line| {
            let before = &line[..line.find('%')?];
            let digits = before.rsplit(|c: char| !c.is_ascii_digit()).next()?;
            digits.parse::<u8>().ok()
        })
        .map(|p| p.min(100));
    PowerState { source, battery_percent }
}

/// `SYSTEM_POWER_STATUS` (Windows): `ACLineStatus` 0 offline, 1 online, 255 unknown;
/// `BatteryFlag` 128 no system battery, 255 unknown; `BatteryLifePercent` 255 unknown.
pub fn power_from_windows(ac_line_status: u8, battery_flag: u8, battery_life_percent: u8) -> PowerState {
    let has_battery = battery_flag != 128 && battery_flag != 255;
    let source = match ac_line_status {
        1 => PowerSource::Mains,
        0 if has_battery => PowerSource::Battery,
        0 => PowerSource::Mains,
        _ => PowerSource::Unknown,
    };
    let battery_percent = (has_battery && battery_life_percent <= 100).then_some(battery_life_percent);
    PowerState { source, battery_percent }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(kind: &str, online: Option<&str>, status: Option<&str>, capacity: Option<&str>) -> PowerSupply {
        PowerSupply {
            kind: kind.into(),
            online: online.map(Into::into),
            status: status.map(Into::into),
            scope: None,
            capacity: capacity.map(Into::into),
        }
    }

    #[test]
    fn proc_stat_and_self_stat_parse() {
        let stat = "cpu  100 5 50 800 20 1 2 0 0 0\ncpu0 50 2 25 400 10 0 1 0 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((158, 978)));
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
        let own = "1234 (idle grid) S 1 1234 1234 0 -1 4194560 100 0 0 0 42 8 0 0 20 0 9 0";
        assert_eq!(parse_proc_self_stat(own), Some(50), "a name with spaces and parentheses is skipped");
        assert_eq!(parse_proc_self_stat("no parenthesis"), None);
    }

    #[test]
    fn logind_hints() {
        assert_eq!(parse_logind("IdleHint=no\nIdleSinceHintMonotonic=0\n", 10), Some(Duration::ZERO));
        assert_eq!(
            parse_logind("IdleHint=yes\nIdleSinceHintMonotonic=4000000\n", 10_000_000),
            Some(Duration::from_secs(6))
        );
        assert_eq!(parse_logind("IdleHint=yes\n", 10), Some(Duration::MAX));
        assert_eq!(parse_logind("garbage", 0), None);
    }

    #[test]
    fn linux_power_supplies() {
        let laptop_plugged =
            [supply("Mains", Some("1"), None, None), supply("Battery", None, Some("Charging"), Some("80"))];
        assert_eq!(
            power_from_supplies(&laptop_plugged),
            PowerState { source: PowerSource::Mains, battery_percent: Some(80) }
        );
        let laptop_unplugged =
            [supply("Mains", Some("0"), None, None), supply("Battery", None, Some("Discharging"), Some("55"))];
        assert_eq!(
            power_from_supplies(&laptop_unplugged),
            PowerState { source: PowerSource::Battery, battery_percent: Some(55) }
        );
        let mut mouse = supply("Battery", None, Some("Discharging"), Some("10"));
        mouse.scope = Some("Device".into());
        assert_eq!(power_from_supplies(&[mouse]), PowerState::UNKNOWN, "a mouse's battery is not the computer's");
        assert_eq!(power_from_supplies(&[]), PowerState::UNKNOWN, "a desktop without supplies");
        let full = [supply("Battery", None, Some("Full"), Some("100"))];
        assert_eq!(power_from_supplies(&full).source, PowerSource::Mains, "a full battery is not discharging");
    }

    #[test]
    fn macos_pmset() {
        let battery = "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t93%; discharging; 5:01 remaining present: true\n";
        assert_eq!(parse_pmset(battery), PowerState { source: PowerSource::Battery, battery_percent: Some(93) });
        let mains = "Now drawing from 'AC Power'\n -InternalBattery-0 (id=4653155)\t100%; charged; 0:00 remaining present: true\n";
        assert_eq!(parse_pmset(mains), PowerState { source: PowerSource::Mains, battery_percent: Some(100) });
        assert_eq!(
            parse_pmset("Now drawing from 'AC Power'\n"),
            PowerState { source: PowerSource::Mains, battery_percent: None },
            "a Mac without a battery"
        );
        assert_eq!(parse_pmset(""), PowerState::UNKNOWN);
    }

    #[test]
    fn windows_power_status() {
        assert_eq!(
            power_from_windows(0, 0, 40),
            PowerState { source: PowerSource::Battery, battery_percent: Some(40) }
        );
        assert_eq!(power_from_windows(1, 8, 70), PowerState { source: PowerSource::Mains, battery_percent: Some(70) });
        assert_eq!(power_from_windows(1, 128, 255), PowerState { source: PowerSource::Mains, battery_percent: None });
        assert_eq!(power_from_windows(255, 255, 255), PowerState::UNKNOWN);
    }
}
