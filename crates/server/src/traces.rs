//! The server's part of a task's trace: a span for each request that arrives with a W3C
//! `traceparent` header (a child of the caller's span), and a span for each traced result an
//! engine returns (a child of the engine's span the status names). Requests without a trace
//! context make no span, and nothing happens here unless traces are exported (see
//! `idlegrid_telemetry`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use idlegrid_protocol::TraceParent;
use idlegrid_protocol::messages::{AssignmentState, ProviderToServer};
use idlegrid_protocol::wire::PostBatch;
use idlegrid_telemetry::TARGET;
use tracing::Instrument;

/// The trace context a request's `traceparent` header names; an invalid one names none (the
/// W3C rule: a receiver ignores what it cannot parse).
fn parent(request: &Request) -> Option<TraceParent> {
    let value = request.headers().get(idlegrid_protocol::trace::HEADER)?.to_str().ok()?;
    TraceParent::parse(value.trim()).ok()
}

/// Middleware: run a traced request inside a `server` span named after its route.
pub(crate) async fn trace_requests(request: Request, next: Next) -> Response {
    let Some(parent) = parent(&request) else { return next.run(request).await };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let method = request.method().as_str().to_string();
    let span = tracing::info_span!(
        target: TARGET,
        "server.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    idlegrid_telemetry::set_parent(&span, Some(&parent));
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// One span per final status in `batch` that names its engine's span, open while the batch is
/// processed (the result checked, recorded and streamed to the client): the server's part of
/// those tasks' traces. Dropping them ends them.
pub(crate) fn result_spans(batch: &PostBatch<ProviderToServer>) -> Vec<tracing::Span> {
    batch
        .messages
        .iter()
        .filter_map(|envelope| match &envelope.message {
            ProviderToServer::TaskStatus(status) => {
                let trace = status.trace.as_ref()?;
                let state = match status.state {
                    AssignmentState::Succeeded => "succeeded",
                    AssignmentState::Failed => "failed",
                    _ => return None,
                };
                let span = tracing::info_span!(
                    target: TARGET,
                    "server.result",
                    assignment = status.assignment.0,
                    state,
                    cpu_ms = status.cpu_ms,
                );
                idlegrid_telemetry::set_parent(&span, Some(trace));
                Some(span)
            }
            _ => None,
        })
        .collect()
}
