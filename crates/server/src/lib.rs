//! The centralized task server (P4): an HTTP shell around the [`idlegrid_coordinator`]. It
//! decodes requests, checks signatures, runs the coordinator in a store transaction on a
//! blocking thread, carries out the effects (wake long polls, delete element bytes), streams
//! elements to and from the element store, and runs periodic maintenance.
//!
//! Shape: [`ServerConfig`] -> [`Server::start`] -> [`ServerHandle`] (address, shutdown).

pub mod access;
mod deliveries;
mod elements;
mod http;
mod listener;
mod market_data_http;
mod market_http;
mod market_peripheral_http;
mod metrics;
mod money_http;
mod notices;
pub mod openapi;
mod ops_http;
mod pace;
mod payments;
mod private;
mod rate;
pub mod self_log;
mod traces;
mod validation;
mod wakers;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idlegrid_coordinator::{Coordinator, CoordinatorConfig, Effects};
use idlegrid_store::{AnyStore, Store, Tx};
use tokio_util::sync::CancellationToken;

pub use elements::{ElementStore, UploadError, conformance as element_conformance};
pub use listener::ConnectionLimits;
pub use notices::{SmtpConfig, webhook_signature};
pub use pace::Pace;
pub use payments::{PaymentAdapter, PaymentDecision};
pub use rate::{Rate, RateLimits};
pub use web::WebTimes;

/// Everything a server instance needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds `state.db` (the SQLite store, unless `database` names another), `elements/`
    /// (element bytes) and `tls/` (the certificate authority).
    pub data_dir: PathBuf,
    /// The database: empty for SQLite at `data_dir/state.db`; a path or `sqlite:<path>`;
    /// `postgres://user@host:port/db` for PostgreSQL, shared by several instances.
    pub database: String,
    /// Where element bytes live: empty for `data_dir/elements`, a folder, or
    /// `s3://bucket[/prefix]` (an S3-compatible store shared by several instances).
    pub elements: String,
    pub coordinator: CoordinatorConfig,
    /// How often silent engines are looked for, idle sessions expired and garbage collected.
    pub maintenance_interval: Duration,
    /// An engine build to offer every engine (P3.11): the binary and its version.
    pub upgrade: Option<(PathBuf, String)>,
    /// Where e-mail notices go out (P4.12); none: e-mail notices wait and are given up.
    pub smtp: Option<SmtpConfig>,
    /// How often due notices are delivered.
    pub notice_interval: Duration,
    /// HTTPS with certificates (the default); `None` serves plain HTTP, for development only.
    pub tls: Option<TlsSettings>,
    pub connection_limits: ConnectionLimits,
    /// Request rates per source address for callers without an identity.
    pub rate_limits: RateLimits,
    /// How long a job's validator may compute for one comparison of two results.
    pub validator_cpu_time_max: Duration,
    /// A payment processor that confirms deposit requests, reviewed every maintenance
    /// interval; `None`: only operators approve them.
    pub payment_adapter: Option<Arc<dyn PaymentAdapter>>,
    /// How long the web manager's sign-in links and sessions live.
    pub web: WebTimes,
}

/// Where the certificate authority comes from, and the names the server answers to.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The operator's CA (certificate and key, PEM files); default: `tls/ca.pem` and
    /// `tls/ca.key` in the data folder, created on first start. Instances that share a
    /// database must share the CA: give them the same files.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// DNS names and IP addresses of the server's certificate, besides `localhost`, the
    /// loopback addresses and the address it listens on.
    pub names: Vec<String>,
}

impl TlsSettings {
    fn names(&self, listen: SocketAddr) -> Vec<String> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        for name in &self.names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    fn authority(&self, data_dir: &std::path::Path) -> anyhow::Result<idlegrid_pki::Authority> {
        use anyhow::Context;
        match &self.ca_files {
            Some((cert, key)) => {
                let read = |path: &PathBuf| {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
                };
                Ok(idlegrid_pki::Authority::from_pem(&read(cert)?, &read(key)?)?)
            }
            None => Ok(idlegrid_pki::Authority::load_or_create(&data_dir.join("tls"), "idlegrid server CA")?),
        }
    }
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServerConfig {
            listen,
            data_dir,
            database: String::new(),
            elements: String::new(),
            coordinator: CoordinatorConfig::default(),
            maintenance_interval: Duration::from_secs(5),
            upgrade: None,
            smtp: None,
            notice_interval: Duration::from_secs(1),
            tls: Some(TlsSettings::default()),
            connection_limits: ConnectionLimits::default(),
            rate_limits: RateLimits::default(),
            validator_cpu_time_max: Duration::from_secs(10),
            payment_adapter: None,
            web: WebTimes::default(),
        }
    }
}

