//! The endpoints of money across the platform's edge: clients request deposits, providers
//! request payouts, both list their requests; operators list everybody's, approve or reject
//! each, and credit an account directly. Who may call each is in `access::RULES`; the rules of
//! money are the coordinator's and the ledger's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use idlegrid_coordinator::CoordinatorError;
use idlegrid_coordinator::requests::{Decider, Decision};
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::messages::MoneyRequestState;
use idlegrid_protocol::wire::{CreditBody, DecisionBody, MoneyRequestBody};
use serde::Deserialize;

use crate::AppState;
use crate::http::{AppResult, json_response, parse_json, read_body, signed};

/// Largest body of these endpoints.
const BODY_BYTES_MAX: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestsQuery {
    /// pending, approved, rejected or all.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `None` is every state.
fn parse_state(
    text: Option<&str>,
    default: Option<MoneyRequestState>,
) -> Result<Option<MoneyRequestState>, CoordinatorError> {
    match text {
        None => Ok(default),
        Some("all") => Ok(None),
        Some("pending") => Ok(Some(MoneyRequestState::Pending)),
        Some("approved") => Ok(Some(MoneyRequestState::Approved)),
        Some("rejected") => Ok(Some(MoneyRequestState::Rejected)),
        Some(other) => Err(CoordinatorError::bad_request(format!(
            "state must be pending, approved, rejected or all, not {:?}",
            idlegrid_types::Untrusted(other).to_string()
        ))),
    }
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, CoordinatorError> {
    query.map(|Query(q)| q).map_err(|e| CoordinatorError::bad_request(format!("invalid query: {}", e.body_text())))
}

fn request_id(text: &str) -> Result<u64, CoordinatorError> {
    text.parse().map_err(|_| CoordinatorError::bad_request("the request in the path must be a request number, like 12"))
}

/// A client asks to pay money into its account (pending until approved).
pub(crate) async fn post_deposit(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, _, party, now| {
                let request: MoneyRequestBody = parse_json(&body)?;
                c.request_deposit(tx, party, request.amount_micros, &request.reference, now)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

/// A provider asks to be paid its earnings (reserved until decided).
pub(crate) async fn post_payout(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, _, party, now| {
                let request: MoneyRequestBody = parse_json(&body)?;
                c.request_payout(tx, party, request.amount_micros, &request.reference, now)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

/// The caller's own requests, every state unless `state` says.
pub(crate) async fn get_own_requests(
    State(state): State<Arc<AppState>>,
    params: Result<Query<RequestsQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let signed = signed(&headers, &method, &uri, body_hash(b""))?;
    let params = query(params)?;
    let wanted = parse_state(params.state.as_deref(), None)?;
    let list = signed.run_as(&state, Box::new(move |c, tx, _, party, _| c.requests_of(tx, party, wanted))).await?;
    Ok(json_response(StatusCode::OK, &list))
}

/// Every party's requests (operators): pending ones unless `state` says.
pub(crate) async fn get_requests(
    State(state): State<Arc<AppState>>,
    params: Result<Query<RequestsQuery>, QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let signed = signed(&headers, &method, &uri, body_hash(b""))?;
    let params = query(params)?;
    let wanted = parse_state(params.state.as_deref(), Some(MoneyRequestState::Pending))?;
    let limit = params.limit.unwrap_or(100);
    let list = signed
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.requests_for_operator(tx, party, wanted, limit)))
        .await?;
    Ok(json_response(StatusCode::OK, &list))
}

async fn decide(
    state: Arc<AppState>,
    request: String,
    decision: Decision,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = request_id(&request)?;
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let decision_body: DecisionBody =
                    if body.is_empty() { DecisionBody::default() } else { parse_json(&body)? };
                if party.role != idlegrid_types::Role::Operator {
                    return Err(CoordinatorError::forbidden("only operators decide requests"));
                }
                let decider = Decider::Operator(party.id.clone());
                c.decide_request(tx, &decider, id, decision, &decision_body.note, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

/// Approve a request (operators): the money moves, once.
pub(crate) async fn post_approve(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    decide(state, request, Decision::Approve, method, uri, headers, body).await
}

/// Reject a request (operators), with the reason as the note: nothing moves.
pub(crate) async fn post_reject(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    decide(state, request, Decision::Reject, method, uri, headers, body).await
}

/// Credit a party's account with money received (operators).
pub(crate) async fn post_credit(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let credit: CreditBody = parse_json(&body)?;
                c.credit_account(
                    tx,
                    party,
                    &credit.party,
                    credit.amount_micros,
                    &credit.reference,
                    &credit.note,
                    now,
                    fx,
                )
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}
