//! The engine: a pure core ([`core`]) that holds the tasks and decides, and the loops around it
//! that perform what it decides: [`fetch`] (messages from the server, staging), [`run`] (the
//! owner's verdict and the task slots), [`upload`] (the outbox, checkpoints, logs) and
//! [`session`] (registration and the channel). This file starts them and shows the owner what
//! happens.

mod core;
mod fetch;
mod heartbeat;
mod market;
mod peripheral;
mod relay;
mod run;
mod session;
mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlegrid_client::{Channel, Transport};
use idlegrid_protocol::auth::{Identity, verify_bytes};
use idlegrid_protocol::messages::{Assignment, NodeState, ProviderToServer, ServerToProvider};
use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_sandbox::{CompiledTask, FloatNans, Sandbox, TaskControl};
use idlegrid_types::{AssignmentId, ElementHash};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use self::core::{Action, Budgets, Core};
use crate::activity::{ActivitySource, SystemActivity};
use crate::cache::{DiskBudget, ElementCache};
use crate::contact::ContactGate;
use crate::disk::Disk;
use crate::settings::{RunMode, ServerControlled, TaskPriority};
use crate::space::SpaceCheck;
use crate::status::{EngineStatus, Pushed, TaskView, Usage};
use crate::vault::Vault;
use crate::workers::Workers;
use crate::{Activity, EngineConfig};

type EngineChannel = Channel<ProviderToServer, ServerToProvider>;

/// Counters, for tests, benchmarks and the status page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_suspended: u64,
    pub tasks_preempted: u64,
    /// Checkpoints of running tasks uploaded to the server (P1.5).
    pub checkpoints_uploaded: u64,
    pub cpu_ms: u64,
    pub held: u64,
}

/// A message queued for the server.
struct Outgoing {
    message: ProviderToServer,
    /// Delete this task once the server has the message (a final status).
    cleanup: Option<AssignmentId>,
    /// What a final status counts against the outbox's byte bound.
    bytes: u64,
}

#[derive(Default)]
struct Connectivity {
    connected: bool,
    last_contact_ms: Option<u64>,
    last_error: Option<String>,
}

#[derive(Default)]
struct FromServer {
    messages: Vec<Pushed>,
    summary: Option<String>,
    contracts: Vec<crate::market_served::ContractView>,
}

struct Inner {
    config: EngineConfig,
    space: SpaceCheck,
    controlled: Mutex<ServerControlled>,
    transport: Transport,
    channel: RwLock<Arc<EngineChannel>>,
    server_key: String,
    sandbox: Sandbox,
    disk: Disk,
    budget: Arc<DiskBudget>,
    cache: ElementCache,
    workers: Workers,
    gate: ContactGate,
    /// The held tasks and every decision on them. Locked before `controls`, never after.
    core: Mutex<Core>,
    /// The controls of running tasks: made under the core's lock when a task starts.
    controls: Mutex<HashMap<AssignmentId, TaskControl>>,
    modules: Mutex<HashMap<(ElementHash, FloatNans), Arc<CompiledTask>>>,
    wake_runner: Notify,
    outbox: mpsc::UnboundedSender<Outgoing>,
    stats: Mutex<EngineStats>,
    connectivity: Mutex<Connectivity>,
    from_server: Mutex<FromServer>,
    activity_name: Mutex<String>,
    status_addr: Mutex<Option<SocketAddr>>,
    stop: CancellationToken,
    /// The market loop's queue (storage this engine sold).
    market: std::sync::OnceLock<mpsc::UnboundedSender<ServerToProvider>>,
    /// Taken while the relay numbers a report.
    relay_seq: Mutex<()>,
}

pub struct Engine;

/// A running engine.
pub struct EngineHandle {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A lock whose holder panicked is still used: the data it guards stays consistent step by step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Check the server's signature on an assignment (P3.7): only tasks the server issued run.
pub fn check_assignment(server_key: &str, assignment: &Assignment) -> Result<(), String> {
    if assignment.signature.is_empty() {
        return Err(format!("assignment {} is not signed", assignment.assignment));
    }
    verify_bytes(server_key, &assignment.signed_bytes(), &assignment.signature)
        .map_err(|_| format!("assignment {} is not signed by this engine's server", assignment.assignment))
}

impl EngineHandle {
    pub fn id(&self) -> String {
        self.inner.transport.identity().id().to_string()
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = *lock(&self.inner.stats);
        stats.held = self.inner.core().tasks().count() as u64;
        stats
    }

