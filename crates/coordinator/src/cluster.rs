//! Virtual clusters in the real server (P5.2-P5.7): the availability the server records of each
//! engine, and placement of jobs that ask for a `cluster` by the pure
//! `idlegrid_scheduler::Scheduler`, the code the simulator validates.
//!
//! Choices:
//! - **A Scheduler per pass, built from the store.** The store is the only state shared by
//!   server instances (PostgreSQL deployments run several), so each scheduling pass builds a
//!   `Scheduler` from a snapshot: the engines with room, their profiles and availability, and
//!   the waiting tasks of cluster jobs. Running nodes are not rebuilt: a cluster job's running
//!   task is exactly one virtual node, so its node limit is lowered by its running count.
//!   The cost is linear in the engines with room; the incremental model's logarithmic placement
//!   (measured in `idlegrid-sim`'s benchmark) is for a server that keeps one in memory, a later
//!   step.
//! - **Nodes are the replica machinery of the core loop.** Each member is an ordinary
//!   assignment. The first result wins and the others get `RemoveTask` (`conclude`); a member
//!   that falls silent for `provider_silence_ms_max` is reclaimed; the task waits again only when
//!   its last member is gone (`lost`), and its next node resumes from the latest checkpoint any
//!   member sent (the task's checkpoint). This is the scheduler's `silent_members_for_failure`
//!   default (all members) with `silence_ms_max` = the server's silence limit. A node counts as
//!   one attempt against `attempts_max`, whatever its size.
//! - **Preemption is off in the snapshot** (copies running elsewhere are not in it): priority
//!   orders the waiting tasks, and cluster jobs are placed before the other jobs of a pass.
//! - **Jobs that check results (validation policies) use replicas**, not virtual nodes: their
//!   replicas must agree, which a node's first-result-wins does not ask.
//! - **Availability per minute.** Once a minute every engine heard from within the silence
//!   limit has the minute recorded: CPU and bandwidth available when it is active, bandwidth
//!   only when paused (connected, owner busy), neither when shutting down or without a session.
//!   Minutes in which it was not heard from count as unavailable when it is next recorded. A
//!   state report (`NodeStatus`) records the current minute at once, so a new engine has a
//!   history from its first contact. The history (`AvailabilityHistory`, 2 KB) is kept in the
//!   provider's profile document.
//! - **Connectivity** is derived: an engine whose bandwidth was available at least 99% of its
//!   window counts as constantly connected.
//! - **Bandwidth** until measured is the scheduler's `node_default`.

use std::collections::HashMap;

use base64::Engine as _;
use idlegrid_protocol::messages::{NodeState, ServerToProvider};
use idlegrid_scheduler::availability::MinuteState;
use idlegrid_scheduler::{
    AvailabilityHistory, Connectivity, ElementKey, ElementRef as SchedulerElement, Explanation, JobKey, JobSpec,
    ProviderId, ProviderUpdate, Scheduler, SchedulerConfig, TaskKey as SchedulerTask, TaskSpec,
};
use idlegrid_store::{JobRow, StoreError, TaskRow, Tx};
use idlegrid_types::{ElementHash, JobId, PartyId, SessionId, TaskEvent, TaskState};

use crate::profiles::ProviderProfile;
use crate::schedule::{Jobs, element_gone, transition};
use crate::session::push;
use crate::{Coordinator, Effects};

const AVAILABILITY_MINUTE_KEY: &str = "availability_minute";
/// Most engines whose minute one pass records.
const PROVIDERS_PER_MINUTE_MAX: u32 = 100_000;
/// Share of its window an engine's bandwidth must have been available to count as constantly
/// connected.
const CONSTANT_CONNECTIVITY_MIN: f64 = 0.99;
/// Task indexes scanned for the first waiting task of a job that `explain` is asked about.
const EXPLAIN_SCAN_MAX: u64 = 10_000;

impl ProviderProfile {
    /// The availability history recorded of the engine, if any (a damaged one reads as none).
    pub fn availability(&self) -> Option<AvailabilityHistory> {
        let text = self.availability.as_deref()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
        AvailabilityHistory::from_bytes(&bytes).ok()
    }

