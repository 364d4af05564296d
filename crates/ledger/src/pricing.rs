//! The seed's pricing and payment formulas (P7.2-P7.5), each constant configurable.
//!
//! Units: power is the engines' benchmark rating in GFLOPS. The seed prices the baseline in
//! "MHz-hours" and full-version pay in "GHz-hours"; both are read here as hours of one unit of
//! power rating (GFLOP-hours), the only power unit the platform measures. Data is in decimal GB
//! (10^9 bytes). Money is in currency units as `f64` inside a formula and becomes `Micros` by
//! `Micros::from_f64_units` (nearest micro-unit, halves away from zero), once per transfer.

use serde::{Deserialize, Serialize};

use crate::{LedgerError, Micros};

pub const MS_PER_HOUR: u64 = 3_600_000;
pub const BYTES_PER_GB: f64 = 1e9;

/// Which provider payment formula is used (P7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderPayModel {
    /// k C ln(1-pi)/ln(1-R) per hour, from launch to conclusion of the task on the engine.
    Simplified,
    /// T ln(1-pi)/ln(1-r) per GFLOP-hour, from launch until the task's first result (or its
    /// cancellation).
    Full,
}

/// Every constant of the formulas. Defaults: the seed's where it gives them (a, b, c, 15
/// minutes); the others are ours, marked "chosen".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    /// a in a + b P^c: price per hour of a running cluster whatever its power. Seed: 4.5.
    pub computation_base_per_hour: f64,
    /// b in a + b P^c. Seed: 0.296.
    pub computation_coefficient_per_hour: f64,
    /// c in a + b P^c. Seed: 1.155.
    pub computation_exponent: f64,
    /// Length of a billing increment. Seed: 15 minutes. Increments are aligned to the Unix
    /// epoch (quarter hours of UTC).
    pub increment_ms: u64,
    /// g: price of moving one GB over one leg (P7.3). Chosen: 0.05.
    pub data_price_per_gb: f64,
    /// k: baseline price per GFLOP-hour, what an ideal (always available) machine is paid
    /// (P7.4, simplified P7.5). Chosen: 0.25.
    pub baseline_price_per_gflop_hour: f64,
    /// R: baseline reliability; clients may ask for more, never less. Chosen: 0.9.
    pub baseline_reliability: f64,
    /// pi in the data transfer charge: the average provider reliability. Chosen: 0.8; the
    /// server should update it from measured availabilities.
    pub provider_reliability_average: f64,
    /// L: an engine's task is concluded at the latest this long after its cancellation, if the
    /// engine never acknowledges it. Chosen: one hour.
    pub conclusion_after_cancellation_ms: u64,
    pub provider_pay_model: ProviderPayModel,
    /// T: full-version pay per GFLOP-hour. Chosen: 0.25 (equal to k).
    pub full_pay_per_gflop_hour: f64,
    /// r in the full-version pay: the target reliability. Chosen: 0.9 (equal to R).
    pub full_pay_target_reliability: f64,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            computation_base_per_hour: 4.5,
            computation_coefficient_per_hour: 0.296,
            computation_exponent: 1.155,
            increment_ms: 15 * 60 * 1000,
            data_price_per_gb: 0.05,
            baseline_price_per_gflop_hour: 0.25,
            baseline_reliability: 0.9,
            provider_reliability_average: 0.8,
            conclusion_after_cancellation_ms: MS_PER_HOUR,
            provider_pay_model: ProviderPayModel::Simplified,
            full_pay_per_gflop_hour: 0.25,
            full_pay_target_reliability: 0.9,
        }
    }
}

/// A rough cost for a job, to size its reservation when it has no maximum cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Virtual nodes (tasks) running at once.
    pub nodes: f64,
    pub node_power_gflops: f64,
    pub hours: f64,
    /// Requested reliability; `None` for the baseline.
    pub reliability: Option<f64>,
    pub data_in_gb: f64,
    pub data_out_gb: f64,
}

