//! `idlegrid engine`: the owner's flags over the settings file, and the running engine.

use std::path::{Path, PathBuf};

use anyhow::Context;
use idlegrid_engine::{EngineConfig, OwnerSettings, RunMode};

use crate::{init_engine_logging, read_ca, shutdown_signal, switch_to_staged_upgrade};

/// The engine's flags; each overrides the settings file.
#[derive(clap::Args)]
pub struct EngineFlags {
    /// The owner's settings (TOML): mode, cores, memory and disk budgets, hours, contact
    /// schedule, status page. Options below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, alias = "slots")]
    pub cores: Option<u32>,
    /// `continuous` (always, at the task priority below) or `idle-only` (only while nobody
    /// uses the computer).
    #[arg(long)]
    pub mode: Option<String>,
    /// OS scheduling priority of tasks: `lowest` (the default: they get only CPU time nothing
    /// else wants) or `normal` (a computer given over to the grid).
    #[arg(long)]
    pub task_priority: Option<idlegrid_engine::TaskPriority>,
    /// Tasks staged ahead of the running ones.
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Most results kept waiting while the server cannot be reached: at the bound the engine
    /// takes no new work until some are delivered.
    #[arg(long)]
    pub outbox_results_max: Option<usize>,
    /// Most bytes of results kept waiting while the server cannot be reached.
    #[arg(long)]
    pub outbox_bytes_max: Option<u64>,
    /// Address of the local status page, e.g. 127.0.0.1:7710 (`off` for none).
    #[arg(long)]
    pub status_listen: Option<String>,
    /// Trust only this server signing key (hex) for task assignments.
    #[arg(long)]
    pub server_key: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Run only jobs that meet this requirement, e.g. `job.client in ["alice"]`,
    /// `job.pay_per_hour >= 2` or `task.memory_mb <= 512` (the server places nothing else here).
    #[arg(long)]
    pub job_requirement: Option<String>,
    /// Serve internet access sold on the market: the element relay's address, e.g.
    /// 0.0.0.0:7720 (buyers must reach it).
    #[arg(long)]
    pub relay_listen: Option<String>,
    /// Set by `engine install-service` on Windows: the engine answers the service control
    /// manager (start, stop).
    #[arg(long, hide = true)]
    pub as_service: bool,
}

/// The data folder given, or this system's default one.
pub fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(data) => Ok(data),
        None => idlegrid_platform::default_data_dir()
            .context("no --data given, and no default data folder: HOME (LOCALAPPDATA on Windows) is not set"),
    }
}

/// What the service control manager says: stop (`Ok`), or that this process is not a
/// service (`Err`). Nothing comes when the engine does not run as a service.
type ServiceEvents = tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>;

/// Answer the Windows service control manager when asked to (`--as-service`); started
/// before anything else, since it waits only 30 s for a service to answer.
fn service_events(as_service: bool) -> anyhow::Result<ServiceEvents> {
    let (sender, events) = tokio::sync::mpsc::unbounded_channel();
    if !as_service {
        // The channel closes at once; `run` then waits for a signal only.
        return Ok(events);
    }
    #[cfg(windows)]
    {
        let stop = sender.clone();
        std::thread::spawn(move || {
            let on_stop = Box::new(move || {
                let _ = stop.send(Ok(()));
            });
            if let Err(error) =
                idlegrid_platform::service::dispatch(idlegrid_platform::service::WINDOWS_SERVICE, on_stop)
            {
                let _ = sender.send(Err(error));
            }
        });
        Ok(events)
    }
    #[cfg(not(windows))]
    {
        drop(sender);
        anyhow::bail!("--as-service is only for the Windows service control manager")
    }
}

/// Start the engine for `server` and work until a shutdown signal.
pub async fn run(
    flags: EngineFlags,
    data: PathBuf,
    server: &str,
    server_ca: Option<&Path>,
    log: Option<&str>,
) -> anyhow::Result<()> {
    let mut service = service_events(flags.as_service)?;
    init_engine_logging(log);
    switch_to_staged_upgrade(&data);
    let endpoint =
        idlegrid_client::Endpoint::new(server).with_ca_or_pin(read_ca(server_ca)?, data.join("server-ca.pem"));
    let mut config = EngineConfig::new(endpoint, data);
    flags.apply(&mut config)?;
    let engine = idlegrid_engine::Engine::start(config).await?;
    match engine.status_addr() {
        Some(addr) => println!("idlegrid engine {} working for {server}; status at http://{addr}/", engine.id()),
        None => println!("idlegrid engine {} working for {server}", engine.id()),
    }
    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        Some(event) = service.recv() => event,
    };
    engine.shutdown().await;
    #[cfg(windows)]
    idlegrid_platform::service::report_stopped();
    outcome.map_err(|e| anyhow::anyhow!(e))
}

impl EngineFlags {
    /// The settings file, then each flag given, into `config`; every value checked.
    fn apply(self, config: &mut EngineConfig) -> anyhow::Result<()> {
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            config.owner = OwnerSettings::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        self.apply_owner(&mut config.owner)?;
        config.prefetch = self.prefetch.unwrap_or(config.owner.cores.max(2) * 2);
        config.server_key = self.server_key;
        config.relay_listen = self.relay_listen;
        if let Some(results_max) = self.outbox_results_max {
            anyhow::ensure!(results_max > 0, "--outbox-results-max must be at least 1");
            config.outbox.results_max = results_max;
        }
        if let Some(bytes_max) = self.outbox_bytes_max {
            anyhow::ensure!(bytes_max > 0, "--outbox-bytes-max must be at least 1");
            config.outbox.bytes_max = bytes_max;
        }
        if let Some(name) = self.name {
            config.name = name;
        }
        Ok(())
    }

    /// The flags that override the owner's settings.
    fn apply_owner(&self, owner: &mut OwnerSettings) -> anyhow::Result<()> {
        if let Some(cores) = self.cores {
            anyhow::ensure!(cores > 0, "--cores must be at least 1");
            owner.cores = cores;
        }
        if let Some(mode) = &self.mode {
            owner.mode = match mode.as_str() {
                "continuous" => RunMode::Continuous,
                "idle-only" => RunMode::IdleOnly,
                other => anyhow::bail!("--mode must be continuous or idle-only, not '{other}'"),
            };
        }
        if let Some(priority) = self.task_priority {
            owner.task_priority = priority;
        }
        if let Some(listen) = &self.status_listen {
            owner.status_listen = (listen != "off").then(|| listen.clone());
        }
        if let Some(requirement) = &self.job_requirement {
            owner.job_requirement = Some(requirement.clone());
            owner
                .validate()
                .map_err(|e| anyhow::anyhow!("--job-requirement: {}", e.trim_start_matches("job_requirement: ")))?;
        }
        Ok(())
    }
}
