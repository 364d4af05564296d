//! `idlegrid`: run a server, an engine, or drive jobs as a client.

mod account;
mod bench;
mod bench_engine;
mod cluster;
mod demo;
mod jobfile;
mod jobs;
mod local;
mod market;
mod ops;
mod sim;
mod web;

#[cfg(test)]
mod cli_tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use idlegrid_protocol::messages::Replay;
use idlegrid_types::{JobId, Untrusted};

#[derive(Parser)]
#[command(
    name = "idlegrid",
    version,
    about = "Put idle computers to work: server, compute engine and client in one command"
)]
struct Cli {
    /// Server to talk to (client and engine commands); several instances of one platform
    /// separated by commas, tried in turn when the one in use is unreachable.
    #[arg(long, global = true, env = "IDLEGRID_SERVER", default_value = "https://127.0.0.1:7700")]
    server: String,
    /// The server's certificate authority (PEM; `tls/ca.pem` in the server's data folder).
    /// Without it, the CA the server presents is trusted on first use and pinned (in the
    /// client's home, or the engine's data folder).
    #[arg(long, global = true, env = "IDLEGRID_SERVER_CA")]
    server_ca: Option<PathBuf>,
    /// Folder for this user's client identity.
    #[arg(long, global = true, env = "IDLEGRID_HOME")]
    home: Option<PathBuf>,
    /// Seconds a client command keeps trying to reach a server that does not answer.
    #[arg(long, global = true, default_value_t = 30)]
    connect_timeout_secs: u64,
    /// Log filter, e.g. `info` or `idlegrid_engine=debug` (default: Idlegrid's messages from
    /// info up for the server and engine, from warn up for other commands, and only errors of
    /// the libraries it uses).
    #[arg(long, global = true, env = "IDLEGRID_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run")]
enum Command {
    /// Run the server (embedded SQLite store and local element folder).
    Server {
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: SocketAddr,
        /// Where the database and elements live.
        #[arg(long, default_value = "idlegrid-server")]
        data: PathBuf,
        /// The database: SQLite at <data>/state.db when empty; a path or sqlite:<path>;
        /// postgres://user@host:port/db for PostgreSQL (several instances may share it).
        #[arg(long, env = "IDLEGRID_DATABASE", default_value = "")]
        database: String,
        /// Where element bytes live: <data>/elements when empty, a folder, or
        /// s3://bucket[/prefix] for an S3-compatible store (AWS_ENDPOINT, AWS_REGION,
        /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP configure it).
        #[arg(long, env = "IDLEGRID_ELEMENTS", default_value = "")]
        elements: String,
        /// Seconds of silence after which an engine's tasks go to other engines.
        #[arg(long, default_value_t = 120)]
        engine_silence_secs: u64,
        /// Seconds between maintenance passes (silent engines, expired sessions, garbage).
        #[arg(long, default_value_t = 5.0)]
        maintenance_secs: f64,
        /// The constants of the pricing formulas, a TOML file (`packaging/pricing.toml` lists
        /// them with the defaults).
        #[arg(long)]
        pricing: Option<PathBuf>,
        /// Length of a billing increment, overriding the pricing file (default 15 minutes).
        #[arg(long)]
        billing_increment_secs: Option<f64>,
        /// How far a client's account may go below zero, in currency units, before its jobs
        /// are held (`none`: no limit).
        #[arg(long, default_value = "100")]
        client_overdraft: String,
        /// Probability that an assignment is a test task with a known answer (P6.2): 0 turns
        /// spot checks off.
        #[arg(long, default_value_t = 0.05)]
        spot_check_rate: f64,
        /// The same probability for a provider until it has passed --spot-check-new-count tests.
        #[arg(long, default_value_t = 0.25)]
        spot_check_new_rate: f64,
        #[arg(long, default_value_t = 10)]
        spot_check_new_count: u32,
        /// Wrong answers to test tasks after which a provider is quarantined.
        #[arg(long, default_value_t = 1)]
        quarantine_after: u32,
        /// The assumed largest fraction of saboteurs among providers, from which credibility
        /// follows (Sarmenta's f).
        #[arg(long, default_value_t = 0.2)]
        saboteur_fraction: f64,
        /// SMTP server for e-mail notices, host:port.
        #[arg(long)]
        smtp: Option<String>,
        /// Sender address of e-mail notices.
        #[arg(long, default_value = "idlegrid@localhost")]
        mail_from: String,
        /// Serve plain HTTP without TLS. For development on one machine only: traffic is
        /// readable by anyone on the path, and parties are identified by signatures alone.
        #[arg(long)]
        insecure_plain_http: bool,
        /// The operator's CA certificate (PEM) for TLS, with --tls-ca-key; default: one the
        /// server creates in <data>/tls on first start.
        #[arg(long, requires = "tls_ca_key")]
        tls_ca_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_ca_cert")]
        tls_ca_key: Option<PathBuf>,
        /// A DNS name or IP address engines and clients use to reach this server (repeatable;
        /// localhost and the listen address are always included).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// A party ID that may register as an operator (repeatable; `idlegrid ops id` prints
        /// yours).
        #[arg(long = "operator")]
        operators: Vec<idlegrid_types::PartyId>,
        /// Offer this engine build to every engine (signed with the server's key)...
        #[arg(long, requires = "upgrade_version")]
        upgrade_binary: Option<PathBuf>,
        /// ...as this version.
        #[arg(long, requires = "upgrade_binary")]
        upgrade_version: Option<String>,
        /// Seconds between CPU benchmarks of each engine (P5.1), which rate its power; engines
        /// are also measured when they first connect. 0 turns benchmarks off.
        #[arg(long, default_value_t = idlegrid_coordinator::BENCHMARK_INTERVAL_DEFAULT_MS / 1000)]
        benchmark_interval_secs: u64,
        /// Matrix size n of the CPU benchmark (2 n^3 floating-point operations a run).
        #[arg(long, default_value_t = idlegrid_coordinator::BENCHMARK_SIZE_DEFAULT, value_parser = clap::value_parser!(u32).range(16..=2048))]
        benchmark_size: u32,
        /// Minutes of recorded availability an engine needs before it is a member of virtual
        /// nodes (jobs with a [cluster] request, P5.3); default 1440 (a day).
        #[arg(long)]
        cluster_history_minutes: Option<u32>,
        /// TOML file of placement tunables for cluster jobs (fields of the scheduler's
        /// configuration: band, pi_min, pi_max, members_max, full, ...).
        #[arg(long)]
        scheduler: Option<PathBuf>,
        /// TOML file of the market's valuation coefficients (fields of the market's
        /// `ValuationConfig`: computing_per_mflops_hour, memory_per_gb_hour, ...).
        #[arg(long)]
        valuation: Option<PathBuf>,
        /// Share of the price the platform takes on a trade between peers (0 to 1).
        #[arg(long, default_value_t = 0.02)]
        market_commission: f64,
        /// Most open offers one party may keep on the market.
        #[arg(long, default_value_t = 10_000)]
        market_open_offers_max: u64,
        /// Most open (kept) requests one party may have.
        #[arg(long, default_value_t = 1_000)]
        market_open_requests_max: u64,
        /// An address range notice webhooks may reach although it is not public (loopback,
        /// private, link-local), as 10.0.0.0/8 (repeatable). By default webhooks reach public
        /// addresses only.
        #[arg(long = "webhook-allow")]
        webhook_allow: Vec<idlegrid_coordinator::webhooks::NetRange>,
        /// Bytes of elements each client may store (after decompression).
        #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().client_storage_bytes_max)]
        client_storage_bytes: u64,
        /// Elements each client may store.
        #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().client_elements_max)]
        client_elements: u64,
        /// Connections one source address (an IPv6 /64) may hold open.
        #[arg(long, default_value_t = idlegrid_server::ConnectionLimits::default().connections_per_source_max)]
        connections_per_source: usize,
        /// Requests without an identity (health, metrics, registration, failed authentication)
        /// one source address may make per second...
        #[arg(long, default_value_t = idlegrid_server::RateLimits::default().unauthenticated.per_second)]
        unauthenticated_per_second: f64,
        /// ...and at once.
        #[arg(long, default_value_t = idlegrid_server::RateLimits::default().unauthenticated.burst)]
        unauthenticated_burst: u32,
        /// Registrations one source address may make per minute...
        #[arg(long, default_value_t = idlegrid_server::RateLimits::default().registrations.per_second * 60.0)]
        registrations_per_minute: f64,
        /// ...and at once.
        #[arg(long, default_value_t = idlegrid_server::RateLimits::default().registrations.burst)]
        registration_burst: u32,
    },
    /// Run a compute engine that works for the server (`engine status` shows a running one).
    Engine {
        #[command(subcommand)]
        action: Option<EngineAction>,
        /// Where the engine keeps its identity, keys, element cache and tasks (also before or
        /// after `status`).
        #[arg(long, global = true, default_value = "idlegrid-engine")]
        data: PathBuf,
        /// The owner's settings (TOML): mode, cores, memory and disk budgets, hours, contact
        /// schedule, status page. Options below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Tasks run at once (default: the number of cores).
        #[arg(long, alias = "slots")]
        cores: Option<u32>,
        /// `continuous` (always, at the task priority below) or `idle-only` (only while nobody
        /// uses the computer).
        #[arg(long)]
        mode: Option<String>,
        /// OS scheduling priority of tasks: `lowest` (the default: they get only CPU time nothing
        /// else wants) or `normal` (a computer given over to the grid).
        #[arg(long)]
        task_priority: Option<idlegrid_engine::TaskPriority>,
        /// Tasks staged ahead of the running ones.
        #[arg(long)]
        prefetch: Option<u32>,
        /// Most results kept waiting while the server cannot be reached: at the bound the engine
        /// takes no new work until some are delivered.
        #[arg(long)]
        outbox_results_max: Option<usize>,
        /// Most bytes of results kept waiting while the server cannot be reached.
        #[arg(long)]
        outbox_bytes_max: Option<u64>,
        /// Address of the local status page, e.g. 127.0.0.1:7710 (`off` for none).
        #[arg(long)]
        status_listen: Option<String>,
        /// Trust only this server signing key (hex) for task assignments.
        #[arg(long)]
        server_key: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Run only jobs that meet this requirement, e.g. `job.client in ["alice"]`,
        /// `job.pay_per_hour >= 2` or `task.memory_mb <= 512` (the server places nothing else here).
        #[arg(long)]
        job_requirement: Option<String>,
    },
    /// Submit, watch, control and collect jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Run a job's tasks on this machine through the same runtime, to debug them (P1.7).
    RunLocal {
        /// The job file (TOML).
        job: PathBuf,
        /// Run only the first N tasks.
        #[arg(long, conflicts_with = "percent")]
        tasks: Option<u64>,
        /// Run this percentage of the tasks, spread evenly.
        #[arg(long)]
        percent: Option<f64>,
        /// Write results here (`<task>.out`, `<task>.err`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parallel tasks (default: the number of cores).
        #[arg(long)]
        parallel: Option<usize>,
    },
    /// A client's money: balance, statements, deposit requests, notices; a provider's earnings,
    /// payout requests and barter (with --engine-data).
    Account {
        #[command(subcommand)]
        action: Option<account::AccountCommand>,
        /// Act as the provider of the engine with this data folder instead of as the client.
        #[arg(long, global = true)]
        engine_data: Option<PathBuf>,
    },
    /// The bartering market: offer resources, ask and search, negotiate, sign contracts; as a
    /// provider with --engine-data.
    Market {
        #[command(subcommand)]
        action: market::MarketCommand,
        /// Act as the provider of the engine with this data folder instead of as the client.
        #[arg(long, global = true)]
        engine_data: Option<PathBuf>,
    },
    /// The web manager the server serves: `idlegrid web login` prints a one-time sign-in link.
    Web {
        #[command(subcommand)]
        action: web::WebCommand,
    },
    /// Simulations with a report: placement reliability, validation against saboteurs, the
    /// bartering market.
    Sim {
        #[command(subcommand)]
        what: sim::SimCommand,
    },
    /// Operate the platform: approve deposits and payouts, credit accounts, revoke parties,
    /// read health and logs (needs a server started with --operator).
    Ops {
        #[command(subcommand)]
        action: ops::OpsCommand,
    },
    /// Start a server and several engines here and run a real job: a Mandelbrot image and pi.
    Demo {
        #[arg(long, default_value_t = 3)]
        engines: u32,
        /// Folder with the example tasks' .wasm files (built by `cargo xtask build-tasks`).
        #[arg(long, env = "IDLEGRID_TASKS_DIR")]
        tasks_dir: Option<PathBuf>,
        /// Where the image and results go.
        #[arg(long, default_value = "idlegrid-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        pi_tasks: u64,
        /// Image width in pixels (height is three quarters of it); tiles are 64 x 64.
        #[arg(long, default_value_t = 1280)]
        width: u32,
    },
    /// Measure throughput and latency on this machine and print a table.
    Bench {
        #[arg(long, default_value_t = 20_000)]
        tasks: u64,
        #[arg(long, default_value_t = 2)]
        engines: u32,
        /// Single-task round trips for the latency figures.
        #[arg(long, default_value_t = 200)]
        latency_samples: u32,
        #[arg(long, env = "IDLEGRID_TASKS_DIR")]
        tasks_dir: Option<PathBuf>,
        /// Run over plain HTTP instead of TLS, to see what TLS costs.
        #[arg(long)]
        insecure_plain_http: bool,
        /// Server instances sharing the database (more than one needs --database postgres://).
        #[arg(long, default_value_t = 1)]
        instances: u32,
        /// The servers' database (empty: SQLite in a temporary folder).
        #[arg(long, default_value = "")]
        database: String,
    },
    /// Measure how the engine stays out of its owner's way and print a table: pause latency,
    /// CPU left to other programs, work lost per interruption.
    BenchEngine {
        #[arg(long, default_value_t = 50)]
        trials: u32,
        #[arg(long, env = "IDLEGRID_TASKS_DIR")]
        tasks_dir: Option<PathBuf>,
    },
    /// Busy work for `bench-engine`'s competing program (prints loop iterations).
    #[command(hide = true)]
    Spin {
        #[arg(long, default_value_t = 1)]
        threads: u32,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
}

#[derive(Subcommand)]
enum EngineAction {
    /// Show what the engine running with this data folder is doing.
    Status,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job file and launch it.
    Submit {
        job: PathBuf,
        /// Stay attached: show progress and write results as they come.
        #[arg(long)]
        watch: bool,
        /// With --watch: where results go.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Attach to a job, show progress and write results as they arrive.
    Watch {
        job: JobId,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Which results to replay first: undelivered (default), all, or none.
        #[arg(long, default_value = "undelivered")]
        replay: String,
    },
    /// Write every result of a job to a folder (waits for the job to complete).
    Results {
        job: JobId,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a job's state and counts.
    Status { job: JobId },
    /// Tell why a task waits: each requirement of the job's virtual cluster and how many
    /// engines it rules out (the job's first waiting task unless --task is given).
    Explain {
        job: JobId,
        #[arg(long)]
        task: Option<u64>,
    },
    /// List this client's jobs.
    List,
    /// Stop a job, or one task.
    Stop {
        job: JobId,
        #[arg(long)]
        task: Option<u64>,
    },
    /// Resume a stopped job, or one task.
    Resume {
        job: JobId,
        #[arg(long)]
        task: Option<u64>,
    },
    /// Remove a job (or one task) and everything the server holds for it.
    Rm {
        job: JobId,
        #[arg(long)]
        task: Option<u64>,
    },
    /// Fetch a checkpoint of a task (asks its engine for a fresh one).
    Checkpoint {
        job: JobId,
        task: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

/// The log filter when none is given: Idlegrid's own messages from `level` up, other
/// libraries' only when they are errors. Their warnings concern details of a peer's protocol
/// (an HTTP/2 stream reset, a TLS alert) that need no action; `--log` shows them.
fn default_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("error,idlegrid={level}"))
}

/// `--log`'s filter, or the default one at `level`.
fn log_filter(given: Option<&str>, level: &str) -> tracing_subscriber::EnvFilter {
    match given.map(|f| (f, tracing_subscriber::EnvFilter::try_new(f))) {
        Some((_, Ok(filter))) => filter,
        Some((text, Err(error))) => {
            eprintln!("warning: --log '{}' is not a log filter ({error}); using the default", Untrusted(text));
            default_filter(level)
        }
        None => default_filter(level),
    }
}

/// Logging for the engine: to stderr, and warnings and errors also to the server's log server.
fn init_engine_logging(filter: Option<&str>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(filter, "info");
    let terminal = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter);
    let _ = tracing_subscriber::registry().with(terminal).with(idlegrid_engine::log_shipper::layer()).try_init();
}

fn init_logging(filter: Option<&str>, default: &str) {
    let filter = log_filter(filter, default);
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn home(cli_home: Option<PathBuf>) -> PathBuf {
    cli_home.unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".idlegrid")
    })
}

