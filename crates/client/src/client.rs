//! The job API for clients (P1): define, launch, watch, control and collect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use idlegrid_protocol::Payload;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::messages::{
    ClientToServer, InterimPattern, JobInfo, Replay, ServerToClient, TaskSpec, TaskStatusReport,
};
use idlegrid_types::{ElementKind, ElementRef, JobId, JobProperties, Role, SessionId, TaskIndex};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, ChannelConfig};
use crate::{ClientError, Transport};

type ClientChannel = Channel<ClientToServer, ServerToClient>;

/// Unacknowledged releases that make the pump re-poll at once instead of waiting.
const ACK_KICK_THRESHOLD: u64 = 64;

struct Shared {
    channel: ClientChannel,
    /// Replies by the sequence number of the message they answer.
    replies: Mutex<HashMap<u64, Vec<ServerToClient>>>,
    subscribers: Mutex<HashMap<JobId, mpsc::UnboundedSender<(u64, ServerToClient)>>>,
    /// Set when the pump stopped for good.
    failure: Mutex<Option<ClientError>>,
    failed: Notify,
    kick: Notify,
    stop: CancellationToken,
}

impl Shared {
    fn failure(&self) -> Option<ClientError> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn release(&self, seq: u64) {
        self.channel.release(seq);
        if self.channel.unsent_acks() >= ACK_KICK_THRESHOLD {
            self.kick.notify_one();
        }
    }
}

/// A connection to the server as a client: one session, with a background task that polls.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

/// What a [`JobWatch`] yields.
#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "events are yielded one at a time; boxing would only add allocations")]
pub enum JobEvent {
    /// An interim or final status of a task.
    Task(TaskStatusReport),
    /// The job's properties: sent when watching starts, and when the job completes.
    Job(JobInfo),
}

impl Client {
    /// Register `identity` as a client (harmless if done before) and open a session.
    pub async fn connect(
        server: impl Into<crate::Endpoint>,
        identity: Identity,
        name: &str,
    ) -> Result<Client, ClientError> {
        Self::connect_with(server, identity, name, ChannelConfig::default()).await
    }

