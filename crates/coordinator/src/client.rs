//! Messages from clients (P1, P8.6 client-to-server).

use std::collections::BTreeSet;

use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::messages::{
    ClientToServer, ElementInfo, Replay, ServerToClient, ServerToProvider, TaskSpec, TaskStatusReport,
};
use idlegrid_protocol::wire::limits;
use idlegrid_store::{AttachmentRow, JobRow, NewTask};
use idlegrid_types::{
    ElementHash, ElementKind, ElementRef, JobCounts, JobId, JobProperties, JobState, TaskEvent, TaskIndex, TaskState,
    Untrusted,
};

use crate::Coordinator;
use crate::error::{Reject, report};
use crate::schedule::{move_all, transition};
use crate::session::{Ctx, job_info, result_report};

/// Settings a client learns with `GetConfig`.
fn client_settings(c: &Coordinator) -> std::collections::BTreeMap<String, String> {
    [
        ("client_window_messages".to_string(), c.config.client_window_messages.to_string()),
        ("poll_wait_ms_max".to_string(), limits::POLL_WAIT_MS_MAX.to_string()),
        ("batch_messages_max".to_string(), limits::BATCH_MESSAGES_MAX.to_string()),
        ("tasks_per_message_max".to_string(), limits::TASKS_PER_MESSAGE_MAX.to_string()),
        ("element_bytes_max".to_string(), c.config.element_bytes_max.to_string()),
        ("jobs_per_client_max".to_string(), c.config.jobs_per_client_max.to_string()),
        ("tasks_per_job_max".to_string(), c.config.tasks_per_job_max.to_string()),
    ]
    .into_iter()
    .collect()
}

fn unknown_job(job: JobId) -> Reject {
    report(ErrorCode::UnknownJob, format!("job {job} does not exist (or belongs to another client)"))
}

fn unknown_task(job: JobId, task: TaskIndex) -> Reject {
    report(ErrorCode::UnknownTask, format!("job {job} has no task {task}"))
}

impl Coordinator {
    fn owned_job(&self, ctx: &mut Ctx<'_>, job: JobId) -> Result<JobRow, Reject> {
        match ctx.tx.job(job)? {
            Some(row) if row.client == ctx.party.id => Ok(row),
            _ => Err(unknown_job(job)),
        }
    }

