//! The accept loop: TLS (or plain HTTP in development), per-connection limits, and the
//! identity of the peer's certificate handed to every request of the connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use idlegrid_types::PartyId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
/// longer than `header_read_timeout` to arrive (slow clients), end the connection; so does a
/// body slower than `body_pace` (408).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub connections_max: usize,
    /// Connections one source address (an IPv6 /64) may hold open; more are closed at once,
    /// so that a few sources cannot take every connection.
    pub connections_per_source_max: usize,
    pub body_pace: crate::pace::Pace,
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
            connections_per_source_max: 256,
            body_pace: crate::pace::Pace { grace: Duration::from_secs(10), bytes_per_second_min: 1024 },
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
    let sources = Sources::new(limits.connections_per_source_max);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.header_bytes_max.max(8192));
    // HTTP/2 has no header timeout: pings find peers that are gone.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.header_bytes_max as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
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
        let Some(source) = sources.take(remote.ip()) else {
            tracing::debug!(%remote, "closing a connection: its source holds too many already");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        let header_read_timeout = limits.header_read_timeout;
        let pace = limits.body_pace;
        tokio::spawn(async move {
            let _slots = (slot, source);
            match acceptor {
                None => {
                    let service = with_peer(app, Peer::Plain, remote, pace);
                    let io = FirstBytes::new(tcp, header_read_timeout);
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
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
                    let service = with_peer(app, Peer::Tls(party), remote, pace);
                    let io = FirstBytes::new(stream, header_read_timeout);
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
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

/// The router, with the connection's peer and source address added to each request's
/// extensions, and its body held to the minimum pace.
fn with_peer(
    app: Router,
    peer: Peer,
    remote: SocketAddr,
    pace: crate::pace::Pace,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
> {
    hyper_util::service::TowerToHyperService::new(app.map_request(move |request: Request<Incoming>| {
        let mut request = request.map(|body| axum::body::Body::new(crate::pace::PacedBody::new(body, pace)));
        request.extensions_mut().insert(peer.clone());
        request.extensions_mut().insert(Remote(remote));
        request
    }))
}

/// A connection that must bring its first bytes within a timeout. HTTP/1's header timeout
/// starts only once the server knows the connection speaks HTTP/1, which it learns from the
/// first bytes: a connection that sends nothing would otherwise be held for ever.
struct FirstBytes<S> {
    inner: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstBytes<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        FirstBytes { inner, deadline: Some(Box::pin(tokio::time::sleep(timeout))) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.deadline.as_mut().map(|deadline| deadline.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the connection sent no request within the header timeout",
                ))),
                _ => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The address a request came from (the TCP peer).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub SocketAddr);

/// Open connections per source address, bounded.
struct Sources {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place in its source's count, given back when the connection ends.
struct SourceSlot {
    key: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Sources {
    fn new(max: usize) -> Sources {
        Sources { max, open: Arc::default() }
    }

    fn take(&self, ip: IpAddr) -> Option<SourceSlot> {
        let key = crate::rate::source_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot { key, open: self.open.clone() })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_per_source_and_given_back() {
        let sources = Sources::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = sources.take(a).unwrap();
        let _second = sources.take(a).unwrap();
        assert!(sources.take(a).is_none());
        assert!(sources.take("192.0.2.2".parse().unwrap()).is_some(), "another source is not affected");
        drop(first);
        assert!(sources.take(a).is_some());
    }
}
