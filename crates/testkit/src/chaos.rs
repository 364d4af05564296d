//! A fault-injecting HTTP/1.1 proxy for channel-chaos tests.
//!
//! [`ChaosProxy`] stands between parties (clients, engines) and the server. It reads each
//! request whole, then, with the configured probabilities, injects at most one fault:
//!
//! - **drop request**: the connection is closed; the server never sees the request;
//! - **drop response**: the server processes the request, the answer is lost (connection
//!   closed): the case that sequence numbers and retransmission exist for;
//! - **duplicate**: the server gets the request twice (concurrently); the party gets one of the
//!   two answers, chosen at random;
//! - **delay**: the request waits up to `max_delay` before it is forwarded;
//! - **reorder**: the request, or its answer, is held until a later request has gone through
//!   (or `max_delay` passed), so that requests and answers overtake each other;
//! - **truncate**: the answer is cut in the middle of its body and the connection reset.
//!
//! Decisions come from one seeded random generator, so a failing seed can be replayed (the
//! interleaving of concurrent requests still varies). [`ChaosStats`] counts what was done,
//! so that a test can check that the faults it relies on really happened.
//!
//! With recording on ([`ChaosProxy::set_recording`], or [`ChaosProxy::recorder`] for a plain
//! relay that records), every answer forwarded to the party is kept as an [`Exchange`], with
//! its request: a test can then inspect everything a party received (secrecy tests).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Probabilities of each fault, per request (at most one fault per request).
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub drop_request: f64,
    pub drop_response: f64,
    pub duplicate: f64,
    pub delay: f64,
    pub reorder: f64,
    pub truncate: f64,
    /// Longest delay, and longest hold of a reordered request or answer.
    pub max_delay: Duration,
}

impl ChaosConfig {
    /// `rate` (0.0..=1.0) of requests get a fault, spread evenly over the six kinds.
    pub fn with_rate(rate: f64, seed: u64) -> ChaosConfig {
        let each = rate.clamp(0.0, 1.0) / 6.0;
        ChaosConfig {
            seed,
            drop_request: each,
            drop_response: each,
            duplicate: each,
            delay: each,
            reorder: each,
            truncate: each,
            max_delay: Duration::from_millis(300),
        }
    }

    /// No faults: a plain relay.
    pub fn none() -> ChaosConfig {
        ChaosConfig::with_rate(0.0, 0)
    }

    pub fn total_rate(&self) -> f64 {
        self.drop_request + self.drop_response + self.duplicate + self.delay + self.reorder + self.truncate
    }
}

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub requests: AtomicU64,
    pub dropped_requests: AtomicU64,
    pub dropped_responses: AtomicU64,
    pub duplicated: AtomicU64,
    pub delayed: AtomicU64,
    pub reordered: AtomicU64,
    pub truncated: AtomicU64,
    /// Requests that could not be forwarded because the server was unreachable.
    pub upstream_errors: AtomicU64,
}

/// A snapshot of [`ChaosStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChaosCounts {
    pub requests: u64,
    pub dropped_requests: u64,
    pub dropped_responses: u64,
    pub duplicated: u64,
    pub delayed: u64,
    pub reordered: u64,
    pub truncated: u64,
    pub upstream_errors: u64,
}

impl ChaosCounts {
    pub fn faults(&self) -> u64 {
        self.dropped_requests
            + self.dropped_responses
            + self.duplicated
            + self.delayed
            + self.reordered
            + self.truncated
    }
}

impl ChaosStats {
    pub fn snapshot(&self) -> ChaosCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChaosCounts {
            requests: get(&self.requests),
            dropped_requests: get(&self.dropped_requests),
            dropped_responses: get(&self.dropped_responses),
            duplicated: get(&self.duplicated),
            delayed: get(&self.delayed),
            reordered: get(&self.reordered),
            truncated: get(&self.truncated),
            upstream_errors: get(&self.upstream_errors),
        }
    }
}