fn read_ca(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the server CA file {}", path.display()))
    })
    .transpose()
}

/// The server as a client sees it: the CA given, or the one pinned for that server in the
/// client's home (trusted on first use).
fn client_endpoint(
    server: &str,
    ca: Option<&std::path::Path>,
    home: &std::path::Path,
) -> anyhow::Result<idlegrid_client::Endpoint> {
    let endpoint = idlegrid_client::Endpoint::new(server);
    let pin = home.join("servers").join(format!("{}.ca.pem", endpoint.file_stem()));
    Ok(endpoint.with_ca_or_pin(read_ca(ca)?, pin))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    idlegrid_pki::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Errors may quote what a server or a task wrote: control characters are escaped.
            eprintln!("error: {}", Untrusted(&format!("{error:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server {
            listen,
            data,
            database,
            elements,
            engine_silence_secs,
            maintenance_secs,
            pricing,
            billing_increment_secs,
            client_overdraft,
            spot_check_rate,
            spot_check_new_rate,
            spot_check_new_count,
            quarantine_after,
            saboteur_fraction,
            smtp,
            mail_from,
            insecure_plain_http,
            tls_ca_cert,
            tls_ca_key,
            tls_names,
            operators,
            upgrade_binary,
            upgrade_version,
            benchmark_interval_secs,
            benchmark_size,
            cluster_history_minutes,
            scheduler,
            valuation,
            market_commission,
            market_open_offers_max,
            market_open_requests_max,
            webhook_allow,
            client_storage_bytes,
            client_elements,
            connections_per_source,
            unauthenticated_per_second,
            unauthenticated_burst,
            registrations_per_minute,
            registration_burst,
        } => {
            init_logging(cli.log.as_deref(), "info");
            let mut config = idlegrid_server::ServerConfig::new(listen, data.clone());
            config.database = database;
            config.elements = elements;
            config.coordinator.operators = operators;
            config.tls = if insecure_plain_http {
                None
            } else {
                Some(idlegrid_server::TlsSettings { ca_files: tls_ca_cert.zip(tls_ca_key), names: tls_names })
            };
            config.upgrade = upgrade_binary.zip(upgrade_version);
            if let Some(path) = pricing {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the pricing file {}", path.display()))?;
                config.coordinator.pricing =
                    toml::from_str(&text).with_context(|| format!("the pricing file {} is invalid", path.display()))?;
            }
            if let Some(secs) = billing_increment_secs {
                anyhow::ensure!(secs >= 0.1, "--billing-increment-secs must be at least 0.1");
                config.coordinator.pricing.increment_ms = (secs * 1000.0) as u64;
            }
            config.coordinator.pricing.validate().map_err(|e| anyhow::anyhow!("pricing: {e}"))?;
            config.coordinator.client_overdraft_max_micros = match client_overdraft.as_str() {
                "none" => None,
                "0" => Some(0),
                units => Some(
                    account::parse_amount(units)
                        .map_err(|e| anyhow::anyhow!("--client-overdraft must be none or a number of units: {e}"))?,
                ),
            };
            if let Some(smtp) = smtp {
                let (host, port) = smtp.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--smtp must be host:port"))?;
                config.smtp =
                    Some(idlegrid_server::SmtpConfig { host: host.to_string(), port: port.parse()?, from: mail_from });
            }
            config.coordinator.spot_checks = idlegrid_assurance::SpotCheckPolicy {
                rate: spot_check_rate,
                new_provider_rate: spot_check_new_rate,
                new_provider_checks: spot_check_new_count,
            };
            config.coordinator.spot_checks.validate().map_err(|e| anyhow::anyhow!("spot checks: {e}"))?;
            anyhow::ensure!(quarantine_after >= 1, "--quarantine-after must be at least 1");
            config.coordinator.quarantine =
                idlegrid_assurance::QuarantineRule { failed_spot_checks_max: quarantine_after };
            config.coordinator.credibility = idlegrid_assurance::CredibilityModel::new(saboteur_fraction)
                .map_err(|e| anyhow::anyhow!("--saboteur-fraction: {e}"))?;
            config.coordinator.provider_silence_ms_max = engine_silence_secs.saturating_mul(1000);
            config.coordinator.benchmark_interval_ms =
                (benchmark_interval_secs > 0).then(|| benchmark_interval_secs.saturating_mul(1000));
            config.coordinator.benchmark_size = benchmark_size;
            if let Some(path) = scheduler {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the scheduler file {}", path.display()))?;
                config.coordinator.scheduler = toml::from_str(&text)
                    .with_context(|| format!("the scheduler file {} is invalid", path.display()))?;
            }
            if let Some(minutes) = cluster_history_minutes {
                config.coordinator.scheduler.rating_window_minutes_min = minutes;
            }
            config.coordinator.scheduler.validate().map_err(|e| anyhow::anyhow!("scheduler: {e}"))?;
            if let Some(path) = valuation {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the valuation file {}", path.display()))?;
                config.coordinator.market.valuation = toml::from_str(&text)
                    .with_context(|| format!("the valuation file {} is invalid", path.display()))?;
            }
            config.coordinator.market.valuation.validate().map_err(|e| anyhow::anyhow!("valuation: {e}"))?;
            anyhow::ensure!(
                market_commission.is_finite() && (0.0..=1.0).contains(&market_commission),
                "--market-commission must be from 0 to 1"
            );
            config.coordinator.market.commission_rate = market_commission;
            config.coordinator.market.open_offers_per_party_max = market_open_offers_max;
            config.coordinator.market.open_requests_per_party_max = market_open_requests_max;
            config.maintenance_interval = Duration::from_secs_f64(maintenance_secs.max(0.05));
            config.coordinator.webhook_allow = webhook_allow;
            config.coordinator.client_storage_bytes_max = client_storage_bytes;
            config.coordinator.client_elements_max = client_elements;
            anyhow::ensure!(connections_per_source >= 1, "--connections-per-source must be at least 1");
            config.connection_limits.connections_per_source_max = connections_per_source;
            let rate = |per_second: f64, burst: u32, flags: &str| {
                anyhow::ensure!(per_second.is_finite() && per_second > 0.0 && burst >= 1, "{flags} must be positive");
                Ok(idlegrid_server::Rate { burst, per_second })
            };
            config.rate_limits = idlegrid_server::RateLimits {
                unauthenticated: rate(
                    unauthenticated_per_second,
                    unauthenticated_burst,
                    "--unauthenticated-per-second and --unauthenticated-burst",
                )?,
                registrations: rate(
                    registrations_per_minute / 60.0,
                    registration_burst,
                    "--registrations-per-minute and --registration-burst",
                )?,
            };
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
            tokio::select! {
                _ = shutdown_signal() => server.shutdown().await,
            }
            Ok(())
        }
        Command::Engine { action: Some(EngineAction::Status), data, .. } => engine_status(&data).await,
        Command::Engine {
            action: None,
            data,
            config,
            cores,
            mode,
            task_priority,
            prefetch,
            outbox_results_max,
            outbox_bytes_max,
            status_listen,
            server_key,
            name,
            job_requirement,
        } => {
            init_engine_logging(cli.log.as_deref());
            switch_to_staged_upgrade(&data);
            let endpoint = idlegrid_client::Endpoint::new(&cli.server)
                .with_ca_or_pin(read_ca(cli.server_ca.as_deref())?, data.join("server-ca.pem"));
            let mut engine_config = idlegrid_engine::EngineConfig::new(endpoint, data);
            if let Some(path) = config {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                engine_config.owner = idlegrid_engine::OwnerSettings::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            }
            let owner = &mut engine_config.owner;
            if let Some(cores) = cores {
                anyhow::ensure!(cores > 0, "--cores must be at least 1");
                owner.cores = cores;
            }
            if let Some(mode) = mode {
                owner.mode = match mode.as_str() {
                    "continuous" => idlegrid_engine::RunMode::Continuous,
                    "idle-only" => idlegrid_engine::RunMode::IdleOnly,
                    other => anyhow::bail!("--mode must be continuous or idle-only, not '{other}'"),
                };
            }
            if let Some(priority) = task_priority {
                owner.task_priority = priority;
            }
            if let Some(listen) = status_listen {
                owner.status_listen = (listen != "off").then_some(listen);
            }
            if let Some(requirement) = job_requirement {
                owner.job_requirement = Some(requirement);
                owner
                    .validate()
                    .map_err(|e| anyhow::anyhow!("--job-requirement: {}", e.trim_start_matches("job_requirement: ")))?;
            }
            engine_config.prefetch = prefetch.unwrap_or(engine_config.owner.cores.max(2) * 2);
            engine_config.server_key = server_key;
            if let Some(results_max) = outbox_results_max {
                anyhow::ensure!(results_max > 0, "--outbox-results-max must be at least 1");
                engine_config.outbox.results_max = results_max;
            }
            if let Some(bytes_max) = outbox_bytes_max {
                anyhow::ensure!(bytes_max > 0, "--outbox-bytes-max must be at least 1");
                engine_config.outbox.bytes_max = bytes_max;
            }
            if let Some(name) = name {
                engine_config.name = name;
            }
            let engine = idlegrid_engine::Engine::start(engine_config).await?;
            match engine.status_addr() {
                Some(addr) => {
                    println!("idlegrid engine {} working for {}; status at http://{addr}/", engine.id(), cli.server)
                }
                None => println!("idlegrid engine {} working for {}", engine.id(), cli.server),
            }
            shutdown_signal().await;
            engine.shutdown().await;
            Ok(())
        }
        Command::Job(command) => {
            init_logging(cli.log.as_deref(), "warn");
            let home = home(cli.home);
            let client = jobs::connect(
                client_endpoint(&cli.server, cli.server_ca.as_deref(), &home)?,
                &home,
                Duration::from_secs(cli.connect_timeout_secs),
            )
            .await?;
            let outcome = job_command(&client, command).await;
            let _ = client.close().await;
            outcome
        }
        Command::Account { action, engine_data } => {
            init_logging(cli.log.as_deref(), "warn");
            let home = home(cli.home);
            let endpoint = match &engine_data {
                Some(dir) => idlegrid_client::Endpoint::new(&cli.server)
                    .with_ca_or_pin(read_ca(cli.server_ca.as_deref())?, dir.join("server-ca.pem")),
                None => client_endpoint(&cli.server, cli.server_ca.as_deref(), &home)?,
            };
            account::run(
                endpoint,
                &home,
                engine_data.as_deref(),
                action.unwrap_or(account::AccountCommand::Show),
                Duration::from_secs(cli.connect_timeout_secs),
            )
            .await
        }
        Command::Market { action, engine_data } => {
            init_logging(cli.log.as_deref(), "warn");
            let home = home(cli.home);
            let endpoint = match &engine_data {
                Some(dir) => idlegrid_client::Endpoint::new(&cli.server)
                    .with_ca_or_pin(read_ca(cli.server_ca.as_deref())?, dir.join("server-ca.pem")),
                None => client_endpoint(&cli.server, cli.server_ca.as_deref(), &home)?,
            };
            market::run(endpoint, &home, engine_data.as_deref(), action).await
        }
        Command::Web { action } => {
            init_logging(cli.log.as_deref(), "warn");
            let home = home(cli.home);
            let endpoint = match &action {
                web::WebCommand::Login { engine_data: Some(dir), .. } => idlegrid_client::Endpoint::new(&cli.server)
                    .with_ca_or_pin(read_ca(cli.server_ca.as_deref())?, dir.join("server-ca.pem")),
                _ => client_endpoint(&cli.server, cli.server_ca.as_deref(), &home)?,
            };
            web::run(endpoint, &home, action).await
        }
        Command::Sim { what } => {
            init_logging(cli.log.as_deref(), "warn");
            // Minutes of pure computation: off the async runtime.
            tokio::task::spawn_blocking(move || sim::run(what)).await?
        }
        Command::Ops { action } => {
            init_logging(cli.log.as_deref(), "warn");
            let home = home(cli.home);
            if let ops::OpsCommand::Id = action {
                // Needs no server: the ID is what the server's --operator flag is given.
                println!("{}", ops::operator_identity(&home)?.id());
                return Ok(());
            }
            let endpoint = client_endpoint(&cli.server, cli.server_ca.as_deref(), &home)?;
            let server_ca = cli.server_ca.clone();
            let pins = home.clone();
            ops::run(endpoint, move |url| client_endpoint(url, server_ca.as_deref(), &pins), &home, action).await
        }
        Command::RunLocal { job, tasks, percent, out, parallel } => {
            init_logging(cli.log.as_deref(), "warn");
            local::run_local(&job, tasks, percent, out.as_deref(), parallel).await
        }
        Command::Demo { engines, tasks_dir, out, pi_tasks, width } => {
            init_logging(cli.log.as_deref(), "warn");
            demo::run(engines, tasks_dir, &out, pi_tasks, width).await
        }
        Command::BenchEngine { trials, tasks_dir } => {
            init_logging(cli.log.as_deref(), "warn");
            bench_engine::run(trials, tasks_dir).await
        }
        Command::Spin { threads, seconds } => {
            println!("{}", bench_engine::spin(threads, seconds));
            Ok(())
        }
        Command::Bench { tasks, engines, latency_samples, tasks_dir, insecure_plain_http, instances, database } => {
            init_logging(cli.log.as_deref(), "warn");
            bench::run(tasks, engines, latency_samples, tasks_dir, insecure_plain_http, instances, database).await
        }
    }
}

/// Start the upgrade the server offered, if one was staged, verified again now (P3.11). Runs
/// before anything else; on success it does not return.
fn switch_to_staged_upgrade(data: &std::path::Path) {
    if std::env::var_os(idlegrid_engine::SWITCHED_ENV).is_some() {
        return; // this is the upgraded build already
    }
    let Some(staged) = idlegrid_engine::staged_upgrade(data) else { return };
    if staged.version == env!("CARGO_PKG_VERSION") {
        return;
    }
    tracing::info!(version = %staged.version, "switching to the staged upgrade");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(&staged.path)
            .args(std::env::args_os().skip(1))
            .env(idlegrid_engine::SWITCHED_ENV, std::env::current_exe().unwrap_or_default())
            .exec();
        tracing::warn!(%error, "cannot start the staged upgrade; going on with this build");
    }
}

