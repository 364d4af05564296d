//! The one error type of the crate. Every message says what is wrong and what to do.

use idlegrid_types::{AssignmentId, PartyId};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssuranceError {
    #[error("invalid {field} = {value}: {reason}")]
    InvalidParameter { field: &'static str, value: String, reason: &'static str },

    #[error("assignment {assignment} is not a replica of this task; record it with replica_launched first")]
    UnknownAssignment { assignment: AssignmentId },

    #[error("assignment {assignment} was already recorded as a replica of this task; each placement needs its own id")]
    DuplicateAssignment { assignment: AssignmentId },

    #[error(
        "provider {provider} already holds a replica of this task; place every replica on a different provider \
         (exclude TaskAssurance::providers), or one provider could vote twice"
    )]
    ProviderAlreadyHasReplica { provider: PartyId },

    #[error("assignment {assignment} already returned a different result; a replica has one result, keep the first")]
    ConflictingResult { assignment: AssignmentId },

    #[error("assignment {assignment} is {state}, not running; {hint}")]
    ReplicaNotRunning { assignment: AssignmentId, state: &'static str, hint: &'static str },

    #[error("the task is already {state}; no replica may be launched for it")]
    TaskFinished { state: &'static str },

    #[error("no record for provider {provider}; pass the records of every provider in TaskAssurance::providers")]
    UnknownProvider { provider: PartyId },

    #[error("provider {provider} is quarantined: it gets no more work, test tasks included")]
    ProviderQuarantined { provider: PartyId },

    #[error("the comparison of {first} and {second} is still pending; record its outcome before judging with it")]
    ComparisonPending { first: AssignmentId, second: AssignmentId },

    #[error("the comparison of {first} and {second} names a result this task does not hold")]
    UnknownComparison { first: AssignmentId, second: AssignmentId },
}

impl From<idlegrid_types::InvalidPolicyParameter> for AssuranceError {
    fn from(error: idlegrid_types::InvalidPolicyParameter) -> AssuranceError {
        AssuranceError::InvalidParameter { field: error.field, value: error.value, reason: error.reason }
    }
}

impl AssuranceError {
    /// A number that must be finite and within a range, with the range in the reason.
    pub(crate) fn parameter(field: &'static str, value: impl ToString, reason: &'static str) -> AssuranceError {
        AssuranceError::InvalidParameter { field, value: value.to_string(), reason }
    }
}

/// Check that `value` is a number in `[low, high]` (NaN is refused).
pub(crate) fn check_closed(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    reason: &'static str,
) -> Result<(), AssuranceError> {
    if value.is_finite() && value >= low && value <= high {
        Ok(())
    } else {
        Err(AssuranceError::parameter(field, value, reason))
    }
}

/// Check that `value` is a number in `(low, high)` (NaN is refused).
pub(crate) fn check_open(
    field: &'static str,
    value: f64,
    low: f64,
    high: f64,
    reason: &'static str,
) -> Result<(), AssuranceError> {
    if value.is_finite() && value > low && value < high {
        Ok(())
    } else {
        Err(AssuranceError::parameter(field, value, reason))
    }
}
