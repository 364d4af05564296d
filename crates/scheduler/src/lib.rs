//! Placement decisions as pure logic: no clock, no I/O, no threads; time and randomness are
//! passed in. The coordinator feeds the model with what it learns (profiles, availability,
//! contacts, caches, jobs, tasks, results), asks for a plan, applies the plan to the store and
//! tells the model it did.
//!
//! - `rooms`: the first scheduler (`fill_rooms`, `after_loss`), for jobs without a cluster request.
//! - `pass`: the coordinator's scheduling pass for those jobs as a pure plan (placements, then
//!   spot checks drawn from a random stream passed in); the simulator runs it too.
//! - `profile` (P5.1): measured speeds and reported facts of a provider.
//! - `availability` (P5.2): per-minute availability folded into 7-day averages and weekly
//!   signatures, about 2 KB per provider.
//! - `timing` (P5.3): `T_E`, `T_R`, the weighted availability `pi`, the candidate test.
//! - `full` (P5.4): the probability of completing within a time, from the signatures.
//! - `vnode` (P5.5): the reliability formula and how many members a node gets.
//! - `placement` (P4.5, P5.5-P5.7): the `Scheduler`: an incrementally indexed model of providers,
//!   jobs and tasks, whose `plan` groups candidates into virtual nodes, replaces silent nodes and
//!   preempts lower priorities.
//! - `explain`: why a task waits, requirement by requirement.
//! - `terms`: an engine's requirement over jobs, a job's requirement and rank over engines, in
//!   the market's expression language.
//! - `random`: seeded generators written here, so results never change with a dependency.
//!
//! Each module's documentation lists the choices made where the seed is vague, with reasons.
//!
//! How the coordinator drives it (all calls are cheap; `explain` is a scan):
//! 1. Providers: `Scheduler::upsert_provider` with the measured `ProviderProfile` (speeds from
//!    `profile::BenchmarkAverage`) and its slots; `provider_connected` / `provider_disconnected`
//!    on contacts; `set_cache_contents` on `CacheContents`. Keep one `AvailabilityHistory` per
//!    provider (2 KB, `to_bytes` for the store), `record` the minutes reported, and pass
//!    `ratings()` to `update_ratings` and `signature()` to `update_signature`.
//! 2. Work: `add_job` (`JobSpec::from_properties`), `add_task`; `task_finished` (returns the
//!    copies to remove), `remove_task`, `copy_ended`, `remove_provider`.
//! 3. Placement: `plan(now_ms, seed)` inside the transaction, carry it out (assignments, `Task`,
//!    `Stop` for preemptions, `RemoveTask` for abandoned copies), then `apply(&plan)` after commit.
//! 4. Questions: `explain(task, now_ms)` / `explain_job`, `job_power`, `node_of`, `stats`.

// Comparisons such as `!(x > 0.0)` are written so that NaN fails them: numbers from the network
// are refused or ignored, never trusted.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod affinity;
pub mod availability;
pub mod cluster_quorum;
pub mod deadline;
pub mod explain;
pub mod full;
mod index;
pub mod job_limits;
pub mod pass;
pub mod placement;
pub mod preempt;
pub mod profile;
mod rooms;
pub mod terms;
pub mod timing;
pub mod vnode;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use availability::{AvailabilityHistory, AvailabilityRatings, MinuteState, WeeklySignature};
pub use explain::{Explanation, Requirement, RequirementReport};
pub use placement::{
    ApplyReport, ElementRef, FailedNode, JobPower, JobSpec, NodeRequirements, NodeView, Plan, PlannedMember,
    PlannedNode, Preemption, ProviderUpdate, ReliabilityModel, Scheduler, SchedulerConfig, SchedulerStats, TaskSpec,
    Unplaced, UnplacedReason,
};
pub use profile::{Connectivity, ProviderProfile};
pub use rooms::{AfterLoss, ReplicaDemand, after_loss, fill_rooms, place_replicas};
pub use terms::{EngineTerms, JobTerms};
pub use timing::{CandidateBand, NodeSpeed, TaskShape};

/// A provider, as the caller numbers them (for example the row ID of the provider's record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProviderId(pub u64);

/// A job, as the caller numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey(pub u64);

/// A task, as the caller numbers them (the store's task key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey(pub u64);

/// An element (executable or data), by the first 8 bytes of its SHA-256: a collision only
/// makes the scheduler believe an engine holds an element it does not, which costs a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ElementKey(pub u64);

impl ElementKey {
    pub fn from_sha256(hash: &[u8; 32]) -> ElementKey {
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        ElementKey(u64::from_be_bytes(first))
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "provider {}", self.0)
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}", self.0)
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// Everything the scheduler refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    #[error("{field} = {value} is invalid: {reason}")]
    InvalidNumber { field: &'static str, value: f64, reason: &'static str },
    #[error("minutes {from_minute}..{to_minute}: {reason}")]
    InvalidSpan { from_minute: u64, to_minute: u64, reason: &'static str },
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    #[error("{0} is unknown")]
    UnknownProvider(ProviderId),
    #[error("{0} is unknown")]
    UnknownJob(JobKey),
    #[error("{0} is unknown")]
    UnknownTask(TaskKey),
    #[error("{0} already exists")]
    DuplicateJob(JobKey),
    #[error("{0} already exists")]
    DuplicateTask(TaskKey),
    #[error("{job} still has {tasks} tasks")]
    JobHasTasks { job: JobKey, tasks: u64 },
    #[error("{task} is not running on {provider}")]
    NotRunningThere { task: TaskKey, provider: ProviderId },
    #[error("{0} is already running")]
    AlreadyRunning(TaskKey),
    #[error("{what}: {count} exceeds the limit of {limit}")]
    TooMany { what: &'static str, count: usize, limit: usize },
}
