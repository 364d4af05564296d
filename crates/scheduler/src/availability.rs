//! Availability of a provider's CPU and bandwidth (P5.2): the 7-day moving averages `a_c`, `a_b`
//! of the simplified version and the weekly signatures of the full version, from per-minute
//! observations.
//!
//! Choices where the seed is vague:
//! - **A minute nobody reported is a minute of unavailability.** The seed counts queue latency
//!   as the provider's unavailability; likewise an engine that is silent is not available. The
//!   caller records spans of minutes with one state (from the engine's reports and its contacts)
//!   and `advance_to` counts the silence since the last report as unavailable.
//! - **Aggregated, not raw.** 10,080 raw minutes per provider would cost 2.5 KB per provider per
//!   resource; instead the last week is kept as 672 quarter hours, each the count of available
//!   minutes (0..=15) of CPU and of bandwidth packed into one byte. The moving average therefore
//!   slides in quarter-hour steps: it covers between 6 days 23 h 45 min and 7 days, exactly the
//!   minutes recorded in the ring. A provider younger than a week is averaged over its age.
//! - **The signature is the probability of availability in each of the 672 quarter hours of a
//!   UTC week** starting Monday 00:00 UTC. It is a running mean of the weekly values for the
//!   first four weeks, then an exponential average (weight 1/4), so it follows a provider whose
//!   habits change within a month, and it is stored as one byte per interval (resolution 1/255).
//!   Together: 672 + 2 x 672 bytes and a few counters, about 2.1 KB per provider.
//! - **Run lengths** (mean length of an uninterrupted available stretch, exponential average of
//!   weight 1/8) are kept besides, because the full version needs to know how persistent
//!   availability is, not only how frequent (see `full`).

use crate::SchedulerError;

pub const MINUTES_PER_WEEK: u64 = 7 * 24 * 60;
/// Length of one signature interval and of one bucket of the moving average.
pub const INTERVAL_MINUTES: u64 = 15;
/// Intervals in a week: the length of a signature.
pub const WEEK_INTERVALS: usize = (MINUTES_PER_WEEK / INTERVAL_MINUTES) as usize;
/// The Unix epoch (minute 0) was a Thursday 00:00 UTC, three days after the week's start.
const EPOCH_MINUTE_OF_WEEK: u64 = 3 * 24 * 60;
/// Longest span one `record` call may cover; longer means a bad clock or a bad number.
pub const SPAN_MINUTES_MAX: u64 = 366 * 24 * 60;
/// Weight of a new week in the signature once four weeks are known.
const SIGNATURE_WEIGHT_MIN: f64 = 0.25;
/// Weight of a new run in the mean run length.
const RUN_WEIGHT: f64 = 0.125;
/// Format version of `AvailabilityHistory::to_bytes`.
const BYTES_VERSION: u8 = 1;

/// The interval of the week (0 = Monday 00:00-00:15 UTC) that contains `minute` (minutes since
/// the Unix epoch).
pub fn interval_of_week(minute: u64) -> usize {
    (((minute % MINUTES_PER_WEEK) + EPOCH_MINUTE_OF_WEEK) % MINUTES_PER_WEEK / INTERVAL_MINUTES) as usize
}

/// Which resources were available during a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteState {
    pub cpu: bool,
    pub bandwidth: bool,
}

impl MinuteState {
    pub const NONE: MinuteState = MinuteState { cpu: false, bandwidth: false };
    pub const BOTH: MinuteState = MinuteState { cpu: true, bandwidth: true };
}

/// Probability of availability in each interval of a week, for CPU and for bandwidth, one byte
/// each (value / 255).
#[derive(Clone, PartialEq, Eq)]
pub struct WeeklySignature {
    cpu: [u8; WEEK_INTERVALS],
    bandwidth: [u8; WEEK_INTERVALS],
}

