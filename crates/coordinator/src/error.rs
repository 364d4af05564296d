//! Errors the coordinator answers with: the kind of refusal (the server maps kinds to HTTP
//! statuses) and the report the caller sees.

use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_store::{DomainError, DomainKind, StoreError};

/// What kind of refusal an error is, in the coordinator's terms. The server chooses the HTTP
/// status for each kind; nothing here knows about HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something invalid: fix the request.
    Invalid,
    /// The caller could not be identified.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// What the request names does not exist (for this caller).
    NotFound,
    /// The request contradicts the state it met (a session out of step, a decided request).
    Conflict,
    /// Over a size or storage limit.
    TooLarge,
    /// Over a rate limit: the same request later may succeed.
    TooMany,
    /// The request did not arrive at the minimum pace: the connection is closed.
    TooSlow,
    /// A fault of the server's own (storage): not the caller's.
    Internal,
}

/// An error the coordinator answers a request with: its kind and the report the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{report}")]
pub struct CoordinatorError {
    pub kind: ErrorKind,
    pub report: ErrorReport,
}

impl CoordinatorError {
    pub fn new(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> Self {
        CoordinatorError { kind, report: ErrorReport::new(code, message) }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, ErrorCode::BadRequest, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, ErrorCode::BadRequest, message)
    }
    pub fn not_found_element(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, ErrorCode::UnknownElement, message)
    }
    pub fn unknown_session(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, ErrorCode::UnknownSession, message)
    }
    pub fn unknown_job(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, ErrorCode::UnknownJob, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, ErrorCode::Conflict, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, ErrorCode::LimitExceeded, message)
    }
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooMany, ErrorCode::LimitExceeded, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, ErrorCode::Internal, message)
    }
}

/// Architecture invariant: a domain refusal keeps its kind on its way out of a transaction;
/// only a failure of the storage itself (or a broken rule of the server's own) is internal.
impl From<StoreError> for CoordinatorError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Domain(DomainError { kind, message }) => match kind {
                DomainKind::Invalid => CoordinatorError::bad_request(message),
                DomainKind::NotFound => CoordinatorError::not_found(message),
                DomainKind::Conflict => CoordinatorError::conflict(message),
                DomainKind::Limit => CoordinatorError::new(ErrorKind::Conflict, ErrorCode::LimitExceeded, message),
                DomainKind::Broken => {
                    tracing::error!(error = %message, "a rule of the server's own logic was broken");
                    CoordinatorError::internal(message)
                }
            },
            StoreError::Conflict(message) => CoordinatorError::conflict(message),
            other => {
                tracing::error!(error = %other, "store failure");
                CoordinatorError::internal(format!("storage failure: {other}"))
            }
        }
    }
}

/// Why one message could not be processed: a report for the sender (the message still counts
/// as processed), or a store failure that aborts the whole batch.
#[derive(Debug)]
pub(crate) enum Reject {
    Report(ErrorReport),
    Store(StoreError),
}

impl From<StoreError> for Reject {
    fn from(error: StoreError) -> Self {
        Reject::Store(error)
    }
}

impl From<ErrorReport> for Reject {
    fn from(report: ErrorReport) -> Self {
        Reject::Report(report)
    }
}

pub(crate) fn report(code: ErrorCode, message: impl Into<String>) -> Reject {
    Reject::Report(ErrorReport::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_ledger::{AccountId, LedgerError, Micros};

    fn kind_of(error: StoreError) -> (ErrorKind, ErrorCode) {
        let error = CoordinatorError::from(error);
        (error.kind, error.report.code)
    }

    #[test]
    fn domain_refusals_keep_their_kind_and_storage_failures_are_internal() {
        let refusal = |kind| StoreError::domain(kind, "no");
        assert_eq!(kind_of(refusal(DomainKind::Invalid)), (ErrorKind::Invalid, ErrorCode::BadRequest));
        assert_eq!(kind_of(refusal(DomainKind::NotFound)).0, ErrorKind::NotFound);
        assert_eq!(kind_of(refusal(DomainKind::Conflict)), (ErrorKind::Conflict, ErrorCode::Conflict));
        assert_eq!(kind_of(refusal(DomainKind::Limit)), (ErrorKind::Conflict, ErrorCode::LimitExceeded));
        assert_eq!(kind_of(refusal(DomainKind::Broken)).0, ErrorKind::Internal);
        assert_eq!(kind_of(StoreError::Conflict("task 3 exists already".into())).0, ErrorKind::Conflict);
        assert_eq!(kind_of(StoreError::Database("disk gone".into())).0, ErrorKind::Internal);
        assert_eq!(kind_of(StoreError::Corrupt("bad row".into())).0, ErrorKind::Internal);
    }

    #[test]
    fn the_ledgers_refusals_are_domain_errors_of_their_kind() {
        let over = LedgerError::OverLimit {
            account: AccountId::Platform,
            available: Micros::ZERO,
            overdraft_max: Micros::ZERO,
            amount: Micros::new(5),
            shortfall: Micros::new(5),
        };
        assert!(matches!(
            crate::requests::ledger_refusal(over),
            StoreError::Domain(DomainError { kind: DomainKind::Limit, .. })
        ));
        let unbalanced = LedgerError::ReservationNotFound { reservation: idlegrid_ledger::TransferId(1) };
        assert_eq!(kind_of(crate::requests::ledger_refusal(unbalanced)).0, ErrorKind::Internal);
        let storage = LedgerError::storage(std::io::Error::other("gone"));
        assert!(matches!(crate::requests::ledger_refusal(storage), StoreError::Database(_)));
        let api = crate::requests::ledger_api_error(LedgerError::RequestNotFound { id: 4 });
        assert_eq!(api.kind, ErrorKind::NotFound);
    }
}
