//! Task lifecycle on the server: placing queued tasks on engines, concluding them, taking them
//! back from engines that fell silent, and collecting garbage.

use std::collections::HashMap;

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{Assignment, ServerToClient, ServerToProvider};
use idlegrid_scheduler::{AfterLoss, ReplicaDemand, after_loss, terms};
use idlegrid_store::{JobRow, NewResult, ProviderRoom, StoreError, TaskKey, TaskRow, Tx};
use idlegrid_types::{ElementHash, ElementRef, FailureKind, JobId, PartyId, TaskEvent, TaskFailureInfo, TaskState};

use crate::assurance;
use crate::cluster::ClusterWork;
use crate::pass;
use crate::session::push;
use crate::{Coordinator, Effects};

/// Known answers a pass chooses spot checks from.
const SPOT_CHECK_CHOICES: u32 = 64;

/// What a periodic maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub assignments_reclaimed: u32,
    pub sessions_expired: u32,
    pub elements_deleted: u32,
    pub tasks_assigned: u32,
    pub transfers_billed: u32,
    pub results_archived: u32,
    pub results_purged: u32,
    pub negotiations_closed: u32,
}

/// Why a task fails when the server no longer holds one of its elements.
pub(crate) fn element_gone(hash: &ElementHash) -> TaskFailureInfo {
    TaskFailureInfo {
        kind: FailureKind::ElementUnavailable,
        message: format!("element {hash} of this task is no longer stored on the server"),
    }
}

/// The candidates of one pass, as the placement function takes them.
struct Demands {
    tasks: Vec<TaskRow>,
    demands: Vec<ReplicaDemand>,
    cluster: ClusterWork,
}

/// Jobs touched during one operation, saved once at the end.
#[derive(Default)]
pub(crate) struct Jobs {
    rows: HashMap<JobId, JobRow>,
}

impl Jobs {
    pub fn get<'a>(&'a mut self, tx: &mut dyn Tx, id: JobId) -> Result<Option<&'a mut JobRow>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.rows.entry(id) {
            match tx.job(id)? {
                Some(row) => {
                    e.insert(row);
                }
                None => return Ok(None),
            }
        }
        Ok(self.rows.get_mut(&id))
    }

    pub fn save(self, tx: &mut dyn Tx) -> Result<Vec<JobId>, StoreError> {
        let mut saved = Vec::with_capacity(self.rows.len());
        for (id, job) in self.rows {
            tx.save_job_state(id, job.state, &job.counts)?;
            saved.push(id);
        }
        Ok(saved)
    }
}

/// Move a task through `event`, keeping its job's counts and state in step. Returns the new
/// state, or `None` when the event does not apply (the task is left as it is).
pub(crate) fn transition(
    tx: &mut dyn Tx,
    task: &mut TaskRow,
    job: &mut JobRow,
    event: TaskEvent,
) -> Result<Option<TaskState>, StoreError> {
    let Ok(next) = task.state.on(event) else { return Ok(None) };
    tx.set_task_state(task.key, next)?;
    job.counts.shift(task.state, next);
    job.state = job.state.settle(&job.counts);
    task.state = next;
    Ok(Some(next))
}

/// Move every task of a job in one of `from` to `to` at once, keeping the counts in step.
pub(crate) fn move_all(tx: &mut dyn Tx, job: &mut JobRow, from: &[TaskState], to: TaskState) -> Result<(), StoreError> {
    for (state, n) in tx.move_job_tasks(job.id, from, to)? {
        let count = job.counts.get_mut(state);
        *count = count.saturating_sub(n);
        *job.counts.get_mut(to) += n;
    }
    Ok(())
}

