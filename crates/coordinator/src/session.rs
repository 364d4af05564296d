//! Sessions and the reliable message channel (P8.3-P8.5): sequence numbers in, outboxes out,
//! acknowledgements, resumption, reset, and the flow of results into client outboxes.

use idlegrid_protocol::messages::{
    ClientToServer, JobInfo, ProviderToServer, Replay, ServerToClient, TaskStatusReport,
};
use idlegrid_protocol::wire::{PostBatch, PostReply, SessionInfo};
use idlegrid_protocol::{ChannelMessage, ErrorCode, TraceParent};
use idlegrid_store::{JobRow, OutboxRow, ResultRow, SessionRow, StoreError, Tx};
use idlegrid_types::{Role, SessionId};
use serde::Serialize;

use crate::error::Reject;
use crate::{Coordinator, CoordinatorError, Effects, ErrorKind, Party};

/// Everything a message handler works with.
pub(crate) struct Ctx<'a> {
    pub tx: &'a mut dyn Tx,
    pub now: u64,
    pub fx: &'a mut Effects,
    pub party: &'a Party,
    pub session: SessionId,
    /// The trace of the request that carried the batch, when it is traced: tasks it adds join it.
    pub trace: Option<&'a TraceParent>,
}

pub(crate) fn encode<M: Serialize>(message: &M) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}

impl Ctx<'_> {
    /// Put a message in this session's outbox, as the answer to the party's message `seq`.
    pub fn reply<M: Serialize>(&mut self, seq: u64, message: &M) -> Result<(), Reject> {
        push(self.tx, self.fx, self.session, Some(seq), message, None)?;
        Ok(())
    }
}

/// Put a message in any session's outbox and wake that session's poll.
pub(crate) fn push<M: Serialize>(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    session: SessionId,
    reply_to: Option<u64>,
    message: &M,
    result: Option<i64>,
) -> Result<u64, idlegrid_store::StoreError> {
    let seq = tx.push_outbox(session, reply_to, &encode(message), result)?;
    fx.wake.insert(session);
    Ok(seq)
}

pub(crate) fn job_info(job: &JobRow) -> JobInfo {
    JobInfo {
        job: job.id,
        properties: job.properties.clone(),
        state: job.state,
        counts: job.counts,
        created_unix_ms: job.created_ms,
    }
}

pub(crate) fn result_report(result: &ResultRow, job: &JobRow) -> TaskStatusReport {
    let r = &result.result;
    TaskStatusReport {
        job: r.job,
        task: r.index,
        state: r.state,
        progress: if r.state == idlegrid_types::TaskState::Succeeded { 1.0 } else { 0.0 },
        status: None,
        result: r.result.clone(),
        failure: r.failure.clone(),
        cpu_ms: r.cpu_ms,
        attempts: r.attempts,
        counts: job.counts,
        checkpoint: None,
    }
}

impl Coordinator {
    fn owned_session(&self, tx: &mut dyn Tx, party: &Party, id: SessionId) -> Result<SessionRow, CoordinatorError> {
        match tx.session(id)? {
            Some(owned) if owned.party == party.id => Ok(owned.session),
            _ => Err(CoordinatorError::unknown_session(format!(
                "session {id} does not exist (it may have expired): open a new one"
            ))),
        }
    }

    fn info(session: &SessionRow) -> SessionInfo {
        SessionInfo {
            session: session.id,
            inbound_acked: session.inbound_acked,
            outbound_acked: session.outbound_acked,
            outbound_head: session.outbound_head,
        }
    }

