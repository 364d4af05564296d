//! What the computer's owner decides (P3.3-P3.5): when tasks may run, how much of the machine
//! they may use, when the engine may contact the server. Read from a TOML file, overridden on the
//! command line; the server may change only the settings marked server-controlled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When tasks run (P3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    /// All the time, at the lowest scheduling priority of the operating system.
    Continuous,
    /// Only while nobody uses the computer; suspended as soon as the owner is back.
    IdleOnly,
}

/// The operating system's priority for task threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskPriority {
    /// The lowest there is (SCHED_IDLE on Linux, else nice 19): tasks get only CPU time that
    /// nothing else on the computer wants.
    #[default]
    Lowest,
    /// Like the owner's programs: for a computer given over to the grid (and tests that must
    /// not be starved by other work on the machine).
    Normal,
}

impl std::str::FromStr for TaskPriority {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "lowest" => Ok(TaskPriority::Lowest),
            "normal" => Ok(TaskPriority::Normal),
            other => Err(format!("task priority must be lowest or normal, not '{other}'")),
        }
    }
}

/// Minutes since Monday 00:00, local time: 0..10080.
pub type WeekMinute = u32;

pub const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;

/// A set of weekly intervals, e.g. `["mon-fri 18:00-08:00", "sat-sun 00:00-24:00"]`. An empty
/// schedule means always.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeeklySchedule {
    /// Half-open intervals [start, end) of week minutes; never wrapping (split at the week's end).
    intervals: Vec<(WeekMinute, WeekMinute)>,
    text: Vec<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_day(text: &str) -> Result<u32, String> {
    DAYS.iter()
        .position(|d| *d == text)
        .map(|i| i as u32)
        .ok_or_else(|| format!("'{text}' is not a day (mon, tue, ... sun)"))
}