impl std::fmt::Debug for WeeklySignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mean =
            |v: &[u8; WEEK_INTERVALS]| v.iter().map(|x| *x as f64).sum::<f64>() / (255.0 * WEEK_INTERVALS as f64);
        write!(f, "WeeklySignature {{ cpu mean {:.3}, bandwidth mean {:.3} }}", mean(&self.cpu), mean(&self.bandwidth))
    }
}

impl Default for WeeklySignature {
    fn default() -> Self {
        WeeklySignature { cpu: [0; WEEK_INTERVALS], bandwidth: [0; WEEK_INTERVALS] }
    }
}

fn quantise(p: f64) -> u8 {
    (p.clamp(0.0, 1.0) * 255.0).round() as u8
}

impl WeeklySignature {
    /// A signature from probabilities per interval (`WEEK_INTERVALS` of each).
    pub fn from_probabilities(cpu: &[f64], bandwidth: &[f64]) -> Result<WeeklySignature, SchedulerError> {
        if cpu.len() != WEEK_INTERVALS || bandwidth.len() != WEEK_INTERVALS {
            return Err(SchedulerError::InvalidSignature("expected 672 probabilities of each resource"));
        }
        let mut signature = WeeklySignature::default();
        for i in 0..WEEK_INTERVALS {
            crate::profile::probability("signature probability", cpu[i])?;
            crate::profile::probability("signature probability", bandwidth[i])?;
            signature.cpu[i] = quantise(cpu[i]);
            signature.bandwidth[i] = quantise(bandwidth[i]);
        }
        Ok(signature)
    }

    /// The same probability in every interval.
    pub fn constant(cpu: f64, bandwidth: f64) -> WeeklySignature {
        WeeklySignature { cpu: [quantise(cpu); WEEK_INTERVALS], bandwidth: [quantise(bandwidth); WEEK_INTERVALS] }
    }

    pub fn cpu(&self, interval: usize) -> f64 {
        self.cpu[interval % WEEK_INTERVALS] as f64 / 255.0
    }

    pub fn bandwidth(&self, interval: usize) -> f64 {
        self.bandwidth[interval % WEEK_INTERVALS] as f64 / 255.0
    }

    /// 1,344 bytes: the CPU probabilities then the bandwidth ones, for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2 * WEEK_INTERVALS);
        bytes.extend_from_slice(&self.cpu);
        bytes.extend_from_slice(&self.bandwidth);
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<WeeklySignature, SchedulerError> {
        if bytes.len() != 2 * WEEK_INTERVALS {
            return Err(SchedulerError::InvalidSignature("expected 1344 bytes"));
        }
        let mut signature = WeeklySignature::default();
        signature.cpu.copy_from_slice(&bytes[..WEEK_INTERVALS]);
        signature.bandwidth.copy_from_slice(&bytes[WEEK_INTERVALS..]);
        Ok(signature)
    }
}

/// What the scheduler needs of a provider's availability history.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AvailabilityRatings {
    /// `a_c`: share of the last 7 days with the CPU available.
    pub cpu: f64,
    /// `a_b`: share of the last 7 days with the bandwidth available.
    pub bandwidth: f64,
    /// Minutes the averages cover (less than a week for a young provider).
    pub window_minutes: u32,
    /// Mean length of an uninterrupted stretch of CPU availability.
    pub cpu_run_minutes_mean: f64,
    /// Mean length of an uninterrupted stretch of bandwidth availability.
    pub bandwidth_run_minutes_mean: f64,
}

impl AvailabilityRatings {
    /// Ratings given directly (tests, simulations that skip the history).
    pub fn new(cpu: f64, bandwidth: f64, window_minutes: u32) -> AvailabilityRatings {
        AvailabilityRatings {
            cpu,
            bandwidth,
            window_minutes,
            cpu_run_minutes_mean: 60.0,
            bandwidth_run_minutes_mean: 60.0,
        }
    }

    /// Whether the averages cover a whole week (the ring slides by quarter hours, so a full
    /// window is between a week less 14 minutes and a week): the signature has seen every interval.
    pub fn covers_week(&self) -> bool {
        self.window_minutes as u64 + INTERVAL_MINUTES > MINUTES_PER_WEEK
    }