    /// Open a new session, or resume one that exists (after a reconnect or a restart).
    pub fn open_session(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        resume: Option<SessionId>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<SessionInfo, CoordinatorError> {
        let session = match resume {
            Some(id) => {
                let session = self.owned_session(tx, party, id)?;
                tx.touch_session(id, now_ms)?;
                session
            }
            None => {
                let session = SessionRow {
                    id: SessionId::random(),
                    inbound_acked: 0,
                    outbound_head: 0,
                    outbound_acked: 0,
                    last_seen_ms: now_ms,
                };
                tx.insert_session(&party.id, &session)?;
                session
            }
        };
        if party.role == Role::Provider {
            self.adopt_provider_session(tx, party, session.id, resume.is_none(), now_ms, fx)?;
        }
        let session = self.owned_session(tx, party, session.id)?;
        Ok(Self::info(&session))
    }

    /// Re-synchronise a session whose party lost track of the sequence numbers (P8.5): report
    /// both positions; an engine is sent its active tasks again.
    pub fn reset_session(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: SessionId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<SessionInfo, CoordinatorError> {
        self.owned_session(tx, party, id)?;
        tx.touch_session(id, now_ms)?;
        if party.role == Role::Provider {
            self.adopt_provider_session(tx, party, id, true, now_ms, fx)?;
        }
        Ok(Self::info(&self.owned_session(tx, party, id)?))
    }

    pub fn close_session(&self, tx: &mut dyn Tx, party: &Party, id: SessionId) -> Result<(), CoordinatorError> {
        self.owned_session(tx, party, id)?;
        tx.delete_session(id)?;
        Ok(())
    }

    /// Process a batch from a client.
    pub fn post_client(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: SessionId,
        batch: PostBatch<ClientToServer>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<PostReply, CoordinatorError> {
        self.post_client_traced(tx, party, session, batch, None, now_ms, fx)
    }

    /// Process a batch from a client that came in a traced request: the tasks it adds keep
    /// `trace`, and their assignments carry it to the engines.
    #[allow(clippy::too_many_arguments)]
    pub fn post_client_traced(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: SessionId,
        batch: PostBatch<ClientToServer>,
        trace: Option<&TraceParent>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<PostReply, CoordinatorError> {
        if party.role != Role::Client {
            return Err(CoordinatorError::forbidden("only clients send client messages"));
        }
        self.post(tx, party, session, batch, trace, now_ms, fx, |c, ctx, seq, m| c.handle_client(ctx, seq, m))
    }

    /// Process a batch from an engine.
    pub fn post_provider(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: SessionId,
        batch: PostBatch<ProviderToServer>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<PostReply, CoordinatorError> {
        if party.role != Role::Provider {
            return Err(CoordinatorError::forbidden("only engines send provider messages"));
        }
        self.engine_contact(tx, party, session, now_ms, fx)?;
        let reply =
            self.post(tx, party, session, batch, None, now_ms, fx, |c, ctx, seq, m| c.handle_provider(ctx, seq, m))?;
        // Whatever the engine said may have freed room or changed what it wants.
        self.schedule(tx, now_ms, fx)?;
        Ok(reply)
    }

    /// An engine's request: it is in contact now; coming back from a silence, or due for an
    /// audit, it is asked what it holds (`contents`).
    fn engine_contact(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: SessionId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let previous = tx.provider(&party.id)?.map(|row| row.last_contact_ms);
        tx.touch_provider(&party.id, now_ms)?;
        self.contents_on_contact(tx, &party.id, session, previous, now_ms, fx)
    }

    #[allow(clippy::too_many_arguments)]
    fn post<M: ChannelMessage>(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session_id: SessionId,
        batch: PostBatch<M>,
        trace: Option<&TraceParent>,
        now_ms: u64,
        fx: &mut Effects,
        mut handle: impl FnMut(&Self, &mut Ctx<'_>, u64, M) -> Result<(), Reject>,
    ) -> Result<PostReply, CoordinatorError> {
        let session = self.owned_session(tx, party, session_id)?;
        if let Some(ack) = batch.ack {
            self.acknowledge(tx, party, &session, ack, now_ms, fx)?;
        }
        let mut acked = session.inbound_acked;
        for envelope in batch.messages {
            if envelope.seq <= acked {
                continue; // a retransmission of a message already processed
            }
            if envelope.seq != acked + 1 {
                break; // a gap: the missing message must come first; the sender will resend
            }
            let name = envelope.message.name();
            let mut ctx = Ctx { tx: &mut *tx, now: now_ms, fx: &mut *fx, party, session: session_id, trace };
            match handle(self, &mut ctx, envelope.seq, envelope.message) {
                Ok(()) => {}
                Err(Reject::Report(report)) => {
                    tracing::debug!(party = %party.id, message = name, %report, "message refused");
                    let error = match party.role {
                        Role::Client => encode(&ServerToClient::Error(report)),
                        Role::Provider | Role::Operator => {
                            encode(&idlegrid_protocol::messages::ServerToProvider::Error(report))
                        }
                    };
                    tx.push_outbox(session_id, Some(envelope.seq), &error, None)?;
                    fx.wake.insert(session_id);
                }
                Err(Reject::Store(error)) => return Err(error.into()),
            }
            acked = envelope.seq;
        }
        // The session may have been closed by the batch (CloseSession).
        match tx.session(session_id)? {
            None => Ok(PostReply { inbound_acked: acked, outbound_head: 0 }),
            Some(owned) => {
                tx.set_session_inbound(session_id, acked, now_ms)?;
                Ok(PostReply { inbound_acked: acked, outbound_head: owned.session.outbound_head })
            }
        }
    }

    fn acknowledge(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: &SessionRow,
        upto: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), CoordinatorError> {
        if upto > session.outbound_head {
            return Err(CoordinatorError::new(
                ErrorKind::Conflict,
                ErrorCode::Conflict,
                format!(
                    "acknowledged message {upto} but the server sent only {}: the session is out of sync, reset it",
                    session.outbound_head
                ),
            ));
        }
        if upto > session.outbound_acked {
            let delivered = tx.ack_outbox(session.id, upto)?;
            if !delivered.is_empty() {
                tx.mark_delivered(&delivered)?;
            }
        }
        if party.role == Role::Client {
            self.fill(tx, session.id, now_ms, fx)?;
        }
        Ok(())
    }

    /// Acknowledge messages up to `ack` and return those after `after` (at most `max`). The
    /// shell waits and calls again when nothing is ready (long poll).
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session_id: SessionId,
        after: u64,
        ack: u64,
        max: u32,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<Vec<OutboxRow>, CoordinatorError> {
        let session = self.owned_session(tx, party, session_id)?;
        if after > session.outbound_head {
            return Err(CoordinatorError::new(
                ErrorKind::Conflict,
                ErrorCode::Conflict,
                format!(
                    "asked for messages after {after} but the server sent only {}: reset the session",
                    session.outbound_head
                ),
            ));
        }
        self.acknowledge(tx, party, &session, ack.min(after), now_ms, fx)?;
        tx.touch_session(session_id, now_ms)?;
        if party.role == Role::Provider {
            self.engine_contact(tx, party, session_id, now_ms, fx)?;
        }
        Ok(tx.outbox_after(session_id, after, max)?)
    }

    /// Move final results of attached jobs into a client session's outbox, up to the window,
    /// and announce a job's completion once all its results are in.
    pub(crate) fn fill(
        &self,
        tx: &mut dyn Tx,
        session_id: SessionId,
        _now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), idlegrid_store::StoreError> {
        let Some(owned) = tx.session(session_id)? else { return Ok(()) };
        let mut in_flight = owned.session.outbound_head.saturating_sub(owned.session.outbound_acked);
        for mut attachment in tx.attachments_of_session(session_id)? {
            let room = self.config.client_window_messages.saturating_sub(in_flight);
            if room == 0 {
                break;
            }
            let Some(job) = tx.job(attachment.job)? else {
                tx.delete_attachment(session_id, attachment.job)?;
                continue;
            };
            let page =
                tx.results_after(job.id, attachment.cursor, attachment.replay == Replay::Undelivered, room as u32)?;
            let drained = (page.len() as u64) < room;
            let only = crate::watches::only_task(tx, session_id, job.id)?;
            for result in &page {
                if only.is_some_and(|task| task != result.result.index) {
                    attachment.cursor = result.id; // another task's: not for this session
                    continue;
                }
                push(
                    tx,
                    fx,
                    session_id,
                    None,
                    &ServerToClient::TaskStatus(result_report(result, &job)),
                    Some(result.id),
                )?;
                attachment.cursor = result.id;
                in_flight += 1;
            }
            if drained && !attachment.completion_sent && job.state == idlegrid_types::JobState::Completed {
                push(tx, fx, session_id, None, &ServerToClient::JobProperties(job_info(&job)), None)?;
                attachment.completion_sent = true;
                in_flight += 1;
            }
            tx.upsert_attachment(&attachment)?;
        }
        Ok(())
    }

    /// Fill every session attached to a job (after new results, or its completion).
    pub(crate) fn fill_job(
        &self,
        tx: &mut dyn Tx,
        job: idlegrid_types::JobId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), idlegrid_store::StoreError> {
        for attachment in tx.attachments_of_job(job)? {
            self.fill(tx, attachment.session, now_ms, fx)?;
        }
        Ok(())
    }

    /// Send an interim status to the sessions attached to a job, where their window has room:
    /// interim statuses are lossy by design, the latest is kept on the task.
    pub(crate) fn broadcast_interim(
        &self,
        tx: &mut dyn Tx,
        report: &TaskStatusReport,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), idlegrid_store::StoreError> {
        for attachment in tx.attachments_of_job(report.job)? {
            let Some(owned) = tx.session(attachment.session)? else { continue };
            let in_flight = owned.session.outbound_head.saturating_sub(owned.session.outbound_acked);
            if in_flight < self.config.client_window_messages
                && crate::watches::take_interim(tx, attachment.session, report, now_ms)?
            {
                push(tx, fx, attachment.session, None, &ServerToClient::TaskStatus(report.clone()), None)?;
            }
        }
        Ok(())
    }
}
