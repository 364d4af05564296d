//! Signed HTTP requests to one server, and the data channel for elements (P8.1, P4.4).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use idlegrid_protocol::auth::{Identity, body_hash};
use idlegrid_protocol::wire::{self, ErrorBody, RegisterRequest, RegisterResponse};
use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_types::{ElementHash, ElementKind, ElementRef, Role};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use std::sync::{Arc, Mutex, RwLock};

use crate::endpoint::{Endpoint, ServerTrust};
use crate::{ClientError, Unreachable};

fn tls_client(ca_pem: &str, client: Option<(&str, &[u8])>) -> Result<reqwest::Client, ClientError> {
    let config = idlegrid_pki::client_config(ca_pem, client).map_err(tls_error)?;
    http_builder().tls_backend_preconfigured(config).build().map_err(network)
}

/// A TLS configuration that trusts no server: used until the server's CA is known.
fn untrusting_config() -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(idlegrid_pki::provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// An HTTP client that signs every request with the party's key and, over TLS, presents the
/// certificate the server issued to it at registration. Clones share the certificate, so a
/// renewal by one is used by all.
#[derive(Clone)]
pub struct Transport {
    /// Every instance's base URL; requests go to the current one, the next after a failure.
    bases: Arc<[String]>,
    identity: Identity,
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: Endpoint,
    /// The client currently used for requests: before registration over TLS it trusts the
    /// server's CA but has no certificate.
    http: RwLock<Option<reqwest::Client>>,
    certificate: Mutex<Option<Certificate>>,
    /// The CA once known (given, pinned, or taken on first use).
    ca_pem: Mutex<Option<String>>,
    /// Index into `bases` of the instance in use.
    current: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
struct Certificate {
    expires: SystemTime,
    role: Role,
    name: String,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("base", &self.base()).field("identity", &self.identity).finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn network(error: reqwest::Error) -> ClientError {
    // The cause chain names TLS problems (unknown CA, refused certificate) that the top
    // error hides behind "error sending request".
    let mut text = error.to_string();
    let mut untrusted = false;
    let mut refused = false;
    let mut tls_failed = false;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        refused |=
            cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        // rustls errors arrive wrapped in io::Error, whose source() skips the wrapped error.
        let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        untrusted |= matches!(tls, Some(rustls::Error::InvalidCertificate(_)));
        tls_failed |= tls.is_some();
        source = cause.source();
    }
    // Fallback on rustls's own wording, for wrappers that hide the typed error entirely.
    untrusted |= text.contains("invalid peer certificate");
    if untrusted {
        return ClientError::Untrusted(format!(
            "the server's certificate is not from the certificate authority this party trusts ({text})"
        ));
    }
    let cause = if refused {
        Unreachable::Refused
    } else if error.is_timeout() {
        Unreachable::Timeout
    } else if tls_failed {
        Unreachable::Tls
    } else {
        Unreachable::classify(&text)
    };
    ClientError::Network { cause, detail: text }
}

/// What a party refused by a server's certificate should know: where its trust in the server
/// comes from, and how to renew it if the server changed its CA on purpose.
fn untrusted_advice(trust: Option<&ServerTrust>, server: &str) -> String {
    match trust {
        Some(ServerTrust::FirstUse { pin }) => format!(
            "This party pinned the certificate authority that {server} presented on first contact, in {pin}. \
             If the server was set up again (a new data folder or CA), delete the pin (`rm {pin}`) to trust \
             the CA it presents on the next connection (compare its fingerprint with the one the server \
             logs at start), or give the server's tls/ca.pem with --server-ca; if not, someone else may be \
             answering at that address",
            pin = pin.display()
        ),
        Some(ServerTrust::Ca(_)) => format!(
            "The certificate authority this party was given (--server-ca or IDLEGRID_SERVER_CA) is not the one \
             {server} uses: give the server's current one (tls/ca.pem in its data folder)"
        ),
        None => "Give the server's certificate authority (--server-ca)".to_string(),
    }
}

fn tls_error(error: idlegrid_pki::PkiError) -> ClientError {
    ClientError::Protocol(error.to_string())
}

async fn failure(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error);
    // An endpoint that does not exist: the address leads to another program (a web server, a
    // proxy without the route) or has a path it should not. Every Idlegrid endpoint a party
    // calls exists, so this is never a missing job or element.
    let no_endpoint = match &body {
        Ok(report) => report.message.starts_with("no such endpoint"),
        Err(_) => true,
    };
    if status == 404 && no_endpoint {
        let path = url.path().to_string();
        let mut base = url;
        base.set_path("");
        base.set_query(None);
        return ClientError::NotAServer {
            url: base.as_str().trim_end_matches('/').to_string(),
            detail: format!("HTTP 404 for {path}"),
        };
    }
    let report = body.unwrap_or_else(|_| {
        ErrorReport::new(ErrorCode::Internal, format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()))
    });
    ClientError::Api { status, report }
}

