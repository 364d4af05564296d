//! The centralized task server (P4): an HTTP shell around the [`idlegrid_coordinator`]. It
//! decodes requests, checks signatures, runs the coordinator in a store transaction on a
//! blocking thread, carries out the effects (wake long polls, delete element bytes), streams
//! elements to and from the element store, and runs periodic maintenance.
//!
//! Shape: [`ServerConfig`] -> [`Server::start`] -> [`ServerHandle`] (address, shutdown).

mod elements;
mod http;
mod notices;
mod wakers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idlegrid_coordinator::{Coordinator, CoordinatorConfig, Effects};
use idlegrid_store::{SqliteStore, Store, Tx};
use tokio_util::sync::CancellationToken;

pub use elements::ElementStore;
pub use notices::{SmtpConfig, webhook_signature};

/// Everything a server instance needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds `state.db` (the SQLite store) and `elements/` (element bytes).
    pub data_dir: PathBuf,
    pub coordinator: CoordinatorConfig,
    /// How often silent engines are looked for, idle sessions expired and garbage collected.
    pub maintenance_interval: Duration,
    /// An engine build to offer every engine (P3.11): the binary and its version.
    pub upgrade: Option<(PathBuf, String)>,
    /// Where e-mail notices go out (P4.12); none: e-mail notices wait and are given up.
    pub smtp: Option<SmtpConfig>,
    /// How often due notices are delivered.
    pub notice_interval: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServerConfig { listen, data_dir, coordinator: CoordinatorConfig::default(), maintenance_interval: Duration::from_secs(5), upgrade: None, smtp: None, notice_interval: Duration::from_secs(1) }
    }
}

/// Shared by every request.
pub(crate) struct AppState {
    pub store: SqliteStore,
    pub coordinator: Coordinator,
    pub elements: ElementStore,
    pub wakers: wakers::Wakers,
    pub shutdown: CancellationToken,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AppState {
    /// Run coordinator work in a store transaction on a blocking thread, then carry out its
    /// effects.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Coordinator, &mut dyn Tx, &mut Effects) -> Result<R, idlegrid_coordinator::ApiError> + Send + 'static,
    ) -> Result<R, idlegrid_coordinator::ApiError> {
        let state = self.clone();
        let (result, effects) = tokio::task::spawn_blocking(move || {
            let mut effects = Effects::default();
            let result = state.store.write(|tx| work(&state.coordinator, tx, &mut effects));
            // Effects of a rolled-back transaction must not happen.
            if result.is_err() {
                effects = Effects::default();
            }
            (result, effects)
        })
        .await
        .map_err(|e| idlegrid_coordinator::ApiError::internal(format!("worker failed: {e}")))?;
        self.apply(effects);
        result
    }

    fn apply(self: &Arc<Self>, effects: Effects) {
        for session in effects.wake {
            self.wakers.wake(session);
        }
        if !effects.delete_elements.is_empty() {
            let state = self.clone();
            tokio::spawn(async move {
                for hash in effects.delete_elements {
                    if let Err(error) = state.elements.delete(&hash).await {
                        tracing::warn!(%hash, %error, "could not delete element bytes");
                    }
                }
            });
        }
    }
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting requests, end long polls, finish in-flight requests.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Wait until the server stops (after `shutdown` from another handle or a fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

pub struct Server;

impl Server {
    /// Open the store and element store under `data_dir`, bind, and serve in the background.
    pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
        use anyhow::Context;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
        let store = SqliteStore::open(&config.data_dir.join("state.db"))?;
        let coordinator = store.write(|tx| Coordinator::new(config.coordinator.clone(), tx))?;
        let elements = ElementStore::local(&config.data_dir.join("elements"))?;
        let shutdown = CancellationToken::new();
        let state = Arc::new(AppState { store, coordinator, elements, wakers: wakers::Wakers::default(), shutdown: shutdown.clone() });
        if let Some((binary, version)) = &config.upgrade {
            publish_upgrade(&state, binary, version).await?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is another server running there?)", config.listen))?;
        let addr = listener.local_addr()?;
        let app = http::router(state.clone());
        let maintenance = tokio::spawn(maintain(state.clone(), config.maintenance_interval));
        let delivery = tokio::spawn(notices::deliver(state.clone(), config.smtp.clone(), config.notice_interval));
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(error) = served {
                tracing::error!(%error, "server stopped with an error");
            }
            maintenance.abort();
            delivery.abort();
        });
        tracing::info!(%addr, data = %config.data_dir.display(), "server listening");
        Ok(ServerHandle { addr, shutdown, task })
    }
}

/// Store an engine binary as an element and offer it, signed, to every engine.
async fn publish_upgrade(state: &Arc<AppState>, binary: &std::path::Path, version: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = std::fs::read(binary).with_context(|| format!("cannot read the upgrade {}", binary.display()))?;
    let hash = idlegrid_types::ElementHash::of(&bytes);
    let size = bytes.len() as u64;
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) });
    state.elements.upload(&hash, Box::pin(stream), u64::MAX).await?;
    let element = idlegrid_types::ElementRef { hash, size };
    let version = version.to_string();
    let now = now_ms();
    state.run(move |c, tx, _| c.publish_upgrade(tx, &version, element, now)).await?;
    tracing::info!(%hash, "engine upgrade offered");
    Ok(())
}

async fn maintain(state: Arc<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        match state.run(move |coordinator, tx, fx| Ok(coordinator.maintain(tx, now, fx)?)).await {
            Ok(report) if report != Default::default() => tracing::debug!(?report, "maintenance"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "maintenance failed"),
        }
        state.wakers.forget_idle(Duration::from_secs(3600));
    }
}
