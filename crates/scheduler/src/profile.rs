//! What a provider is (P5.1): speed and bandwidth measured by benchmark tasks, and the facts its
//! engine reports in `NodeProfile`.
//!
//! Choices where the seed is vague:
//! - **CPU speed is per slot.** `cpu_gflops` is what one benchmark task measures on one core;
//!   an engine that offers several slots runs several copies, each at that speed. Members of one
//!   virtual node are always on distinct providers, since copies on one machine fail together.
//! - **Re-measurements are smoothed**, not replaced: a benchmark run while the owner compiles
//!   something reads low. `BenchmarkAverage` is a running mean for the first four samples and an
//!   exponential average (weight 1/4) after, so a machine that really changed (new CPU) is
//!   followed within a few measurements.
//! - Sizes are in MB (10^6 bytes), speeds in GFLOPS and MB/s, as in P1.2.

use serde::{Deserialize, Serialize};

pub use idlegrid_types::Connectivity;

use crate::SchedulerError;

/// Highest speed or bandwidth accepted from a report; anything above is a lie or a unit error.
pub const CPU_GFLOPS_MAX: f64 = 1.0e6;
pub const BANDWIDTH_MB_PER_S_MAX: f64 = 1.0e6;
/// Most slots one engine may offer.
pub const SLOTS_MAX: u32 = 1024;

/// A provider's measured and reported capabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderProfile {
    /// Speed of one slot, measured by benchmark tasks.
    pub cpu_gflops: f64,
    /// Bandwidth to the server, measured by transfer benchmarks.
    pub bandwidth_mb_per_s: f64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub cores: u32,
    pub connectivity: Connectivity,
}

impl ProviderProfile {
    /// Build from an engine's `NodeProfile` (sizes in bytes) and the measured speeds.
    pub fn from_report(
        cpu_gflops: f64,
        bandwidth_mb_per_s: f64,
        memory_bytes: u64,
        disk_bytes: u64,
        cores: u32,
        connectivity: Connectivity,
    ) -> Result<ProviderProfile, SchedulerError> {
        let profile = ProviderProfile {
            cpu_gflops,
            bandwidth_mb_per_s,
            memory_mb: memory_bytes / 1_000_000,
            disk_mb: disk_bytes / 1_000_000,
            cores,
            connectivity,
        };
        profile.validate()?;
        Ok(profile)
    }

    /// Speeds must be finite, positive and below the maxima.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        positive_at_most("cpu_gflops", self.cpu_gflops, CPU_GFLOPS_MAX)?;
        positive_at_most("bandwidth_mb_per_s", self.bandwidth_mb_per_s, BANDWIDTH_MB_PER_S_MAX)?;
        Ok(())
    }
}

pub(crate) fn positive_at_most(field: &'static str, value: f64, max: f64) -> Result<(), SchedulerError> {
    if !value.is_finite() {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "not a finite number" });
    }
    if value <= 0.0 {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "must be positive" });
    }
    if value > max {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "above the accepted maximum" });
    }
    Ok(())
}

pub(crate) fn non_negative(field: &'static str, value: f64) -> Result<(), SchedulerError> {
    if !value.is_finite() {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "not a finite number" });
    }
    if value < 0.0 {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "must not be negative" });
    }
    Ok(())
}

pub(crate) fn probability(field: &'static str, value: f64) -> Result<(), SchedulerError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(SchedulerError::InvalidNumber { field, value, reason: "must be in [0, 1]" });
    }
    Ok(())
}

/// Smoothed benchmark results for one quantity (CPU speed or bandwidth).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BenchmarkAverage {
    pub mean: f64,
    pub samples: u32,
}

impl BenchmarkAverage {
    /// Weight of a new sample once the average is established.
    pub const WEIGHT_MIN: f64 = 0.25;

    /// Fold in one measurement. Invalid measurements (NaN, infinite, not positive, above
    /// `limit_max`) are refused and leave the average unchanged.
    pub fn record(&mut self, sample: f64, limit_max: f64) -> Result<f64, SchedulerError> {
        positive_at_most("benchmark sample", sample, limit_max)?;
        let weight = (1.0 / (self.samples as f64 + 1.0)).max(Self::WEIGHT_MIN);
        self.mean = if self.samples == 0 { sample } else { self.mean + weight * (sample - self.mean) };
        self.samples = self.samples.saturating_add(1);
        Ok(self.mean)
    }

    pub fn value(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_from_report_converts_bytes_and_refuses_bad_speeds() {
        let p =
            ProviderProfile::from_report(12.5, 3.0, 8_000_000_000, 250_000_000_000, 4, Connectivity::Constant).unwrap();
        assert_eq!(p.memory_mb, 8000);
        assert_eq!(p.disk_mb, 250_000);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 2.0e6] {
            assert!(ProviderProfile::from_report(bad, 3.0, 0, 0, 1, Connectivity::Intermittent).is_err(), "{bad}");
            assert!(ProviderProfile::from_report(1.0, bad, 0, 0, 1, Connectivity::Intermittent).is_err(), "{bad}");
        }
    }

    #[test]
    fn benchmark_average_is_a_running_mean_then_exponential() {
        let mut a = BenchmarkAverage::default();
        assert_eq!(a.value(), None);
        assert_eq!(a.record(10.0, 100.0).unwrap(), 10.0);
        assert_eq!(a.record(20.0, 100.0).unwrap(), 15.0); // mean of two
        assert!((a.record(30.0, 100.0).unwrap() - 20.0).abs() < 1e-12); // mean of three
        assert!((a.record(40.0, 100.0).unwrap() - 25.0).abs() < 1e-12); // mean of four
        // Fifth sample: weight 1/4, not 1/5.
        assert!((a.record(125.0 - 100.0 + 75.0, 100.0).unwrap() - (25.0 + 0.25 * 75.0)).abs() < 1e-12);
        let before = a;
        assert!(a.record(f64::NAN, 100.0).is_err());
        assert!(a.record(-3.0, 100.0).is_err());
        assert!(a.record(1000.0, 100.0).is_err());
        assert_eq!(a, before);
    }
}