impl Coordinator {
    /// Assign queued tasks to engines that have room, highest priority first. Tasks of jobs
    /// that check results get as many replicas as their assurance state wants, each on an
    /// engine that has not held one; quarantined engines get nothing; and a placement may be
    /// turned into a test task with a known answer (spot check).
    pub fn schedule(&self, tx: &mut dyn Tx, now_ms: u64, fx: &mut Effects) -> Result<u32, StoreError> {
        let mut rooms = tx.providers_with_room(now_ms.saturating_sub(self.config.provider_silence_ms_max))?;
        if rooms.is_empty() {
            return Ok(0);
        }
        let quarantined = tx.quarantined_providers()?;
        if !quarantined.is_empty() {
            rooms.retain(|room| !quarantined.contains(&room.id));
        }
        let total: u64 = rooms.iter().map(|r| r.room as u64).sum();
        let limit = total.min(self.config.schedule_batch_max as u64) as u32;
        // Tasks short of replicas first: a result already returned waits on them.
        let mut candidates = tx.tasks_wanting_replicas(limit)?;
        candidates.extend(self.queued_candidates(tx, limit)?);
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut jobs = Jobs::default();
        let Demands { mut tasks, mut demands, cluster } =
            self.demands(tx, &rooms, candidates, &mut jobs, now_ms, fx)?;
        // Virtual nodes first: they need several engines at once.
        let mut assigned = 0;
        if !cluster.tasks.is_empty() {
            assigned += self.place_nodes(tx, &mut rooms, cluster, &mut jobs, now_ms, fx)?;
        }
        // Decide (pure), reading only what the decision needs: where the tasks go, then the
        // validation records of the engines chosen, then which launches become spot checks.
        self.prefer_cached(tx, &rooms, &tasks, &mut demands)?;
        let room_sizes: Vec<u32> = rooms.iter().map(|r| r.room).collect();
        let room_powers = self.room_powers(tx, &rooms)?;
        let fastest = room_powers.iter().copied().reduce(f64::max);
        self.apply_deadlines(tx, &tasks, &mut demands, &mut jobs, fastest, now_ms)?;
        let mut launches =
            self.place_within_limits(tx, &room_sizes, &room_powers, &tasks, &demands, &mut jobs, now_ms)?;
        let policy = &self.config.spot_checks;
        // Tests need known answers: without any, no draw is made and no record read.
        let spot_checks_on = policy.rate > 0.0 || policy.new_provider_rate > 0.0;
        let known_answers = if spot_checks_on { tx.known_answers(SPOT_CHECK_CHOICES)? } else { Vec::new() };
        let mut records: Vec<_> = rooms.iter().map(|room| (room.id.clone(), None)).collect();
        for engine in pass::engines_to_check(&launches, policy, !known_answers.is_empty()) {
            records[engine].1 = Some(assurance::load_record(tx, &rooms[engine].id)?);
        }
        pass::draw_spot_checks(&mut launches, &records, policy, &mut **self.random());
        // Apply.
        let mut sizes: HashMap<ElementHash, Option<u64>> = HashMap::new();
        let mut powers: HashMap<PartyId, f64> = HashMap::new();
        for pass::Launch { task: index, engine, spot_check } in launches {
            let provider = &rooms[engine];
            let task = &mut tasks[index];
            let Some(job) = jobs.get(tx, task.job)? else { continue };
            if task.state.is_final() {
                continue;
            }
            // The room goes to the test; the real task waits for the next pass.
            if spot_check && self.send_spot_check(tx, provider, &known_answers, &mut sizes, now_ms, fx)? {
                continue;
            }
            let mut message = match self.assignment_for(tx, task, job, &mut sizes)? {
                Ok(message) => message,
                Err(hash) => {
                    self.conclude(tx, task, job, TaskState::Failed, None, Some(element_gone(&hash)), 0, now_ms, fx)?;
                    continue;
                }
            };
            let assured = assurance::is_assured(job);
            let id = tx.insert_assignment(task.key, &provider.id, now_ms)?;
            let data_in = message.executable.size
                + message.data.values().map(|e| e.size).sum::<u64>()
                + message.checkpoint.map(|c| c.size).unwrap_or(0);
            let power = match powers.get(&provider.id) {
                Some(power) => *power,
                None => {
                    let power = self.engine_power_gflops(tx, &provider.id)?;
                    powers.insert(provider.id.clone(), power);
                    power
                }
            };
            self.journal_launch(tx, id, job, task, &provider.id, power, data_in, assured, now_ms)?;
            if task.state == TaskState::Queued {
                transition(tx, task, job, TaskEvent::Assign)?;
            }
            task.attempts += 1;
            tx.set_task_run(task.key, task.attempts, task.cpu_ms)?;
            message.assignment = id;
            message.ticket = self.ticket(&provider.id, id, now_ms);
            self.market_memory_grant(tx, fx, provider.session, &provider.id, &job.client, id)?;
            push(tx, fx, provider.session, None, &ServerToProvider::Task(self.sign(message)), None)?;
            if assured {
                self.replica_placed(tx, task, job, id, &provider.id, now_ms, fx)?;
            }
            assigned += 1;
        }
        jobs.save(tx)?;
        Ok(assigned)
    }