/// Idle pooled connections are dropped well before the server closes them (its header read
/// timeout, 10 s by default, also runs between requests): reusing one the server is closing
/// fails the request with "connection closed before message completed".
const POOL_IDLE: Duration = Duration::from_secs(5);
/// Attempts at an element upload whose connection was lost, and the first pause between them
/// (doubled each time).
const UPLOAD_ATTEMPTS: u32 = 5;
const UPLOAD_RETRY_PAUSE: Duration = Duration::from_millis(200);

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).pool_idle_timeout(POOL_IDLE).tcp_nodelay(true)
}

/// A certificate is renewed once less than a third of its validity is left.
fn renewal_due(expires: SystemTime, now: SystemTime) -> bool {
    expires.duration_since(now).map(|left| left < idlegrid_pki::PARTY_CERTIFICATE_VALIDITY / 3).unwrap_or(true)
}

impl Transport {
    /// `server` is the base URL (`https://host:7700`, or `http://` for a development
    /// server), with how to trust it for HTTPS (see [`Endpoint`]).
    pub fn new(server: impl Into<Endpoint>, identity: Identity) -> Result<Transport, ClientError> {
        let endpoint: Endpoint = server.into();
        endpoint.check()?;
        idlegrid_pki::install_default_provider();
        let ca_pem = match endpoint.trust() {
            Some(ServerTrust::Ca(pem)) => Some(pem.clone()),
            Some(ServerTrust::FirstUse { pin }) => match std::fs::read_to_string(pin) {
                Ok(pem) => Some(pem),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(ClientError::Io(format!("cannot read the pinned server CA {}: {e}", pin.display())));
                }
            },
            None => None,
        };
        let http = if !endpoint.is_tls() {
            Some(http_builder().build().map_err(network)?)
        } else if let Some(pem) = &ca_pem {
            Some(tls_client(pem, None)?)
        } else {
            None
        };
        let shared = Shared {
            endpoint: endpoint.clone(),
            http: RwLock::new(http),
            certificate: Mutex::new(None),
            ca_pem: Mutex::new(ca_pem),
            current: std::sync::atomic::AtomicUsize::new(0),
        };
        let bases: Vec<String> = endpoint.urls().map(str::to_string).collect();
        Ok(Transport { bases: bases.into(), identity, shared: Arc::new(shared) })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The instance requests go to now.
    pub fn server(&self) -> &str {
        self.base()
    }

