//! The scheduler's model of providers, jobs and tasks (P4.5), and placement (P5.3-P5.7).
//!
//! The coordinator keeps one `Scheduler` in memory and tells it what happens: providers and
//! their profiles, ratings, signatures, contacts and caches; jobs and their tasks; results and
//! lost copies. `plan(now, seed)` returns what to do — virtual nodes to launch, silent nodes to
//! replace, copies to preempt — and leaves the model exactly as it was (the same call gives the
//! same plan), so that a transaction that fails to apply it changes nothing. Once the plan is
//! applied to the store, `apply(&plan)` records it.
//!
//! Cost: providers with a free slot are indexed by effective speed (`index`), so choosing each
//! member of a node costs O(log buckets) draws plus a bounded scan, independent of the number of
//! providers; every event (contact, rating, result) updates the index in O(log n). Failed nodes
//! are found by examining only the members whose silence crossed the limit since the last
//! applied plan (and nodes that lost a member meanwhile). Only a plan's job loop is linear, in
//! the number of jobs with waiting tasks. The placement benchmark of `idlegrid-sim` measures a
//! decision at 10,000 to 1,000,000 providers.
//!
//! Choices where the seed is vague:
//! - **Reliability requested below the baseline R is raised to R** (the seed: "the client may
//!   select a greater, but not lesser, reliability"). `reliability_default` is R (0.9).
//! - **"Not working on a paying job" means a free slot.** A provider with a free slot is a
//!   candidate for it; copies of jobs marked not paying never make a provider busy for paying
//!   work: they are preempted first.
//! - **Power delivered = virtual nodes running x `C_v`.** Duplicates add reliability, not power.
//!   A job runs at most `nodes_max` nodes at once; `node_limit` derives it from the requested
//!   node count or power, rounding down (never more than asked, less by under one node's power).
//! - **Random choice** among candidates (the seed's "selecting randomly"), uniformly within the
//!   speed range of the task, from a seed the caller passes; engines that hold a task's largest
//!   elements (`CacheContents`) are drawn first, and their `T_E` counts only what they miss.
//! - **Providers need a day of history** (`rating_window_minutes_min`) before they are
//!   candidates: a provider seen for one busy hour would otherwise look always available.
//! - **A virtual node fails when `silent_members_for_failure` of its members (default: all of
//!   them) have been out of contact for `silence_ms_max`** (the seed: "a configurable number of
//!   provider computers ... for a configurable amount of time"); it is dropped whole and its task
//!   launched on a new node (with its latest checkpoint, which the coordinator keeps), before new
//!   work of the same priority.
//! - **Priority**: tasks are placed highest priority first, then oldest, across all jobs; a job
//!   whose next task finds no candidate is skipped for the rest of the pass (its other tasks have
//!   the same requirements), so one starved job never stalls the others.
//! - **Preemption**: when free candidates cannot complete a node, copies of lower priority (by at
//!   least `preemption_priority_gap_min`) or of non-paying jobs running on candidates are stopped
//!   (the engine checkpoints them); a preempted task whose node loses its last member waits again.
//!   Running copies are kept in an ordered set by (pays, priority, effective speed), scanned from
//!   a random speed within the task's range for at most `preemption_scan_max` entries.
//! - **Nodes are formed per member, not from a mean.** Each node takes members until
//!   `1 - prod(1 - pi_i)` reaches its aim (`vnode`), so it needs fewer members than
//!   `ln(1 - r) / ln(1 - mean pi)` when members differ: by Jensen's inequality the mean of
//!   `-ln(1 - pi)` exceeds `-ln(1 - mean pi)`. The simulator reports both Ns.
//! - **Full version per job** (`ReliabilityModel::Full`): candidates are found exactly as in the
//!   simplified version (the seed's full-version test, expected time from the tree equal to
//!   `T_R`, depends on the launch time and cannot be indexed; `T_E` from the 7-day averages is its
//!   time-averaged counterpart); the tree's probability of finishing within `T_R` launched now
//!   then replaces the weighted availability as `pi`. A provider without a signature, or with
//!   less than a week of history (its signature has intervals never seen), falls back to the
//!   weighted availability.
//! - **No provider counts as more reliable than `pi_max` (0.95).** Neither model sees what a
//!   week of history cannot show: a provider leaving for good, a benchmark that read high, an
//!   owner whose habits change; the full version's tree, conditioned on a provider being present
//!   now, otherwise credits the most regular ones with near certainty. The simulator measured
//!   the full version at r = 0.99 finishing 91% of tasks on time without the cap, 99.2% with it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::availability::{AvailabilityRatings, WeeklySignature};
use crate::full::{FullModelConfig, ProviderModel, completion_curve};
use crate::index::{IndexPosition, SpeedIndex, bucket_range, speed_bucket};
use crate::profile::{Connectivity, ProviderProfile, SLOTS_MAX, non_negative, positive_at_most};
use crate::terms::{EngineTerms, JobTerms};
use crate::timing::{CandidateBand, NodeSpeed, TaskShape, expected_seconds, requested_seconds, weighted_availability};
use crate::vnode::{NodeFormation, Offer, node_reliability};
use crate::{ElementKey, JobKey, ProviderId, SchedulerError, TaskKey};
use idlegrid_random::{RandomSource, SplitMix64};

