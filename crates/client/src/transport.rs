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

use crate::ClientError;

/// An HTTP client that signs every request with the party's key.
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    base: String,
    identity: Identity,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("base", &self.base).field("identity", &self.identity).finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn network(error: reqwest::Error) -> ClientError {
    ClientError::Network(error.to_string())
}

async fn failure(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let report = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or_else(|_| ErrorReport::new(ErrorCode::Internal, format!("HTTP {status}: {}", text.chars().take(300).collect::<String>())));
    ClientError::Api { status, report }
}

impl Transport {
    /// `server` is the base URL, for example `http://127.0.0.1:7700`.
    pub fn new(server: &str, identity: Identity) -> Result<Transport, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Protocol(format!("server address '{server}' must start with http:// or https://")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(network)?;
        Ok(Transport { http, base, identity })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    fn signed(&self, method: Method, path_and_query: &str, body_sha256_hex: &str) -> reqwest::RequestBuilder {
        let headers = self.identity.sign(method.as_str(), path_and_query, now_ms(), body_sha256_hex);
        self.http
            .request(method, format!("{}{}", self.base, path_and_query))
            .header(wire::HEADER_ID, headers.id)
            .header(wire::HEADER_TIME, headers.time_ms)
            .header(wire::HEADER_SIGNATURE, headers.signature)
    }

    /// Register this identity (idempotent).
    pub async fn register(&self, role: Role, name: &str) -> Result<RegisterResponse, ClientError> {
        let request = RegisterRequest { role, public_key: self.identity.public_key_hex(), name: name.to_string() };
        let response = self.http.post(format!("{}/v1/register", self.base)).json(&request).send().await.map_err(network)?;
        decode(response).await
    }

    /// A signed JSON request; `timeout` bounds the whole exchange.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?,
            None => Vec::new(),
        };
        let mut request = self.signed(method, path_and_query, &body_hash(&bytes)).timeout(timeout);
        if body.is_some() {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        let response = request.send().await.map_err(network)?;
        decode(response).await
    }

    /// A signed request whose answer is text (CSV exports).
    pub async fn call_text(&self, method: Method, path_and_query: &str, timeout: Duration) -> Result<String, ClientError> {
        let response = self.signed(method, path_and_query, &body_hash(b"")).timeout(timeout).send().await.map_err(network)?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        response.text().await.map_err(network)
    }

    /// A signed request whose answer has no body.
    pub async fn call_empty(&self, method: Method, path_and_query: &str, timeout: Duration) -> Result<(), ClientError> {
        let response = self.signed(method, path_and_query, &body_hash(b"")).timeout(timeout).send().await.map_err(network)?;
        if response.status().is_success() { Ok(()) } else { Err(failure(response).await) }
    }

    /// Size of an element if this party already has it on the server.
    pub async fn element_size(&self, hash: &ElementHash) -> Result<Option<u64>, ClientError> {
        let path = format!("/v1/elements/{hash}");
        let response = self.signed(Method::HEAD, &path, &body_hash(b"")).send().await.map_err(network)?;
        match response.status() {
            StatusCode::OK => {
                let size = response.headers().get(wire::HEADER_ELEMENT_SIZE).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                size.map(Some).ok_or_else(|| ClientError::Protocol("the server did not say the element's size".into()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(failure(response).await),
        }
    }

    /// Upload bytes as an element (skipped when the server has them for this party already).
    pub async fn upload(&self, bytes: Bytes, kind: ElementKind, name: &str) -> Result<ElementRef, ClientError> {
        let hash = ElementHash::of(&bytes);
        if let Some(size) = self.element_size(&hash).await? {
            return Ok(ElementRef { hash, size });
        }
        let path = upload_path(&hash, kind, name);
        let response = self.signed(Method::PUT, &path, &hash.to_string()).body(bytes).send().await.map_err(network)?;
        decode(response).await
    }

    /// Upload a file as an element, hashing it first and then streaming it.
    pub async fn upload_file(&self, file: &Path, kind: ElementKind, name: &str) -> Result<ElementRef, ClientError> {
        let (hash, size) = hash_file(file).await?;
        if let Some(size) = self.element_size(&hash).await? {
            return Ok(ElementRef { hash, size });
        }
        let handle = tokio::fs::File::open(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(handle, 256 * 1024);
        let path = upload_path(&hash, kind, name);
        let response = self
            .signed(Method::PUT, &path, &hash.to_string())
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(network)?;
        decode(response).await
    }

    /// Download an element; `ticket` is required for engines.
    pub async fn download(
        &self,
        hash: &ElementHash,
        ticket: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let path = format!("/v1/elements/{hash}");
        let mut request = self.signed(Method::GET, &path, &body_hash(b""));
        if let Some(ticket) = ticket {
            request = request.header(wire::HEADER_TICKET, ticket);
        }
        let response = request.send().await.map_err(network)?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        Ok(response.bytes_stream().map(|chunk| chunk.map_err(network)))
    }

    /// Download a whole element into memory and verify its hash.
    pub async fn download_bytes(&self, element: &ElementRef, ticket: Option<&str>, limit: u64) -> Result<Vec<u8>, ClientError> {
        if element.size > limit {
            return Err(ClientError::Protocol(format!("element {} of {} bytes exceeds the limit of {limit}", element.hash, element.size)));
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

fn upload_path(hash: &ElementHash, kind: ElementKind, name: &str) -> String {
    let name: String = name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("/v1/elements/{hash}?kind={}&name={name}", kind.as_str())
}

/// SHA-256 and size of a file, read in chunks.
pub async fn hash_file(file: &Path) -> Result<(ElementHash, u64), ClientError> {
    use tokio::io::AsyncReadExt;
    let mut handle = tokio::fs::File::open(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
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
