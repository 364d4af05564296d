//! The fetch loop: receive the server's messages (within the contact schedule), take tasks in
//! (checked, saved to disk, then staged), and fetch the elements and checkpoints they need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use idlegrid_client::ProblemLog;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::messages::{Assignment, AssignmentState, AssignmentStatus, ProviderToServer, ServerToProvider};
use idlegrid_protocol::{ErrorCode, ErrorReport};
use idlegrid_types::{AssignmentId, ElementRef, FailureKind};
use tracing::Instrument;

use super::core::{Action, bare_status};
use super::{Inner, check_assignment, lock, now_ms};
use crate::cache::FetchError;
use crate::status::Pushed;

impl Inner {
    pub(super) async fn receive_loop(self: Arc<Self>) {
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
                        let mut connectivity = lock(&self.connectivity);
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
                        let mut connectivity = lock(&self.connectivity);
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

    fn handle(self: &Arc<Self>, message: ServerToProvider) {
        match message {
            ServerToProvider::Task(assignment) => self.accept(vec![assignment]),
            ServerToProvider::RemoveTask { assignment } => {
                let actions = self.core().remove(assignment);
                self.perform(actions);
            }
            ServerToProvider::Stop { assignment } => {
                let actions = self.core().hand_back(assignment);
                self.perform(actions);
            }
            ServerToProvider::GetTask { assignment } => {
                tokio::spawn(self.clone().send_checkpoint(assignment));
            }
            ServerToProvider::GetTaskStatus { assignment } => {
                let progress = self.core().task(assignment).map(|t| t.progress);
                let (state, progress) = match progress {
                    Some(p) => (AssignmentState::Running, p),
                    None => (AssignmentState::Removed, 0.0),
                };
                let status = AssignmentStatus { progress, ..bare_status(assignment, state) };
                self.send(ProviderToServer::TaskStatus(status), None);
            }
            ServerToProvider::GetContents { request } => {
                let held = self.core().held().into_iter().map(|id| (id, AssignmentState::Running)).collect();
                self.send(ProviderToServer::Contents { tasks: held, request }, None);
            }
            ServerToProvider::GetCacheContents => {
                self.send(ProviderToServer::CacheContents { elements: self.cache.contents() }, None)
            }
            ServerToProvider::Config { settings } => {
                let (problems, prefetch) = {
                    let mut controlled = lock(&self.controlled);
                    let before = controlled.prefetch;
                    let problems = controlled.apply(&settings);
                    (problems, (controlled.prefetch != before).then_some(controlled.prefetch))
                };
                for problem in problems {
                    tracing::warn!(%problem, "configuration from the server refused");
                    self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::BadRequest, problem)), None);
                }
                if let Some(prefetch) = prefetch {
                    let status = {
                        let mut core = self.core();
                        core.set_prefetch(prefetch);
                        core.node_status()
                    };
                    self.send(status, None);
                }
            }
            ServerToProvider::WorkSummary { tasks_completed, run_seconds, balance_micros } => {
                lock(&self.from_server).summary =
                    Some(crate::status::server_summary(tasks_completed, run_seconds, balance_micros));
            }
            ServerToProvider::DisplayContent { title, body, url } => {
                let mut from_server = lock(&self.from_server);
                from_server.messages.push(Pushed { title, body, url });
                let excess = from_server.messages.len().saturating_sub(10);
                from_server.messages.drain(..excess);
            }
            ServerToProvider::Upgrade { version, element, signature } => {
                if version != env!("CARGO_PKG_VERSION") {
                    tokio::spawn(self.clone().stage_upgrade(version, element, signature));
                }
            }
            ServerToProvider::Error(report) => tracing::warn!(%report, "the server reported an error"),
            ServerToProvider::ExternalDelivery { url } => tracing::warn!(%url, "external delivery is not supported"),
            ServerToProvider::Heartbeat => {}
            ServerToProvider::MarketContracts { contracts, memory_reserved_bytes } => {
                lock(&self.from_server).contracts = crate::market_served::views(&contracts);
                self.core().set_memory_reserved(memory_reserved_bytes);
            }
            ServerToProvider::MarketMemoryGrant { assignment, bytes } => self.core().grant_memory(assignment, bytes),
            ServerToProvider::PeripheralUse { contract, number, kind, input } => {
                tokio::spawn(self.clone().serve_peripheral(contract, number, kind, input));
            }
            message @ (ServerToProvider::MarketStore { .. }
            | ServerToProvider::MarketChallenge { .. }
            | ServerToProvider::MarketRelease { .. }) => {
                if let Some(market) = self.market.get() {
                    let _ = market.send(message);
                }
            }
        }
    }

    /// Fetch and verify an upgrade the server offers; it takes effect at the next start.
    async fn stage_upgrade(self: Arc<Self>, version: String, element: ElementRef, signature: String) {
        let staged = crate::upgrade::stage(
            &self.config.data_dir,
            &self.transport,
            &self.server_key,
            &version,
            &element,
            &signature,
        )
        .await;
        match staged {
            Ok(staged) => {
                tracing::info!(version = %staged.version, path = %staged.path.display(), "upgrade verified and staged: it takes effect at the next start");
                lock(&self.from_server).messages.push(Pushed {
                    title: format!("Upgrade {version} ready"),
                    body: "verified; the engine switches to it when it next starts".into(),
                    url: None,
                });
            }
            Err(reason) => {
                tracing::warn!(%reason, "upgrade refused");
                self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::Forbidden, reason)), None);
            }
        }
    }

    /// Take tasks in: refuse those the server did not sign, save the others to disk, stage the
    /// new ones.
    fn accept(self: &Arc<Self>, assignments: Vec<Assignment>) {
        if assignments.is_empty() {
            return;
        }
        let mut core = self.core();
        let admission = core.arrived(assignments, |a| check_assignment(&self.server_key, a));
        // Saved under the core's lock, so that a task is never held but not on disk.
        let saved = self.disk.save_assignments(&admission.to_save.iter().collect::<Vec<_>>());
        let (refused, given_back, fresh) =
            (admission.refused.clone(), admission.given_back.clone(), admission.fresh.clone());
        let actions = match &saved {
            Ok(()) => core.admitted(admission),
            Err(_) => Vec::new(),
        };
        drop(core);
        for (id, reason) in refused {
            tracing::error!(%reason, "refused a task");
            self.send(ProviderToServer::Error(ErrorReport::new(ErrorCode::Forbidden, reason)), None);
            self.send(ProviderToServer::TaskStatus(bare_status(id, AssignmentState::Removed)), None);
        }
        for id in given_back {
            if let Action::Send { message, cleanup } = super::core::given_back(id) {
                self.send(message, cleanup);
            }
        }
        match saved {
            Ok(()) => self.perform(actions),
            Err(error) if crate::disk::is_disk_full(&error) => {
                self.disk_full(format!("cannot save tasks: {error}"));
                for id in fresh {
                    self.give_back(id);
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot save tasks to disk; refusing them");
                for id in fresh {
                    self.send_failure(id, FailureKind::Engine, format!("the engine cannot write to its disk: {error}"));
                }
            }
        }
    }

    /// Fetch a task's elements (and the checkpoint it restarts from) before it may run, in a
    /// span of the task's trace.
    pub(super) async fn stage(self: Arc<Self>, id: AssignmentId, has_local_checkpoint: bool) {
        let Some(assignment) = self.core().task(id).map(|t| t.assignment.clone()) else { return };
        let span = tracing::info_span!(target: idlegrid_telemetry::TARGET, "engine.stage", assignment = id.0);
        idlegrid_telemetry::set_parent(&span, assignment.trace.as_ref());
        self.stage_assignment(id, assignment, has_local_checkpoint).instrument(span).await
    }

    async fn stage_assignment(self: Arc<Self>, id: AssignmentId, assignment: Assignment, has_local_checkpoint: bool) {
        let mut needed: Vec<ElementRef> = vec![assignment.executable];
        needed.extend(assignment.data.values().copied());
        for element in &needed {
            if !self.fetch_element(id, element, &assignment.ticket, has_local_checkpoint).await {
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
        // Said before the task can run, so the server knows it before the task's result.
        if let Some(elements) = self.cache.contents_if_changed() {
            self.send(ProviderToServer::CacheContents { elements }, None);
        }
        let actions = self.core().staged(id, has_local_checkpoint);
        self.perform(actions);
    }

    /// Fetch one element of a task into the cache, waiting for room in the disk budget when
    /// other held tasks take it. False when the task cannot be staged (it was reported).
    async fn fetch_element(
        self: &Arc<Self>,
        id: AssignmentId,
        element: &ElementRef,
        ticket: &str,
        has_local_checkpoint: bool,
    ) -> bool {
        let mut waiting = false;
        loop {
            // Registered before the attempt, so that room freed meanwhile is not missed.
            let freed = self.budget.freed();
            let keep = self.core().needed_elements();
            let error = match self.cache.ensure(&self.transport, element, ticket, &keep).await {
                Ok(()) => return true,
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
                    _ = self.stop.cancelled() => return false,
                    _ = freed => {}
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                if self.core().is_gone(id) {
                    return false;
                }
                continue;
            }
            if let Some(reason) = error.disk_full() {
                self.disk_full(reason);
                if has_local_checkpoint {
                    // Its progress goes back with it.
                    self.core().done(id);
                    self.clone().return_suspended(id, 0).await;
                } else {
                    self.give_back(id);
                }
                return false;
            }
            tracing::warn!(assignment = %id, %error, "staging failed");
            let kind = match error {
                FetchError::DiskBudget { .. } => FailureKind::Engine,
                _ => FailureKind::ElementUnavailable,
            };
            self.send_failure(id, kind, error.to_string());
            return false;
        }
    }
}