/// One request and the answer the party received, as recorded by the proxy.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path_and_query: String,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub request_body: Bytes,
    pub status: u16,
    /// The answer's headers as forwarded (hop-by-hop headers left out).
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// The answer's body as it went over the wire to the party: possibly compressed, and only
    /// the part that was sent when the answer was truncated.
    pub response_body: Bytes,
}

impl Exchange {
    /// A response header's value, if present (first occurrence).
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        self.response_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The answer's body as the party reads it: decompressed when its `Content-Encoding` is
    /// gzip. Fails on an encoding it does not know or a body that does not decode.
    pub fn response_content(&self) -> std::io::Result<Vec<u8>> {
        match self.response_header("content-encoding").map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()) {
            None => Ok(self.response_body.to_vec()),
            Some(encoding) if encoding == "identity" => Ok(self.response_body.to_vec()),
            Some(encoding) if encoding == "gzip" || encoding == "x-gzip" => {
                use std::io::Read;
                let mut content = Vec::new();
                flate2::read::MultiGzDecoder::new(&self.response_body[..]).read_to_end(&mut content)?;
                Ok(content)
            }
            Some(other) => Err(std::io::Error::other(format!("cannot decode Content-Encoding: {other}"))),
        }
    }
}

fn header_list(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    DropRequest,
    DropResponse,
    Duplicate,
    Delay(Duration),
    ReorderRequest,
    ReorderResponse,
    Truncate,
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

struct Shared {
    upstream: SocketAddr,
    config: Mutex<ChaosConfig>,
    enabled: AtomicBool,
    rng: Mutex<StdRng>,
    stats: Arc<ChaosStats>,
    /// Idle connections to the server.
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Counts requests forwarded and answers delivered, for holding reordered ones.
    passed: AtomicU64,
    passed_notify: Notify,
    /// What was forwarded to parties, while recording.
    recording: Mutex<Option<Vec<Exchange>>>,
}

/// A running proxy; stops accepting when dropped (connections already open finish).
pub struct ChaosProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ChaosProxy {
    /// Listen on a free local port and relay to `upstream` with `config`'s faults.
    pub async fn start(upstream: SocketAddr, config: ChaosConfig) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config: Mutex::new(config),
            enabled: AtomicBool::new(true),
            stats: Arc::new(ChaosStats::default()),
            pool: Mutex::new(Vec::new()),
            passed: AtomicU64::new(0),
            passed_notify: Notify::new(),
            recording: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(ChaosProxy { addr, shared, accept })
    }

    /// A plain relay (no faults) that records every exchange from the start.
    pub async fn recorder(upstream: SocketAddr) -> std::io::Result<ChaosProxy> {
        let proxy = ChaosProxy::start(upstream, ChaosConfig::none()).await?;
        proxy.set_enabled(false);
        proxy.set_recording(true);
        Ok(proxy)
    }

    /// Start (keeping what was recorded so far) or stop recording exchanges.
    pub fn set_recording(&self, on: bool) {
        let mut recording = self.shared.recording.lock().unwrap_or_else(|p| p.into_inner());
        match (on, recording.is_some()) {
            (true, false) => *recording = Some(Vec::new()),
            (false, true) => *recording = None,
            _ => {}
        }
    }

    /// Every exchange recorded so far, in the order the answers were forwarded.
    pub fn recorded(&self) -> Vec<Exchange> {
        self.shared.recording.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: give this to parties instead of the server's address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> ChaosCounts {
        self.shared.stats.snapshot()
    }

    /// Turn fault injection on or off (off: a plain relay).
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::SeqCst);
    }

    pub fn set_config(&self, config: ChaosConfig) {
        *self.shared.rng.lock().unwrap_or_else(|p| p.into_inner()) = StdRng::seed_from_u64(config.seed);
        *self.shared.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            // An error here is a connection the proxy (or the party) cut: expected.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn chaos_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, format!("chaos: {what}"))
}

