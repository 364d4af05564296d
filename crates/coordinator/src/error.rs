//! Errors the coordinator answers with: an HTTP status chosen for each refusal and the report
//! the caller sees.

use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_store::StoreError;

/// An error answered to a request: an HTTP status and the report the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {report}")]
pub struct ApiError {
    pub status: u16,
    pub report: ErrorReport,
}

impl ApiError {
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { status, report: ErrorReport::new(code, message) }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorCode::BadRequest, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, ErrorCode::Forbidden, message)
    }
    pub fn not_found_element(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::UnknownElement, message)
    }
    pub fn unknown_session(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::UnknownSession, message)
    }
    pub fn unknown_job(message: impl Into<String>) -> Self {
        Self::new(404, ErrorCode::UnknownJob, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, ErrorCode::Conflict, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, ErrorCode::LimitExceeded, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorCode::Internal, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failure");
        ApiError::internal(format!("storage failure: {error}"))
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