    /// What the status page shows.
    pub fn status(&self) -> EngineStatus {
        self.inner.status()
    }

    /// The latest moment a running task parked (stopped using the CPU) for a pause: for
    /// measuring how fast the engine gets out of the owner's way.
    pub fn last_parked(&self) -> Option<Instant> {
        lock(&self.inner.controls).values().filter_map(|c| c.parked_at()).max()
    }

    /// Where the status page listens, if it is on.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        *lock(&self.inner.status_addr)
    }

    /// Stop: running tasks are asked to checkpoint (forced after the grace period) and stay on
    /// disk, so they resume when the engine starts again.
    pub async fn shutdown(self) {
        let inner = self.inner.clone();
        inner.stop.cancel();
        inner.core().stop();
        let running: Vec<TaskControl> = lock(&inner.controls).values().cloned().collect();
        for control in &running {
            control.request_stop();
        }
        let deadline = Instant::now() + inner.config.stop_grace;
        while Instant::now() < deadline && inner.core().running_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for control in &running {
            control.kill();
        }
        while inner.core().running_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = inner.channel();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            channel.send(vec![ProviderToServer::NodeStatus { state: NodeState::Paused, slots: 0, queue_capacity: 0 }]),
        )
        .await;
        for task in self.tasks {
            task.abort();
        }
    }

    /// Stop at once, as a crash would: nothing is checkpointed or reported.
    pub fn kill(self) {
        self.inner.stop.cancel();
        self.inner.core().stop();
        for task in &self.tasks {
            task.abort();
        }
        for control in lock(&self.inner.controls).values() {
            control.kill();
        }
    }
}

impl Engine {
    /// Register (first time), connect, recover held tasks from disk, and start working.
    pub async fn start(config: EngineConfig) -> anyhow::Result<EngineHandle> {
        let (inner, outbox_rx) = Inner::open(config).await?;
        let inner = Arc::new(inner);
        if let Err(full) = inner.space.room_for(0) {
            inner.disk_full(full.to_string());
        }
        inner.recover();
        inner.announce();
        // Decide once before running anything: an engine started while the owner works waits.
        let source = inner.first_reading();
        let (market_tx, market_rx) = mpsc::unbounded_channel();
        let _ = inner.market.set(market_tx);
        inner.start_relay().await;
        let tasks = vec![
            tokio::spawn(inner.clone().market_loop(market_rx)),
            tokio::spawn(inner.clone().receive_loop()),
            tokio::spawn(inner.clone().send_loop(outbox_rx)),
            tokio::spawn(inner.clone().run_loop()),
            tokio::spawn(inner.clone().governor_loop(source)),
            tokio::spawn(inner.clone().ship_logs_loop()),
            tokio::spawn(inner.clone().heartbeat_loop()),
        ];
        if let Some(listen) = inner.config.owner.status_listen.clone() {
            let snapshot_of = inner.clone();
            let snapshot: crate::status::Snapshot = Arc::new(move || snapshot_of.status());
            match crate::status::serve(&listen, snapshot, inner.stop.clone()).await {
                Ok(addr) => {
                    *lock(&inner.status_addr) = Some(addr);
                    let _ = std::fs::write(inner.config.data_dir.join("status.addr"), addr.to_string());
                    tracing::info!(%addr, "status page at http://{addr}/");
                }
                Err(error) => tracing::warn!(%error, "no status page"),
            }
        }
        tracing::info!(
            engine = %inner.transport.identity().id(),
            server = %inner.config.server,
            cores = inner.config.owner.cores,
            mode = ?inner.config.owner.mode,
            task_priority = %inner.workers.priority,
            "engine started"
        );
        Ok(EngineHandle { inner, tasks })
    }
}

