//! What the server remembers about each provider: its results judged against accepted results,
//! its spot checks, and whether it is quarantined. The store persists it (every field is plain);
//! this crate only updates it.

use serde::{Deserialize, Serialize};

/// The verdict on one replica's result, emitted once by `TaskAssurance::decide` (and again,
/// with `previous`, if re-verification changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgementKind {
    /// Agreed with the accepted result, which was checked by at least one other result: valid.
    Agreed,
    /// The accepted result, taken alone without a comparison (policy `None`, a trusted provider
    /// under adaptive replication, a very credible provider): paid, but no evidence for the
    /// provider's record.
    Unchecked,
    /// Differed from the accepted result: invalid. Not paid; resets the provider's records.
    Disagreed,
    /// The job's validator failed on the comparison with the accepted result: neither valid nor
    /// invalid (a broken validator is not the provider's fault). Not paid.
    Unresolved,
    /// From a quarantined provider: ignored. Not paid.
    Discarded,
}

impl JudgementKind {
    /// Whether the provider earns pay for the replica.
    pub fn is_paid(self) -> bool {
        matches!(self, JudgementKind::Agreed | JudgementKind::Unchecked)
    }
}

/// Why a provider is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum QuarantineReason {
    /// It returned a wrong answer to a test task whose answer the server knew.
    FailedSpotChecks { failed: u64 },
    /// An operator quarantined it.
    Operator,
}

/// How many failed spot checks quarantine a provider. One by default: a test task's answer is
/// known, so a wrong answer is a lie or broken hardware, and either must not be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRule {
    pub failed_spot_checks_max: u32,
}

impl Default for QuarantineRule {
    fn default() -> QuarantineRule {
        QuarantineRule { failed_spot_checks_max: 1 }
    }
}

/// The outcome of one spot check: the provider's answer against the known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotCheckOutcome {
    Passed,
    Failed,
    /// The job's validator failed on the comparison: no evidence either way.
    Unresolved,
}

/// What a spot check did to the provider's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpotCheckConsequence {
    /// Passed: credibility and the adaptive record grow.
    Credited,
    /// Failed, below the quarantine threshold: records reset.
    Marked,
    /// Failed at the threshold: the provider is quarantined now. Act on
    /// `quarantine::plan_quarantine`.
    Quarantined,
    /// Unresolved, or the provider was already quarantined: nothing changed.
    Unchanged,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderRecord {
    /// Results that agreed with an accepted, checked result.
    pub valid: u64,
    /// Results that differed from an accepted result.
    pub invalid: u64,
    /// Results accepted alone, without a comparison.
    pub unchecked: u64,
    pub spot_checks_passed: u64,
    pub spot_checks_failed: u64,
    /// Valid results and passed spot checks since the last invalid result or failed spot check:
    /// adaptive replication's record.
    pub consecutive_valid: u64,
    /// Spot checks passed since the last invalid result or failed spot check: Sarmenta's k,
    /// from which the credibility is computed. Results that agreed do not count: colluding
    /// saboteurs agree with each other, a known answer cannot be faked.
    pub spot_checks_passed_since_invalid: u64,
    pub quarantine: Option<QuarantineReason>,
}

impl ProviderRecord {
    pub fn is_quarantined(&self) -> bool {
        self.quarantine.is_some()
    }

    /// Apply a judgement emitted by `TaskAssurance::decide`. A revision (`previous`) first
    /// takes back the counts of the earlier judgement; resets are not undone, on purpose: a
    /// provider that was once on the wrong side starts its record over.
    pub fn apply_judgement(&mut self, kind: JudgementKind, previous: Option<JudgementKind>) {
        match previous {
            Some(JudgementKind::Agreed) => self.valid = self.valid.saturating_sub(1),
            Some(JudgementKind::Disagreed) => self.invalid = self.invalid.saturating_sub(1),
            Some(JudgementKind::Unchecked) => self.unchecked = self.unchecked.saturating_sub(1),
            Some(JudgementKind::Unresolved | JudgementKind::Discarded) | None => {}
        }
        match kind {
            JudgementKind::Agreed => {
                self.valid = self.valid.saturating_add(1);
                self.consecutive_valid = self.consecutive_valid.saturating_add(1);
            }
            JudgementKind::Disagreed => {
                self.invalid = self.invalid.saturating_add(1);
                self.reset_streaks();
            }
            JudgementKind::Unchecked => self.unchecked = self.unchecked.saturating_add(1),
            JudgementKind::Unresolved | JudgementKind::Discarded => {}
        }
    }

    /// Apply a spot check's outcome; a failure at `rule`'s threshold quarantines the provider.
    pub fn apply_spot_check(&mut self, outcome: SpotCheckOutcome, rule: &QuarantineRule) -> SpotCheckConsequence {
        if self.is_quarantined() {
            return SpotCheckConsequence::Unchanged;
        }
        match outcome {
            SpotCheckOutcome::Passed => {
                self.spot_checks_passed = self.spot_checks_passed.saturating_add(1);
                self.spot_checks_passed_since_invalid = self.spot_checks_passed_since_invalid.saturating_add(1);
                self.consecutive_valid = self.consecutive_valid.saturating_add(1);
                SpotCheckConsequence::Credited
            }
            SpotCheckOutcome::Failed => {
                self.spot_checks_failed = self.spot_checks_failed.saturating_add(1);
                self.reset_streaks();
                if self.spot_checks_failed >= u64::from(rule.failed_spot_checks_max.max(1)) {
                    self.quarantine = Some(QuarantineReason::FailedSpotChecks { failed: self.spot_checks_failed });
                    SpotCheckConsequence::Quarantined
                } else {
                    SpotCheckConsequence::Marked
                }
            }
            SpotCheckOutcome::Unresolved => SpotCheckConsequence::Unchanged,
        }
    }

