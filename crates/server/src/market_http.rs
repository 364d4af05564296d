//! The market's endpoints (`/v1/market/...`): offers, requests and search, negotiations and a
//! person's answers, contracts and signatures. Clients and providers may call them (see
//! `access::RULES`); each request is one transaction of the coordinator's `market` module.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use idlegrid_coordinator::CoordinatorError;
use idlegrid_coordinator::market::Answer;
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::market::{
    CounterBody, DrawBody, FailBody, MeterBody, NegotiateBody, OfferBody, RegisterBody, RequestBody, SignBody,
};

use crate::AppState;
use crate::http::{AppResult, Work, json_response, parse_json, read_body, signed};

/// Largest body of these endpoints (an offer with its expressions fits many times).
const BODY_BYTES_MAX: usize = 64 * 1024;

pub(crate) fn number(text: &str, what: &str) -> Result<u64, CoordinatorError> {
    text.parse().map_err(|_| CoordinatorError::bad_request(format!("the {what} in the path must be a number, like 12")))
}

/// Authenticate, then run `work` with the body (empty for GET).
pub(crate) async fn run<R: serde::Serialize + Send + 'static>(
    state: Arc<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Body>,
    work: impl FnOnce(bytes::Bytes) -> Box<Work<R>>,
) -> AppResult {
    let body = match body {
        Some(body) => read_body(&headers, body, BODY_BYTES_MAX).await?,
        None => bytes::Bytes::new(),
    };
    let signed = signed(&headers, &method, &uri, body_hash(&body))?;
    let value = signed.run_as(&state, work(body)).await?;
    Ok(json_response(StatusCode::OK, &value))
}

/// Register an offer: the answer is what the server made of it (valuation, measured figures).
pub(crate) async fn post_offer(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, fx, party, now| {
            let offer: OfferBody = parse_json(&body)?;
            c.market_offer(tx, party, &offer, None, now, fx)
        })
    })
    .await
}

/// Replace one of the caller's open offers.
pub(crate) async fn post_offer_update(
    State(state): State<Arc<AppState>>,
    Path(offer): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&offer, "offer")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, fx, party, now| {
            let offer: OfferBody = parse_json(&body)?;
            c.market_offer(tx, party, &offer, Some(id), now, fx)
        })
    })
    .await
}

pub(crate) async fn post_offer_withdraw(
    State(state): State<Arc<AppState>>,
    Path(offer): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&offer, "offer")?;
    run(state, method, uri, headers, Some(body), move |_| {
        Box::new(move |c, tx, _, party, now| c.market_withdraw(tx, party, id, now))
    })
    .await
}

pub(crate) async fn get_offers(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    run(state, method, uri, headers, None, |_| Box::new(move |c, tx, _, party, _| c.market_offers_of(tx, party))).await
}

/// Keep a request and answer with its ranked candidates.
pub(crate) async fn post_request(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, fx, party, now| {
            let request: RequestBody = parse_json(&body)?;
            c.market_search(tx, party, &request, true, now, fx)
        })
    })
    .await
}

pub(crate) async fn get_requests(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    run(state, method, uri, headers, None, |_| Box::new(move |c, tx, _, party, _| c.market_requests_of(tx, party)))
        .await
}

/// Search again for a kept request.
pub(crate) async fn get_request_search(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&request, "request")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, fx, party, now| c.market_search_again(tx, party, id, now, fx))
    })
    .await
}

/// Withdraw a kept request.
pub(crate) async fn post_request_withdraw(
    State(state): State<Arc<AppState>>,
    Path(request): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&request, "request")?;
    run(state, method, uri, headers, Some(body), move |_| {
        Box::new(move |c, tx, _, party, _| c.market_withdraw_request(tx, party, id))
    })
    .await
}

/// Ranked candidates without keeping the request.
pub(crate) async fn post_search(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, fx, party, now| {
            let request: RequestBody = parse_json(&body)?;
            c.market_search(tx, party, &request, false, now, fx)
        })
    })
    .await
}

pub(crate) async fn post_negotiation(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, fx, party, now| {
            let negotiate: NegotiateBody = parse_json(&body)?;
            c.market_negotiate(tx, party, &negotiate, now, fx)
        })
    })
    .await
}

