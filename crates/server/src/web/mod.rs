//! The web manager: pages the server renders itself for clients, providers and operators, on
//! the API's own listener (same TLS, same identities). A party asks for a one-time sign-in link
//! with a signed `POST /v1/web/login` (`idlegrid web login`); opening the link starts a browser
//! session held in an HttpOnly, Secure, SameSite=Strict cookie. Every form carries the session's
//! CSRF token, and every page passes `access::PAGES` (deny by default) for the session's role.
//!
//! The pages read the coordinator as the API does, in one store transaction each; commands a
//! client would send as messages (stop, resume, remove, explain) go through a short-lived
//! message session of that client, so they follow exactly the rules the API follows.

mod jobs;
mod market;
mod market_pages;
mod ops;
mod pages;
mod parties;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
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

pub use jobs::{HistoryPoint, JobStats, cumulative_history};
pub(crate) use ops::report_health_now_and_then;
pub use pages::hours_of_week;
pub use session::{Refusal, WebSession, WebTimes};

/// The cookie that holds a browser's session id.
pub const COOKIE: &str = "idlegrid_web";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body accepted.
const FORM_BYTES_MAX: usize = 16 * 1024;

/// The answer to `POST /v1/web/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    /// Open it in a browser, once, before it expires.
    pub url: String,
    pub expires_unix_ms: u64,
}

/// The web manager's share of the server's state: how long links and sessions live. The links
/// and sessions themselves are in the store, shared by every instance.
pub(crate) struct WebState {
    pub times: WebTimes,
    /// How often maintenance runs: instances report their health at most every few of them.
    pub maintenance_interval_ms: u64,
    /// When this instance last reported its health (Unix ms).
    pub reported_ms: std::sync::atomic::AtomicU64,
}

impl WebState {
    pub fn new(times: WebTimes, maintenance_interval: std::time::Duration) -> WebState {
        WebState {
            times,
            maintenance_interval_ms: u64::try_from(maintenance_interval.as_millis()).unwrap_or(u64::MAX),
            reported_ms: Default::default(),
        }
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
        .route("/web/account", get(parties::account_page))
        .route("/web/jobs", get(jobs::jobs_page))
        .route("/web/jobs/{job}", get(jobs::job_page))
        .route("/web/jobs/{job}/stats", get(jobs::stats_json))
        .route("/web/jobs/{job}/{action}", post(jobs::job_action))
        .route("/web/jobs/{job}/tasks/{task}/{action}", post(jobs::task_action))
        .route("/web/jobs/{job}/results/{result}", get(jobs::result_download))
        .route("/web/engine", get(parties::engine_page))
        .route("/web/market", get(market::market_page))
        .route("/web/market/{*rest}", post(market::market_post))
        .route("/web/ops", get(ops::ops_page))
        .route("/web/ops/logs", get(ops::logs_page))
        .route("/web/ops/requests/{request}/{decision}", post(ops::ops_decide))
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
    let times = state.web.times;
    let (token, expires_unix_ms) =
        state.run(move |_, tx, _| Ok(session::issue_link(tx, times, &party, now_ms())?)).await?;
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
    let times = state.web.times;
    let cookie = id.clone();
    let found = state
        .run(move |_, tx, _| {
            let session = match session::touch(tx, times, &cookie, now)? {
                Ok(session) => session,
                Err(refusal) => return Ok(Err(refusal.message())),
            };
            // A party revoked since it signed in is signed out.
            if tx.revocation(&session.party.id)?.is_some() {
                session::end_all_of(tx, &session.party)?;
                return Ok(Err("this identity has been revoked"));
            }
            Ok(Ok(session))
        })
        .await
        .map_err(|e| refusal(&e, None))?;
    let session = found.map_err(|message| problem(StatusCode::UNAUTHORIZED, message, None))?;
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
    let times = state.web.times;
    let opened = state.run(move |_, tx, _| Ok(session::open_link(tx, times, &token, now_ms())?)).await;
    match opened {
        Ok(Ok((id, _))) => {
            let mut response = redirect("/web");
            let max_age = times.lifetime_ms / 1000;
            let cookie = format!("{COOKIE}={id}; Path=/web; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Err(refusal)) => problem(StatusCode::FORBIDDEN, refusal.message(), None),
        Err(error) => refusal(&error, None),
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
    if let Err(error) = state.run(move |_, tx, _| Ok(session::end(tx, &id)?)).await {
        return refusal(&error, Some(&session));
    }
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
        // Every page the router serves (a path with `{action}` or `{*rest}` in the router is
        // one row per action in the table, so unknown actions are refused).
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
            ("POST", "/web/jobs/{job}/tasks/{task}/stop"),
            ("POST", "/web/jobs/{job}/tasks/{task}/resume"),
            ("POST", "/web/jobs/{job}/tasks/{task}/remove"),
            ("GET", "/web/jobs/{job}/results/{result}"),
            ("GET", "/web/engine"),
            ("GET", "/web/market"),
            ("POST", "/web/market/offers"),
            ("POST", "/web/market/offers/{offer}/withdraw"),
            ("POST", "/web/market/offers/{offer}/negotiate"),
            ("POST", "/web/market/search"),
            ("POST", "/web/market/requests/{request}/withdraw"),
            ("POST", "/web/market/negotiations/{negotiation}/accept"),
            ("POST", "/web/market/negotiations/{negotiation}/reject"),
            ("POST", "/web/market/negotiations/{negotiation}/counter"),
            ("GET", "/web/ops"),
            ("GET", "/web/ops/logs"),
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
