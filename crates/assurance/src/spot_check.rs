//! Spot checks (P6.2): the server sometimes gives a provider a test task whose answer it knows,
//! indistinguishable from a real one (the server picks which and makes it look like any other
//! assignment); this module decides when, and judges the answer.

use serde::{Deserialize, Serialize};

use crate::error::check_closed;
use crate::{AssuranceError, Comparison, ProviderRecord, ResultDigest, SpotCheckOutcome};
use idlegrid_random::RandomSource;

/// How often providers get test tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpotCheckPolicy {
    /// Probability that an assignment is a test task: Sarmenta's `q`. Zero turns spot checks off.
    pub rate: f64,
    /// The probability while the provider has passed fewer than `new_provider_checks` spot
    /// checks since its last reset. Credibility depends on the number of checks passed, not on
    /// the rate, so checking newcomers more often makes them useful sooner, and exposes a
    /// saboteur that comes back under a new identity sooner.
    pub new_provider_rate: f64,
    pub new_provider_checks: u32,
}

impl Default for SpotCheckPolicy {
    fn default() -> SpotCheckPolicy {
        SpotCheckPolicy { rate: 0.05, new_provider_rate: 0.25, new_provider_checks: 10 }
    }
}

/// What the next assignment to a provider should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextAssignment {
    RealTask,
    /// A test task with a known answer; judge the answer with `judge_spot_check` (or
    /// `SpotCheckOutcome::from_comparison` with the job's validator), then
    /// `ProviderRecord::apply_spot_check`.
    SpotCheck,
}

impl SpotCheckPolicy {
    /// No spot checks at all.
    pub fn off() -> SpotCheckPolicy {
        SpotCheckPolicy { rate: 0.0, new_provider_rate: 0.0, new_provider_checks: 0 }
    }

    pub fn validate(&self) -> Result<(), AssuranceError> {
        check_closed("rate", self.rate, 0.0, 1.0, "must be a probability in [0, 1]")?;
        check_closed("new_provider_rate", self.new_provider_rate, 0.0, 1.0, "must be a probability in [0, 1]")
    }

    /// The probability that this provider's next assignment is a test task.
    pub fn rate_for(&self, record: &ProviderRecord) -> f64 {
        if record.spot_checks_passed_since_invalid < u64::from(self.new_provider_checks) {
            self.new_provider_rate
        } else {
            self.rate
        }
    }

    /// Decide what the next assignment to this provider is. A quarantined provider gets
    /// nothing: the caller must not assign it work at all.
    pub fn next_assignment(
        &self,
        record: &ProviderRecord,
        provider: &idlegrid_types::PartyId,
        random: &mut dyn RandomSource,
    ) -> Result<NextAssignment, AssuranceError> {
        self.validate()?;
        if record.is_quarantined() {
            return Err(AssuranceError::ProviderQuarantined { provider: provider.clone() });
        }
        let rate = self.rate_for(record);
        if rate > 0.0 && random.next_f64() < rate {
            Ok(NextAssignment::SpotCheck)
        } else {
            Ok(NextAssignment::RealTask)
        }
    }
}

/// Judge a test task's answer byte for byte against the known one.
pub fn judge_spot_check(expected: &ResultDigest, answer: &ResultDigest) -> SpotCheckOutcome {
    if expected == answer { SpotCheckOutcome::Passed } else { SpotCheckOutcome::Failed }
}

impl SpotCheckOutcome {
    /// Judge a test task's answer with the job's validator (known answer first). A validator
    /// failure proves nothing about the provider.
    pub fn from_comparison(comparison: Comparison) -> Result<SpotCheckOutcome, AssuranceError> {
        match comparison {
            Comparison::Equivalent => Ok(SpotCheckOutcome::Passed),
            Comparison::Different => Ok(SpotCheckOutcome::Failed),
            Comparison::Failed => Ok(SpotCheckOutcome::Unresolved),
            Comparison::Pending => Err(AssuranceError::parameter(
                "comparison",
                "pending",
                "run the validator before judging the spot check",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QuarantineRule, SpotCheckConsequence};
    use idlegrid_random::Xoshiro256StarStar;
    use idlegrid_types::{ElementHash, PartyId};

    #[test]
    fn the_rate_is_met_and_newcomers_are_checked_more() {
        let policy = SpotCheckPolicy { rate: 0.1, new_provider_rate: 0.5, new_provider_checks: 3 };
        let provider = PartyId::from_public_key(&[1; 32]);
        let mut random = Xoshiro256StarStar::from_seed(9);
        let mut record = ProviderRecord::default();
        let share = |record: &ProviderRecord, random: &mut Xoshiro256StarStar| {
            let checks = (0..100_000)
                .filter(|_| policy.next_assignment(record, &provider, random).unwrap() == NextAssignment::SpotCheck)
                .count();
            checks as f64 / 100_000.0
        };
        let newcomer = share(&record, &mut random);
        assert!((newcomer - 0.5).abs() < 0.01, "{newcomer}");
        for _ in 0..3 {
            record.apply_spot_check(SpotCheckOutcome::Passed, &QuarantineRule::default());
        }
        let established = share(&record, &mut random);
        assert!((established - 0.1).abs() < 0.005, "{established}");
        assert!((0..1000).all(|_| SpotCheckPolicy::off().next_assignment(&record, &provider, &mut random).unwrap()
            == NextAssignment::RealTask));
    }

    #[test]
    fn a_wrong_answer_quarantines_and_a_quarantined_provider_gets_nothing() {
        let provider = PartyId::from_public_key(&[2; 32]);
        let known = ElementHash::of(b"42");
        let mut record = ProviderRecord::default();
        assert_eq!(judge_spot_check(&known, &ElementHash::of(b"42")), SpotCheckOutcome::Passed);
        let outcome = judge_spot_check(&known, &ElementHash::of(b"41"));
        assert_eq!(record.apply_spot_check(outcome, &QuarantineRule::default()), SpotCheckConsequence::Quarantined);
        let error = SpotCheckPolicy::default()
            .next_assignment(&record, &provider, &mut Xoshiro256StarStar::from_seed(1))
            .unwrap_err();
        assert!(matches!(error, AssuranceError::ProviderQuarantined { .. }), "{error}");
    }

    #[test]
    fn validator_outcomes_and_bad_rates() {
        assert_eq!(SpotCheckOutcome::from_comparison(Comparison::Equivalent).unwrap(), SpotCheckOutcome::Passed);
        assert_eq!(SpotCheckOutcome::from_comparison(Comparison::Different).unwrap(), SpotCheckOutcome::Failed);
        assert_eq!(SpotCheckOutcome::from_comparison(Comparison::Failed).unwrap(), SpotCheckOutcome::Unresolved);
        assert!(SpotCheckOutcome::from_comparison(Comparison::Pending).is_err());
        let provider = PartyId::from_public_key(&[3; 32]);
        for policy in [
            SpotCheckPolicy { rate: f64::NAN, ..SpotCheckPolicy::default() },
            SpotCheckPolicy { new_provider_rate: 1.5, ..SpotCheckPolicy::default() },
        ] {
            assert!(
                policy
                    .next_assignment(&ProviderRecord::default(), &provider, &mut Xoshiro256StarStar::from_seed(1))
                    .is_err()
            );
        }
    }
}
