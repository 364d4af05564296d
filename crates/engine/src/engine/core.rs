//! The engine's pure core: the table of held tasks and every decision taken on it, as a state
//! machine. Events go in (a task arrived, was staged, ended; the server took a task back; the
//! owner's verdict changed; a result was queued or delivered; the disk filled), the new state and
//! the actions to perform come out. No I/O, no threads, no clock reads: `now` is passed in. The
//! loops around it (fetch, run, upload, contact schedule) only perform what it decides.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use idlegrid_protocol::messages::{Assignment, AssignmentState, AssignmentStatus, NodeState, ProviderToServer};
use idlegrid_types::{AssignmentId, ElementHash, FailureKind, TaskFailureInfo};

use crate::OutboxLimits;
use crate::market_memory::MarketMemory;
use crate::policy::Verdict;
use crate::queue::{Candidate, next_to_run};

/// How often a full disk is checked for room again.
pub(crate) const DISK_RECHECK: Duration = Duration::from_secs(2);

/// Where a task is on this engine (P3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalState {
    /// Assigned; elements being fetched.
    Received,
    /// Staged: ready to run.
    Prepared,
    Running,
    /// Stopped with a checkpoint (preempted, or engine shutdown); runs again before new tasks.
    Suspended,
    /// Finished; its final status is on its way to the server.
    Done,
}

impl LocalState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LocalState::Received => "staging",
            LocalState::Prepared => "prepared",
            LocalState::Running => "running",
            LocalState::Suspended => "suspended",
            LocalState::Done => "done",
        }
    }
}

pub(crate) struct LocalTask {
    pub(crate) assignment: Assignment,
    pub(crate) state: LocalState,
    pub(crate) arrival: u64,
    pub(crate) progress: f32,
    /// The server asked for the task back (`Stop`).
    pub(crate) hand_back: bool,
    /// The server no longer wants the task (`RemoveTask`).
    pub(crate) removed: bool,
    /// Asked to checkpoint and yield to a task of higher priority.
    pub(crate) preempted: bool,
    /// Memory the task may use, counted against the owner's budget while it runs.
    pub(crate) memory_bytes: u64,
    /// Its memory was granted by a market contract (counted against the reservation).
    pub(crate) granted: bool,
}

/// The owner's budgets the core decides within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    pub(crate) cores: u32,
    pub(crate) memory_bytes_max: u64,
    pub(crate) task_memory_bytes_max: u64,
    pub(crate) outbox: OutboxLimits,
}

/// The engine cannot write to its disk (it is full): it takes no tasks until there is room.
struct DiskTrouble {
    reason: String,
    /// When the disk was last found full; room is looked for again a while after.
    checked: Instant,
}

/// Final statuses queued for the server and not yet delivered (P3.9: they are on disk too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outbox {
    pub(crate) results: usize,
    pub(crate) bytes: u64,
}

/// What the loops do for the core.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "an action lives only until the loops perform it; boxing the message would only add allocations"
)]
pub(crate) enum Action {
    /// Fetch the task's elements (and checkpoint) so that it may run.
    Stage { id: AssignmentId, has_local_checkpoint: bool },
    /// Run the task (a fresh control was made for it).
    Start(AssignmentId),
    /// Ask a running task to checkpoint and return, killing it after the grace period.
    Stop(AssignmentId),
    /// Stop a running task at once.
    Kill(AssignmentId),
    /// Delete the task and its files.
    Forget(AssignmentId),
    /// Upload the task's checkpoint and hand the task back as suspended.
    ReturnSuspended { id: AssignmentId, cpu_ms: u64 },
    /// Queue a message for the server; with `cleanup`, the task goes once the server has it.
    Send { message: ProviderToServer, cleanup: Option<AssignmentId> },
    /// Pause (false) or resume (true) every running task.
    SetRunning(bool),
    /// Look for a task to start.
    Wake,
}

/// What is done with a task whose run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It produced a result.
    Succeeded,
    /// It failed by its own fault.
    Failed,
    /// It failed by the engine's fault (tampered element, dead thread).
    Internal,
    /// It stopped (checkpointed or killed) before finishing.
    Stopped,
}

/// The decision for a task whose run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRun {
    /// The server removed it meanwhile: delete it.
    Forget,
    /// Report its outcome (the task is Done once reported).
    Report,
    /// The engine was at fault: report it failed, for the server to place it again.
    PlaceAgain,
    /// The server asked for it back: return it as suspended.
    ReturnSuspended,
    /// Stopped by this engine (preempted, shutdown): keep it to resume later.
    Keep { preempted: bool },
}