    pub(crate) fn handle_client(&self, ctx: &mut Ctx<'_>, seq: u64, message: ClientToServer) -> Result<(), Reject> {
        use ClientToServer as M;
        match message {
            M::GetConfig => ctx.reply(seq, &ServerToClient::Config { settings: client_settings(self) }),
            M::ClientProfile { name, software_version } => {
                tracing::debug!(
                    client = %ctx.party.id,
                    name = %Untrusted(&name),
                    software_version = %Untrusted(&software_version),
                    "client profile"
                );
                self.client_profile_reported(ctx.tx, &ctx.party.id.clone(), name, software_version, ctx.now)
            }
            M::CreateJob { job, properties } => self.create_job(ctx, seq, job, properties),
            M::Task { job, tasks } => self.add_tasks(ctx, job, tasks),
            M::Launch { job } => self.launch(ctx, seq, job),
            M::Stop { job, task } => self.stop(ctx, seq, job, task),
            M::Resume { job, task } => self.resume(ctx, seq, job, task),
            M::RemoveJob { job } => self.remove_job(ctx, job),
            M::RemoveTask { job, task } => self.remove_task(ctx, job, task),
            M::ExplainJob { job, task } => {
                let row = self.owned_job(ctx, job)?;
                let explanation = self.explain_job(ctx.tx, &row, task, ctx.now)?;
                let mut message = crate::cluster::to_message(job, explanation);
                self.explain_limits(ctx.tx, &row, &mut message, ctx.now)?;
                ctx.reply(seq, &ServerToClient::Explanation(message))
            }
            M::GetJobProperties { job } => {
                let row = self.owned_job(ctx, job)?;
                ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))
            }
            M::GetContents => {
                let jobs = ctx.tx.jobs_of_client(&ctx.party.id)?.iter().map(job_info).collect();
                ctx.reply(seq, &ServerToClient::Contents { jobs })
            }
            M::GetExecutableElement { hash } | M::GetDataElement { hash } => {
                let info = self.element_info(ctx, hash)?;
                let reply = match info.kind {
                    ElementKind::Executable => ServerToClient::ExecutableElement(info),
                    ElementKind::Data => ServerToClient::DataElement(info),
                };
                ctx.reply(seq, &reply)
            }
            M::RemoveExecutableElement { hash } | M::RemoveDataElement { hash } => {
                if !ctx.tx.revoke_element(&ctx.party.id, &hash)? {
                    return Err(report(ErrorCode::UnknownElement, format!("you have no element {hash}")));
                }
                Ok(())
            }
            M::ExecutableElement { element, name } => {
                self.register_element(ctx, seq, element, ElementKind::Executable, name)
            }
            M::DataElement { element, name } => self.register_element(ctx, seq, element, ElementKind::Data, name),
            M::Attach { job, replay, task, interim } => self.attach(ctx, seq, job, replay, task, interim),
            M::Detach { job } => {
                ctx.tx.delete_attachment(ctx.session, job)?;
                ctx.tx.watches().delete_watch(ctx.session, job)?;
                Ok(())
            }
            M::GetTask { job, task } => self.get_task(ctx, seq, job, task),
            M::GetTaskStatus { job, task } => self.task_status(ctx, seq, job, task),
            M::CloseSession => {
                ctx.tx.delete_session(ctx.session)?;
                Ok(())
            }
            M::Error(report) => {
                tracing::warn!(client = %ctx.party.id, report = %Untrusted(&report.to_string()), "client reported an error");
                Ok(())
            }
            M::ExternalDelivery { job, task, url } => {
                let row = self.owned_job(ctx, job)?;
                self.external_delivery(ctx, seq, &row, task, url)
            }
            M::Heartbeat => Ok(()),
            M::Deposit { amount_micros, reference } => {
                let party = ctx.party.clone();
                let info = self
                    .request_deposit(ctx.tx, &party, amount_micros, &reference, ctx.now)
                    .map_err(|e| Reject::Report(e.report))?;
                ctx.reply(seq, &ServerToClient::MoneyRequest(info))
            }
            M::GetAccount => {
                let info = self.account_info(ctx.tx, &ctx.party.id.clone()).map_err(|e| Reject::Report(e.report))?;
                ctx.reply(seq, &ServerToClient::Account(info))
            }
            M::SetNotices { webhook_url, webhook_secret, email } => {
                let settings = crate::money::NoticeSettings { webhook_url, webhook_secret, email };
                self.set_notices(ctx.tx, &ctx.party.id.clone(), settings).map_err(|e| Reject::Report(e.report))
            }
        }
    }
}