/// Shared by every request.
pub(crate) struct AppState {
    pub store: AnyStore,
    pub coordinator: Coordinator,
    pub elements: ElementStore,
    pub wakers: wakers::Wakers,
    pub shutdown: CancellationToken,
    /// Issues party certificates at registration; `None` in plain-HTTP development mode.
    pub authority: Option<idlegrid_pki::Authority>,
    pub metrics: metrics::Metrics,
    pub polls: wakers::PollSlots,
    /// The address this instance listens on, naming it in health reports.
    pub instance: std::sync::OnceLock<String>,
    /// Runs jobs' validators on results that may differ slightly.
    pub validators: validation::Validators,
    /// Requests without an identity, and registrations, per source address.
    pub unauthenticated: rate::Limiter,
    pub registrations: rate::Limiter,
    /// Sign-in links and browser sessions of the web manager.
    pub web: web::WebState,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AppState {
    /// Run coordinator work in a store transaction on a blocking thread, then carry out its
    /// effects.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl Fn(&Coordinator, &mut dyn Tx, &mut Effects) -> Result<R, idlegrid_coordinator::CoordinatorError>
        + Send
        + 'static,
    ) -> Result<R, idlegrid_coordinator::CoordinatorError> {
        let state = self.clone();
        let (result, effects) = tokio::task::spawn_blocking(move || {
            let mut effects = Effects::default();
            // `work` may run more than once (a transaction that conflicted with another
            // instance's is run again): each attempt starts with no effects.
            let result = state.store.write_retrying(|tx| {
                effects = Effects::default();
                let value = work(&state.coordinator, tx, &mut effects)?;
                if !effects.wake.is_empty() {
                    let sessions: Vec<_> = effects.wake.iter().copied().collect();
                    tx.announce_wakes(&sessions)?;
                }
                Ok(value)
            });
            // Effects of a rolled-back transaction must not happen.
            if result.is_err() {
                effects = Effects::default();
            }
            (result, effects)
        })
        .await
        .map_err(|e| idlegrid_coordinator::CoordinatorError::internal(format!("worker failed: {e}")))?;
        self.apply(effects);
        result
    }