impl Inner {
    /// Open the data folder, register, connect, and make the sandbox, cache and workers.
    async fn open(config: EngineConfig) -> anyhow::Result<(Inner, mpsc::UnboundedReceiver<Outgoing>)> {
        config.owner.validate().map_err(|e| anyhow::anyhow!("invalid owner settings: {e}"))?;
        idlegrid_platform::create_private_dir(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
        let vault = Arc::new(
            Vault::load_or_create(&config.data_dir.join("storage.key")).context("cannot load the storage key")?,
        );
        let disk = Disk::open(&config.data_dir, vault.clone())
            .with_context(|| format!("cannot use the data folder {}", config.data_dir.display()))?;
        let identity = Identity::load_or_create(&disk.identity_path())?;
        let transport = Transport::new(&config.server, identity)?;
        let registered = session::register(&transport, &config).await?;
        let server_key = session::trusted_server_key(&config, &disk, &registered.server_key)?;
        let channel = session::open_channel(&transport, &config, &disk).await?;
        let mut sandbox_config = config.sandbox.clone();
        if sandbox_config.pooled_instances == 0 {
            // Never more instances than slots run at once; a margin for tasks being torn down.
            sandbox_config.pooled_instances = config.owner.cores * 2 + 2;
            // A task granted memory sold on the market may grow past the per-task cap.
            sandbox_config.pooled_memory_bytes_max =
                config.owner.memory_bytes_max.max(config.owner.task_memory_bytes_max);
        }
        let sandbox = Sandbox::new(sandbox_config).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
        let swept = disk.sweep_checkpoints();
        if swept > 0 {
            tracing::info!(files = swept, "removed leftovers of unfinished checkpoint writes");
        }
        let space = SpaceCheck::new(config.data_dir.clone(), config.disk_space.clone());
        let budget = Arc::new(DiskBudget::new(config.owner.disk_bytes_max));
        budget.add_existing(disk.checkpoints_bytes());
        let cache = ElementCache::open(config.data_dir.join("elements"), vault, budget.clone(), space.clone())?;
        // Never promise more than the disk has: a budget the disk cannot hold fails writes half-way.
        if let Some(fits) = space.budget_that_fits(budget.used())
            && fits < budget.max()
        {
            tracing::warn!(
                budget = config.owner.disk_bytes_max,
                lowered_to = fits,
                data = %config.data_dir.display(),
                "the disk has less room than the disk budget; the engine uses only what is free"
            );
            budget.set_max(fits);
        }
        // Task threads carry the engine's name, so that tools (and tests) can tell them apart.
        let workers = Workers::start(
            &format!("igt-{}", &transport.identity().id().to_string()[..6]),
            config.owner.cores,
            config.owner.task_priority == TaskPriority::Lowest,
        );
        let gate = ContactGate::new(config.owner.contact.clone(), config.clock.clone());
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let controlled = ServerControlled::new(config.prefetch, config.status_interval);
        let budgets = Budgets {
            cores: config.owner.cores,
            memory_bytes_max: config.owner.memory_bytes_max,
            task_memory_bytes_max: config.owner.task_memory_bytes_max,
            outbox: config.outbox,
        };
        let inner = Inner {
            space,
            controlled: Mutex::new(controlled),
            transport,
            channel: RwLock::new(Arc::new(channel)),
            server_key,
            sandbox,
            disk,
            budget,
            cache,
            workers,
            gate,
            core: Mutex::new(Core::new(budgets, config.prefetch)),
            controls: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            wake_runner: Notify::new(),
            outbox,
            stats: Mutex::new(EngineStats::default()),
            connectivity: Mutex::new(Connectivity::default()),
            from_server: Mutex::new(FromServer::default()),
            activity_name: Mutex::new(String::new()),
            status_addr: Mutex::new(None),
            stop: CancellationToken::new(),
            market: std::sync::OnceLock::new(),
            relay_seq: Mutex::new(()),
            config,
        };
        Ok((inner, outbox_rx))
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    fn control(&self, id: AssignmentId) -> Option<TaskControl> {
        lock(&self.controls).get(&id).cloned()
    }

    fn channel(&self) -> Arc<EngineChannel> {
        self.channel.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queue a message for the server. A final status (with `cleanup`) counts against the
    /// outbox's bounds until it is delivered.
    fn send(&self, message: ProviderToServer, cleanup: Option<AssignmentId>) {
        let bytes = if cleanup.is_some() { upload::message_bytes(&message) } else { 0 };
        let reached_bound = if cleanup.is_some() { self.core().queued(bytes) } else { Vec::new() };
        let _ = self.outbox.send(Outgoing { message, cleanup, bytes });
        for action in reached_bound {
            if let Action::Send { message, cleanup } = action {
                let outbox = self.core().outbox();
                tracing::warn!(
                    results = outbox.results,
                    bytes = outbox.bytes,
                    "results waiting for the server reached the outbox's bound: the engine takes no new work until some are delivered"
                );
                let _ = self.outbox.send(Outgoing { message, cleanup, bytes: 0 });
            }
        }
    }

    /// Do what the core decided.
    fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Stage { id, has_local_checkpoint } => {
                    tokio::spawn(self.clone().stage(id, has_local_checkpoint));
                }
                Action::Start(id) => self.start(id),
                Action::Stop(id) => self.stop_task(id),
                Action::Kill(id) => {
                    if let Some(control) = self.control(id) {
                        control.kill();
                    }
                }
                Action::Forget(id) => {
                    let freed = self.disk.remove_tasks(&[id]);
                    self.budget.release(freed);
                }
                Action::ReturnSuspended { id, cpu_ms } => {
                    tokio::spawn(self.clone().return_suspended(id, cpu_ms));
                }
                Action::Send { message, cleanup } => self.send(message, cleanup),
                Action::SetRunning(running) => {
                    for control in lock(&self.controls).values() {
                        if running { control.resume() } else { control.pause() }
                    }
                }
                Action::Wake => self.wake_runner.notify_one(),
            }
        }
    }