/// Most elements a task may list (shared ones of its job included).
pub const TASK_ELEMENTS_MAX: usize = 64;

/// Tunables of placement. Defaults are what the simulator validates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub band: CandidateBand,
    /// Averages over a sampling of tasks (`w̄`, `d̄` of `pi`), and the shape of jobs that give none.
    pub mean_task: TaskShape,
    /// Node speed of jobs that do not say.
    pub node_default: NodeSpeed,
    /// The baseline reliability R: the default, and the least a job gets.
    pub reliability_default: f64,
    /// Providers less reliable than this are not candidates.
    pub pi_min: f64,
    /// No provider counts as more reliable than this (see the module documentation).
    pub pi_max: f64,
    pub members_max: u32,
    /// Least history before a provider is a candidate.
    pub rating_window_minutes_min: u32,
    /// Out of contact this long, a member counts as silent.
    pub silence_ms_max: u64,
    /// Silent members that make a node fail (capped at the node's size; `u32::MAX`: all).
    pub silent_members_for_failure: u32,
    pub nodes_per_plan_max: u32,
    /// Consecutive random draws that find no usable candidate before scanning.
    pub draws_per_member_max: u32,
    /// Most index entries scanned per node after the draws.
    pub scan_per_node_max: u32,
    /// Random draws among engines that hold a task's element, per element.
    pub cache_draws_max: u32,
    pub preemption: bool,
    pub preemption_priority_gap_min: i32,
    pub preemptions_per_plan_max: u32,
    /// Most running copies examined per node when looking for copies to preempt.
    pub preemption_scan_max: u32,
    /// Most elements remembered per engine cache.
    pub cache_elements_max: usize,
    pub full: FullModelConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            band: CandidateBand::default(),
            mean_task: TaskShape { work_gflop: 3600.0, data_in_mb: 10.0, data_out_mb: 1.0 },
            node_default: NodeSpeed { cpu_gflops: 1.0, bandwidth_mb_per_s: 1.0 },
            reliability_default: 0.9,
            pi_min: 0.05,
            pi_max: 0.95,
            members_max: 32,
            rating_window_minutes_min: 24 * 60,
            silence_ms_max: 10 * 60_000,
            silent_members_for_failure: u32::MAX,
            nodes_per_plan_max: 100_000,
            draws_per_member_max: 24,
            scan_per_node_max: 512,
            cache_draws_max: 16,
            preemption: true,
            preemption_priority_gap_min: 1,
            preemptions_per_plan_max: 10_000,
            preemption_scan_max: 256,
            cache_elements_max: 4096,
            full: FullModelConfig::default(),
        }
    }
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        self.band.validate()?;
        self.mean_task.validate()?;
        positive_at_most("node_default.cpu_gflops", self.node_default.cpu_gflops, crate::profile::CPU_GFLOPS_MAX)?;
        positive_at_most(
            "node_default.bandwidth_mb_per_s",
            self.node_default.bandwidth_mb_per_s,
            crate::profile::BANDWIDTH_MB_PER_S_MAX,
        )?;
        if !(0.0..1.0).contains(&self.reliability_default) {
            return Err(SchedulerError::InvalidNumber {
                field: "reliability_default",
                value: self.reliability_default,
                reason: "must be in [0, 1)",
            });
        }
        if !(0.0..1.0).contains(&self.pi_min) {
            return Err(SchedulerError::InvalidNumber {
                field: "pi_min",
                value: self.pi_min,
                reason: "must be in [0, 1)",
            });
        }
        if !(self.pi_max > self.pi_min && self.pi_max <= 1.0) {
            return Err(SchedulerError::InvalidNumber {
                field: "pi_max",
                value: self.pi_max,
                reason: "must be in (pi_min, 1]",
            });
        }
        if self.members_max == 0 {
            return Err(SchedulerError::InvalidNumber { field: "members_max", value: 0.0, reason: "must be positive" });
        }
        Ok(())
    }
}

