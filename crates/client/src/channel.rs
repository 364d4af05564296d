//! One session's reliable message channel, from the party's side (P8.3-P8.5).
//!
//! Sending: messages get consecutive sequence numbers under a lock, so they reach the server in
//! order; a batch is retransmitted with the same numbers until the server acknowledges it, and
//! the server skips numbers it has processed, so nothing is processed twice.
//!
//! Receiving: a poll asks for messages after the last one received and acknowledges those up to
//! the last one *released* (processed) by the application, so a crash before processing makes
//! the server send them again. Messages already received are dropped if they come twice.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use idlegrid_protocol::ChannelMessage;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::wire::{Envelope, OpenSessionRequest, PollReply, PostBatch, PostReply, SessionInfo, limits};
use idlegrid_types::SessionId;
use reqwest::Method;
use tokio::sync::watch;

use crate::{ClientError, Transport};

#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// How long the server may hold a poll open when it has nothing to send.
    pub poll_wait: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Messages per POST.
    pub batch_messages_max: usize,
    /// Give up sending after failing for this long (`None`: keep trying; engines and clients
    /// ride out a server restart).
    pub send_give_up_after: Option<Duration>,
    /// Give up the first contact (registration, opening the session) after this long.
    pub connect_give_up_after: Option<Duration>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            poll_wait: Duration::from_secs(25),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            batch_messages_max: 100,
            send_give_up_after: None,
            connect_give_up_after: Some(Duration::from_secs(30)),
        }
    }
}

/// A message from the server with its place in the channel.
#[derive(Debug, Clone)]
pub struct Received<M> {
    pub seq: u64,
    pub reply_to: Option<u64>,
    pub message: M,
}

struct RecvState {
    /// Highest sequence number received.
    received: u64,
    /// Received but not yet released by the application.
    unreleased: BTreeSet<u64>,
    /// Acknowledgement position last sent to the server.
    acked_sent: u64,
}

pub struct Channel<Out, In> {
    transport: Transport,
    config: ChannelConfig,
    session: SessionId,
    next_seq: tokio::sync::Mutex<u64>,
    recv: Mutex<RecvState>,
    received_tx: watch::Sender<u64>,
    _messages: PhantomData<fn(Out) -> In>,
}

impl<Out: ChannelMessage, In: ChannelMessage> Channel<Out, In> {
    /// Open a session (or resume `resume` if the server still has it).
    pub async fn open(
        transport: Transport,
        config: ChannelConfig,
        resume: Option<SessionId>,
    ) -> Result<(Self, SessionInfo), ClientError> {
        let request = OpenSessionRequest { resume };
        let connecting = ChannelConfig { send_give_up_after: config.connect_give_up_after, ..config.clone() };
        let info: SessionInfo = retry(&connecting, || {
            transport.call(Method::POST, "/v1/sessions", Some(&request), Duration::from_secs(60))
        })
        .await?;
        Ok((Self::from_info(transport, config, &info), info))
    }

