//! The upload loop: the outbox of messages for the server, sent in batches within the contact
//! schedule (final statuses kept on disk until the server has them, and counted against the
//! outbox's bounds), checkpoints handed back, and the log lines the owner's engine ships.

use std::sync::Arc;
use std::time::{Duration, Instant};

use idlegrid_client::ProblemLog;
use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::messages::{AssignmentState, AssignmentStatus, ProviderToServer};
use idlegrid_types::{AssignmentId, ElementKind};
use tokio::sync::mpsc;

use super::core::bare_status;
use super::session::waited_out;
use super::{Inner, Outgoing, lock};

/// Most messages sent in one batch.
const BATCH_MAX: usize = 500;

/// What a message counts against the outbox's byte bound: its size on the wire.
pub(super) fn message_bytes(message: &ProviderToServer) -> u64 {
    serde_json::to_vec(message).map(|bytes| bytes.len() as u64).unwrap_or(0)
}

impl Inner {
    pub(super) async fn send_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        while let Some(first) = rx.recv().await {
            // Only inside the contact schedule; messages wait on the engine meanwhile.
            if self.gate.wait_open(&self.stop).await.is_none() {
                return;
            }
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
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
            let Some(delivered) = self.deliver(&batch).await else { return };
            let results = batch.iter().filter(|o| o.cleanup.is_some()).count();
            let bytes: u64 = batch.iter().map(|o| o.bytes).sum();
            let finished: Vec<AssignmentId> =
                if delivered { batch.iter().filter_map(|o| o.cleanup).collect() } else { Vec::new() };
            let freed = self.disk.remove_tasks(&finished);
            self.budget.release(freed);
            let actions = self.core().delivered(results, bytes, &finished);
            if !actions.is_empty() {
                tracing::info!("the outbox is below its bound again; taking work");
            }
            self.perform(actions);
        }
    }

    /// Send one batch, waiting out an unreachable server. Some(true) once delivered,
    /// Some(false) when the server refused it, None when the engine stops.
    async fn deliver(self: &Arc<Self>, batch: &[Outgoing]) -> Option<bool> {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        let mut problems = ProblemLog::default();
        loop {
            let channel = self.channel();
            let messages: Vec<ProviderToServer> = batch.iter().map(|o| o.message.clone()).collect();
            match channel.send(messages).await {
                Ok(_) => return Some(true),
                // Not the server's answer to the batch but the address or the server's
                // identity gone wrong: kept and sent once the server is back.
                Err(error) if waited_out(&error) => {
                    if problems.is_news(&error) {
                        tracing::error!(%error, "cannot send to the server; keeping the messages and retrying");
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return None,
                        _ = tokio::time::sleep(backoff.next_delay(rand::random::<f64>())) => {}
                    }
                }
                Err(error) if error.code() == Some(ErrorCode::UnknownSession) => {
                    tracing::warn!(%error, "the session broke while sending; reconnecting");
                    self.reconnect().await;
                    if self.stop.is_cancelled() {
                        return None;
                    }
                }
                Err(error) => {
                    // A batch the server refuses as a whole is dropped, or it would block
                    // everything behind it. Outcomes it carried stay on disk and are sent
                    // again when the engine restarts.
                    tracing::error!(%error, "the server refused a batch of messages");
                    return Some(false);
                }
            }
        }
    }

    /// Upload the task's checkpoint (if any) and hand the task back as suspended.
    pub(super) async fn return_suspended(self: Arc<Self>, id: AssignmentId, cpu_ms: u64) {
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
        let status = AssignmentStatus { checkpoint, cpu_ms, ..bare_status(id, AssignmentState::Suspended) };
        self.send(ProviderToServer::TaskStatus(status), Some(id));
    }

    /// Upload a running task's latest checkpoint to the server (periodically, P1.5): if the
    /// engine vanishes, the task resumes from it elsewhere. A failed upload is tried again at
    /// the next period.
    pub(super) async fn upload_checkpoint(self: Arc<Self>, id: AssignmentId) {
        let Some(bytes) = self.disk.checkpoint(id) else { return };
        match self.transport.upload(bytes.into(), ElementKind::Data, "").await {
            Ok(element) => {
                lock(&self.stats).checkpoints_uploaded += 1;
                self.send(ProviderToServer::Task { assignment: id, checkpoint: Some(element) }, None);
            }
            Err(error) => {
                tracing::warn!(assignment = %id, %error, "cannot upload a checkpoint; trying at the next one")
            }
        }
    }

    /// Answer `GetTask`: ask the running task for a fresh checkpoint, then send the latest.
    pub(super) async fn send_checkpoint(self: Arc<Self>, id: AssignmentId) {
        if let Some(control) = self.control(id) {
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

    /// Send the warnings and errors `log_shipper` caught, in batches, when contact is allowed.
    pub(super) async fn ship_logs_loop(self: Arc<Self>) {
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
}
