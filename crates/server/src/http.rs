//! Routes, request decoding, authentication and error responses.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use idlegrid_coordinator::{Coordinator, CoordinatorError, Effects, ErrorKind, Party};
use idlegrid_protocol::auth::{Claim, body_hash};
use idlegrid_protocol::messages::{ClientToServer, ProviderToServer};
use idlegrid_protocol::wire::{
    self, ErrorBody, HealthReply, OpenSessionRequest, PollQuery, PostBatch, RawPollReply, RegisterRequest, limits,
};
use idlegrid_store::Tx;
use idlegrid_types::{ElementHash, ElementKind, JobId, Role, SessionId};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::elements::UploadError;
use crate::{AppState, now_ms};

pub(crate) type AppResult = Result<Response, Failure>;

/// An error response: status and a JSON body naming what is wrong.
pub struct Failure(pub(crate) CoordinatorError);

impl From<CoordinatorError> for Failure {
    fn from(error: CoordinatorError) -> Self {
        Failure(error)
    }
}

/// The HTTP status of each kind of refusal: chosen here, at the edge, and nowhere else.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TooSlow => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        if status.is_server_error() {
            tracing::error!(report = %self.0.report, "request failed");
        }
        let body = serde_json::to_vec(&ErrorBody { error: self.0.report }).expect("errors serialize");
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }
}

pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("replies serialize");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/register", post(register))
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{session}/messages", post(post_messages).get(poll_messages))
        .route("/v1/sessions/{session}/reset", post(reset_session))
        .route("/v1/sessions/{session}", axum::routing::delete(close_session))
        .route("/v1/elements/{hash}", put(upload_element).get(download_element).head(head_element))
        .route("/v1/account", get(get_account))
        .route("/v1/account/statement", get(get_statement))
        .route("/v1/account/barter", post(post_barter))
        .route("/v1/account/deposits", post(crate::money_http::post_deposit))
        .route("/v1/account/payouts", post(crate::money_http::post_payout))
        .route("/v1/account/requests", get(crate::money_http::get_own_requests))
        .route("/v1/ops/requests", get(crate::money_http::get_requests))
        .route("/v1/ops/requests/{request}/approve", post(crate::money_http::post_approve))
        .route("/v1/ops/requests/{request}/reject", post(crate::money_http::post_reject))
        .route("/v1/ops/credit", post(crate::money_http::post_credit))
        .route("/v1/market/offers", post(crate::market_http::post_offer).get(crate::market_http::get_offers))
        .route("/v1/market/offers/{offer}", post(crate::market_http::post_offer_update))
        .route("/v1/market/offers/{offer}/withdraw", post(crate::market_http::post_offer_withdraw))
        .route("/v1/market/offers/{offer}/platform", post(crate::market_http::post_sell_to_platform))
        .route("/v1/market/requests", post(crate::market_http::post_request).get(crate::market_http::get_requests))
        .route("/v1/market/requests/{request}/search", get(crate::market_http::get_request_search))
        .route("/v1/market/requests/{request}/withdraw", post(crate::market_http::post_request_withdraw))
        .route("/v1/market/search", post(crate::market_http::post_search))
        .route(
            "/v1/market/negotiations",
            post(crate::market_http::post_negotiation).get(crate::market_http::get_negotiations),
        )
        .route("/v1/market/negotiations/{negotiation}", get(crate::market_http::get_negotiation))
        .route("/v1/market/negotiations/{negotiation}/accept", post(crate::market_http::post_accept))
        .route("/v1/market/negotiations/{negotiation}/reject", post(crate::market_http::post_reject))
        .route("/v1/market/negotiations/{negotiation}/counter", post(crate::market_http::post_counter))
        .route("/v1/market/contracts", get(crate::market_http::get_contracts))
        .route("/v1/market/contracts/{contract}", get(crate::market_http::get_contract))
        .route("/v1/market/contracts/{contract}/sign", post(crate::market_http::post_sign))
        .route("/v1/market/contracts/{contract}/meter", post(crate::market_http::post_meter))
        .route("/v1/market/contracts/{contract}/confirm", post(crate::market_http::post_confirm))
        .route("/v1/market/contracts/{contract}/fail", post(crate::market_http::post_fail))
        .route("/v1/market/contracts/{contract}/settle", post(crate::market_http::post_settle))
        .route("/v1/market/contracts/register", post(crate::market_http::post_register))
        .route("/v1/market/draws", post(crate::market_http::post_draw))
        .route("/v1/market/contracts/{contract}/peripheral", post(crate::market_peripheral_http::post_use))
        .route("/v1/market/contracts/{contract}/peripheral/{number}", get(crate::market_peripheral_http::get_use))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{job}", get(get_job))
        .route("/v1/ops/revoke", post(post_revoke))
        .route("/v1/ops/display", post(post_display))
        .route("/v1/ops/retention", post(crate::ops_http::post_retention))
        .route("/v1/ops/engine-config", post(crate::ops_http::post_engine_config))
        .route("/v1/ops/revocations", get(get_revocations))
        .route("/v1/ops/status", get(get_status))
        .route("/v1/logs", post(post_logs))
        .route("/v1/ops/logs", get(get_logs))
        .route("/metrics", get(get_metrics))
        .route("/v1/openapi.json", get(get_openapi))
        .merge(crate::market_data_http::routes())
        .merge(crate::web::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_certificate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit_strangers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_responses))
        // Bodies are limited per route below, with errors in this API's format.
        .layer(DefaultBodyLimit::disable())
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .compress_when(tower_http::compression::predicate::SizeAbove::new(16 * 1024)),
        )
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(axum::middleware::from_fn(crate::traces::trace_requests))
        .with_state(state)
}

