//! Times to completion and the candidate test (P5.3), with the seed's formulas:
//!
//! - expected time on a provider: `T_E = w / (C a_c) + (d_i + d_o) / (B a_b)`
//! - requested time (an ideal, always available node): `T_R = w / C_v + (d_i + d_o) / B_v`
//! - weighted availability: `pi = (a_c w̄/C + a_b d̄/B) / (w̄/C + d̄/B)`, bars being averages
//!   over a sampling of tasks (`SchedulerConfig::mean_task`).
//!
//! Units: work `w` in GFLOP (a GFLOP-hour is 3,600 GFLOP), data in MB, speeds in GFLOPS and
//! MB/s, times in seconds. `C a_c` is the provider's *effective speed*, `B a_b` its *effective
//! bandwidth*.
//!
//! Choices where the seed is vague ("T_E close to T_R"):
//! - **A candidate meets the requested time and is not much faster**: `(1 - f) T_R <= T_E <=
//!   (1 + g) T_R` with `f = faster_fraction_max` (default 0.25) and `g = slower_fraction_max`
//!   (default 0). The issue asks for providers "whose expected time meets the requested one",
//!   hence no slack above `T_R` by default; the lower bound keeps faster machines for the jobs
//!   that ask (and pay) for them, which is what makes the delivered power equal the requested
//!   power (P5.7).
//! - **The lower bound is judged without the engine's cache, the upper bound with it.** An engine
//!   that already holds a task's elements need not download them, so its `T_E` is shorter; that
//!   must make it preferred, never "too fast".
//! - **When the task moves data, the effective bandwidth must be at least
//!   `bandwidth_fraction_min` (default 1/4) of `B_v`.** The seed lets a fast CPU make up for a
//!   slow link (its equation for `B a_b` given `C a_c`); the floor bounds that trade so that the
//!   candidates of a task lie in a bounded range of effective speeds, which the index searches
//!   in O(log n).
//! - Tasks without estimates use the averages (`mean_task`), as the seed says; its alternative
//!   test (`a_c C ≈ C_v` and `a_b B ≈ B_v`) is then the same band applied to those averages.

use serde::{Deserialize, Serialize};

use crate::SchedulerError;
use crate::profile::non_negative;

/// Work and data of one task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskShape {
    pub work_gflop: f64,
    pub data_in_mb: f64,
    pub data_out_mb: f64,
}

impl TaskShape {
    /// From the units of a job's request (P1.2): work in GFLOP-hours.
    pub fn from_gflop_hours(work_gflop_hours: f64, data_in_mb: f64, data_out_mb: f64) -> TaskShape {
        TaskShape { work_gflop: work_gflop_hours * 3600.0, data_in_mb, data_out_mb }
    }

    pub fn data_mb(&self) -> f64 {
        self.data_in_mb + self.data_out_mb
    }

    pub fn validate(&self) -> Result<(), SchedulerError> {
        non_negative("work_gflop", self.work_gflop)?;
        non_negative("data_in_mb", self.data_in_mb)?;
        non_negative("data_out_mb", self.data_out_mb)?;
        Ok(())
    }
}

/// Speed and bandwidth of the node a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeSpeed {
    pub cpu_gflops: f64,
    pub bandwidth_mb_per_s: f64,
}

/// Seconds to move `amount` at `rate`; no amount takes no time, and a positive amount at no
/// rate never completes.
pub fn seconds_for(amount: f64, rate: f64) -> f64 {
    if !(amount > 0.0) {
        0.0
    } else if !(rate > 0.0) {
        f64::INFINITY
    } else {
        amount / rate
    }
}

/// `T_R = w / C_v + (d_i + d_o) / B_v`.
pub fn requested_seconds(shape: &TaskShape, node: &NodeSpeed) -> f64 {
    seconds_for(shape.work_gflop, node.cpu_gflops) + seconds_for(shape.data_mb(), node.bandwidth_mb_per_s)
}

/// `T_E = w / (C a_c) + (d_i + d_o) / (B a_b)`; infinite when a needed resource is never
/// available.
pub fn expected_seconds(
    shape: &TaskShape,
    cpu_gflops: f64,
    bandwidth_mb_per_s: f64,
    cpu_availability: f64,
    bandwidth_availability: f64,
) -> f64 {
    seconds_for(shape.work_gflop, cpu_gflops * cpu_availability)
        + seconds_for(shape.data_mb(), bandwidth_mb_per_s * bandwidth_availability)
}

