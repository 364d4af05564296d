//! `idlegrid server`: its flags, the server configuration they make, and the running server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use idlegrid_server::ServerConfig;
use serde::de::DeserializeOwned;

use crate::{account, shutdown_signal};

/// The server's flags.
#[derive(clap::Args)]
pub struct ServerArgs {
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Where the database and elements live.
    #[arg(long, default_value = "idlegrid-server")]
    pub data: PathBuf,
    /// The database: SQLite at <data>/state.db when empty; a path or sqlite:<path>;
    /// postgres://user@host:port/db for PostgreSQL (several instances may share it).
    #[arg(long, env = "IDLEGRID_DATABASE", default_value = "")]
    pub database: String,
    /// Where element bytes live: <data>/elements when empty, a folder, or
    /// s3://bucket[/prefix] for an S3-compatible store (AWS_ENDPOINT, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP configure it).
    #[arg(long, env = "IDLEGRID_ELEMENTS", default_value = "")]
    pub elements: String,
    /// Seconds of silence after which an engine's tasks go to other engines.
    #[arg(long, default_value_t = 120)]
    pub engine_silence_secs: u64,
    /// Seconds between maintenance passes (silent engines, expired sessions, garbage).
    #[arg(long, default_value_t = 5.0)]
    pub maintenance_secs: f64,
    /// The constants of the pricing formulas, a TOML file (`packaging/pricing.toml` lists
    /// them with the defaults).
    #[arg(long)]
    pub pricing: Option<PathBuf>,
    /// Length of a billing increment, overriding the pricing file (default 15 minutes).
    #[arg(long)]
    pub billing_increment_secs: Option<f64>,
    /// How far a client's account may go below zero, in currency units, before its jobs
    /// are held (`none`: no limit).
    #[arg(long, default_value = "100")]
    pub client_overdraft: String,
    /// Probability that an assignment is a test task with a known answer (P6.2): 0 turns
    /// spot checks off.
    #[arg(long, default_value_t = 0.05)]
    pub spot_check_rate: f64,
    /// The same probability for a provider until it has passed --spot-check-new-count tests.
    #[arg(long, default_value_t = 0.25)]
    pub spot_check_new_rate: f64,
    #[arg(long, default_value_t = 10)]
    pub spot_check_new_count: u32,
    /// Wrong answers to test tasks after which a provider is quarantined.
    #[arg(long, default_value_t = 1)]
    pub quarantine_after: u32,
    /// The assumed largest fraction of saboteurs among providers, from which credibility
    /// follows (Sarmenta's f).
    #[arg(long, default_value_t = 0.2)]
    pub saboteur_fraction: f64,
    /// SMTP server for e-mail notices, host:port.
    #[arg(long)]
    pub smtp: Option<String>,
    /// Sender address of e-mail notices.
    #[arg(long, default_value = "idlegrid@localhost")]
    pub mail_from: String,
    /// Serve plain HTTP without TLS. For development on one machine only: traffic is
    /// readable by anyone on the path, and parties are identified by signatures alone.
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// The operator's CA certificate (PEM) for TLS, with --tls-ca-key; default: one the
    /// server creates in <data>/tls on first start.
    #[arg(long, requires = "tls_ca_key")]
    pub tls_ca_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_ca_cert")]
    pub tls_ca_key: Option<PathBuf>,
    /// A DNS name or IP address engines and clients use to reach this server (repeatable;
    /// localhost and the listen address are always included).
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// A party ID that may register as an operator (repeatable; `idlegrid ops id` prints
    /// yours).
    #[arg(long = "operator")]
    pub operators: Vec<idlegrid_types::PartyId>,
    /// Offer this engine build to every engine (signed with the server's key)...
    #[arg(long, requires = "upgrade_version")]
    pub upgrade_binary: Option<PathBuf>,
    /// ...as this version.
    #[arg(long, requires = "upgrade_binary")]
    pub upgrade_version: Option<String>,
    /// Seconds between CPU benchmarks of each engine (P5.1), which rate its power; engines
    /// are also measured when they first connect. 0 turns benchmarks off.
    #[arg(long, default_value_t = idlegrid_coordinator::BENCHMARK_INTERVAL_DEFAULT_MS / 1000)]
    pub benchmark_interval_secs: u64,
    /// Matrix size n of the CPU benchmark (2 n^3 floating-point operations a run).
    #[arg(long, default_value_t = idlegrid_coordinator::BENCHMARK_SIZE_DEFAULT, value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub benchmark_size: u32,
    /// Minutes of recorded availability an engine needs before it is a member of virtual
    /// nodes (jobs with a [cluster] request, P5.3); default 1440 (a day).
    #[arg(long)]
    pub cluster_history_minutes: Option<u32>,
    /// TOML file of placement tunables for cluster jobs (fields of the scheduler's
    /// configuration: band, pi_min, pi_max, members_max, full, ...).
    #[arg(long)]
    pub scheduler: Option<PathBuf>,
    /// TOML file of the market's valuation coefficients (fields of the market's
    /// `ValuationConfig`: computing_per_mflops_hour, memory_per_gb_hour, ...).
    #[arg(long)]
    pub valuation: Option<PathBuf>,
    /// Share of the price the platform takes on a trade between peers (0 to 1).
    #[arg(long, default_value_t = 0.02)]
    pub market_commission: f64,
    /// Most open offers one party may keep on the market.
    #[arg(long, default_value_t = 10_000)]
    pub market_open_offers_max: u64,
    /// Most open (kept) requests one party may have.
    #[arg(long, default_value_t = 1_000)]
    pub market_open_requests_max: u64,
    /// An address range notice webhooks may reach although it is not public (loopback,
    /// private, link-local), as 10.0.0.0/8 (repeatable). By default webhooks reach public
    /// addresses only.
    #[arg(long = "webhook-allow")]
    pub webhook_allow: Vec<idlegrid_coordinator::webhooks::NetRange>,
    /// Bytes of elements each client may store (after decompression).
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().client_storage_bytes_max)]
    pub client_storage_bytes: u64,
    /// Elements each client may store.
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().client_elements_max)]
    pub client_elements: u64,
    /// Connections one source address (an IPv6 /64) may hold open.
    #[arg(long, default_value_t = idlegrid_server::ConnectionLimits::default().connections_per_source_max)]
    pub connections_per_source: usize,
    /// Requests without an identity (health, metrics, registration, failed authentication)
    /// one source address may make per second...
    #[arg(long, default_value_t = idlegrid_server::RateLimits::default().unauthenticated.per_second)]
    pub unauthenticated_per_second: f64,
    /// ...and at once.
    #[arg(long, default_value_t = idlegrid_server::RateLimits::default().unauthenticated.burst)]
    pub unauthenticated_burst: u32,
    /// Registrations one source address may make per minute...
    #[arg(long, default_value_t = idlegrid_server::RateLimits::default().registrations.per_second * 60.0)]
    pub registrations_per_minute: f64,
    /// ...and at once.
    #[arg(long, default_value_t = idlegrid_server::RateLimits::default().registrations.burst)]
    pub registration_burst: u32,
    #[command(flatten)]
    pub checkpoints: crate::server_tasks::CheckpointArgs,
    #[command(flatten)]
    pub retention: crate::server_tasks::RetentionArgs,
    #[command(flatten)]
    pub preemption: crate::server_preemption::PreemptionArgs,
}