    pub async fn connect_with(
        server: impl Into<crate::Endpoint>,
        identity: Identity,
        name: &str,
        config: ChannelConfig,
    ) -> Result<Client, ClientError> {
        let transport = Transport::new(server, identity)?;
        let connecting = ChannelConfig { send_give_up_after: config.connect_give_up_after, ..config.clone() };
        crate::channel::retry(&connecting, || transport.register(Role::Client, name)).await?;
        let (channel, _) = Channel::open(transport, config, None).await?;
        // Who we are, for the server's pages (P8.6 `ClientProfile`).
        let software_version = format!("idlegrid-client {}", env!("CARGO_PKG_VERSION"));
        channel.send(vec![ClientToServer::ClientProfile { name: name.to_string(), software_version }]).await?;
        let shared = Arc::new(Shared {
            channel,
            replies: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            failed: Notify::new(),
            kick: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(pump(shared.clone()));
        Ok(Client { shared })
    }

    pub fn session(&self) -> SessionId {
        self.shared.channel.session()
    }

    pub fn transport(&self) -> &Transport {
        self.shared.channel.transport()
    }

    /// Send messages and wait for whatever the server answers to them. An `Error` answer to
    /// any of them becomes `Err(Refused)`.
    pub async fn request(&self, messages: Vec<ClientToServer>) -> Result<Vec<ServerToClient>, ClientError> {
        if let Some(failure) = self.shared.failure() {
            return Err(failure);
        }
        let count = messages.len() as u64;
        let (first, reply) = self.shared.channel.send(messages).await?;
        tokio::select! {
            _ = self.shared.channel.wait_received(reply.outbound_head) => {}
            _ = self.shared.failed.notified() => {}
        }
        if let Some(failure) = self.shared.failure() {
            return Err(failure);
        }
        let mut answers = Vec::new();
        {
            let mut replies = self.shared.replies.lock().unwrap_or_else(|p| p.into_inner());
            for seq in first..first + count {
                answers.extend(replies.remove(&seq).unwrap_or_default());
            }
        }
        for answer in &answers {
            if let ServerToClient::Error(report) = answer {
                return Err(ClientError::Refused(report.clone()));
            }
        }
        Ok(answers)
    }

    async fn job_reply(&self, message: ClientToServer) -> Result<JobInfo, ClientError> {
        let answers = self.request(vec![message]).await?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::JobProperties(info) => Some(info),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not answer with the job's properties".into()))
    }

    /// Upload bytes as an element (once: the server deduplicates by content). An executable
    /// is stripped of its custom sections first (P6.3): use the returned hash in task specs.
    pub async fn upload(
        &self,
        bytes: impl Into<Bytes>,
        kind: ElementKind,
        name: &str,
    ) -> Result<ElementRef, ClientError> {
        self.transport().upload(bytes.into(), kind, name).await
    }

    pub async fn upload_file(&self, path: &std::path::Path, kind: ElementKind) -> Result<ElementRef, ClientError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.transport().upload_file(path, kind, &name).await
    }

    /// Create a job with a fresh ID.
    pub async fn create_job(&self, properties: JobProperties) -> Result<JobInfo, ClientError> {
        self.job_reply(ClientToServer::CreateJob { job: JobId::random(), properties }).await
    }

    /// Add tasks, sending them in batches as the iterator yields them: memory stays bounded
    /// whatever the number of tasks. Returns how many were added.
    pub async fn add_tasks(&self, job: JobId, tasks: impl IntoIterator<Item = TaskSpec>) -> Result<u64, ClientError> {
        const TASKS_PER_MESSAGE: usize = 1000;
        const MESSAGES_PER_REQUEST: usize = 4;
        let mut tasks = tasks.into_iter().peekable();
        let mut added = 0u64;
        while tasks.peek().is_some() {
            let mut messages = Vec::with_capacity(MESSAGES_PER_REQUEST);
            for _ in 0..MESSAGES_PER_REQUEST {
                let batch: Vec<TaskSpec> = tasks.by_ref().take(TASKS_PER_MESSAGE).collect();
                if batch.is_empty() {
                    break;
                }
                added += batch.len() as u64;
                messages.push(ClientToServer::Task { job, tasks: batch });
            }
            self.request(messages).await?;
        }
        Ok(added)
    }

    pub async fn launch(&self, job: JobId) -> Result<JobInfo, ClientError> {
        self.job_reply(ClientToServer::Launch { job }).await
    }

    pub async fn stop(&self, job: JobId, task: Option<TaskIndex>) -> Result<JobInfo, ClientError> {
        self.job_reply(ClientToServer::Stop { job, task }).await
    }

    pub async fn resume(&self, job: JobId, task: Option<TaskIndex>) -> Result<JobInfo, ClientError> {
        self.job_reply(ClientToServer::Resume { job, task }).await
    }

    pub async fn remove_job(&self, job: JobId) -> Result<(), ClientError> {
        self.request(vec![ClientToServer::RemoveJob { job }]).await.map(|_| ())
    }

    pub async fn remove_task(&self, job: JobId, task: TaskIndex) -> Result<(), ClientError> {
        self.request(vec![ClientToServer::RemoveTask { job, task }]).await.map(|_| ())
    }

    pub async fn job(&self, job: JobId) -> Result<JobInfo, ClientError> {
        self.job_reply(ClientToServer::GetJobProperties { job }).await
    }

    pub async fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        let answers = self.request(vec![ClientToServer::GetContents]).await?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::Contents { jobs } => Some(jobs),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not list the jobs".into()))
    }

    pub async fn task_status(&self, job: JobId, task: TaskIndex) -> Result<TaskStatusReport, ClientError> {
        let answers = self.request(vec![ClientToServer::GetTaskStatus { job, task }]).await?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::TaskStatus(report) => Some(report),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not send the task's status".into()))
    }

    /// Why a task of a job waits (the given one, or the job's first waiting one): for a job
    /// that asks for a virtual cluster, each requirement and the engines it rules out.
    pub async fn explain(
        &self,
        job: JobId,
        task: Option<TaskIndex>,
    ) -> Result<idlegrid_protocol::messages::JobExplanation, ClientError> {
        let answers = self.request(vec![ClientToServer::ExplainJob { job, task }]).await?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::Explanation(explanation) => Some(explanation),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not explain the job".into()))
    }

    /// Have the server deliver the job's final results (or only `task`'s) to `url`, those in
    /// already and each one as it arrives (an HTTP PUT of the result per task, retried until
    /// accepted); `url: None` only asks how delivery goes. Returns the delivery's state.
    pub async fn deliver_results(
        &self,
        job: JobId,
        task: Option<TaskIndex>,
        url: Option<String>,
    ) -> Result<idlegrid_protocol::messages::DeliveryReport, ClientError> {
        let answers = self.request(vec![ClientToServer::ExternalDelivery { job, task, url }]).await?;
        answers
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::ExternalDelivery(report) => Some(report),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not report the job's delivery".into()))
    }

