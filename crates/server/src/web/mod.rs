//! The web manager: pages the server renders itself for clients, providers and operators, on
//! the API's own listener (same TLS, same identities). A party asks for a one-time sign-in link
//! with a signed `POST /v1/web/login` (`idlegrid web login`); opening the link starts a browser
//! session held in an HttpOnly, Secure, SameSite=Strict cookie. Every form carries the session's
//! CSRF token, and every page passes `access::PAGES` (deny by default) for the session's role.
//!
//! The pages read the coordinator as the API does, in one store transaction each; commands a
//! client would send as messages (stop, resume, remove, explain) go through a short-lived
//! message session of that client, so they follow exactly the rules the API follows.

mod pages;
mod session;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use idlegrid_coordinator::{Coordinator, CoordinatorError, Effects, ErrorKind, Party};
use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::messages::ClientToServer;
use idlegrid_protocol::wire::{Envelope, PostBatch};
use idlegrid_store::Tx;
use idlegrid_types::{JobId, Role};
use serde::{Deserialize, Serialize};

use crate::http::{AppResult, json_response, read_body, signed};
use crate::{AppState, now_ms};

pub use pages::hours_of_week;
pub use session::{Refusal, Sessions, WebSession, WebTimes};

/// The cookie that holds a browser's session id.
pub const COOKIE: &str = "idlegrid_web";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Results listed on one page of a job.
const RESULTS_PER_PAGE: u32 = 20;
/// Largest form body accepted.
const FORM_BYTES_MAX: usize = 16 * 1024;

/// The answer to `POST /v1/web/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    /// Open it in a browser, once, before it expires.
    pub url: String,
    pub expires_unix_ms: u64,
}

/// The web manager's share of the server's state.
pub(crate) struct WebState {
    pub sessions: Mutex<Sessions>,
}

impl WebState {
    pub fn new(times: WebTimes) -> WebState {
        WebState { sessions: Mutex::new(Sessions::new(times)) }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a path is one of the web manager's (no request signature, no client certificate).
pub(crate) fn is_web(path: &str) -> bool {
    path == "/web" || path.starts_with("/web/")
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/web/login", post(post_login))
        .route("/web/login/{token}", get(open_link))
        .route("/web/static/{file}", get(static_file))
        .route("/web", get(home))
        .route("/web/signout", post(sign_out))
        .route("/web/account", get(account_page))
        .route("/web/jobs", get(jobs_page))
        .route("/web/jobs/{job}", get(job_page))
        .route("/web/jobs/{job}/stats", get(stats_json))
        .route("/web/jobs/{job}/stop", post(job_stop))
        .route("/web/jobs/{job}/resume", post(job_resume))
        .route("/web/jobs/{job}/remove", post(job_remove))
        .route("/web/jobs/{job}/results/{result}", get(result_download))
        .route("/web/engine", get(engine_page))
        .route("/web/market", get(market_page))
        .route("/web/ops", get(ops_page))
        .route("/web/ops/requests/{request}/approve", post(ops_approve))
        .route("/web/ops/requests/{request}/reject", post(ops_reject))
}

/// A signed request for a sign-in link; the link names the host the request was sent to.
async fn post_login(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> AppResult {
    let party = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(|_, _, _, party, _| Ok(party.clone())))
        .await?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .map(str::to_string)
        .or_else(|| state.instance.get().cloned())
        .unwrap_or_default();
    let scheme = if state.authority.is_some() { "https" } else { "http" };
    let (token, expires_unix_ms) = state.web.sessions().issue_link(party, now_ms());
    Ok(json_response(
        StatusCode::OK,
        &LoginLink { url: format!("{scheme}://{host}/web/login/{token}"), expires_unix_ms },
    ))
}

fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers);
    response
}

/// No framing, no foreign scripts, no caching of pages that hold private figures.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A page saying what went wrong, with the status that fits.
fn problem(status: StatusCode, message: &str, session: Option<&WebSession>) -> Response {
    html(status, pages::problem(status, message, session))
}