pub(crate) async fn get_negotiations(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    run(state, method, uri, headers, None, |_| Box::new(move |c, tx, _, party, _| c.market_negotiations_of(tx, party)))
        .await
}

pub(crate) async fn get_negotiation(
    State(state): State<Arc<AppState>>,
    Path(negotiation): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&negotiation, "negotiation")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, _, party, _| c.market_negotiation(tx, party, id))
    })
    .await
}

async fn answer(
    state: Arc<AppState>,
    negotiation: String,
    kind: &'static str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&negotiation, "negotiation")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, fx, party, now| {
            let answer = match kind {
                "accept" => Answer::Accept,
                "reject" => Answer::Reject,
                _ => Answer::Counter(parse_json::<CounterBody>(&body)?.price),
            };
            c.market_answer(tx, party, id, answer, now, fx)
        })
    })
    .await
}

/// Accept the other side's last proposal (a person in the loop).
pub(crate) async fn post_accept(
    State(state): State<Arc<AppState>>,
    Path(negotiation): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    answer(state, negotiation, "accept", method, uri, headers, body).await
}

pub(crate) async fn post_reject(
    State(state): State<Arc<AppState>>,
    Path(negotiation): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    answer(state, negotiation, "reject", method, uri, headers, body).await
}

pub(crate) async fn post_counter(
    State(state): State<Arc<AppState>>,
    Path(negotiation): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    answer(state, negotiation, "counter", method, uri, headers, body).await
}

pub(crate) async fn get_contracts(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    run(state, method, uri, headers, None, |_| Box::new(move |c, tx, _, party, _| c.market_contracts_of(tx, party)))
        .await
}

pub(crate) async fn get_contract(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, _, party, _| c.market_contract(tx, party, id))
    })
    .await
}

/// Sign a contract with the party's key (checked against the key it registered).
pub(crate) async fn post_sign(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, fx, party, now| {
            let sign: SignBody = parse_json(&body)?;
            c.market_sign(tx, party, id, &sign.signature, now, fx)
        })
    })
    .await
}

/// The seller reports a metering record of a contract it delivers.
pub(crate) async fn post_meter(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, _fx, party, now| {
            let meter: MeterBody = parse_json(&body)?;
            c.market_meter(tx, party, id, &meter, now)
        })
    })
    .await
}

/// The buyer confirms a contract delivered in full.
pub(crate) async fn post_confirm(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |_| {
        Box::new(move |c, tx, _fx, party, now| c.market_confirm(tx, party, id, now))
    })
    .await
}

/// A party reports a contract not delivered: it fails now and is settled pro rata.
pub(crate) async fn post_fail(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, _fx, party, now| {
            let fail: FailBody = parse_json(&body)?;
            c.market_fail(tx, party, id, &fail.reason, now)
        })
    })
    .await
}

/// Settle a delivered or failed contract (or one whose time is over) now.
pub(crate) async fn post_settle(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |_| {
        Box::new(move |c, tx, _fx, party, now| c.market_settle(tx, party, id, now))
    })
    .await
}

/// Register a contract both parties signed directly (no commission); it starts at once.
pub(crate) async fn post_register(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, fx, party, now| {
            let register: RegisterBody = parse_json(&body)?;
            c.market_register(tx, party, &register.contract, now, fx)
        })
    })
    .await
}

/// A provider sells one of its computing offers to the platform for credits (coordinator with
/// peer): a contract the platform signed, awaiting the seller's signature.
pub(crate) async fn post_sell_to_platform(
    State(state): State<Arc<AppState>>,
    Path(offer): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&offer, "offer")?;
    run(state, method, uri, headers, Some(body), move |_| {
        Box::new(move |c, tx, fx, party, now| c.market_sell_to_platform(tx, party, id, now, fx))
    })
    .await
}

/// A seller draws the winners of its sweepstakes among the entries it sold.
pub(crate) async fn post_draw(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    run(state, method, uri, headers, Some(body), |body| {
        Box::new(move |c, tx, _fx, party, now| {
            let draw: DrawBody = parse_json(&body)?;
            c.market_draw(tx, party, draw.winners, draw.prize, now)
        })
    })
    .await
}