    /// What each candidate task asks of the engines with room: the replicas it wants, the
    /// engines it may not use (requirements, engines that held a replica) and its rank of them.
    /// Virtual-cluster tasks are set apart: they are placed as nodes.
    fn demands(
        &self,
        tx: &mut dyn Tx,
        rooms: &[ProviderRoom],
        candidates: Vec<idlegrid_store::QueuedTask>,
        jobs: &mut Jobs,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<Demands, StoreError> {
        let engine_of: HashMap<PartyId, usize> =
            rooms.iter().enumerate().map(|(i, room)| (room.id.clone(), i)).collect();
        // Requirements and rank: each engine's requirement over jobs, each job's over engines.
        let mut engine_terms = Vec::with_capacity(rooms.len());
        for room in rooms {
            engine_terms.push(self.engine_terms(tx, &room.id)?);
        }
        let price = self.price_per_gflop_hour();
        let mut job_terms: HashMap<JobId, idlegrid_scheduler::JobTerms> = HashMap::new();
        let mut tasks = Vec::with_capacity(candidates.len());
        let mut demands = Vec::with_capacity(candidates.len());
        let mut specs: HashMap<JobId, Option<idlegrid_scheduler::JobSpec>> = HashMap::new();
        let mut cluster = ClusterWork { tasks: Vec::new(), specs: HashMap::new() };
        for candidate in candidates {
            let Some(mut task) = tx.task_by_key(candidate.key)? else { continue };
            let Some(job) = jobs.get(tx, task.job)? else { continue };
            if !assurance::is_assured(job) {
                if task.state == TaskState::Queued {
                    let spec = specs.entry(job.id).or_insert_with(|| self.cluster_spec(job));
                    if let Some(spec) = spec {
                        cluster.specs.entry(job.id).or_insert_with(|| spec.clone());
                        cluster.tasks.push(task);
                        continue;
                    }
                    if let std::collections::hash_map::Entry::Vacant(entry) = job_terms.entry(job.id) {
                        entry.insert(self.job_terms(tx, job)?);
                    }
                    demands.push(terms::demand(&job_terms[&job.id], &engine_terms, 1, Vec::new(), price));
                    tasks.push(task);
                }
                continue;
            }
            let Some((state, wanted)) = self.assured_task(tx, &mut task, job, now_ms, fx)? else { continue };
            if wanted == 0 || task.state.is_final() {
                continue;
            }
            let excluded = state.assurance.providers().iter().filter_map(|p| engine_of.get(p).copied()).collect();
            if let std::collections::hash_map::Entry::Vacant(entry) = job_terms.entry(job.id) {
                entry.insert(self.job_terms(tx, job)?);
            }
            demands.push(terms::demand(&job_terms[&job.id], &engine_terms, wanted, excluded, price));
            tasks.push(task);
        }
        Ok(Demands { tasks, demands, cluster })
    }

    /// Send `provider` a test task with a known answer in place of a real one; false when no
    /// test can be sent.
    fn send_spot_check(
        &self,
        tx: &mut dyn Tx,
        provider: &ProviderRoom,
        known_answers: &[(TaskKey, ElementHash)],
        sizes: &mut HashMap<ElementHash, Option<u64>>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, StoreError> {
        let Some((test, test_job, expected)) = self.pick_known_answer(tx, &provider.id, known_answers)? else {
            return Ok(false);
        };
        let Ok(mut message) = self.assignment_for(tx, &test, &test_job, sizes)? else { return Ok(false) };
        let id = tx.insert_assignment(test.key, &provider.id, now_ms)?;
        tx.insert_spot_check(id, &expected)?;
        message.assignment = id;
        message.ticket = self.ticket(&provider.id, id, now_ms);
        push(tx, fx, provider.session, None, &ServerToProvider::Task(self.sign(message)), None)?;
        tracing::debug!(provider = %provider.id, assignment = %id, "spot check sent");
        Ok(true)
    }

    /// The assignment message of a task, without its assignment id, ticket and signature; or
    /// the element the server no longer holds.
    pub(crate) fn assignment_for(
        &self,
        tx: &mut dyn Tx,
        task: &TaskRow,
        job: &JobRow,
        sizes: &mut HashMap<ElementHash, Option<u64>>,
    ) -> Result<Result<Assignment, ElementHash>, StoreError> {
        let mut reference = |tx: &mut dyn Tx, hash: &ElementHash| -> Result<Option<ElementRef>, StoreError> {
            let size = match sizes.get(hash) {
                Some(size) => *size,
                None => {
                    let size = tx.element_size(hash)?;
                    sizes.insert(*hash, size);
                    size
                }
            };
            Ok(size.map(|size| ElementRef { hash: *hash, size }))
        };
        let Some(executable) = reference(tx, &task.executable)? else { return Ok(Err(task.executable)) };
        let mut data = std::collections::BTreeMap::new();
        for (name, hash) in &task.data {
            let Some(element) = reference(tx, hash)? else { return Ok(Err(*hash)) };
            data.insert(name.clone(), element);
        }
        let checkpoint = match &task.checkpoint {
            Some(hash) => match reference(tx, hash)? {
                Some(element) => Some(element),
                None => return Ok(Err(*hash)),
            },
            None => None,
        };
        Ok(Ok(Assignment {
            assignment: idlegrid_types::AssignmentId(0),
            executable,
            data,
            params: task.params.clone(),
            checkpoint,
            priority: task.priority,
            limits: job.properties.task_limits.clone(),
            ticket: String::new(),
            signature: String::new(),
            checkpoint_upload_ms: self.config.checkpoint_uploads.period_ms(job.properties.checkpoint_upload_secs),
            // Stored only from a valid header; a value that no longer parses names no trace.
            trace: task.trace.as_deref().and_then(|t| idlegrid_protocol::TraceParent::parse(t).ok()),
        }))
    }

    /// Record a task's final result or failure (the first one wins), drop its other
    /// placements, and stream it to attached sessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conclude(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        state: TaskState,
        result: Option<Payload>,
        failure: Option<TaskFailureInfo>,
        cpu_ms: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, StoreError> {
        let event = if state == TaskState::Succeeded { TaskEvent::Succeed } else { TaskEvent::Fail };
        let was_completed = job.state == idlegrid_types::JobState::Completed;
        if transition(tx, task, job, event)?.is_none() {
            return Ok(false);
        }
        if let Some(Payload::Element(element)) = &result {
            tx.add_job_elements(job.id, &[element.hash])?;
        }
        let record = NewResult {
            task: task.key,
            job: job.id,
            index: task.index,
            state,
            result,
            failure,
            cpu_ms: task.cpu_ms.saturating_add(cpu_ms),
            attempts: task.attempts,
        };
        let result_id = tx.insert_result(&record, now_ms)?;
        fx.tasks_concluded += 1;
        self.deliver_if_asked(tx, job.id, task.index, result_id, now_ms)?;
        tx.set_task_run(task.key, task.attempts, record.cpu_ms)?;
        for other in tx.active_assignments_of_task(task.key)? {
            self.cancel_placement(tx, other.id, &other.provider, now_ms, fx)?;
        }
        self.answer_task_requests(tx, task, fx)?;
        // A finished task restarts from nothing: its checkpoint is released for collection.
        if let Some(checkpoint) = task.checkpoint.take() {
            tx.set_task_checkpoint(task.key, None)?;
            tx.release_element(&checkpoint, now_ms)?;
        }
        tx.save_job_state(job.id, job.state, &job.counts)?;
        if job.state == idlegrid_types::JobState::Completed && !was_completed {
            tx.mark_job_completed(job.id, now_ms)?;
            self.job_completed(tx, job, now_ms)?;
        }
        self.fill_job(tx, job.id, now_ms, fx)?;
        Ok(true)
    }

    /// End a placement the server no longer wants and tell its engine to drop it; the journal
    /// counts the engine's time up to now.
    pub(crate) fn cancel_placement(
        &self,
        tx: &mut dyn Tx,
        assignment: idlegrid_types::AssignmentId,
        provider: &idlegrid_types::PartyId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        tx.end_assignment(assignment, now_ms)?;
        self.journal_cancel(tx, assignment, now_ms)?;
        self.journal_conclude(tx, assignment, None, now_ms)?;
        self.tell_provider(tx, provider, &ServerToProvider::RemoveTask { assignment }, fx)
    }

    /// A task lost a placement (its engine vanished or handed it back without a result): queue
    /// it again, or fail it if it was placed as often as the job allows. For a job that checks
    /// results, the replica is lost and the task's assurance decides what follows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lost(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        assignment: idlegrid_types::AssignmentId,
        why: Option<&str>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if assurance::is_assured(job) {
            if !task.state.is_final() {
                self.replica_returned(tx, task, job, assignment, None, now_ms, fx)?;
            }
            return self.answer_task_requests(tx, task, fx);
        }
        if task.state != TaskState::Running || !tx.active_assignments_of_task(task.key)?.is_empty() {
            return Ok(());
        }
        match after_loss(task.attempts, job.properties.attempts_max) {
            AfterLoss::Requeue => {
                transition(tx, task, job, TaskEvent::Requeue)?;
            }
            AfterLoss::GiveUp => {
                let failure = TaskFailureInfo {
                    kind: FailureKind::AttemptsExhausted,
                    message: match why {
                        Some(why) => format!(
                            "the task was placed {} times and no engine could run it (attempts_max = {}); the last engine said: {why}",
                            task.attempts, job.properties.attempts_max
                        ),
                        None => format!(
                            "the task was placed {} times and every engine stopped answering (attempts_max = {})",
                            task.attempts, job.properties.attempts_max
                        ),
                    },
                };
                self.conclude(tx, task, job, TaskState::Failed, None, Some(failure), 0, now_ms, fx)?;
            }
        }
        self.answer_task_requests(tx, task, fx)?;
        Ok(())
    }

    /// Answer every pending `GetTask` of a task with the checkpoint the server holds.
    pub(crate) fn answer_task_requests(
        &self,
        tx: &mut dyn Tx,
        task: &TaskRow,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let requests = tx.take_task_requests(task.key)?;
        if requests.is_empty() {
            return Ok(());
        }
        let checkpoint = match &task.checkpoint {
            Some(hash) => tx.element_size(hash)?.map(|size| ElementRef { hash: *hash, size }),
            None => None,
        };
        for (session, reply_to) in requests {
            if tx.session(session)?.is_some() {
                push(
                    tx,
                    fx,
                    session,
                    Some(reply_to),
                    &ServerToClient::Task { job: task.job, task: task.index, checkpoint },
                    None,
                )?;
            }
        }
        Ok(())
    }

    pub(crate) fn tell_provider(
        &self,
        tx: &mut dyn Tx,
        provider: &idlegrid_types::PartyId,
        message: &ServerToProvider,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        if let Some(session) = tx.provider(provider)?.and_then(|p| p.session) {
            push(tx, fx, session, None, message, None)?;
        }
        Ok(())
    }

    /// Take a task back from the engine that holds it (silent, or revoked) and queue it for
    /// another; false if the assignment had ended already.
    pub(crate) fn reclaim(
        &self,
        tx: &mut dyn Tx,
        assignment: &idlegrid_store::AssignmentRow,
        why: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, StoreError> {
        if !tx.end_assignment(assignment.id, now_ms)? {
            return Ok(false);
        }
        self.journal_cancel(tx, assignment.id, now_ms)?;
        self.journal_conclude(tx, assignment.id, None, now_ms)?;
        tracing::info!(assignment = %assignment.id, provider = %assignment.provider, why, "task reclaimed");
        self.tell_provider(tx, &assignment.provider, &ServerToProvider::RemoveTask { assignment: assignment.id }, fx)?;
        let Some(mut task) = tx.task_by_key(assignment.task)? else { return Ok(true) };
        let Some(mut job) = tx.job(task.job)? else { return Ok(true) };
        self.lost(tx, &mut task, &mut job, assignment.id, None, now_ms, fx)?;
        tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(true)
    }

    /// Periodic work: reclaim tasks from silent engines, expire idle sessions, delete elements
    /// nobody refers to, and schedule.
    pub fn maintain(&self, tx: &mut dyn Tx, now_ms: u64, fx: &mut Effects) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        self.ask_silent_looking(tx, now_ms, fx)?;
        let silent = tx.silent_assignments(now_ms.saturating_sub(self.config.provider_silence_ms_max), 1000)?;
        for assignment in silent {
            if self.reclaim(tx, &assignment, "engine silent", now_ms, fx)? {
                report.assignments_reclaimed += 1;
            }
        }
        for session in tx.sessions_idle_since(now_ms.saturating_sub(self.config.session_idle_ms_max), 1000)? {
            tx.delete_session(session)?;
            report.sessions_expired += 1;
        }
        for hash in tx.unreferenced_elements(now_ms.saturating_sub(self.config.element_grace_ms), 1000)? {
            tx.delete_element(&hash)?;
            fx.delete_elements.push(hash);
            report.elements_deleted += 1;
        }
        tx.delete_logs_before(now_ms.saturating_sub(self.config.log_retention_ms))?;
        report.negotiations_closed = self.market_close_due(tx, now_ms)?;
        self.market_storage_due(tx, now_ms, fx)?;
        self.record_availability(tx, now_ms)?;
        // Benchmarks due take their engines' free slots before the scheduling pass (P5.1).
        self.send_due_benchmarks(tx, now_ms, fx)?;
        report.tasks_assigned = self.schedule(tx, now_ms, fx)?;
        self.preempt_for_waiting(tx, now_ms, fx)?;
        let billing = self.bill(tx, now_ms, fx)?;
        report.transfers_billed = billing.transfers_new as u32;
        report.results_purged = self.purge(tx, now_ms, fx)?;
        for (job, _, _) in
            tx.completed_jobs_with_undelivered_results(now_ms.saturating_sub(self.config.archive_after_ms), 100)?
        {
            report.results_archived += tx.archive_results(job, false)? as u32;
        }
        Ok(report)
    }
}