    fn from_info(transport: Transport, config: ChannelConfig, info: &SessionInfo) -> Self {
        let (received_tx, _) = watch::channel(info.outbound_acked);
        Channel {
            transport,
            config,
            session: info.session,
            next_seq: tokio::sync::Mutex::new(info.inbound_acked + 1),
            recv: Mutex::new(RecvState {
                received: info.outbound_acked,
                unreleased: BTreeSet::new(),
                acked_sent: info.outbound_acked,
            }),
            received_tx,
            _messages: PhantomData,
        }
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Send messages in order; returns the sequence number of the first and the server's answer
    /// to the last batch (whose `outbound_head` bounds every reply to these messages).
    pub async fn send(&self, messages: Vec<Out>) -> Result<(u64, PostReply), ClientError> {
        let mut next_seq = self.next_seq.lock().await;
        let first = *next_seq;
        let mut last_reply = None;
        let mut pending = messages.into_iter().peekable();
        while pending.peek().is_some() {
            let batch: Vec<Envelope<Out>> = pending
                .by_ref()
                .take(self.config.batch_messages_max.clamp(1, limits::BATCH_MESSAGES_MAX))
                .map(|message| {
                    let envelope = Envelope { seq: *next_seq, reply_to: None, message };
                    *next_seq += 1;
                    envelope
                })
                .collect();
            let last_seq = batch.last().map(|e| e.seq).unwrap_or(0);
            let body = PostBatch { ack: None, messages: batch };
            let path = format!("/v1/sessions/{}/messages", self.session);
            let reply: PostReply =
                retry(&self.config, || self.transport.call(Method::POST, &path, Some(&body), Duration::from_secs(120)))
                    .await?;
            if reply.inbound_acked < last_seq {
                return Err(ClientError::Protocol(format!(
                    "the server processed messages up to {} of {last_seq}: the session is out of sync, open a new one",
                    reply.inbound_acked
                )));
            }
            last_reply = Some(reply);
        }
        let reply = match last_reply {
            Some(reply) => reply,
            None => PostReply { inbound_acked: first - 1, outbound_head: self.received() },
        };
        Ok((first, reply))
    }

    /// The acknowledgement position: every message up to it was released.
    pub fn ack_position(&self) -> u64 {
        let recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        match recv.unreleased.first() {
            Some(first) => first - 1,
            None => recv.received,
        }
    }

    /// How far the acknowledgement position is ahead of what the server was last told.
    pub fn unsent_acks(&self) -> u64 {
        let ack = self.ack_position();
        let recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        ack.saturating_sub(recv.acked_sent)
    }

    pub fn received(&self) -> u64 {
        self.recv.lock().unwrap_or_else(|p| p.into_inner()).received
    }

    /// Sequence number up to which messages have been dispatched.
    pub fn dispatched_position(&self) -> u64 {
        *self.received_tx.borrow()
    }

    /// Wait until every message up to `seq` has been received and dispatched.
    pub async fn wait_received(&self, seq: u64) {
        let mut rx = self.received_tx.subscribe();
        let _ = rx.wait_for(|received| *received >= seq).await;
    }

    /// The application is done with message `seq`.
    pub fn release(&self, seq: u64) {
        self.recv.lock().unwrap_or_else(|p| p.into_inner()).unreleased.remove(&seq);
    }

    /// The application is done with every message up to `seq`.
    pub fn release_up_to(&self, seq: u64) {
        let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        let rest = recv.unreleased.split_off(&(seq + 1));
        recv.unreleased = rest;
    }

    /// One poll: acknowledge released messages, fetch new ones (waiting up to `wait`). Every
    /// returned message must be [`release`](Self::release)d once processed.
    pub async fn poll(&self, wait: Duration) -> Result<Vec<Received<In>>, ClientError> {
        let (after, ack) = {
            let recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
            let ack = recv.unreleased.first().map(|f| f - 1).unwrap_or(recv.received);
            (recv.received, ack)
        };
        let wait_ms = wait.as_millis().min(limits::POLL_WAIT_MS_MAX as u128) as u64;
        let path = format!("/v1/sessions/{}/messages?after={after}&ack={ack}&wait_ms={wait_ms}", self.session);
        let reply: PollReply<In> =
            self.transport.call::<(), _>(Method::GET, &path, None, wait + Duration::from_secs(30)).await?;
        let mut fresh = Vec::with_capacity(reply.messages.len());
        {
            let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
            recv.acked_sent = recv.acked_sent.max(ack);
            for envelope in reply.messages {
                if envelope.seq <= recv.received {
                    continue; // received before: a repeat
                }
                recv.received = envelope.seq;
                recv.unreleased.insert(envelope.seq);
                fresh.push(Received { seq: envelope.seq, reply_to: envelope.reply_to, message: envelope.message });
            }
        }
        Ok(fresh)
    }

    /// The party has handled (dispatched) every message up to `seq`: wake those waiting in
    /// [`wait_received`](Self::wait_received). Called after dispatch, so that a waiter finds
    /// the replies it waits for.
    pub fn dispatched(&self, seq: u64) {
        self.received_tx.send_if_modified(|current| {
            let advanced = seq > *current;
            if advanced {
                *current = seq;
            }
            advanced
        });
    }

    /// Tell the server the current acknowledgement position without waiting for messages.
    pub async fn flush_acks(&self) -> Result<(), ClientError> {
        if self.unsent_acks() == 0 {
            return Ok(());
        }
        let (after, ack) = (self.received(), self.ack_position());
        let path = format!("/v1/sessions/{}/messages?after={after}&ack={ack}&wait_ms=0&max=1", self.session);
        // Messages in the answer are ignored here: they come again on the next poll. The call
        // only states positions, so a connection lost once is tried once more; a server that is
        // gone is reported at once, so that the caller can turn to another instance.
        let call = || self.transport.call::<(), _>(Method::GET, &path, None, Duration::from_secs(30));
        let _: PollReply<serde_json::Value> = match call().await {
            Err(error) if error.is_transient() => call().await?,
            answer => answer?,
        };
        let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        recv.acked_sent = recv.acked_sent.max(ack);
        Ok(())
    }

    /// Re-synchronise with the server after losing track of positions (P8.5): adopt the
    /// server's view of both, forget what was received but not released (the server sends it
    /// again), and continue numbering after the last message the server processed.
    pub async fn reset(&self) -> Result<SessionInfo, ClientError> {
        let mut next_seq = self.next_seq.lock().await;
        let path = format!("/v1/sessions/{}/reset", self.session);
        let info: SessionInfo =
            retry(&self.config, || self.transport.call::<(), _>(Method::POST, &path, None, Duration::from_secs(60)))
                .await?;
        *next_seq = info.inbound_acked + 1;
        let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        recv.received = info.outbound_acked;
        recv.acked_sent = info.outbound_acked;
        recv.unreleased.clear();
        self.received_tx.send_replace(info.outbound_acked);
        Ok(info)
    }

    /// Close the session on the server.
    pub async fn close(&self) -> Result<(), ClientError> {
        let _ = self.flush_acks().await;
        self.transport
            .call_empty(Method::DELETE, &format!("/v1/sessions/{}", self.session), Duration::from_secs(10))
            .await
    }
}

/// Run a request, retrying transient failures with exponential back-off (P8.4).
pub(crate) async fn retry<T, F, Fut>(config: &ChannelConfig, mut attempt: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    let mut problems = crate::ProblemLog::default();
    let started = tokio::time::Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                if let Some(limit) = config.send_give_up_after
                    && started.elapsed() > limit
                {
                    return Err(error);
                }
                let delay = backoff.next_delay(rand::random::<f64>());
                // Said once per kind of problem: a retry loop must not flood the log.
                if problems.is_news(&error) {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "server unavailable; retrying");
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}