fn parse_clock(text: &str) -> Result<u32, String> {
    let (h, m) = text.split_once(':').ok_or_else(|| format!("'{text}' is not a time like 18:30"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("bad hour in '{text}'"))?,
        m.parse().map_err(|_| format!("bad minute in '{text}'"))?,
    );
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(format!("'{text}' is not a time of day (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}

impl WeeklySchedule {
    pub fn always() -> Self {
        WeeklySchedule::default()
    }

    /// Parse entries like `mon-fri 18:00-08:00` (an end before the start runs past midnight),
    /// `sat 00:00-24:00`, or `daily 02:00-04:00`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut schedule = WeeklySchedule { intervals: Vec::new(), text: entries.to_vec() };
        for entry in entries {
            let (days, hours) =
                entry.trim().split_once(' ').ok_or_else(|| format!("'{entry}': expected 'DAYS HH:MM-HH:MM'"))?;
            let (first, last) = match days {
                "daily" => (0, 6),
                range => match range.split_once('-') {
                    Some((a, b)) => (parse_day(a)?, parse_day(b)?),
                    None => {
                        let d = parse_day(range)?;
                        (d, d)
                    }
                },
            };
            let (start, end) =
                hours.trim().split_once('-').ok_or_else(|| format!("'{entry}': expected HH:MM-HH:MM"))?;
            let (start, end) = (parse_clock(start)?, parse_clock(end)?);
            if start == end {
                return Err(format!("'{entry}': the interval is empty"));
            }
            let mut day = first;
            loop {
                let base = day * 24 * 60;
                let (from, to) = (base + start, if end > start { base + end } else { base + 24 * 60 + end });
                schedule.push(from, to);
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        Ok(schedule)
    }

    fn push(&mut self, from: u32, to: u32) {
        if to <= MINUTES_PER_WEEK {
            self.intervals.push((from, to));
        } else {
            self.intervals.push((from, MINUTES_PER_WEEK));
            self.intervals.push((0, to - MINUTES_PER_WEEK));
        }
    }

    pub fn is_always(&self) -> bool {
        self.intervals.is_empty()
    }

    pub fn contains(&self, minute: WeekMinute) -> bool {
        self.is_always() || self.intervals.iter().any(|(a, b)| (*a..*b).contains(&(minute % MINUTES_PER_WEEK)))
    }

    /// Minutes from `minute` until the schedule next allows, 0 if it allows now.
    pub fn minutes_until_open(&self, minute: WeekMinute) -> u32 {
        (0..MINUTES_PER_WEEK).find(|d| self.contains(minute + d)).unwrap_or(0)
    }

    pub fn describe(&self) -> String {
        if self.is_always() { "always".into() } else { self.text.join(", ") }
    }
}

impl Serialize for WeeklySchedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for WeeklySchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        WeeklySchedule::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// When the engine may talk to the server (P3.5, the "dial scheduler").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactSchedule {
    /// Contact every so many seconds, briefly; 0: stay connected (within `hours`).
    pub every_seconds: u64,
    /// Only inside these hours (empty: any time).
    pub hours: WeeklySchedule,
}

impl ContactSchedule {
    pub fn is_continuous(&self) -> bool {
        self.every_seconds == 0 && self.hours.is_always()
    }
}

/// The owner's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerSettings {
    pub mode: RunMode,
    /// The computer counts as in use for this long after the last keyboard or mouse input.
    pub idle_after_secs: u64,
    /// Tasks are suspended while other programs use more than this share of the CPU (0..1).
    pub others_cpu_busy_max: f64,
    /// Before tasks run again, the computer must have been free for this long (hysteresis: a
    /// short spike does not make tasks flap).
    pub resume_after_secs: u64,
    /// Whether tasks may run while the computer is on battery (laptops unplugged).
    pub run_on_battery: bool,
    /// Tasks run at once (cores).
    pub cores: u32,
    /// Memory for all running tasks together, and the most one task may have.
    pub memory_bytes_max: u64,
    pub task_memory_bytes_max: u64,
    /// Disk for elements, checkpoints and results together (never more than the disk has free:
    /// the engine lowers it at start to what fits).
    pub disk_bytes_max: u64,
    /// Scheduling priority of task threads.
    pub task_priority: TaskPriority,
    /// Hours of the week when tasks may run.
    pub run_hours: WeeklySchedule,
    pub contact: ContactSchedule,
    /// Address of the local status page (port 0: any free port; none: no page).
    pub status_listen: Option<String>,
    /// What a job must be for this engine to run it, in the market's expression language
    /// (`job.client in ["alice"]`, `job.pay_per_hour >= 2`, `task.memory_mb <= 512`); sent to
    /// the server, which places only jobs that meet it here. None: any job.
    pub job_requirement: Option<String>,
    /// Handlers of the peripherals sold on the market, by kind (`[peripherals.printer]`).
    pub peripherals: std::collections::BTreeMap<String, crate::market_peripheral::PeripheralHandler>,
}

impl Default for OwnerSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        OwnerSettings {
            mode: RunMode::Continuous,
            idle_after_secs: 180,
            others_cpu_busy_max: 0.25,
            resume_after_secs: 10,
            run_on_battery: false,
            cores,
            memory_bytes_max: 2 << 30,
            task_memory_bytes_max: 1 << 30,
            disk_bytes_max: 10 << 30,
            task_priority: TaskPriority::Lowest,
            run_hours: WeeklySchedule::always(),
            contact: ContactSchedule::default(),
            status_listen: Some("127.0.0.1:7710".into()),
            job_requirement: None,
            peripherals: Default::default(),
        }
    }
}

impl OwnerSettings {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let settings: OwnerSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.cores == 0 {
            return Err("cores must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.others_cpu_busy_max) {
            return Err(format!("others_cpu_busy_max = {} must be between 0 and 1", self.others_cpu_busy_max));
        }
        if self.task_memory_bytes_max < 1 << 20
            || self.memory_bytes_max < self.task_memory_bytes_max.min(self.memory_bytes_max).max(1 << 20)
        {
            return Err("memory budgets must be at least 1 MiB".into());
        }
        if self.disk_bytes_max < 1 << 20 {
            return Err("disk_bytes_max must be at least 1 MiB".into());
        }
        if let Some(requirement) = &self.job_requirement {
            idlegrid_market::expr::Expr::parse_scoped(requirement, idlegrid_market::expr::PROVIDER_SCOPES)
                .map_err(|e| format!("job_requirement: {e}"))?;
        }
        crate::market_peripheral::check(&self.peripherals)?;
        Ok(())
    }