    fn set_availability(&mut self, history: &AvailabilityHistory) {
        self.availability = Some(base64::engine::general_purpose::STANDARD.encode(history.to_bytes()));
    }
}

/// What an engine's state says of the minute.
fn minute_state(state: NodeState, has_session: bool) -> MinuteState {
    match (state, has_session) {
        (NodeState::Active, true) => MinuteState::BOTH,
        (NodeState::Paused, true) => MinuteState { cpu: false, bandwidth: true },
        _ => MinuteState::NONE,
    }
}

/// The waiting tasks a pass places on virtual nodes, with their jobs' specifications.
pub(crate) struct ClusterWork {
    pub tasks: Vec<TaskRow>,
    pub specs: HashMap<JobId, JobSpec>,
}

/// A task explained (`idlegrid job explain`).
#[derive(Debug, Clone, PartialEq)]
pub enum JobExplanation {
    /// The job asks for no virtual cluster: its tasks go to any engine with a free slot.
    NoCluster {
        engines_with_room: u64,
        /// Engines with room where both the job's and the engine's requirements hold.
        engines_accepting: u64,
        /// Requirements that keep connected engines from the job, most engines first.
        kept_off: Vec<idlegrid_scheduler::terms::TermsReport>,
    },
    /// No task of the job waits.
    NothingWaiting,
    Waiting {
        task: idlegrid_types::TaskIndex,
        explanation: Box<Explanation>,
        /// Requirements that keep engines from the job, most engines first.
        kept_off: Vec<idlegrid_scheduler::terms::TermsReport>,
    },
}

impl Coordinator {
    fn scheduler_config(&self) -> SchedulerConfig {
        let mut config = self.config.scheduler.clone();
        config.preemption = false;
        config.silence_ms_max = self.config.provider_silence_ms_max;
        config
    }

    /// The scheduler's view of a job, when it asks for a virtual cluster (and is not checked by
    /// replicas). An impossible request was refused at submission; one that fails here anyway
    /// (a configuration changed since) is scheduled as a job without a cluster.
    pub(crate) fn cluster_spec(&self, job: &JobRow) -> Option<JobSpec> {
        if crate::assurance::is_assured(job) {
            return None;
        }
        JobSpec::from_properties(&job.properties, &self.config.scheduler).ok().flatten()
    }

    /// Record the current minute of an engine's availability (no-op if recorded already).
    pub(crate) fn record_minute(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        state: MinuteState,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let minute = now_ms / 60_000;
        let mut profile = self.provider_profile(tx, provider)?.unwrap_or_default();
        let mut history = profile.availability().unwrap_or_default();
        if history.recorded_until_minute().is_some_and(|until| until > minute) {
            return Ok(());
        }
        if history.record(minute, minute + 1, state).is_err() {
            // A gap of more than a year: the old history says nothing any more.
            history = AvailabilityHistory::new();
            history.record(minute, minute + 1, state).expect("one minute is a valid span");
        }
        profile.set_availability(&history);
        self.save_profile(tx, provider, &profile)
    }

    /// A download of the engine's took this bandwidth (MB/s): smoothed into its profile. Samples
    /// that are not a plausible speed are ignored.
    pub fn record_bandwidth(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        mb_per_s: f64,
        _now_ms: u64,
    ) -> Result<(), crate::CoordinatorError> {
        let mut profile = self.provider_profile(tx, provider)?.unwrap_or_default();
        let average = profile.bandwidth_mb_per_s.get_or_insert_with(Default::default);
        if average
            .record(
                mb_per_s.min(idlegrid_scheduler::profile::BANDWIDTH_MB_PER_S_MAX),
                idlegrid_scheduler::profile::BANDWIDTH_MB_PER_S_MAX,
            )
            .is_err()
        {
            return Ok(());
        }
        Ok(self.save_profile(tx, provider, &profile)?)
    }

    /// An engine reported its state: the current minute counts for that state.
    pub(crate) fn state_reported(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        state: NodeState,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.record_minute(tx, provider, minute_state(state, true), now_ms)
    }