impl Shared {
    fn decide(&self) -> Fault {
        if !self.enabled.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let config = self.config.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut roll: f64 = rng.random();
        let delay = Duration::from_millis(rng.random_range(0..=config.max_delay.as_millis().max(1) as u64));
        let mut pick = |p: f64| {
            if roll < p {
                true
            } else {
                roll -= p;
                false
            }
        };
        if pick(config.drop_request) {
            Fault::DropRequest
        } else if pick(config.drop_response) {
            Fault::DropResponse
        } else if pick(config.duplicate) {
            Fault::Duplicate
        } else if pick(config.delay) {
            Fault::Delay(delay)
        } else if pick(config.reorder) {
            if rng.random_bool(0.5) { Fault::ReorderRequest } else { Fault::ReorderResponse }
        } else if pick(config.truncate) {
            Fault::Truncate
        } else {
            Fault::None
        }
    }

    fn coin(&self) -> bool {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).random_bool(0.5)
    }

    fn max_delay(&self) -> Duration {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).max_delay
    }

    /// Keep what the party is about to receive, when recording.
    fn record(
        &self,
        parts: &hyper::http::request::Parts,
        body: &Bytes,
        response: &hyper::http::response::Parts,
        sent: &Bytes,
    ) {
        let mut recording = self.recording.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(exchanges) = recording.as_mut() {
            exchanges.push(Exchange {
                method: parts.method.as_str().to_string(),
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".to_string()),
                request_headers: header_list(&parts.headers),
                request_body: body.clone(),
                status: response.status.as_u16(),
                response_headers: header_list(&response.headers),
                response_body: sent.clone(),
            });
        }
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Something went through: release whoever waits to be overtaken.
    fn pass(&self) {
        self.passed.fetch_add(1, Ordering::SeqCst);
        self.passed_notify.notify_waiters();
    }

    /// Wait until something else went through, at most `max_delay` (doubled, so a quiet
    /// channel still moves).
    async fn hold(&self) {
        let start = self.passed.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + self.max_delay() * 2;
        loop {
            let notified = self.passed_notify.notified();
            if self.passed.load(Ordering::SeqCst) > start {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    async fn connection(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        loop {
            let idle = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut sender) => {
                    if !sender.is_closed() && sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => break,
            }
        }
        let stream = TcpStream::connect(self.upstream).await?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Send one copy of the request to the server and read its whole answer.
    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: &Bytes,
    ) -> std::io::Result<(hyper::http::response::Parts, Bytes)> {
        let mut sender = self.connection().await.inspect_err(|_| self.count(&self.stats.upstream_errors))?;
        let mut request = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".to_string()));
        if let Some(headers) = request.headers_mut() {
            copy_headers(&parts.headers, headers);
        }
        let request = request.body(Full::new(body.clone())).map_err(std::io::Error::other)?;
        let response = sender.send_request(request).await.map_err(|e| {
            self.count(&self.stats.upstream_errors);
            std::io::Error::other(e)
        })?;
        let (response_parts, incoming) = response.into_parts();
        let bytes = incoming.collect().await.map_err(std::io::Error::other)?.to_bytes();
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
        Ok((response_parts, bytes))
    }
}

/// Headers that belong to one hop, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// A body that sends its first half and then fails: hyper resets the connection.
struct Truncated {
    data: Option<Bytes>,
}

impl Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut().data.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => Poll::Ready(Some(Err(chaos_error("connection reset in the middle of the answer")))),
        }
    }
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never: Infallible| match never {}).boxed()
}