    pub fn idle_after(&self) -> Duration {
        Duration::from_secs(self.idle_after_secs)
    }

    pub fn resume_after(&self) -> Duration {
        Duration::from_secs(self.resume_after_secs)
    }
}

/// Settings the server may change with `Config` (the owner's budgets, hours and mode are not
/// among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerControlled {
    pub prefetch: u32,
    pub status_interval: Duration,
    /// How long the server waits before it takes an engine for gone (`silence_ms_max`), if it
    /// said; an idle engine sends `Heartbeat` well within it.
    pub silence_max: Option<Duration>,
    /// The owner's own values, in force where the server sets none.
    own: (u32, Duration),
}

impl ServerControlled {
    pub fn new(prefetch: u32, status_interval: Duration) -> ServerControlled {
        ServerControlled { prefetch, status_interval, silence_max: None, own: (prefetch, status_interval) }
    }

    /// How often an idle engine says it is there: a third of the server's silence limit (at
    /// least a second), a minute until the server said.
    pub fn heartbeat_interval(&self) -> Duration {
        self.silence_max.map_or(Duration::from_secs(60), |silence| (silence / 3).max(Duration::from_secs(1)))
    }
}

impl ServerControlled {
    /// Apply a `Config` message: the whole of what the server sets, so a setting it does not
    /// name is the owner's own again. Unknown keys and bad values are reported.
    pub fn apply(&mut self, settings: &std::collections::BTreeMap<String, String>) -> Vec<String> {
        let mut problems = Vec::new();
        (self.prefetch, self.status_interval) = self.own;
        for (key, value) in settings {
            match key.as_str() {
                "prefetch" => match value.parse::<u32>() {
                    Ok(v) if v <= 4096 => self.prefetch = v,
                    _ => problems.push(format!("prefetch = {value:?} is not a number up to 4096")),
                },
                "status_interval_ms" => match value.parse::<u64>() {
                    Ok(v) if (50..=3_600_000).contains(&v) => self.status_interval = Duration::from_millis(v),
                    _ => problems.push(format!("status_interval_ms = {value:?} is not between 50 and 3600000")),
                },
                "silence_ms_max" => match value.parse::<u64>() {
                    Ok(v) => self.silence_max = Some(Duration::from_millis(v)),
                    _ => problems.push(format!("silence_ms_max = {value:?} is not a number")),
                },
                // Informational keys the server sends to every engine.
                "poll_wait_ms_max" | "capacity_max" => {}
                other => problems.push(format!("'{other}' is not a setting the server may change")),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(entries: &[&str]) -> WeeklySchedule {
        WeeklySchedule::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn at(day: u32, hour: u32, minute: u32) -> WeekMinute {
        day * 1440 + hour * 60 + minute
    }

    #[test]
    fn weekly_intervals_including_past_midnight_and_week_end() {
        let s = schedule(&["mon-fri 18:00-08:00"]);
        assert!(s.contains(at(0, 18, 0)) && s.contains(at(1, 7, 59)));
        assert!(!s.contains(at(1, 8, 0)) && !s.contains(at(0, 12, 0)));
        assert!(s.contains(at(5, 7, 0)), "friday night runs into saturday morning");
        assert!(!s.contains(at(6, 12, 0)));
        let weekend = schedule(&["sun 22:00-02:00"]);
        assert!(weekend.contains(at(6, 23, 0)) && weekend.contains(at(0, 1, 0)), "wraps to monday");
        let daily = schedule(&["daily 02:00-04:00"]);
        assert_eq!((0..MINUTES_PER_WEEK).filter(|m| daily.contains(*m)).count(), 7 * 120);
        assert!(WeeklySchedule::always().contains(at(3, 3, 3)));
        assert_eq!(daily.minutes_until_open(at(0, 1, 0)), 60);
        assert_eq!(daily.minutes_until_open(at(0, 3, 0)), 0);
    }

    #[test]
    fn schedule_mistakes_are_named() {
        for (bad, needle) in [
            ("mon 9-17", "not a time"),
            ("funday 09:00-10:00", "not a day"),
            ("mon 09:00-09:00", "empty"),
            ("mon 25:00-26:00", "not a time of day"),
            ("mon", "expected"),
        ] {
            let err = WeeklySchedule::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_from_toml() {
        let settings = OwnerSettings::from_toml(
            "mode = \"idle-only\"\ncores = 1\nrun_hours = [\"mon-fri 18:00-08:00\"]\n[contact]\nevery_seconds = 600\nhours = [\"daily 02:00-04:00\"]\n",
        )
        .unwrap();
        assert_eq!(settings.mode, RunMode::IdleOnly);
        assert!(settings.run_hours.contains(at(0, 19, 0)));
        assert_eq!(settings.contact.every_seconds, 600);
        assert!(OwnerSettings::from_toml("cores = 0").unwrap_err().contains("cores"));
        assert!(OwnerSettings::from_toml("coers = 2").unwrap_err().contains("coers"));
        assert!(OwnerSettings::from_toml("others_cpu_busy_max = 3.0").is_err());
        assert_eq!(settings.task_priority, TaskPriority::Lowest, "the lowest unless asked");
        assert_eq!(OwnerSettings::from_toml("task_priority = \"normal\"").unwrap().task_priority, TaskPriority::Normal);
        assert!(OwnerSettings::from_toml("task_priority = \"high\"").unwrap_err().contains("high"));
        assert_eq!("normal".parse::<TaskPriority>(), Ok(TaskPriority::Normal));
        assert!("high".parse::<TaskPriority>().unwrap_err().contains("lowest or normal"));
    }

    #[test]
    fn the_shipped_example_settings_parse() {
        let settings = OwnerSettings::from_toml(include_str!("../../../packaging/engine.toml")).unwrap();
        assert_eq!(settings.mode, RunMode::IdleOnly);
        assert!(settings.run_hours.contains(at(6, 12, 0)) && !settings.run_hours.contains(at(2, 12, 0)));
    }

    #[test]
    fn the_server_changes_only_what_it_may() {
        let mut controlled = ServerControlled::new(4, Duration::from_secs(1));
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("prefetch".to_string(), "8".to_string());
        settings.insert("disk_bytes_max".to_string(), "1".to_string());
        settings.insert("status_interval_ms".to_string(), "x".to_string());
        let problems = controlled.apply(&settings);
        assert_eq!(controlled.prefetch, 8);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("disk_bytes_max")));
    }

    #[test]
    fn idle_engines_beat_within_the_servers_silence_limit() {
        let mut controlled = ServerControlled::new(4, Duration::from_secs(1));
        assert_eq!(controlled.heartbeat_interval(), Duration::from_secs(60), "until the server says");
        let said = |ms: &str| -> std::collections::BTreeMap<String, String> {
            [("silence_ms_max".to_string(), ms.to_string())].into_iter().collect()
        };
        assert!(controlled.apply(&said("90000")).is_empty());
        assert_eq!(controlled.heartbeat_interval(), Duration::from_secs(30));
        assert!(controlled.apply(&said("600")).is_empty());
        assert_eq!(controlled.heartbeat_interval(), Duration::from_secs(1), "never more than once a second");
        assert_eq!(controlled.apply(&said("soon")).len(), 1);
        assert_eq!(controlled.silence_max, Some(Duration::from_millis(600)), "a bad value changes nothing");
    }

    #[test]
    fn a_setting_the_server_no_longer_names_is_the_owners_again() {
        let mut controlled = ServerControlled::new(4, Duration::from_secs(1));
        let one = |k: &str, v: &str| -> std::collections::BTreeMap<String, String> {
            [(k.to_string(), v.to_string())].into_iter().collect()
        };
        assert!(controlled.apply(&one("prefetch", "1")).is_empty());
        assert_eq!(controlled.prefetch, 1);
        assert!(controlled.apply(&one("status_interval_ms", "500")).is_empty());
        assert_eq!((controlled.prefetch, controlled.status_interval), (4, Duration::from_millis(500)));
        assert!(controlled.apply(&std::collections::BTreeMap::new()).is_empty());
        assert_eq!((controlled.prefetch, controlled.status_interval), (4, Duration::from_secs(1)));
    }
}