/// The weighted availability `pi` of the seed: the availabilities of CPU and bandwidth, each
/// weighted by the share of an average task's time spent on that resource. A task with neither
/// work nor data weighs both equally; a resource that is needed but has no speed gives 0.
pub fn weighted_availability(
    cpu_availability: f64,
    bandwidth_availability: f64,
    cpu_gflops: f64,
    bandwidth_mb_per_s: f64,
    mean: &TaskShape,
) -> f64 {
    let cpu_seconds = seconds_for(mean.work_gflop, cpu_gflops);
    let data_seconds = seconds_for(mean.data_mb(), bandwidth_mb_per_s);
    let total = cpu_seconds + data_seconds;
    let pi = if !total.is_finite() {
        0.0
    } else if total <= 0.0 {
        (cpu_availability + bandwidth_availability) / 2.0
    } else {
        (cpu_availability * cpu_seconds + bandwidth_availability * data_seconds) / total
    };
    if pi.is_finite() { pi.clamp(0.0, 1.0) } else { 0.0 }
}

/// The seed's equation: the effective bandwidth `B a_b` at which a provider of effective speed
/// `C a_c` has exactly `T_E = T_R`. `None` when no bandwidth does (the CPU alone is too slow, or
/// the task moves no data).
pub fn matched_effective_bandwidth(shape: &TaskShape, node: &NodeSpeed, effective_speed: f64) -> Option<f64> {
    let (w, d, cv, bv, s) =
        (shape.work_gflop, shape.data_mb(), node.cpu_gflops, node.bandwidth_mb_per_s, effective_speed);
    let denominator = w * bv * (s - cv) + d * s * cv;
    let b = s * d * cv * bv / denominator;
    (d > 0.0 && denominator > 0.0 && b.is_finite() && b > 0.0).then_some(b)
}

/// How a provider's expected time compares with the requested one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BandFit {
    /// Much faster than requested: kept for jobs that ask for more (P5.7).
    TooFast,
    Within,
    /// Would not meet the requested time.
    TooSlow,
}

/// The candidate test's tolerance around `T_R`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CandidateBand {
    /// `T_E` may be this fraction below `T_R`.
    pub faster_fraction_max: f64,
    /// `T_E` may be this fraction above `T_R`.
    pub slower_fraction_max: f64,
    /// When the task moves data, effective bandwidth at least this fraction of `B_v`.
    pub bandwidth_fraction_min: f64,
}

impl Default for CandidateBand {
    fn default() -> Self {
        CandidateBand { faster_fraction_max: 0.25, slower_fraction_max: 0.0, bandwidth_fraction_min: 0.25 }
    }
}