async fn not_found(uri: Uri) -> Failure {
    Failure(CoordinatorError::not_found(format!("no such endpoint: {}", uri.path())))
}

async fn health() -> Response {
    json_response(StatusCode::OK, &HealthReply { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, CoordinatorError> {
    let too_large = || CoordinatorError::too_large(format!("the request body exceeds the limit of {limit} bytes"));
    if let Some(length) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if crate::pace::is_too_slow(&e) {
            body_too_slow(&e.to_string())
        } else if e.to_string().contains("length limit") {
            too_large()
        } else {
            CoordinatorError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// The body did not keep the minimum pace; the connection is closed after the answer.
pub(crate) fn body_too_slow(reason: &str) -> CoordinatorError {
    CoordinatorError::new(ErrorKind::TooSlow, idlegrid_protocol::ErrorCode::BadRequest, reason.to_string())
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, CoordinatorError> {
    // The error names the field that is wrong (`messages[0].message.amount_micros`), not only
    // a line and column.
    let mut decoder = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut decoder).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            CoordinatorError::bad_request(format!("malformed JSON body: {inner}"))
        } else {
            CoordinatorError::bad_request(format!("malformed JSON body: field {path}: {inner}"))
        }
    })?;
    decoder.end().map_err(|e| CoordinatorError::bad_request(format!("malformed JSON body: {e}")))?;
    Ok(value)
}

fn parse_id<T: std::str::FromStr<Err = idlegrid_types::IdError>>(text: &str) -> Result<T, CoordinatorError> {
    text.parse().map_err(|e: idlegrid_types::IdError| CoordinatorError::bad_request(e.to_string()))
}

/// The signature headers and what they sign.
pub(crate) struct Signed {
    claim: Claim,
    method: String,
    path_and_query: String,
    body_sha256_hex: String,
}

pub(crate) fn signed(
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body_sha256_hex: String,
) -> Result<Signed, CoordinatorError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let claim = Claim::parse(get(wire::HEADER_ID), get(wire::HEADER_TIME), get(wire::HEADER_SIGNATURE))
        .map_err(|e| CoordinatorError::unauthenticated(e.to_string()))?;
    let path_and_query = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| uri.path().to_string());
    Ok(Signed { claim, method: method.as_str().to_string(), path_and_query, body_sha256_hex })
}