impl Coordinator {
    /// Launch a job: its created tasks are queued and placed, once its money is reserved.
    fn launch(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId) -> Result<(), Reject> {
        let mut row = self.owned_job(ctx, job)?;
        if row.counts.total() == 0 {
            // A job completes when every task has: one without tasks would never
            // conclude, or conclude having done nothing. Almost always a mistake (an
            // empty tasks file), so say so instead of pretending it succeeded.
            return Err(report(
                ErrorCode::BadRequest,
                format!("job {job} has no tasks: add tasks (Task messages) before launching it"),
            ));
        }
        if let Err(refusal) = self.reserve_launch(ctx.tx, &row, ctx.now)? {
            return Err(report(refusal.code, format!("job {job} not launched: {}", refusal.message)));
        }
        let account =
            self.account_info(ctx.tx, &ctx.party.id).map_err(|e| report(ErrorCode::Internal, e.report.message))?;
        if account.over_limit {
            return Err(report(
                ErrorCode::LimitExceeded,
                format!(
                    "job {job} not launched: the account is over its limit ({} micro-units available); deposit first",
                    account.available_micros
                ),
            ));
        }
        move_all(ctx.tx, &mut row, &[TaskState::Created], TaskState::Queued)?;
        if matches!(row.state, JobState::Defining | JobState::Completed) {
            row.state = JobState::Running;
        }
        row.state = row.state.settle(&row.counts);
        ctx.tx.save_job_state(job, row.state, &row.counts)?;
        self.schedule(ctx.tx, ctx.now, ctx.fx)?;
        let row = self.owned_job(ctx, job)?;
        ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))
    }

    /// Remove a job: its placements are cancelled and the money held for it goes back.
    fn remove_job(&self, ctx: &mut Ctx<'_>, job: JobId) -> Result<(), Reject> {
        self.owned_job(ctx, job)?;
        for assignment in ctx.tx.active_assignments_of_job(job)? {
            self.cancel_placement(ctx.tx, assignment.id, &assignment.provider, ctx.now, ctx.fx)?;
        }
        // Money held for the job goes back (work done so far is still billed).
        idlegrid_ledger::Ledger::new(ctx.tx.ledger())
            .release_job(job, ctx.now)
            .map_err(crate::requests::ledger_refusal)?;
        ctx.tx.delete_job(job)?;
        Ok(())
    }

    /// Remove one task: its placements are cancelled and the job's counts follow.
    fn remove_task(&self, ctx: &mut Ctx<'_>, job: JobId, task: TaskIndex) -> Result<(), Reject> {
        let mut row = self.owned_job(ctx, job)?;
        let task_row = ctx.tx.task(job, task)?.ok_or_else(|| unknown_task(job, task))?;
        for assignment in ctx.tx.active_assignments_of_task(task_row.key)? {
            self.cancel_placement(ctx.tx, assignment.id, &assignment.provider, ctx.now, ctx.fx)?;
        }
        ctx.tx.delete_task(task_row.key)?;
        let count = row.counts.get_mut(task_row.state);
        *count = count.saturating_sub(1);
        let was_completed = row.state == JobState::Completed;
        row.state = row.state.settle(&row.counts);
        ctx.tx.save_job_state(job, row.state, &row.counts)?;
        if row.state == JobState::Completed && !was_completed {
            // The removed task was the last one left to run.
            ctx.tx.mark_job_completed(job, ctx.now)?;
            self.job_completed(ctx.tx, &row, ctx.now)?;
        }
        self.fill_job(ctx.tx, job, ctx.now, ctx.fx)?;
        Ok(())
    }

    /// Attach the session to a job's results, from where `replay` says.
    fn attach(
        &self,
        ctx: &mut Ctx<'_>,
        seq: u64,
        job: JobId,
        replay: Replay,
        task: Option<TaskIndex>,
        interim: Option<idlegrid_protocol::messages::InterimPattern>,
    ) -> Result<(), Reject> {
        let row = self.owned_job(ctx, job)?;
        if let Some(pattern) = &interim {
            pattern.validate().map_err(|reason| report(ErrorCode::BadRequest, reason))?;
        }
        if let Some(task) = task {
            ctx.tx.task(job, task)?.ok_or_else(|| unknown_task(job, task))?;
        }
        match crate::watches::watch_row(ctx.session, job, task, interim) {
            Some(watch) => ctx.tx.watches().set_watch(&watch)?,
            None => ctx.tx.watches().delete_watch(ctx.session, job)?,
        }
        let cursor = match replay {
            Replay::None => ctx.tx.last_result_id(job)?,
            Replay::All | Replay::Undelivered => 0,
        };
        ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))?;
        ctx.tx.upsert_attachment(&AttachmentRow {
            session: ctx.session,
            job,
            replay,
            cursor,
            completion_sent: false,
        })?;
        self.fill(ctx.tx, ctx.session, ctx.now, ctx.fx)?;
        Ok(())
    }

    /// Ask for a task's latest checkpoint: from its providers if it runs, from the store if not.
    fn get_task(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId, task: TaskIndex) -> Result<(), Reject> {
        self.owned_job(ctx, job)?;
        let row = ctx.tx.task(job, task)?.ok_or_else(|| unknown_task(job, task))?;
        let active = ctx.tx.active_assignments_of_task(row.key)?;
        ctx.tx.add_task_request(row.key, ctx.session, seq)?;
        if active.is_empty() {
            self.answer_task_requests(ctx.tx, &row, ctx.fx)?;
        } else {
            for assignment in active {
                self.tell_provider(
                    ctx.tx,
                    &assignment.provider,
                    &ServerToProvider::GetTask { assignment: assignment.id },
                    ctx.fx,
                )?;
            }
        }
        Ok(())
    }

    /// Answer a task's status (its result if it is final).
    fn task_status(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId, task: TaskIndex) -> Result<(), Reject> {
        let row = self.owned_job(ctx, job)?;
        let task_row = ctx.tx.task(job, task)?.ok_or_else(|| unknown_task(job, task))?;
        let report = if task_row.state.is_final() {
            let results = ctx.tx.results_after(job, 0, false, u32::MAX)?;
            match results.iter().find(|r| r.result.task == task_row.key) {
                Some(result) => result_report(result, &row),
                None => return Err(report(ErrorCode::Internal, "the task's result is missing")),
            }
        } else {
            let checkpoint = match &task_row.checkpoint {
                Some(hash) => ctx.tx.element_size(hash)?.map(|size| ElementRef { hash: *hash, size }),
                None => None,
            };
            TaskStatusReport {
                job,
                task,
                state: task_row.state,
                progress: task_row.progress,
                status: task_row.status.clone(),
                result: None,
                failure: None,
                cpu_ms: task_row.cpu_ms,
                attempts: task_row.attempts,
                counts: row.counts,
                checkpoint,
            }
        };
        ctx.reply(seq, &ServerToClient::TaskStatus(report))
    }
}

