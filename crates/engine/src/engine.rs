//! The engine's loops: receive messages, stage tasks, run them, send statuses.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlegrid_client::{Channel, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::messages::{
    Assignment, AssignmentState, AssignmentStatus, NodeState, ProviderToServer, ServerToProvider,
};
use idlegrid_protocol::wire::limits::INLINE_PAYLOAD_BYTES_MAX;
use idlegrid_protocol::{ErrorCode, Payload};
use idlegrid_sandbox::{CompiledTask, Sandbox, TaskControl, TaskElement, TaskEvents, TaskFailure, TaskInput, TaskLimits, TaskOutcome, TaskRun};
use idlegrid_types::{AssignmentId, ElementHash, ElementKind, ElementRef, FailureKind, Role, TaskFailureInfo};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cache::ElementCache;
use crate::disk::Disk;
use crate::queue::{Candidate, next_to_run};
use crate::EngineConfig;

type EngineChannel = Channel<ProviderToServer, ServerToProvider>;

/// Where a task is on this engine (P3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalState {
    /// Assigned; elements being fetched.
    Received,
    /// Staged: ready to run.
    Prepared,
    Running,
    /// Stopped with a checkpoint (engine shutdown); runs again before new tasks.
    Suspended,
    /// Finished; its final status is on its way to the server.
    Done,
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
}

/// Counters, for tests, benchmarks and the status page of a later issue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_suspended: u64,
    pub held: u64,
}

struct Outgoing {
    message: ProviderToServer,
    /// Delete this task's folder once the server has the message.
    cleanup: Option<AssignmentId>,
}

struct Inner {
    config: EngineConfig,
    transport: Transport,
    channel: RwLock<Arc<EngineChannel>>,
    sandbox: Sandbox,
    disk: Disk,
    cache: ElementCache,
    tasks: Mutex<BTreeMap<AssignmentId, LocalTask>>,
    modules: Mutex<HashMap<ElementHash, Arc<CompiledTask>>>,
    wake_runner: Notify,
    outbox: mpsc::UnboundedSender<Outgoing>,
    arrivals: AtomicU64,
    stats: Mutex<EngineStats>,
    stop: CancellationToken,
}

pub struct Engine;