/// What to do with assignments that arrived (before they are saved to disk).
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Refused (not signed by the server): the reason, said to the server.
    pub(crate) refused: Vec<(AssignmentId, String)>,
    /// Handed back untouched: the disk is full.
    pub(crate) given_back: Vec<AssignmentId>,
    /// Saved to disk before anything else.
    pub(crate) to_save: Vec<Assignment>,
    /// New to this engine: taken once saved.
    pub(crate) fresh: Vec<AssignmentId>,
}

/// What the status page says the engine does, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) state: String,
    pub(crate) reason: Option<String>,
    pub(crate) memory_used: u64,
}

pub(crate) struct Core {
    budgets: Budgets,
    /// Tasks staged beyond the running ones (server-controlled).
    prefetch: u32,
    tasks: BTreeMap<AssignmentId, LocalTask>,
    arrivals: u64,
    verdict: Verdict,
    stopping: bool,
    disk: Option<DiskTrouble>,
    outbox: Outbox,
    /// Memory sold on the market: the reservation and grants for tasks to come.
    market: MarketMemory,
}

impl Core {
    pub(crate) fn new(budgets: Budgets, prefetch: u32) -> Self {
        Core {
            budgets,
            prefetch,
            tasks: BTreeMap::new(),
            arrivals: 0,
            verdict: Verdict::Run,
            stopping: false,
            disk: None,
            outbox: Outbox::default(),
            market: MarketMemory::default(),
        }
    }

    /// The server granted memory to a task it is about to send (memory sold on the market).
    pub(crate) fn grant_memory(&mut self, id: AssignmentId, bytes: u64) {
        self.market.grant(id, bytes);
    }

    /// Memory reserved for buyers by the provider's active contracts.
    pub(crate) fn set_memory_reserved(&mut self, bytes: u64) {
        self.market.reserved_bytes = bytes;
    }

    pub(crate) fn tasks(&self) -> impl Iterator<Item = &LocalTask> {
        self.tasks.values()
    }

    pub(crate) fn task(&self, id: AssignmentId) -> Option<&LocalTask> {
        self.tasks.get(&id)
    }

    pub(crate) fn held(&self) -> Vec<AssignmentId> {
        self.tasks.keys().copied().collect()
    }

    pub(crate) fn running_count(&self) -> usize {
        self.tasks.values().filter(|t| t.state == LocalState::Running).count()
    }

    pub(crate) fn outbox(&self) -> Outbox {
        self.outbox
    }

    pub(crate) fn set_prefetch(&mut self, prefetch: u32) {
        self.prefetch = prefetch;
    }

    pub(crate) fn set_progress(&mut self, id: AssignmentId, progress: f32) {
        if let Some(task) = self.tasks.get_mut(&id) {
            task.progress = progress;
        }
    }

    /// The engine is shutting down: no task starts any more.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    /// Architecture invariant: a task starts only while the owner allows, the engine is not
    /// stopping, its disk has room and its outbox is below its bounds.
    pub(crate) fn may_run(&self) -> bool {
        !self.stopping && self.verdict == Verdict::Run && !self.outbox_full()
    }

    pub(crate) fn may_compute(&self) -> bool {
        !self.stopping && self.verdict == Verdict::Run
    }

    pub(crate) fn disk_is_full(&self) -> bool {
        self.disk.is_some()
    }

    /// Architecture invariant: results waiting for the server are bounded (count and bytes);
    /// at the bound the engine takes and starts no new work until some are delivered.
    pub(crate) fn outbox_full(&self) -> bool {
        let limits = self.budgets.outbox;
        self.outbox.results >= limits.results_max || self.outbox.bytes >= limits.bytes_max
    }

    /// Elements that held tasks need: never evicted.
    pub(crate) fn needed_elements(&self) -> HashSet<ElementHash> {
        self.tasks
            .values()
            .filter(|t| t.state != LocalState::Done)
            .flat_map(|t| {
                std::iter::once(t.assignment.executable.hash).chain(t.assignment.data.values().map(|e| e.hash))
            })
            .collect()
    }

    /// What the engine says about itself: active with room for work, or paused with none while
    /// its disk is full or its outbox is at its bound.
    pub(crate) fn node_status(&self) -> ProviderToServer {
        let cores = self.budgets.cores;
        if self.disk_is_full() || self.outbox_full() {
            ProviderToServer::NodeStatus { state: NodeState::Paused, slots: cores, queue_capacity: 0 }
        } else {
            ProviderToServer::NodeStatus {
                state: NodeState::Active,
                slots: cores,
                queue_capacity: cores + self.prefetch,
            }
        }
    }

