//! The full version (P5.4): from a provider's weekly signatures, CPU speed and bandwidth, the
//! probability that it completes a task of given work, data and launch time within a given time
//! (the probability tree of the seed's Figure 8, computed by dynamic programming).
//!
//! The tree: each level is a time step; in each step the provider either works on the task
//! (right branch) or not (left branch); the probabilities of the branches come from the
//! signatures at that time of the week. Paths that have accumulated enough work have finished.
//! Summing over paths level by level is a dynamic programme over (work done, state), of cost
//! `steps x units x 16`.
//!
//! Choices where the seed is vague:
//! - **A task is three phases**: download its input (needs bandwidth), compute (needs CPU),
//!   upload its output (needs bandwidth). Work is counted in *units* of one step of full-speed
//!   progress; rounding the total up to whole units errs on the safe side by under one step.
//! - **Branches are not independent coin flips.** A provider available now is likely to be
//!   available in a minute; independent steps would make a provider with `a_c = 0.6` finish
//!   a task that needs 60% of the window about half the time whatever its habits. Each resource
//!   is a two-state Markov chain whose probability of being available follows the signature
//!   (`p` now, `p'` a step later) and whose persistence `rho` matches the provider's mean
//!   available run length `L`: the transition is the mixture, with weights `rho` and `1 - rho`,
//!   of the comonotone coupling (`P(on' | on) = min(1, p'/p)`, `P(on' | off) = max(0, (p'-p)/(1-p))`:
//!   nobody changes state unless the signature does) and independence (`P(on' | ·) = p'`); both
//!   keep the signature's marginals. With a flat signature this is `P(on' | on) = p + rho (1 - p)`,
//!   whose mean run is `1 / ((1 - rho)(1 - p))`, hence `rho = 1 - 1 / (L (1 - a))` with `L` in
//!   steps and `a` the 7-day average. A provider that leaves every day at 17:00 leaves at 17:00.
//! - **A launched provider is available at launch**: tasks go only to engines in contact that
//!   asked for work.
//! - **Steps**: `T_R / steps_min` seconds but at most `step_seconds_max` (60 s), and at most
//!   `steps_max` (120) steps; a step never shorter than a second. The programme costs
//!   `16 x steps x units` (at most 230,000 multiplications, about 0.2 ms) per candidate, so a
//!   task of eight hours is judged in four-minute steps rather than taking milliseconds.

use serde::{Deserialize, Serialize};

use crate::availability::{AvailabilityRatings, WeeklySignature, interval_of_week};
use crate::timing::{TaskShape, seconds_for};

/// Resolution of the full version's probability tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FullModelConfig {
    pub step_seconds_max: f64,
    pub steps_min: u32,
    pub steps_max: u32,
}

impl Default for FullModelConfig {
    fn default() -> Self {
        FullModelConfig { step_seconds_max: 60.0, steps_min: 60, steps_max: 120 }
    }
}

impl FullModelConfig {
    /// Step length and number of steps to cover `horizon_seconds`.
    pub fn steps_for(&self, horizon_seconds: f64) -> (f64, u32) {
        if !(horizon_seconds > 0.0) || !horizon_seconds.is_finite() {
            return (self.step_seconds_max.max(1.0), 0);
        }
        let steps_min = self.steps_min.max(1) as f64;
        let steps_max = self.steps_max.max(1) as f64;
        let mut step = (horizon_seconds / steps_min).min(self.step_seconds_max);
        if horizon_seconds / step > steps_max {
            step = horizon_seconds / steps_max;
        }
        let step = step.max(1.0);
        (step, (horizon_seconds / step).ceil().min(steps_max.max(steps_min)) as u32)
    }
}

/// What the tree needs of a provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderModel<'a> {
    pub cpu_gflops: f64,
    pub bandwidth_mb_per_s: f64,
    pub signature: &'a WeeklySignature,
    pub ratings: &'a AvailabilityRatings,
}

/// Persistence `rho` of a resource from its mean available run and its average availability.
pub fn persistence(run_minutes_mean: f64, availability: f64, step_seconds: f64) -> f64 {
    if !(run_minutes_mean > 0.0) || !(step_seconds > 0.0) || !availability.is_finite() {
        return 0.0;
    }
    let run_steps = run_minutes_mean * 60.0 / step_seconds;
    let unavailability = (1.0 - availability).max(1e-9);
    (1.0 - 1.0 / (run_steps * unavailability)).clamp(0.0, 0.9999)
}

/// Probabilities of having finished after each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionCurve {
    pub step_seconds: f64,
    /// `done_by_step[k]`: probability of having finished within `(k + 1) * step_seconds`.
    pub done_by_step: Vec<f64>,
}

