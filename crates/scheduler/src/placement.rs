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

    /// Register a provider or replace its profile, ratings and slots. A new provider starts
    /// disconnected until `provider_connected`.
    pub fn upsert_provider(&mut self, id: ProviderId, update: ProviderUpdate) -> Result<(), SchedulerError> {
        update.profile.validate()?;
        if let Some(ratings) = &update.ratings {
            ratings.validate()?;
        }
        if update.slots > SLOTS_MAX {
            return Err(SchedulerError::TooMany {
                what: "slots",
                count: update.slots as usize,
                limit: SLOTS_MAX as usize,
            });
        }
        let slot = match self.provider_slots.get(&id) {
            Some(slot) => *slot,
            None => {
                let record = ProviderRecord {
                    id,
                    profile: None,
                    ratings: None,
                    signature: None,
                    slots: 0,
                    copies: Vec::new(),
                    connected: false,
                    last_contact_ms: 0,
                    cache: Vec::new(),
                    eligible: false,
                    effective_speed: 0.0,
                    effective_bandwidth: 0.0,
                    pi_simplified: 0.0,
                    index_at: None,
                    busy_bucket: 0,
                    plan_used: 0,
                };
                let slot = match self.free_records.pop() {
                    Some(slot) => {
                        self.providers[slot as usize] = Some(record);
                        slot
                    }
                    None => {
                        self.providers.push(Some(record));
                        (self.providers.len() - 1) as u32
                    }
                };
                self.provider_slots.insert(id, slot);
                slot
            }
        };
        let record = self.record_mut(slot);
        record.profile = Some(update.profile);
        if update.ratings.is_some() {
            record.ratings = update.ratings;
        }
        record.slots = update.slots;
        self.rederive(slot);
        Ok(())
    }

    /// New availability ratings (after `AvailabilityHistory::record`).
    pub fn update_ratings(&mut self, id: ProviderId, ratings: AvailabilityRatings) -> Result<(), SchedulerError> {
        ratings.validate()?;
        let slot = self.slot_of(id)?;
        self.record_mut(slot).ratings = Some(ratings);
        self.rederive(slot);
        Ok(())
    }

    /// New weekly signature (full version).
    pub fn update_signature(&mut self, id: ProviderId, signature: &WeeklySignature) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record_mut(slot);
        match &mut record.signature {
            Some(existing) => (**existing).clone_from(signature),
            None => record.signature = Some(Box::new(signature.clone())),
        }
        Ok(())
    }

    /// The provider is in contact (a message, an open long poll).
    pub fn provider_connected(&mut self, id: ProviderId, now_ms: u64) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record(slot);
        if !record.connected && !record.copies.is_empty() {
            self.silent_watch.remove(&(record.last_contact_ms, slot));
        }
        let record = self.record_mut(slot);
        record.connected = true;
        record.last_contact_ms = record.last_contact_ms.max(now_ms);
        self.refresh_index(slot);
        Ok(())
    }

    /// The provider is out of contact since `last_contact_ms`: no new work, and its nodes fail
    /// once it has been silent for `silence_ms_max`.
    pub fn provider_disconnected(&mut self, id: ProviderId, last_contact_ms: u64) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record(slot);
        if !record.connected {
            return Ok(());
        }
        let record = self.record_mut(slot);
        record.connected = false;
        record.last_contact_ms = last_contact_ms;
        if !record.copies.is_empty() {
            self.silent_watch.insert((last_contact_ms, slot));
        }
        self.refresh_index(slot);
        Ok(())
    }

    /// What the engine's cache holds (`CacheContents`), replacing what it held.
    pub fn set_cache_contents(&mut self, id: ProviderId, elements: &[ElementKey]) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let mut wanted: Vec<ElementKey> = elements.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(self.config.cache_elements_max);
        let old = std::mem::take(&mut self.record_mut(slot).cache);
        for key in &old {
            if wanted.binary_search(key).is_err() {
                self.holders_remove(*key, slot);
            }
        }
        for key in &wanted {
            if old.binary_search(key).is_err() {
                let holders =
                    self.holders.entry(*key).or_insert_with(|| Holders { list: Vec::new(), position: HashMap::new() });
                holders.position.insert(slot, holders.list.len() as u32);
                holders.list.push(slot);
            }
        }
        self.record_mut(slot).cache = wanted;
        Ok(())
    }

    fn holders_remove(&mut self, key: ElementKey, slot: u32) {
        let Some(holders) = self.holders.get_mut(&key) else { return };
        if let Some(position) = holders.position.remove(&slot) {
            holders.list.swap_remove(position as usize);
            if let Some(moved) = holders.list.get(position as usize) {
                holders.position.insert(*moved, position);
            }
        }
        if holders.list.is_empty() {
            self.holders.remove(&key);
        }
    }

    /// Forget a provider. Returns the tasks that lost a copy; those that lost their last copy
    /// wait again.
    pub fn remove_provider(&mut self, id: ProviderId) -> Result<Vec<TaskKey>, SchedulerError> {
        let slot = self.slot_of(id)?;
        let copies = self.record(slot).copies.clone();
        for task in &copies {
            self.remove_copy(*task, slot);
        }
        self.set_cache_contents(id, &[])?;
        if let Some(at) = self.record(slot).index_at {
            self.index_remove(slot, at);
        }
        self.provider_slots.remove(&id);
        self.provider_terms.remove(&id);
        self.providers[slot as usize] = None;
        self.free_records.push(slot);
        Ok(copies)
    }

    /// The provider's tasks now.
    pub fn provider_copies(&self, id: ProviderId) -> Result<&[TaskKey], SchedulerError> {
        Ok(&self.record(self.slot_of(id)?).copies)
    }

    /// Recompute derived values after a profile or ratings change, and re-index.
    fn rederive(&mut self, slot: u32) {
        let window_min = self.config.rating_window_minutes_min;
        let mean = self.config.mean_task;
        let record = self.record_mut(slot);
        let (eligible, speed, bandwidth, pi) = match (&record.profile, &record.ratings) {
            (Some(profile), Some(ratings)) => {
                let speed = profile.cpu_gflops * ratings.cpu;
                let bandwidth = profile.bandwidth_mb_per_s * ratings.bandwidth;
                let pi = weighted_availability(
                    ratings.cpu,
                    ratings.bandwidth,
                    profile.cpu_gflops,
                    profile.bandwidth_mb_per_s,
                    &mean,
                );
                (ratings.window_minutes >= window_min && speed > 0.0 && speed.is_finite(), speed, bandwidth, pi)
            }
            _ => (false, 0.0, 0.0, 0.0),
        };
        record.eligible = eligible;
        record.effective_speed = speed;
        record.effective_bandwidth = bandwidth;
        record.pi_simplified = pi;
        let bucket = speed_bucket(speed);
        if bucket != record.busy_bucket {
            let old = record.busy_bucket;
            record.busy_bucket = bucket;
            let copies = record.copies.clone();
            for task in copies {
                if let Some(node) = self.tasks.get(&task).and_then(|t| t.node.as_ref()) {
                    self.busy.remove(&(node.class, node.priority, old, slot, task));
                    self.busy.insert((node.class, node.priority, bucket, slot, task));
                }
            }
        }
        self.refresh_index(slot);
    }

    fn wants_index(record: &ProviderRecord) -> bool {
        record.eligible && record.connected && record.free_slots() > record.plan_used
    }

    fn refresh_index(&mut self, slot: u32) {
        let record = self.record(slot);
        let want = Self::wants_index(record);
        let bucket = speed_bucket(record.effective_speed);
        match (record.index_at, want) {
            (Some(at), true) if at.bucket == bucket => {}
            (Some(at), _) => {
                self.index_remove(slot, at);
                if want {
                    let at = self.index.insert(bucket, slot);
                    self.record_mut(slot).index_at = Some(at);
                }
            }
            (None, true) => {
                let at = self.index.insert(bucket, slot);
                self.record_mut(slot).index_at = Some(at);
            }
            (None, false) => {}
        }
    }

    fn index_remove(&mut self, slot: u32, at: IndexPosition) {
        if let Some(moved) = self.index.remove(at) {
            self.record_mut(moved.slot).index_at = Some(moved.to);
        }
        self.record_mut(slot).index_at = None;
    }

    // ---- jobs and tasks --------------------------------------------------------------------

    fn effective_reliability(&self, spec: &JobSpec) -> f64 {
        spec.reliability.unwrap_or(self.config.reliability_default).max(self.config.reliability_default)
    }

    pub fn add_job(&mut self, key: JobKey, spec: JobSpec) -> Result<(), SchedulerError> {
        spec.validate()?;
        if self.jobs.contains_key(&key) {
            return Err(SchedulerError::DuplicateJob(key));
        }
        let reliability = self.effective_reliability(&spec);
        self.jobs.insert(
            key,
            JobRecord { spec, reliability, waiting: BTreeSet::new(), tasks: 0, nodes_running: 0, carry: 0.0 },
        );
        Ok(())
    }

    /// Change a job's requirements (for example its node limit). Waiting tasks that follow the
    /// job's priority move with it; running copies keep the priority they were launched with.
    pub fn update_job(&mut self, key: JobKey, spec: JobSpec) -> Result<(), SchedulerError> {
        spec.validate()?;
        let reliability = self.effective_reliability(&spec);
        let job = self.jobs.get_mut(&key).ok_or(SchedulerError::UnknownJob(key))?;
        let priority_changed = job.spec.priority != spec.priority;
        job.spec = spec;
        job.reliability = reliability;
        if priority_changed {
            let priority = job.spec.priority;
            let waiting = std::mem::take(&mut job.waiting);
            for (Reverse(old), seq, task) in waiting {
                let record = self.tasks.get_mut(&task).expect("waiting task exists");
                if record.explicit_priority.is_none() {
                    record.priority = priority;
                }
                let _ = old;
                job.waiting.insert((Reverse(record.priority), seq, task));
            }
        }
        Ok(())
    }

    /// Forget a job that has no tasks left.
    pub fn remove_job(&mut self, key: JobKey) -> Result<(), SchedulerError> {
        let job = self.jobs.get(&key).ok_or(SchedulerError::UnknownJob(key))?;
        if job.tasks > 0 {
            return Err(SchedulerError::JobHasTasks { job: key, tasks: job.tasks });
        }
        self.jobs.remove(&key);
        self.jobs_waiting.remove(&key);
        self.job_terms.remove(&key);
        Ok(())
    }

    pub fn job_power(&self, key: JobKey) -> Result<JobPower, SchedulerError> {
        let job = self.jobs.get(&key).ok_or(SchedulerError::UnknownJob(key))?;
        let c = job.spec.node.cpu_gflops;
        Ok(JobPower {
            nodes_running: job.nodes_running,
            nodes_max: job.spec.nodes_max,
            node_cpu_gflops: c,
            power_delivered_gflops: job.nodes_running as f64 * c,
            power_requested_gflops: job.spec.nodes_max.map(|n| n as f64 * c),
            tasks_waiting: job.waiting.len() as u64,
            tasks: job.tasks,
            reliability: job.reliability,
        })
    }

    /// A task of `job` waiting to be placed.
    pub fn add_task(&mut self, job_key: JobKey, key: TaskKey, spec: TaskSpec) -> Result<(), SchedulerError> {
        validate_elements(&spec.elements)?;
        if self.tasks.contains_key(&key) {
            return Err(SchedulerError::DuplicateTask(key));
        }
        let config_shape = self.config.mean_task;
        let job = self.jobs.get_mut(&job_key).ok_or(SchedulerError::UnknownJob(job_key))?;
        if job.spec.shared_elements.len() + spec.elements.len() > TASK_ELEMENTS_MAX {
            return Err(SchedulerError::TooMany {
                what: "elements of a task",
                count: job.spec.shared_elements.len() + spec.elements.len(),
                limit: TASK_ELEMENTS_MAX,
            });
        }
        let listed = !job.spec.shared_elements.is_empty() || !spec.elements.is_empty();
        let data_in_mb = if listed {
            job.spec.shared_elements.iter().chain(&spec.elements).map(|e| e.size_mb).sum()
        } else {
            job.spec.shape.unwrap_or(config_shape).data_in_mb
        };
        let priority = spec.priority.unwrap_or(job.spec.priority);
        let seq = self.next_seq;
        self.next_seq += 1;
        job.waiting.insert((Reverse(priority), seq, key));
        job.tasks += 1;
        self.jobs_waiting.insert(job_key);
        self.tasks_waiting += 1;
        self.tasks.insert(
            key,
            TaskRecord {
                job: job_key,
                explicit_priority: spec.priority,
                priority,
                seq,
                elements: spec.elements.into_boxed_slice(),
                data_in_mb,
                node: None,
            },
        );
        Ok(())
    }

    /// The task finished (first result wins): forget it. Returns the other members, whose
    /// copies are to be removed.
    pub fn task_finished(&mut self, key: TaskKey, winner: ProviderId) -> Result<Vec<ProviderId>, SchedulerError> {
        let members = self.forget_task(key)?;
        Ok(members.into_iter().filter(|p| *p != winner).collect())
    }

    /// The task was cancelled or failed for good: forget it. Returns the members whose copies
    /// are to be removed.
    pub fn remove_task(&mut self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        self.forget_task(key)
    }

    fn forget_task(&mut self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        let job_key = task.job;
        let mut members = Vec::new();
        if let Some(node) = &task.node {
            let slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
            for slot in slots {
                members.push(self.record(slot).id);
                self.remove_copy(key, slot);
            }
        }
        // remove_copy may have put it back in the waiting set.
        self.recheck.remove(&key);
        let task = self.tasks.remove(&key).expect("task exists");
        let job = self.jobs.get_mut(&job_key).expect("job of a task exists");
        if let Some(node) = &task.node {
            let _ = node;
            job.nodes_running -= 1;
            self.nodes_running -= 1;
        } else if job.waiting.remove(&(Reverse(task.priority), task.seq, key)) {
            self.tasks_waiting -= 1;
        }
        if job.waiting.is_empty() {
            self.jobs_waiting.remove(&job_key);
        }
        job.tasks -= 1;
        Ok(members)
    }

    /// One copy ended without a result (the engine lost it, handed it back, or the coordinator
    /// reclaimed it). Returns true if the task lost its last copy and waits again.
    pub fn copy_ended(&mut self, key: TaskKey, provider: ProviderId) -> Result<bool, SchedulerError> {
        let slot = self.slot_of(provider)?;
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        let on_it = task.node.as_ref().is_some_and(|n| n.members.iter().any(|m| m.slot == slot));
        if !on_it {
            return Err(SchedulerError::NotRunningThere { task: key, provider });
        }
        Ok(self.remove_copy(key, slot))
    }

    /// Record a node that already runs (after a restart, from the store's assignments).
    pub fn restore_node(
        &mut self,
        key: TaskKey,
        members: &[ProviderId],
        launched_ms: u64,
    ) -> Result<(), SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        if task.node.is_some() {
            return Err(SchedulerError::AlreadyRunning(key));
        }
        let mut slots = Vec::new();
        for id in members {
            let slot = self.slot_of(*id)?;
            if !slots.contains(&slot) {
                slots.push(slot);
            }
        }
        let pis: Vec<(u32, f64)> = slots.iter().map(|s| (*s, self.record(*s).pi_simplified)).collect();
        self.launch(key, &pis, launched_ms);
        Ok(())
    }

    /// The providers running a task, or empty if it waits.
    pub fn members_of(&self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        Ok(task.node.iter().flat_map(|n| n.members.iter().map(|m| self.record(m.slot).id)).collect())
    }

    /// Register a node for a waiting task (no capacity checks: callers check).
    fn launch(&mut self, key: TaskKey, members: &[(u32, f64)], now_ms: u64) {
        let task = self.tasks.get_mut(&key).expect("task exists");
        let job = self.jobs.get_mut(&task.job).expect("job exists");
        if job.waiting.remove(&(Reverse(task.priority), task.seq, key)) {
            self.tasks_waiting -= 1;
        }
        if job.waiting.is_empty() {
            self.jobs_waiting.remove(&task.job);
        }
        job.nodes_running += 1;
        self.nodes_running += 1;
        let class = job.spec.paying as u8;
        let priority = task.priority;
        task.node = Some(NodeRecord {
            members: members.iter().map(|(slot, pi)| NodeMember { slot: *slot, pi: *pi }).collect(),
            launched_ms: now_ms,
            class,
            priority,
        });
        for (slot, _) in members {
            let record = self.providers[*slot as usize].as_mut().expect("member exists");
            record.copies.push(key);
            self.copies_running += 1;
            self.busy.insert((class, priority, record.busy_bucket, *slot, key));
            if !record.connected && record.copies.len() == 1 {
                self.silent_watch.insert((record.last_contact_ms, *slot));
            }
            self.refresh_index(*slot);
        }
    }

    /// Remove one copy; returns true if that was the node's last and the task waits again.
    fn remove_copy(&mut self, key: TaskKey, slot: u32) -> bool {
        let Some(task) = self.tasks.get_mut(&key) else { return false };
        let Some(node) = task.node.as_mut() else { return false };
        let Some(index) = node.members.iter().position(|m| m.slot == slot) else { return false };
        node.members.swap_remove(index);
        let (class, priority) = (node.class, node.priority);
        let emptied = node.members.is_empty();
        let record = self.providers[slot as usize].as_mut().expect("member exists");
        if let Some(i) = record.copies.iter().position(|t| *t == key) {
            record.copies.swap_remove(i);
            self.copies_running -= 1;
        }
        self.busy.remove(&(class, priority, record.busy_bucket, slot, key));
        if !record.connected && record.copies.is_empty() {
            self.silent_watch.remove(&(record.last_contact_ms, slot));
        }
        self.refresh_index(slot);
        if !emptied {
            self.recheck_if_silent(key);
        }
        if emptied {
            self.recheck.remove(&key);
            let task = self.tasks.get_mut(&key).expect("task exists");
            task.node = None;
            let job = self.jobs.get_mut(&task.job).expect("job exists");
            job.nodes_running -= 1;
            self.nodes_running -= 1;
            job.waiting.insert((Reverse(task.priority), task.seq, key));
            self.jobs_waiting.insert(task.job);
            self.tasks_waiting += 1;
        }
        emptied
    }

    /// After a node lost a member: if enough of the others were already silent past a limit
    /// that a plan examined, the crossing scan will not look at them again; remember the node.
    fn recheck_if_silent(&mut self, key: TaskKey) {
        let Some(examined) = self.silence_examined_ms else { return };
        let Some(node) = self.tasks.get(&key).and_then(|t| t.node.as_ref()) else { return };
        let crossed = node
            .members
            .iter()
            .filter(|m| {
                let record = self.record(m.slot);
                !record.connected && record.last_contact_ms <= examined
            })
            .count();
        let threshold = (self.config.silent_members_for_failure as usize).min(node.members.len()).max(1);
        if crossed >= threshold {
            self.recheck.insert(key);
        }
    }

    // ---- the candidate test ----------------------------------------------------------------

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

    /// What to do now: replace failed nodes, launch waiting tasks on new virtual nodes, preempt
    /// where needed. The model is left unchanged; call `apply` once the plan is carried out.
    pub fn plan(&mut self, now_ms: u64, seed: u64) -> Plan {
        let mut rng = SplitMix64::new(seed);
        let mut plan = Plan { now_ms, ..Plan::default() };
        let mut scratch = PlanScratch::default();
        let mut jobs: HashMap<JobKey, JobScratch> = HashMap::new();
        let mut heap: BinaryHeap<(i32, Reverse<u64>, TaskKey, bool)> = BinaryHeap::new();

        for key in self.failed_nodes(now_ms) {
            let task = &self.tasks[&key];
            let node = task.node.as_ref().expect("failed node is running");
            let abandoned = node.members.iter().map(|m| self.record(m.slot).id).collect();
            plan.failed_nodes.push(FailedNode { task: key, job: task.job, abandoned });
            let job = &self.jobs[&task.job];
            jobs.entry(task.job)
                .or_insert(JobScratch { nodes_delta: 0, carry: job.carry, blocked: false })
                .nodes_delta -= 1;
            heap.push((task.priority, Reverse(task.seq), key, true));
        }
        for job_key in &self.jobs_waiting {
            let job = &self.jobs[job_key];
            if let Some((Reverse(priority), seq, task)) = job.waiting.first() {
                heap.push((*priority, Reverse(*seq), *task, false));
            }
        }

        while let Some((priority, Reverse(seq), key, relaunch)) = heap.pop() {
            if plan.nodes.len() >= self.config.nodes_per_plan_max as usize {
                break;
            }
            let job_key = self.tasks[&key].job;
            let job = &self.jobs[&job_key];
            let state = jobs.entry(job_key).or_insert(JobScratch { nodes_delta: 0, carry: job.carry, blocked: false });
            if state.blocked {
                continue;
            }
            let limit = job.spec.nodes_max.map_or(i64::MAX, |n| n as i64);
            if job.nodes_running as i64 + state.nodes_delta >= limit {
                state.blocked = true;
                continue;
            }
            let carry = state.carry;
            let Ok(ctx) = self.task_context(key, now_ms) else { continue };
            match self.form_node(&ctx, carry, relaunch, &mut rng, &mut scratch, &mut plan) {
                Ok((node, carry_out)) => {
                    let state = jobs.get_mut(&job_key).expect("job scratch exists");
                    state.nodes_delta += 1;
                    state.carry = carry_out;
                    plan.nodes.push(node);
                }
                Err(reason) => {
                    jobs.get_mut(&job_key).expect("job scratch exists").blocked = true;
                    plan.unplaced.push(Unplaced { job: job_key, task: key, reason });
                }
            }
            if !relaunch && !jobs[&job_key].blocked {
                let job = &self.jobs[&job_key];
                let next = job
                    .waiting
                    .range((std::ops::Bound::Excluded((Reverse(priority), seq, key)), std::ops::Bound::Unbounded))
                    .next();
                if let Some((Reverse(priority), seq, task)) = next {
                    heap.push((*priority, Reverse(*seq), *task, false));
                }
            }
        }

        // Put the model back as it was.
        while let Some((at, slot)) = scratch.removed.pop() {
            if let Some(moved) = self.index.restore(at, slot) {
                self.record_mut(moved.slot).index_at = Some(moved.to);
            }
            self.record_mut(slot).index_at = Some(at);
        }
        for slot in scratch.touched.drain(..) {
            self.record_mut(slot).plan_used = 0;
        }
        for key in scratch.busy_removed.drain(..) {
            self.busy.insert(key);
        }
        if now_ms >= self.config.silence_ms_max {
            plan.silence_examined_ms = Some(now_ms - self.config.silence_ms_max);
            plan.rechecked = self.recheck.iter().copied().collect();
        }
        let mut carries: Vec<(JobKey, f64)> = jobs.into_iter().map(|(job, s)| (job, s.carry)).collect();
        carries.sort_by_key(|(job, _)| *job);
        plan.carries = carries;
        plan
    }

    /// Tasks whose nodes have failed: enough members silent for `silence_ms_max`. Highest
    /// priority first, then oldest.
    fn failed_nodes(&self, now_ms: u64) -> Vec<TaskKey> {
        let cutoff = now_ms.saturating_sub(self.config.silence_ms_max);
        if now_ms < self.config.silence_ms_max {
            return Vec::new();
        }
        let silent = |slot: u32| {
            let record = self.record(slot);
            !record.connected && record.last_contact_ms <= cutoff
        };
        let mut seen = HashSet::new();
        let mut failed = Vec::new();
        let mut examine = |key: &TaskKey, failed: &mut Vec<TaskKey>| {
            if !seen.insert(*key) {
                return;
            }
            let Some(node) = self.tasks.get(key).and_then(|t| t.node.as_ref()) else { return };
            let silent_members = node.members.iter().filter(|m| silent(m.slot)).count();
            let threshold = (self.config.silent_members_for_failure as usize).min(node.members.len()).max(1);
            if silent_members >= threshold {
                failed.push(*key);
            }
        };
        for key in &self.recheck {
            examine(key, &mut failed);
        }
        let from = match self.silence_examined_ms {
            Some(examined) if examined >= cutoff => std::ops::Bound::Excluded((cutoff, u32::MAX)),
            Some(examined) => std::ops::Bound::Excluded((examined, u32::MAX)),
            None => std::ops::Bound::Unbounded,
        };
        for (_, slot) in self.silent_watch.range((from, std::ops::Bound::Included((cutoff, u32::MAX)))) {
            for key in &self.record(*slot).copies {
                examine(key, &mut failed);
            }
        }
        failed.sort_by_key(|key| {
            let task = &self.tasks[key];
            (Reverse(task.priority), task.seq)
        });
        failed
    }

    fn form_node(
        &mut self,
        ctx: &TaskContext,
        carry: f64,
        relaunch: bool,
        rng: &mut SplitMix64,
        scratch: &mut PlanScratch,
        plan: &mut Plan,
    ) -> Result<(PlannedNode, f64), UnplacedReason> {
        let mut formation = NodeFormation::new(ctx.reliability, carry, self.config.members_max);
        let mut members: Vec<(u32, PlannedMember)> = Vec::new();
        let mut victims: Vec<BusyKey> = Vec::new();
        let is_member = |members: &[(u32, PlannedMember)], slot: u32| members.iter().any(|(s, _)| *s == slot);
        let offer = |formation: &mut NodeFormation,
                     members: &mut Vec<(u32, PlannedMember)>,
                     slot: u32,
                     a: &Assessment,
                     id: ProviderId,
                     preempts: Option<TaskKey>|
         -> bool {
            match formation.offer(a.pi) {
                Offer::Take { .. } => {
                    members.push((
                        slot,
                        PlannedMember {
                            provider: id,
                            pi: a.pi,
                            expected_seconds: a.expected_seconds,
                            holds_elements: a.holds_elements,
                            preempts,
                        },
                    ));
                    true
                }
                Offer::Decline => false,
            }
        };

        // 1. Engines that already hold the task's largest elements.
        for element in ctx.elements.iter().take(2) {
            let Some(holders) = self.holders.get(&element.key) else { continue };
            let count = holders.list.len() as u64;
            for _ in 0..count.min(self.config.cache_draws_max as u64) {
                if formation.is_complete() {
                    break;
                }
                let slot = holders.list[rng.below(count) as usize];
                if is_member(&members, slot) {
                    continue;
                }
                let a = self.assess(slot, ctx, true, true);
                if a.failed == 0 {
                    offer(&mut formation, &mut members, slot, &a, self.record(slot).id, None);
                }
            }
        }

        // 2. Random draws among free providers of the right effective speed.
        let (low, high) = ctx.buckets;
        let count = self.index.count(low, high);
        let mut misses = 0;
        while !formation.is_complete() && count > 0 && misses < self.config.draws_per_member_max {
            let Some((_, slot)) = self.index.nth(low, rng.below(count as u64) as u32) else { break };
            if is_member(&members, slot) {
                misses += 1;
                continue;
            }
            let a = self.assess(slot, ctx, true, true);
            if a.failed != 0 {
                misses += 1;
                continue;
            }
            misses = 0;
            offer(&mut formation, &mut members, slot, &a, self.record(slot).id, None);
        }

        // 3. A bounded scan from a random start, when draws keep missing.
        if !formation.is_complete() && count > 0 {
            let start = rng.below(count as u64) as u32;
            for i in 0..count.min(self.config.scan_per_node_max) {
                if formation.is_complete() {
                    break;
                }
                let Some((_, slot)) = self.index.nth(low, (start + i) % count) else { break };
                if is_member(&members, slot) {
                    continue;
                }
                let a = self.assess(slot, ctx, true, true);
                if a.failed == 0 {
                    offer(&mut formation, &mut members, slot, &a, self.record(slot).id, None);
                }
            }
        }

        // 4. Preempt lower priorities.
        if !formation.is_complete()
            && self.config.preemption
            && scratch.preemptions < self.config.preemptions_per_plan_max
        {
            let gap = self.config.preemption_priority_gap_min.max(0);
            let priority_max = ctx.priority.saturating_sub(gap);
            let mut examined = 0;
            // Classes in key order: not paying (0) before paying (1), then by priority.
            let mut cursor: (u8, i32) = (0, i32::MIN);
            'classes: while let Some(first) = self.busy.range((cursor.0, cursor.1, 0, 0, TaskKey(0))..).next() {
                let (class, priority) = (first.0, first.1);
                let allowed = if class == 0 {
                    ctx.paying || priority <= priority_max
                } else {
                    ctx.paying && priority <= priority_max
                };
                if !allowed {
                    // Every later class has a higher priority or pays: out of reach too.
                    break;
                }
                // From a random bucket of the range to its end, then from its start: the scan is
                // bounded, and must not keep examining the same edge bucket.
                let start = low + rng.below((high - low) as u64 + 1) as u16;
                let budget = self.config.preemption_scan_max.saturating_sub(examined) as usize;
                let upper = self.busy.range(
                    (class, priority, start, 0, TaskKey(0))..=(class, priority, high, u32::MAX, TaskKey(u64::MAX)),
                );
                let lower =
                    self.busy.range((class, priority, low, 0, TaskKey(0))..(class, priority, start, 0, TaskKey(0)));
                let candidates: Vec<BusyKey> = upper.chain(lower).take(budget).copied().collect();
                for key in candidates {
                    examined += 1;
                    if formation.is_complete() {
                        break 'classes;
                    }
                    let (_, _, _, slot, victim) = key;
                    if victim == ctx.task || is_member(&members, slot) || scratch.victims.contains(&(slot, victim)) {
                        continue;
                    }
                    let a = self.assess(slot, ctx, false, true);
                    if a.failed == 0
                        && offer(&mut formation, &mut members, slot, &a, self.record(slot).id, Some(victim))
                    {
                        victims.push(key);
                    }
                }
                if examined >= self.config.preemption_scan_max || formation.is_complete() {
                    break;
                }
                cursor = match (class, priority) {
                    (1, i32::MAX) => break,
                    (c, i32::MAX) => (c + 1, i32::MIN),
                    (c, p) => (c, p + 1),
                };
            }
        }

        if !formation.is_launchable() {
            return Err(if members.is_empty() {
                UnplacedReason::NoCandidate
            } else {
                UnplacedReason::ReliabilityUnreachable { reached: formation.reliability() }
            });
        }

        // Commit into the scratch state: fill slots, take full providers out of the index.
        for (slot, member) in &members {
            if member.preempts.is_some() {
                continue;
            }
            let record = self.record_mut(*slot);
            if record.plan_used == 0 {
                scratch.touched.push(*slot);
            }
            record.plan_used += 1;
            if !Self::wants_index(record)
                && let Some(at) = record.index_at
            {
                self.index_remove(*slot, at);
                scratch.removed.push((at, *slot));
            }
        }
        for key in victims {
            self.busy.remove(&key);
            scratch.busy_removed.push(key);
            scratch.victims.insert((key.3, key.4));
            scratch.preemptions += 1;
            plan.preemptions.push(Preemption { provider: self.record(key.3).id, task: key.4, by: ctx.task });
        }
        let pis: Vec<f64> = members.iter().map(|(_, m)| m.pi).collect();
        let node = PlannedNode {
            task: ctx.task,
            job: ctx.job,
            reliability: node_reliability(&pis),
            target_reliability: formation.target_reliability(),
            members: members.into_iter().map(|(_, m)| m).collect(),
            requested_seconds: ctx.requested_seconds,
            relaunch,
        };
        Ok((node, formation.carry_out()))
    }

    /// Record a plan that has been carried out. Parts that no longer fit the model (a provider
    /// gone, a slot taken, a task finished meanwhile) are skipped and counted.
    pub fn apply(&mut self, plan: &Plan) -> ApplyReport {
        let mut report = ApplyReport::default();
        for failed in &plan.failed_nodes {
            let Some(task) = self.tasks.get(&failed.task) else { continue };
            let Some(node) = &task.node else { continue };
            let slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
            for slot in slots {
                self.remove_copy(failed.task, slot);
            }
            report.nodes_failed += 1;
        }
        for preemption in &plan.preemptions {
            let Some(slot) = self.provider_slots.get(&preemption.provider).copied() else { continue };
            let running_there = self
                .tasks
                .get(&preemption.task)
                .and_then(|t| t.node.as_ref())
                .is_some_and(|n| n.members.iter().any(|m| m.slot == slot));
            if running_there {
                report.copies_preempted += 1;
                if self.remove_copy(preemption.task, slot) {
                    report.tasks_requeued.push(preemption.task);
                }
            }
        }
        for node in &plan.nodes {
            let waiting = self.tasks.get(&node.task).is_some_and(|t| t.node.is_none());
            if !waiting {
                report.nodes_skipped += 1;
                report.members_skipped += node.members.len() as u32;
                continue;
            }
            let mut members: Vec<(u32, f64)> = Vec::with_capacity(node.members.len());
            for member in &node.members {
                let usable = self.provider_slots.get(&member.provider).copied().filter(|slot| {
                    let record = self.record(*slot);
                    record.connected && record.free_slots() > 0 && !members.iter().any(|(s, _)| s == slot)
                });
                match usable {
                    Some(slot) => members.push((slot, member.pi)),
                    None => report.members_skipped += 1,
                }
            }
            if members.is_empty() {
                report.nodes_skipped += 1;
                continue;
            }
            report.nodes_launched += 1;
            report.copies_launched += members.len() as u32;
            self.launch(node.task, &members, plan.now_ms);
        }
        for (job, carry) in &plan.carries {
            if let Some(job) = self.jobs.get_mut(job) {
                job.carry = *carry;
            }
        }
        if let Some(examined) = plan.silence_examined_ms {
            self.silence_examined_ms = Some(self.silence_examined_ms.map_or(examined, |e| e.max(examined)));
        }
        for key in &plan.rechecked {
            self.recheck.remove(key);
        }
        report
    }

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

    /// Checks every internal invariant (for tests): counts, index membership, capacity.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut copies = 0u64;
        let mut indexed = 0usize;
        for (slot, record) in self.providers.iter().enumerate() {
            let Some(record) = record else { continue };
            let slot = slot as u32;
            if record.copies.len() as u32 > record.slots {
                return Err(format!("{} holds {} copies in {} slots", record.id, record.copies.len(), record.slots));
            }
            if record.plan_used != 0 {
                return Err(format!("{} has plan_used {}", record.id, record.plan_used));
            }
            copies += record.copies.len() as u64;
            let want = Self::wants_index(record);
            if want != record.index_at.is_some() {
                return Err(format!("{} indexed {:?}, wanted {}", record.id, record.index_at, want));
            }
            if let Some(at) = record.index_at {
                indexed += 1;
                if at.bucket != speed_bucket(record.effective_speed) {
                    return Err(format!("{} in bucket {} for speed {}", record.id, at.bucket, record.effective_speed));
                }
            }
            for task in &record.copies {
                let node = self
                    .tasks
                    .get(task)
                    .and_then(|t| t.node.as_ref())
                    .ok_or(format!("{task} on {} is not running", record.id))?;
                if !node.members.iter().any(|m| m.slot == slot) {
                    return Err(format!("{task} on {} is not a member", record.id));
                }
                if !self.busy.contains(&(node.class, node.priority, record.busy_bucket, slot, *task)) {
                    return Err(format!("{task} on {} missing from busy", record.id));
                }
            }
            let watched = self.silent_watch.contains(&(record.last_contact_ms, slot));
            if watched != (!record.connected && !record.copies.is_empty()) {
                return Err(format!("{} silent watch {}", record.id, watched));
            }
        }
        if copies != self.copies_running || self.busy.len() as u64 != copies {
            return Err(format!("copies {} counted {} busy {}", copies, self.copies_running, self.busy.len()));
        }
        if indexed != self.index.len() {
            return Err(format!("indexed {} but index holds {}", indexed, self.index.len()));
        }
        let mut waiting = 0u64;
        let mut nodes = 0u64;
        for (key, task) in &self.tasks {
            let job = self.jobs.get(&task.job).ok_or(format!("{key} without job"))?;
            let in_waiting = job.waiting.contains(&(Reverse(task.priority), task.seq, *key));
            match &task.node {
                Some(node) => {
                    nodes += 1;
                    if in_waiting || node.members.is_empty() {
                        return Err(format!("{key} running yet waiting or empty"));
                    }
                    let mut slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
                    slots.sort_unstable();
                    slots.dedup();
                    if slots.len() != node.members.len() {
                        return Err(format!("{key} twice on one provider"));
                    }
                }
                None => {
                    waiting += 1;
                    if !in_waiting {
                        return Err(format!("{key} neither running nor waiting"));
                    }
                }
            }
        }
        if waiting != self.tasks_waiting || nodes != self.nodes_running {
            return Err(format!("waiting {waiting}/{} nodes {nodes}/{}", self.tasks_waiting, self.nodes_running));
        }
        for (key, job) in &self.jobs {
            let running = self.tasks.values().filter(|t| t.job == *key && t.node.is_some()).count() as u32;
            if running != job.nodes_running {
                return Err(format!("{key} counts {} nodes, has {running}", job.nodes_running));
            }
            if job.waiting.is_empty() == self.jobs_waiting.contains(key) {
                return Err(format!("{key} waiting set out of step"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