pub(crate) type Work<R> =
    dyn Fn(&Coordinator, &mut dyn Tx, &mut Effects, &Party, u64) -> Result<R, CoordinatorError> + Send;

impl Signed {
    /// Who signed the request, if that party may call this endpoint at all (`access::RULES`).
    fn authenticate(&self, c: &Coordinator, tx: &mut dyn Tx, now: u64) -> Result<Party, CoordinatorError> {
        let party = c.authenticate(tx, &self.claim, &self.method, &self.path_and_query, &self.body_sha256_hex, now)?;
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        crate::access::check(&self.method, path, party.role)?;
        Ok(party)
    }

    /// Check who sent the request, then do its work as that party, in one transaction.
    pub(crate) async fn run_as<R: Send + 'static>(
        self,
        state: &Arc<AppState>,
        work: Box<Work<R>>,
    ) -> Result<R, CoordinatorError> {
        let now = now_ms();
        state
            .run(move |c, tx, fx| {
                let party = self.authenticate(c, tx, now)?;
                work(c, tx, fx, &party, now)
            })
            .await
    }
}

async fn register(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> AppResult {
    let body = read_body(&headers, body, 64 * 1024).await?;
    let request: RegisterRequest = parse_json(&body)?;
    let csr = request.csr.clone();
    let public_key = request.public_key.clone();
    if state.authority.is_some() && csr.is_none() {
        return Err(CoordinatorError::bad_request(
            "registration over TLS needs `csr`: a certificate signing request for the public key, signed with it",
        )
        .into());
    }
    // The certificate is issued before anything is stored: a registration refused for its
    // CSR leaves no party behind.
    let certificate = match (&state.authority, csr) {
        (Some(authority), Some(csr)) => {
            let key = idlegrid_protocol::auth::parse_public_key(&public_key).map_err(|_| {
                CoordinatorError::bad_request("public_key must be a 64-character hex Ed25519 public key")
            })?;
            Some(
                authority
                    .issue_party(&csr, &key, std::time::SystemTime::now())
                    .map_err(|e| CoordinatorError::bad_request(format!("cannot issue a certificate: {e}")))?,
            )
        }
        _ => None,
    };
    let now = now_ms();
    let mut response = state.run(move |c, tx, _| c.register(tx, &request, now)).await?;
    response.certificate = certificate;
    Ok(json_response(StatusCode::OK, &response))
}

/// The endpoints anyone may call without an identity.
fn is_public(path: &str) -> bool {
    matches!(path, "/v1/health" | "/v1/register" | "/metrics" | "/v1/openapi.json")
}

/// Requests without an identity (public endpoints, unsigned requests) take a token of their
/// source's bucket first, registrations one of a second, stricter bucket; a request refused
/// here is answered 429 with Retry-After before anything reads its body or touches the store.
/// A signed request that fails to authenticate takes its token afterwards.
async fn limit_strangers(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(source) = request.extensions().get::<crate::listener::Remote>().map(|r| r.0.ip()) else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    // A page request with a cookie is taken for a signed-in browser until its session is
    // checked; one refused for its session takes its token afterwards, as below.
    let browser = crate::web::is_web(path) && request.headers().contains_key(header::COOKIE);
    let stranger = !browser && (is_public(path) || !request.headers().contains_key(wire::HEADER_ID));
    if stranger {
        if let Err(wait) = state.unauthenticated.check(source) {
            return too_many(wait, "requests without an identity");
        }
        if path == "/v1/register"
            && let Err(wait) = state.registrations.check(source)
        {
            return too_many(wait, "registrations");
        }
    }
    let response = next.run(request).await;
    if !stranger && response.status() == StatusCode::UNAUTHORIZED {
        let _ = state.unauthenticated.check(source);
    }
    response
}

fn too_many(wait: Duration, what: &str) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response =
        Failure(CoordinatorError::too_many(format!("too many {what} from this address; retry in {seconds} s")))
            .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Over TLS, every endpoint but health and registration needs the client certificate issued
/// at registration, and the party it names must be the one that signs the request.
async fn require_certificate(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Browsers carry no client certificate: the web manager's pages rest on its session cookie.
    if state.authority.is_none() || is_public(request.uri().path()) || crate::web::is_web(request.uri().path()) {
        return next.run(request).await;
    }
    let certified = match request.extensions().get::<crate::listener::Peer>() {
        Some(crate::listener::Peer::Tls(Some(party))) => party.clone(),
        _ => {
            return Failure(CoordinatorError::unauthenticated(
                "this request needs the client certificate issued at registration (POST /v1/register with a csr)",
            ))
            .into_response();
        }
    };
    let claimed = request.headers().get(wire::HEADER_ID).and_then(|v| v.to_str().ok());
    if claimed.is_some_and(|claimed| claimed != certified.to_string()) {
        return Failure(CoordinatorError::unauthenticated(
            "the request is signed by another party than the client certificate names",
        ))
        .into_response();
    }
    next.run(request).await
}

async fn open_session(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 64 * 1024).await?;
    // Who asks comes first: strangers learn nothing, not even what a body should be.
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let request: OpenSessionRequest =
                    if body.is_empty() { OpenSessionRequest::default() } else { parse_json(&body)? };
                c.open_session(tx, party, request.resume, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

async fn reset_session(
    State(state): State<Arc<AppState>>,
    Path(session): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let session: SessionId = parse_id(&session)?;
    let body = read_body(&headers, body, 64 * 1024).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(&state, Box::new(move |c, tx, fx, party, now| c.reset_session(tx, party, session, now, fx)))
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

async fn close_session(
    State(state): State<Arc<AppState>>,
    Path(session): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let session: SessionId = parse_id(&session)?;
    signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.close_session(tx, party, session)))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn post_messages(
    State(state): State<Arc<AppState>>,
    Path(session): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let session: SessionId = parse_id(&session)?;
    let body = read_body(&headers, body, limits::MESSAGE_BODY_BYTES_MAX).await?;
    // A traced request's tasks join its trace (the server's span of this request).
    let trace = idlegrid_telemetry::current();
    let reply = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| match party.role {
                Role::Client => {
                    let batch: PostBatch<ClientToServer> = parse_json(&body)?;
                    check_batch(batch.messages.len())?;
                    c.post_client_traced(tx, party, session, batch, trace.as_ref(), now, fx)
                }
                Role::Provider => {
                    let batch: PostBatch<ProviderToServer> = parse_json(&body)?;
                    check_batch(batch.messages.len())?;
                    let _results = crate::traces::result_spans(&batch);
                    c.post_provider(tx, party, session, batch, now, fx)
                }
                Role::Operator => Err(CoordinatorError::forbidden("operators have no message channel")),
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &reply))
}

fn check_batch(n: usize) -> Result<(), CoordinatorError> {
    if n > limits::BATCH_MESSAGES_MAX {
        return Err(CoordinatorError::too_large(format!(
            "{n} messages in one batch; at most {} allowed",
            limits::BATCH_MESSAGES_MAX
        )));
    }
    Ok(())
}

async fn poll_messages(
    State(state): State<Arc<AppState>>,
    Path(session): Path<String>,
    query: Result<Query<PollQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let session: SessionId = parse_id(&session)?;
    let Query(query) = query.map_err(|e| CoordinatorError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(limits::POLL_WAIT_MS_MAX));
    let max = query.max.unwrap_or(limits::POLL_MESSAGES_MAX).clamp(1, limits::POLL_MESSAGES_MAX);
    let signed = signed(&headers, &method, &uri, body_hash(b""))?;
    let notify = state.wakers.get(session);
    let deadline = tokio::time::Instant::now() + wait;
    let mut party: Option<Party> = None;
    let mut _slot: Option<crate::wakers::PollSlot> = None;
    loop {
        let known = party.clone();
        let now = now_ms();
        let signed_ref = Signed {
            claim: signed.claim.clone(),
            method: signed.method.clone(),
            path_and_query: signed.path_and_query.clone(),
            body_sha256_hex: signed.body_sha256_hex.clone(),
        };
        let (who, rows) = state
            .run(move |c, tx, fx| {
                let who = match &known {
                    Some(p) => p.clone(),
                    None => signed_ref.authenticate(c, tx, now)?,
                };
                let rows = c.poll(tx, &who, session, query.after, query.ack.unwrap_or(query.after), max, now, fx)?;
                Ok((who, rows))
            })
            .await?;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(poll_response(rows)?);
        }
        if _slot.is_none() {
            _slot = Some(state.polls.take(&who.id).ok_or_else(|| {
                CoordinatorError::new(
                    ErrorKind::TooMany,
                    idlegrid_protocol::ErrorCode::LimitExceeded,
                    "too many long polls waiting for this party; wait for one to return before opening another",
                )
            })?);
        }
        party = Some(who);
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.cancelled() => return Ok(poll_response(Vec::new())?),
        }
    }
}

