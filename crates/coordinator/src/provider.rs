//! Messages from engines (P3, P8.6 provider-to-server).

use idlegrid_protocol::messages::{
    AssignmentState, AssignmentStatus, ProviderToServer, ServerToProvider, TaskStatusReport,
};
use idlegrid_protocol::wire::limits;
use idlegrid_protocol::{ErrorCode, Payload};
use idlegrid_store::{AssignmentRowState, JobRow, StoreError, TaskRow, Tx};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementRef, FailureKind, SessionId, TaskEvent, TaskFailureInfo, TaskState, Untrusted,
};

use crate::assurance::ReplicaOutcome;
use crate::error::{Reject, report};
use crate::schedule::transition;
use crate::session::{Ctx, push};
use crate::{Coordinator, Effects, Party};

/// An engine's failure report, with a reason and at most 4096 characters of it.
fn bounded_failure(failure: Option<TaskFailureInfo>) -> TaskFailureInfo {
    let failure = failure.unwrap_or(TaskFailureInfo {
        kind: FailureKind::Engine,
        message: "the engine reported a failure without a reason".into(),
    });
    TaskFailureInfo { message: failure.message.chars().take(4096).collect(), ..failure }
}

impl Coordinator {
    /// Make `session` the engine's channel. A new session (the engine lost its state, or the
    /// old session expired) replaces the old one, and the engine is sent its active tasks again,
    /// with fresh tickets: a task is never stranded in a dead outbox.
    pub(crate) fn adopt_provider_session(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        session: SessionId,
        resend: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let previous = tx.provider(&party.id)?.and_then(|p| p.session);
        if let Some(previous) = previous.filter(|p| *p != session) {
            tx.delete_session(previous)?;
        }
        tx.set_provider_session(&party.id, Some(session))?;
        tx.touch_provider(&party.id, now_ms)?;
        if resend {
            let mut sizes = std::collections::HashMap::new();
            for assignment in tx.active_assignments_of_provider(&party.id)? {
                let Some(task) = tx.task_by_key(assignment.task)? else { continue };
                let Some(job) = tx.job(task.job)? else { continue };
                let mut message = match self.assignment_for(tx, &task, &job, &mut sizes)? {
                    Ok(message) => message,
                    Err(hash) => {
                        // An element gone meanwhile: the next placement fails the task for it.
                        self.reclaim(tx, &assignment, &format!("element {hash} is gone"), now_ms, fx)?;
                        continue;
                    }
                };
                message.assignment = assignment.id;
                message.ticket = self.ticket(&party.id, assignment.id, now_ms);
                self.market_memory_grant(tx, fx, session, &party.id, &job.client, assignment.id)?;
                let message = ServerToProvider::Task(self.sign(message));
                push(tx, fx, session, None, &message, None)?;
            }
        }
        Ok(())
    }

