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
    /// The request did not reach the server, or its answer did not come back.
    #[error("cannot reach the server: {}: {detail} ({})", .cause.describe(), .cause.advice())]
    Network { cause: Unreachable, detail: String },
    /// Something answers at the address, but not as an Idlegrid server does: a retry cannot help.
    #[error(
        "{url} is not an Idlegrid server ({detail}); check the server address: the scheme, host and port \
         the server prints when it starts, with no path"
    )]
    NotAServer { url: String, detail: String },
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
            ClientError::Network { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// The kind of failure, for saying it once per change rather than at every retry.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Network { cause, .. } => ErrorClass::Unreachable(*cause),
            ClientError::NotAServer { .. } => ErrorClass::NotAServer,
            ClientError::Untrusted(_) => ErrorClass::Untrusted,
            ClientError::Api { status, report } => ErrorClass::Refused(*status, report.code),
            ClientError::Refused(report) => ErrorClass::Refused(0, report.code),
            _ => ErrorClass::Other,
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

/// Why a request did not reach the server, in words a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unreachable {
    /// The server's host name does not resolve.
    Dns,
    /// Nothing accepts connections at the address.
    Refused,
    /// No answer in time.
    Timeout,
    /// The secure connection could not be set up (not a question of the server's identity).
    Tls,
    /// The connection failed or broke otherwise.
    Connection,
}

impl Unreachable {
    /// Classify a failure from its description (the whole chain of causes).
    pub fn classify(text: &str) -> Unreachable {
        let text = text.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        if any(&[
            "dns error",
            "failed to lookup address",
            "name or service not known",
            "no address associated",
            "nodename nor servname",
        ]) {
            Unreachable::Dns
        } else if any(&["connection refused"]) {
            Unreachable::Refused
        } else if any(&["timed out", "timeout", "within"]) {
            Unreachable::Timeout
        } else if any(&["tls", "certificate", "corrupt message", "handshake", "alert"]) {
            Unreachable::Tls
        } else {
            Unreachable::Connection
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Unreachable::Dns => "the server's host name does not resolve",
            Unreachable::Refused => "nothing accepts connections at that address",
            Unreachable::Timeout => "the server did not answer in time",
            Unreachable::Tls => "the secure connection failed",
            Unreachable::Connection => "the connection failed",
        }
    }

    pub fn advice(self) -> &'static str {
        match self {
            Unreachable::Dns => "check the host name in the server address, and this computer's network",
            Unreachable::Refused => {
                "check the port in the server address, and that the server runs (start one with `idlegrid server`)"
            }
            Unreachable::Timeout => "the server may be overloaded, or a firewall drops the connection",
            Unreachable::Tls => {
                "check that the address is an Idlegrid server: https:// for a server with TLS, http:// only for a development server started with --insecure-plain-http"
            }
            Unreachable::Connection => {
                "check the scheme (https:// or http://) and the port of the server address, and that the server runs"
            }
        }
    }
}

/// Kinds of failure, compared to say a problem once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Unreachable(Unreachable),
    NotAServer,
    Untrusted,
    Refused(u16, ErrorCode),
    Other,
}

/// Remembers the last failure of a retry loop, so that it is said once per change of its kind
/// (and its end once), not at every try.
#[derive(Debug, Default, Clone)]
pub struct ProblemLog {
    last: Option<ErrorClass>,
}

impl ProblemLog {
    /// Whether this failure is news: the first, or of another kind than the last.
    pub fn is_news(&mut self, error: &ClientError) -> bool {
        let class = error.class();
        let news = self.last != Some(class);
        self.last = Some(class);
        news
    }

    /// A success: whether it ends a problem said before.
    pub fn recovered(&mut self) -> bool {
        self.last.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_and_said_once_per_change() {
        for (text, cause) in [
            (
                "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                Unreachable::Dns,
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                Unreachable::Refused,
            ),
            ("cannot connect to 127.0.0.1:9: Connection refused (os error 111)", Unreachable::Refused),
            ("error sending request: operation timed out", Unreachable::Timeout),
            ("no TLS handshake with 10.0.0.1:7700 within 10s", Unreachable::Timeout),
            (
                "TLS handshake with 127.0.0.1:80 failed: received corrupt message of type InvalidContentType",
                Unreachable::Tls,
            ),
            ("error sending request: connection closed before message completed", Unreachable::Connection),
        ] {
            assert_eq!(Unreachable::classify(text), cause, "{text}");
        }
        let refused = ClientError::Network { cause: Unreachable::Refused, detail: "os error 111".into() };
        let text = refused.to_string();
        assert!(text.contains("nothing accepts connections") && text.contains("idlegrid server"), "{text}");
        let dns = ClientError::Network { cause: Unreachable::Dns, detail: "x".into() };
        let mut log = ProblemLog::default();
        assert!(log.is_news(&refused));
        assert!(!log.is_news(&refused), "the same problem again is not news");
        assert!(log.is_news(&dns));
        assert!(log.recovered());
        assert!(!log.recovered());
        assert!(log.is_news(&dns), "after a recovery the problem is news again");
        let not_a_server =
            ClientError::NotAServer { url: "http://x".into(), detail: "HTTP 404 for /v1/register".into() };
        assert!(!not_a_server.is_transient());
        assert!(not_a_server.to_string().contains("not an Idlegrid server"), "{not_a_server}");
    }
}