/// Start the server and serve until a shutdown signal.
pub async fn run(args: ServerArgs, log: Option<&str>) -> anyhow::Result<()> {
    init_server_logging(log);
    let data = args.data.clone();
    let config = args.config()?;
    let server = idlegrid_server::Server::start(config).await?;
    println!("idlegrid server listening on {}", server.url());
    match server.ca_pem() {
        Some(ca) => println!(
            "certificate authority {} (give engines and clients --server-ca {}, or compare this fingerprint on first use)",
            idlegrid_pki::pem_fingerprint(ca)?,
            data.join("tls/ca.pem").display()
        ),
        None => println!("WARNING: plain HTTP (--insecure-plain-http): for development on this machine only"),
    }
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// Logging for the server: to stderr, and its warnings and errors also to its own log server.
fn init_server_logging(filter: Option<&str>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = crate::log_filter(filter, "info");
    let terminal = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(idlegrid_server::self_log::layer())
        .with(crate::traces::layer("idlegrid-server"))
        .try_init();
}

/// A TOML settings file named by a flag, with errors that name the file.
fn settings_file<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the {what} file {} is invalid", path.display()))
}

impl ServerArgs {
    /// The configuration these flags describe, every value checked.
    fn config(self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::new(self.listen, self.data.clone());
        config.database = self.database.clone();
        config.elements = self.elements.clone();
        config.coordinator.operators = self.operators.clone();
        config.tls = if self.insecure_plain_http {
            None
        } else {
            Some(idlegrid_server::TlsSettings {
                ca_files: self.tls_ca_cert.clone().zip(self.tls_ca_key.clone()),
                names: self.tls_names.clone(),
            })
        };
        config.upgrade = self.upgrade_binary.clone().zip(self.upgrade_version.clone());
        if let Some(smtp) = &self.smtp {
            let (host, port) = smtp.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--smtp must be host:port"))?;
            config.smtp = Some(idlegrid_server::SmtpConfig {
                host: host.to_string(),
                port: port.parse()?,
                from: self.mail_from.clone(),
            });
        }
        config.maintenance_interval = Duration::from_secs_f64(self.maintenance_secs.max(0.05));
        self.money(&mut config)?;
        self.assurance(&mut config)?;
        self.scheduling(&mut config)?;
        self.market(&mut config)?;
        self.limits(&mut config)?;
        self.checkpoints.apply(&mut config);
        self.retention.apply(&mut config)?;
        self.preemption.apply(&mut config)?;
        Ok(config)
    }