    /// Once a minute (maintenance): record the minute of every engine heard from recently.
    pub(crate) fn record_availability(&self, tx: &mut dyn Tx, now_ms: u64) -> Result<u32, StoreError> {
        let minute = now_ms / 60_000;
        let done = tx
            .meta(AVAILABILITY_MINUTE_KEY)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok());
        if done.is_some_and(|done| done >= minute) {
            return Ok(0);
        }
        tx.set_meta(AVAILABILITY_MINUTE_KEY, minute.to_string().as_bytes())?;
        let heard = tx.providers_heard_since(
            now_ms.saturating_sub(self.config.provider_silence_ms_max),
            PROVIDERS_PER_MINUTE_MAX,
        )?;
        for row in &heard {
            self.record_minute(tx, &row.id, minute_state(row.state, row.session.is_some()), now_ms)?;
        }
        Ok(heard.len() as u32)
    }

    /// Add an engine to a snapshot as `ProviderId(index)`: measured speed, reported memory and
    /// disk, ratings and signature from its availability history. An engine never benchmarked
    /// gets no ratings, so it is no candidate and `explain` counts it as unmeasured.
    fn add_snapshot_provider(
        &self,
        tx: &mut dyn Tx,
        scheduler: &mut Scheduler,
        index: usize,
        party: &PartyId,
        slots: u32,
        connected: bool,
        last_contact_ms: u64,
    ) -> Result<(), StoreError> {
        let profile = self.provider_profile(tx, party)?.unwrap_or_default();
        let history = profile.availability();
        let ratings = history.as_ref().and_then(|h| h.ratings());
        let measured = profile.measured_gflops();
        let defaults = &self.config.scheduler.node_default;
        let connectivity = match ratings {
            Some(r) if r.bandwidth >= CONSTANT_CONNECTIVITY_MIN => Connectivity::Constant,
            _ => Connectivity::Intermittent,
        };
        let Ok(scheduler_profile) = idlegrid_scheduler::ProviderProfile::from_report(
            measured.unwrap_or(defaults.cpu_gflops),
            profile.measured_bandwidth().unwrap_or(defaults.bandwidth_mb_per_s),
            profile.memory_bytes.unwrap_or(0),
            profile.disk_bytes.unwrap_or(0),
            profile.cores.unwrap_or(1),
            connectivity,
        ) else {
            return Ok(());
        };
        let id = ProviderId(index as u64);
        let update = ProviderUpdate {
            profile: scheduler_profile,
            ratings: ratings.filter(|_| measured.is_some()),
            slots: slots.min(idlegrid_scheduler::profile::SLOTS_MAX),
        };
        if scheduler.upsert_provider(id, update).is_err() {
            return Ok(());
        }
        let _ = scheduler.set_provider_terms(id, Some(self.engine_terms(tx, party)?));
        if let Some(history) = &history {
            let _ = scheduler.update_signature(id, history.signature());
        }
        let _ = if connected {
            scheduler.provider_connected(id, last_contact_ms)
        } else {
            scheduler.provider_disconnected(id, last_contact_ms)
        };
        Ok(())
    }

    /// Add a job and its waiting tasks to a snapshot; returns their scheduler keys in order.
    fn add_snapshot_job(
        &self,
        tx: &mut dyn Tx,
        scheduler: &mut Scheduler,
        key: JobKey,
        job: &JobRow,
        mut spec: JobSpec,
        tasks: &[(usize, &TaskRow)],
        sizes: &mut HashMap<ElementHash, Option<u64>>,
    ) -> Result<bool, StoreError> {
        // A running task of a cluster job is one node: the limit left is for the waiting ones.
        spec.nodes_max = spec.nodes_max.map(|max| max.saturating_sub(job.counts.running.min(u32::MAX as u64) as u32));
        if let Some(first) = tasks.first() {
            spec.shared_elements = element_refs(tx, std::slice::from_ref(&first.1.executable), sizes)?;
        }
        if scheduler.add_job(key, spec).is_err() {
            return Ok(false);
        }
        let _ = scheduler.set_job_terms(key, Some(self.job_terms(tx, job)?), self.price_per_gflop_hour());
        for (index, task) in tasks {
            let data: Vec<ElementHash> = task.data.values().copied().collect();
            let elements = element_refs(tx, &data, sizes)?;
            let spec = TaskSpec { priority: Some(task.priority), elements };
            let _ = scheduler.add_task(key, SchedulerTask(*index as u64), spec);
        }
        Ok(true)
    }

    /// Place waiting tasks of cluster jobs on virtual nodes of the engines with room, and take
    /// the room they use. Returns the assignments made.
    pub(crate) fn place_nodes(
        &self,
        tx: &mut dyn Tx,
        rooms: &mut [idlegrid_store::ProviderRoom],
        work: ClusterWork,
        jobs: &mut Jobs,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u32, StoreError> {
        let Ok(mut scheduler) = Scheduler::new(self.scheduler_config()) else {
            tracing::error!("the scheduler configuration is invalid; cluster jobs are not placed");
            return Ok(0);
        };
        for (index, room) in rooms.iter().enumerate() {
            // A member must start now: free cores, not room in the engine's queue.
            let free = tx.provider(&room.id)?.map(|p| p.slots.saturating_sub(p.assigned)).unwrap_or(0).min(room.room);
            self.add_snapshot_provider(tx, &mut scheduler, index, &room.id, free, true, now_ms)?;
        }
        let mut tasks = work.tasks;
        let mut by_job: Vec<(JobId, Vec<usize>)> = Vec::new();
        for (index, task) in tasks.iter().enumerate() {
            match by_job.iter_mut().find(|(job, _)| *job == task.job) {
                Some((_, list)) => list.push(index),
                None => by_job.push((task.job, vec![index])),
            }
        }
        let mut sizes = HashMap::new();
        for (key, (job_id, indexes)) in by_job.iter().enumerate() {
            let (Some(spec), Some(job)) = (work.specs.get(job_id), jobs.get(tx, *job_id)?) else { continue };
            let job = job.clone();
            let listed: Vec<(usize, &TaskRow)> = indexes.iter().map(|i| (*i, &tasks[*i])).collect();
            self.add_snapshot_job(tx, &mut scheduler, JobKey(key as u64), &job, spec.clone(), &listed, &mut sizes)?;
        }
        let plan = scheduler.plan(now_ms, now_ms ^ 0x5eed_1d1e_6a1d);
        for unplaced in &plan.unplaced {
            let task = &tasks[unplaced.task.0 as usize];
            tracing::debug!(job = %task.job, task = task.index, reason = ?unplaced.reason, "cluster task waits (idlegrid job explain tells why)");
        }
        let mut assigned = 0;
        let mut powers: HashMap<PartyId, f64> = HashMap::new();
        for node in &plan.nodes {
            let task = &mut tasks[node.task.0 as usize];
            let Some(job) = jobs.get(tx, task.job)? else { continue };
            if task.state != TaskState::Queued {
                continue;
            }
            let message = match self.assignment_for(tx, task, job, &mut sizes)? {
                Ok(message) => message,
                Err(hash) => {
                    self.conclude(tx, task, job, TaskState::Failed, None, Some(element_gone(&hash)), 0, now_ms, fx)?;
                    continue;
                }
            };
            let data_in = message.executable.size
                + message.data.values().map(|e| e.size).sum::<u64>()
                + message.checkpoint.map(|c| c.size).unwrap_or(0);
            let mut launched = 0;
            for member in &node.members {
                let Some(room) = rooms.get_mut(member.provider.0 as usize) else { continue };
                if room.room == 0 {
                    continue;
                }
                room.room -= 1;
                let (party, session): (PartyId, SessionId) = (room.id.clone(), room.session);
                let id = tx.insert_assignment(task.key, &party, now_ms)?;
                let power = match powers.get(&party) {
                    Some(power) => *power,
                    None => {
                        let power = self.engine_power_gflops(tx, &party)?;
                        powers.insert(party.clone(), power);
                        power
                    }
                };
                self.journal_launch(tx, id, job, task, &party, power, data_in, false, now_ms)?;
                let mut message = message.clone();
                message.assignment = id;
                message.ticket = self.ticket(&party, id, now_ms);
                push(tx, fx, session, None, &ServerToProvider::Task(self.sign(message)), None)?;
                launched += 1;
            }
            if launched == 0 {
                continue;
            }
            transition(tx, task, job, TaskEvent::Assign)?;
            task.attempts += 1;
            tx.set_task_run(task.key, task.attempts, task.cpu_ms)?;
            tracing::info!(
                job = %task.job,
                task = task.index,
                members = launched,
                reliability = node.reliability,
                target = node.target_reliability,
                resumed = task.checkpoint.is_some(),
                "virtual node launched"
            );
            assigned += launched;
        }
        Ok(assigned)
    }

    /// Why a job's task waits (the given one, or its first waiting one): the requirements of
    /// its virtual cluster, each with the engines it rules out (like HTCondor's
    /// `condor_q -better-analyze`). The caller checked that the job is the client's.
    pub(crate) fn explain_job(
        &self,
        tx: &mut dyn Tx,
        job: &JobRow,
        task: Option<idlegrid_types::TaskIndex>,
        now_ms: u64,
    ) -> Result<JobExplanation, StoreError> {
        let heard = tx.providers_heard_since(
            now_ms.saturating_sub(self.config.provider_silence_ms_max),
            PROVIDERS_PER_MINUTE_MAX,
        )?;
        let quarantined = tx.quarantined_providers()?;
        let Some(spec) = self.cluster_spec(job) else {
            let has_room = |p: &&idlegrid_store::ProviderRow| {
                p.state == NodeState::Active && p.session.is_some() && p.capacity > p.assigned
            };
            let connected = |p: &&idlegrid_store::ProviderRow| {
                p.state != NodeState::ShuttingDown && p.session.is_some() && !quarantined.contains(&p.id)
            };
            let price = self.price_per_gflop_hour();
            let job_terms = self.job_terms(tx, job)?;
            let mut engines = Vec::new();
            let (mut engines_with_room, mut engines_accepting) = (0, 0);
            for row in heard.iter().filter(connected) {
                let terms = self.engine_terms(tx, &row.id)?;
                if has_room(&row) {
                    engines_with_room += 1;
                    if idlegrid_scheduler::terms::fits(&job_terms, &terms, price) {
                        engines_accepting += 1;
                    }
                }
                engines.push(terms);
            }
            let kept_off = idlegrid_scheduler::terms::explain(&job_terms, &engines, price);
            return Ok(JobExplanation::NoCluster { engines_with_room, engines_accepting, kept_off });
        };
        let waiting = match task {
            Some(index) => tx.task(job.id, index)?.filter(|t| t.state == TaskState::Queued),
            None => {
                let mut first = None;
                for index in 0..job.counts.total().min(EXPLAIN_SCAN_MAX) {
                    if let Some(task) = tx.task(job.id, index)?
                        && task.state == TaskState::Queued
                    {
                        first = Some(task);
                        break;
                    }
                }
                first
            }
        };
        let Some(task) = waiting else { return Ok(JobExplanation::NothingWaiting) };
        let Ok(mut scheduler) = Scheduler::new(self.scheduler_config()) else {
            return Ok(JobExplanation::NothingWaiting);
        };
        for (index, row) in heard.iter().enumerate() {
            let connected = row.session.is_some() && row.state != NodeState::ShuttingDown;
            let free = if row.state == NodeState::Active && !quarantined.contains(&row.id) {
                row.slots.saturating_sub(row.assigned).min(row.capacity.saturating_sub(row.assigned))
            } else {
                0
            };
            self.add_snapshot_provider(tx, &mut scheduler, index, &row.id, free, connected, row.last_contact_ms)?;
        }
        let mut sizes = HashMap::new();
        self.add_snapshot_job(tx, &mut scheduler, JobKey(0), job, spec, &[(0, &task)], &mut sizes)?;
        let job_terms = self.job_terms(tx, job)?;
        let mut engines = Vec::with_capacity(heard.len());
        for row in &heard {
            engines.push(self.engine_terms(tx, &row.id)?);
        }
        let kept_off = idlegrid_scheduler::terms::explain(&job_terms, &engines, self.price_per_gflop_hour());
        match scheduler.explain(SchedulerTask(0), now_ms) {
            Ok(explanation) => {
                Ok(JobExplanation::Waiting { task: task.index, explanation: Box::new(explanation), kept_off })
            }
            Err(_) => Ok(JobExplanation::NothingWaiting),
        }
    }
}