/// What a job asks of each node (P1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRequirements {
    pub cpu_gflops: f64,
    pub bandwidth_mb_per_s: f64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// `Constant` admits only constantly connected providers; `Intermittent` admits all.
    pub connectivity: Connectivity,
}

/// How a job's candidates' `pi` is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReliabilityModel {
    /// `pi` is the weighted 7-day availability (P5.3).
    #[default]
    Simplified,
    /// `pi` is the probability of finishing within `T_R`, from the signatures (P5.4).
    Full,
}

/// An element and its size, for the cache preference and the data a task moves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElementRef {
    pub key: ElementKey,
    pub size_mb: f64,
}

/// A job, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Higher first; tasks may override.
    pub priority: i32,
    /// Copies of jobs that do not pay are preempted by paying work of any priority.
    pub paying: bool,
    pub node: NodeRequirements,
    /// Requested reliability r; `None` or below the baseline gives the baseline.
    pub reliability: Option<f64>,
    /// Estimates of work and data per task; `None` uses the averages.
    pub shape: Option<TaskShape>,
    /// Most virtual nodes running at once (the requested power over `C_v`); `None`: no limit.
    pub nodes_max: Option<u32>,
    pub model: ReliabilityModel,
    /// Elements every task of the job uses (the executable).
    pub shared_elements: Vec<ElementRef>,
}

impl JobSpec {
    /// A job for `node` with everything else defaulted.
    pub fn new(node: NodeRequirements) -> JobSpec {
        JobSpec {
            priority: 0,
            paying: true,
            node,
            reliability: None,
            shape: None,
            nodes_max: None,
            model: ReliabilityModel::Simplified,
            shared_elements: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), SchedulerError> {
        positive_at_most("node.cpu_gflops", self.node.cpu_gflops, crate::profile::CPU_GFLOPS_MAX)?;
        positive_at_most(
            "node.bandwidth_mb_per_s",
            self.node.bandwidth_mb_per_s,
            crate::profile::BANDWIDTH_MB_PER_S_MAX,
        )?;
        if let Some(r) = self.reliability
            && !(0.0..1.0).contains(&r)
        {
            return Err(SchedulerError::InvalidNumber { field: "reliability", value: r, reason: "must be in [0, 1)" });
        }
        if let Some(shape) = &self.shape {
            shape.validate()?;
        }
        validate_elements(&self.shared_elements)?;
        Ok(())
    }

    /// The scheduler's view of a job's properties, or `None` when the job asks for no virtual
    /// cluster (the coordinator then uses `fill_rooms`). Work is given in GFLOP-hours and
    /// bandwidth in MB/s. Scheduling hints: `reliability_model = full` selects the full version,
    /// `paying = false` marks work that any paying job preempts.
    pub fn from_properties(
        properties: &idlegrid_types::JobProperties,
        config: &SchedulerConfig,
    ) -> Result<Option<JobSpec>, SchedulerError> {
        let Some(cluster) = &properties.cluster else { return Ok(None) };
        let cpu_gflops = cluster.node_cpu_gflops.unwrap_or(config.node_default.cpu_gflops);
        let node = NodeRequirements {
            cpu_gflops,
            bandwidth_mb_per_s: cluster.node_bandwidth_mbps.unwrap_or(config.node_default.bandwidth_mb_per_s),
            memory_mb: cluster.node_memory_mb.unwrap_or(0),
            disk_mb: cluster.node_disk_mb.unwrap_or(0),
            connectivity: cluster.connectivity.unwrap_or(Connectivity::Intermittent),
        };
        let shape = match (cluster.work_per_task_gflop_hours, cluster.data_in_mb, cluster.data_out_mb) {
            (None, None, None) => None,
            (work, data_in, data_out) => Some(TaskShape::from_gflop_hours(
                work.unwrap_or(config.mean_task.work_gflop / 3600.0),
                data_in.unwrap_or(config.mean_task.data_in_mb),
                data_out.unwrap_or(config.mean_task.data_out_mb),
            )),
        };
        let hint = |name: &str| properties.scheduling_hints.get(name).map(|v| v.trim().to_ascii_lowercase());
        let spec = JobSpec {
            priority: properties.priority,
            paying: hint("paying").as_deref() != Some("false"),
            node,
            reliability: cluster.reliability,
            shape,
            nodes_max: node_limit(
                cluster.node_count,
                properties.power_requested_gflops,
                properties.power_max_gflops,
                cpu_gflops,
            ),
            model: if hint("reliability_model").as_deref() == Some("full") {
                ReliabilityModel::Full
            } else {
                ReliabilityModel::Simplified
            },
            shared_elements: Vec::new(),
        };
        spec.validate()?;
        Ok(Some(spec))
    }
}

/// Most nodes a job may run at once: the node count if given, else the requested power over
/// the node speed rounded down (at least one); capped by the maximum power. `None`: no limit.
pub fn node_limit(
    node_count: Option<u32>,
    power_requested_gflops: Option<f64>,
    power_max_gflops: Option<f64>,
    node_cpu_gflops: f64,
) -> Option<u32> {
    let nodes_for = |power: f64| -> Option<u32> {
        (power.is_finite() && power > 0.0 && node_cpu_gflops > 0.0)
            .then(|| ((power / node_cpu_gflops).floor().min(u32::MAX as f64) as u32).max(1))
    };
    let wanted = node_count.or_else(|| power_requested_gflops.and_then(nodes_for));
    match (wanted, power_max_gflops.and_then(nodes_for)) {
        (Some(w), Some(cap)) => Some(w.min(cap)),
        (w, cap) => w.or(cap),
    }
}

fn validate_elements(elements: &[ElementRef]) -> Result<(), SchedulerError> {
    if elements.len() > TASK_ELEMENTS_MAX {
        return Err(SchedulerError::TooMany {
            what: "elements of a task",
            count: elements.len(),
            limit: TASK_ELEMENTS_MAX,
        });
    }
    for element in elements {
        non_negative("element size_mb", element.size_mb)?;
    }
    Ok(())
}

/// A task, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Overrides the job's priority.
    pub priority: Option<i32>,
    /// The task's own elements (its data); the job's shared elements are added. When the job
    /// and the task list no elements, the job's `data_in_mb` estimate is the data in.
    pub elements: Vec<ElementRef>,
}

