//! The engine's loops: receive messages, stage tasks, decide whether tasks may run, run them,
//! send statuses, and show the owner what happens.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlegrid_client::{Channel, ClientError, ProblemLog, Transport};
use idlegrid_protocol::auth::{Identity, verify_bytes};
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::messages::{
    Assignment, AssignmentState, AssignmentStatus, NodeState, ProviderToServer, ServerToProvider,
};
use idlegrid_protocol::wire::RegisterResponse;
use idlegrid_protocol::wire::limits::INLINE_PAYLOAD_BYTES_MAX;
use idlegrid_protocol::{ErrorCode, ErrorReport, Payload};
use idlegrid_sandbox::{
    CompiledTask, Sandbox, TaskControl, TaskElement, TaskEvents, TaskFailure, TaskInput, TaskLimits, TaskOutcome,
    TaskRun,
};
use idlegrid_types::{AssignmentId, ElementHash, ElementKind, ElementRef, FailureKind, Role, TaskFailureInfo};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::activity::{ActivitySource, SystemActivity};
use crate::cache::{DiskBudget, ElementCache, FetchError};
use crate::contact::ContactGate;
use crate::disk::Disk;
use crate::policy::{Governor, Verdict};
use crate::queue::{Candidate, next_to_run};
use crate::settings::{RunMode, ServerControlled, TaskPriority};
use crate::space::SpaceCheck;
use crate::status::{EngineStatus, Pushed, TaskView, Usage};
use crate::vault::Vault;
use crate::workers::Workers;
use crate::{Activity, EngineConfig};

type EngineChannel = Channel<ProviderToServer, ServerToProvider>;

/// Where a task is on this engine (P3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalState {
    /// Assigned; elements being fetched.
    Received,
    /// Staged: ready to run.
    Prepared,
    Running,
    /// Stopped with a checkpoint (preempted, or engine shutdown); runs again before new tasks.
    Suspended,
    /// Finished; its final status is on its way to the server.
    Done,
}

impl LocalState {
    fn as_str(self) -> &'static str {
        match self {
            LocalState::Received => "staging",
            LocalState::Prepared => "prepared",
            LocalState::Running => "running",
            LocalState::Suspended => "suspended",
            LocalState::Done => "done",
        }
    }
}

struct LocalTask {
    assignment: Assignment,
    state: LocalState,
    arrival: u64,
    control: Option<TaskControl>,
    progress: f32,
    /// The server asked for the task back (`Stop`).
    hand_back: bool,
    /// The server no longer wants the task (`RemoveTask`).
    removed: bool,
    /// Asked to checkpoint and yield to a task of higher priority.
    preempted: bool,
    /// Memory the task may use, counted against the owner's budget while it runs.
    memory_bytes: u64,
}

impl LocalTask {
    fn new(assignment: Assignment, state: LocalState, arrival: u64, memory_cap: u64) -> Self {
        let memory_bytes = assignment.limits.memory_bytes_max.min(memory_cap);
        LocalTask {
            assignment,
            state,
            arrival,
            control: None,
            progress: 0.0,
            hand_back: false,
            removed: false,
            preempted: false,
            memory_bytes,
        }
    }
}

/// Counters, for tests, benchmarks and the status page.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_suspended: u64,
    pub tasks_preempted: u64,
    pub cpu_ms: u64,
    pub held: u64,
}

struct Outgoing {
    message: ProviderToServer,
    /// Delete this task once the server has the message.
    cleanup: Option<AssignmentId>,
}

struct RunState {
    verdict: Verdict,
    since: Instant,
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
}

/// The engine cannot write to its disk (it is full): it takes no tasks until there is room.
struct DiskTrouble {
    reason: String,
    /// When the disk was last found full; room is looked for again a while after.
    checked: Instant,
}

/// How often a full disk is checked for room again.
const DISK_RECHECK: Duration = Duration::from_secs(2);

struct Inner {
    config: EngineConfig,
    space: SpaceCheck,
    disk_trouble: Mutex<Option<DiskTrouble>>,
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
    tasks: Mutex<BTreeMap<AssignmentId, LocalTask>>,
    modules: Mutex<HashMap<ElementHash, Arc<CompiledTask>>>,
    wake_runner: Notify,
    outbox: mpsc::UnboundedSender<Outgoing>,
    arrivals: AtomicU64,
    stats: Mutex<EngineStats>,
    run_state: Mutex<RunState>,
    connectivity: Mutex<Connectivity>,
    from_server: Mutex<FromServer>,
    activity_name: Mutex<String>,
    status_addr: Mutex<Option<SocketAddr>>,
    stop: CancellationToken,
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
        let mut stats = *self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.held = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        stats
    }

    /// What the status page shows.
    pub fn status(&self) -> EngineStatus {
        self.inner.status()
    }

    /// The latest moment a running task parked (stopped using the CPU) for a pause: for
    /// measuring how fast the engine gets out of the owner's way.
    pub fn last_parked(&self) -> Option<Instant> {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.values().filter_map(|t| t.control.as_ref()?.parked_at()).max()
    }

    /// Where the status page listens, if it is on.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        *self.inner.status_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop: running tasks are asked to checkpoint (forced after the grace period) and stay on
    /// disk, so they resume when the engine starts again.
    pub async fn shutdown(self) {
        let inner = self.inner.clone();
        inner.stop.cancel();
        let running: Vec<TaskControl> = {
            let tasks = inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.values().filter_map(|t| t.control.clone()).collect()
        };
        for control in &running {
            control.request_stop();
        }
        let deadline = Instant::now() + inner.config.stop_grace;
        while Instant::now() < deadline && inner.running_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for control in &running {
            control.kill();
        }
        while inner.running_count() > 0 {
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
        for task in &self.tasks {
            task.abort();
        }
        let tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for task in tasks.values() {
            if let Some(control) = &task.control {
                control.kill();
            }
        }
    }
}