    fn base(&self) -> &str {
        &self.bases[self.shared.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    /// A request that did not reach the server: with several instances, the next request goes
    /// to the next one (they share everything, so the session carries on there).
    fn unreachable(&self, error: reqwest::Error) -> ClientError {
        if self.bases.len() > 1 && (error.is_connect() || error.is_timeout() || error.is_request()) {
            let next = self.shared.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            tracing::warn!(failed = %error, next = %self.bases[next % self.bases.len()], "server instance unreachable; switching");
        }
        match network(error) {
            ClientError::Untrusted(text) => ClientError::Untrusted(format!(
                "{text}. {}",
                untrusted_advice(self.shared.endpoint.trust(), self.base())
            )),
            other => other,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    fn http(&self) -> reqwest::Client {
        // Before registration over TLS with an unknown CA there is no client yet: requests go
        // through one that trusts nothing, so they fail with a TLS error naming the problem.
        if let Some(client) = self.shared.http.read().unwrap_or_else(|p| p.into_inner()).clone() {
            return client;
        }
        http_builder().tls_backend_preconfigured(untrusting_config()).build().unwrap_or_else(|_| reqwest::Client::new())
    }

    fn signed(&self, method: Method, path_and_query: &str, body_sha256_hex: &str) -> reqwest::RequestBuilder {
        let headers = self.identity.sign(method.as_str(), path_and_query, now_ms(), body_sha256_hex);
        let request = self
            .http()
            .request(method, format!("{}{}", self.base(), path_and_query))
            .header(wire::HEADER_ID, headers.id)
            .header(wire::HEADER_TIME, headers.time_ms)
            .header(wire::HEADER_SIGNATURE, headers.signature);
        // Within a traced span, the server's span for this request joins the trace.
        match idlegrid_telemetry::current() {
            Some(trace) => request.header(idlegrid_protocol::trace::HEADER, trace.as_str()),
            None => request,
        }
    }

    /// The server's CA: given, pinned, or taken from the server on first use and pinned.
    async fn server_ca(&self) -> Result<String, ClientError> {
        if let Some(pem) = self.shared.ca_pem.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(pem);
        }
        let Some(ServerTrust::FirstUse { pin }) = self.shared.endpoint.trust() else {
            return Err(ClientError::Protocol(format!("no certificate authority to trust for {}", self.base())));
        };
        let (host, port) = self.shared.endpoint.host_port()?;
        let pem = idlegrid_pki::fetch_server_ca(&host, port, Duration::from_secs(10)).await.map_err(|e| {
            let detail = e.to_string();
            ClientError::Network { cause: Unreachable::classify(&detail), detail }
        })?;
        idlegrid_pki::write_private(pin, pem.as_bytes()).map_err(tls_error)?;
        let fingerprint = idlegrid_pki::pem_fingerprint(&pem).map_err(tls_error)?;
        tracing::warn!(
            server = %self.base(),
            %fingerprint,
            pinned = %pin.display(),
            "trusting the server's certificate authority on first use; compare the fingerprint with the one the server logs"
        );
        *self.shared.ca_pem.lock().unwrap_or_else(|p| p.into_inner()) = Some(pem.clone());
        Ok(pem)
    }

    /// Register this identity (idempotent). Over TLS this also obtains the client certificate
    /// that later requests present.
    pub async fn register(&self, role: Role, name: &str) -> Result<RegisterResponse, ClientError> {
        let tls = self.shared.endpoint.is_tls();
        let csr = if tls {
            Some(idlegrid_pki::party_request(&self.identity.private_key_pkcs8_der()).map_err(tls_error)?)
        } else {
            None
        };
        let request = RegisterRequest { role, public_key: self.identity.public_key_hex(), name: name.to_string(), csr };
        let http = if tls {
            let ca = self.server_ca().await?;
            let anonymous = tls_client(&ca, None)?;
            self.shared.http.write().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| anonymous.clone());
            anonymous
        } else {
            self.http()
        };
        let response = http
            .post(format!("{}/v1/register", self.base()))
            .json(&request)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let url = response.url().clone();
        let registered: RegisterResponse = decode(response).await.map_err(|error| match error {
            ClientError::Protocol(detail) => ClientError::NotAServer {
                url: self.base().to_string(),
                detail: format!("its answer to {} is not an Idlegrid registration: {detail}", url.path()),
            },
            other => other,
        })?;
        if tls {
            let certificate = registered
                .certificate
                .as_deref()
                .ok_or_else(|| ClientError::Protocol("the server issued no certificate at registration".into()))?;
            let expires = idlegrid_pki::not_after(certificate).map_err(tls_error)?;
            let ca = self.server_ca().await?;
            let client = tls_client(&ca, Some((certificate, &self.identity.private_key_pkcs8_der())))?;
            *self.shared.http.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
            *self.shared.certificate.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Certificate { expires, role, name: name.to_string() });
        }
        Ok(registered)
    }

    /// Renew the client certificate when it is getting old (long-running engines).
    async fn renew_if_due(&self) {
        let due = self
            .shared
            .certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|c| renewal_due(c.expires, SystemTime::now()));
        if let Some(certificate) = due
            && let Err(error) = self.register(certificate.role, &certificate.name).await
        {
            tracing::warn!(%error, "cannot renew the client certificate yet; the current one stays in use");
        }
    }

