//! Where the server is and how to know it is the real one.

use std::path::PathBuf;

use crate::ClientError;

/// How a party recognises the server over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Trust exactly this certificate authority (PEM), e.g. a file the operator handed out.
    Ca(String),
    /// Use the CA pinned in `pin`; if the file does not exist yet, take the CA the server
    /// presents (after checking the server's certificate is valid under it), write it there,
    /// and trust only it from then on (like SSH host keys).
    FirstUse { pin: PathBuf },
}

/// A server's base URL (`https://host:port`, or `http://` for a development server) and,
/// for HTTPS, how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    /// Further instances of the same platform (sharing its database and CA), tried in turn
    /// when the one in use cannot be reached.
    alternates: Vec<String>,
    trust: Option<ServerTrust>,
}

impl Endpoint {
    /// One URL, or several separated by commas: instances of one platform.
    pub fn new(urls: &str) -> Endpoint {
        let mut urls = urls.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        let url = urls.next().unwrap_or_default();
        Endpoint { url, alternates: urls.collect(), trust: None }
    }

    /// Every instance, the first one first.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.url.as_str()).chain(self.alternates.iter().map(String::as_str))
    }

    pub fn with_trust(mut self, trust: ServerTrust) -> Endpoint {
        self.trust = Some(trust);
        self
    }

    /// Trust `ca_pem` when given, else trust on first use with the pin in `pin`.
    pub fn with_ca_or_pin(self, ca_pem: Option<String>, pin: PathBuf) -> Endpoint {
        match ca_pem {
            Some(pem) => self.with_trust(ServerTrust::Ca(pem)),
            None => self.with_trust(ServerTrust::FirstUse { pin }),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn trust(&self) -> Option<&ServerTrust> {
        self.trust.as_ref()
    }

    pub fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// Host and port of the URL.
    pub fn host_port(&self) -> Result<(String, u16), ClientError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ClientError::Protocol(format!("server address '{}': {e}", self.url)))?;
        let host = url
            .host_str()
            .ok_or_else(|| ClientError::Protocol(format!("server address '{}' has no host", self.url)))?;
        let port = url.port_or_known_default().unwrap_or(443);
        Ok((host.to_string(), port))
    }

    /// A file name for things kept per server (a pinned CA), from host and port.
    pub fn file_stem(&self) -> String {
        let (host, port) = self.host_port().unwrap_or_else(|_| ("server".into(), 0));
        let host: String =
            host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        format!("{host}_{port}")
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        for url in self.urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ClientError::Protocol(format!(
                    "server address '{url}' must start with https:// (or http:// for a development server)"
                )));
            }
            if url.starts_with("https://") != self.is_tls() {
                return Err(ClientError::Protocol(format!(
                    "server addresses mix https:// and http:// ('{url}' and '{}')",
                    self.url
                )));
            }
        }
        if self.is_tls() && self.trust.is_none() {
            return Err(ClientError::Protocol(format!(
                "to connect to {} the server's certificate authority is needed: give its file (--server-ca) or allow trust on first use",
                self.url
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.urls().collect::<Vec<_>>().join(","))
    }
}

impl From<&str> for Endpoint {
    fn from(url: &str) -> Self {
        Endpoint::new(url)
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Self {
        Endpoint::new(&url)
    }
}

impl From<&String> for Endpoint {
    fn from(url: &String) -> Self {
        Endpoint::new(url)
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(endpoint: &Endpoint) -> Self {
        endpoint.clone()
    }
}