    fn insert(&mut self, assignment: Assignment, state: LocalState) {
        let grant = self.market.take(assignment.assignment);
        let budgets = &self.budgets;
        let memory_bytes = self.market.task_cap(
            assignment.limits.memory_bytes_max,
            grant,
            budgets.task_memory_bytes_max,
            budgets.memory_bytes_max,
        );
        let arrival = self.arrivals;
        self.arrivals += 1;
        let task = LocalTask {
            assignment,
            state,
            arrival,
            progress: 0.0,
            hand_back: false,
            removed: false,
            preempted: false,
            memory_bytes,
            granted: grant.is_some(),
        };
        self.tasks.insert(task.assignment.assignment, task);
    }

    /// A task found on disk at start: finished ones have their outcome sent again, the others
    /// are staged again and resume from their checkpoints (P3.8).
    pub(crate) fn recovered(
        &mut self,
        assignment: Assignment,
        outcome: Option<AssignmentStatus>,
        has_local_checkpoint: bool,
    ) -> Action {
        let id = assignment.assignment;
        let state = if outcome.is_some() { LocalState::Done } else { LocalState::Received };
        self.insert(assignment, state);
        match outcome {
            Some(status) => Action::Send { message: ProviderToServer::TaskStatus(status), cleanup: Some(id) },
            None => Action::Stage { id, has_local_checkpoint },
        }
    }

    /// Sort assignments that arrived: refused, handed back, or to save. A task sent again (new
    /// session) keeps its state; only its ticket is new.
    pub(crate) fn arrived(
        &mut self,
        assignments: Vec<Assignment>,
        check: impl Fn(&Assignment) -> Result<(), String>,
    ) -> Admission {
        let mut admission = Admission::default();
        let full = self.disk_is_full();
        for assignment in assignments {
            if let Err(reason) = check(&assignment) {
                admission.refused.push((assignment.assignment, reason));
                continue;
            }
            match self.tasks.get_mut(&assignment.assignment) {
                // Sent before the server knew the disk is full: back at once, nothing stored.
                None if full => admission.given_back.push(assignment.assignment),
                Some(known) => {
                    known.assignment.ticket = assignment.ticket;
                    admission.to_save.push(known.assignment.clone());
                }
                None => {
                    admission.fresh.push(assignment.assignment);
                    admission.to_save.push(assignment);
                }
            }
        }
        admission
    }

    /// The admitted assignments are on disk: take the new ones and stage them.
    pub(crate) fn admitted(&mut self, admission: Admission) -> Vec<Action> {
        let mut actions = Vec::new();
        for assignment in admission.to_save {
            let id = assignment.assignment;
            if admission.fresh.contains(&id) {
                self.insert(assignment, LocalState::Received);
                actions.push(Action::Stage { id, has_local_checkpoint: false });
            }
        }
        actions
    }

    /// The task's elements are here: it may run.
    pub(crate) fn staged(&mut self, id: AssignmentId, has_local_checkpoint: bool) -> Vec<Action> {
        if let Some(task) = self.tasks.get_mut(&id)
            && task.state == LocalState::Received
        {
            task.state = if has_local_checkpoint { LocalState::Suspended } else { LocalState::Prepared };
        }
        vec![Action::Wake]
    }

    /// The task is gone from the engine's point of view, or removed by the server.
    pub(crate) fn is_gone(&self, id: AssignmentId) -> bool {
        self.tasks.get(&id).is_none_or(|t| t.removed)
    }

    /// The task's final status is on its way: it is Done.
    pub(crate) fn done(&mut self, id: AssignmentId) {
        if let Some(task) = self.tasks.get_mut(&id) {
            task.state = LocalState::Done;
        }
    }

    /// Hand a task back untouched (not failed): the engine cannot hold it now; the server places
    /// it again without counting an attempt.
    pub(crate) fn give_back(&mut self, id: AssignmentId) -> Action {
        self.done(id);
        given_back(id)
    }

    /// The task cannot be done here: report it failed (the server places it again).
    pub(crate) fn fail(&mut self, id: AssignmentId, kind: FailureKind, message: String) -> Action {
        self.done(id);
        let status = AssignmentStatus {
            failure: Some(TaskFailureInfo { kind, message }),
            ..bare_status(id, AssignmentState::Failed)
        };
        Action::Send { message: ProviderToServer::TaskStatus(status), cleanup: Some(id) }
    }