impl CandidateBand {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if !(0.0..1.0).contains(&self.faster_fraction_max) {
            return Err(SchedulerError::InvalidNumber {
                field: "faster_fraction_max",
                value: self.faster_fraction_max,
                reason: "must be in [0, 1)",
            });
        }
        non_negative("slower_fraction_max", self.slower_fraction_max)?;
        if !(self.bandwidth_fraction_min > 0.0 && self.bandwidth_fraction_min <= 1.0) {
            return Err(SchedulerError::InvalidNumber {
                field: "bandwidth_fraction_min",
                value: self.bandwidth_fraction_min,
                reason: "must be in (0, 1]",
            });
        }
        Ok(())
    }

    /// Shortest acceptable `T_E` (judged without the cache).
    pub fn seconds_min(&self, requested_seconds: f64) -> f64 {
        requested_seconds * (1.0 - self.faster_fraction_max)
    }

    /// Longest acceptable `T_E` (judged with the cache).
    pub fn seconds_max(&self, requested_seconds: f64) -> f64 {
        requested_seconds * (1.0 + self.slower_fraction_max)
    }

    pub fn fit(&self, expected_seconds_uncached: f64, expected_seconds_cached: f64, requested_seconds: f64) -> BandFit {
        if !(expected_seconds_cached <= self.seconds_max(requested_seconds)) {
            BandFit::TooSlow
        } else if expected_seconds_uncached < self.seconds_min(requested_seconds) {
            BandFit::TooFast
        } else {
            BandFit::Within
        }
    }

    /// Smallest effective bandwidth a candidate may have for this task (0 when it moves no data).
    pub fn effective_bandwidth_min(&self, shape: &TaskShape, node: &NodeSpeed) -> f64 {
        if shape.data_mb() > 0.0 { node.bandwidth_mb_per_s * self.bandwidth_fraction_min } else { 0.0 }
    }

    /// The effective speeds `C a_c` outside which no provider can be a candidate: the index
    /// searches only this range. With `tc = w / s` and `td = D / b`, `T_E = tc + td` with
    /// `0 <= td <= D / b_min`:
    /// - not too slow needs `w / s <= (1 + g) T_R`, so `s >= w / ((1 + g) T_R)`;
    /// - not too fast needs `w / s >= (1 - f) T_R - D / b_min`, so `s <= w / that` when positive.
    ///
    /// Returns `(0, ∞)` for a task without work.
    pub fn effective_speed_range(&self, shape: &TaskShape, node: &NodeSpeed) -> (f64, f64) {
        let requested = requested_seconds(shape, node);
        let w = shape.work_gflop;
        if !(w > 0.0) || !(requested > 0.0) || !requested.is_finite() {
            return (0.0, f64::INFINITY);
        }
        let low = w / self.seconds_max(requested);
        let data_seconds_max = seconds_for(shape.data_mb(), self.effective_bandwidth_min(shape, node));
        let compute_seconds_min = self.seconds_min(requested) - data_seconds_max;
        let high = if compute_seconds_min > 0.0 { w / compute_seconds_min } else { f64::INFINITY };
        (low, high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn worked_example_of_the_seed_formulas() {
        // A task of 1 GFLOP-hour (3,600 GFLOP) with 50 MB in and 10 MB out.
        let shape = TaskShape::from_gflop_hours(1.0, 50.0, 10.0);
        assert_eq!(shape.work_gflop, 3600.0);
        // Requested node: 2 GFLOPS, 1 MB/s. T_R = 3600/2 + 60/1 = 1860 s.
        let node = NodeSpeed { cpu_gflops: 2.0, bandwidth_mb_per_s: 1.0 };
        assert!(close(requested_seconds(&shape, &node), 1860.0));
        // Provider: 4 GFLOPS available half the time, 2 MB/s available 60% of the time.
        // T_E = 3600/(4*0.5) + 60/(2*0.6) = 1800 + 50 = 1850 s.
        assert!(close(expected_seconds(&shape, 4.0, 2.0, 0.5, 0.6), 1850.0));
        // pi with the same task as the average: (0.5*900 + 0.6*30) / (900 + 30) = 468/930.
        assert!(close(weighted_availability(0.5, 0.6, 4.0, 2.0, &shape), 468.0 / 930.0));
        // Within the default band [0.75 T_R, T_R] = [1395, 1860].
        let band = CandidateBand::default();
        assert_eq!(band.fit(1850.0, 1850.0, 1860.0), BandFit::Within);
        assert_eq!(band.fit(1861.0, 1861.0, 1860.0), BandFit::TooSlow);
        assert_eq!(band.fit(1390.0, 1390.0, 1860.0), BandFit::TooFast);
        // Cached elements shorten T_E below the band: still within (judged uncached).
        assert_eq!(band.fit(1500.0, 1300.0, 1860.0), BandFit::Within);
    }

    #[test]
    fn degenerate_shapes_and_speeds() {
        let nothing = TaskShape { work_gflop: 0.0, data_in_mb: 0.0, data_out_mb: 0.0 };
        let node = NodeSpeed { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0 };
        assert_eq!(requested_seconds(&nothing, &node), 0.0);
        assert_eq!(expected_seconds(&nothing, 0.0, 0.0, 0.0, 0.0), 0.0);
        let compute = TaskShape { work_gflop: 10.0, data_in_mb: 0.0, data_out_mb: 0.0 };
        assert_eq!(expected_seconds(&compute, 5.0, 0.0, 0.0, 0.0), f64::INFINITY);
        assert_eq!(expected_seconds(&compute, 5.0, 0.0, 0.5, 0.0), 4.0);
        assert_eq!(weighted_availability(0.3, 0.9, 1.0, 1.0, &nothing), 0.6);
        assert_eq!(weighted_availability(0.3, 0.9, 1.0, 1.0, &compute), 0.3);
        assert_eq!(weighted_availability(0.3, 0.9, 0.0, 1.0, &compute), 0.0);
        assert_eq!(weighted_availability(f64::NAN, 0.9, 1.0, 1.0, &compute), 0.0);
        assert_eq!(CandidateBand::default().effective_speed_range(&nothing, &node), (0.0, f64::INFINITY));
        assert!(TaskShape { work_gflop: -1.0, data_in_mb: 0.0, data_out_mb: 0.0 }.validate().is_err());
        assert!(TaskShape { work_gflop: f64::NAN, data_in_mb: 0.0, data_out_mb: 0.0 }.validate().is_err());
        assert!(CandidateBand { faster_fraction_max: 1.0, ..Default::default() }.validate().is_err());
        assert!(CandidateBand { bandwidth_fraction_min: 0.0, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn compute_bound_range_is_the_band_on_speed() {
        // No data: candidates have C a_c in [C_v / (1 + g), C_v / (1 - f)] = [2, 2.666..].
        let shape = TaskShape { work_gflop: 1200.0, data_in_mb: 0.0, data_out_mb: 0.0 };
        let node = NodeSpeed { cpu_gflops: 2.0, bandwidth_mb_per_s: 1.0 };
        let (low, high) = CandidateBand::default().effective_speed_range(&shape, &node);
        assert!(close(low, 2.0) && close(high, 2.0 / 0.75), "{low} {high}");
    }

    proptest! {
        /// The seed's bandwidth equation gives exactly T_E = T_R.
        #[test]
        fn matched_bandwidth_gives_the_requested_time(
            work in 1.0f64..1e5, data in 0.1f64..1e4, cv in 0.1f64..100.0, bv in 0.1f64..100.0, ratio in 1.01f64..10.0,
        ) {
            let shape = TaskShape { work_gflop: work, data_in_mb: data * 0.7, data_out_mb: data * 0.3 };
            let node = NodeSpeed { cpu_gflops: cv, bandwidth_mb_per_s: bv };
            // A CPU faster than requested leaves time for a slower link.
            let s = cv * ratio;
            let b = matched_effective_bandwidth(&shape, &node, s).unwrap();
            let t_e = expected_seconds(&shape, s, b, 1.0, 1.0);
            prop_assert!(close(t_e, requested_seconds(&shape, &node)), "{} vs {}", t_e, requested_seconds(&shape, &node));
            // A CPU too slow to finish even with infinite bandwidth has no matching bandwidth.
            let slow = work / requested_seconds(&shape, &node) * 0.99;
            prop_assert!(matched_effective_bandwidth(&shape, &node, slow).is_none());
        }

        /// Every provider within the band has its effective speed within the index range.
        #[test]
        fn candidates_lie_in_the_effective_speed_range(
            work in 0.1f64..1e5, data_in in 0.0f64..1e3, data_out in 0.0f64..1e2,
            cv in 0.1f64..100.0, bv in 0.1f64..100.0,
            c in 0.01f64..500.0, b in 0.01f64..500.0, ac in 0.0f64..1.0, ab in 0.0f64..1.0,
            f in 0.0f64..0.9, g in 0.0f64..1.0,
        ) {
            let shape = TaskShape { work_gflop: work, data_in_mb: data_in, data_out_mb: data_out };
            let node = NodeSpeed { cpu_gflops: cv, bandwidth_mb_per_s: bv };
            let band = CandidateBand { faster_fraction_max: f, slower_fraction_max: g, bandwidth_fraction_min: 0.25 };
            let t_r = requested_seconds(&shape, &node);
            let t_e = expected_seconds(&shape, c, b, ac, ab);
            let bandwidth_ok = b * ab >= band.effective_bandwidth_min(&shape, &node);
            if bandwidth_ok && band.fit(t_e, t_e, t_r) == BandFit::Within {
                let (low, high) = band.effective_speed_range(&shape, &node);
                let s = c * ac;
                prop_assert!(s >= low * (1.0 - 1e-9) && s <= high * (1.0 + 1e-9), "{} not in [{}, {}]", s, low, high);
            }
        }
    }
}