    pub(crate) fn handle_provider(&self, ctx: &mut Ctx<'_>, seq: u64, message: ProviderToServer) -> Result<(), Reject> {
        use ProviderToServer as M;
        match message {
            M::NodeStatus { state, slots, queue_capacity } => {
                let capacity = queue_capacity.min(self.config.engine_capacity_max);
                ctx.tx.upsert_provider(&ctx.party.id, state, slots, capacity, ctx.now)?;
                self.state_reported(ctx.tx, &ctx.party.id.clone(), state, ctx.now)?;
                if state == idlegrid_protocol::messages::NodeState::Paused {
                    self.migrate_if_busy(ctx.tx, &ctx.party.id.clone(), ctx.now, ctx.fx)?;
                }
                // A benchmark due takes the first free slot, ahead of the scheduling pass.
                self.benchmark_if_due(ctx.tx, &ctx.party.id.clone(), ctx.now, ctx.fx)?;
                Ok(())
            }
            M::NodeProfile { os, arch, cores, memory_bytes, disk_bytes, engine_version, job_requirement } => {
                // Checked before anything is kept: a requirement the scheduler could not read
                // would silently keep every job away.
                if let Some(requirement) = &job_requirement {
                    idlegrid_scheduler::terms::parse_engine_requirement(requirement).map_err(|e| {
                        crate::error::report(
                            idlegrid_protocol::messages::ErrorCode::BadRequest,
                            format!("job_requirement: {e}"),
                        )
                    })?;
                }
                // Merged into the profile: the benchmark's measurements stay (P5.1).
                self.profile_reported(
                    ctx.tx,
                    &ctx.party.id.clone(),
                    os,
                    arch,
                    cores,
                    memory_bytes,
                    disk_bytes,
                    engine_version.clone(),
                    job_requirement,
                )?;
                if let Some(offer) = self.upgrade(ctx.tx)?
                    && matches!(&offer, ServerToProvider::Upgrade { version, .. } if *version != engine_version)
                {
                    push(ctx.tx, ctx.fx, ctx.session, None, &offer, None)?;
                }
                self.greet_engine(ctx.tx, &ctx.party.id.clone(), ctx.session, ctx.fx)?;
                push(ctx.tx, ctx.fx, ctx.session, None, &ServerToProvider::GetCacheContents, None)?;
                Ok(())
            }
            M::GetConfig => {
                let settings = self.engine_config(ctx.tx)?;
                ctx.reply(seq, &ServerToProvider::Config { settings })
            }
            M::CacheContents { elements } => self.cache_reported(ctx.tx, &ctx.party.id.clone(), &elements, ctx.now),
            M::Contents { tasks, request } => self.reconcile(ctx, tasks, request),
            M::TaskStatus(status) => self.assignment_status(ctx, status),
            M::Task { assignment, checkpoint } => {
                // Answered even after the assignment ended: a client may be waiting for it.
                let (held, mut task) = self.held_assignment(ctx, assignment, false)?;
                // Kept only from a placement that still runs: a late upload of one taken back
                // must not replace the checkpoint its successor made.
                if let Some(checkpoint) = checkpoint.filter(|_| held.state == AssignmentRowState::Active) {
                    self.accept_checkpoint(ctx, &mut task, checkpoint)?;
                }
                self.answer_task_requests(ctx.tx, &task, ctx.fx)?;
                Ok(())
            }
            M::Error(report) => {
                tracing::warn!(provider = %ctx.party.id, report = %Untrusted(&report.to_string()), "engine reported an error");
                Ok(())
            }
            M::ExternalDelivery { url } => {
                Err(report(ErrorCode::Unsupported, format!("external delivery ({url}) is not supported")))
            }
            M::Heartbeat => {
                // Presence without work to report: the engine's last contact is now.
                ctx.tx.touch_provider(&ctx.party.id, ctx.now)?;
                Ok(())
            }
            M::PeripheralDone { contract, number, output, error } => {
                self.market_peripheral_done(ctx.tx, &ctx.party.id, (contract, number), output, error.as_deref())
            }
            M::MarketStored { contract, element, error } => {
                let (tx, id) = (&mut *ctx.tx, ctx.party.id.clone());
                self.market_storage_stored(tx, &id, contract, &element, error.as_deref(), ctx.now)
                    .map_err(crate::market::data::reject)
            }
            M::MarketProof { contract, number, answer } => {
                let (tx, id) = (&mut *ctx.tx, ctx.party.id.clone());
                self.market_storage_proof(tx, &id, contract, number, &answer, ctx.now, ctx.fx)
                    .map_err(crate::market::data::reject)
            }
            M::MarketRelay { address } => {
                let (tx, id) = (&mut *ctx.tx, ctx.party.id.clone());
                self.market_relay_at(tx, &id, &address).map_err(crate::market::data::reject)
            }
            M::MarketServed { contract, seq, bytes } => {
                let (tx, id) = (&mut *ctx.tx, ctx.party.id.clone());
                self.market_bytes(tx, &id, contract, seq, bytes, ctx.now).map(drop).map_err(crate::market::data::reject)
            }
        }
    }

    /// The assignment must exist and belong to this engine. With `active_only`, it must also
    /// still be active.
    fn held_assignment(
        &self,
        ctx: &mut Ctx<'_>,
        id: AssignmentId,
        active_only: bool,
    ) -> Result<(idlegrid_store::AssignmentRow, idlegrid_store::TaskRow), Reject> {
        let assignment = match ctx.tx.assignment(id)? {
            Some(a) if a.provider == ctx.party.id => a,
            _ => return Err(report(ErrorCode::Forbidden, format!("assignment {id} is not yours"))),
        };
        if active_only && assignment.state != AssignmentRowState::Active {
            return Err(report(ErrorCode::Conflict, format!("assignment {id} has ended")));
        }
        let task = ctx
            .tx
            .task_by_key(assignment.task)?
            .ok_or_else(|| report(ErrorCode::UnknownTask, format!("the task of {id} was removed")))?;
        Ok((assignment, task))
    }