    /// The server no longer wants the task (`RemoveTask`).
    pub(crate) fn remove(&mut self, id: AssignmentId) -> Vec<Action> {
        let Some(task) = self.tasks.get_mut(&id) else { return Vec::new() };
        task.removed = true;
        match task.state {
            LocalState::Running => vec![Action::Kill(id)],
            LocalState::Done => Vec::new(), // its status is on its way; the server will ignore it
            _ => {
                self.tasks.remove(&id);
                vec![Action::Forget(id)]
            }
        }
    }

    /// The server wants the task back (client stop, migration): checkpoint and return it.
    pub(crate) fn hand_back(&mut self, id: AssignmentId) -> Vec<Action> {
        let Some(task) = self.tasks.get_mut(&id) else { return Vec::new() };
        task.hand_back = true;
        match task.state {
            LocalState::Running => vec![Action::Stop(id)],
            LocalState::Done => Vec::new(),
            _ => {
                task.state = LocalState::Done;
                vec![Action::ReturnSuspended { id, cpu_ms: 0 }]
            }
        }
    }

    /// The next task to start, by priority, then suspended before new, then arrival (P3.2),
    /// within the owner's cores and memory. When every slot is taken by work of lower priority
    /// than the best waiting task, the lowest is asked to checkpoint and yield.
    pub(crate) fn next(&mut self) -> Option<Action> {
        if !self.may_run() {
            return None;
        }
        let candidates = self
            .tasks
            .values()
            .filter(|t| matches!(t.state, LocalState::Prepared | LocalState::Suspended) && !t.removed && !t.hand_back)
            .map(|t| Candidate {
                assignment: t.assignment.assignment,
                priority: t.assignment.priority,
                suspended: t.state == LocalState::Suspended,
                arrival: t.arrival,
            });
        let next = next_to_run(candidates)?;
        let running: Vec<&LocalTask> = self.tasks.values().filter(|t| t.state == LocalState::Running).collect();
        let memory_in_use: u64 = running.iter().map(|t| t.memory_bytes).sum();
        let (wanted, granted) = self.tasks.get(&next.assignment).map_or((0, false), |t| (t.memory_bytes, t.granted));
        // Tasks without a grant share only what the memory sold on the market leaves.
        let others_in_use: u64 = running.iter().filter(|t| !t.granted).map(|t| t.memory_bytes).sum();
        let others_fit =
            granted || others_in_use + wanted <= self.market.left_for_others(self.budgets.memory_bytes_max);
        let fits = running.len() < self.budgets.cores as usize
            && memory_in_use + wanted <= self.budgets.memory_bytes_max
            && others_fit;
        if !fits {
            let preempting = running.iter().any(|t| t.preempted);
            let lowest = running
                .iter()
                .filter(|t| !t.hand_back && !t.removed)
                .min_by_key(|t| (t.assignment.priority, std::cmp::Reverse(t.arrival)))
                .map(|t| (t.assignment.assignment, t.assignment.priority));
            if let (false, Some((victim, priority))) = (preempting, lowest)
                && priority < next.priority
                && let Some(task) = self.tasks.get_mut(&victim)
            {
                task.preempted = true;
                return Some(Action::Stop(victim));
            }
            return None;
        }
        let task = self.tasks.get_mut(&next.assignment)?;
        task.state = LocalState::Running;
        task.preempted = false;
        Some(Action::Start(next.assignment))
    }

    /// A task's run ended: what becomes of it.
    pub(crate) fn ended(&mut self, id: AssignmentId, ended: Ended) -> Option<AfterRun> {
        let task = self.tasks.get_mut(&id)?;
        if task.removed {
            self.tasks.remove(&id);
            return Some(AfterRun::Forget);
        }
        Some(match ended {
            Ended::Succeeded | Ended::Failed => AfterRun::Report,
            Ended::Internal => AfterRun::PlaceAgain,
            Ended::Stopped if task.hand_back => {
                task.state = LocalState::Done;
                AfterRun::ReturnSuspended
            }
            Ended::Stopped => {
                // Preempted, or stopped by this engine (shutdown): keep it, resume it later from
                // its checkpoint, before any new task of its priority.
                task.state = LocalState::Suspended;
                AfterRun::Keep { preempted: task.preempted }
            }
        })
    }

    /// The owner's verdict (activity, hours): pause or resume running tasks when it changes
    /// between run and wait.
    pub(crate) fn verdict(&mut self, verdict: Verdict) -> Vec<Action> {
        let was_running = self.verdict == Verdict::Run;
        let now_running = verdict == Verdict::Run;
        self.verdict = verdict;
        if was_running == now_running {
            return Vec::new();
        }
        vec![Action::SetRunning(now_running), Action::Wake]
    }

