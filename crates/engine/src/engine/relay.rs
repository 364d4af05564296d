//! The element relay: internet access this engine sells on the market. When the owner names
//! an address (`relay_listen`), the engine serves `GET /relay/{contract}/{element}` there to
//! the contract's buyer: the request carries a ticket the server signed with its assignment
//! key (checked here against the key this engine trusts), the engine fetches the element from
//! the server, checks its hash, serves it, and reports the bytes served (`MarketServed`,
//! numbered per contract in `market/relay/`, so a restart does not reuse a number).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use idlegrid_protocol::auth::verify_bytes;
use idlegrid_protocol::market_data::{RELAY_TICKET_HEADER, relay_signed_bytes, relay_ticket_parts};
use idlegrid_protocol::messages::ProviderToServer;
use idlegrid_types::ElementHash;

use super::{Inner, now_ms};

/// Largest element the relay serves (held in memory while served).
const ELEMENT_BYTES_MAX: usize = 256 << 20;

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

impl Inner {
    /// Start the relay if the owner named an address, and tell the server where it is.
    pub(super) async fn start_relay(self: &Arc<Self>) -> Option<std::net::SocketAddr> {
        let listen = self.config.relay_listen.clone()?;
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%listen, %error, "the market relay cannot listen: no internet access is served");
                return None;
            }
        };
        let bound = listener.local_addr().ok()?;
        let app = Router::new().route("/relay/{contract}/{element}", get(relay)).with_state(self.clone());
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
        self.send(ProviderToServer::MarketRelay { address: bound.to_string() }, None);
        tracing::info!(%bound, "market relay listening");
        Some(bound)
    }

    /// The next report number of contract `contract`'s bytes (kept on disk).
    fn next_served_seq(&self, contract: u64) -> u64 {
        let folder = self.config.data_dir.join("market").join("relay");
        let file = folder.join(format!("contract-{contract}.seq"));
        let _guard = super::lock(&self.relay_seq);
        let last: u64 = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        let next = last + 1;
        if let Err(error) = std::fs::create_dir_all(&folder).and_then(|_| std::fs::write(&file, next.to_string())) {
            tracing::warn!(contract, %error, "cannot keep the relay's report number");
        }
        next
    }

    /// Whether `ticket` lets its holder use this relay for `contract` now.
    fn check_relay_ticket(&self, ticket: &str, contract: u64) -> Result<(), String> {
        let (named, expires_ms, signature) = relay_ticket_parts(ticket).ok_or("malformed relay ticket")?;
        if named != contract {
            return Err(format!("the ticket is for contract {named}, not {contract}"));
        }
        if expires_ms < now_ms() {
            return Err("the relay ticket expired: ask the server for another".into());
        }
        let signed = relay_signed_bytes(self.transport.identity().id(), contract, expires_ms);
        verify_bytes(&self.server_key, &signed, signature).map_err(|_| "the relay ticket is not the server's".into())
    }
}

async fn relay(
    State(inner): State<Arc<Inner>>,
    Path((contract, element)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    let ticket = headers.get(RELAY_TICKET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(reason) = inner.check_relay_ticket(ticket, contract) {
        return refuse(StatusCode::FORBIDDEN, reason);
    }
    let Ok(hash) = element.parse::<ElementHash>() else {
        return refuse(StatusCode::BAD_REQUEST, "the element must be a hex SHA-256");
    };
    let mut stream = match inner.transport.download(&hash, None).await {
        Ok(stream) => Box::pin(stream),
        Err(error) => return refuse(StatusCode::BAD_GATEWAY, format!("the server refused the element: {error}")),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) if bytes.len() + chunk.len() <= ELEMENT_BYTES_MAX => bytes.extend_from_slice(&chunk),
            Ok(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the element is too large for the relay"),
            Err(error) => return refuse(StatusCode::BAD_GATEWAY, format!("the element did not arrive whole: {error}")),
        }
    }
    if ElementHash::of(&bytes) != hash {
        return refuse(StatusCode::BAD_GATEWAY, "the element arrived corrupted");
    }
    let served = bytes.len() as u64;
    let seq = inner.next_served_seq(contract);
    inner.send(ProviderToServer::MarketServed { contract, seq, bytes: served }, None);
    tracing::debug!(contract, served, "relayed an element");
    (StatusCode::OK, Body::from(bytes)).into_response()
}