fn refusal(error: &CoordinatorError, session: Option<&WebSession>) -> Response {
    let status = crate::http::status_of(error.kind);
    if status.is_server_error() {
        tracing::error!(report = %error.report, "web page failed");
    }
    problem(status, &error.report.message, session)
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure_headers(response.headers_mut());
    response
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The session of a request, if it may open this page; else the page that says why not.
async fn signed_in(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, WebSession), Response> {
    let now = now_ms();
    let id =
        cookie_value(headers).ok_or_else(|| problem(StatusCode::UNAUTHORIZED, Refusal::NoSession.message(), None))?;
    let session = state
        .web
        .sessions()
        .touch(&id, now)
        .map_err(|refusal| problem(StatusCode::UNAUTHORIZED, refusal.message(), None))?;
    // A party revoked since it signed in is signed out.
    let party = session.party.clone();
    let revoked =
        state.run(move |_, tx, _| Ok(tx.revocation(&party.id)?.is_some())).await.map_err(|e| refusal(&e, None))?;
    if revoked {
        state.web.sessions().end_all_of(&session.party);
        return Err(problem(StatusCode::UNAUTHORIZED, "this identity has been revoked", None));
    }
    crate::access::check_page(method.as_str(), uri.path(), session.party.role)
        .map_err(|e| refusal(&e, Some(&session)))?;
    Ok((id, session))
}

/// A form's fields, after its CSRF token was checked against the session's.
async fn checked_form(
    session: &WebSession,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<(String, String)>, Response> {
    let bytes = read_body(headers, body, FORM_BYTES_MAX).await.map_err(|e| refusal(&e, Some(session)))?;
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let token = fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.as_str()).unwrap_or_default();
    if !session::same_token(token, &session.csrf) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "this form was refused: its CSRF token is missing or wrong. Reload the page and try again.",
            Some(session),
        ));
    }
    Ok(fields)
}