fn poll_response(rows: Vec<idlegrid_store::OutboxRow>) -> Result<Response, CoordinatorError> {
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let message = serde_json::value::RawValue::from_string(row.body)
            .map_err(|e| CoordinatorError::internal(format!("a stored message is not JSON: {e}")))?;
        messages.push(wire::Envelope { seq: row.seq, reply_to: row.reply_to, message });
    }
    Ok(json_response(StatusCode::OK, &RawPollReply { messages }))
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn upload_element(
    State(state): State<Arc<AppState>>,
    Path(hash): Path<String>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let hash: ElementHash = parse_id(&hash)?;
    let Query(query) = query.map_err(|e| CoordinatorError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let kind: ElementKind = match query.kind.as_deref() {
        None => ElementKind::Data,
        Some(text) => {
            text.parse().map_err(|e: idlegrid_types::IdError| CoordinatorError::bad_request(e.to_string()))?
        }
    };
    let name = query.name.unwrap_or_default();
    // The signature covers the element's hash as the body hash: the bytes are checked
    // against it while they stream in.
    let (party, allowance) = signed(&headers, &method, &uri, hash.to_string())?
        .run_as(&state, Box::new(move |c, tx, _, party, _| Ok((party.clone(), c.upload_allowance(tx, party, &hash)?))))
        .await?;
    let limit = allowance.bytes_max;
    let too_large = |size: u64| match allowance.quota {
        Some(usage) => state.coordinator.quota_exceeded(usage, size),
        None => CoordinatorError::too_large(format!(
            "the element of {size} bytes or more exceeds the limit of {limit} bytes"
        )),
    };
    if let Some(length) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && length > limit
        && !headers.contains_key(header::CONTENT_ENCODING)
    {
        return Err(too_large(length).into());
    }
    // Sizes count after decompression (the body arrives decompressed), and the upload stops at
    // the limit: a small compressed body cannot expand past it.
    let size = state.elements.upload(&hash, body.into_data_stream(), limit).await.map_err(|e| match e {
        UploadError::TooLarge { limit } => too_large(limit.saturating_add(1)),
        UploadError::Body(ref reason) if reason.contains(crate::pace::TOO_SLOW) => body_too_slow(reason),
        UploadError::HashMismatch { .. } | UploadError::Body(_) => CoordinatorError::bad_request(e.to_string()),
        UploadError::Storage(_) => CoordinatorError::internal(e.to_string()),
    })?;
    let now = now_ms();
    state.run(move |c, tx, _| c.element_stored(tx, &party, &hash, size, kind, &name, now)).await?;
    Ok(json_response(StatusCode::CREATED, &idlegrid_types::ElementRef { hash, size }))
}

async fn head_element(
    State(state): State<Arc<AppState>>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let hash: ElementHash = parse_id(&hash)?;
    let known = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.element_known(tx, party, &hash)))
        .await?;
    match known {
        // A HEAD answer has no body, so its Content-Length is not reliable: the size travels
        // in its own header.
        Some(size) => Ok((StatusCode::OK, [(wire::HEADER_ELEMENT_SIZE, size.to_string())]).into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

async fn download_element(
    State(state): State<Arc<AppState>>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let hash: ElementHash = parse_id(&hash)?;
    let ticket = headers.get(wire::HEADER_TICKET).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (size, party) = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(
            &state,
            Box::new(move |c, tx, _, party, now| {
                Ok((c.authorize_download(tx, party, &hash, ticket.as_deref(), now)?, party.clone()))
            }),
        )
        .await?;
    let stream = state.elements.download(&hash).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            CoordinatorError::not_found_element(format!("element {hash} is missing from storage"))
        }
        other => CoordinatorError::internal(other.to_string()),
    })?;
    let body = if party.role == idlegrid_types::Role::Provider && size >= BANDWIDTH_SAMPLE_BYTES_MIN {
        Body::from_stream(timed_download(stream, state.clone(), party.id, size))
    } else {
        Body::from_stream(stream)
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_LENGTH, size.to_string())],
        body,
    )
        .into_response())
}