    pub fn validate(&self) -> Result<(), SchedulerError> {
        crate::profile::probability("availability.cpu", self.cpu)?;
        crate::profile::probability("availability.bandwidth", self.bandwidth)?;
        crate::profile::non_negative("availability.cpu_run_minutes_mean", self.cpu_run_minutes_mean)?;
        crate::profile::non_negative("availability.bandwidth_run_minutes_mean", self.bandwidth_run_minutes_mean)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Runs {
    current_minutes: u32,
    mean_minutes: f64,
    ended: u32,
}

impl Runs {
    fn extend(&mut self, available: bool, minutes: u64) {
        if available {
            self.current_minutes = self.current_minutes.saturating_add(minutes.min(u32::MAX as u64) as u32);
        } else if self.current_minutes > 0 {
            let run = self.current_minutes as f64;
            self.mean_minutes =
                if self.ended == 0 { run } else { self.mean_minutes + RUN_WEIGHT * (run - self.mean_minutes) };
            self.ended = self.ended.saturating_add(1);
            self.current_minutes = 0;
        }
    }

    fn mean(&self) -> f64 {
        if self.ended == 0 { self.current_minutes as f64 } else { self.mean_minutes }
    }
}

/// The availability history of one provider: the last week in quarter hours, the weekly
/// signatures, and run lengths. About 2.1 KB.
#[derive(Clone, PartialEq)]
pub struct AvailabilityHistory {
    /// Per quarter hour of the last week (ring indexed by absolute bucket modulo 672): available
    /// CPU minutes in the low nibble, available bandwidth minutes in the high nibble.
    recent: [u8; WEEK_INTERVALS],
    signature: WeeklySignature,
    recent_cpu_minutes: u32,
    recent_bandwidth_minutes: u32,
    /// First minute ever recorded; `u64::MAX` before the first record.
    first_minute: u64,
    /// Every minute before this one is recorded.
    next_minute: u64,
    /// Absolute quarter hour (minute / 15) of the newest ring slot.
    current_bucket: u64,
    cpu_runs: Runs,
    bandwidth_runs: Runs,
}

impl std::fmt::Debug for AvailabilityHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvailabilityHistory")
            .field("first_minute", &self.first_minute)
            .field("next_minute", &self.next_minute)
            .field("ratings", &self.ratings())
            .finish()
    }
}

impl Default for AvailabilityHistory {
    fn default() -> Self {
        AvailabilityHistory::new()
    }
}

impl AvailabilityHistory {
    pub fn new() -> AvailabilityHistory {
        AvailabilityHistory {
            recent: [0; WEEK_INTERVALS],
            signature: WeeklySignature::default(),
            recent_cpu_minutes: 0,
            recent_bandwidth_minutes: 0,
            first_minute: u64::MAX,
            next_minute: 0,
            current_bucket: 0,
            cpu_runs: Runs::default(),
            bandwidth_runs: Runs::default(),
        }
    }

    /// Record that during minutes `from..to` (minutes since the Unix epoch) the provider was in
    /// `state`. Minutes between the last record and `from` count as unavailable; minutes already
    /// recorded are ignored (records never rewrite the past). The first record starts the history.
    pub fn record(&mut self, from_minute: u64, to_minute: u64, state: MinuteState) -> Result<(), SchedulerError> {
        if to_minute < from_minute {
            return Err(SchedulerError::InvalidSpan { from_minute, to_minute, reason: "ends before it starts" });
        }
        if self.first_minute == u64::MAX {
            if to_minute == from_minute {
                return Ok(());
            }
            self.first_minute = from_minute;
            self.next_minute = from_minute;
            self.current_bucket = from_minute / INTERVAL_MINUTES;
        }
        if to_minute <= self.next_minute {
            return Ok(());
        }
        if to_minute - self.next_minute > SPAN_MINUTES_MAX {
            return Err(SchedulerError::InvalidSpan { from_minute, to_minute, reason: "covers more than a year" });
        }
        let from_minute = from_minute.max(self.next_minute);
        self.fill(from_minute, MinuteState::NONE);
        self.fill(to_minute, state);
        Ok(())
    }

