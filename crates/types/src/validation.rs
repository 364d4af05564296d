//! Validation policies: how much agreement a job asks for before a result is final (P6.1, X1).
//! A job property, so it lives here; `idlegrid-assurance` carries it out.

use serde::{Deserialize, Serialize};

/// A policy parameter out of its range; the message names the field and the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} = {value}: {reason}")]
pub struct InvalidPolicyParameter {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn parameter(field: &'static str, value: impl ToString, reason: &'static str) -> InvalidPolicyParameter {
    InvalidPolicyParameter { field, value: value.to_string(), reason }
}

fn check_closed(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    reason: &'static str,
) -> Result<(), InvalidPolicyParameter> {
    if value.is_finite() && value >= low && value <= high { Ok(()) } else { Err(parameter(field, value, reason)) }
}

fn check_open(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    reason: &'static str,
) -> Result<(), InvalidPolicyParameter> {
    if value.is_finite() && value > low && value < high { Ok(()) } else { Err(parameter(field, value, reason)) }
}

/// Most replicas any policy may ask for: a bound on the work one task can cost.
pub const REPLICAS_LIMIT: u32 = 64;

/// A job's validation policy. Every policy launches replicas on distinct providers and ignores
/// the results of quarantined providers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValidationPolicy {
    /// One replica; its result is accepted unchecked (spot checks still judge the provider).
    #[default]
    None,
    /// BOINC's quorum: launch `target_replicas`, accept a result once `min_agreeing` results
    /// agree with it, launch more while disagreement leaves that possible, give up as
    /// inconclusive once `replicas_max` replicas have returned or run without a quorum.
    Quorum { min_agreeing: u32, target_replicas: u32, replicas_max: u32 },
    /// BOINC's adaptive replication: one replica; when its provider has at least
    /// `trusted_after` consecutive valid results, the result is accepted unchecked except with
    /// probability `max(check_probability_min, trusted_after / consecutive_valid)`, which falls
    /// as the record grows. Otherwise (or when the draw says check) the task becomes a quorum
    /// of `min_agreeing`. Any invalid result resets the record to zero.
    Adaptive { min_agreeing: u32, trusted_after: u32, check_probability_min: f64, replicas_max: u32 },
    /// Sarmenta's credibility-based voting: accept the result whose credibility (from the
    /// credibility of the providers that agree on it, against the groups that disagree) reaches
    /// `target`, e.g. 0.9999 for an error rate of at most 1e-4 under the model's assumptions.
    Credibility { target: f64, replicas_max: u32 },
}

impl ValidationPolicy {
    /// `min_agreeing` agreeing results out of as many replicas, at most twice as many plus two
    /// replicas in all (BOINC's usual `min_quorum = target_nresults`).
    pub fn quorum(min_agreeing: u32) -> ValidationPolicy {
        let min_agreeing = min_agreeing.clamp(1, REPLICAS_LIMIT / 2 - 1);
        ValidationPolicy::Quorum { min_agreeing, target_replicas: min_agreeing, replicas_max: 2 * min_agreeing + 2 }
    }

    /// Adaptive replication with BOINC's threshold of 10 consecutive valid results, a check
    /// probability that never falls below 5 %, and a quorum of 2 when checked.
    pub fn adaptive() -> ValidationPolicy {
        ValidationPolicy::Adaptive { min_agreeing: 2, trusted_after: 10, check_probability_min: 0.05, replicas_max: 6 }
    }

    /// Credibility-based voting to `target`, with room for new providers (credibility 1 - f)
    /// to reach it by voting alone.
    pub fn credibility(target: f64) -> ValidationPolicy {
        ValidationPolicy::Credibility { target, replicas_max: 16 }
    }