/// A running engine.
pub struct EngineHandle {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
        let disk = Disk::open(&config.data_dir).with_context(|| format!("cannot use the data folder {}", config.data_dir.display()))?;
        let identity = Identity::load_or_create(&disk.identity_path())?;
        let transport = Transport::new(&config.server, identity)?;
        let mut backoff = Backoff::new(config.channel.backoff_initial, config.channel.backoff_max);
        loop {
            match transport.register(Role::Provider, &config.name).await {
                Ok(_) => break,
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "server unreachable; retrying registration");
                    tokio::time::sleep(backoff.next_delay(rand::random::<f64>())).await;
                }
                Err(error) => return Err(error).context("registration refused"),
            }
        }
        let channel = open_channel(&transport, &config, &disk).await?;
        let mut sandbox_config = config.sandbox.clone();
        if sandbox_config.pooled_instances == 0 {
            // Never more instances than slots run at once; a margin for tasks being torn down.
            sandbox_config.pooled_instances = config.slots * 2 + 2;
            sandbox_config.pooled_memory_bytes_max = config.task_memory_bytes_max;
        }
        let sandbox = Sandbox::new(sandbox_config).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cache: ElementCache::new(disk.elements_dir()),
            config,
            transport,
            channel: RwLock::new(Arc::new(channel)),
            sandbox,
            disk,
            tasks: Mutex::new(BTreeMap::new()),
            modules: Mutex::new(HashMap::new()),
            wake_runner: Notify::new(),
            outbox,
            arrivals: AtomicU64::new(0),
            stats: Mutex::new(EngineStats::default()),
            stop: CancellationToken::new(),
        });
        inner.disk.sweep_checkpoints();
        inner.recover();
        inner.announce();
        let tasks = vec![
            tokio::spawn(inner.clone().receive_loop()),
            tokio::spawn(inner.clone().send_loop(outbox_rx)),
            tokio::spawn(inner.clone().run_loop()),
        ];
        tracing::info!(engine = %inner.transport.identity().id(), server = %inner.config.server, slots = inner.config.slots, "engine started");
        Ok(EngineHandle { inner, tasks })
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
        TaskFailure::InvalidModule(_) | TaskFailure::ForbiddenImport { .. } | TaskFailure::MissingEntryPoint => FailureKind::InvalidModule,
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
        let due = self.last_status.is_none_or(|t| t.elapsed() >= self.inner.config.status_interval);
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
        let status = (!data.is_empty() && data.len() <= INLINE_PAYLOAD_BYTES_MAX).then(|| Payload::Inline(data.to_vec()));
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
        self.inner.disk.save_checkpoint(self.assignment, data).map_err(|e| e.to_string())
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
        self.config.slots + self.config.prefetch
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
                cores: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
                memory_bytes: self.config.task_memory_bytes_max,
                disk_bytes: 0,
                engine_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            None,
        );
        self.send(ProviderToServer::Contents { tasks: held }, None);
        self.send(ProviderToServer::NodeStatus { state: NodeState::Active, slots: self.config.slots, queue_capacity: self.capacity() }, None);
    }

    /// Take back the tasks held on disk: finished ones have their outcome sent again, the
    /// others are staged again and resume from their checkpoints (P3.8).
    fn recover(self: &Arc<Self>) {
        for (assignment, outcome) in self.disk.held_tasks() {
            let id = assignment.assignment;
            let suspended = self.disk.checkpoint(id).is_some();
            let state = if outcome.is_some() { LocalState::Done } else { LocalState::Received };
            self.tasks.lock().unwrap_or_else(|p| p.into_inner()).insert(
                id,
                LocalTask {
                    assignment,
                    state,
                    arrival: self.arrivals.fetch_add(1, Ordering::Relaxed),
                    control: None,
                    progress: 0.0,
                    hand_back: false,
                    removed: false,
                },
            );
            match outcome {
                Some(status) => self.send(ProviderToServer::TaskStatus(status), Some(id)),
                None => {
                    tracing::info!(assignment = %id, resumes_from_checkpoint = suspended, "recovered a held task");
                    tokio::spawn(self.clone().stage(id, suspended));
                }
            }
        }
    }

    async fn receive_loop(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        loop {
            let channel = self.channel();
            let polled = tokio::select! {
                _ = self.stop.cancelled() => return,
                polled = channel.poll(self.config.channel.poll_wait) => polled,
            };
            match polled {
                Ok(messages) => {
                    backoff.reset();
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
                    let delay = backoff.next_delay(rand::random::<f64>());
                    tracing::debug!(%error, "poll failed; backing off {} ms", delay.as_millis());
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the session broke; reconnecting");
                    self.reconnect().await;
                }
            }
        }
    }

    /// Open a new session after the server lost ours; the server then re-sends our tasks.
    async fn reconnect(self: &Arc<Self>) {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        loop {
            match Channel::open(self.transport.clone(), self.config.channel.clone(), None).await {
                Ok((channel, info)) => {
                    let _ = self.disk.set_session(info.session);
                    *self.channel.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(channel);
                    self.announce();
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot open a session");
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
            let delivered = loop {
                let channel = self.channel();
                let messages: Vec<ProviderToServer> = batch.iter().map(|o| o.message.clone()).collect();
                match channel.send(messages).await {
                    Ok(_) => break true,
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
            self.disk.remove_tasks(&finished);
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            for id in finished {
                tasks.remove(&id);
            }
        }
    }

    fn handle(self: &Arc<Self>, message: ServerToProvider) {
        tracing::trace!(message = idlegrid_protocol::ChannelMessage::name(&message), "received");
        match message {
            ServerToProvider::Task(assignment) => self.accept(vec![assignment]),
            ServerToProvider::RemoveTask { assignment } => self.remove(assignment),
            ServerToProvider::Stop { assignment } => self.hand_back(assignment),
            ServerToProvider::GetTask { assignment } => {
                tokio::spawn(self.clone().send_checkpoint(assignment));
            }
            ServerToProvider::GetTaskStatus { assignment } => {
                let progress = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&assignment).map(|t| t.progress);
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
            ServerToProvider::GetCacheContents => self.send(ProviderToServer::CacheContents { elements: self.cache.contents() }, None),
            ServerToProvider::Config { settings } => tracing::info!(?settings, "configuration from the server"),
            ServerToProvider::WorkSummary { tasks_completed, cpu_seconds } => {
                tracing::info!(tasks_completed, cpu_seconds, "work summary from the server")
            }
            ServerToProvider::DisplayContent { title, .. } => tracing::info!(%title, "display content from the server"),
            ServerToProvider::Upgrade { version, .. } => {
                tracing::warn!(%version, "the server offers an upgrade; this engine does not install upgrades");
                self.send(
                    ProviderToServer::Error(idlegrid_protocol::ErrorReport::new(ErrorCode::Unsupported, "upgrades are installed by the owner")),
                    None,
                );
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
        let mut fresh = Vec::with_capacity(assignments.len());
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let mut to_save = Vec::with_capacity(assignments.len());
            for assignment in assignments {
                match tasks.get_mut(&assignment.assignment) {
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
                tracing::error!(%error, "cannot save tasks to disk; refusing them");
                drop(tasks);
                for id in fresh {
                    self.send_failure(id, FailureKind::Engine, format!("the engine cannot write to its disk: {error}"));
                }
                return;
            }
            for assignment in to_save {
                let id = assignment.assignment;
                if fresh.contains(&id) {
                    tasks.insert(
                        id,
                        LocalTask {
                            assignment,
                            state: LocalState::Received,
                            arrival: self.arrivals.fetch_add(1, Ordering::Relaxed),
                            control: None,
                            progress: 0.0,
                            hand_back: false,
                            removed: false,
                        },
                    );
                }
            }
        }
        for id in fresh {
            tokio::spawn(self.clone().stage(id, false));
        }
    }

    /// Fetch a task's elements (and the checkpoint it restarts from) before it may run.
    async fn stage(self: Arc<Self>, id: AssignmentId, has_local_checkpoint: bool) {
        let Some(assignment) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(&id).map(|t| t.assignment.clone()) else { return };
        let mut needed: Vec<ElementRef> = vec![assignment.executable];
        needed.extend(assignment.data.values().copied());
        for element in &needed {
            if let Err(error) = self.cache.ensure(&self.transport, element, &assignment.ticket).await {
                tracing::warn!(assignment = %id, %error, "staging failed");
                self.send_failure(id, FailureKind::ElementUnavailable, error.to_string());
                return;
            }
        }
        if let (Some(checkpoint), false) = (assignment.checkpoint, has_local_checkpoint) {
            match self.transport.download_bytes(&checkpoint, Some(&assignment.ticket), 1 << 30).await {
                Ok(bytes) => {
                    if let Err(error) = self.disk.save_checkpoint(id, &bytes) {
                        self.send_failure(id, FailureKind::Engine, format!("cannot save the checkpoint: {error}"));
                        return;
                    }
                }
                Err(error) => {
                    self.send_failure(id, FailureKind::ElementUnavailable, format!("cannot fetch the checkpoint: {error}"));
                    return;
                }
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = tasks.get_mut(&id) {
            if task.state == LocalState::Received {
                task.state = if has_local_checkpoint { LocalState::Suspended } else { LocalState::Prepared };
            }
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
                self.disk.remove_task(id);
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

    /// Start tasks whenever a slot is free (P3.1: running is independent of talking).
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

    /// Whether tasks may run now. The owner's policy (idle, hours, budgets) plugs in here.
    fn may_run(&self) -> bool {
        !self.stop.is_cancelled()
    }

    fn pick_next(&self) -> Option<AssignmentId> {
        if !self.may_run() {
            return None;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let running = tasks.values().filter(|t| t.state == LocalState::Running).count();
        if running >= self.config.slots as usize {
            return None;
        }
        let candidates = tasks.values().filter(|t| matches!(t.state, LocalState::Prepared | LocalState::Suspended) && !t.removed && !t.hand_back).map(|t| Candidate {
            assignment: t.assignment.assignment,
            priority: t.assignment.priority,
            suspended: t.state == LocalState::Suspended,
            arrival: t.arrival,
        });
        let next = next_to_run(candidates)?;
        let task = tasks.get_mut(&next.assignment)?;
        task.state = LocalState::Running;
        task.control = Some(TaskControl::new());
        Some(next.assignment)
    }

    fn limits(&self, assignment: &Assignment) -> TaskLimits {
        let job = &assignment.limits;
        TaskLimits {
            memory_bytes_max: job.memory_bytes_max.min(self.config.task_memory_bytes_max),
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
        let bytes = std::fs::read(self.cache.path(&executable.hash))
            .map_err(|e| TaskFailure::Internal(format!("cannot read the staged executable: {e}")))?;
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
        let inner = self.clone();
        tokio::spawn(async move {
            let worker = inner.clone();
            let run = tokio::task::spawn_blocking(move || worker.run_blocking(&assignment, &control)).await;
            let run = run.unwrap_or_else(|e| TaskRun {
                outcome: TaskOutcome::Failed(TaskFailure::Internal(format!("the task's thread failed: {e}"))),
                checkpoint: None,
                cpu_time: Duration::ZERO,
                output: Vec::new(),
            });
            inner.finish(id, run).await;
            inner.wake_runner.notify_one();
        });
    }

    fn run_blocking(self: &Arc<Self>, assignment: &Assignment, control: &TaskControl) -> TaskRun {
        let failed = |failure| TaskRun { outcome: TaskOutcome::Failed(failure), checkpoint: None, cpu_time: Duration::ZERO, output: Vec::new() };
        let module = match self.compiled(&assignment.executable) {
            Ok(module) => module,
            Err(failure) => return failed(failure),
        };
        let mut elements = BTreeMap::new();
        for (name, element) in &assignment.data {
            match TaskElement::open(&self.cache.path(&element.hash)) {
                Ok(opened) => {
                    elements.insert(name.clone(), opened);
                }
                Err(e) => return failed(TaskFailure::Internal(format!("cannot open staged data element '{name}': {e}"))),
            }
        }
        let input = TaskInput { params: assignment.params.clone(), elements, checkpoint: self.disk.checkpoint(assignment.assignment) };
        let events = Events { inner: self.clone(), assignment: assignment.assignment, last_status: None };
        self.sandbox.run(&module, input, &self.limits(assignment), control, Box::new(events))
    }

    async fn finish(self: &Arc<Self>, id: AssignmentId, run: TaskRun) {
        let (removed, hand_back) = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            let Some(task) = tasks.get_mut(&id) else { return };
            task.control = None;
            (task.removed, task.hand_back)
        };
        let cpu_ms = run.cpu_time.as_millis() as u64;
        if removed {
            self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            self.disk.remove_task(id);
            return;
        }
        let set_state = |state| {
            if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                task.state = state;
            }
        };
        let status = match run.outcome {
            TaskOutcome::Succeeded(bytes) => {
                let result = if bytes.len() <= INLINE_PAYLOAD_BYTES_MAX {
                    Payload::Inline(bytes)
                } else {
                    match self.transport.upload(bytes.into(), ElementKind::Data, "").await {
                        Ok(element) => Payload::Element(element),
                        Err(error) => {
                            // The server will place the task again; our work is lost, not wrong.
                            tracing::warn!(assignment = %id, %error, "cannot upload a result");
                            self.send_failure(id, FailureKind::Engine, format!("the engine could not upload the result: {error}"));
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
                // Stopped by this engine (shutdown): keep it, resume it later from its checkpoint.
                set_state(LocalState::Suspended);
                return;
            }
        };
        set_state(LocalState::Done);
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }
}
