//! The accept loop: TLS (or plain HTTP in development), per-connection limits, and the
//! identity of the peer's certificate handed to every request of the connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use idlegrid_types::PartyId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Who is at the other end of the connection, as far as TLS can tell.
#[derive(Debug, Clone)]
pub enum Peer {
    /// Plain HTTP (development only): identity comes from request signatures alone.
    Plain,
    /// TLS; the party named by the verified client certificate, if one was presented.
    Tls(Option<PartyId>),
}

/// Limits of a connection. A header larger than `header_bytes_max`, or headers that take
/// longer than `header_read_timeout` to arrive (slow clients), end the connection.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub connections_max: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub header_bytes_max: usize,
    /// Long polls one party may have waiting at once (an engine or a client needs one per
    /// session); more are answered 429.
    pub long_polls_per_party_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            connections_max: 20_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            header_bytes_max: 64 * 1024,
            long_polls_per_party_max: 16,
        }
    }
}

/// Serve `app` on `listener` until `stop`, then let open requests finish (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.header_bytes_max.max(8192));
    builder.http2().timer(TokioTimer::new()).max_header_list_size(limits.header_bytes_max as u32);
    let builder = Arc::new(builder);
    loop {
        // A slot before accepting: past the limit, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot { Ok(slot) => slot, Err(_) => break },
        };
        let (tcp, remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    let service = with_peer(app, Peer::Plain);
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let party = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(idlegrid_pki::party_of_certificate);
                    let service = with_peer(app, Peer::Tls(party));
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("requests still open after 10 s of shutdown; closing them"),
    }
}

/// The router, with the connection's peer added to each request's extensions.
fn with_peer(
    app: Router,
    peer: Peer,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
> {
    hyper_util::service::TowerToHyperService::new(app.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        request
    }))
}