fn respond(parts: hyper::http::response::Parts, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::builder().status(parts.status).version(hyper::Version::HTTP_11);
    if let Some(headers) = response.headers_mut() {
        copy_headers(&parts.headers, headers);
    }
    response.body(body).unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<ProxyBody>, std::io::Error> {
    let (parts, incoming) = request.into_parts();
    let body = incoming.collect().await.map_err(std::io::Error::other)?.to_bytes();
    shared.count(&shared.stats.requests);
    let fault = shared.decide();
    let stats = &shared.stats;
    match fault {
        Fault::DropRequest => {
            shared.count(&stats.dropped_requests);
            return Err(chaos_error("request dropped"));
        }
        Fault::Delay(delay) => {
            shared.count(&stats.delayed);
            tokio::time::sleep(delay).await;
        }
        Fault::ReorderRequest => {
            shared.count(&stats.reordered);
            shared.hold().await;
        }
        _ => {}
    }
    let answer = if fault == Fault::Duplicate {
        shared.count(&stats.duplicated);
        let (a, b) = tokio::join!(shared.forward(&parts, &body), shared.forward(&parts, &body));
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(if shared.coin() { a } else { b }),
            (Ok(one), Err(_)) | (Err(_), Ok(one)) => Ok(one),
            (Err(e), Err(_)) => Err(e),
        }
    } else {
        shared.forward(&parts, &body).await
    };
    shared.pass();
    let (response_parts, bytes) = answer?;
    match fault {
        Fault::DropResponse => {
            shared.count(&stats.dropped_responses);
            Err(chaos_error("response dropped"))
        }
        Fault::Truncate if bytes.len() >= 2 => {
            shared.count(&stats.truncated);
            let half = bytes.slice(..bytes.len() / 2);
            shared.record(&parts, &body, &response_parts, &half);
            let body = Truncated { data: Some(half) }.boxed();
            Ok(respond(response_parts, body))
        }
        Fault::Truncate => {
            // Nothing to cut: lose the whole answer instead.
            shared.count(&stats.truncated);
            Err(chaos_error("response dropped (too short to truncate)"))
        }
        Fault::ReorderResponse => {
            shared.count(&stats.reordered);
            shared.hold().await;
            shared.pass();
            shared.record(&parts, &body, &response_parts, &bytes);
            Ok(respond(response_parts, full(bytes)))
        }
        _ => {
            shared.record(&parts, &body, &response_parts, &bytes);
            Ok(respond(response_parts, full(bytes)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// An upstream that answers every request on one connection with `body`, gzipped.
    async fn upstream(body: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            // The head, and the short body that comes with it.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buffer[..n]);
            }
            let compressed = gzip(body);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\nx-note: upstream\r\ncontent-length: {}\r\n\r\n",
                compressed.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&compressed).await.unwrap();
            let _ = stream.read(&mut buffer).await;
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_recorder_keeps_what_it_forwards_and_decodes_it() {
        let body: &'static [u8] = b"{\"messages\":[{\"seq\":1,\"message\":{\"type\":\"Heartbeat\"}}]}";
        let proxy = ChaosProxy::recorder(upstream(body).await).await.unwrap();
        let mut party = TcpStream::connect(proxy.addr()).await.unwrap();
        party
            .write_all(b"POST /v1/sessions/s/messages?after=0 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            .await
            .unwrap();
        // gzip output is deterministic (no timestamp): the party must end up with these bytes.
        let compressed = gzip(body);
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.ends_with(&compressed) {
            let n = tokio::time::timeout(Duration::from_secs(30), party.read(&mut buffer))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "the answer ended early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
        let recorded = proxy.recorded();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let exchange = &recorded[0];
        assert_eq!(
            (exchange.method.as_str(), exchange.path_and_query.as_str(), exchange.status),
            ("POST", "/v1/sessions/s/messages?after=0", 200)
        );
        assert_eq!(&exchange.request_body[..], b"hello");
        assert_eq!(exchange.response_header("X-Note"), Some(&b"upstream"[..]));
        assert_ne!(&exchange.response_body[..], body, "the body is kept as sent, compressed");
        assert_eq!(exchange.response_content().unwrap(), body);
        assert_eq!(&exchange.response_body[..], &compressed[..], "what the party got is what was recorded");

        proxy.set_recording(false);
        assert!(proxy.recorded().is_empty(), "stopping drops the recording");
    }
}