async fn open_link(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let opened = state.web.sessions().open_link(&token, now_ms());
    match opened {
        Ok((id, _)) => {
            let mut response = redirect("/web");
            let max_age = state.web.sessions().times().lifetime_ms / 1000;
            let cookie = format!("{COOKIE}={id}; Path=/web; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(refusal) => problem(StatusCode::FORBIDDEN, refusal.message(), None),
    }
}

async fn static_file(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (pages::SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => (pages::STYLE, "text/css; charset=utf-8"),
        _ => return problem(StatusCode::NOT_FOUND, "no such file", None),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    secure_headers(response.headers_mut());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    response
}

async fn home(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    match signed_in(&state, &method, &uri, &headers).await {
        Ok((_, session)) => redirect(match session.party.role {
            Role::Client => "/web/jobs",
            Role::Provider => "/web/engine",
            Role::Operator => "/web/ops",
        }),
        Err(page) => page,
    }
}

async fn sign_out(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (id, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Err(page) = checked_form(&session, &headers, body).await {
        return page;
    }
    state.web.sessions().end(&id);
    let mut response = html(StatusCode::OK, pages::signed_out());
    let cookie = format!("{COOKIE}=; Path=/web; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Run coordinator work for a page's party; a refusal becomes a page.
async fn read<R: Send + 'static>(
    state: &Arc<AppState>,
    session: &WebSession,
    work: impl Fn(&Coordinator, &mut dyn Tx, &mut Effects, &Party, u64) -> Result<R, CoordinatorError> + Send + 'static,
) -> Result<R, Response> {
    let party = session.party.clone();
    let now = now_ms();
    state.run(move |c, tx, fx| work(c, tx, fx, &party, now)).await.map_err(|e| refusal(&e, Some(session)))
}

/// A job's ID from a path, or the page that says it is none.
fn parse_job(text: &str, session: &WebSession) -> Result<JobId, Box<Response>> {
    text.parse()
        .map_err(|e: idlegrid_types::IdError| Box::new(problem(StatusCode::NOT_FOUND, &e.to_string(), Some(session))))
}

/// Send one message as the client, on a message session opened and closed for it, and return
/// the answers to it (JSON). An `Error` answer is returned as the refusal it reports.
fn client_command(
    c: &Coordinator,
    tx: &mut dyn Tx,
    fx: &mut Effects,
    party: &Party,
    message: ClientToServer,
    now: u64,
) -> Result<Vec<serde_json::Value>, CoordinatorError> {
    let info = c.open_session(tx, party, None, now, fx)?;
    let seq = info.inbound_acked + 1;
    let batch = PostBatch { ack: None, messages: vec![Envelope { seq, reply_to: None, message }] };
    c.post_client(tx, party, info.session, batch, now, fx)?;
    let rows = c.poll(tx, party, info.session, info.outbound_head, info.outbound_head, 1_000, now, fx)?;
    c.close_session(tx, party, info.session)?;
    let mut answers = Vec::new();
    for row in rows.into_iter().filter(|row| row.reply_to == Some(seq)) {
        let value: serde_json::Value = serde_json::from_str(&row.body)
            .map_err(|e| CoordinatorError::internal(format!("a stored message is not JSON: {e}")))?;
        if value["type"] == "Error" {
            return Err(answer_error(&value));
        }
        answers.push(value);
    }
    Ok(answers)
}

fn answer_error(value: &serde_json::Value) -> CoordinatorError {
    let message = value["message"].as_str().unwrap_or("refused").to_string();
    let code: ErrorCode = serde_json::from_value(value["code"].clone()).unwrap_or(ErrorCode::BadRequest);
    let kind = match code {
        ErrorCode::UnknownJob | ErrorCode::UnknownTask | ErrorCode::UnknownElement | ErrorCode::UnknownSession => {
            ErrorKind::NotFound
        }
        ErrorCode::Forbidden => ErrorKind::Forbidden,
        ErrorCode::Conflict => ErrorKind::Conflict,
        ErrorCode::LimitExceeded => ErrorKind::TooMany,
        ErrorCode::Internal => ErrorKind::Internal,
        _ => ErrorKind::Invalid,
    };
    CoordinatorError::new(kind, code, message)
}

async fn jobs_page(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match read(&state, &session, |c, tx, _, party, _| c.jobs_of(tx, party)).await {
        Ok(jobs) => html(StatusCode::OK, pages::jobs(&session, &jobs)),
        Err(page) => page,
    }
}

/// What a job's page shows and its polling reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    pub job: String,
    pub name: String,
    pub state: String,
    pub created: u64,
    pub queued: u64,
    pub running: u64,
    pub stopped: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub total: u64,
    /// Charged to the job so far (micro-units).
    pub spent_micros: i64,
    /// Reserved for the job at launch: the estimate of what it costs (micro-units).
    pub estimated_micros: Option<i64>,
    pub cost_max_micros: Option<u64>,
    pub power_requested_gflops: Option<f64>,
    /// The measured speeds of the engines running its tasks now, added up.
    pub power_delivered_gflops: f64,
    pub now_ms: u64,
}

fn job_stats(
    c: &Coordinator,
    tx: &mut dyn Tx,
    party: &Party,
    job: JobId,
    now: u64,
) -> Result<JobStats, CoordinatorError> {
    let info = c.job_of(tx, party, job)?;
    let statement = c.statement(
        tx,
        party,
        idlegrid_coordinator::money::StatementQuery { from_ms: 0, to_ms: u64::MAX / 2, period: None },
    )?;
    let subject = job.to_string();
    let spent_micros: i64 =
        statement.rows.iter().filter(|row| row.subject == subject).map(|row| -row.amount.as_i64()).sum();
    let estimated_micros = idlegrid_ledger::Ledger::new(tx.ledger())
        .job_reservation(job)
        .map_err(|e| CoordinatorError::internal(e.to_string()))?
        .map(|r| r.amount.as_i64());
    let mut power_delivered_gflops = 0.0;
    for assignment in tx.active_assignments_of_job(job)? {
        if let Some(profile) = c.provider_profile(tx, &assignment.provider)?
            && let Some(speed) = profile.cpu_gflops
        {
            power_delivered_gflops += speed.mean;
        }
    }
    let counts = info.counts;
    Ok(JobStats {
        job: subject,
        name: info.properties.name.clone(),
        state: format!("{:?}", info.state).to_lowercase(),
        created: counts.created,
        queued: counts.queued,
        running: counts.running,
        stopped: counts.stopped,
        succeeded: counts.succeeded,
        failed: counts.failed,
        total: counts.total(),
        spent_micros,
        estimated_micros,
        cost_max_micros: info.properties.cost_max_micros,
        power_requested_gflops: info.properties.power_requested_gflops,
        power_delivered_gflops,
        now_ms: now,
    })
}

#[derive(Deserialize)]
struct JobQuery {
    #[serde(default)]
    after: Option<i64>,
}

/// One result as a job's page lists it.
pub struct ResultLine {
    pub id: i64,
    pub task: u64,
    pub state: String,
    pub size: Option<u64>,
    pub failure: Option<String>,
}

async fn job_page(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let after = query.ok().and_then(|Query(q)| q.after).unwrap_or(0).max(0);
    let found = read(&state, &session, move |c, tx, fx, party, now| {
        let stats = job_stats(c, tx, party, job, now)?;
        let explanation = client_command(c, tx, fx, party, ClientToServer::ExplainJob { job, task: None }, now)?
            .into_iter()
            .find_map(|answer| answer["text"].as_str().map(str::to_string))
            .unwrap_or_default();
        let results = tx
            .results_after(job, after, false, RESULTS_PER_PAGE)?
            .into_iter()
            .map(|row| ResultLine {
                id: row.id,
                task: row.result.index,
                state: format!("{:?}", row.result.state).to_lowercase(),
                size: row.result.result.as_ref().map(|p| p.len()),
                failure: row.result.failure.as_ref().map(|f| format!("{:?}: {}", f.kind, f.message)),
            })
            .collect::<Vec<_>>();
        Ok((stats, explanation, results))
    })
    .await;
    match found {
        Ok((stats, explanation, results)) => {
            html(StatusCode::OK, pages::job(&session, &stats, &explanation, &results, after, RESULTS_PER_PAGE))
        }
        Err(page) => page,
    }
}

/// A job's figures as JSON, for the page's script.
async fn stats_json(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    match read(&state, &session, move |c, tx, _, party, now| job_stats(c, tx, party, job, now)).await {
        Ok(stats) => {
            let mut response = json_response(StatusCode::OK, &stats);
            secure_headers(response.headers_mut());
            response
        }
        Err(page) => page,
    }
}

/// Stop, resume or remove a job from its page's forms.
async fn job_action(
    state: Arc<AppState>,
    job: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    action: fn(JobId) -> ClientToServer,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Err(page) = checked_form(&session, &headers, body).await {
        return page;
    }
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let message = action(job);
    let removed = matches!(message, ClientToServer::RemoveJob { .. });
    match read(&state, &session, move |c, tx, fx, party, now| client_command(c, tx, fx, party, message.clone(), now))
        .await
    {
        Ok(_) if removed => redirect("/web/jobs"),
        Ok(_) => redirect(&format!("/web/jobs/{job}")),
        Err(page) => page,
    }
}

async fn job_stop(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    job_action(state, job, method, uri, headers, body, |job| ClientToServer::Stop { job, task: None }).await
}

async fn job_resume(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    job_action(state, job, method, uri, headers, body, |job| ClientToServer::Resume { job, task: None }).await
}

async fn job_remove(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    job_action(state, job, method, uri, headers, body, |job| ClientToServer::RemoveJob { job }).await
}

/// A result's bytes, as a download: inline ones from the store, element ones streamed.
async fn result_download(
    State(state): State<Arc<AppState>>,
    Path((job, result)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let Ok(result) = result.parse::<i64>() else {
        return problem(StatusCode::NOT_FOUND, "a result is named by its number", Some(&session));
    };
    let found = read(&state, &session, move |c, tx, _, party, now| {
        c.job_of(tx, party, job)?;
        let row = tx.results_after(job, result.saturating_sub(1), false, 1)?.into_iter().find(|row| row.id == result);
        let row = row.ok_or_else(|| CoordinatorError::not_found(format!("job {job} has no result {result}")))?;
        let payload = row
            .result
            .result
            .ok_or_else(|| CoordinatorError::not_found(format!("result {result} holds no bytes (the task failed)")))?;
        if let idlegrid_protocol::Payload::Element(element) = &payload {
            c.authorize_download(tx, party, &element.hash, None, now)?;
        }
        Ok((row.result.index, payload))
    })
    .await;
    let (task, payload) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let body = match payload {
        idlegrid_protocol::Payload::Inline(bytes) => Body::from(bytes),
        idlegrid_protocol::Payload::Element(element) => match state.elements.download(&element.hash).await {
            Ok(stream) => Body::from_stream(stream),
            Err(e) => {
                return refusal(&CoordinatorError::internal(format!("cannot read the result: {e}")), Some(&session));
            }
        },
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{job}-task-{task}.bin\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    secure_headers(headers);
    response
}

fn whole_statement(
    c: &Coordinator,
    tx: &mut dyn Tx,
    party: &Party,
) -> Result<idlegrid_ledger::Statement, CoordinatorError> {
    c.statement(
        tx,
        party,
        idlegrid_coordinator::money::StatementQuery {
            from_ms: 0,
            to_ms: u64::MAX / 2,
            period: Some(idlegrid_coordinator::money::StatementPeriodName::Day),
        },
    )
}

async fn account_page(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let found = read(&state, &session, |c, tx, _, party, _| {
        Ok((c.account_info(tx, &party.id)?, whole_statement(c, tx, party)?))
    })
    .await;
    match found {
        Ok((account, statement)) => html(StatusCode::OK, pages::account(&session, &account, &statement)),
        Err(page) => page,
    }
}

/// What an engine's page shows.
pub struct EngineView {
    pub profile: Option<idlegrid_coordinator::ProviderProfile>,
    /// The engine's state as the server knows it, its slots and when it was last heard from.
    pub node: Option<(String, u32, u64)>,
    pub running: usize,
    pub account: idlegrid_protocol::messages::AccountInfo,
    pub statement: idlegrid_ledger::Statement,
}

async fn engine_page(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let found = read(&state, &session, |c, tx, _, party, _| {
        Ok(EngineView {
            profile: c.provider_profile(tx, &party.id)?,
            node: tx
                .provider(&party.id)?
                .map(|row| (format!("{:?}", row.state).to_lowercase(), row.slots, row.last_contact_ms)),
            running: tx.active_assignments_of_provider(&party.id)?.len(),
            account: c.account_info(tx, &party.id)?,
            statement: whole_statement(c, tx, party)?,
        })
    })
    .await;
    match found {
        Ok(view) => html(StatusCode::OK, pages::engine(&session, &view, now_ms())),
        Err(page) => page,
    }
}

async fn market_page(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let found = read(&state, &session, |c, tx, _, party, _| {
        let json = |value: Result<serde_json::Value, serde_json::Error>| {
            value.map_err(|e| CoordinatorError::internal(format!("cannot show the market: {e}")))
        };
        Ok([
            ("Your offers", json(serde_json::to_value(c.market_offers_of(tx, party)?))?),
            ("Your requests", json(serde_json::to_value(c.market_requests_of(tx, party)?))?),
            ("Negotiations", json(serde_json::to_value(c.market_negotiations_of(tx, party)?))?),
            ("Contracts", json(serde_json::to_value(c.market_contracts_of(tx, party)?))?),
        ])
    })
    .await;
    match found {
        Ok(sections) => html(StatusCode::OK, pages::market(&session, &sections)),
        Err(page) => page,
    }
}

async fn ops_page(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let status = crate::metrics::status(&state, &state.instance.get().cloned().unwrap_or_default()).await;
    let found = read(&state, &session, |c, tx, _, party, _| {
        c.requests_for_operator(tx, party, Some(idlegrid_protocol::messages::MoneyRequestState::Pending), 100)
    })
    .await;
    match found {
        Ok(pending) => {
            let sessions = state.web.sessions().open_sessions();
            html(StatusCode::OK, pages::ops(&session, &status, &pending, sessions))
        }
        Err(page) => page,
    }
}

async fn ops_decide(
    state: Arc<AppState>,
    request: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    decision: idlegrid_coordinator::requests::Decision,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let fields = match checked_form(&session, &headers, body).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let Ok(id) = request.parse::<u64>() else {
        return problem(StatusCode::NOT_FOUND, "a request is named by its number", Some(&session));
    };
    let note = fields.iter().find(|(k, _)| k == "note").map(|(_, v)| v.clone()).unwrap_or_default();
    let decided = read(&state, &session, move |c, tx, fx, party, now| {
        let decider = idlegrid_coordinator::requests::Decider::Operator(party.id.clone());
        c.decide_request(tx, &decider, id, decision, &note, now, fx)
    })
    .await;
    match decided {
        Ok(_) => redirect("/web/ops"),
        Err(page) => page,
    }
}

async fn ops_approve(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ops_decide(state, request, method, uri, headers, body, idlegrid_coordinator::requests::Decision::Approve).await
}

async fn ops_reject(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ops_decide(state, request, method, uri, headers, body, idlegrid_coordinator::requests::Decision::Reject).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; idlegrid_web=abc; b=2"));
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("idlegrid_webx=abc"));
        assert_eq!(cookie_value(&headers), None);
    }

    #[test]
    fn every_route_of_the_web_manager_has_a_row_in_the_tables() {
        // The router's paths, as `routes` registers them.
        let routes = [
            ("GET", "/web/login/{token}"),
            ("GET", "/web/static/{file}"),
            ("GET", "/web"),
            ("POST", "/web/signout"),
            ("GET", "/web/account"),
            ("GET", "/web/jobs"),
            ("GET", "/web/jobs/{job}"),
            ("GET", "/web/jobs/{job}/stats"),
            ("POST", "/web/jobs/{job}/stop"),
            ("POST", "/web/jobs/{job}/resume"),
            ("POST", "/web/jobs/{job}/remove"),
            ("GET", "/web/jobs/{job}/results/{result}"),
            ("GET", "/web/engine"),
            ("GET", "/web/market"),
            ("GET", "/web/ops"),
            ("POST", "/web/ops/requests/{request}/approve"),
            ("POST", "/web/ops/requests/{request}/reject"),
        ];
        for (method, path) in routes {
            assert!(crate::access::page_rule_for(method, path).is_some(), "{method} {path} has no row");
        }
        assert_eq!(routes.len(), crate::access::PAGES.len(), "a row without a page");
        assert!(crate::access::rule_for("POST", "/v1/web/login").is_some());
    }

    #[test]
    fn error_answers_become_refusals_of_the_matching_kind() {
        let value = serde_json::json!({"type": "Error", "code": "unknown_job", "message": "no such job"});
        let error = answer_error(&value);
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert_eq!(error.report.message, "no such job");
        let value = serde_json::json!({"type": "Error", "code": "conflict", "message": "x"});
        assert_eq!(answer_error(&value).kind, ErrorKind::Conflict);
    }
}