/// A provider's profile, ratings and slots, all at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderUpdate {
    pub profile: ProviderProfile,
    pub ratings: Option<AvailabilityRatings>,
    /// Tasks it runs at once.
    pub slots: u32,
}

/// A member chosen for a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMember {
    pub provider: ProviderId,
    pub pi: f64,
    /// `T_E` on this provider, counting only the elements it misses.
    pub expected_seconds: f64,
    pub holds_elements: bool,
    /// The copy stopped to make room, if any (also in `Plan::preemptions`).
    pub preempts: Option<TaskKey>,
}

/// A virtual node to launch: the task on every member at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub task: TaskKey,
    pub job: JobKey,
    pub members: Vec<PlannedMember>,
    /// `1 - prod(1 - pi_i)` over the members.
    pub reliability: f64,
    /// What this node aimed at: the job's reliability corrected by the error carried from its
    /// earlier nodes (a fractional N met on average).
    pub target_reliability: f64,
    pub requested_seconds: f64,
    /// The task ran on a node that failed; resume it from its latest checkpoint.
    pub relaunch: bool,
}

/// A node whose members fell silent: end these copies (the task is launched again if a node of
/// this plan has it, else it waits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedNode {
    pub task: TaskKey,
    pub job: JobKey,
    pub abandoned: Vec<ProviderId>,
}

/// A running copy to stop (with a checkpoint) to make room for `by`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preemption {
    pub provider: ProviderId,
    pub task: TaskKey,
    pub by: TaskKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UnplacedReason {
    /// No provider meets every requirement now (see `explain`).
    NoCandidate,
    /// Candidates exist but too few or too unreliable to reach r.
    ReliabilityUnreachable { reached: f64 },
}

/// The first task of a job that could not be placed in this pass (the job's other tasks were
/// not tried).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    pub job: JobKey,
    pub task: TaskKey,
    pub reason: UnplacedReason,
}

/// What to do now. Apply in this order: failed nodes, preemptions, nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub now_ms: u64,
    pub failed_nodes: Vec<FailedNode>,
    pub preemptions: Vec<Preemption>,
    pub nodes: Vec<PlannedNode>,
    pub unplaced: Vec<Unplaced>,
    /// Error diffusion state per job after this plan (recorded by `apply`).
    pub carries: Vec<(JobKey, f64)>,
    /// Silences up to this last contact were examined (recorded by `apply`).
    pub silence_examined_ms: Option<u64>,
    /// Nodes examined again because they lost a member (recorded by `apply`).
    pub rechecked: Vec<TaskKey>,
}