    /// Count the minutes since the last record up to `minute` as unavailable (a silent provider).
    pub fn advance_to(&mut self, minute: u64) -> Result<(), SchedulerError> {
        if self.first_minute == u64::MAX || minute <= self.next_minute {
            return Ok(());
        }
        self.record(minute, minute, MinuteState::NONE)
    }

    /// Every minute before this one is recorded.
    pub fn recorded_until_minute(&self) -> Option<u64> {
        (self.first_minute != u64::MAX).then_some(self.next_minute)
    }

    fn fill(&mut self, to_minute: u64, state: MinuteState) {
        while self.next_minute < to_minute {
            let bucket = self.next_minute / INTERVAL_MINUTES;
            if bucket > self.current_bucket {
                self.move_to_bucket(bucket);
            }
            let end = to_minute.min((bucket + 1) * INTERVAL_MINUTES);
            let minutes = end - self.next_minute;
            let slot = (bucket % WEEK_INTERVALS as u64) as usize;
            let mut cpu = (self.recent[slot] & 0x0F) as u64;
            let mut bandwidth = (self.recent[slot] >> 4) as u64;
            if state.cpu {
                cpu += minutes;
                self.recent_cpu_minutes += minutes as u32;
            }
            if state.bandwidth {
                bandwidth += minutes;
                self.recent_bandwidth_minutes += minutes as u32;
            }
            self.recent[slot] = (cpu.min(15) | (bandwidth.min(15) << 4)) as u8;
            self.cpu_runs.extend(state.cpu, minutes);
            self.bandwidth_runs.extend(state.bandwidth, minutes);
            self.next_minute = end;
        }
    }

    fn move_to_bucket(&mut self, bucket: u64) {
        self.close(self.current_bucket);
        for skipped in self.current_bucket + 1..bucket {
            self.open(skipped);
            self.close(skipped);
        }
        self.open(bucket);
        self.current_bucket = bucket;
    }

    /// Empty the ring slot of `bucket`, forgetting the bucket a week older.
    fn open(&mut self, bucket: u64) {
        let slot = (bucket % WEEK_INTERVALS as u64) as usize;
        let old = self.recent[slot];
        self.recent_cpu_minutes -= (old & 0x0F) as u32;
        self.recent_bandwidth_minutes -= (old >> 4) as u32;
        self.recent[slot] = 0;
    }

    /// Fold a finished quarter hour into the signature.
    fn close(&mut self, bucket: u64) {
        let slot = (bucket % WEEK_INTERVALS as u64) as usize;
        let value = self.recent[slot];
        let start_minute = bucket * INTERVAL_MINUTES;
        let weeks_before = start_minute.saturating_sub(self.first_minute) / MINUTES_PER_WEEK;
        let weight = (1.0 / (weeks_before as f64 + 1.0)).max(SIGNATURE_WEIGHT_MIN);
        let interval = interval_of_week(start_minute);
        let blend = |old: u8, minutes: u8| -> u8 {
            let observed = minutes as f64 / INTERVAL_MINUTES as f64 * 255.0;
            (old as f64 + weight * (observed - old as f64)).round().clamp(0.0, 255.0) as u8
        };
        self.signature.cpu[interval] = blend(self.signature.cpu[interval], value & 0x0F);
        self.signature.bandwidth[interval] = blend(self.signature.bandwidth[interval], value >> 4);
    }

    /// The moving averages over the minutes in the ring, or `None` before the first record.
    pub fn ratings(&self) -> Option<AvailabilityRatings> {
        if self.first_minute == u64::MAX || self.next_minute <= self.first_minute {
            return None;
        }
        let ring_start = self.current_bucket.saturating_sub(WEEK_INTERVALS as u64 - 1) * INTERVAL_MINUTES;
        let window = self.next_minute - ring_start.max(self.first_minute);
        Some(AvailabilityRatings {
            cpu: (self.recent_cpu_minutes as f64 / window as f64).min(1.0),
            bandwidth: (self.recent_bandwidth_minutes as f64 / window as f64).min(1.0),
            window_minutes: window.min(u32::MAX as u64) as u32,
            cpu_run_minutes_mean: self.cpu_runs.mean(),
            bandwidth_run_minutes_mean: self.bandwidth_runs.mean(),
        })
    }