    /// The disk is full: stop taking tasks, and tell the server (and the owner) why.
    fn disk_full(&self, reason: String) {
        let first = self.core().disk_full(reason.clone(), Instant::now());
        if first {
            tracing::error!(%reason, "the engine's disk is full: it takes no tasks until there is room again");
            let status = self.core().node_status();
            self.send(status, None);
            self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::LimitExceeded, reason)), None);
        }
    }

    fn disk_is_full(&self) -> bool {
        self.core().disk_is_full()
    }

    /// After a full disk: once there is room again (twice the headroom, so that the engine does
    /// not flap), take tasks again.
    fn check_disk(self: &Arc<Self>) {
        if !self.core().disk_check_due(Instant::now()) {
            return;
        }
        let still_full = self.space.room_for(crate::space::HEADROOM).err().map(|full| full.to_string());
        let room = still_full.is_none();
        let actions = self.core().disk_checked(still_full);
        if room && !actions.is_empty() {
            tracing::info!("the engine's disk has room again; taking tasks");
        }
        self.perform(actions);
    }

    /// Hand a task back untouched (not failed): the engine cannot hold it now.
    fn give_back(&self, id: AssignmentId) {
        let action = self.core().give_back(id);
        if let Action::Send { message, cleanup } = action {
            self.send(message, cleanup);
        }
    }

    /// Report a task failed (the server places it again).
    fn send_failure(&self, id: AssignmentId, kind: idlegrid_types::FailureKind, message: String) {
        let action = self.core().fail(id, kind, message);
        if let Action::Send { message, cleanup } = action {
            self.send(message, cleanup);
        }
    }

    /// Tell the server who we are, what we hold and how much work we want.
    fn announce(&self) {
        use idlegrid_protocol::messages::AssignmentState;
        let held: Vec<(AssignmentId, AssignmentState)> =
            self.core().held().into_iter().map(|id| (id, AssignmentState::Running)).collect();
        self.send(
            ProviderToServer::NodeProfile {
                os: std::env::consts::OS.to_string(),
                arch: std::env::consts::ARCH.to_string(),
                cores: self.config.owner.cores,
                memory_bytes: self.config.owner.memory_bytes_max,
                disk_bytes: self.config.owner.disk_bytes_max,
                engine_version: env!("CARGO_PKG_VERSION").to_string(),
                job_requirement: self.config.owner.job_requirement.clone(),
            },
            None,
        );
        self.send(ProviderToServer::Contents { tasks: held, request: None }, None);
        let status = self.core().node_status();
        self.send(status, None);
        // The server's settings for engines (the operator's, and its silence limit).
        self.send(ProviderToServer::GetConfig, None);
    }

    /// Take back the tasks held on disk: finished ones have their outcome sent again, the
    /// others are staged again and resume from their checkpoints (P3.8).
    fn recover(self: &Arc<Self>) {
        for (assignment, outcome) in self.disk.held_tasks() {
            let id = assignment.assignment;
            let suspended = self.disk.checkpoint(id).is_some();
            if outcome.is_none() {
                tracing::info!(assignment = %id, resumes_from_checkpoint = suspended, "recovered a held task");
            }
            let action = self.core().recovered(assignment, outcome, suspended);
            self.perform(vec![action]);
        }
    }

    fn first_reading(self: &Arc<Self>) -> Box<dyn ActivitySource> {
        let source: Box<dyn ActivitySource> = match &self.config.activity {
            Activity::System => Box::new(SystemActivity::detect()),
            Activity::Injected(handle) => Box::new(handle.clone()),
        };
        *lock(&self.activity_name) = source.describe();
        source
    }

    fn status(&self) -> EngineStatus {
        let (summary, views) = {
            let core = self.core();
            let controls = lock(&self.controls);
            let views: Vec<TaskView> = core
                .tasks()
                .map(|t| {
                    let paused = controls.get(&t.assignment.assignment).is_some_and(|c| c.is_paused());
                    TaskView {
                        assignment: t.assignment.assignment.0,
                        state: if paused { "paused".into() } else { t.state.as_str().into() },
                        progress: t.progress,
                        priority: t.assignment.priority,
                    }
                })
                .collect();
            (core.summary(), views)
        };
        let stats = *lock(&self.stats);
        let connectivity = lock(&self.connectivity);
        let from_server = lock(&self.from_server);
        EngineStatus {
            engine: self.transport.identity().id().to_string(),
            name: self.config.name.clone(),
            server: self.config.server.url().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            state: summary.state,
            reason: summary.reason,
            mode: match self.config.owner.mode {
                RunMode::Continuous => "continuous".into(),
                RunMode::IdleOnly => "idle only".into(),
            },
            hours: self.config.owner.run_hours.describe(),
            contact: self.gate.describe(),
            activity_source: lock(&self.activity_name).clone(),
            task_priority: self.workers.priority.clone(),
            prefetch: lock(&self.controlled).prefetch,
            tasks: views,
            memory: Usage { used: summary.memory_used, max: self.config.owner.memory_bytes_max },
            disk: Usage { used: self.budget.used(), max: self.budget.max() },
            tasks_succeeded: stats.tasks_succeeded,
            tasks_failed: stats.tasks_failed,
            tasks_suspended: stats.tasks_suspended,
            cpu_seconds: stats.cpu_ms / 1000,
            server_summary: from_server.summary.clone(),
            connected: connectivity.connected,
            last_contact_unix_ms: connectivity.last_contact_ms,
            last_error: connectivity.last_error.clone(),
            messages: from_server.messages.clone(),
            contracts: from_server.contracts.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_types::{ElementRef, TaskLimitsSpec};

    #[test]
    fn only_assignments_signed_by_the_server_pass() {
        let server = Identity::generate();
        let mut assignment = Assignment {
            assignment: AssignmentId(3),
            executable: ElementRef { hash: ElementHash::of(b"x"), size: 1 },
            data: Default::default(),
            params: b"p".to_vec(),
            checkpoint: None,
            priority: 0,
            limits: TaskLimitsSpec::default(),
            ticket: "t".into(),
            signature: String::new(),
            checkpoint_upload_ms: None,
            trace: None,
        };
        assert!(check_assignment(&server.public_key_hex(), &assignment).unwrap_err().contains("not signed"));
        assignment.signature = server.sign_bytes(&assignment.signed_bytes());
        check_assignment(&server.public_key_hex(), &assignment).unwrap();
        let altered = Assignment { params: b"q".to_vec(), ..assignment.clone() };
        assert!(check_assignment(&server.public_key_hex(), &altered).is_err());
        let impostor = Identity::generate();
        let forged = Assignment { signature: impostor.sign_bytes(&assignment.signed_bytes()), ..assignment };
        assert!(check_assignment(&server.public_key_hex(), &forged).is_err());
    }
}