/// What `apply` could not do (the model changed between `plan` and `apply`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApplyReport {
    pub nodes_launched: u32,
    pub copies_launched: u32,
    pub nodes_failed: u32,
    pub copies_preempted: u32,
    pub nodes_skipped: u32,
    pub members_skipped: u32,
    /// Tasks that lost their last copy to a preemption and wait again.
    pub tasks_requeued: Vec<TaskKey>,
}

/// A running virtual node, as `Scheduler::node_of` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// `1 - prod(1 - pi_i)` over the members still running.
    pub reliability: f64,
    pub launched_ms: u64,
    /// Each member and its `pi` at launch.
    pub members: Vec<(ProviderId, f64)>,
}

/// Power of a job now (P5.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPower {
    pub nodes_running: u32,
    pub nodes_max: Option<u32>,
    pub node_cpu_gflops: f64,
    /// `nodes_running x C_v`.
    pub power_delivered_gflops: f64,
    /// `nodes_max x C_v`.
    pub power_requested_gflops: Option<f64>,
    pub tasks_waiting: u64,
    pub tasks: u64,
    pub reliability: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SchedulerStats {
    pub providers: u64,
    /// Providers in the index: measured, connected, with a free slot.
    pub providers_free: u64,
    pub jobs: u64,
    pub tasks: u64,
    pub tasks_waiting: u64,
    pub nodes_running: u64,
    pub copies_running: u64,
}

// ---------------------------------------------------------------------------------------------
// The model

#[derive(Debug, Clone)]
pub(crate) struct ProviderRecord {
    pub id: ProviderId,
    pub profile: Option<ProviderProfile>,
    pub ratings: Option<AvailabilityRatings>,
    pub signature: Option<Box<WeeklySignature>>,
    pub slots: u32,
    pub copies: Vec<TaskKey>,
    pub connected: bool,
    pub last_contact_ms: u64,
    /// Sorted.
    pub cache: Vec<ElementKey>,
    /// Measured long enough and with a positive effective speed.
    pub eligible: bool,
    pub effective_speed: f64,
    pub effective_bandwidth: f64,
    pub pi_simplified: f64,
    pub index_at: Option<IndexPosition>,
    /// Bucket used in the keys of `busy`.
    pub busy_bucket: u16,
    /// Slots taken by the plan being computed.
    pub plan_used: u32,
}