    /// A checkpoint of a task (P1.5): the engine running it is asked for a fresh one; `None`
    /// if the task has not saved any. Waits until the engine answers.
    pub async fn checkpoint(&self, job: JobId, task: TaskIndex) -> Result<Option<Vec<u8>>, ClientError> {
        let (first, reply) = self.shared.channel.send(vec![ClientToServer::GetTask { job, task }]).await?;
        loop {
            // Read the position before looking for the reply: a reply dispatched in between
            // moves the position past it and ends the wait below.
            let seen = self.shared.channel.dispatched_position();
            // Replies already queued on the server come first; after them, any new message.
            let target = if seen < reply.outbound_head { reply.outbound_head } else { seen + 1 };
            let found = {
                let mut replies = self.shared.replies.lock().unwrap_or_else(|p| p.into_inner());
                replies.remove(&first)
            };
            if let Some(answers) = found {
                for answer in answers {
                    match answer {
                        ServerToClient::Error(report) => return Err(ClientError::Refused(report)),
                        ServerToClient::Task { checkpoint: None, .. } => return Ok(None),
                        ServerToClient::Task { checkpoint: Some(element), .. } => {
                            return self.transport().download_bytes(&element, None, u64::MAX).await.map(Some);
                        }
                        _ => {}
                    }
                }
            }
            if let Some(failure) = self.shared.failure() {
                return Err(failure);
            }
            tokio::select! {
                _ = self.shared.channel.wait_received(target) => {}
                _ = self.shared.failed.notified() => {}
            }
        }
    }

    /// Subscribe to a job: statuses and results stream in as they arrive; results that waited
    /// on the server while no client was attached come first (P1.4, P1.6).
    pub async fn watch(&self, job: JobId, replay: Replay) -> Result<JobWatch, ClientError> {
        self.watch_narrowed(job, replay, None, None).await
    }

    /// Subscribe to one task of a job: its interim statuses and its final result only. With
    /// `interim`, interim statuses come at most every so many seconds and only after so many
    /// percent of progress (the final status always comes). A session has one subscription per
    /// job: this replaces a [`Client::watch`] of the same job.
    pub async fn watch_task(
        &self,
        job: JobId,
        task: TaskIndex,
        replay: Replay,
        interim: Option<InterimPattern>,
    ) -> Result<JobWatch, ClientError> {
        self.watch_narrowed(job, replay, Some(task), interim).await
    }

    /// Subscribe to a job with the client's own pattern of interim statuses.
    pub async fn watch_with(
        &self,
        job: JobId,
        replay: Replay,
        interim: Option<InterimPattern>,
    ) -> Result<JobWatch, ClientError> {
        self.watch_narrowed(job, replay, None, interim).await
    }

    async fn watch_narrowed(
        &self,
        job: JobId,
        replay: Replay,
        task: Option<TaskIndex>,
        interim: Option<InterimPattern>,
    ) -> Result<JobWatch, ClientError> {
        // Results already processed must be acknowledged before the server decides which are
        // undelivered.
        self.shared.channel.flush_acks().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.subscribers.lock().unwrap_or_else(|p| p.into_inner()).insert(job, tx);
        match self.request(vec![ClientToServer::Attach { job, replay, task, interim }]).await {
            Ok(_) => Ok(JobWatch { job, rx, shared: self.shared.clone(), current: None }),
            Err(error) => {
                self.shared.subscribers.lock().unwrap_or_else(|p| p.into_inner()).remove(&job);
                Err(error)
            }
        }
    }

    /// The bytes of a result or status: inline, or downloaded and verified.
    pub async fn fetch(&self, payload: &Payload) -> Result<Vec<u8>, ClientError> {
        match payload {
            Payload::Inline(bytes) => Ok(bytes.clone()),
            Payload::Element(element) => self.transport().download_bytes(element, None, u64::MAX).await,
        }
    }

    /// This client's account: balance, what may still be spent, its limit.
    pub async fn account(&self) -> Result<idlegrid_protocol::messages::AccountInfo, ClientError> {
        self.account_reply(ClientToServer::GetAccount).await
    }

    /// Ask to pay `amount_micros` into this client's account: a pending request that an
    /// operator (or the payment processor) approves once the payment arrives; the same
    /// reference again is the same request.
    pub async fn request_deposit(
        &self,
        amount_micros: i64,
        reference: &str,
    ) -> Result<idlegrid_protocol::messages::MoneyRequestInfo, ClientError> {
        crate::Accounts::new(self.transport()).request_deposit(amount_micros, reference).await
    }

    async fn account_reply(
        &self,
        message: ClientToServer,
    ) -> Result<idlegrid_protocol::messages::AccountInfo, ClientError> {
        self.request(vec![message])
            .await?
            .into_iter()
            .find_map(|a| match a {
                ServerToClient::Account(info) => Some(info),
                _ => None,
            })
            .ok_or_else(|| ClientError::Protocol("the server did not send the account".into()))
    }