    fn accept_checkpoint(
        &self,
        ctx: &mut Ctx<'_>,
        task: &mut idlegrid_store::TaskRow,
        checkpoint: ElementRef,
    ) -> Result<(), Reject> {
        match ctx.tx.element_size(&checkpoint.hash)? {
            Some(size) if size == checkpoint.size => {
                // The task's checkpoint column is the element's reference: the one it replaces
                // is released, and collected after the grace period unless something else
                // (another task, a job, an owner) still refers to the same bytes.
                ctx.tx.set_task_checkpoint(task.key, Some(&checkpoint.hash))?;
                if let Some(superseded) = task.checkpoint.replace(checkpoint.hash).filter(|old| *old != checkpoint.hash)
                {
                    ctx.tx.release_element(&superseded, ctx.now)?;
                }
                Ok(())
            }
            _ => Err(report(ErrorCode::UnknownElement, format!("checkpoint {} was not uploaded", checkpoint.hash))),
        }
    }

    fn check_payload(&self, ctx: &mut Ctx<'_>, payload: &Payload, limit: u64, what: &str) -> Result<(), Reject> {
        match payload {
            Payload::Inline(bytes) if bytes.len() > limits::INLINE_PAYLOAD_BYTES_MAX => Err(report(
                ErrorCode::LimitExceeded,
                format!(
                    "inline {what} of {} bytes; upload anything over {} bytes as an element",
                    bytes.len(),
                    limits::INLINE_PAYLOAD_BYTES_MAX
                ),
            )),
            Payload::Element(element) => match ctx.tx.element_size(&element.hash)? {
                Some(size) if size == element.size && size <= limit => Ok(()),
                Some(size) if size > limit => {
                    Err(report(ErrorCode::LimitExceeded, format!("{what} of {size} bytes exceeds the job's limit")))
                }
                _ => {
                    Err(report(ErrorCode::UnknownElement, format!("{what} element {} was not uploaded", element.hash)))
                }
            },
            Payload::Inline(bytes) if bytes.len() as u64 > limit => Err(report(
                ErrorCode::LimitExceeded,
                format!("{what} of {} bytes exceeds the job's limit", bytes.len()),
            )),
            Payload::Inline(_) => Ok(()),
        }
    }

    fn assignment_status(&self, ctx: &mut Ctx<'_>, status: AssignmentStatus) -> Result<(), Reject> {
        let id = status.assignment;
        let (assignment, mut task) = match self.held_assignment(ctx, id, false) {
            Ok(found) => found,
            Err(Reject::Report(r)) if r.code == ErrorCode::UnknownTask => {
                // The client removed the task meanwhile.
                ctx.tx.end_assignment(id, ctx.now)?;
                self.tell_provider(
                    ctx.tx,
                    &ctx.party.id.clone(),
                    &ServerToProvider::RemoveTask { assignment: id },
                    ctx.fx,
                )?;
                return Ok(());
            }
            Err(Reject::Report(r)) if r.code == ErrorCode::Forbidden => {
                // A placement the server does not know on this engine: the records disagree.
                self.ask_contents(ctx.tx, &ctx.party.id.clone(), ctx.session, ctx.now, ctx.fx)?;
                return Err(Reject::Report(r));
            }
            Err(other) => return Err(other),
        };
        if assignment.state != AssignmentRowState::Active && status.state == AssignmentState::Running {
            // The engine runs a placement the server has ended: the records disagree.
            self.ask_contents(ctx.tx, &ctx.party.id.clone(), ctx.session, ctx.now, ctx.fx)?;
        }
        if self.is_benchmark(&task) {
            return self.benchmark_status(ctx, assignment, task, status);
        }
        let Some(mut job) = ctx.tx.job(task.job)? else { return Ok(()) };
        let active = assignment.state == AssignmentRowState::Active;
        if let Some(expected) = ctx.tx.spot_check(id)? {
            return self.spot_check_status(ctx, &job, expected, status, active);
        }
        if crate::assurance::is_assured(&job)
            && matches!(status.state, AssignmentState::Succeeded | AssignmentState::Failed)
        {
            return self.replica_status(ctx, &mut task, &mut job, status, active);
        }
        match status.state {
            AssignmentState::Running => self.running_status(ctx, &mut task, &job, status, active),
            AssignmentState::Succeeded | AssignmentState::Failed => self.final_status(ctx, &mut task, &mut job, status),
            AssignmentState::Suspended | AssignmentState::Removed => {
                self.returned_status(ctx, &mut task, &mut job, status)
            }
        }
    }