    /// The disk is full: stop taking tasks, and tell the server why (once, when it starts).
    /// Returns whether this is news.
    pub(crate) fn disk_full(&mut self, reason: String, now: Instant) -> bool {
        let first = self.disk.is_none();
        self.disk = Some(DiskTrouble { reason, checked: now });
        first
    }

    /// Whether a full disk is due to be checked for room again (and marks it checked).
    pub(crate) fn disk_check_due(&mut self, now: Instant) -> bool {
        match self.disk.as_mut() {
            Some(trouble) if now.saturating_duration_since(trouble.checked) >= DISK_RECHECK => {
                trouble.checked = now;
                true
            }
            _ => false,
        }
    }

    /// The result of a check for room: still full (why), or room again (tasks are taken).
    pub(crate) fn disk_checked(&mut self, still_full: Option<String>) -> Vec<Action> {
        match (still_full, self.disk.as_mut()) {
            (Some(reason), Some(trouble)) => {
                trouble.reason = reason;
                Vec::new()
            }
            (None, Some(_)) => {
                self.disk = None;
                vec![Action::Send { message: self.node_status(), cleanup: None }, Action::Wake]
            }
            _ => Vec::new(),
        }
    }

    /// A final status was queued for the server. Returns whether the outbox just reached its
    /// bound (the server is then told the engine takes no work).
    pub(crate) fn queued(&mut self, bytes: u64) -> Vec<Action> {
        let was_full = self.outbox_full();
        self.outbox.results += 1;
        self.outbox.bytes += bytes;
        if !was_full && self.outbox_full() {
            return vec![Action::Send { message: self.node_status(), cleanup: None }];
        }
        Vec::new()
    }

    /// Final statuses left the outbox (delivered, or refused by the server and kept on disk):
    /// below the bound again, the engine takes work again. Delivered tasks go.
    pub(crate) fn delivered(&mut self, results: usize, bytes: u64, finished: &[AssignmentId]) -> Vec<Action> {
        let was_full = self.outbox_full();
        self.outbox.results = self.outbox.results.saturating_sub(results);
        self.outbox.bytes = self.outbox.bytes.saturating_sub(bytes);
        for id in finished {
            self.tasks.remove(id);
        }
        if was_full && !self.outbox_full() {
            return vec![Action::Send { message: self.node_status(), cleanup: None }, Action::Wake];
        }
        Vec::new()
    }

    /// What the status page says the engine does, and why.
    pub(crate) fn summary(&self) -> Summary {
        let running = self.running_count();
        let memory_used = self.tasks.values().filter(|t| t.state == LocalState::Running).map(|t| t.memory_bytes).sum();
        let waiting = self.tasks.values().any(|t| matches!(t.state, LocalState::Prepared | LocalState::Suspended));
        let (state, reason) = match &self.verdict {
            _ if self.disk.is_some() => ("disk full".to_string(), self.disk.as_ref().map(|t| t.reason.clone())),
            Verdict::Wait(reason) => ("waiting".to_string(), Some(reason.to_string())),
            _ if self.outbox_full() && running == 0 => ("outbox full".to_string(), Some(self.outbox_reason())),
            Verdict::Run if running > 0 => ("computing".to_string(), None),
            Verdict::Run if waiting => ("computing".to_string(), Some("starting tasks".into())),
            Verdict::Run => ("idle".to_string(), Some("no tasks to run".into())),
        };
        Summary { state, reason, memory_used }
    }

    fn outbox_reason(&self) -> String {
        format!(
            "{} results ({} bytes) wait for the server (bounds: {} results, {} bytes); no new task starts until some are delivered",
            self.outbox.results, self.outbox.bytes, self.budgets.outbox.results_max, self.budgets.outbox.bytes_max
        )
    }
}

/// A status with nothing but the task and its state.
pub(crate) fn bare_status(id: AssignmentId, state: AssignmentState) -> AssignmentStatus {
    AssignmentStatus {
        assignment: id,
        state,
        progress: 0.0,
        status: None,
        result: None,
        failure: None,
        checkpoint: None,
        cpu_ms: 0,
        trace: None,
    }
}

/// A task handed back untouched: suspended, without a checkpoint; it goes once delivered.
pub(crate) fn given_back(id: AssignmentId) -> Action {
    Action::Send {
        message: ProviderToServer::TaskStatus(bare_status(id, AssignmentState::Suspended)),
        cleanup: Some(id),
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