fn element_refs(
    tx: &mut dyn Tx,
    hashes: &[ElementHash],
    sizes: &mut HashMap<ElementHash, Option<u64>>,
) -> Result<Vec<SchedulerElement>, StoreError> {
    let mut refs = Vec::with_capacity(hashes.len());
    for hash in hashes.iter().take(idlegrid_scheduler::placement::TASK_ELEMENTS_MAX / 2) {
        let size = match sizes.get(hash) {
            Some(size) => *size,
            None => {
                let size = tx.element_size(hash)?;
                sizes.insert(*hash, size);
                size
            }
        };
        if let Some(size) = size {
            refs.push(SchedulerElement {
                key: ElementKey::from_sha256(hash.as_bytes()),
                size_mb: size as f64 / 1_000_000.0,
            });
        }
    }
    Ok(refs)
}

/// The wire form of an explanation.
pub(crate) fn to_message(job: JobId, explanation: JobExplanation) -> idlegrid_protocol::messages::JobExplanation {
    use idlegrid_protocol::messages::{JobExplanation as Message, RequirementCount};
    match explanation {
        JobExplanation::NoCluster { engines_with_room, engines_accepting, kept_off } => {
            let mut text = format!(
                "job {job} asks for no virtual cluster: its tasks go to any engine with a free slot whose requirements it meets (and that meets the job's), highest priority first; {engines_with_room} engines have room now, {engines_accepting} of them accept the job\n"
            );
            for report in &kept_off {
                text.push_str(&format!("kept off {} engines by {}\n", report.ruled_out, report.requirement));
            }
            let mut blockers = Vec::new();
            if engines_accepting == 0 && !kept_off.is_empty() {
                blockers.push(format!(
                    "no engine with room accepts the job: {} keeps it off {} engines",
                    kept_off[0].requirement, kept_off[0].ruled_out
                ));
            }
            Message {
                job,
                task: None,
                providers: engines_with_room,
                providers_matching: engines_accepting,
                requirements: kept_off
                    .iter()
                    .map(|r| RequirementCount {
                        requirement: r.requirement.clone(),
                        ruled_out: r.ruled_out,
                        ruled_out_alone: r.ruled_out,
                    })
                    .collect(),
                blockers,
                text,
            }
        }
        JobExplanation::NothingWaiting => Message {
            job,
            task: None,
            providers: 0,
            providers_matching: 0,
            requirements: Vec::new(),
            blockers: Vec::new(),
            text: format!("no task of job {job} waits\n"),
        },
        JobExplanation::Waiting { task, explanation, kept_off } => Message {
            job,
            task: Some(task),
            providers: explanation.providers,
            providers_matching: explanation.providers_matching,
            requirements: explanation
                .requirements
                .iter()
                .map(|r| RequirementCount {
                    requirement: r.requirement.to_string(),
                    ruled_out: r.ruled_out,
                    ruled_out_alone: r.ruled_out_alone,
                })
                .collect(),
            blockers: explanation.blockers.iter().map(|b| b.to_string()).collect(),
            // The scheduler numbers the task 0 of job 0 in its snapshot: name them as the user does.
            text: format!(
                "task {task} of job {job}:\n{}{}",
                explanation.to_string().split_once('\n').map(|(_, rest)| rest).unwrap_or_default(),
                kept_off
                    .iter()
                    .map(|report| format!("kept off {} engines by {}\n", report.ruled_out, report.requirement))
                    .collect::<String>()
            ),
        },
    }
}