    /// An interim status of a task that runs: its progress (and checkpoint) for its clients.
    fn running_status(
        &self,
        ctx: &mut Ctx<'_>,
        task: &mut TaskRow,
        job: &JobRow,
        status: AssignmentStatus,
        active: bool,
    ) -> Result<(), Reject> {
        if !active || task.state.is_final() {
            return Ok(());
        }
        if let Some(payload) = &status.status {
            self.check_payload(ctx, payload, limits::INLINE_PAYLOAD_BYTES_MAX as u64, "status")?;
        }
        let progress = if status.progress.is_finite() { status.progress.clamp(0.0, 1.0) } else { 0.0 };
        ctx.tx.set_task_progress(task.key, progress, status.status.as_ref())?;
        if let Some(checkpoint) = status.checkpoint {
            self.accept_checkpoint(ctx, task, checkpoint)?;
        }
        let report = TaskStatusReport {
            job: job.id,
            task: task.index,
            state: task.state,
            progress,
            status: status.status,
            result: None,
            failure: None,
            cpu_ms: task.cpu_ms.saturating_add(status.cpu_ms),
            attempts: task.attempts,
            counts: job.counts,
            checkpoint: None,
        };
        self.broadcast_interim(ctx.tx, &report, ctx.now, ctx.fx)?;
        ctx.tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(())
    }

    /// The final status of a task whose job takes the first result: it concludes the task, or
    /// requeues it when the engine was at fault.
    fn final_status(
        &self,
        ctx: &mut Ctx<'_>,
        task: &mut TaskRow,
        job: &mut JobRow,
        status: AssignmentStatus,
    ) -> Result<(), Reject> {
        let id = status.assignment;
        ctx.tx.end_assignment(id, ctx.now)?;
        if task.state.is_final() {
            self.journal_conclude(ctx.tx, id, None, ctx.now)?;
            return Ok(()); // the first result won already
        }
        let out_bytes = status.result.as_ref().map(|r| r.len()).unwrap_or(0);
        self.journal_conclude(ctx.tx, id, Some(out_bytes), ctx.now)?;
        let limit = job.properties.task_limits.result_bytes_max;
        if status.state == AssignmentState::Succeeded {
            let result = status.result.unwrap_or(Payload::Inline(Vec::new()));
            self.check_payload(ctx, &result, limit, "result")?;
            self.conclude(ctx.tx, task, job, TaskState::Succeeded, Some(result), None, status.cpu_ms, ctx.now, ctx.fx)?;
        } else {
            let failure = bounded_failure(status.failure);
            if failure.kind.is_deterministic() {
                self.conclude(
                    ctx.tx,
                    task,
                    job,
                    TaskState::Failed,
                    None,
                    Some(failure),
                    status.cpu_ms,
                    ctx.now,
                    ctx.fx,
                )?;
            } else {
                // Not the task's fault: another engine may succeed.
                tracing::info!(assignment = %id, reason = %Untrusted(&failure.message), "engine-side failure: task requeued");
                self.lost(ctx.tx, task, job, id, Some(&failure.message), ctx.now, ctx.fx)?;
            }
        }
        ctx.tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(())
    }