    /// Where notices of this client's jobs go (webhook with an HMAC secret, e-mail).
    pub async fn set_notices(
        &self,
        webhook_url: Option<String>,
        webhook_secret: Option<String>,
        email: Option<String>,
    ) -> Result<(), ClientError> {
        self.request(vec![ClientToServer::SetNotices { webhook_url, webhook_secret, email }]).await.map(|_| ())
    }

    /// Acknowledge what was processed and close the session.
    pub async fn close(self) -> Result<(), ClientError> {
        self.shared.stop.cancel();
        self.shared.channel.close().await
    }
}

/// The stream of a job's events. The previous event counts as processed when `next` is called
/// again; an event not processed before a crash is sent again to the next watcher.
pub struct JobWatch {
    job: JobId,
    rx: mpsc::UnboundedReceiver<(u64, ServerToClient)>,
    shared: Arc<Shared>,
    current: Option<u64>,
}

impl JobWatch {
    pub fn job(&self) -> JobId {
        self.job
    }

    pub async fn next(&mut self) -> Option<Result<JobEvent, ClientError>> {
        if let Some(seq) = self.current.take() {
            self.shared.release(seq);
        }
        loop {
            let received = tokio::select! {
                received = self.rx.recv() => received,
                _ = self.shared.failed.notified() => None,
            };
            let Some((seq, message)) = received else {
                return self.shared.failure().map(Err);
            };
            let event = match message {
                ServerToClient::TaskStatus(report) => JobEvent::Task(report),
                ServerToClient::JobProperties(info) => JobEvent::Job(info),
                _ => {
                    self.shared.release(seq);
                    continue;
                }
            };
            self.current = Some(seq);
            return Some(Ok(event));
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        if let Some(seq) = self.current.take() {
            self.shared.release(seq);
        }
        self.shared.subscribers.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.job);
        // Acknowledgements are cumulative: events still buffered must be released, or the
        // session would stall. Whoever drops a watch does not want them; a process that dies
        // instead never gets here, and its unprocessed events are sent again.
        while let Ok((seq, _)) = self.rx.try_recv() {
            self.shared.release(seq);
        }
        let shared = self.shared.clone();
        let job = self.job;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = shared.channel.send(vec![ClientToServer::Detach { job }]).await;
            });
        }
    }
}

/// Poll forever (until closed), routing replies to requests and events to watchers.
async fn pump(shared: Arc<Shared>) {
    let wait = shared.channel.config().poll_wait;
    let mut backoff = Backoff::new(shared.channel.config().backoff_initial, shared.channel.config().backoff_max);
    let mut problems = crate::ProblemLog::default();
    loop {
        let polled = tokio::select! {
            _ = shared.stop.cancelled() => return,
            // New acknowledgements: cut the long poll short so the server's window reopens.
            _ = shared.kick.notified() => continue,
            polled = shared.channel.poll(wait) => polled,
        };
        match polled {
            Ok(messages) => {
                backoff.reset();
                if problems.recovered() {
                    tracing::info!("in contact with the server again");
                }
                let last = messages.last().map(|m| m.seq);
                for received in messages {
                    dispatch(&shared, received.seq, received.reply_to, received.message);
                }
                if let Some(last) = last {
                    shared.channel.dispatched(last);
                }
            }
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay(rand::random::<f64>());
                if problems.is_news(&error) {
                    tracing::warn!(%error, "lost contact with the server; retrying until it answers");
                } else {
                    tracing::debug!(%error, delay_ms = delay.as_millis() as u64, "poll failed; backing off");
                }
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "the message channel failed");
                *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                shared.failed.notify_waiters();
                shared.subscribers.lock().unwrap_or_else(|p| p.into_inner()).clear();
                return;
            }
        }
    }
}

fn dispatch(shared: &Shared, seq: u64, reply_to: Option<u64>, message: ServerToClient) {
    tracing::trace!(seq, ?reply_to, message = idlegrid_protocol::ChannelMessage::name(&message), "received");
    if let Some(request) = reply_to {
        shared.replies.lock().unwrap_or_else(|p| p.into_inner()).entry(request).or_default().push(message);
        shared.channel.release(seq);
        return;
    }
    let job = match &message {
        ServerToClient::TaskStatus(report) => Some(report.job),
        ServerToClient::JobProperties(info) => Some(info.job),
        ServerToClient::Task { job, .. } => Some(*job),
        ServerToClient::Error(report) => {
            tracing::warn!(%report, "the server reported an error");
            None
        }
        _ => None,
    };
    let delivered = job.and_then(|job| {
        let subscribers = shared.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.get(&job).map(|tx| tx.send((seq, message.clone())).is_ok())
    });
    if delivered != Some(true) {
        shared.channel.release(seq);
    }
}