    /// Quarantine by an operator's decision.
    pub fn quarantine_by_operator(&mut self) {
        self.quarantine = Some(QuarantineReason::Operator);
        self.reset_streaks();
    }

    /// Lift a quarantine (an operator's decision). The provider starts over as a new one: no
    /// credibility, no adaptive record.
    pub fn release_from_quarantine(&mut self) {
        self.quarantine = None;
        self.reset_streaks();
    }

    fn reset_streaks(&mut self) {
        self.consecutive_valid = 0;
        self.spot_checks_passed_since_invalid = 0;
    }
}

/// Where `TaskAssurance::decide` finds the records of the task's providers. The server loads
/// the records of `TaskAssurance::providers` into a map; the simulation keeps all of them.
pub trait ProviderRecords {
    fn record(&self, provider: &idlegrid_types::PartyId) -> Option<&ProviderRecord>;
}

impl ProviderRecords for std::collections::BTreeMap<idlegrid_types::PartyId, ProviderRecord> {
    fn record(&self, provider: &idlegrid_types::PartyId) -> Option<&ProviderRecord> {
        self.get(provider)
    }
}

impl<S: std::hash::BuildHasher> ProviderRecords
    for std::collections::HashMap<idlegrid_types::PartyId, ProviderRecord, S>
{
    fn record(&self, provider: &idlegrid_types::PartyId) -> Option<&ProviderRecord> {
        self.get(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_result_resets_the_streaks_but_keeps_the_totals() {
        let mut record = ProviderRecord::default();
        for _ in 0..20 {
            record.apply_judgement(JudgementKind::Agreed, None);
        }
        record.apply_spot_check(SpotCheckOutcome::Passed, &QuarantineRule::default());
        assert_eq!((record.valid, record.consecutive_valid, record.spot_checks_passed_since_invalid), (20, 21, 1));
        record.apply_judgement(JudgementKind::Disagreed, None);
        assert_eq!(
            (record.valid, record.invalid, record.consecutive_valid, record.spot_checks_passed_since_invalid),
            (20, 1, 0, 0)
        );
        assert_eq!(record.spot_checks_passed, 1);
        record.apply_judgement(JudgementKind::Unchecked, None);
        assert_eq!((record.unchecked, record.consecutive_valid), (1, 0));
    }

    #[test]
    fn a_revision_moves_the_count_and_resets() {
        let mut record = ProviderRecord::default();
        record.apply_judgement(JudgementKind::Agreed, None);
        record.apply_judgement(JudgementKind::Agreed, None);
        record.apply_judgement(JudgementKind::Disagreed, Some(JudgementKind::Agreed));
        assert_eq!((record.valid, record.invalid, record.consecutive_valid), (1, 1, 0));
        record.apply_judgement(JudgementKind::Agreed, Some(JudgementKind::Disagreed));
        assert_eq!((record.valid, record.invalid, record.consecutive_valid), (2, 0, 1));
        // Counts never underflow, whatever the server replays.
        let mut fresh = ProviderRecord::default();
        fresh.apply_judgement(JudgementKind::Discarded, Some(JudgementKind::Agreed));
        assert_eq!(fresh, ProviderRecord::default());
    }

    #[test]
    fn failed_spot_checks_quarantine_at_the_threshold() {
        let rule = QuarantineRule { failed_spot_checks_max: 2 };
        let mut record = ProviderRecord::default();
        assert_eq!(record.apply_spot_check(SpotCheckOutcome::Passed, &rule), SpotCheckConsequence::Credited);
        assert_eq!(record.apply_spot_check(SpotCheckOutcome::Unresolved, &rule), SpotCheckConsequence::Unchanged);
        assert_eq!(record.apply_spot_check(SpotCheckOutcome::Failed, &rule), SpotCheckConsequence::Marked);
        assert_eq!(record.spot_checks_passed_since_invalid, 0);
        assert_eq!(record.apply_spot_check(SpotCheckOutcome::Failed, &rule), SpotCheckConsequence::Quarantined);
        assert_eq!(record.quarantine, Some(QuarantineReason::FailedSpotChecks { failed: 2 }));
        assert_eq!(record.apply_spot_check(SpotCheckOutcome::Passed, &rule), SpotCheckConsequence::Unchanged);
        record.release_from_quarantine();
        assert!(!record.is_quarantined());
        // The default rule quarantines at the first failure.
        let mut strict = ProviderRecord::default();
        assert_eq!(
            strict.apply_spot_check(SpotCheckOutcome::Failed, &QuarantineRule::default()),
            SpotCheckConsequence::Quarantined
        );
        // A rule of zero is read as one, never as "quarantine without a failure".
        let mut zero = ProviderRecord::default();
        assert_eq!(
            zero.apply_spot_check(SpotCheckOutcome::Passed, &QuarantineRule { failed_spot_checks_max: 0 }),
            SpotCheckConsequence::Credited
        );
        assert!(!zero.is_quarantined());
    }
}