    /// A task handed back (suspended, or removed by the engine): its checkpoint is kept and it
    /// runs elsewhere.
    fn returned_status(
        &self,
        ctx: &mut Ctx<'_>,
        task: &mut TaskRow,
        job: &mut JobRow,
        status: AssignmentStatus,
    ) -> Result<(), Reject> {
        let id = status.assignment;
        if !ctx.tx.end_assignment(id, ctx.now)? {
            return Ok(());
        }
        self.journal_conclude(ctx.tx, id, None, ctx.now)?;
        if let Some(checkpoint) = status.checkpoint {
            self.accept_checkpoint(ctx, task, checkpoint)?;
        }
        ctx.tx.set_task_run(task.key, task.attempts, task.cpu_ms.saturating_add(status.cpu_ms))?;
        task.cpu_ms = task.cpu_ms.saturating_add(status.cpu_ms);
        if crate::assurance::is_assured(job) {
            // A replica handed back: its assurance decides whether another is needed.
            if !task.state.is_final() {
                self.replica_returned(ctx.tx, task, job, id, None, ctx.now, ctx.fx)?;
            }
        } else if task.state == TaskState::Running && ctx.tx.active_assignments_of_task(task.key)?.is_empty() {
            // Handed back without being asked (the engine is going away): run elsewhere.
            // This is not a loss: it does not count against attempts_max.
            transition(ctx.tx, task, job, TaskEvent::Requeue)?;
        }
        self.answer_task_requests(ctx.tx, task, ctx.fx)?;
        ctx.tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(())
    }

    /// The final status of a replica of a task whose job checks results: the result is kept
    /// until the task's assurance accepts one.
    fn replica_status(
        &self,
        ctx: &mut Ctx<'_>,
        task: &mut idlegrid_store::TaskRow,
        job: &mut idlegrid_store::JobRow,
        status: AssignmentStatus,
        active: bool,
    ) -> Result<(), Reject> {
        let id = status.assignment;
        if !active || !ctx.tx.end_assignment(id, ctx.now)? {
            return Ok(()); // lost or cancelled already: its result no longer counts
        }
        self.journal_conclude(ctx.tx, id, None, ctx.now)?;
        ctx.tx.set_task_run(task.key, task.attempts, task.cpu_ms.saturating_add(status.cpu_ms))?;
        task.cpu_ms = task.cpu_ms.saturating_add(status.cpu_ms);
        if task.state.is_final() {
            // Decided while this replica ran; its pay follows its time, as for a cancelled one.
            return self.replica_returned(ctx.tx, task, job, id, None, ctx.now, ctx.fx).map_err(Reject::from);
        }
        let outcome = if status.state == AssignmentState::Succeeded {
            let result = status.result.unwrap_or(Payload::Inline(Vec::new()));
            self.check_payload(ctx, &result, job.properties.task_limits.result_bytes_max, "result")?;
            Some(ReplicaOutcome::Succeeded { result })
        } else {
            let failure = bounded_failure(status.failure);
            if failure.kind.is_deterministic() {
                Some(ReplicaOutcome::Failed { failure })
            } else {
                tracing::info!(assignment = %id, reason = %Untrusted(&failure.message), "engine-side failure of a replica");
                None
            }
        };
        self.replica_returned(ctx.tx, task, job, id, outcome, ctx.now, ctx.fx)?;
        ctx.tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(())
    }

    /// A status of a test task: only its final answer matters, and it is judged, never
    /// delivered to anybody.
    fn spot_check_status(
        &self,
        ctx: &mut Ctx<'_>,
        job: &idlegrid_store::JobRow,
        expected: ElementHash,
        status: AssignmentStatus,
        active: bool,
    ) -> Result<(), Reject> {
        let id = status.assignment;
        let answer = match status.state {
            AssignmentState::Running => return Ok(()),
            AssignmentState::Succeeded => {
                Some(ReplicaOutcome::Succeeded { result: status.result.unwrap_or(Payload::Inline(Vec::new())) })
            }
            AssignmentState::Failed => {
                let failure = bounded_failure(status.failure);
                failure.kind.is_deterministic().then_some(ReplicaOutcome::Failed { failure })
            }
            AssignmentState::Suspended | AssignmentState::Removed => None,
        };
        if !active || !ctx.tx.end_assignment(id, ctx.now)? {
            return Ok(());
        }
        if matches!(status.state, AssignmentState::Succeeded | AssignmentState::Failed) {
            let provider = ctx.party.id.clone();
            self.spot_check_answered(ctx.tx, &provider, id, expected, answer, job, ctx.now, ctx.fx)?;
        }
        Ok(())
    }
}