    fn apply(self: &Arc<Self>, effects: Effects) {
        self.metrics.tasks_concluded.fetch_add(effects.tasks_concluded, std::sync::atomic::Ordering::Relaxed);
        self.metrics.count_market(&effects.market);
        for session in effects.wake {
            self.wakers.wake(session);
        }
        if !effects.comparisons.is_empty() {
            validation::spawn(self, effects.comparisons);
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
    ca_pem: Option<String>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The certificate authority (PEM) that clients and engines must trust; `None` for plain
    /// HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
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
        idlegrid_pki::install_default_provider();
        private::create_dir(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
        // Secrets other local users can read are secrets no more: refuse them before use.
        if let idlegrid_store::DatabaseLocation::SqliteFile(path) =
            idlegrid_store::DatabaseLocation::parse(&config.database, &config.data_dir.join("state.db"))?
        {
            // The journal files hold the same secrets, and outlive a chmod of the database.
            let what = "the database (it holds the server's signing key and ticket secret)";
            private::check_file(&path, what)?;
            for suffix in ["-wal", "-shm"] {
                let mut journal = path.clone().into_os_string();
                journal.push(suffix);
                private::check_file(std::path::Path::new(&journal), what)?;
            }
        }
        if let Some(tls) = &config.tls {
            let key = match &tls.ca_files {
                Some((_, key)) => key.clone(),
                None => config.data_dir.join("tls").join("ca.key"),
            };
            private::check_file(&key, "the CA key")?;
        }
        // The PostgreSQL client blocks: open the store and load the coordinator off the runtime.
        let (database, default_path, coordinator_config) =
            (config.database.clone(), config.data_dir.join("state.db"), config.coordinator.clone());
        let (store, coordinator) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store = AnyStore::open(&database, &default_path).context("cannot open the database (--database)")?;
            // Instances starting together may conflict over the keys they create: run it again.
            let coordinator = store.write_retrying(|tx| Coordinator::new(coordinator_config.clone(), tx))?;
            Ok((store, coordinator))
        })
        .await??;
        let elements = ElementStore::open(&config.elements, &config.data_dir.join("elements"))?;
        if let Some(module) = coordinator.benchmark_module() {
            store_benchmark_module(&elements, module).await?;
        }
        let shutdown = CancellationToken::new();
        let authority = config.tls.as_ref().map(|tls| tls.authority(&config.data_dir)).transpose()?;
        let tls = match (&config.tls, &authority) {
            (Some(settings), Some(authority)) => {
                Some(Arc::new(authority.server_config(&settings.names(config.listen))?))
            }
            _ => None,
        };
        let ca_pem = authority.as_ref().map(|a| a.cert_pem().to_string());
        if let Some(authority) = &authority {
            tracing::info!(fingerprint = %authority.fingerprint(), "certificate authority (parties pin it on first use)");
        } else {
            tracing::warn!(
                "serving PLAIN HTTP for development: no encryption, identities rest on request signatures only"
            );
        }
        let state = Arc::new(AppState {
            store,
            coordinator,
            elements,
            wakers: wakers::Wakers::default(),
            shutdown: shutdown.clone(),
            authority,
            metrics: metrics::Metrics::default(),
            polls: wakers::PollSlots::new(config.connection_limits.long_polls_per_party_max),
            instance: std::sync::OnceLock::new(),
            validators: validation::Validators::new(config.validator_cpu_time_max),
            unauthenticated: rate::Limiter::new(config.rate_limits.unauthenticated),
            registrations: rate::Limiter::new(config.rate_limits.registrations),
            web: web::WebState::new(config.web, config.maintenance_interval),
        });
        // Instances sharing a PostgreSQL database wake each other's long polls (LISTEN/NOTIFY).
        let stop_listening = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = Arc::downgrade(&state);
        state.store.listen_wakes(
            move |session| {
                if let Some(state) = weak.upgrade() {
                    state.wakers.wake(session);
                }
            },
            stop_listening.clone(),
        );
        if let Some((binary, version)) = &config.upgrade {
            publish_upgrade(&state, binary, version).await?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is another server running there?)", config.listen))?;
        let addr = listener.local_addr()?;
        let _ = state.instance.set(addr.to_string());
        let app = http::router(state.clone());
        let maintenance = tokio::spawn(maintain(state.clone(), config.maintenance_interval));
        let delivery = tokio::spawn(notices::deliver(state.clone(), config.smtp.clone(), config.notice_interval));
        let results_out = tokio::spawn(deliveries::deliver(state.clone(), config.notice_interval));
        let payments = config.payment_adapter.clone().map(|adapter| {
            tokio::spawn(payments::review_deposits(state.clone(), adapter, config.maintenance_interval))
        });
        let stop = shutdown.clone();
        let limits = config.connection_limits.clone();
        let task = tokio::spawn(async move {
            listener::serve(listener, app, tls, limits, stop).await;
            stop_listening.store(true, std::sync::atomic::Ordering::Relaxed);
            maintenance.abort();
            delivery.abort();
            results_out.abort();
            if let Some(payments) = payments {
                payments.abort();
            }
        });
        tracing::info!(%addr, data = %config.data_dir.display(), "server listening");
        Ok(ServerHandle { addr, ca_pem, shutdown, task })
    }
}

/// Put the benchmark module's bytes (P5.1) in the element store, where engines download them
/// with their assignment's ticket; the coordinator recorded the element already.
async fn store_benchmark_module(elements: &ElementStore, module: &'static [u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    let hash = idlegrid_types::ElementHash::of(module);
    if elements.exists(&hash).await.unwrap_or(false) {
        return Ok(());
    }
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from_static(module)) });
    elements.upload(&hash, Box::pin(stream), u64::MAX).await.context("cannot store the benchmark module")?;
    tracing::debug!(%hash, "benchmark module stored");
    Ok(())
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
        state.metrics.sample();
        web::report_health_now_and_then(&state).await;
        self_log::file(&state).await;
    }
}
