//! Sarmenta's credibility (Sabotage-tolerance mechanisms for volunteer computing systems, 2002).
//!
//! **Provider credibility.** A fraction at most `f` of providers are saboteurs; a saboteur
//! returns a bad result with probability `s` on each task, and cannot tell a spot check from a
//! real task, so it survives `k` spot checks with probability `(1 - s)^k`; one failure
//! quarantines it (Sarmenta's blacklisting). By Bayes, the probability that a result of a
//! provider that has passed `k` spot checks is bad is at most
//! `f (1 - s)^k s / ((1 - f) + f (1 - s)^k) <= f / (1 - f) * s (1 - s)^k`, and
//! `max_s s (1 - s)^k = k^k / (k + 1)^(k + 1) <= 1 / (e k)`, so whatever `s` the saboteurs pick:
//!
//! ```text
//! credibility(k = 0) = 1 - f
//! credibility(k >= 1) = 1 - f / ((1 - f) k e)
//! ```
//!
//! `k` counts the spot checks passed since the last invalid result (a result that differed from
//! an accepted one): being on the losing side of a vote starts the provider over, which costs an
//! honest provider some extra replicas and a saboteur the credibility it built. The bound holds
//! for any rate `q` of spot checks (it depends on `k` only), so new providers may be checked
//! more often to build credibility faster. A saboteur that comes back under a new identity
//! starts at `k = 0`.
//!
//! **Result credibility.** Results of one task fall into groups that agree; saboteurs collude,
//! so all bad results may agree, and at most one group is right. With `P_good(G) = prod c_w`
//! and `P_bad(G) = prod (1 - c_w)` over the providers of a group, Sarmenta's
//!
//! ```text
//! Cr(G_a) = P_good(G_a) prod_{i != a} P_bad(G_i)
//!           / ( prod_j P_bad(G_j) + sum_j P_good(G_j) prod_{i != j} P_bad(G_i) )
//! ```
//!
//! divided through by `prod_j P_bad(G_j)` is `odds_a / (1 + sum_j odds_j)` with
//! `odds_j = prod_{w in G_j} c_w / (1 - c_w)`: computed here in log-odds, so that dozens of
//! very credible providers neither overflow nor round to 1.

use serde::{Deserialize, Serialize};

use crate::error::check_open;
use crate::{AssuranceError, ProviderRecord};

/// Log-odds are clamped to this magnitude: a credibility of exactly 1 (or 0) is certainty,
/// which no evidence can contradict; 700 keeps the exponentials finite.
const LOG_ODDS_LIMIT: f64 = 700.0;

/// The server's assumption about its providers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredibilityModel {
    /// Sarmenta's `f`: an upper bound on the fraction of providers that are saboteurs.
    pub assumed_saboteur_fraction: f64,
}

impl Default for CredibilityModel {
    fn default() -> CredibilityModel {
        CredibilityModel { assumed_saboteur_fraction: 0.2 }
    }
}

impl CredibilityModel {
    pub fn new(assumed_saboteur_fraction: f64) -> Result<CredibilityModel, AssuranceError> {
        let model = CredibilityModel { assumed_saboteur_fraction };
        model.validate()?;
        Ok(model)
    }

    pub fn validate(&self) -> Result<(), AssuranceError> {
        check_open(
            "assumed_saboteur_fraction",
            self.assumed_saboteur_fraction,
            0.0,
            1.0,
            "must be a fraction in (0, 1), e.g. 0.2",
        )
    }

    /// Credibility of a provider that has passed `k` spot checks (since its last invalid result).
    pub fn credibility_after_spot_checks(&self, k: u64) -> f64 {
        let f = self.assumed_saboteur_fraction;
        let new_provider = 1.0 - f;
        if k == 0 {
            return new_provider;
        }
        let bound = 1.0 - f / ((1.0 - f) * k as f64 * std::f64::consts::E);
        // For f > 1 - 1/e the bound is below 1 - f for small k; a spot check never lowers it.
        bound.max(new_provider)
    }

    /// A provider's credibility: 0 when quarantined (its results count for nothing).
    pub fn provider_credibility(&self, record: &ProviderRecord) -> f64 {
        if record.is_quarantined() {
            0.0
        } else {
            self.credibility_after_spot_checks(record.spot_checks_passed_since_invalid)
        }
    }

    /// Credibility of a provider nobody knows yet: `1 - f`.
    pub fn new_provider_credibility(&self) -> f64 {
        1.0 - self.assumed_saboteur_fraction
    }

    /// Spot checks a provider must pass for its credibility to reach `target` on its own.
    pub fn spot_checks_needed(&self, target: f64) -> Result<u64, AssuranceError> {
        check_open("target", target, 0.0, 1.0, "must be a credibility in (0, 1)")?;
        let f = self.assumed_saboteur_fraction;
        if target <= 1.0 - f {
            return Ok(0);
        }
        let k = f / ((1.0 - f) * std::f64::consts::E * (1.0 - target));
        Ok(k.ceil().min(u64::MAX as f64) as u64)
    }
}

/// `ln(c / (1 - c))`, clamped so that 0 and 1 stay finite.
pub fn log_odds(credibility: f64) -> f64 {
    // NaN lands here too: no evidence of credibility.
    if credibility.is_nan() || credibility <= 0.0 {
        return -LOG_ODDS_LIMIT;
    }
    if credibility >= 1.0 {
        return LOG_ODDS_LIMIT;
    }
    (credibility.ln() - (-credibility).ln_1p()).clamp(-LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)
}

