//! The endpoints of peripherals sold on the market: the buyer sends an input for the seller's
//! engine (`POST /v1/market/contracts/{contract}/peripheral`) and reads what came of it
//! (`GET /v1/market/contracts/{contract}/peripheral/{number}`). Inputs travel inline (base64),
//! so these bodies may be larger than the market's others.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use idlegrid_coordinator::CoordinatorError;
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::market::{PERIPHERAL_BYTES_MAX, PeripheralUseBody};

use crate::AppState;
use crate::http::{AppResult, json_response, parse_json, read_body, signed};

/// Largest body: the input, base64 in JSON.
const BODY_BYTES_MAX: usize = PERIPHERAL_BYTES_MAX * 4 / 3 + 1024;

fn number(text: &str, what: &str) -> Result<u64, CoordinatorError> {
    text.parse().map_err(|_| CoordinatorError::bad_request(format!("the {what} in the path must be a number, like 12")))
}

/// The buyer uses the peripheral it bought: the use, numbered, waiting for the seller's engine.
pub(crate) async fn post_use(
    State(state): State<Arc<AppState>>,
    Path(contract): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let id = number(&contract, "contract")?;
    let body = read_body(&headers, body, BODY_BYTES_MAX).await?;
    let info = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, _| {
                let input: PeripheralUseBody = parse_json(&body)?;
                c.market_peripheral_use(tx, party, id, &input.input, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}

/// A peripheral use and its outcome (for either party).
pub(crate) async fn get_use(
    State(state): State<Arc<AppState>>,
    Path((contract, use_number)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AppResult {
    let id = number(&contract, "contract")?;
    let use_number = number(&use_number, "use number")?;
    let info = signed(&headers, &method, &uri, body_hash(b""))?
        .run_as(&state, Box::new(move |c, tx, _, party, _| c.market_peripheral_result(tx, party, id, use_number)))
        .await?;
    Ok(json_response(StatusCode::OK, &info))
}