impl ProviderRecord {
    fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.copies.len() as u32)
    }

    pub(crate) fn holds(&self, key: ElementKey) -> bool {
        self.cache.binary_search(&key).is_ok()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NodeMember {
    pub slot: u32,
    pub pi: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeRecord {
    pub members: Vec<NodeMember>,
    pub launched_ms: u64,
    pub class: u8,
    pub priority: i32,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskRecord {
    pub job: JobKey,
    pub explicit_priority: Option<i32>,
    pub priority: i32,
    pub seq: u64,
    pub elements: Box<[ElementRef]>,
    pub data_in_mb: f64,
    pub node: Option<NodeRecord>,
}

#[derive(Debug, Clone)]
pub(crate) struct JobRecord {
    pub spec: JobSpec,
    pub reliability: f64,
    pub waiting: BTreeSet<(Reverse<i32>, u64, TaskKey)>,
    pub tasks: u64,
    pub nodes_running: u32,
    pub carry: f64,
}

impl JobRecord {
    pub(crate) fn shape(&self, config: &SchedulerConfig) -> TaskShape {
        self.spec.shape.unwrap_or(config.mean_task)
    }
}

/// Keys of running copies, for preemption: lowest class (not paying first), then priority,
/// then effective speed bucket.
type BusyKey = (u8, i32, u16, u32, TaskKey);

#[derive(Debug, Clone)]
struct Holders {
    list: Vec<u32>,
    position: HashMap<u32, u32>,
}

/// The scheduler's model. See the module documentation.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    pub(crate) providers: Vec<Option<ProviderRecord>>,
    pub(crate) provider_slots: HashMap<ProviderId, u32>,
    free_records: Vec<u32>,
    index: SpeedIndex,
    holders: HashMap<ElementKey, Holders>,
    pub(crate) jobs: HashMap<JobKey, JobRecord>,
    jobs_waiting: BTreeSet<JobKey>,
    pub(crate) tasks: HashMap<TaskKey, TaskRecord>,
    busy: BTreeSet<BusyKey>,
    /// Disconnected providers that still hold copies, by the time of their last contact.
    silent_watch: BTreeSet<(u64, u32)>,
    /// Silences up to this last contact have been examined by an applied plan: a node fails
    /// when its last needed member's silence crosses the limit, so each plan examines only the
    /// members whose silence crossed it since.
    silence_examined_ms: Option<u64>,
    /// Nodes that lost a member while enough of the others were silent past an examined limit:
    /// the crossing scan would not see them again, so the next plan examines them.
    recheck: BTreeSet<TaskKey>,
    next_seq: u64,
    copies_running: u64,
    nodes_running: u64,
    tasks_waiting: u64,
    /// Providers' requirements over jobs and attributes (`terms`), for those that have them.
    provider_terms: HashMap<ProviderId, EngineTerms>,
    /// Jobs' requirements over engines and attributes.
    job_terms: HashMap<JobKey, JobTerms>,
    /// Price per GFLOP-hour, for `job.pay_per_hour`.
    terms_price: f64,
}

/// What the candidate test found for one provider and one task.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Assessment {
    /// Bit i set: requirement i (`explain::REQUIREMENT_*`) not met.
    pub failed: u16,
    pub pi: f64,
    pub expected_seconds: f64,
    pub holds_elements: bool,
}

pub(crate) const FAIL_MEASURED: u16 = 1 << 0;
pub(crate) const FAIL_CONNECTED: u16 = 1 << 1;
pub(crate) const FAIL_FREE_SLOT: u16 = 1 << 2;
pub(crate) const FAIL_MEMORY: u16 = 1 << 3;
pub(crate) const FAIL_DISK: u16 = 1 << 4;
pub(crate) const FAIL_CONNECTIVITY: u16 = 1 << 5;
pub(crate) const FAIL_BANDWIDTH: u16 = 1 << 6;
pub(crate) const FAIL_TOO_SLOW: u16 = 1 << 7;
pub(crate) const FAIL_TOO_FAST: u16 = 1 << 8;
pub(crate) const FAIL_RELIABILITY: u16 = 1 << 9;
pub(crate) const FAIL_TERMS: u16 = 1 << 10;
pub(crate) const REQUIREMENTS: usize = 11;

/// Everything the candidate test needs about one task.
#[derive(Debug, Clone)]
pub(crate) struct TaskContext {
    pub task: TaskKey,
    pub job: JobKey,
    pub shape: TaskShape,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub connectivity: Connectivity,
    pub requested_seconds: f64,
    pub seconds_min: f64,
    pub seconds_max: f64,
    pub bandwidth_min: f64,
    pub buckets: (u16, u16),
    pub speed_range: (f64, f64),
    /// The task's elements, largest first.
    pub elements: Vec<ElementRef>,
    pub model: ReliabilityModel,
    pub reliability: f64,
    pub pi_min: f64,
    pub paying: bool,
    pub priority: i32,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct JobScratch {
    nodes_delta: i64,
    carry: f64,
    blocked: bool,
}

#[derive(Default)]
struct PlanScratch {
    /// Index removals to undo, in order.
    removed: Vec<(IndexPosition, u32)>,
    touched: Vec<u32>,
    busy_removed: Vec<BusyKey>,
    victims: HashSet<(u32, TaskKey)>,
    preemptions: u32,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Scheduler, SchedulerError> {
        config.validate()?;
        Ok(Scheduler {
            config,
            providers: Vec::new(),
            provider_slots: HashMap::new(),
            free_records: Vec::new(),
            index: SpeedIndex::new(),
            holders: HashMap::new(),
            jobs: HashMap::new(),
            jobs_waiting: BTreeSet::new(),
            tasks: HashMap::new(),
            busy: BTreeSet::new(),
            silent_watch: BTreeSet::new(),
            silence_examined_ms: None,
            recheck: BTreeSet::new(),
            next_seq: 0,
            copies_running: 0,
            nodes_running: 0,
            tasks_waiting: 0,
            provider_terms: HashMap::new(),
            job_terms: HashMap::new(),
            terms_price: 0.0,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            providers: self.provider_slots.len() as u64,
            providers_free: self.index.len() as u64,
            jobs: self.jobs.len() as u64,
            tasks: self.tasks.len() as u64,
            tasks_waiting: self.tasks_waiting,
            nodes_running: self.nodes_running,
            copies_running: self.copies_running,
        }
    }

    // ---- providers -------------------------------------------------------------------------

    pub(crate) fn record(&self, slot: u32) -> &ProviderRecord {
        self.providers[slot as usize].as_ref().expect("slot of a live provider")
    }

    fn record_mut(&mut self, slot: u32) -> &mut ProviderRecord {
        self.providers[slot as usize].as_mut().expect("slot of a live provider")
    }

    fn slot_of(&self, id: ProviderId) -> Result<u32, SchedulerError> {
        self.provider_slots.get(&id).copied().ok_or(SchedulerError::UnknownProvider(id))
    }

    pub(crate) fn task_context(&self, key: TaskKey, now_ms: u64) -> Result<TaskContext, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        let job = self.jobs.get(&task.job).ok_or(SchedulerError::UnknownJob(task.job))?;
        let mut elements: Vec<ElementRef> =
            job.spec.shared_elements.iter().chain(task.elements.iter()).copied().collect();
        elements.sort_by(|a, b| b.size_mb.total_cmp(&a.size_mb).then(a.key.cmp(&b.key)));
        let base = job.shape(&self.config);
        let shape =
            TaskShape { work_gflop: base.work_gflop, data_in_mb: task.data_in_mb, data_out_mb: base.data_out_mb };
        let band = &self.config.band;
        let node =
            NodeSpeed { cpu_gflops: job.spec.node.cpu_gflops, bandwidth_mb_per_s: job.spec.node.bandwidth_mb_per_s };
        let requested = requested_seconds(&shape, &node);
        let speed_range = band.effective_speed_range(&shape, &node);
        Ok(TaskContext {
            task: key,
            job: task.job,
            shape,
            memory_mb: job.spec.node.memory_mb,
            disk_mb: job.spec.node.disk_mb,
            connectivity: job.spec.node.connectivity,
            requested_seconds: requested,
            seconds_min: band.seconds_min(requested),
            seconds_max: band.seconds_max(requested),
            bandwidth_min: band.effective_bandwidth_min(&shape, &node),
            buckets: bucket_range(speed_range.0, speed_range.1),
            speed_range,
            elements,
            model: job.spec.model,
            reliability: job.reliability,
            pi_min: self.config.pi_min,
            paying: job.spec.paying,
            priority: task.priority,
            now_ms,
        })
    }

    /// Set (or, with `None`, clear) a provider's requirement over jobs and its attributes
    /// (`terms`): no task goes to it unless its job meets the requirement.
    pub fn set_provider_terms(&mut self, id: ProviderId, terms: Option<EngineTerms>) -> Result<(), SchedulerError> {
        if !self.provider_slots.contains_key(&id) {
            return Err(SchedulerError::UnknownProvider(id));
        }
        match terms {
            Some(terms) => self.provider_terms.insert(id, terms),
            None => self.provider_terms.remove(&id),
        };
        Ok(())
    }

    /// Set (or clear) a job's requirement over engines and its attributes, which engines'
    /// requirements read; `price_per_gflop_hour` gives `job.pay_per_hour`.
    pub fn set_job_terms(
        &mut self,
        key: JobKey,
        terms: Option<JobTerms>,
        price_per_gflop_hour: f64,
    ) -> Result<(), SchedulerError> {
        if !self.jobs.contains_key(&key) {
            return Err(SchedulerError::UnknownJob(key));
        }
        if !(price_per_gflop_hour.is_finite() && price_per_gflop_hour >= 0.0) {
            return Err(SchedulerError::InvalidNumber {
                field: "price_per_gflop_hour",
                value: price_per_gflop_hour,
                reason: "must be a finite number, at least 0",
            });
        }
        self.terms_price = price_per_gflop_hour;
        match terms {
            Some(terms) => self.job_terms.insert(key, terms),
            None => self.job_terms.remove(&key),
        };
        Ok(())
    }

    /// Whether the provider's and the job's requirements both hold (true when neither has one).
    pub(crate) fn terms_hold(&self, provider: ProviderId, job: JobKey) -> bool {
        let engine = self.provider_terms.get(&provider);
        let job = self.job_terms.get(&job);
        let required = engine.is_some_and(|e| e.requirement.is_some()) || job.is_some_and(|j| j.requirement.is_some());
        if !required {
            return true;
        }
        let (no_engine, no_job) = (EngineTerms::default(), JobTerms::default());
        crate::terms::fits(job.unwrap_or(&no_job), engine.unwrap_or(&no_engine), self.terms_price)
    }

    /// Whether any provider or job has a requirement.
    pub(crate) fn has_terms(&self) -> bool {
        self.provider_terms.values().any(|e| e.requirement.is_some())
            || self.job_terms.values().any(|j| j.requirement.is_some())
    }

    /// The candidate test of one provider for one task. With `stop_at_first`, returns at the
    /// first requirement not met (placement); otherwise checks them all (explain).
    pub(crate) fn assess(&self, slot: u32, ctx: &TaskContext, check_free: bool, stop_at_first: bool) -> Assessment {
        let record = self.record(slot);
        let mut a = Assessment::default();
        macro_rules! fail {
            ($bit:expr) => {{
                a.failed |= $bit;
                if stop_at_first {
                    return a;
                }
            }};
        }
        let window_ok = record.ratings.is_some_and(|r| r.window_minutes >= self.config.rating_window_minutes_min);
        let (Some(profile), Some(ratings)) = (&record.profile, &record.ratings) else {
            a.failed |= FAIL_MEASURED;
            return a;
        };
        if !window_ok || !record.eligible {
            fail!(FAIL_MEASURED);
        }
        if !record.connected {
            fail!(FAIL_CONNECTED);
        }
        if check_free && record.free_slots() <= record.plan_used {
            fail!(FAIL_FREE_SLOT);
        }
        if profile.memory_mb < ctx.memory_mb {
            fail!(FAIL_MEMORY);
        }
        if profile.disk_mb < ctx.disk_mb {
            fail!(FAIL_DISK);
        }
        if ctx.connectivity == Connectivity::Constant && profile.connectivity != Connectivity::Constant {
            fail!(FAIL_CONNECTIVITY);
        }
        if record.effective_bandwidth < ctx.bandwidth_min {
            fail!(FAIL_BANDWIDTH);
        }
        if !self.terms_hold(record.id, ctx.job) {
            fail!(FAIL_TERMS);
        }
        let held: f64 = if record.cache.is_empty() {
            0.0
        } else {
            ctx.elements.iter().filter(|e| record.holds(e.key)).map(|e| e.size_mb).sum()
        };
        a.holds_elements = held > 0.0;
        let cached_shape = TaskShape { data_in_mb: (ctx.shape.data_in_mb - held).max(0.0), ..ctx.shape };
        let uncached = expected_seconds(
            &ctx.shape,
            profile.cpu_gflops,
            profile.bandwidth_mb_per_s,
            ratings.cpu,
            ratings.bandwidth,
        );
        let cached = if held > 0.0 {
            expected_seconds(
                &cached_shape,
                profile.cpu_gflops,
                profile.bandwidth_mb_per_s,
                ratings.cpu,
                ratings.bandwidth,
            )
        } else {
            uncached
        };
        a.expected_seconds = cached;
        if !(cached <= ctx.seconds_max) {
            fail!(FAIL_TOO_SLOW);
        }
        if uncached < ctx.seconds_min {
            fail!(FAIL_TOO_FAST);
        }
        a.pi = match (ctx.model, &record.signature) {
            (ReliabilityModel::Full, Some(signature)) if ratings.covers_week() => {
                let model = ProviderModel {
                    cpu_gflops: profile.cpu_gflops,
                    bandwidth_mb_per_s: profile.bandwidth_mb_per_s,
                    signature,
                    ratings,
                };
                let (step, steps) = self.config.full.steps_for(ctx.requested_seconds);
                completion_curve(&model, &cached_shape, ctx.now_ms, step, steps)
                    .probability_within(ctx.requested_seconds)
            }
            _ => record.pi_simplified,
        }
        .min(self.config.pi_max);
        if !(a.pi >= ctx.pi_min) {
            fail!(FAIL_RELIABILITY);
        }
        a
    }

    // ---- planning --------------------------------------------------------------------------

    /// A running task's virtual node (`None` while it waits).
    pub fn node_of(&self, key: TaskKey) -> Result<Option<NodeView>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        Ok(task.node.as_ref().map(|node| {
            let members: Vec<(ProviderId, f64)> = node.members.iter().map(|m| (self.record(m.slot).id, m.pi)).collect();
            let pis: Vec<f64> = members.iter().map(|(_, pi)| *pi).collect();
            NodeView { reliability: node_reliability(&pis), launched_ms: node.launched_ms, members }
        }))
    }

    /// When the task's current node was launched.
    pub fn launched_ms(&self, key: TaskKey) -> Result<Option<u64>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        Ok(task.node.as_ref().map(|n| n.launched_ms))
    }
}

mod form;
mod invariants;
mod jobs;
mod plan;
mod providers;

#[cfg(test)]
mod tests;
