//! The endpoints of the market's data contracts: a storage buyer hands its blob over and
//! fetches it back (`/v1/market/contracts/{id}/storage`), a file's seller attaches it and its
//! buyer downloads it once paid (`/file`), a buyer of internet access gets the seller's relay
//! (`/relay`) and reports the bytes it received (`/bytes`). Element bytes travel over the data
//! channel or the relay; these calls only name them (the coordinator's `market::data` decides).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{get, post};
use futures::StreamExt;
use idlegrid_coordinator::CoordinatorError;
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::market_data::{BytesBody, ElementBody};
use idlegrid_types::ElementRef;

use crate::AppState;
use crate::http::{AppResult, json_response, parse_json, read_body, signed};
use crate::market_http::{number, run};

/// Largest body of these endpoints (an element reference).
const BODY_BYTES_MAX: usize = 4 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/market/contracts/{contract}/storage", post(post_storage).get(get_storage))
        .route("/v1/market/contracts/{contract}/file", post(post_file).get(get_file))
        .route("/v1/market/contracts/{contract}/relay", get(get_relay))
        .route("/v1/market/contracts/{contract}/bytes", post(post_bytes))
}

/// Read a whole element the server holds (at most `limit` bytes).
async fn read_element(state: &AppState, element: &ElementRef, limit: u64) -> Result<Vec<u8>, CoordinatorError> {
    let gone = |e: object_store::Error| CoordinatorError::internal(format!("element {} unreadable: {e}", element.hash));
    let mut stream = state.elements.download(&element.hash).await.map_err(gone)?;
    let mut bytes = Vec::with_capacity(element.size.min(limit) as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(gone)?);
        if bytes.len() as u64 > limit {
            return Err(CoordinatorError::too_large(format!("the blob is larger than {limit} bytes")));
        }
    }
    Ok(bytes)
}

/// The buyer of a storage contract hands its blob (an element it uploaded) over: the server
/// reads it once to draw the proof-of-storage challenges, then the seller's engine fetches it.
async fn post_storage(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let check = signed(&headers, &method, &uri, body_hash(&body))?;
    // The body is read only once the access table let the caller in.
    let (party, element) = check
        .run_as(
            &state,
            Box::new(move |c, tx, _fx, party, _now| {
                let request: ElementBody = parse_json(&body)?;
                c.market_storage_check(tx, party, id, &request.element)?;
                Ok((party.clone(), request.element))
            }),
        )
        .await?;
    let limit = state.coordinator.config().market.data.storage_blob_bytes_max;
    let blob = Arc::new(read_element(&state, &element, limit).await?);
    let now = crate::now_ms();
    let info = state.run(move |c, tx, fx| c.market_storage_put(tx, &party, id, &element, &blob[..], now, fx)).await?;
    Ok(json_response(StatusCode::OK, &info))
}

/// The blob of an active storage contract, for its buyer to download (an element reference).
async fn get_storage(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, _fx, party, _now| c.market_storage_get(tx, party, id))
    })
    .await
}

/// The seller of a file attaches it: the element must be the one the contract names.
async fn post_file(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, Some(body), move |body| {
        Box::new(move |c, tx, _fx, party, _now| {
            let request: ElementBody = parse_json(&body)?;
            c.market_file_attach(tx, party, id, &request.element)
        })
    })
    .await
}

/// The file of a paid contract, for its buyer to download (an element reference).
async fn get_file(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, _fx, party, _now| c.market_file_get(tx, party, id))
    })
    .await
}

/// The relay of an active internet access contract, for its buyer: address and ticket.
async fn get_relay(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&contract, "contract")?;
    run(state, method, uri, headers, None, move |_| {
        Box::new(move |c, tx, _fx, party, now| c.market_relay(tx, party, id, now))
    })
    .await
}

/// A party of an internet access contract reports the bytes it counted.
async fn post_bytes(
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
            let report: BytesBody = parse_json(&body)?;
            c.market_bytes(tx, &party.id, id, report.seq, report.bytes, now)
        })
    })
    .await
}