/// Log-odds that a group whose providers have these credibilities is right, alone.
pub fn group_log_odds(credibilities: impl IntoIterator<Item = f64>) -> f64 {
    credibilities.into_iter().map(log_odds).sum()
}

/// `ln(1 + sum_j exp(x_j))`, without overflow.
fn log_one_plus_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(0.0f64, f64::max);
    let sum = (-max).exp() + values.map(|x| (x - max).exp()).sum::<f64>();
    max + sum.ln()
}

/// The credibility of each group of agreeing results, given each group's log-odds
/// (`group_log_odds`): `odds_a / (1 + sum_j odds_j)`.
pub fn result_credibilities(group_log_odds: &[f64]) -> Vec<f64> {
    let normaliser = log_one_plus_sum_exp(group_log_odds.iter().copied());
    group_log_odds.iter().map(|&log_odds| (log_odds - normaliser).exp().clamp(0.0, 1.0)).collect()
}

/// The log-odds form of "credibility of group `a` >= target": `log_odds_a - ln(1 + sum of the
/// other groups' odds)`, compared with `ln(target / (1 - target))`. Exact where the
/// credibilities themselves would round to 1.
pub fn result_margin(group_log_odds: &[f64], a: usize) -> f64 {
    let others = group_log_odds.iter().enumerate().filter(|&(j, _)| j != a).map(|(_, &x)| x);
    group_log_odds.get(a).copied().unwrap_or(f64::NEG_INFINITY) - log_one_plus_sum_exp(others)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{QuarantineRule, SpotCheckOutcome};

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn provider_credibility_by_hand() {
        let model = CredibilityModel::new(0.2).unwrap();
        // k = 0: 1 - f.
        assert_eq!(model.credibility_after_spot_checks(0), 0.8);
        // k = 1: 1 - 0.2 / (0.8 * 1 * 2.718281828) = 1 - 0.091970 = 0.908030.
        assert!(close(model.credibility_after_spot_checks(1), 0.908030, 1e-6));
        // k = 10: 1 - 0.25 / 27.18281828 = 0.990803.
        assert!(close(model.credibility_after_spot_checks(10), 0.990803, 1e-6));
        // k = 920: 1 - 0.25 / 2500.8193 = 0.99990003: one such provider alone reaches 0.9999.
        assert!(model.credibility_after_spot_checks(920) >= 0.9999);
        assert!(model.credibility_after_spot_checks(919) < 0.9999);
        assert_eq!(model.spot_checks_needed(0.9999).unwrap(), 920);
        assert_eq!(model.spot_checks_needed(0.5).unwrap(), 0);
        // A quarantined provider counts for nothing.
        let mut record = ProviderRecord::default();
        for _ in 0..10 {
            record.apply_spot_check(SpotCheckOutcome::Passed, &QuarantineRule::default());
        }
        assert!(close(model.provider_credibility(&record), 0.990803, 1e-6));
        record.quarantine_by_operator();
        assert_eq!(model.provider_credibility(&record), 0.0);
    }

    #[test]
    fn result_credibility_by_hand() {
        // Two new providers agree (0.8 each): odds 4 * 4 = 16, credibility 16 / 17 = 0.941176,
        // Sarmenta's 0.64 / (0.64 + 0.04).
        let pair = group_log_odds([0.8, 0.8]);
        assert!(close(result_credibilities(&[pair])[0], 16.0 / 17.0, 1e-12));
        // Against a third provider of credibility 0.9 (odds 9) that differs:
        // 16 / (1 + 16 + 9) = 0.615385 and 9 / 26 = 0.346154.
        let single = group_log_odds([0.9]);
        let credibilities = result_credibilities(&[pair, single]);
        assert!(close(credibilities[0], 16.0 / 26.0, 1e-12) && close(credibilities[1], 9.0 / 26.0, 1e-12));
        // One provider alone keeps its own credibility.
        assert!(close(result_credibilities(&[group_log_odds([0.8])])[0], 0.8, 1e-12));
        // Two providers that passed 10 spot checks each (0.990803): odds 107.73^2 = 11606,
        // credibility 0.999914.
        let model = CredibilityModel::default();
        let c = model.credibility_after_spot_checks(10);
        let two = result_credibilities(&[group_log_odds([c, c])])[0];
        assert!(close(two, 0.999914, 1e-6), "{two}");
        // The margin form agrees with the ratio form.
        let target: f64 = 0.9999;
        assert!(result_margin(&[group_log_odds([c, c])], 0) >= (target / (1.0 - target)).ln());
        assert!(result_margin(&[pair, single], 0) < (target / (1.0 - target)).ln());
    }

    #[test]
    fn extreme_credibilities_stay_finite() {
        let many = group_log_odds(std::iter::repeat_n(1.0 - 1e-12, 64));
        let credibilities = result_credibilities(&[many, group_log_odds([0.0]), group_log_odds([1.0])]);
        assert!(credibilities.iter().all(|c| c.is_finite() && (0.0..=1.0).contains(c)), "{credibilities:?}");
        assert_eq!(log_odds(f64::NAN), -LOG_ODDS_LIMIT);
        assert!(CredibilityModel::new(f64::NAN).is_err());
        assert!(CredibilityModel::new(0.0).is_err());
        assert!(CredibilityModel::new(1.0).is_err());
        // f above 1 - 1/e: a spot check never lowers credibility below that of a new provider.
        let pessimist = CredibilityModel::new(0.9).unwrap();
        assert!(pessimist.credibility_after_spot_checks(1) >= pessimist.new_provider_credibility());
    }
}
