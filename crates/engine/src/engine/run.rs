//! The run loop and its schedule: the governor reads the owner's activity and hours and gives
//! the core its verdict; the run loop starts what the core picks in the owner's slots, runs it
//! in the sandbox on a worker thread, and hands the core the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{Assignment, AssignmentState, AssignmentStatus, NodeState, ProviderToServer};
use idlegrid_protocol::wire::limits::INLINE_PAYLOAD_BYTES_MAX;
use idlegrid_sandbox::{
    CompiledTask, FloatNans, TaskControl, TaskElement, TaskEvents, TaskFailure, TaskInput, TaskLimits, TaskOutcome,
    TaskRun,
};
use idlegrid_types::{AssignmentId, ElementKind, ElementRef, FailureKind, TaskFailureInfo};

use super::core::{Action, AfterRun, Ended, bare_status};
use super::{Inner, lock, now_ms};
use crate::activity::ActivitySource;
use crate::disk::Disk;
use crate::policy::{Governor, Verdict};

impl Inner {
    /// Read the computer's activity and the hour, decide whether tasks may run, and pause or
    /// resume running tasks when the answer changes (within one epoch tick: P3.3).
    pub(super) async fn governor_loop(self: Arc<Self>, mut source: Box<dyn ActivitySource>) {
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
            let actions = self.core().verdict(verdict.clone());
            if !actions.is_empty() {
                match &verdict {
                    Verdict::Run => tracing::info!("tasks may run"),
                    Verdict::Wait(reason) => tracing::info!(%reason, "tasks paused"),
                }
                // The server hears of it: no new work meanwhile, and running tasks may move
                // elsewhere if this engine is expected to stay busy (P4.5).
                self.send(self.owner_node_status(&verdict), None);
            }
            self.perform(actions);
        }
    }

    /// The engine's state as the owner's verdict makes it: paused while the owner uses the
    /// computer (the tasks it holds stay: its queue capacity is unchanged). Outside its hours
    /// it stays active, so that work is staged ahead of them.
    fn owner_node_status(&self, verdict: &Verdict) -> ProviderToServer {
        match (self.core().node_status(), verdict) {
            (
                ProviderToServer::NodeStatus { slots, queue_capacity, .. },
                Verdict::Wait(crate::policy::Reason::OwnerActive { .. }),
            ) => ProviderToServer::NodeStatus { state: NodeState::Paused, slots, queue_capacity },
            (status, _) => status,
        }
    }

    /// Start tasks whenever a slot is free and the owner allows (P3.1: running is independent
    /// of talking to the server).
    pub(super) async fn run_loop(self: Arc<Self>) {
        loop {
            while let Some(action) = self.pick_next() {
                self.perform(vec![action]);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake_runner.notified() => {}
            }
        }
    }

    /// What the core picks: a task to start (its control made under the core's lock, so that a
    /// removal that follows finds it), or a running task to preempt (then nothing starts now).
    fn pick_next(&self) -> Option<Action> {
        let mut core = self.core();
        match core.next()? {
            Action::Start(id) => {
                lock(&self.controls).insert(id, TaskControl::new());
                Some(Action::Start(id))
            }
            Action::Stop(victim) => {
                tracing::info!(preempted = %victim, "a task of higher priority preempts a running one");
                drop(core);
                self.stop_task(victim);
                None
            }
            other => Some(other),
        }
    }

    /// Ask a running task to checkpoint and return; kill it if it has not after the grace period.
    pub(super) fn stop_task(&self, id: AssignmentId) {
        let Some(control) = self.control(id) else { return };
        control.request_stop();
        let grace = self.config.stop_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            control.kill();
        });
    }

    fn limits(&self, assignment: &Assignment) -> TaskLimits {
        let job = &assignment.limits;
        // The core decided the task's memory (a market grant may raise it above the usual cap).
        let decided = self.core().task(assignment.assignment).map(|task| task.memory_bytes);
        TaskLimits {
            memory_bytes_max: decided
                .unwrap_or_else(|| job.memory_bytes_max.min(self.config.owner.task_memory_bytes_max)),
            cpu_time_max: Duration::from_secs(job.cpu_seconds_max),
            result_bytes_max: job.result_bytes_max.min(usize::MAX as u64) as usize,
            status_bytes_max: INLINE_PAYLOAD_BYTES_MAX,
            checkpoint_bytes_max: job.checkpoint_bytes_max.min(usize::MAX as u64) as usize,
            output_bytes_max: self.config.task_output_bytes_max,
        }
    }

    fn compiled(&self, executable: &ElementRef, nans: FloatNans) -> Result<Arc<CompiledTask>, TaskFailure> {
        if let Some(module) = lock(&self.modules).get(&(executable.hash, nans)) {
            return Ok(module.clone());
        }
        let bytes = self.cache.read_all(&executable.hash).map_err(|e| {
            TaskFailure::Internal(format!("the staged executable cannot be used ({e}); it will be fetched again"))
        })?;
        let module = self.sandbox.compile_for(&bytes, nans)?;
        let mut modules = lock(&self.modules);
        if modules.len() >= 64 {
            modules.clear();
        }
        modules.insert((executable.hash, nans), module.clone());
        Ok(module)
    }

    pub(super) fn start(self: &Arc<Self>, id: AssignmentId) {
        let Some(assignment) = self.core().task(id).map(|t| t.assignment.clone()) else { return };
        let control = self.control(id).unwrap_or_default();
        // The owner may have come back between the decision and now.
        if !self.core().may_compute() {
            control.pause();
        }
        let inner = self.clone();
        let runtime = tokio::runtime::Handle::current();
        // The run and its report are a span of the task's trace; the status names it.
        let span = tracing::info_span!(target: idlegrid_telemetry::TARGET, "engine.run", assignment = id.0);
        idlegrid_telemetry::set_parent(&span, assignment.trace.as_ref());
        let task = async move {
            let worker = inner.clone();
            let run = inner.workers.run(move || worker.run_blocking(&assignment, &control, runtime)).await;
            let run = run.unwrap_or_else(|_| TaskRun {
                outcome: TaskOutcome::Failed(TaskFailure::Internal("the task's thread failed".into())),
                checkpoint: None,
                cpu_time: Duration::ZERO,
                output: Vec::new(),
            });
            inner.finish(id, run).await;
            inner.wake_runner.notify_one();
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }

    fn run_blocking(
        self: &Arc<Self>,
        assignment: &Assignment,
        control: &TaskControl,
        runtime: tokio::runtime::Handle,
    ) -> TaskRun {
        let failed = |failure| TaskRun {
            outcome: TaskOutcome::Failed(failure),
            checkpoint: None,
            cpu_time: Duration::ZERO,
            output: Vec::new(),
        };
        let nans = if assignment.limits.native_nans { FloatNans::Native } else { FloatNans::Canonical };
        let module = match self.compiled(&assignment.executable, nans) {
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
        let uploads = assignment.checkpoint_upload_ms.map(|ms| Uploads {
            every: Duration::from_millis(ms),
            last: Instant::now(),
            runtime,
        });
        let events = Events { inner: self.clone(), assignment: assignment.assignment, last_status: None, uploads };
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

    /// A task's run ended: the core decides what becomes of it; its outcome goes to the server.
    async fn finish(self: &Arc<Self>, id: AssignmentId, run: TaskRun) {
        lock(&self.controls).remove(&id);
        let cpu_ms = run.cpu_time.as_millis() as u64;
        lock(&self.stats).cpu_ms += cpu_ms;
        let ended = match &run.outcome {
            TaskOutcome::Succeeded(_) => Ended::Succeeded,
            TaskOutcome::Failed(TaskFailure::Internal(_)) => Ended::Internal,
            TaskOutcome::Failed(_) => Ended::Failed,
            TaskOutcome::Suspended | TaskOutcome::Killed => Ended::Stopped,
        };
        let Some(after) = self.core().ended(id, ended) else { return };
        match after {
            AfterRun::Forget => self.perform(vec![Action::Forget(id)]),
            AfterRun::Report => self.report(id, run, cpu_ms).await,
            AfterRun::PlaceAgain => {
                // Not the task's fault (a tampered or unreadable staged element, a dead thread):
                // forget the compiled module, let the server place the task again.
                lock(&self.modules).clear();
                let reason = match run.outcome {
                    TaskOutcome::Failed(TaskFailure::Internal(reason)) => reason,
                    _ => String::new(),
                };
                self.send_failure(id, FailureKind::ElementUnavailable, reason);
            }
            AfterRun::ReturnSuspended => {
                lock(&self.stats).tasks_suspended += 1;
                self.clone().return_suspended(id, cpu_ms).await;
            }
            AfterRun::Keep { preempted } => {
                if preempted {
                    lock(&self.stats).tasks_preempted += 1;
                }
            }
        }
    }

    /// Send a finished task's result or failure (a large result is uploaded first).
    async fn report(self: &Arc<Self>, id: AssignmentId, run: TaskRun, cpu_ms: u64) {
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
                lock(&self.stats).tasks_succeeded += 1;
                AssignmentStatus {
                    progress: 1.0,
                    result: Some(result),
                    cpu_ms,
                    ..bare_status(id, AssignmentState::Succeeded)
                }
            }
            TaskOutcome::Failed(failure) => {
                lock(&self.stats).tasks_failed += 1;
                AssignmentStatus {
                    failure: Some(failure_info(&failure, &run.output)),
                    cpu_ms,
                    ..bare_status(id, AssignmentState::Failed)
                }
            }
            TaskOutcome::Suspended | TaskOutcome::Killed => return,
        };
        let status = AssignmentStatus { trace: idlegrid_telemetry::current(), ..status };
        self.core().done(id);
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    /// Store a checkpoint within the disk budget (evicting unneeded elements if need be) and
    /// the room the disk has. A full disk makes the engine stop taking tasks (the task is told
    /// its checkpoint was not saved, as for a budget too small).
    pub(super) fn store_checkpoint(&self, id: AssignmentId, data: &[u8]) -> Result<(), String> {
        let new = Disk::sealed_checkpoint_size(data.len());
        let old = self.disk.checkpoint_bytes(id);
        let needed = self.core().needed_elements();
        if new > old && !self.cache.reserve(new - old, &needed) {
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
    /// Periodic uploads of the checkpoint to the server, when the assignment asks for them.
    uploads: Option<Uploads>,
}

/// When a running task's checkpoint last went to the server, and how often it goes.
struct Uploads {
    every: Duration,
    last: Instant,
    runtime: tokio::runtime::Handle,
}

impl TaskEvents for Events {
    fn on_status(&mut self, data: &[u8], progress: f32) {
        let interval = lock(&self.inner.controlled).status_interval;
        let due = self.last_status.is_none_or(|t| t.elapsed() >= interval);
        self.inner.core().set_progress(self.assignment, progress);
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
        let status = AssignmentStatus { progress, status, ..bare_status(self.assignment, AssignmentState::Running) };
        self.inner.send(ProviderToServer::TaskStatus(status), None);
    }

    fn on_checkpoint(&mut self, data: &[u8]) -> Result<(), String> {
        self.inner.store_checkpoint(self.assignment, data)?;
        if let Some(uploads) = &mut self.uploads
            && uploads.last.elapsed() >= uploads.every
        {
            uploads.last = Instant::now();
            // Uploaded from the disk copy just saved, off the task's thread.
            uploads.runtime.spawn(self.inner.clone().upload_checkpoint(self.assignment));
        }
        Ok(())
    }
}