fn invalid(field: &'static str, value: f64, reason: &'static str) -> LedgerError {
    LedgerError::InvalidInput { field, value: value.to_string(), reason }
}

fn non_negative(field: &'static str, value: f64) -> Result<f64, LedgerError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(invalid(field, value, "must be a finite number, zero or more"))
    }
}

/// A probability in [0, 1), or (0, 1) when it divides (ln(1 - 0) = 0).
fn probability(field: &'static str, value: f64, zero_allowed: bool) -> Result<f64, LedgerError> {
    let low_ok = if zero_allowed { value >= 0.0 } else { value > 0.0 };
    if value.is_finite() && low_ok && value < 1.0 {
        Ok(value)
    } else if zero_allowed {
        Err(invalid(field, value, "must be a probability in [0, 1)"))
    } else {
        Err(invalid(field, value, "must be a probability in (0, 1): it divides, and ln(1 - 0) is zero"))
    }
}

impl PricingConfig {
    /// Check every constant; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), LedgerError> {
        non_negative("computation_base_per_hour", self.computation_base_per_hour)?;
        non_negative("computation_coefficient_per_hour", self.computation_coefficient_per_hour)?;
        if !(self.computation_exponent.is_finite() && self.computation_exponent > 0.0) {
            return Err(invalid("computation_exponent", self.computation_exponent, "must be a positive finite number"));
        }
        if self.increment_ms == 0 || self.increment_ms > 24 * MS_PER_HOUR {
            return Err(LedgerError::InvalidInput {
                field: "increment_ms",
                value: self.increment_ms.to_string(),
                reason: "must be between 1 ms and one day",
            });
        }
        non_negative("data_price_per_gb", self.data_price_per_gb)?;
        non_negative("baseline_price_per_gflop_hour", self.baseline_price_per_gflop_hour)?;
        probability("baseline_reliability", self.baseline_reliability, false)?;
        probability("provider_reliability_average", self.provider_reliability_average, false)?;
        non_negative("full_pay_per_gflop_hour", self.full_pay_per_gflop_hour)?;
        probability("full_pay_target_reliability", self.full_pay_target_reliability, false)?;
        Ok(())
    }

    /// P7.2: price per hour for computation = a + b P^c, P the power running through the
    /// client's virtual cluster (GFLOPS).
    pub fn computation_price_per_hour(&self, power_gflops: f64) -> Result<f64, LedgerError> {
        let power = non_negative("power_gflops", power_gflops)?;
        Ok(self.computation_base_per_hour
            + self.computation_coefficient_per_hour * power.powf(self.computation_exponent))
    }

    /// ln(1 - r) / ln(1 - pi): how many engines a virtual node of reliability `r` needs when
    /// each has reliability `pi` (the N of r = 1 - (1 - pi)^N).
    pub fn redundancy(requested_reliability: f64, provider_reliability: f64) -> Result<f64, LedgerError> {
        let r = probability("requested reliability r", requested_reliability, true)?;
        let pi = probability("provider reliability pi", provider_reliability, false)?;
        Ok((1.0 - r).ln() / (1.0 - pi).ln())
    }

    /// P7.3: total cost of data transfer = g (d_i + d_o) (ln(1-r)/ln(1-pi) + 1), with pi the
    /// configured average provider reliability: one leg from the client plus one per engine.
    pub fn data_transfer_charge(
        &self,
        data_in_gb: f64,
        data_out_gb: f64,
        requested_reliability: f64,
    ) -> Result<f64, LedgerError> {
        self.data_transfer_charge_with(
            data_in_gb,
            data_out_gb,
            requested_reliability,
            self.provider_reliability_average,
        )
    }

    /// P7.3 with an explicit provider reliability pi.
    pub fn data_transfer_charge_with(
        &self,
        data_in_gb: f64,
        data_out_gb: f64,
        requested_reliability: f64,
        provider_reliability: f64,
    ) -> Result<f64, LedgerError> {
        let data = non_negative("data_in_gb", data_in_gb)? + non_negative("data_out_gb", data_out_gb)?;
        let legs = Self::redundancy(requested_reliability, provider_reliability)? + 1.0;
        Ok(self.data_price_per_gb * data * legs)
    }

    /// The factor ln(1-r)/ln(1-R) - 1 of the premium; zero at the baseline. A reliability
    /// below the baseline is refused (the seed allows only more).
    pub fn reliability_premium_factor(&self, requested_reliability: f64) -> Result<f64, LedgerError> {
        let r = probability("requested reliability r", requested_reliability, true)?;
        if r < self.baseline_reliability {
            return Err(invalid(
                "requested reliability r",
                r,
                "is below the baseline reliability R; ask for R or more",
            ));
        }
        Ok(Self::redundancy(r, self.baseline_reliability)? - 1.0)
    }

    /// P7.4: price per hour for premium reliability = k C N (ln(1-r)/ln(1-R) - 1), C the power
    /// of each virtual node, N the number of nodes running.
    pub fn reliability_premium_per_hour(
        &self,
        node_power_gflops: f64,
        nodes: f64,
        requested_reliability: f64,
    ) -> Result<f64, LedgerError> {
        let power = non_negative("node_power_gflops", node_power_gflops)? * non_negative("nodes", nodes)?;
        Ok(self.baseline_price_per_gflop_hour * power * self.reliability_premium_factor(requested_reliability)?)
    }

    /// P7.5 simplified: k C ln(1-pi)/ln(1-R) per hour for an engine of power C and weighted
    /// average availability pi.
    pub fn provider_pay_per_hour(&self, power_gflops: f64, availability: f64) -> Result<f64, LedgerError> {
        let power = non_negative("power_gflops", power_gflops)?;
        let pi = probability("availability pi", availability, true)?;
        Ok(self.baseline_price_per_gflop_hour * power * (1.0 - pi).ln() / (1.0 - self.baseline_reliability).ln())
    }

    /// P7.5 full: T ln(1-pi)/ln(1-r) per GFLOP-hour for an engine of availability pi.
    pub fn provider_pay_per_gflop_hour(&self, availability: f64) -> Result<f64, LedgerError> {
        let pi = probability("availability pi", availability, true)?;
        Ok(self.full_pay_per_gflop_hour * (1.0 - pi).ln() / (1.0 - self.full_pay_target_reliability).ln())
    }

    /// A provider's pay for an engine of `power_gflops` and `availability` that worked
    /// `worked_ms`, by the configured model, in micro-units.
    pub fn provider_pay(&self, power_gflops: f64, availability: f64, worked_ms: u64) -> Result<Micros, LedgerError> {
        let hours = worked_ms as f64 / MS_PER_HOUR as f64;
        let amount = match self.provider_pay_model {
            ProviderPayModel::Simplified => self.provider_pay_per_hour(power_gflops, availability)? * hours,
            ProviderPayModel::Full => {
                self.provider_pay_per_gflop_hour(availability)? * non_negative("power_gflops", power_gflops)? * hours
            }
        };
        Micros::from_f64_units(amount, "provider pay")
    }

    /// An estimate of a job's cost: computation at constant power for whole increments, the
    /// premium, and the data charge. For sizing a reservation, not for billing.
    pub fn estimate_cost(&self, estimate: &CostEstimate) -> Result<Micros, LedgerError> {
        let hours = non_negative("hours", estimate.hours)?;
        let increment_hours = self.increment_ms as f64 / MS_PER_HOUR as f64;
        let increments = (hours / increment_hours).ceil();
        let power =
            non_negative("nodes", estimate.nodes)? * non_negative("node_power_gflops", estimate.node_power_gflops)?;
        let reliability = estimate.reliability.unwrap_or(self.baseline_reliability);
        let per_hour = if power > 0.0 {
            self.computation_price_per_hour(power)?
                + self.reliability_premium_per_hour(estimate.node_power_gflops, estimate.nodes, reliability)?
        } else {
            0.0
        };
        let data = self.data_transfer_charge(estimate.data_in_gb, estimate.data_out_gb, reliability)?;
        Micros::from_f64_units(per_hour * increments * increment_hours + data, "estimated cost")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let config = PricingConfig::default();
        config.validate().unwrap();
        assert_eq!(
            (config.computation_base_per_hour, config.computation_coefficient_per_hour, config.computation_exponent),
            (4.5, 0.296, 1.155)
        );
        assert_eq!(config.increment_ms, 900_000);
    }

    #[test]
    fn computation_price_worked_examples() {
        let config = PricingConfig::default();
        // P = 0: only a.
        close(config.computation_price_per_hour(0.0).unwrap(), 4.5);
        // P = 1: 1^1.155 = 1, so 4.5 + 0.296 = 4.796.
        close(config.computation_price_per_hour(1.0).unwrap(), 4.796);
        // P = 10: 10^1.155 = e^(1.155 * 2.302585) = e^2.659486 = 14.28894; 0.296 * 14.28894 = 4.22953;
        // 4.5 + 4.22953 = 8.72953 per hour, 2.18238 per 15-minute increment.
        close(config.computation_price_per_hour(10.0).unwrap(), 8.729526117192865);
        // P = 100: 100^1.155 = 203.1602; 0.296 * 203.1602 = 60.13544; + 4.5 = 64.93544.
        close(config.computation_price_per_hour(100.0).unwrap(), 64.93544316221806);
    }

    #[test]
    fn data_transfer_worked_example() {
        let config = PricingConfig::default();
        // g = 0.05, 2 GB in + 1 GB out, r = 0.99, pi = 0.9: ln(0.01)/ln(0.1) = 2 engines per node,
        // 3 legs: 0.05 * 3 * 3 = 0.45.
        close(config.data_transfer_charge_with(2.0, 1.0, 0.99, 0.9).unwrap(), 0.45);
        // r = 0: no engine leg is needed by the formula; only the client's leg: 0.05 * 3 = 0.15.
        close(config.data_transfer_charge_with(2.0, 1.0, 0.0, 0.9).unwrap(), 0.15);
        // Default pi = 0.8, r = R = 0.9: ln(0.1)/ln(0.2) = 1.430677 engines, 2.430677 legs.
        close(config.data_transfer_charge(1.0, 0.0, 0.9).unwrap(), 0.05 * (1.0 + 0.1f64.ln() / 0.2f64.ln()));
    }

    #[test]
    fn reliability_premium_worked_example() {
        let config = PricingConfig::default();
        // k = 0.25, C = 4 GFLOPS, N = 10 nodes, r = 0.99, R = 0.9: ln(0.01)/ln(0.1) - 1 = 1, so
        // 0.25 * 4 * 10 * 1 = 10 per hour.
        close(config.reliability_premium_per_hour(4.0, 10.0, 0.99).unwrap(), 10.0);
        // At the baseline there is no premium.
        close(config.reliability_premium_per_hour(4.0, 10.0, 0.9).unwrap(), 0.0);
        // r = 0.999: ln(0.001)/ln(0.1) - 1 = 2, so 20 per hour.
        close(config.reliability_premium_per_hour(4.0, 10.0, 0.999).unwrap(), 20.0);
    }

    #[test]
    fn provider_pay_worked_examples() {
        let config = PricingConfig::default();
        // Simplified, k = 0.25, C = 4, R = 0.9. pi = R: 0.25 * 4 = 1 per hour.
        close(config.provider_pay_per_hour(4.0, 0.9).unwrap(), 1.0);
        // pi = 0.99: ln(0.01)/ln(0.1) = 2, so 2 per hour: a more available engine earns more.
        close(config.provider_pay_per_hour(4.0, 0.99).unwrap(), 2.0);
        // pi = 0.5: ln(0.5)/ln(0.1) = 0.30103, so 0.30103 per hour.
        close(config.provider_pay_per_hour(4.0, 0.5).unwrap(), 0.5f64.ln() / 0.1f64.ln());
        // Never available: nothing.
        close(config.provider_pay_per_hour(4.0, 0.0).unwrap(), 0.0);
        // 90 minutes at 2 per hour: 3.000000 exactly.
        assert_eq!(config.provider_pay(4.0, 0.99, 90 * 60 * 1000).unwrap(), Micros::new(3_000_000));

        // Full, T = 0.25, r = 0.9, pi = 0.99: 0.25 * 2 = 0.5 per GFLOP-hour; 4 GFLOPS for 90
        // minutes is 6 GFLOP-hours: 3.000000.
        close(config.provider_pay_per_gflop_hour(0.99).unwrap(), 0.5);
        let full = PricingConfig { provider_pay_model: ProviderPayModel::Full, ..PricingConfig::default() };
        assert_eq!(full.provider_pay(4.0, 0.99, 90 * 60 * 1000).unwrap(), Micros::new(3_000_000));
    }

    #[test]
    fn invalid_inputs_are_errors_not_panics() {
        let config = PricingConfig::default();
        assert!(config.computation_price_per_hour(-1.0).is_err());
        assert!(config.computation_price_per_hour(f64::NAN).is_err());
        assert!(config.computation_price_per_hour(f64::INFINITY).is_err());
        assert!(config.data_transfer_charge_with(1.0, 1.0, 1.0, 0.9).is_err(), "r = 1 needs infinite copies");
        assert!(config.data_transfer_charge_with(1.0, 1.0, -0.1, 0.9).is_err());
        assert!(config.data_transfer_charge_with(1.0, 1.0, 0.9, 0.0).is_err(), "pi = 0 divides by zero");
        assert!(config.data_transfer_charge_with(1.0, 1.0, 0.9, 1.0).is_err());
        assert!(config.data_transfer_charge_with(f64::NAN, 1.0, 0.9, 0.5).is_err());
        assert!(config.data_transfer_charge_with(1.0, -1.0, 0.9, 0.5).is_err());
        let below = config.reliability_premium_per_hour(1.0, 1.0, 0.5).unwrap_err();
        assert!(below.to_string().contains("below the baseline"), "{below}");
        assert!(config.provider_pay_per_hour(1.0, 1.0).is_err());
        assert!(config.provider_pay_per_hour(1.0, f64::NAN).is_err());
        assert!(config.provider_pay_per_gflop_hour(-0.5).is_err());
        let broken = PricingConfig { baseline_reliability: 0.0, ..PricingConfig::default() };
        let error = broken.validate().unwrap_err();
        assert!(error.to_string().contains("baseline_reliability"), "{error}");
        assert!(PricingConfig { increment_ms: 0, ..PricingConfig::default() }.validate().is_err());
        assert!(PricingConfig { computation_exponent: f64::NAN, ..PricingConfig::default() }.validate().is_err());
    }

    #[test]
    fn an_estimate_counts_whole_increments() {
        let config = PricingConfig::default();
        // 10 nodes of 1 GFLOPS at the baseline for 20 minutes: 2 increments of 15 minutes at
        // 8.729526 per hour = 4.364763, no premium, no data.
        let estimate = CostEstimate {
            nodes: 10.0,
            node_power_gflops: 1.0,
            hours: 1.0 / 3.0,
            reliability: None,
            data_in_gb: 0.0,
            data_out_gb: 0.0,
        };
        assert_eq!(config.estimate_cost(&estimate).unwrap(), Micros::new(4_364_763));
    }

    #[test]
    fn config_reads_from_json_with_defaults_for_missing_fields() {
        let config: PricingConfig =
            serde_json::from_str(r#"{"computation_base_per_hour": 3.0, "provider_pay_model": "full"}"#).unwrap();
        assert_eq!(config.computation_base_per_hour, 3.0);
        assert_eq!(config.provider_pay_model, ProviderPayModel::Full);
        assert_eq!(config.computation_exponent, 1.155);
        assert!(serde_json::from_str::<PricingConfig>(r#"{"nope": 1}"#).is_err());
    }
}