/// Downloads smaller than this say more about latency than bandwidth, and are not measured.
const BANDWIDTH_SAMPLE_BYTES_MIN: u64 = 1 << 20;

/// The stream of an engine's download, timed from its first chunk to its last: a whole download
/// becomes a sample of the engine's bandwidth to the server (P5.1). The time is what the server
/// took to hand the bytes to the socket, so a sample can read high by a socket buffer's worth;
/// samples are smoothed and capped by the scheduler's maximum.
fn timed_download(
    stream: impl futures::Stream<Item = Result<bytes::Bytes, object_store::Error>> + Send + 'static,
    state: Arc<AppState>,
    provider: idlegrid_types::PartyId,
    size: u64,
) -> impl futures::Stream<Item = Result<bytes::Bytes, object_store::Error>> + Send + 'static {
    use futures::StreamExt as _;
    let progress = Arc::new(std::sync::Mutex::new((None::<std::time::Instant>, 0u64)));
    let counted = progress.clone();
    let body = stream.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let mut p = counted.lock().unwrap_or_else(|e| e.into_inner());
            p.0.get_or_insert_with(std::time::Instant::now);
            p.1 += bytes.len() as u64;
        }
        chunk
    });
    let finish = futures::stream::once(async move {
        let (started, sent) = *progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(started) = started
            && sent == size
        {
            let seconds = started.elapsed().as_secs_f64().max(1e-3);
            let mb_per_s = size as f64 / 1e6 / seconds;
            let now = now_ms();
            if let Err(e) = state.run(move |c, tx, _| c.record_bandwidth(tx, &provider, mb_per_s, now)).await {
                tracing::warn!(error = %e, "could not record a bandwidth measurement");
            }
        }
    })
    .filter_map(|()| async { None });
    body.chain(finish)
}