    /// Prices, billing increment and overdraft.
    fn money(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        if let Some(path) = &self.pricing {
            config.coordinator.pricing = settings_file(path, "pricing")?;
        }
        if let Some(secs) = self.billing_increment_secs {
            anyhow::ensure!(secs >= 0.1, "--billing-increment-secs must be at least 0.1");
            config.coordinator.pricing.increment_ms = (secs * 1000.0) as u64;
        }
        config.coordinator.pricing.validate().map_err(|e| anyhow::anyhow!("pricing: {e}"))?;
        config.coordinator.client_overdraft_max_micros = match self.client_overdraft.as_str() {
            "none" => None,
            "0" => Some(0),
            units => Some(
                account::parse_amount(units)
                    .map_err(|e| anyhow::anyhow!("--client-overdraft must be none or a number of units: {e}"))?,
            ),
        };
        Ok(())
    }

    /// Spot checks, quarantine and credibility.
    fn assurance(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        config.coordinator.spot_checks = idlegrid_assurance::SpotCheckPolicy {
            rate: self.spot_check_rate,
            new_provider_rate: self.spot_check_new_rate,
            new_provider_checks: self.spot_check_new_count,
        };
        config.coordinator.spot_checks.validate().map_err(|e| anyhow::anyhow!("spot checks: {e}"))?;
        anyhow::ensure!(self.quarantine_after >= 1, "--quarantine-after must be at least 1");
        config.coordinator.quarantine =
            idlegrid_assurance::QuarantineRule { failed_spot_checks_max: self.quarantine_after };
        config.coordinator.credibility = idlegrid_assurance::CredibilityModel::new(self.saboteur_fraction)
            .map_err(|e| anyhow::anyhow!("--saboteur-fraction: {e}"))?;
        Ok(())
    }

    /// Silence limit, benchmarks and the scheduler's settings.
    fn scheduling(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        config.coordinator.provider_silence_ms_max = self.engine_silence_secs.saturating_mul(1000);
        config.coordinator.benchmark_interval_ms =
            (self.benchmark_interval_secs > 0).then(|| self.benchmark_interval_secs.saturating_mul(1000));
        config.coordinator.benchmark_size = self.benchmark_size;
        if let Some(path) = &self.scheduler {
            config.coordinator.scheduler = settings_file(path, "scheduler")?;
        }
        if let Some(minutes) = self.cluster_history_minutes {
            config.coordinator.scheduler.rating_window_minutes_min = minutes;
        }
        config.coordinator.scheduler.validate().map_err(|e| anyhow::anyhow!("scheduler: {e}"))?;
        Ok(())
    }

    /// Valuation, commission and per-party bounds of the market.
    fn market(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        if let Some(path) = &self.valuation {
            config.coordinator.market.valuation = settings_file(path, "valuation")?;
        }
        config.coordinator.market.valuation.validate().map_err(|e| anyhow::anyhow!("valuation: {e}"))?;
        anyhow::ensure!(
            self.market_commission.is_finite() && (0.0..=1.0).contains(&self.market_commission),
            "--market-commission must be from 0 to 1"
        );
        config.coordinator.market.commission_rate = self.market_commission;
        config.coordinator.market.open_offers_per_party_max = self.market_open_offers_max;
        config.coordinator.market.open_requests_per_party_max = self.market_open_requests_max;
        Ok(())
    }

    /// Webhook addresses, storage quotas, connection and rate limits.
    fn limits(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        config.coordinator.webhook_allow = self.webhook_allow.clone();
        config.coordinator.client_storage_bytes_max = self.client_storage_bytes;
        config.coordinator.client_elements_max = self.client_elements;
        anyhow::ensure!(self.connections_per_source >= 1, "--connections-per-source must be at least 1");
        config.connection_limits.connections_per_source_max = self.connections_per_source;
        let rate = |per_second: f64, burst: u32, flags: &str| {
            anyhow::ensure!(per_second.is_finite() && per_second > 0.0 && burst >= 1, "{flags} must be positive");
            Ok(idlegrid_server::Rate { burst, per_second })
        };
        config.rate_limits = idlegrid_server::RateLimits {
            unauthenticated: rate(
                self.unauthenticated_per_second,
                self.unauthenticated_burst,
                "--unauthenticated-per-second and --unauthenticated-burst",
            )?,
            registrations: rate(
                self.registrations_per_minute / 60.0,
                self.registration_burst,
                "--registrations-per-minute and --registration-burst",
            )?,
        };
        Ok(())
    }
}