impl Coordinator {
    fn create_job(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId, properties: JobProperties) -> Result<(), Reject> {
        properties.validate().map_err(|reason| report(ErrorCode::BadRequest, format!("job {job}: {reason}")))?;
        idlegrid_scheduler::JobSpec::from_properties(&properties, &self.config.scheduler)
            .map_err(|reason| report(ErrorCode::BadRequest, format!("job {job}: cluster request: {reason}")))?;
        for (field, source) in [("requirement", &properties.requirement), ("rank", &properties.rank)] {
            if let Some(source) = source {
                idlegrid_scheduler::terms::parse_job_expression(source)
                    .map_err(|e| report(ErrorCode::BadRequest, format!("job {job}: {field}: {e}")))?;
            }
        }
        if let Some(validator) = &properties.validator
            && !ctx.tx.element_visible_to_client(&ctx.party.id, validator)?
        {
            return Err(report(
                ErrorCode::UnknownElement,
                format!("job {job}: validator element {validator} was not uploaded by this client"),
            ));
        }
        let row = JobRow {
            id: job,
            client: ctx.party.id.clone(),
            properties,
            state: JobState::Defining,
            counts: JobCounts::default(),
            created_ms: ctx.now,
            hold: None,
        };
        let existing = ctx.tx.job(job)?;
        if existing.is_none() && ctx.tx.jobs_of_client(&ctx.party.id)?.len() >= self.config.jobs_per_client_max as usize
        {
            return Err(report(
                ErrorCode::LimitExceeded,
                format!(
                    "job {job}: a client may have at most {} jobs; remove finished ones first",
                    self.config.jobs_per_client_max
                ),
            ));
        }
        if !ctx.tx.insert_job(&row)? {
            // Creating the same job twice (a client retrying after losing its session) is fine.
            match ctx.tx.job(job)? {
                Some(existing) if existing.client == ctx.party.id && existing.properties == row.properties => {}
                _ => {
                    return Err(report(ErrorCode::Conflict, format!("job {job} exists already with other properties")));
                }
            }
        }
        if let Some(validator) = &row.properties.validator {
            // Kept as long as the job: results are compared with it until the last one.
            ctx.tx.add_job_elements(job, &[*validator])?;
        }
        let row = self.owned_job(ctx, job)?;
        ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))
    }

    /// Validate a batch of task definitions and add them; a launched job runs them at once.
    fn add_tasks(&self, ctx: &mut Ctx<'_>, job: JobId, tasks: Vec<TaskSpec>) -> Result<(), Reject> {
        let mut row = self.owned_job(ctx, job)?;
        if tasks.len() > limits::TASKS_PER_MESSAGE_MAX {
            return Err(report(
                ErrorCode::LimitExceeded,
                format!("{} tasks in one message; at most {} allowed", tasks.len(), limits::TASKS_PER_MESSAGE_MAX),
            ));
        }
        if row.counts.total() + tasks.len() as u64 > self.config.tasks_per_job_max {
            return Err(report(
                ErrorCode::LimitExceeded,
                format!(
                    "job {job} holds {} tasks; {} more would pass the limit of {} tasks per job",
                    row.counts.total(),
                    tasks.len(),
                    self.config.tasks_per_job_max
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut checked: std::collections::HashMap<ElementHash, ElementKind> = std::collections::HashMap::new();
        let mut new_tasks = Vec::with_capacity(tasks.len());
        for spec in tasks {
            let task = spec.index;
            if !seen.insert(task) {
                return Err(report(ErrorCode::Conflict, format!("task {task} appears twice in the message")));
            }
            if task > i64::MAX as u64 {
                // The stores keep 64-bit signed integers.
                return Err(report(ErrorCode::BadRequest, format!("task index {task} is more than {}", i64::MAX)));
            }
            if spec.params.len() > limits::TASK_PARAMS_BYTES_MAX {
                return Err(report(
                    ErrorCode::LimitExceeded,
                    format!(
                        "task {task}: parameters of {} bytes; at most {} allowed",
                        spec.params.len(),
                        limits::TASK_PARAMS_BYTES_MAX
                    ),
                ));
            }
            if spec.data.len() > limits::TASK_ELEMENTS_MAX {
                return Err(report(
                    ErrorCode::LimitExceeded,
                    format!("task {task}: at most {} data elements", limits::TASK_ELEMENTS_MAX),
                ));
            }
            if let Some(priority) = spec.priority
                && priority.abs() > idlegrid_types::limits::PRIORITY_ABS_MAX
            {
                return Err(report(ErrorCode::BadRequest, format!("task {task}: priority {priority} is out of range")));
            }
            for name in spec.data.keys() {
                if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                    return Err(report(
                        ErrorCode::BadRequest,
                        format!("task {task}: invalid data element name {name:?}"),
                    ));
                }
            }
            let uses = std::iter::once((&spec.executable, ElementKind::Executable, "executable".to_string())).chain(
                spec.data.iter().map(|(name, hash)| (hash, ElementKind::Data, format!("data element '{name}'"))),
            );
            for (hash, wanted, role) in uses {
                let kind = match checked.get(hash) {
                    Some(kind) => *kind,
                    None => {
                        let grant = ctx.tx.element_grant(&ctx.party.id, hash)?.ok_or_else(|| {
                            report(
                                ErrorCode::UnknownElement,
                                format!("task {task}: the {role} {hash} was not uploaded (PUT /v1/elements/{hash})"),
                            )
                        })?;
                        checked.insert(*hash, grant.kind);
                        grant.kind
                    }
                };
                if wanted == ElementKind::Executable && kind != ElementKind::Executable {
                    return Err(report(
                        ErrorCode::BadRequest,
                        format!("task {task}: element {hash} was uploaded as data, not as an executable"),
                    ));
                }
            }
            new_tasks.push(NewTask {
                index: spec.index,
                priority: spec.priority.unwrap_or(row.properties.priority),
                executable: spec.executable,
                data: spec.data,
                params: spec.params,
                trace: ctx.trace.map(|t| t.to_string()),
            });
        }
        ctx.tx.insert_tasks(job, &new_tasks).map_err(|e| match e {
            idlegrid_store::StoreError::Conflict(message) => report(ErrorCode::Conflict, message),
            other => Reject::Store(other),
        })?;
        let hashes: Vec<ElementHash> = checked.into_keys().collect();
        ctx.tx.add_job_elements(job, &hashes)?;
        row.counts.created += new_tasks.len() as u64;
        if matches!(row.state, JobState::Running | JobState::Completed) {
            move_all(ctx.tx, &mut row, &[TaskState::Created], TaskState::Queued)?;
        }
        row.state = row.state.settle(&row.counts);
        ctx.tx.save_job_state(job, row.state, &row.counts)?;
        if row.counts.queued > 0 {
            self.schedule(ctx.tx, ctx.now, ctx.fx)?;
        }
        Ok(())
    }

    fn stop(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId, task: Option<TaskIndex>) -> Result<(), Reject> {
        let mut row = self.owned_job(ctx, job)?;
        let tasks = match task {
            Some(index) => vec![ctx.tx.task(job, index)?.ok_or_else(|| unknown_task(job, index))?],
            None => {
                // Queued tasks stop in bulk; running ones one by one, as their engines are told.
                move_all(ctx.tx, &mut row, &[TaskState::Queued], TaskState::Stopped)?;
                if row.state == JobState::Running {
                    row.state = JobState::Stopped;
                }
                let mut running = Vec::new();
                for assignment in ctx.tx.active_assignments_of_job(job)? {
                    if let Some(t) = ctx.tx.task_by_key(assignment.task)? {
                        running.push(t);
                    }
                }
                running
            }
        };
        for mut t in tasks {
            if transition(ctx.tx, &mut t, &mut row, TaskEvent::Stop)?.is_some() {
                for assignment in ctx.tx.active_assignments_of_task(t.key)? {
                    self.journal_cancel(ctx.tx, assignment.id, ctx.now)?;
                    self.tell_provider(
                        ctx.tx,
                        &assignment.provider,
                        &ServerToProvider::Stop { assignment: assignment.id },
                        ctx.fx,
                    )?;
                }
            }
        }
        ctx.tx.save_job_state(job, row.state, &row.counts)?;
        ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))
    }

    fn resume(&self, ctx: &mut Ctx<'_>, seq: u64, job: JobId, task: Option<TaskIndex>) -> Result<(), Reject> {
        let mut row = self.owned_job(ctx, job)?;
        match task {
            Some(index) => {
                let mut t = ctx.tx.task(job, index)?.ok_or_else(|| unknown_task(job, index))?;
                if t.state == TaskState::Stopped && !ctx.tx.active_assignments_of_task(t.key)?.is_empty() {
                    // Still on its engine, which has not handed it back yet: let it run on.
                    ctx.tx.set_task_state(t.key, TaskState::Running)?;
                    row.counts.shift(TaskState::Stopped, TaskState::Running);
                } else {
                    transition(ctx.tx, &mut t, &mut row, TaskEvent::Resume)?;
                }
            }
            None => {
                move_all(ctx.tx, &mut row, &[TaskState::Stopped], TaskState::Queued)?;
                if row.state == JobState::Stopped {
                    row.state = JobState::Running;
                }
            }
        }
        row.state = row.state.settle(&row.counts);
        ctx.tx.save_job_state(job, row.state, &row.counts)?;
        self.schedule(ctx.tx, ctx.now, ctx.fx)?;
        let row = self.owned_job(ctx, job)?;
        ctx.reply(seq, &ServerToClient::JobProperties(job_info(&row)))
    }

    fn element_info(&self, ctx: &mut Ctx<'_>, hash: ElementHash) -> Result<ElementInfo, Reject> {
        let grant = ctx
            .tx
            .element_grant(&ctx.party.id, &hash)?
            .ok_or_else(|| report(ErrorCode::UnknownElement, format!("you have no element {hash}")))?;
        Ok(ElementInfo {
            element: idlegrid_types::ElementRef { hash, size: grant.size },
            kind: grant.kind,
            name: grant.name,
        })
    }

    fn register_element(
        &self,
        ctx: &mut Ctx<'_>,
        seq: u64,
        element: idlegrid_types::ElementRef,
        kind: ElementKind,
        name: String,
    ) -> Result<(), Reject> {
        let hash = element.hash;
        let size = ctx.tx.element_size(&hash)?.ok_or_else(|| {
            report(
                ErrorCode::UnknownElement,
                format!("element {hash} was not uploaded: PUT its bytes to /v1/elements/{hash} first"),
            )
        })?;
        if size != element.size {
            return Err(report(
                ErrorCode::BadRequest,
                format!("element {hash} has {size} bytes, not {}", element.size),
            ));
        }
        if !ctx.tx.element_visible_to_client(&ctx.party.id, &hash)? {
            return Err(report(ErrorCode::UnknownElement, format!("element {hash} was not uploaded by you")));
        }
        if name.len() > 256 {
            return Err(report(ErrorCode::BadRequest, "element names are at most 256 bytes"));
        }
        ctx.tx.grant_element(&ctx.party.id, &hash, kind, &name, ctx.now)?;
        let info = self.element_info(ctx, hash)?;
        let reply = match kind {
            ElementKind::Executable => ServerToClient::ExecutableElement(info),
            ElementKind::Data => ServerToClient::DataElement(info),
        };
        ctx.reply(seq, &reply)
    }
}