    /// Refuse policies that could never accept, or that ask for unbounded work.
    pub fn validate(&self) -> Result<(), InvalidPolicyParameter> {
        let check_replicas_max = |replicas_max: u32, at_least: u32| {
            if replicas_max < at_least || replicas_max > REPLICAS_LIMIT {
                Err(parameter(
                    "replicas_max",
                    replicas_max,
                    "must be at least the replicas the policy needs and at most 64",
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            ValidationPolicy::None => Ok(()),
            ValidationPolicy::Quorum { min_agreeing, target_replicas, replicas_max } => {
                if min_agreeing == 0 {
                    return Err(parameter("min_agreeing", min_agreeing, "must be at least 1"));
                }
                if target_replicas < min_agreeing {
                    return Err(parameter("target_replicas", target_replicas, "must be at least min_agreeing"));
                }
                check_replicas_max(replicas_max, target_replicas)
            }
            ValidationPolicy::Adaptive { min_agreeing, trusted_after, check_probability_min, replicas_max } => {
                if min_agreeing < 2 {
                    return Err(parameter(
                        "min_agreeing",
                        min_agreeing,
                        "must be at least 2 (a check compares two results)",
                    ));
                }
                if trusted_after == 0 {
                    return Err(parameter("trusted_after", trusted_after, "must be at least 1"));
                }
                check_closed(
                    "check_probability_min",
                    check_probability_min,
                    0.0,
                    1.0,
                    "must be a probability in [0, 1]",
                )?;
                check_replicas_max(replicas_max, min_agreeing)
            }
            ValidationPolicy::Credibility { target, replicas_max } => {
                check_open("target", target, 0.0, 1.0, "must be a credibility in (0, 1), e.g. 0.9999")?;
                check_replicas_max(replicas_max, 1)
            }
        }
    }

    /// Replicas that may return (or run) before the task is given up; `None` has no limit of
    /// its own (the coordinator's attempts bound it).
    pub fn replicas_max(&self) -> u32 {
        match *self {
            ValidationPolicy::None => REPLICAS_LIMIT,
            ValidationPolicy::Quorum { replicas_max, .. }
            | ValidationPolicy::Adaptive { replicas_max, .. }
            | ValidationPolicy::Credibility { replicas_max, .. } => replicas_max,
        }
    }

    /// A short name for reports and logs.
    pub fn label(&self) -> String {
        match *self {
            ValidationPolicy::None => "none".to_string(),
            ValidationPolicy::Quorum { min_agreeing, target_replicas, .. } if min_agreeing == target_replicas => {
                format!("quorum {min_agreeing}")
            }
            ValidationPolicy::Quorum { min_agreeing, target_replicas, .. } => {
                format!("quorum {min_agreeing} of {target_replicas}")
            }
            ValidationPolicy::Adaptive { .. } => "adaptive".to_string(),
            ValidationPolicy::Credibility { target, .. } => format!("credibility {target}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_make_valid_policies() {
        for policy in [
            ValidationPolicy::None,
            ValidationPolicy::quorum(2),
            ValidationPolicy::quorum(3),
            ValidationPolicy::adaptive(),
            ValidationPolicy::credibility(0.9999),
        ] {
            policy.validate().unwrap();
        }
        assert_eq!(
            ValidationPolicy::quorum(2),
            ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 6 }
        );
        assert_eq!(ValidationPolicy::quorum(3).label(), "quorum 3");
    }

    #[test]
    fn impossible_or_unbounded_policies_are_refused_with_the_field() {
        let cases = [
            (ValidationPolicy::Quorum { min_agreeing: 0, target_replicas: 2, replicas_max: 4 }, "min_agreeing"),
            (ValidationPolicy::Quorum { min_agreeing: 3, target_replicas: 2, replicas_max: 4 }, "target_replicas"),
            (ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 3, replicas_max: 2 }, "replicas_max"),
            (ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 1000 }, "replicas_max"),
            (
                ValidationPolicy::Adaptive {
                    min_agreeing: 1,
                    trusted_after: 10,
                    check_probability_min: 0.1,
                    replicas_max: 4,
                },
                "min_agreeing",
            ),
            (
                ValidationPolicy::Adaptive {
                    min_agreeing: 2,
                    trusted_after: 10,
                    check_probability_min: f64::NAN,
                    replicas_max: 4,
                },
                "check_probability_min",
            ),
            (
                ValidationPolicy::Adaptive {
                    min_agreeing: 2,
                    trusted_after: 0,
                    check_probability_min: 0.1,
                    replicas_max: 4,
                },
                "trusted_after",
            ),
            (ValidationPolicy::Credibility { target: 1.0, replicas_max: 8 }, "target"),
            (ValidationPolicy::Credibility { target: f64::NAN, replicas_max: 8 }, "target"),
            (ValidationPolicy::Credibility { target: 0.99, replicas_max: 0 }, "replicas_max"),
        ];
        for (policy, field) in cases {
            let error = policy.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{policy:?}: {error}");
        }
    }

    #[test]
    fn policies_round_trip_through_json_and_refuse_unknown_fields() {
        let policy = ValidationPolicy::adaptive();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<ValidationPolicy>(&json).unwrap(), policy);
        let json = r#"{"kind":"quorum","min_agreeing":2,"target_replicas":3,"replicas_max":5}"#;
        assert_eq!(
            serde_json::from_str::<ValidationPolicy>(json).unwrap(),
            ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 3, replicas_max: 5 }
        );
        assert!(
            serde_json::from_str::<ValidationPolicy>(
                r#"{"kind":"credibility","target":0.9,"replicas_max":4,"extra":1}"#
            )
            .is_err()
        );
    }
}