async fn list_jobs(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> AppResult {
    let jobs = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(|c, tx, _, party, _| c.jobs_of(tx, party)))
        .await?;
    Ok(json_response(StatusCode::OK, &jobs))
}

async fn get_job(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let job: JobId = parse_id(&job)?;
    let info = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.job_of(tx, party, job)))
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

async fn get_account(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> AppResult {
    let info = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(|c, tx, _, party, _| c.account_info(tx, &party.id)))
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

#[derive(Deserialize)]
struct StatementParams {
    #[serde(flatten)]
    query: idlegrid_coordinator::money::StatementQuery,
    #[serde(default)]
    format: Option<String>,
}

/// A client's charges by job, or a provider's earnings by engine, by period (P7.7); JSON, or
/// CSV with `format=csv`.
async fn get_statement(
    State(state): State<Arc<AppState>>,
    query: Result<Query<StatementParams>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let Query(params) =
        query.map_err(|e| CoordinatorError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let statement_query = params.query;
    let statement = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.statement(tx, party, statement_query)))
        .await?;
    match params.format.as_deref() {
        Some("csv") => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/csv")], idlegrid_ledger::statement_csv(&statement))
                .into_response())
        }
        None | Some("json") => Ok(json_response(StatusCode::OK, &statement)),
        Some(other) => Err(CoordinatorError::bad_request(format!("format must be json or csv, not {other}")).into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BarterRequest {
    to: idlegrid_types::PartyId,
    amount_micros: i64,
    reference: String,
}

/// A provider makes what its engines earned spendable by a client account.
async fn post_barter(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 64 * 1024).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                if party.role != Role::Provider {
                    return Err(CoordinatorError::forbidden(
                        "only a provider's account holds engine earnings to barter",
                    ));
                }
                let request: BarterRequest = parse_json(&body)?;
                c.barter(tx, &party.id, &request.to, request.amount_micros, &request.reference, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

async fn post_revoke(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 16 * 1024).await?;
    let revoked_now = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let request: wire::RevokeRequest = parse_json(&body)?;
                c.revoke(tx, party, &request.party, &request.reason, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &wire::RevokeReply { revoked_now }))
}