impl CompletionCurve {
    /// Probability of finishing within `seconds` (rounded down to whole steps, so it errs low).
    pub fn probability_within(&self, seconds: f64) -> f64 {
        if self.done_by_step.is_empty() || !(seconds >= self.step_seconds) {
            return if self.done_by_step.is_empty() && seconds >= 0.0 { 1.0 } else { 0.0 };
        }
        let steps = ((seconds / self.step_seconds) + 1e-9).floor() as usize;
        self.done_by_step[steps.min(self.done_by_step.len()) - 1]
    }

    /// Expected time to completion, the tree's sum of (probability x time) over its terminal
    /// nodes, where paths unfinished at the horizon count as finishing at the horizon (so it
    /// is a lower bound when the curve does not reach 1).
    pub fn expected_seconds(&self) -> f64 {
        let mut expected = 0.0;
        let mut before = 0.0;
        for (k, done) in self.done_by_step.iter().enumerate() {
            expected += (done - before) * (k + 1) as f64 * self.step_seconds;
            before = *done;
        }
        expected + (1.0 - before) * self.done_by_step.len() as f64 * self.step_seconds
    }
}

/// The curve for a task launched at `launch_ms` (Unix milliseconds) on `provider`, over
/// `steps` steps of `step_seconds`.
pub fn completion_curve(
    provider: &ProviderModel,
    shape: &TaskShape,
    launch_ms: u64,
    step_seconds: f64,
    steps: u32,
) -> CompletionCurve {
    let step_seconds = if step_seconds.is_finite() && step_seconds >= 1.0 { step_seconds } else { 1.0 };
    let steps = steps as usize;
    let mut curve = CompletionCurve { step_seconds, done_by_step: Vec::with_capacity(steps) };
    let need_in = seconds_for(shape.data_in_mb, provider.bandwidth_mb_per_s);
    let need_cpu = seconds_for(shape.work_gflop, provider.cpu_gflops);
    let need_out = seconds_for(shape.data_out_mb, provider.bandwidth_mb_per_s);
    let total = need_in + need_cpu + need_out;
    if !total.is_finite() {
        curve.done_by_step.resize(steps, 0.0);
        return curve;
    }
    let units = (total / step_seconds - 1e-9).ceil().max(0.0) as usize;
    if units == 0 {
        curve.done_by_step.resize(steps, 1.0);
        return curve;
    }
    if units > steps {
        curve.done_by_step.resize(steps, 0.0);
        return curve;
    }
    // Which resource each unit of progress needs: bandwidth, then CPU, then bandwidth.
    let needs_cpu: Vec<bool> = (0..units)
        .map(|u| {
            let at = u as f64 * step_seconds;
            at >= need_in && at < need_in + need_cpu
        })
        .collect();
    let rho_cpu = persistence(provider.ratings.cpu_run_minutes_mean, provider.ratings.cpu, step_seconds);
    let rho_bandwidth =
        persistence(provider.ratings.bandwidth_run_minutes_mean, provider.ratings.bandwidth, step_seconds);
    // probability[u][state]: u units done, state bit 0 = CPU available, bit 1 = bandwidth available.
    let mut probability = vec![[0.0f64; 4]; units];
    let mut next = vec![[0.0f64; 4]; units];
    probability[0][3] = 1.0;
    let mut done = 0.0;
    let step_ms = step_seconds * 1000.0;
    for k in 0..steps {
        let interval_at =
            |step: usize| interval_of_week(((launch_ms as f64 + step as f64 * step_ms) / 60_000.0) as u64);
        let (now, then) = (interval_at(k), interval_at(k + 1));
        // Between the comonotone coupling of the two marginals (rho = 1: nobody changes state
        // unless the signature says so) and independence (rho = 0); both keep the marginals.
        let transitions = |p_now: f64, p_next: f64, rho: f64| -> [[f64; 2]; 2] {
            let stay = if p_now > 0.0 { (p_next / p_now).min(1.0) } else { 1.0 };
            let come = if p_now < 1.0 { ((p_next - p_now) / (1.0 - p_now)).max(0.0) } else { 0.0 };
            let stay = rho * stay + (1.0 - rho) * p_next;
            let come = rho * come + (1.0 - rho) * p_next;
            [[1.0 - come, come], [1.0 - stay, stay]]
        };
        let cpu = transitions(provider.signature.cpu(now), provider.signature.cpu(then), rho_cpu);
        let bandwidth =
            transitions(provider.signature.bandwidth(now), provider.signature.bandwidth(then), rho_bandwidth);
        let mut joint = [[0.0f64; 4]; 4];
        for (from, row) in joint.iter_mut().enumerate() {
            for (to, cell) in row.iter_mut().enumerate() {
                *cell = cpu[from & 1][to & 1] * bandwidth[(from >> 1) & 1][(to >> 1) & 1];
            }
        }
        for row in next.iter_mut().take((k + 2).min(units)) {
            *row = [0.0; 4];
        }
        // After k steps at most k units are done.
        for u in 0..(k + 1).min(units) {
            for state in 0..4 {
                let p = probability[u][state];
                if p == 0.0 {
                    continue;
                }
                let available = if needs_cpu[u] { state & 1 != 0 } else { state & 2 != 0 };
                let reached = u + available as usize;
                if reached == units {
                    done += p;
                    continue;
                }
                for (to, weight) in joint[state].iter().enumerate() {
                    next[reached][to] += p * weight;
                }
            }
        }
        std::mem::swap(&mut probability, &mut next);
        curve.done_by_step.push(done.min(1.0));
    }
    curve
}

