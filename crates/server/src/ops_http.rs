//! Operators' requests: archive and purge on demand (`POST /v1/ops/retention`, P4.11), and
//! engines' settings pushed to every engine (`POST /v1/ops/engine-config`). Who may call them
//! is in `access::RULES`; what they do is the coordinator's `retention_now` and
//! `set_engine_config`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use idlegrid_protocol::auth::body_hash;
use idlegrid_protocol::ops::{EngineConfigBody, RetentionRequest};

use crate::AppState;
use crate::http::{AppResult, json_response, parse_json, read_body, signed};

pub(crate) async fn post_retention(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 4 * 1024).await?;
    let reply = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let request: RetentionRequest = parse_json(&body)?;
                c.retention_now(tx, party, &request, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &reply))
}

pub(crate) async fn post_engine_config(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AppResult {
    let body = read_body(&headers, body, 16 * 1024).await?;
    let reply = signed(&headers, &method, &uri, body_hash(&body))?
        .run_as(
            &state,
            Box::new(move |c, tx, fx, party, now| {
                let request: EngineConfigBody = parse_json(&body)?;
                c.set_engine_config(tx, party, &request, now, fx)
            }),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &reply))
}
