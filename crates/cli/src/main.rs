//! `idlegrid`: run a server, an engine, or drive jobs as a client.

mod account;
mod attach;
mod bench;
mod bench_engine;
mod bench_kernels;
mod cluster;
mod demo;
mod engine_command;
mod jobfile;
mod jobs;
mod local;
mod market;
mod market_data;
mod market_peripheral;
mod ops;
mod server_command;
mod server_preemption;
mod server_tasks;
mod service_command;
mod sim;
mod traces;
mod web;

#[cfg(test)]
mod cli_tests;

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
    /// Export traces over OTLP/HTTP to this collector (a base URL such as
    /// `http://127.0.0.1:4318`; `/v1/traces` is added). The standard `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and `OTEL_SERVICE_NAME` variables work too. Without either, nothing is traced.
    #[arg(long, global = true)]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per run")]
enum Command {
    /// Run the server (embedded SQLite store and local element folder).
    Server(server_command::ServerArgs),
    /// Run a compute engine that works for the server (`engine status` shows a running one).
    Engine {
        #[command(subcommand)]
        action: Option<EngineAction>,
        /// Where the engine keeps its identity, keys, element cache and tasks (also before or
        /// after `status`). Default: this system's place for application data
        /// (~/.local/share/idlegrid/engine, %LOCALAPPDATA%\Idlegrid\engine,
        /// ~/Library/Application Support/Idlegrid/engine).
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        #[command(flatten)]
        flags: engine_command::EngineFlags,
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
    /// Run the example kernels (pi, Mandelbrot, matrix multiply, SHA-256) in the engine's
    /// sandbox and natively, and print the time ratios and their geometric mean.
    BenchKernels {
        #[arg(long, env = "IDLEGRID_TASKS_DIR")]
        tasks_dir: Option<PathBuf>,
        /// Folder with the kernels built for this machine (`cargo xtask bench-kernels` builds them).
        #[arg(long)]
        native_dir: Option<PathBuf>,
        /// Runs per kernel and side (the median is shown).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// `tiny` only checks that both sides compute the same bytes.
        #[arg(long, value_enum, default_value = "full")]
        scale: bench_kernels::Scale,
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
    /// Run the engine as a service of this computer, with --server, --server-ca, --data and
    /// --config as given here: a systemd user unit (Linux), a launchd agent (macOS) or a
    /// Windows service (as administrator).
    InstallService {
        /// Print what would be written and run, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
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
    /// Follow one task (or the whole job) with your own pattern of interim statuses: a line
    /// per status, then the result.
    Attach(attach::AttachArgs),
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
    /// Have the server deliver a job's final results to a URL outside it (an HTTP PUT of each
    /// result, with the headers x-idlegrid-job, x-idlegrid-task, x-idlegrid-state and
    /// x-idlegrid-sha256, retried with back-off until the receiver answers 2xx); without a
    /// URL, show how delivery goes.
    Deliver {
        job: JobId,
        url: Option<String>,
        /// Deliver only this task's result.
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
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(idlegrid_engine::log_shipper::layer())
        .with(traces::layer("idlegrid-engine"))
        .try_init();
}

/// Logging for client commands: to stderr; their spans also to traces when configured.
fn init_logging(filter: Option<&str>, default: &str) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(filter, default);
    let terminal = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(filter);
    let _ = tracing_subscriber::registry().with(terminal).with(traces::layer("idlegrid-client")).try_init();
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
    traces::set_endpoint(cli.otlp_endpoint.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    traces::finish();
    match outcome {
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
        Command::Server(args) => server_command::run(args, cli.log.as_deref()).await,
        Command::Engine { action: Some(EngineAction::Status), data, .. } => {
            engine_status(&engine_command::data_dir(data)?).await
        }
        Command::Engine { action: Some(EngineAction::InstallService { dry_run }), data, flags } => {
            let data = engine_command::data_dir(data)?;
            service_command::install(&cli.server, cli.server_ca.as_deref(), &data, flags.config.as_deref(), dry_run)
        }
        Command::Engine { action: None, data, flags } => {
            let data = engine_command::data_dir(data)?;
            engine_command::run(flags, data, &cli.server, cli.server_ca.as_deref(), cli.log.as_deref()).await
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
        Command::BenchKernels { tasks_dir, native_dir, runs, scale } => {
            tokio::task::block_in_place(|| bench_kernels::run(tasks_dir, native_dir, scale, runs))
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
            // The root of the trace of every task submitted (when traces are exported).
            let span = tracing::info_span!(target: idlegrid_telemetry::TARGET, "job.submit", job.file = %job.display());
            let submit = async {
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
            };
            tracing::Instrument::instrument(submit, span).await
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
        JobCommand::Attach(args) => attach::run(client, args).await,
        JobCommand::Explain { job, task } => {
            print!("{}", client.explain(job, task).await?.text);
            Ok(())
        }
        JobCommand::Deliver { job, url, task } => {
            jobs::print_delivery(&client.deliver_results(job, task, url).await?);
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