/// Rows of the seed's profile matrix: for each launch time, the probability of completing
/// within each of `lengths_seconds`.
pub fn profile_matrix(
    provider: &ProviderModel,
    shape: &TaskShape,
    launches_ms: &[u64],
    lengths_seconds: &[f64],
    config: &FullModelConfig,
) -> Vec<Vec<f64>> {
    let horizon = lengths_seconds.iter().copied().filter(|s| s.is_finite()).fold(0.0, f64::max);
    let (step, steps) = config.steps_for(horizon);
    launches_ms
        .iter()
        .map(|launch| {
            let curve = completion_curve(provider, shape, *launch, step, steps);
            lengths_seconds.iter().map(|length| curve.probability_within(*length)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{AvailabilityHistory, MINUTES_PER_WEEK, MinuteState, WEEK_INTERVALS};
    use proptest::prelude::*;

    const MONDAY_MS: u64 = 4 * 24 * 60 * 60_000;

    fn ratings(a: f64, run_minutes: f64) -> AvailabilityRatings {
        AvailabilityRatings {
            cpu: a,
            bandwidth: a,
            window_minutes: 10_080,
            cpu_run_minutes_mean: run_minutes,
            bandwidth_run_minutes_mean: run_minutes,
        }
    }

    fn compute(seconds_at_one_gflops: f64) -> TaskShape {
        TaskShape { work_gflop: seconds_at_one_gflops, data_in_mb: 0.0, data_out_mb: 0.0 }
    }

    #[test]
    fn always_available_finishes_exactly_on_time() {
        let signature = WeeklySignature::constant(1.0, 1.0);
        let r = ratings(1.0, 10_080.0);
        let provider = ProviderModel { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0, signature: &signature, ratings: &r };
        // 10 units of 60 s: done at step 10, not before.
        let curve = completion_curve(&provider, &compute(600.0), MONDAY_MS, 60.0, 20);
        assert_eq!(curve.done_by_step[8], 0.0);
        assert_eq!(curve.done_by_step[9], 1.0);
        assert_eq!(curve.probability_within(599.0), 0.0);
        assert_eq!(curve.probability_within(600.0), 1.0);
        assert!((curve.expected_seconds() - 600.0).abs() < 1e-9);
        // Nothing to do: done at once.
        let nothing = completion_curve(&provider, &compute(0.0), MONDAY_MS, 60.0, 5);
        assert_eq!(nothing.done_by_step, vec![1.0; 5]);
        // Too much to do within the horizon.
        assert_eq!(completion_curve(&provider, &compute(6000.0), MONDAY_MS, 60.0, 5).done_by_step, vec![0.0; 5]);
    }

    #[test]
    fn independent_steps_give_the_binomial_tail() {
        // No persistence (runs of one step), p = 0.5 each step: a task of 2 units within 3 steps.
        // Launch state is available, so step 1 works for sure; then at least 1 success in the
        // next 2 steps: 1 - 0.25 = 0.75. Within 2 steps: 0.5.
        let signature = WeeklySignature::constant(0.5, 1.0);
        let r = AvailabilityRatings {
            cpu: 0.5,
            bandwidth: 1.0,
            window_minutes: 10_080,
            cpu_run_minutes_mean: 0.5,
            bandwidth_run_minutes_mean: 10_080.0,
        };
        let provider = ProviderModel { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0, signature: &signature, ratings: &r };
        assert_eq!(persistence(0.5, 0.5, 60.0), 0.0);
        let curve = completion_curve(&provider, &compute(120.0), MONDAY_MS, 60.0, 3);
        // The signature stores 0.5 as 128/255.
        let p = 128.0 / 255.0;
        assert!((curve.done_by_step[1] - p).abs() < 1e-12, "{curve:?}");
        assert!((curve.done_by_step[2] - (1.0 - (1.0 - p) * (1.0 - p))).abs() < 1e-12, "{curve:?}");
        assert_eq!(curve.done_by_step[0], 0.0);
    }

    #[test]
    fn persistence_helps_a_provider_that_is_present() {
        let signature = WeeklySignature::constant(0.5, 0.5);
        let shape = compute(30.0 * 60.0); // 30 minutes of CPU at 1 GFLOPS
        let short = ratings(0.5, 1.0);
        let long = ratings(0.5, 240.0);
        let within = |r: &AvailabilityRatings| {
            let provider =
                ProviderModel { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0, signature: &signature, ratings: r };
            completion_curve(&provider, &shape, MONDAY_MS, 60.0, 45).probability_within(45.0 * 60.0)
        };
        // Needs 30 of 45 minutes: unlikely with independent minutes at p = 0.5, likely when
        // available stretches last four hours on average.
        assert!(within(&short) < 0.05, "{}", within(&short));
        assert!(within(&long) > 0.8, "{}", within(&long));
    }

    #[test]
    fn the_launch_time_matters_for_a_weekday_provider() {
        // Learnt from four weeks: available Monday-Friday 09:00-17:00 UTC.
        let mut history = AvailabilityHistory::new();
        let monday = MONDAY_MS / 60_000;
        for week in 0..4 {
            for day in 0..5 {
                let start = monday + week * MINUTES_PER_WEEK + day * 1440;
                history.record(start + 9 * 60, start + 17 * 60, MinuteState::BOTH).unwrap();
            }
        }
        history.advance_to(monday + 4 * MINUTES_PER_WEEK).unwrap();
        let r = history.ratings().unwrap();
        let provider =
            ProviderModel { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0, signature: history.signature(), ratings: &r };
        let shape = compute(2.0 * 3600.0);
        let config = FullModelConfig::default();
        let hour = 3_600_000;
        let launches = [MONDAY_MS + 10 * hour, MONDAY_MS + 16 * hour];
        let matrix = profile_matrix(&provider, &shape, &launches, &[2.0 * 3600.0, 3.0 * 3600.0], &config);
        // Launched Monday 10:00: two hours of work finish by noon.
        assert!(matrix[0][0] > 0.95, "{matrix:?}");
        // Launched Monday 16:00: the provider leaves at 17:00; not done within 3 hours.
        assert!(matrix[1][1] < 0.05, "{matrix:?}");
        assert_eq!(WEEK_INTERVALS, 672);
    }

    #[test]
    fn steps_adapt_to_the_horizon() {
        let config = FullModelConfig::default();
        assert_eq!(config.steps_for(1800.0), (30.0, 60));
        assert_eq!(config.steps_for(7200.0), (60.0, 120));
        assert_eq!(config.steps_for(86_400.0), (720.0, 120));
        assert_eq!(config.steps_for(10.0), (1.0, 10));
        assert_eq!(config.steps_for(f64::NAN).1, 0);
    }

    proptest! {
        /// The curve is a distribution function: within [0, 1], never decreasing; and more
        /// availability never lowers it.
        #[test]
        fn curves_are_monotone(
            p in 0.0f64..1.0, extra in 0.0f64..0.5, run in 0.1f64..600.0, work in 0.0f64..5000.0,
            data_in in 0.0f64..100.0, data_out in 0.0f64..100.0, launch in 0u64..(7 * 24 * 60 * 60_000),
        ) {
            let shape = TaskShape { work_gflop: work, data_in_mb: data_in, data_out_mb: data_out };
            let mut previous_curve: Option<Vec<f64>> = None;
            for p in [p, (p + extra).min(1.0)] {
                // The signature stores p to 1/255; use the same value as the average.
                let p = (p * 255.0).round() / 255.0;
                let signature = WeeklySignature::constant(p, p);
                let r = ratings(p, run);
                let provider = ProviderModel { cpu_gflops: 2.0, bandwidth_mb_per_s: 1.0, signature: &signature, ratings: &r };
                let curve = completion_curve(&provider, &shape, launch, 30.0, 120);
                let mut before = 0.0;
                for done in &curve.done_by_step {
                    prop_assert!((0.0..=1.0 + 1e-12).contains(done));
                    prop_assert!(*done + 1e-12 >= before);
                    before = *done;
                }
                if let Some(previous) = &previous_curve {
                    for (a, b) in previous.iter().zip(&curve.done_by_step) {
                        prop_assert!(*b + 1e-9 >= *a, "more availability finished less: {} < {}", b, a);
                    }
                }
                previous_curve = Some(curve.done_by_step);
            }
        }
    }
}