impl Engine {
    /// Register (first time), connect, recover held tasks from disk, and start working.
    pub async fn start(config: EngineConfig) -> anyhow::Result<EngineHandle> {
        config.owner.validate().map_err(|e| anyhow::anyhow!("invalid owner settings: {e}"))?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
        let vault = Arc::new(
            Vault::load_or_create(&config.data_dir.join("storage.key")).context("cannot load the storage key")?,
        );
        let disk = Disk::open(&config.data_dir, vault.clone())
            .with_context(|| format!("cannot use the data folder {}", config.data_dir.display()))?;
        let identity = Identity::load_or_create(&disk.identity_path())?;
        let transport = Transport::new(&config.server, identity)?;
        let registered = register(&transport, &config).await?;
        let server_key = trusted_server_key(&config, &disk, &registered.server_key)?;
        let channel = open_channel(&transport, &config, &disk).await?;
        let mut sandbox_config = config.sandbox.clone();
        if sandbox_config.pooled_instances == 0 {
            // Never more instances than slots run at once; a margin for tasks being torn down.
            sandbox_config.pooled_instances = config.owner.cores * 2 + 2;
            sandbox_config.pooled_memory_bytes_max = config.owner.task_memory_bytes_max;
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
        let controlled = ServerControlled { prefetch: config.prefetch, status_interval: config.status_interval };
        let inner = Arc::new(Inner {
            space,
            disk_trouble: Mutex::new(None),
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
            tasks: Mutex::new(BTreeMap::new()),
            modules: Mutex::new(HashMap::new()),
            wake_runner: Notify::new(),
            outbox,
            arrivals: AtomicU64::new(0),
            stats: Mutex::new(EngineStats::default()),
            run_state: Mutex::new(RunState { verdict: Verdict::Run, since: Instant::now() }),
            connectivity: Mutex::new(Connectivity::default()),
            from_server: Mutex::new(FromServer::default()),
            activity_name: Mutex::new(String::new()),
            status_addr: Mutex::new(None),
            stop: CancellationToken::new(),
            config,
        });
        if let Err(full) = inner.space.room_for(0) {
            inner.disk_full(full.to_string());
        }
        inner.recover();
        inner.announce();
        // Decide once before running anything: an engine started while the owner works waits.
        let source = inner.first_reading();
        let mut tasks = vec![
            tokio::spawn(inner.clone().receive_loop()),
            tokio::spawn(inner.clone().send_loop(outbox_rx)),
            tokio::spawn(inner.clone().run_loop()),
        ];
        tasks.push(tokio::spawn(inner.clone().governor_loop(source)));
        tasks.push(tokio::spawn(inner.clone().ship_logs_loop()));
        if let Some(listen) = inner.config.owner.status_listen.clone() {
            let snapshot_of = inner.clone();
            let snapshot: crate::status::Snapshot = Arc::new(move || snapshot_of.status());
            match crate::status::serve(&listen, snapshot, inner.stop.clone()).await {
                Ok(addr) => {
                    *inner.status_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
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

/// Register with the server, backing off (exponentially, with a cap and jitter) while it cannot
/// be reached, is not an Idlegrid server, or is not the server this engine trusts: an engine
/// is a daemon, and the address or the server may be fixed while it waits. Each problem is said
/// once, with what to do, when it starts or changes, never at every try.
async fn register(transport: &Transport, config: &EngineConfig) -> anyhow::Result<RegisterResponse> {
    let mut backoff = Backoff::new(config.channel.backoff_initial, config.channel.backoff_max);
    let mut problems = ProblemLog::default();
    loop {
        match transport.register(Role::Provider, &config.name).await {
            Ok(registered) => {
                if problems.recovered() {
                    tracing::info!(server = %config.server, "reached the server; registered");
                }
                return Ok(registered);
            }
            Err(error) if waited_out(&error) => {
                let delay = backoff.next_delay(rand::random::<f64>());
                if problems.is_news(&error) {
                    tracing::error!(
                        server = %config.server,
                        %error,
                        "cannot register with the server; the engine keeps trying (backing off up to {} s)",
                        config.channel.backoff_max.as_secs()
                    );
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("registration refused"),
        }
    }
}

/// Failures the engine waits out (at start, and when sending) instead of giving up.
fn waited_out(error: &ClientError) -> bool {
    error.is_transient() || matches!(error, ClientError::NotAServer { .. } | ClientError::Untrusted(_))
}

/// The server key to trust: pinned by the owner, or kept from the first registration. A server
/// that presents another key is refused: it could hand out tasks it did not mean to.
fn trusted_server_key(config: &EngineConfig, disk: &Disk, offered: &str) -> anyhow::Result<String> {
    let pinned = config.server_key.clone().or_else(|| disk.meta("server_key"));
    match pinned {
        Some(pinned) if !offered.is_empty() && pinned != offered => anyhow::bail!(
            "the server at {} signs tasks with key {offered}, but this engine trusts {pinned}: refusing to work for it \
             (if the server was replaced on purpose, start the engine with a fresh data folder or pass --server-key)",
            config.server
        ),
        Some(pinned) => {
            disk.set_meta("server_key", &pinned)?;
            Ok(pinned)
        }
        None if offered.is_empty() => {
            anyhow::bail!("the server did not give its signing key: it is too old for this engine")
        }
        None => {
            disk.set_meta("server_key", offered)?;
            Ok(offered.to_string())
        }
    }
}

async fn open_channel(transport: &Transport, config: &EngineConfig, disk: &Disk) -> anyhow::Result<EngineChannel> {
    if let Some(session) = disk.session() {
        match Channel::open(transport.clone(), config.channel.clone(), Some(session)).await {
            Ok((channel, _)) => return Ok(channel),
            Err(error) if error.code() == Some(ErrorCode::UnknownSession) => {
                tracing::info!("the server no longer has this engine's session; opening a new one");
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (channel, info) = Channel::open(transport.clone(), config.channel.clone(), None).await?;
    disk.set_session(info.session)?;
    Ok(channel)
}

fn failure_info(failure: &TaskFailure, output: &[u8]) -> TaskFailureInfo {
    let kind = match failure {
        TaskFailure::InvalidModule(_) | TaskFailure::ForbiddenImport { .. } | TaskFailure::MissingEntryPoint => {
            FailureKind::InvalidModule
        }
        TaskFailure::Trap(_) => FailureKind::Trap,
        TaskFailure::OutOfMemory { .. } => FailureKind::OutOfMemory,
        TaskFailure::CpuTimeExceeded { .. } => FailureKind::CpuTimeExceeded,
        TaskFailure::Exit(_) | TaskFailure::NoResult => FailureKind::NoResult,
        TaskFailure::Reported(_) => FailureKind::Reported,
        TaskFailure::Internal(_) => FailureKind::Engine,
    };
    let mut message = failure.to_string();
    if !output.is_empty() && matches!(kind, FailureKind::Trap | FailureKind::NoResult) {
        // The task's own last words (a panic message) usually say why.
        let text = String::from_utf8_lossy(output);
        let tail: String = text.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
        message.push_str("\n--- task output ---\n");
        message.push_str(tail.trim_end());
    }
    TaskFailureInfo { kind, message }
}

/// Forwards a running task's statuses and checkpoints to the engine.
struct Events {
    inner: Arc<Inner>,
    assignment: AssignmentId,
    last_status: Option<Instant>,
}

impl TaskEvents for Events {
    fn on_status(&mut self, data: &[u8], progress: f32) {
        let interval = self.inner.controlled.lock().unwrap_or_else(|p| p.into_inner()).status_interval;
        let due = self.last_status.is_none_or(|t| t.elapsed() >= interval);
        if let Some(task) = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&self.assignment) {
            task.progress = progress;
        }
        // The first status waits an interval too: short tasks send none.
        if self.last_status.is_none() {
            self.last_status = Some(Instant::now());
            return;
        }
        if !due {
            return;
        }
        self.last_status = Some(Instant::now());
        let status =
            (!data.is_empty() && data.len() <= INLINE_PAYLOAD_BYTES_MAX).then(|| Payload::Inline(data.to_vec()));
        self.inner.send(
            ProviderToServer::TaskStatus(AssignmentStatus {
                assignment: self.assignment,
                state: AssignmentState::Running,
                progress,
                status,
                result: None,
                failure: None,
                checkpoint: None,
                cpu_ms: 0,
            }),
            None,
        );
    }

    fn on_checkpoint(&mut self, data: &[u8]) -> Result<(), String> {
        self.inner.store_checkpoint(self.assignment, data)
    }
}

impl Inner {
    fn channel(&self) -> Arc<EngineChannel> {
        self.channel.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn send(&self, message: ProviderToServer, cleanup: Option<AssignmentId>) {
        let _ = self.outbox.send(Outgoing { message, cleanup });
    }

    fn running_count(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|t| t.state == LocalState::Running).count()
    }

    fn capacity(&self) -> u32 {
        self.config.owner.cores + self.controlled.lock().unwrap_or_else(|p| p.into_inner()).prefetch
    }

    fn may_run(&self) -> bool {
        !self.stop.is_cancelled() && self.run_state.lock().unwrap_or_else(|p| p.into_inner()).verdict == Verdict::Run
    }

    /// Elements that held tasks need: never evicted.
    fn needed_elements(&self) -> HashSet<ElementHash> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .values()
            .filter(|t| t.state != LocalState::Done)
            .flat_map(|t| {
                std::iter::once(t.assignment.executable.hash).chain(t.assignment.data.values().map(|e| e.hash))
            })
            .collect()
    }

    /// Store a checkpoint within the disk budget (evicting unneeded elements if need be) and
    /// the room the disk has. A full disk makes the engine stop taking tasks (the task is told
    /// its checkpoint was not saved, as for a budget too small).
    fn store_checkpoint(&self, id: AssignmentId, data: &[u8]) -> Result<(), String> {
        let new = Disk::sealed_checkpoint_size(data.len());
        let old = self.disk.checkpoint_bytes(id);
        if new > old && !self.cache.reserve(new - old, &self.needed_elements()) {
            return Err(format!(
                "the owner's disk budget of {} bytes has no room for a checkpoint of {} bytes",
                self.budget.max(),
                data.len()
            ));
        }
        let release = || {
            if new > old {
                self.budget.release(new - old);
            }
        };
        // The whole new copy is written before the old one goes.
        if let Err(full) = self.space.room_for(new) {
            release();
            self.disk_full(full.to_string());
            return Err(full.to_string());
        }
        match self.disk.save_checkpoint(id, data) {
            Ok(()) => {
                if old > new {
                    self.budget.release(old - new);
                }
                Ok(())
            }
            Err(error) => {
                release();
                if crate::disk::is_disk_full(&error) {
                    self.disk_full(format!("cannot write a checkpoint: {error}"));
                }
                Err(error.to_string())
            }
        }
    }

    /// The disk is full: stop taking tasks, and tell the server (and the owner) why.
    fn disk_full(&self, reason: String) {
        let first = {
            let mut trouble = self.disk_trouble.lock().unwrap_or_else(|p| p.into_inner());
            let first = trouble.is_none();
            *trouble = Some(DiskTrouble { reason: reason.clone(), checked: Instant::now() });
            first
        };
        if first {
            tracing::error!(%reason, "the engine's disk is full: it takes no tasks until there is room again");
            self.send(self.node_status(), None);
            self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::LimitExceeded, reason)), None);
        }
    }

    fn disk_is_full(&self) -> bool {
        self.disk_trouble.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// After a full disk: once there is room again (twice the headroom, so that the engine does
    /// not flap), take tasks again.
    fn check_disk(&self) {
        {
            let mut trouble = self.disk_trouble.lock().unwrap_or_else(|p| p.into_inner());
            let Some(current) = trouble.as_mut() else { return };
            if current.checked.elapsed() < DISK_RECHECK {
                return;
            }
            current.checked = Instant::now();
            if let Err(full) = self.space.room_for(crate::space::HEADROOM) {
                current.reason = full.to_string();
                return;
            }
            *trouble = None;
        }
        tracing::info!("the engine's disk has room again; taking tasks");
        self.send(self.node_status(), None);
        self.wake_runner.notify_one();
    }

    /// What the engine says about itself: active with room for work, or paused with none while
    /// its disk is full.
    fn node_status(&self) -> ProviderToServer {
        if self.disk_is_full() {
            ProviderToServer::NodeStatus { state: NodeState::Paused, slots: self.config.owner.cores, queue_capacity: 0 }
        } else {
            ProviderToServer::NodeStatus {
                state: NodeState::Active,
                slots: self.config.owner.cores,
                queue_capacity: self.capacity(),
            }
        }
    }

    /// Hand a task back untouched (not failed): the engine cannot hold it now; the server places
    /// it again without counting an attempt.
    fn give_back(&self, id: AssignmentId) {
        if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            task.state = LocalState::Done;
        }
        self.send_given_back(id);
    }

    fn send_given_back(&self, id: AssignmentId) {
        let status = AssignmentStatus {
            assignment: id,
            state: AssignmentState::Suspended,
            progress: 0.0,
            status: None,
            result: None,
            failure: None,
            checkpoint: None,
            cpu_ms: 0,
        };
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    /// Tell the server who we are, what we hold and how much work we want.
    fn announce(&self) {
        let held: Vec<(AssignmentId, AssignmentState)> = {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.keys().map(|id| (*id, AssignmentState::Running)).collect()
        };
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
        self.send(ProviderToServer::Contents { tasks: held }, None);
        self.send(self.node_status(), None);
    }

    /// Take back the tasks held on disk: finished ones have their outcome sent again, the
    /// others are staged again and resume from their checkpoints (P3.8).
    fn recover(self: &Arc<Self>) {
        let cap = self.config.owner.task_memory_bytes_max;
        for (assignment, outcome) in self.disk.held_tasks() {
            let id = assignment.assignment;
            let suspended = self.disk.checkpoint(id).is_some();
            let state = if outcome.is_some() { LocalState::Done } else { LocalState::Received };
            let arrival = self.arrivals.fetch_add(1, Ordering::Relaxed);
            self.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, LocalTask::new(assignment, state, arrival, cap));
            match outcome {
                Some(status) => self.send(ProviderToServer::TaskStatus(status), Some(id)),
                None => {
                    tracing::info!(assignment = %id, resumes_from_checkpoint = suspended, "recovered a held task");
                    tokio::spawn(self.clone().stage(id, suspended));
                }
            }
        }
    }

    fn first_reading(self: &Arc<Self>) -> Box<dyn ActivitySource> {
        let source: Box<dyn ActivitySource> = match &self.config.activity {
            Activity::System => Box::new(SystemActivity::detect()),
            Activity::Injected(handle) => Box::new(handle.clone()),
        };
        *self.activity_name.lock().unwrap_or_else(|p| p.into_inner()) = source.describe();
        source
    }

    /// Read the computer's activity and the hour, decide whether tasks may run, and pause or
    /// resume running tasks when the answer changes (within one epoch tick: P3.3).
    /// Send the warnings and errors `log_shipper` caught, in batches, when contact is allowed.
    async fn ship_logs_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.log_ship_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if self.gate.wait_open(&self.stop).await.is_none() {
                return;
            }
            let lines = crate::log_shipper::take(idlegrid_protocol::wire::limits::LOG_LINES_PER_BATCH_MAX);
            if lines.is_empty() {
                continue;
            }
            let batch = idlegrid_protocol::wire::LogBatch { lines };
            let sent = self
                .transport
                .call::<_, serde_json::Value>(
                    idlegrid_client::Method::POST,
                    "/v1/logs",
                    Some(&batch),
                    Duration::from_secs(30),
                )
                .await;
            if let Err(error) = sent {
                // Debug, not warn: a warning here would be queued for shipping in turn.
                tracing::debug!(%error, "cannot send log lines; keeping them for the next try");
                crate::log_shipper::put_back(batch.lines);
            }
        }
    }

    async fn governor_loop(self: Arc<Self>, mut source: Box<dyn ActivitySource>) {
        let mut governor = Governor::new();
        let mut ticker = tokio::time::interval(self.config.governor_tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.check_disk();
            let reading = source.read();
            let verdict = governor.decide(&self.config.owner, reading, self.config.clock.week_minute(), now_ms());
            self.apply(verdict);
        }
    }

    fn apply(&self, verdict: Verdict) {
        let changed = {
            let mut state = self.run_state.lock().unwrap_or_else(|p| p.into_inner());
            let was_running = state.verdict == Verdict::Run;
            let now_running = verdict == Verdict::Run;
            if state.verdict != verdict {
                state.verdict = verdict.clone();
            }
            if was_running != now_running {
                state.since = Instant::now();
                Some(now_running)
            } else {
                None
            }
        };
        let Some(running) = changed else { return };
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for task in tasks.values().filter(|t| t.state == LocalState::Running) {
            if let Some(control) = &task.control {
                if running { control.resume() } else { control.pause() }
            }
        }
        drop(tasks);
        match &verdict {
            Verdict::Run => tracing::info!("tasks may run"),
            Verdict::Wait(reason) => tracing::info!(%reason, "tasks paused"),
        }
        self.wake_runner.notify_one();
    }

    async fn receive_loop(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        let mut problems = ProblemLog::default();
        loop {
            let Some(until) = self.gate.wait_open(&self.stop).await else { return };
            let channel = self.channel();
            let mut wait = self.config.channel.poll_wait;
            if let Some(until) = until {
                wait = wait.min(until.saturating_duration_since(Instant::now()));
            }
            let polled = tokio::select! {
                _ = self.stop.cancelled() => return,
                polled = channel.poll(wait) => polled,
            };
            match polled {
                Ok(messages) => {
                    backoff.reset();
                    if problems.recovered() {
                        tracing::info!(server = %self.transport.server(), "in contact with the server again");
                    }
                    {
                        let mut connectivity = self.connectivity.lock().unwrap_or_else(|p| p.into_inner());
                        connectivity.connected = true;
                        connectivity.last_contact_ms = Some(now_ms());
                        connectivity.last_error = None;
                    }
                    // New tasks are saved together; any other message first lets the tasks
                    // before it in, so that the order of the channel is kept.
                    let mut arriving = Vec::new();
                    for received in messages {
                        match received.message {
                            ServerToProvider::Task(assignment) => arriving.push(assignment),
                            other => {
                                self.accept(std::mem::take(&mut arriving));
                                self.handle(other);
                            }
                        }
                    }
                    self.accept(arriving);
                    channel.release_up_to(channel.received());
                }
                Err(error) if error.is_transient() => {
                    {
                        let mut connectivity = self.connectivity.lock().unwrap_or_else(|p| p.into_inner());
                        connectivity.connected = false;
                        connectivity.last_error = Some(error.to_string());
                    }
                    let delay = backoff.next_delay(rand::random::<f64>());
                    if problems.is_news(&error) {
                        tracing::warn!(server = %self.transport.server(), %error, "lost contact with the server; retrying until it answers");
                    } else {
                        tracing::debug!(%error, "poll failed; backing off {} ms", delay.as_millis());
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    problems.is_news(&error);
                    tracing::warn!(%error, "the session broke; reconnecting");
                    self.reconnect().await;
                }
            }
        }
    }

    /// Open a new session after the server lost ours; the server then re-sends our tasks.
    async fn reconnect(self: &Arc<Self>) {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        let mut problems = ProblemLog::default();
        loop {
            match Channel::open(self.transport.clone(), self.config.channel.clone(), None).await {
                Ok((channel, info)) => {
                    let _ = self.disk.set_session(info.session);
                    *self.channel.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(channel);
                    self.announce();
                    return;
                }
                Err(error) => {
                    if problems.is_news(&error) {
                        tracing::warn!(%error, "cannot open a session; retrying until the server answers");
                    }
                    {
                        let mut connectivity = self.connectivity.lock().unwrap_or_else(|p| p.into_inner());
                        connectivity.connected = false;
                        connectivity.last_error = Some(error.to_string());
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay(rand::random::<f64>())) => {}
                    }
                }
            }
        }
    }

    async fn send_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        while let Some(first) = rx.recv().await {
            // Only inside the contact schedule; messages wait on the engine meanwhile.
            if self.gate.wait_open(&self.stop).await.is_none() {
                return;
            }
            let mut batch = vec![first];
            while batch.len() < 500 {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            // Final statuses are kept on disk until the server has them (P3.9): if the engine
            // dies before, it sends them again when it starts.
            let outcomes: Vec<&AssignmentStatus> = batch
                .iter()
                .filter(|o| o.cleanup.is_some())
                .filter_map(|o| match &o.message {
                    ProviderToServer::TaskStatus(status) => Some(status),
                    _ => None,
                })
                .collect();
            if let Err(error) = self.disk.save_outcomes(&outcomes) {
                tracing::warn!(%error, "cannot save outcomes; sending them anyway");
            }
            let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
            let mut problems = ProblemLog::default();
            let delivered = loop {
                let channel = self.channel();
                let messages: Vec<ProviderToServer> = batch.iter().map(|o| o.message.clone()).collect();
                match channel.send(messages).await {
                    Ok(_) => break true,
                    // Not the server's answer to the batch but the address or the server's
                    // identity gone wrong: kept and sent once the server is back.
                    Err(error) if waited_out(&error) => {
                        if problems.is_news(&error) {
                            tracing::error!(%error, "cannot send to the server; keeping the messages and retrying");
                        }
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff.next_delay(rand::random::<f64>())) => {}
                        }
                    }
                    Err(error) if error.code() == Some(ErrorCode::UnknownSession) => {
                        tracing::warn!(%error, "the session broke while sending; reconnecting");
                        self.reconnect().await;
                        if self.stop.is_cancelled() {
                            return;
                        }
                    }
                    Err(error) => {
                        // A batch the server refuses as a whole is dropped, or it would block
                        // everything behind it. Outcomes it carried stay on disk and are sent
                        // again when the engine restarts.
                        tracing::error!(%error, "the server refused a batch of messages");
                        break false;
                    }
                }
            };
            if !delivered {
                continue;
            }
            let finished: Vec<AssignmentId> = batch.iter().filter_map(|o| o.cleanup).collect();
            let freed = self.disk.remove_tasks(&finished);
            self.budget.release(freed);
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            for id in finished {
                tasks.remove(&id);
            }
        }
    }

    fn handle(self: &Arc<Self>, message: ServerToProvider) {
        match message {
            ServerToProvider::Task(assignment) => self.accept(vec![assignment]),
            ServerToProvider::RemoveTask { assignment } => self.remove(assignment),
            ServerToProvider::Stop { assignment } => self.hand_back(assignment),
            ServerToProvider::GetTask { assignment } => {
                tokio::spawn(self.clone().send_checkpoint(assignment));
            }
            ServerToProvider::GetTaskStatus { assignment } => {
                let progress =
                    self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&assignment).map(|t| t.progress);
                let (state, progress) = match progress {
                    Some(p) => (AssignmentState::Running, p),
                    None => (AssignmentState::Removed, 0.0),
                };
                self.send(
                    ProviderToServer::TaskStatus(AssignmentStatus {
                        assignment,
                        state,
                        progress,
                        status: None,
                        result: None,
                        failure: None,
                        checkpoint: None,
                        cpu_ms: 0,
                    }),
                    None,
                );
            }
            ServerToProvider::GetContents => {
                let held = {
                    let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                    tasks.keys().map(|id| (*id, AssignmentState::Running)).collect()
                };
                self.send(ProviderToServer::Contents { tasks: held }, None);
            }
            ServerToProvider::GetCacheContents => {
                self.send(ProviderToServer::CacheContents { elements: self.cache.contents() }, None)
            }
            ServerToProvider::Config { settings } => {
                let (problems, capacity_changed) = {
                    let mut controlled = self.controlled.lock().unwrap_or_else(|p| p.into_inner());
                    let before = controlled.prefetch;
                    let problems = controlled.apply(&settings);
                    (problems, controlled.prefetch != before)
                };
                for problem in problems {
                    tracing::warn!(%problem, "configuration from the server refused");
                    self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::BadRequest, problem)), None);
                }
                if capacity_changed {
                    self.send(self.node_status(), None);
                }
            }
            ServerToProvider::WorkSummary { tasks_completed, cpu_seconds } => {
                self.from_server.lock().unwrap_or_else(|p| p.into_inner()).summary =
                    Some(format!("{tasks_completed} tasks completed, {cpu_seconds} s of CPU"));
            }
            ServerToProvider::DisplayContent { title, body, url } => {
                let mut from_server = self.from_server.lock().unwrap_or_else(|p| p.into_inner());
                from_server.messages.push(Pushed { title, body, url });
                let excess = from_server.messages.len().saturating_sub(10);
                from_server.messages.drain(..excess);
            }
            ServerToProvider::Upgrade { version, element, signature } => {
                if version == env!("CARGO_PKG_VERSION") {
                    return;
                }
                let inner = self.clone();
                tokio::spawn(async move {
                    match crate::upgrade::stage(
                        &inner.config.data_dir,
                        &inner.transport,
                        &inner.server_key,
                        &version,
                        &element,
                        &signature,
                    )
                    .await
                    {
                        Ok(staged) => {
                            tracing::info!(version = %staged.version, path = %staged.path.display(), "upgrade verified and staged: it takes effect at the next start");
                            inner.from_server.lock().unwrap_or_else(|p| p.into_inner()).messages.push(Pushed {
                                title: format!("Upgrade {version} ready"),
                                body: "verified; the engine switches to it when it next starts".into(),
                                url: None,
                            });
                        }
                        Err(reason) => {
                            tracing::warn!(%reason, "upgrade refused");
                            inner.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::Forbidden, reason)), None);
                        }
                    }
                });
            }
            ServerToProvider::Error(report) => tracing::warn!(%report, "the server reported an error"),
            ServerToProvider::ExternalDelivery { url } => tracing::warn!(%url, "external delivery is not supported"),
            ServerToProvider::Heartbeat => {}
        }
    }

    fn accept(self: &Arc<Self>, assignments: Vec<Assignment>) {
        if assignments.is_empty() {
            return;
        }
        let cap = self.config.owner.task_memory_bytes_max;
        let mut fresh = Vec::with_capacity(assignments.len());
        let full = self.disk_is_full();
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let mut to_save = Vec::with_capacity(assignments.len());
            for assignment in assignments {
                if let Err(reason) = check_assignment(&self.server_key, &assignment) {
                    tracing::error!(%reason, "refused a task");
                    self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::Forbidden, reason)), None);
                    self.send(
                        ProviderToServer::TaskStatus(AssignmentStatus {
                            assignment: assignment.assignment,
                            state: AssignmentState::Removed,
                            progress: 0.0,
                            status: None,
                            result: None,
                            failure: None,
                            checkpoint: None,
                            cpu_ms: 0,
                        }),
                        None,
                    );
                    continue;
                }
                match tasks.get_mut(&assignment.assignment) {
                    // Sent before the server knew the disk is full: back at once, nothing stored.
                    None if full => self.send_given_back(assignment.assignment),
                    // Sent again (new session): only the ticket is new.
                    Some(known) => {
                        known.assignment.ticket = assignment.ticket;
                        to_save.push(known.assignment.clone());
                    }
                    None => {
                        fresh.push(assignment.assignment);
                        to_save.push(assignment);
                    }
                }
            }
            if let Err(error) = self.disk.save_assignments(&to_save.iter().collect::<Vec<_>>()) {
                drop(tasks);
                if crate::disk::is_disk_full(&error) {
                    self.disk_full(format!("cannot save tasks: {error}"));
                    for id in fresh {
                        self.give_back(id);
                    }
                    return;
                }
                tracing::error!(%error, "cannot save tasks to disk; refusing them");
                for id in fresh {
                    self.send_failure(id, FailureKind::Engine, format!("the engine cannot write to its disk: {error}"));
                }
                return;
            }
            for assignment in to_save {
                let id = assignment.assignment;
                if fresh.contains(&id) {
                    let arrival = self.arrivals.fetch_add(1, Ordering::Relaxed);
                    tasks.insert(id, LocalTask::new(assignment, LocalState::Received, arrival, cap));
                }
            }
        }
        for id in fresh {
            tokio::spawn(self.clone().stage(id, false));
        }
    }

    /// Fetch a task's elements (and the checkpoint it restarts from) before it may run.
    async fn stage(self: Arc<Self>, id: AssignmentId, has_local_checkpoint: bool) {
        let Some(assignment) =
            self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&id).map(|t| t.assignment.clone())
        else {
            return;
        };
        let mut needed: Vec<ElementRef> = vec![assignment.executable];
        needed.extend(assignment.data.values().copied());
        for element in &needed {
            let mut waiting = false;
            loop {
                // Registered before the attempt, so that room freed meanwhile is not missed.
                let freed = self.budget.freed();
                let keep = self.needed_elements();
                let error = match self.cache.ensure(&self.transport, element, &assignment.ticket, &keep).await {
                    Ok(()) => break,
                    Err(error) => error,
                };
                if let FetchError::DiskBudget { needed, .. } = &error
                    && *needed <= self.budget.max()
                {
                    // The budget is taken by what other held tasks need (a large checkpoint):
                    // wait for room rather than fail a task that is not at fault.
                    if !waiting {
                        tracing::info!(assignment = %id, %error, "waiting for room in the disk budget");
                        waiting = true;
                    }
                    // Woken when bytes or tasks go; the timer is a safety net, not the signal.
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = freed => {}
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                    let gone = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&id).is_none_or(|t| t.removed);
                    if gone {
                        return;
                    }
                    continue;
                }
                if let Some(reason) = error.disk_full() {
                    self.disk_full(reason);
                    if has_local_checkpoint {
                        // Its progress goes back with it.
                        if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                            task.state = LocalState::Done;
                        }
                        self.clone().return_suspended(id, 0).await;
                    } else {
                        self.give_back(id);
                    }
                    return;
                }
                tracing::warn!(assignment = %id, %error, "staging failed");
                let kind = match error {
                    FetchError::DiskBudget { .. } => FailureKind::Engine,
                    _ => FailureKind::ElementUnavailable,
                };
                self.send_failure(id, kind, error.to_string());
                return;
            }
        }
        if let (Some(checkpoint), false) = (assignment.checkpoint, has_local_checkpoint) {
            match self.transport.download_bytes(&checkpoint, Some(&assignment.ticket), 1 << 30).await {
                Ok(bytes) => {
                    if let Err(error) = self.store_checkpoint(id, &bytes) {
                        if self.disk_is_full() {
                            self.give_back(id);
                            return;
                        }
                        self.send_failure(id, FailureKind::Engine, format!("cannot keep the checkpoint: {error}"));
                        return;
                    }
                }
                Err(error) => {
                    self.send_failure(
                        id,
                        FailureKind::ElementUnavailable,
                        format!("cannot fetch the checkpoint: {error}"),
                    );
                    return;
                }
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.get_mut(&id)
            && task.state == LocalState::Received
        {
            task.state = if has_local_checkpoint { LocalState::Suspended } else { LocalState::Prepared };
        }
        drop(tasks);
        self.wake_runner.notify_one();
    }

    fn send_failure(&self, id: AssignmentId, kind: FailureKind, message: String) {
        if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            task.state = LocalState::Done;
        }
        let status = AssignmentStatus {
            assignment: id,
            state: AssignmentState::Failed,
            progress: 0.0,
            status: None,
            result: None,
            failure: Some(TaskFailureInfo { kind, message }),
            checkpoint: None,
            cpu_ms: 0,
        };
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    fn remove(self: &Arc<Self>, id: AssignmentId) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(task) = tasks.get_mut(&id) else { return };
        task.removed = true;
        match (&task.control, task.state) {
            (Some(control), LocalState::Running) => control.kill(),
            (_, LocalState::Done) => {} // its status is on its way; the server will ignore it
            _ => {
                tasks.remove(&id);
                let freed = self.disk.remove_tasks(&[id]);
                self.budget.release(freed);
            }
        }
    }

    /// The server wants the task back (client stop, migration): checkpoint and return it.
    fn hand_back(self: &Arc<Self>, id: AssignmentId) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(task) = tasks.get_mut(&id) else { return };
        task.hand_back = true;
        match (&task.control, task.state) {
            (Some(control), LocalState::Running) => {
                let control = control.clone();
                control.request_stop();
                let grace = self.config.stop_grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    control.kill();
                });
            }
            (_, LocalState::Done) => {}
            _ => {
                task.state = LocalState::Done;
                drop(tasks);
                tokio::spawn(self.clone().return_suspended(id, 0));
            }
        }
    }

    /// Upload the task's checkpoint (if any) and hand the task back as suspended.
    async fn return_suspended(self: Arc<Self>, id: AssignmentId, cpu_ms: u64) {
        let checkpoint = match self.disk.checkpoint(id) {
            Some(bytes) => match self.transport.upload(bytes.into(), ElementKind::Data, "").await {
                Ok(element) => Some(element),
                Err(error) => {
                    tracing::warn!(assignment = %id, %error, "cannot upload the checkpoint; handing the task back without it");
                    None
                }
            },
            None => None,
        };
        let status = AssignmentStatus {
            assignment: id,
            state: AssignmentState::Suspended,
            progress: 0.0,
            status: None,
            result: None,
            failure: None,
            checkpoint,
            cpu_ms,
        };
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    /// Answer `GetTask`: ask the running task for a fresh checkpoint, then send the latest.
    async fn send_checkpoint(self: Arc<Self>, id: AssignmentId) {
        let control = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&id).and_then(|t| t.control.clone());
        if let Some(control) = control {
            let before = self.disk.checkpoint(id);
            control.request_checkpoint();
            let deadline = Instant::now() + self.config.stop_grace;
            while Instant::now() < deadline && self.disk.checkpoint(id) == before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let checkpoint = match self.disk.checkpoint(id) {
            Some(bytes) => self.transport.upload(bytes.into(), ElementKind::Data, "").await.ok(),
            None => None,
        };
        self.send(ProviderToServer::Task { assignment: id, checkpoint }, None);
    }

    /// Start tasks whenever a slot is free and the owner allows (P3.1: running is independent
    /// of talking to the server).
    async fn run_loop(self: Arc<Self>) {
        loop {
            while let Some(id) = self.pick_next() {
                self.start(id);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake_runner.notified() => {}
            }
        }
    }

    /// The next task to start, by priority, then suspended before new, then arrival (P3.2),
    /// within the owner's cores and memory. When every slot is taken by work of lower priority
    /// than the best waiting task, the lowest is asked to checkpoint and yield.
    fn pick_next(&self) -> Option<AssignmentId> {
        if !self.may_run() {
            return None;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let candidates = tasks
            .values()
            .filter(|t| matches!(t.state, LocalState::Prepared | LocalState::Suspended) && !t.removed && !t.hand_back)
            .map(|t| Candidate {
                assignment: t.assignment.assignment,
                priority: t.assignment.priority,
                suspended: t.state == LocalState::Suspended,
                arrival: t.arrival,
            });
        let next = next_to_run(candidates)?;
        let running: Vec<&LocalTask> = tasks.values().filter(|t| t.state == LocalState::Running).collect();
        let memory_in_use: u64 = running.iter().map(|t| t.memory_bytes).sum();
        let wanted = tasks.get(&next.assignment).map(|t| t.memory_bytes).unwrap_or(0);
        let fits = running.len() < self.config.owner.cores as usize
            && memory_in_use + wanted <= self.config.owner.memory_bytes_max;
        if !fits {
            let preempting = running.iter().any(|t| t.preempted);
            let lowest = running
                .iter()
                .filter(|t| !t.hand_back && !t.removed)
                .min_by_key(|t| (t.assignment.priority, std::cmp::Reverse(t.arrival)))
                .map(|t| (t.assignment.assignment, t.assignment.priority));
            if let (false, Some((victim, priority))) = (preempting, lowest)
                && priority < next.priority
                && let Some(task) = tasks.get_mut(&victim)
            {
                task.preempted = true;
                if let Some(control) = task.control.clone() {
                    tracing::info!(preempted = %victim, by = %next.assignment, "a task of higher priority preempts a running one");
                    control.request_stop();
                    let grace = self.config.stop_grace;
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        control.kill();
                    });
                }
            }
            return None;
        }
        let task = tasks.get_mut(&next.assignment)?;
        task.state = LocalState::Running;
        task.preempted = false;
        task.control = Some(TaskControl::new());
        Some(next.assignment)
    }

    fn limits(&self, assignment: &Assignment) -> TaskLimits {
        let job = &assignment.limits;
        TaskLimits {
            memory_bytes_max: job.memory_bytes_max.min(self.config.owner.task_memory_bytes_max),
            cpu_time_max: Duration::from_secs(job.cpu_seconds_max),
            result_bytes_max: job.result_bytes_max.min(usize::MAX as u64) as usize,
            status_bytes_max: INLINE_PAYLOAD_BYTES_MAX,
            checkpoint_bytes_max: job.checkpoint_bytes_max.min(usize::MAX as u64) as usize,
            output_bytes_max: self.config.task_output_bytes_max,
        }
    }

    fn compiled(&self, executable: &ElementRef) -> Result<Arc<CompiledTask>, TaskFailure> {
        if let Some(module) = self.modules.lock().unwrap_or_else(|p| p.into_inner()).get(&executable.hash) {
            return Ok(module.clone());
        }
        let bytes = self.cache.read_all(&executable.hash).map_err(|e| {
            TaskFailure::Internal(format!("the staged executable cannot be used ({e}); it will be fetched again"))
        })?;
        let module = self.sandbox.compile(&bytes)?;
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if modules.len() >= 64 {
            modules.clear();
        }
        modules.insert(executable.hash, module.clone());
        Ok(module)
    }

    fn start(self: &Arc<Self>, id: AssignmentId) {
        let (assignment, control) = {
            let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let Some(task) = tasks.get(&id) else { return };
            (task.assignment.clone(), task.control.clone().unwrap_or_default())
        };
        // The owner may have come back between the decision and now.
        if !self.may_run() {
            control.pause();
        }
        let inner = self.clone();
        tokio::spawn(async move {
            let worker = inner.clone();
            let run = inner.workers.run(move || worker.run_blocking(&assignment, &control)).await;
            let run = run.unwrap_or_else(|_| TaskRun {
                outcome: TaskOutcome::Failed(TaskFailure::Internal("the task's thread failed".into())),
                checkpoint: None,
                cpu_time: Duration::ZERO,
                output: Vec::new(),
            });
            inner.finish(id, run).await;
            inner.wake_runner.notify_one();
        });
    }

    fn run_blocking(self: &Arc<Self>, assignment: &Assignment, control: &TaskControl) -> TaskRun {
        let failed = |failure| TaskRun {
            outcome: TaskOutcome::Failed(failure),
            checkpoint: None,
            cpu_time: Duration::ZERO,
            output: Vec::new(),
        };
        let module = match self.compiled(&assignment.executable) {
            Ok(module) => module,
            Err(failure) => return failed(failure),
        };
        let mut elements = BTreeMap::new();
        let mut seals = Vec::new();
        for (name, element) in &assignment.data {
            match self.cache.reader(&element.hash) {
                Ok(reader) => {
                    seals.push((element.hash, reader.tampered_flag()));
                    elements.insert(name.clone(), TaskElement::Reader(Box::new(reader)));
                }
                Err(e) => {
                    return failed(TaskFailure::Internal(format!(
                        "staged data element '{name}' cannot be used ({e}); it will be fetched again"
                    )));
                }
            }
        }
        let input = TaskInput {
            params: assignment.params.clone(),
            elements,
            checkpoint: self.disk.checkpoint(assignment.assignment),
        };
        let events = Events { inner: self.clone(), assignment: assignment.assignment, last_status: None };
        let run = self.sandbox.run(&module, input, &self.limits(assignment), control, Box::new(events));
        // A chunk that failed its seal while the task read it: the task saw an error that is
        // the disk's fault, not its own. Drop the element and let the server place the task again.
        for (hash, tampered) in seals {
            if tampered.load(Ordering::SeqCst) {
                self.cache.forget(&hash);
                return failed(TaskFailure::Internal(format!(
                    "element {hash} on disk was altered; it will be fetched again"
                )));
            }
        }
        run
    }

    async fn finish(self: &Arc<Self>, id: AssignmentId, run: TaskRun) {
        let (removed, hand_back, preempted) = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let Some(task) = tasks.get_mut(&id) else { return };
            task.control = None;
            (task.removed, task.hand_back, task.preempted)
        };
        let cpu_ms = run.cpu_time.as_millis() as u64;
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).cpu_ms += cpu_ms;
        if removed {
            self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            let freed = self.disk.remove_tasks(&[id]);
            self.budget.release(freed);
            return;
        }
        let set_state = |state| {
            if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                task.state = state;
            }
        };
        let status = match run.outcome {
            TaskOutcome::Succeeded(bytes) => {
                let bytes = match &self.config.forge_result {
                    Some(forge) => forge(bytes),
                    None => bytes,
                };
                let result = if bytes.len() <= INLINE_PAYLOAD_BYTES_MAX {
                    Payload::Inline(bytes)
                } else {
                    match self.transport.upload(bytes.into(), ElementKind::Data, "").await {
                        Ok(element) => Payload::Element(element),
                        Err(error) => {
                            // The server will place the task again; our work is lost, not wrong.
                            tracing::warn!(assignment = %id, %error, "cannot upload a result");
                            self.send_failure(
                                id,
                                FailureKind::Engine,
                                format!("the engine could not upload the result: {error}"),
                            );
                            return;
                        }
                    }
                };
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).tasks_succeeded += 1;
                AssignmentStatus {
                    assignment: id,
                    state: AssignmentState::Succeeded,
                    progress: 1.0,
                    status: None,
                    result: Some(result),
                    failure: None,
                    checkpoint: None,
                    cpu_ms,
                }
            }
            TaskOutcome::Failed(TaskFailure::Internal(reason)) => {
                // Not the task's fault (a tampered or unreadable staged element, a dead thread):
                // forget the compiled module, let the server place the task again.
                self.modules.lock().unwrap_or_else(|p| p.into_inner()).clear();
                self.send_failure(id, FailureKind::ElementUnavailable, reason);
                return;
            }
            TaskOutcome::Failed(failure) => {
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).tasks_failed += 1;
                AssignmentStatus {
                    assignment: id,
                    state: AssignmentState::Failed,
                    progress: 0.0,
                    status: None,
                    result: None,
                    failure: Some(failure_info(&failure, &run.output)),
                    checkpoint: None,
                    cpu_ms,
                }
            }
            TaskOutcome::Suspended | TaskOutcome::Killed if hand_back => {
                set_state(LocalState::Done);
                self.stats.lock().unwrap_or_else(|p| p.into_inner()).tasks_suspended += 1;
                self.clone().return_suspended(id, cpu_ms).await;
                return;
            }
            TaskOutcome::Suspended | TaskOutcome::Killed => {
                // Preempted, or stopped by this engine (shutdown): keep it, resume it later from
                // its checkpoint, before any new task of its priority.
                if preempted {
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).tasks_preempted += 1;
                }
                set_state(LocalState::Suspended);
                return;
            }
        };
        set_state(LocalState::Done);
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    fn status(&self) -> EngineStatus {
        let (verdict, _) = {
            let state = self.run_state.lock().unwrap_or_else(|p| p.into_inner());
            (state.verdict.clone(), state.since)
        };
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let running = tasks.values().filter(|t| t.state == LocalState::Running).count();
        let views: Vec<TaskView> = tasks
            .values()
            .map(|t| {
                let paused = t.control.as_ref().is_some_and(|c| c.is_paused());
                TaskView {
                    assignment: t.assignment.assignment.0,
                    state: if paused { "paused".into() } else { t.state.as_str().into() },
                    progress: t.progress,
                    priority: t.assignment.priority,
                }
            })
            .collect();
        let memory_used: u64 = tasks.values().filter(|t| t.state == LocalState::Running).map(|t| t.memory_bytes).sum();
        let waiting = tasks.values().any(|t| matches!(t.state, LocalState::Prepared | LocalState::Suspended));
        drop(tasks);
        let disk_trouble =
            self.disk_trouble.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|t| t.reason.clone());
        let (state, reason) = match &verdict {
            _ if disk_trouble.is_some() => ("disk full".to_string(), disk_trouble),
            Verdict::Wait(reason) => ("waiting".to_string(), Some(reason.to_string())),
            Verdict::Run if running > 0 => ("computing".to_string(), None),
            Verdict::Run if waiting => ("computing".to_string(), Some("starting tasks".into())),
            Verdict::Run => ("idle".to_string(), Some("no tasks to run".into())),
        };
        let stats = *self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let connectivity = self.connectivity.lock().unwrap_or_else(|p| p.into_inner());
        let from_server = self.from_server.lock().unwrap_or_else(|p| p.into_inner());
        EngineStatus {
            engine: self.transport.identity().id().to_string(),
            name: self.config.name.clone(),
            server: self.config.server.url().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            state,
            reason,
            mode: match self.config.owner.mode {
                RunMode::Continuous => "continuous".into(),
                RunMode::IdleOnly => "idle only".into(),
            },
            hours: self.config.owner.run_hours.describe(),
            contact: self.gate.describe(),
            activity_source: self.activity_name.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            task_priority: self.workers.priority.clone(),
            tasks: views,
            memory: Usage { used: memory_used, max: self.config.owner.memory_bytes_max },
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_types::TaskLimitsSpec;

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