    /// The weekly signature; intervals not yet seen are 0.
    pub fn signature(&self) -> &WeeklySignature {
        &self.signature
    }

    /// Serialize for storage (2,077 bytes); `from_bytes` reads it back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(2100);
        bytes.push(BYTES_VERSION);
        for value in [self.first_minute, self.next_minute, self.current_bucket] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        for runs in [&self.cpu_runs, &self.bandwidth_runs] {
            bytes.extend_from_slice(&runs.current_minutes.to_le_bytes());
            bytes.extend_from_slice(&runs.mean_minutes.to_le_bytes());
            bytes.extend_from_slice(&runs.ended.to_le_bytes());
        }
        bytes.extend_from_slice(&self.recent);
        bytes.extend_from_slice(&self.signature.to_bytes());
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<AvailabilityHistory, SchedulerError> {
        const HEADER: usize = 1 + 3 * 8 + 2 * (4 + 8 + 4);
        if bytes.len() != HEADER + 3 * WEEK_INTERVALS || bytes[0] != BYTES_VERSION {
            return Err(SchedulerError::InvalidSignature("availability history: wrong length or version"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let f64_at = |at: usize| f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let mut history = AvailabilityHistory::new();
        history.first_minute = u64_at(1);
        history.next_minute = u64_at(9);
        history.current_bucket = u64_at(17);
        let runs_at =
            |at: usize| Runs { current_minutes: u32_at(at), mean_minutes: f64_at(at + 4), ended: u32_at(at + 12) };
        history.cpu_runs = runs_at(25);
        history.bandwidth_runs = runs_at(41);
        history.recent.copy_from_slice(&bytes[HEADER..HEADER + WEEK_INTERVALS]);
        history.signature = WeeklySignature::from_bytes(&bytes[HEADER + WEEK_INTERVALS..])?;
        let consistent = history.first_minute == u64::MAX
            || (history.first_minute <= history.next_minute
                && history.current_bucket
                    == history.next_minute.saturating_sub(1).max(history.first_minute) / INTERVAL_MINUTES
                && history.cpu_runs.mean_minutes.is_finite()
                && history.bandwidth_runs.mean_minutes.is_finite());
        if !consistent {
            return Err(SchedulerError::InvalidSignature("availability history: inconsistent positions"));
        }
        for value in history.recent {
            history.recent_cpu_minutes += (value & 0x0F) as u32;
            history.recent_bandwidth_minutes += (value >> 4) as u32;
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MONDAY: u64 = 4 * 24 * 60; // 1970-01-05 00:00 UTC was a Monday.

    #[test]
    fn intervals_start_on_monday_utc() {
        assert_eq!(interval_of_week(MONDAY), 0);
        assert_eq!(interval_of_week(MONDAY + 14), 0);
        assert_eq!(interval_of_week(MONDAY + 15), 1);
        assert_eq!(interval_of_week(0), 3 * 96); // Thursday 00:00
        assert_eq!(interval_of_week(MONDAY - 1), WEEK_INTERVALS - 1); // Sunday 23:59
        assert_eq!(interval_of_week(MONDAY + MINUTES_PER_WEEK * 1000 + 60), 4);
    }

    #[test]
    fn averages_count_silence_as_unavailable() {
        let mut h = AvailabilityHistory::new();
        assert_eq!(h.ratings(), None);
        // One hour: CPU and bandwidth available for 30 minutes, bandwidth only for 15, nothing for 15.
        h.record(MONDAY, MONDAY + 30, MinuteState::BOTH).unwrap();
        h.record(MONDAY + 30, MONDAY + 45, MinuteState { cpu: false, bandwidth: true }).unwrap();
        h.advance_to(MONDAY + 60).unwrap();
        let r = h.ratings().unwrap();
        assert_eq!(r.window_minutes, 60);
        assert!((r.cpu - 0.5).abs() < 1e-12);
        assert!((r.bandwidth - 0.75).abs() < 1e-12);
        assert_eq!(r.cpu_run_minutes_mean, 30.0);
        assert_eq!(r.bandwidth_run_minutes_mean, 45.0);
    }

    #[test]
    fn the_window_is_the_last_week() {
        let mut h = AvailabilityHistory::new();
        // First week: always available. Second week: available half of every hour.
        h.record(MONDAY, MONDAY + MINUTES_PER_WEEK, MinuteState::BOTH).unwrap();
        let first = h.ratings().unwrap();
        assert_eq!(first.window_minutes as u64, MINUTES_PER_WEEK);
        assert_eq!(first.cpu, 1.0);
        let mut minute = MONDAY + MINUTES_PER_WEEK;
        for _ in 0..7 * 24 {
            h.record(minute, minute + 30, MinuteState::BOTH).unwrap();
            h.record(minute + 30, minute + 60, MinuteState::NONE).unwrap();
            minute += 60;
        }
        let second = h.ratings().unwrap();
        assert_eq!(second.window_minutes as u64, MINUTES_PER_WEEK);
        assert!((second.cpu - 0.5).abs() < 1e-12, "{second:?}");
        assert!((second.cpu_run_minutes_mean - 30.0).abs() < 10.0, "{second:?}");
        // Half an hour into the third week: the window still spans one week of minutes.
        h.record(minute, minute + 30, MinuteState::BOTH).unwrap();
        let third = h.ratings().unwrap();
        assert!(third.window_minutes as u64 <= MINUTES_PER_WEEK && third.window_minutes as u64 > MINUTES_PER_WEEK - 15);
        assert!(third.covers_week() && second.covers_week());
        let mut young = AvailabilityHistory::new();
        young.record(MONDAY, MONDAY + MINUTES_PER_WEEK - 15, MinuteState::BOTH).unwrap();
        assert!(!young.ratings().unwrap().covers_week());
    }

    #[test]
    fn signature_learns_the_weekly_pattern() {
        let mut h = AvailabilityHistory::new();
        // Four weeks: available Monday to Friday 09:00-17:00 UTC only.
        for week in 0..4 {
            for day in 0..7 {
                let start = MONDAY + week * MINUTES_PER_WEEK + day * 1440;
                if day < 5 {
                    h.record(start + 9 * 60, start + 17 * 60, MinuteState::BOTH).unwrap();
                }
            }
        }
        h.advance_to(MONDAY + 4 * MINUTES_PER_WEEK).unwrap();
        let s = h.signature();
        assert_eq!(s.cpu(9 * 4), 1.0); // Monday 09:00
        assert_eq!(s.cpu(8 * 4 + 3), 0.0); // Monday 08:45
        assert_eq!(s.bandwidth(16 * 4 + 3), 1.0); // Monday 16:45
        assert_eq!(s.cpu(5 * 96 + 10 * 4), 0.0); // Saturday 10:00
        let r = h.ratings().unwrap();
        assert!((r.cpu - 40.0 / 168.0).abs() < 1e-9, "{r:?}");
        // A fifth week without Monday's work day moves Monday 09:00 by the weight 1/4.
        for day in 1..5 {
            let start = MONDAY + 4 * MINUTES_PER_WEEK + day * 1440;
            h.record(start + 9 * 60, start + 17 * 60, MinuteState::BOTH).unwrap();
        }
        h.advance_to(MONDAY + 5 * MINUTES_PER_WEEK).unwrap();
        assert!((h.signature().cpu(9 * 4) - 0.75).abs() < 0.01, "{}", h.signature().cpu(9 * 4));
        assert_eq!(h.signature().cpu(24 * 4 + 9 * 4), 1.0); // Tuesday unchanged
    }

    #[test]
    fn the_past_is_not_rewritten_and_bad_spans_are_refused() {
        let mut h = AvailabilityHistory::new();
        h.record(MONDAY, MONDAY + 60, MinuteState::NONE).unwrap();
        h.record(MONDAY + 10, MONDAY + 20, MinuteState::BOTH).unwrap(); // in the past: ignored
        assert_eq!(h.ratings().unwrap().cpu, 0.0);
        assert!(h.record(MONDAY + 100, MONDAY + 90, MinuteState::BOTH).is_err());
        assert!(h.record(MONDAY + 100, MONDAY + 100 + SPAN_MINUTES_MAX + 1, MinuteState::BOTH).is_err());
        assert!(h.record(u64::MAX - 5, u64::MAX, MinuteState::BOTH).is_err());
        assert_eq!(h.ratings().unwrap().window_minutes, 60);
    }

    #[test]
    fn bytes_round_trip_and_refuse_garbage() {
        let mut h = AvailabilityHistory::new();
        h.record(MONDAY + 7, MONDAY + 3000, MinuteState { cpu: true, bandwidth: false }).unwrap();
        h.record(MONDAY + 3100, MONDAY + 9000, MinuteState::BOTH).unwrap();
        let bytes = h.to_bytes();
        let back = AvailabilityHistory::from_bytes(&bytes).unwrap();
        assert_eq!(back, h);
        assert!(AvailabilityHistory::from_bytes(&bytes[1..]).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(AvailabilityHistory::from_bytes(&bad).is_err());
        let empty = AvailabilityHistory::new();
        assert_eq!(AvailabilityHistory::from_bytes(&empty.to_bytes()).unwrap(), empty);
        let sig = h.signature().clone();
        assert_eq!(WeeklySignature::from_bytes(&sig.to_bytes()).unwrap(), sig);
        assert!(WeeklySignature::from_probabilities(&[0.5; 10], &[0.5; 10]).is_err());
        assert!(WeeklySignature::from_probabilities(&[1.5; WEEK_INTERVALS], &[0.5; WEEK_INTERVALS]).is_err());
        assert!(WeeklySignature::from_probabilities(&[f64::NAN; WEEK_INTERVALS], &[0.5; WEEK_INTERVALS]).is_err());
    }

    proptest! {
        /// The moving average equals the exact share of available minutes among the last
        /// `window_minutes` minutes, computed naively from a minute-by-minute record.
        #[test]
        fn moving_average_matches_a_naive_count(
            spans in proptest::collection::vec((1u64..3000, any::<bool>(), any::<bool>()), 1..40),
            start in 0u64..20_000,
        ) {
            let mut h = AvailabilityHistory::new();
            let mut minutes: Vec<MinuteState> = Vec::new();
            let mut at = start;
            for (length, cpu, bandwidth) in spans {
                let state = MinuteState { cpu, bandwidth };
                h.record(at, at + length, state).unwrap();
                minutes.extend(std::iter::repeat_n(state, length as usize));
                at += length;
            }
            let r = h.ratings().unwrap();
            let window = r.window_minutes as usize;
            prop_assert!(window <= minutes.len());
            // The window is the whole record, or all of it up to a week but less than 15 minutes.
            prop_assert!(window == minutes.len() || window as u64 > MINUTES_PER_WEEK.min(minutes.len() as u64).saturating_sub(15));
            let tail = &minutes[minutes.len() - window..];
            let cpu = tail.iter().filter(|m| m.cpu).count() as f64 / window as f64;
            let bandwidth = tail.iter().filter(|m| m.bandwidth).count() as f64 / window as f64;
            prop_assert!((r.cpu - cpu).abs() < 1e-9, "{} vs {}", r.cpu, cpu);
            prop_assert!((r.bandwidth - bandwidth).abs() < 1e-9);
            prop_assert_eq!(AvailabilityHistory::from_bytes(&h.to_bytes()).unwrap(), h);
        }
    }
}