async fn post_display(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 16 * 1024).await?;
    let engines_told = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let content: wire::DisplayBody = parse_json(&body)?;
                c.publish_display(tx, party, &content, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &wire::DisplayReply { engines_told }))
}

async fn get_revocations(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let rows = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(|c, tx, _, party, _| c.revocations(tx, party)))
        .await?;
    let list: Vec<wire::RevocationInfo> = rows
        .into_iter()
        .map(|r| wire::RevocationInfo { party: r.party, reason: r.reason, revoked_ms: r.revoked_ms })
        .collect();
    Ok(json_response(StatusCode::OK, &list))
}

async fn count_responses(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.count_response(response.status().as_u16());
    response
}

fn instance_name(state: &AppState) -> String {
    state.instance.get().cloned().unwrap_or_default()
}

async fn get_status(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> AppResult {
    signed(&headers, &method, &uri, body_hash(b""))?.run_as(&state, Box::new(|_, _, _, _, _| Ok(()))).await?;
    Ok(json_response(StatusCode::OK, &crate::metrics::status(&state, &instance_name(&state)).await))
}

/// Prometheus metrics, without authentication (scrapers carry no party certificate): the
/// figures are counts, no names. Restrict the path at the network edge if that matters.
async fn get_metrics(State(state): State<Arc<AppState>>) -> Response {
    let status = crate::metrics::status(&state, &instance_name(&state)).await;
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))],
        crate::metrics::prometheus(&status),
    )
        .into_response()
}

async fn get_openapi() -> Response {
    json_response(StatusCode::OK, &crate::openapi::document())
}

async fn post_logs(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 1 << 20).await?;
    let stored = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, _, party, now| {
                let batch: wire::LogBatch = parse_json(&body)?;
                c.store_logs(tx, party, batch, now)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "stored": stored })))
}

#[derive(Deserialize)]
struct LogParams {
    component: Option<String>,
    party: Option<String>,
    job: Option<String>,
    level: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<u32>,
}

async fn get_logs(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LogParams>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let signed = signed(&headers, &method, &uri, body_hash(b""))?;
    let Query(params) =
        query.map_err(|e| CoordinatorError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let filter = idlegrid_store::LogFilter {
        component: params.component,
        party: params.party.as_deref().map(parse_id).transpose()?,
        job: params.job.as_deref().map(parse_id).transpose()?,
        level: params.level,
        since_ms: params.since_ms,
        until_ms: params.until_ms,
        limit: params.limit.unwrap_or(100),
    };
    let entries =
        signed.run_as(&state, Box::new(move |c, tx, _, party, _| c.logs_for(tx, party, filter.clone()))).await?;
    Ok(json_response(StatusCode::OK, &entries))
}
