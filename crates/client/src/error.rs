//! What can go wrong talking to a server, split by what the caller should do about it (fix the
//! request, retry, or check the server's identity).

use idlegrid_protocol::{ErrorCode, ErrorReport};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered the HTTP request with an error.
    #[error("the server refused the request ({status}): {report}")]
    Api { status: u16, report: ErrorReport },
    /// The server processed a message and answered it with an `Error` message.
    #[error("the server refused: {0}")]
    Refused(ErrorReport),
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// The server's TLS certificate is not from the CA this party trusts: not retried, since
    /// talking to an impostor (or a server whose CA changed) must not go on by itself.
    #[error("{0}")]
    Untrusted(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(String),
    /// An executable element that is not a WebAssembly module the client can ship (P6.3:
    /// executables are stripped of their custom sections before they are uploaded).
    #[error("the executable '{name}' cannot be shipped: {reason}")]
    InvalidExecutable { name: String, reason: String },
    #[error("the connection was closed")]
    Closed,
}

impl ClientError {
    /// Worth retrying after a pause: the server is down, overloaded or briefly failing.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Network(_) => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { report, .. } | ClientError::Refused(report) => Some(report.code),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ClientError::Io(error.to_string())
    }
}