/// `idlegrid engine status`: ask the engine running with `data` for its status page's data.
async fn engine_status(data: &std::path::Path) -> anyhow::Result<()> {
    let addr_file = data.join("status.addr");
    let addr = std::fs::read_to_string(&addr_file).with_context(|| {
        format!(
            "no engine status page recorded in {} (is an engine running with --data {}?)",
            addr_file.display(),
            data.display()
        )
    })?;
    let status: idlegrid_engine::status::EngineStatus = reqwest::get(format!("http://{}/status.json", addr.trim()))
        .await
        .with_context(|| format!("the engine at {} does not answer (is it still running?)", addr.trim()))?
        .json()
        .await?;
    println!(
        "engine {} ({}) — {}{}",
        status.engine,
        status.name,
        status.state,
        status.reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    println!("  mode {}, tasks at {} priority, hours {}", status.mode, status.task_priority, status.hours);
    println!(
        "  server {} ({}), contact {}",
        status.server,
        if status.connected { "connected" } else { "offline" },
        status.contact
    );
    println!(
        "  memory {} of {} MB, disk {} of {} MB",
        status.memory.used >> 20,
        status.memory.max >> 20,
        status.disk.used >> 20,
        status.disk.max >> 20
    );
    println!(
        "  work: {} succeeded, {} failed, {} handed back, {} s of CPU",
        status.tasks_succeeded, status.tasks_failed, status.tasks_suspended, status.cpu_seconds
    );
    for task in &status.tasks {
        println!(
            "  task {:>8}  {:<10} {:>5.1}%  priority {}",
            task.assignment,
            task.state,
            task.progress * 100.0,
            task.priority
        );
    }
    for message in &status.messages {
        println!("  message: {} — {}", Untrusted(&message.title), Untrusted(&message.body));
    }
    Ok(())
}

async fn job_command(client: &idlegrid_client::Client, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit { job, watch, out } => {
            let job_file = jobfile::Job::load(&job)?;
            let info = jobs::submit(client, &job_file).await?;
            println!("job {} launched ({} tasks)", info.job, info.counts.total());
            if watch {
                let summary = jobs::collect(client, info.job, Replay::Undelivered, out.as_deref()).await?;
                summary.print(out.as_deref());
                return summary.outcome();
            }
            println!("watch it with: idlegrid job watch {}", info.job);
            Ok(())
        }
        JobCommand::Watch { job, out, replay } => {
            let replay = match replay.as_str() {
                "undelivered" => Replay::Undelivered,
                "all" => Replay::All,
                "none" => Replay::None,
                other => anyhow::bail!("--replay must be undelivered, all or none, not '{other}'"),
            };
            let summary = jobs::collect(client, job, replay, out.as_deref()).await?;
            summary.print(out.as_deref());
            summary.outcome()
        }
        JobCommand::Results { job, out } => {
            let summary = jobs::collect(client, job, Replay::All, Some(&out)).await?;
            summary.print(Some(&out));
            summary.outcome()
        }
        JobCommand::Status { job } => {
            jobs::print_job(&client.job(job).await?);
            Ok(())
        }
        JobCommand::Explain { job, task } => {
            print!("{}", client.explain(job, task).await?.text);
            Ok(())
        }
        JobCommand::List => {
            let list = client.jobs().await?;
            if list.is_empty() {
                println!("no jobs");
            }
            for info in list {
                jobs::print_job(&info);
            }
            Ok(())
        }
        JobCommand::Stop { job, task } => {
            jobs::print_job(&client.stop(job, task).await?);
            Ok(())
        }
        JobCommand::Resume { job, task } => {
            jobs::print_job(&client.resume(job, task).await?);
            Ok(())
        }
        JobCommand::Rm { job, task } => {
            match task {
                Some(task) => client.remove_task(job, task).await?,
                None => client.remove_job(job).await?,
            }
            println!("removed");
            Ok(())
        }
        JobCommand::Checkpoint { job, task, out } => {
            match client.checkpoint(job, task).await? {
                Some(bytes) => {
                    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
                    println!("checkpoint of {} bytes written to {}", bytes.len(), out.display());
                }
                None => println!("task {task} has no checkpoint yet"),
            }
            Ok(())
        }
    }
}