    /// A signed JSON request; `timeout` bounds the whole exchange.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        self.renew_if_due().await;
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?,
            None => Vec::new(),
        };
        let mut request = self.signed(method, path_and_query, &body_hash(&bytes)).timeout(timeout);
        if body.is_some() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            // Signed over the bytes the server reads once it has decompressed them.
            request = match crate::compress::gzip_if_smaller(&bytes) {
                Some(compressed) => request.header(reqwest::header::CONTENT_ENCODING, "gzip").body(compressed),
                None => request.body(bytes),
            };
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        decode(response).await
    }

    /// A signed request whose answer is text (CSV exports).
    pub async fn call_text(
        &self,
        method: Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let response = self
            .signed(method, path_and_query, &body_hash(b""))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        response.text().await.map_err(network)
    }

    /// A signed request whose answer has no body.
    pub async fn call_empty(&self, method: Method, path_and_query: &str, timeout: Duration) -> Result<(), ClientError> {
        let response = self
            .signed(method, path_and_query, &body_hash(b""))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() { Ok(()) } else { Err(failure(response).await) }
    }

    /// Size of an element if this party already has it on the server.
    pub async fn element_size(&self, hash: &ElementHash) -> Result<Option<u64>, ClientError> {
        self.renew_if_due().await;
        let path = format!("/v1/elements/{hash}");
        let response =
            self.signed(Method::HEAD, &path, &body_hash(b"")).send().await.map_err(|e| self.unreachable(e))?;
        match response.status() {
            StatusCode::OK => {
                let size = response
                    .headers()
                    .get(wire::HEADER_ELEMENT_SIZE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                size.map(Some).ok_or_else(|| ClientError::Protocol("the server did not say the element's size".into()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(failure(response).await),
        }
    }

    /// Upload bytes as an element (skipped when the server has them for this party already).
    /// An executable is first stripped of its custom sections (names, producers, debug
    /// information: P6.3), so the element, and the hash returned for task specs, are those of
    /// the stripped module; bytes that are not a valid WebAssembly module are refused.
    pub async fn upload(&self, bytes: Bytes, kind: ElementKind, name: &str) -> Result<ElementRef, ClientError> {
        let bytes = match kind {
            ElementKind::Executable => strip(bytes, name).await?,
            ElementKind::Data => bytes,
        };
        self.upload_verbatim(bytes, kind, name).await
    }

    /// Upload exactly these bytes, even as an executable: nothing is stripped or checked.
    /// For tests of the engines' defences against broken modules; [`Transport::upload`] is the
    /// way to ship a task.
    pub async fn upload_verbatim(
        &self,
        bytes: Bytes,
        kind: ElementKind,
        name: &str,
    ) -> Result<ElementRef, ClientError> {
        let hash = ElementHash::of(&bytes);
        // Compressed off the runtime's threads: results and checkpoints may be large.
        let original = bytes.clone();
        let compressed = tokio::task::spawn_blocking(move || crate::compress::gzip_if_smaller(&original))
            .await
            .map_err(|e| ClientError::Io(format!("compression failed: {e}")))?
            .map(Bytes::from);
        // Elements are content-addressed, so sending one again is harmless: a connection lost
        // on the way is retried a few times before the caller hears of it.
        let mut pause = UPLOAD_RETRY_PAUSE;
        for attempt in 1.. {
            match self.put_element(&hash, kind, name, &bytes, compressed.as_ref()).await {
                Err(error @ ClientError::Network { .. }) if attempt < UPLOAD_ATTEMPTS => {
                    tracing::debug!(%error, attempt, element = %hash, "element upload interrupted; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                outcome => return outcome,
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// One attempt at an upload: nothing is sent if the server has the element already.
    async fn put_element(
        &self,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        bytes: &Bytes,
        compressed: Option<&Bytes>,
    ) -> Result<ElementRef, ClientError> {
        if let Some(size) = self.element_size(hash).await? {
            return Ok(ElementRef { hash: *hash, size });
        }
        let request = self.signed(Method::PUT, &upload_path(hash, kind, name), &hash.to_string());
        let request = match compressed {
            Some(compressed) => request.header(reqwest::header::CONTENT_ENCODING, "gzip").body(compressed.clone()),
            None => request.body(bytes.clone()),
        };
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        decode(response).await
    }

    /// Send `gzipped` as the compressed body of the element `hash`, whatever it holds: for
    /// tests of the server's defences (its limits count the bytes after decompression).
    /// [`Transport::upload`] compresses what it sends by itself.
    pub async fn upload_gzipped_verbatim(
        &self,
        hash: &ElementHash,
        kind: ElementKind,
        gzipped: Bytes,
    ) -> Result<ElementRef, ClientError> {
        let response = self
            .signed(Method::PUT, &upload_path(hash, kind, ""), &hash.to_string())
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(gzipped)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(response).await
    }

    /// Upload a file as an element, hashing it first and then streaming it. An executable is
    /// read whole and stripped first, as by [`Transport::upload`].
    pub async fn upload_file(&self, file: &Path, kind: ElementKind, name: &str) -> Result<ElementRef, ClientError> {
        if kind == ElementKind::Executable {
            let bytes = tokio::fs::read(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
            return self.upload(bytes.into(), kind, name).await;
        }
        let (hash, size) = hash_file(file).await?;
        if let Some(size) = self.element_size(&hash).await? {
            return Ok(ElementRef { hash, size });
        }
        let handle =
            tokio::fs::File::open(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(handle, 256 * 1024);
        let path = upload_path(&hash, kind, name);
        let response = self
            .signed(Method::PUT, &path, &hash.to_string())
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(response).await
    }

    /// Download an element; `ticket` is required for engines.
    pub async fn download(
        &self,
        hash: &ElementHash,
        ticket: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        self.renew_if_due().await;
        let path = format!("/v1/elements/{hash}");
        let mut request = self.signed(Method::GET, &path, &body_hash(b""));
        if let Some(ticket) = ticket {
            request = request.header(wire::HEADER_TICKET, ticket);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        Ok(response.bytes_stream().map(|chunk| chunk.map_err(network)))
    }

    /// Download a whole element into memory and verify its hash.
    pub async fn download_bytes(
        &self,
        element: &ElementRef,
        ticket: Option<&str>,
        limit: u64,
    ) -> Result<Vec<u8>, ClientError> {
        if element.size > limit {
            return Err(ClientError::Protocol(format!(
                "element {} of {} bytes exceeds the limit of {limit}",
                element.hash, element.size
            )));
        }
        let mut stream = Box::pin(self.download(&element.hash, ticket).await?);
        let mut bytes = Vec::with_capacity(element.size as usize);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
            if bytes.len() as u64 > limit {
                return Err(ClientError::Protocol(format!("element {} is larger than announced", element.hash)));
            }
        }
        if ElementHash::of(&bytes) != element.hash {
            return Err(ClientError::Protocol(format!("element {} arrived corrupted (hash mismatch)", element.hash)));
        }
        Ok(bytes)
    }
}

/// An executable without its custom sections, off the async threads (validating a large
/// module takes a while).
async fn strip(bytes: Bytes, name: &str) -> Result<Bytes, ClientError> {
    let stripped = tokio::task::spawn_blocking(move || crate::strip::strip_executable(&bytes))
        .await
        .map_err(|e| ClientError::Io(format!("stripping the executable failed: {e}")))?;
    let invalid = |reason: String| ClientError::InvalidExecutable {
        name: if name.is_empty() { "(unnamed)".into() } else { name.to_string() },
        reason,
    };
    stripped.map(Bytes::from).map_err(|e| invalid(e.to_string()))
}

fn upload_path(hash: &ElementHash, kind: ElementKind, name: &str) -> String {
    let name: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    format!("/v1/elements/{hash}?kind={}&name={name}", kind.as_str())
}

/// SHA-256 and size of a file, read in chunks.
pub async fn hash_file(file: &Path) -> Result<(ElementHash, u64), ClientError> {
    use tokio::io::AsyncReadExt;
    let mut handle =
        tokio::fs::File::open(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = handle.read(&mut buffer).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((ElementHash::from_bytes(hasher.finalize().into()), size))
}

async fn decode<R: DeserializeOwned>(response: reqwest::Response) -> Result<R, ClientError> {
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let bytes = response.bytes().await.map_err(network)?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("cannot decode the answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_executable_that_is_not_a_module_is_refused_by_name() {
        let error = strip(Bytes::from_static(b"#!/bin/sh\necho hello\n"), "script.sh").await.unwrap_err();
        assert!(matches!(&error, ClientError::InvalidExecutable { name, .. } if name == "script.sh"), "{error:?}");
        assert!(!error.is_transient());
        let text = error.to_string();
        assert!(text.contains("'script.sh'") && text.contains("not a valid WebAssembly module"), "{text}");
        let module = strip(Bytes::from_static(b"\0asm\x01\0\0\0\0\x05\x04name"), "").await.unwrap();
        assert_eq!(&module[..], b"\0asm\x01\0\0\0", "a custom section alone goes");
    }

    #[test]
    fn a_refused_certificate_says_where_the_trust_comes_from_and_how_to_renew_it() {
        let pin = std::path::PathBuf::from("/home/me/.idlegrid/servers/example.org_7700.ca.pem");
        let advice = untrusted_advice(Some(&ServerTrust::FirstUse { pin: pin.clone() }), "https://example.org:7700");
        assert!(advice.contains("rm /home/me/.idlegrid/servers/example.org_7700.ca.pem"), "{advice}");
        assert!(advice.contains("https://example.org:7700") && advice.contains("--server-ca"), "{advice}");
        let advice = untrusted_advice(Some(&ServerTrust::Ca("PEM".into())), "https://example.org:7700");
        assert!(advice.contains("--server-ca or IDLEGRID_SERVER_CA") && advice.contains("tls/ca.pem"), "{advice}");
    }
}
