//! Sending results to the URLs clients named (`ExternalDelivery`; the bookkeeping is the
//! coordinator's `deliveries`): each due result goes out as an HTTP PUT of its bytes (a
//! failure: its description as JSON) with the headers `x-idlegrid-job`, `x-idlegrid-task`,
//! `x-idlegrid-state` and `x-idlegrid-sha256` (of the body). PUT, because a retried delivery
//! of the same result must be harmless to the receiver. The receiver is reached as webhooks
//! are (`notices::webhook_client`: permitted addresses only, no proxy, no redirect), within a
//! timeout that grows with the size; its answer's body is never read. Logs name URLs without
//! their credentials.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use idlegrid_coordinator::deliveries::{DueDelivery, redacted};
use idlegrid_protocol::Payload;
use sha2::{Digest, Sha256};

use crate::{AppState, now_ms};

/// Deliveries sent per round.
const PER_ROUND_MAX: u32 = 100;

/// How long a delivery of `size` bytes may take: a minute, and a second more per MiB.
fn timeout_for(size: u64) -> Duration {
    Duration::from_secs(60 + size / (1 << 20))
}

/// Send one result; `Err` says why it was not accepted.
async fn send(state: &AppState, http: &reqwest::Client, due: &DueDelivery) -> Result<(), String> {
    let allow = &state.coordinator.config().webhook_allow;
    // Checked again: the operator's ranges may have changed since the client named it.
    idlegrid_coordinator::deliveries::check_url(&due.url, allow)?;
    let shown = redacted(&due.url);
    let (body, hash, size, content_type) = match (&due.result, &due.failure_json) {
        (Some(Payload::Element(element)), _) => {
            let stream = state
                .elements
                .download(&element.hash)
                .await
                .map_err(|e| format!("the result {} cannot be read: {e}", element.hash))?;
            let stream = stream.map_err(std::io::Error::other);
            (reqwest::Body::wrap_stream(stream), element.hash.to_string(), element.size, "application/octet-stream")
        }
        (Some(Payload::Inline(bytes)), _) => {
            let hash = hex::encode(Sha256::digest(bytes));
            (reqwest::Body::from(bytes.clone()), hash, bytes.len() as u64, "application/octet-stream")
        }
        (None, failure) => {
            let text = failure.clone().unwrap_or_else(|| "{}".to_string());
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            let size = text.len() as u64;
            (reqwest::Body::from(text), hash, size, "application/json")
        }
    };
    let state_name = serde_json::to_value(due.state).ok().and_then(|v| v.as_str().map(str::to_string));
    let response = http
        .put(&due.url)
        .timeout(timeout_for(size))
        .header("content-type", content_type)
        .header("content-length", size)
        .header("x-idlegrid-job", due.job.to_string())
        .header("x-idlegrid-task", due.task.to_string())
        .header("x-idlegrid-state", state_name.unwrap_or_default())
        .header("x-idlegrid-sha256", hash)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", crate::notices::chain(&e).replace(&due.url, &shown)))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("{shown} answered {}", response.status())) }
}

/// Deliver what is due, forever.
pub async fn deliver(state: Arc<AppState>, interval: Duration) {
    let http = crate::notices::webhook_client(state.coordinator.config().webhook_allow.clone());
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        let due = match state.run(move |c, tx, _| c.due_deliveries(tx, now, PER_ROUND_MAX)).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the deliveries due");
                continue;
            }
        };
        for delivery in due {
            let outcome = send(&state, &http, &delivery).await;
            if let Err(error) = &outcome {
                tracing::info!(job = %delivery.job, task = delivery.task, %error, "result not delivered yet");
            }
            let (job, task, attempts) = (delivery.job, delivery.task, delivery.attempts);
            let now = now_ms();
            if let Err(error) =
                state.run(move |c, tx, _| c.delivery_attempted(tx, job, task, attempts, outcome.clone(), now)).await
            {
                tracing::warn!(%error, "cannot record a result delivery");
            }
        }
    }
}
