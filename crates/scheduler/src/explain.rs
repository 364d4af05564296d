//! Why a task waits (like HTCondor's `condor_q -better-analyze`): for each requirement of the
//! candidate test, how many registered providers it rules out, and how many it alone rules out
//! (they meet every other requirement), so a user sees what to relax. Plus what holds the task
//! back besides providers: the job's node limit (its requested power is delivered) or a
//! reliability that the matching providers cannot reach.
//!
//! Cost: one pass over all providers with the full candidate test; meant for a user's question,
//! not for the placement loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::placement::{
    FAIL_BANDWIDTH, FAIL_CONNECTED, FAIL_CONNECTIVITY, FAIL_DISK, FAIL_FREE_SLOT, FAIL_MEASURED, FAIL_MEMORY,
    FAIL_RELIABILITY, FAIL_TERMS, FAIL_TOO_FAST, FAIL_TOO_SLOW, REQUIREMENTS, Scheduler, TaskContext,
};
use crate::profile::Connectivity;
use crate::vnode::node_reliability;
use crate::{JobKey, SchedulerError, TaskKey};

/// One requirement of the candidate test, with its threshold for this task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Profile measured and availability recorded for long enough.
    Measured {
        window_minutes_min: u32,
    },
    /// In contact now.
    Connected,
    /// A free slot: not busy with a paying job.
    FreeSlot,
    MemoryMb {
        min: u64,
    },
    DiskMb {
        min: u64,
    },
    ConstantConnectivity,
    /// Intermittent connectivity is enough (rules nobody out; not listed).
    AnyConnectivity,
    /// Effective bandwidth `B a_b` at least this.
    BandwidthMin {
        mb_per_s: f64,
    },
    /// `T_E` at most this (meets the requested time).
    NotTooSlow {
        seconds_max: f64,
    },
    /// `T_E` at least this (no more power than asked for, P5.7).
    NotTooFast {
        seconds_min: f64,
    },
    /// Reliability `pi` at least this.
    ReliabilityMin {
        pi_min: f64,
    },
    /// The provider's requirement over jobs and the job's over engines hold (`terms`); listed
    /// when some provider or the job has one.
    Terms {
        present: bool,
    },
}

impl Requirement {
    /// Whether the task asks for it at all (a memory of 0 MB rules nobody out).
    pub fn applies(&self) -> bool {
        match self {
            Requirement::MemoryMb { min } | Requirement::DiskMb { min } => *min > 0,
            Requirement::BandwidthMin { mb_per_s } => *mb_per_s > 0.0,
            Requirement::AnyConnectivity => false,
            Requirement::Terms { present } => *present,
            _ => true,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Measured { window_minutes_min } => {
                write!(f, "profile measured, availability known for {window_minutes_min} min")
            }
            Requirement::Connected => write!(f, "in contact now"),
            Requirement::FreeSlot => write!(f, "a free slot (not busy with a paying job)"),
            Requirement::MemoryMb { min } => write!(f, "memory >= {min} MB"),
            Requirement::DiskMb { min } => write!(f, "disk >= {min} MB"),
            Requirement::ConstantConnectivity => write!(f, "constant connectivity"),
            Requirement::AnyConnectivity => write!(f, "any connectivity"),
            Requirement::BandwidthMin { mb_per_s } => write!(f, "effective bandwidth B*a_b >= {mb_per_s:.3} MB/s"),
            Requirement::NotTooSlow { seconds_max } => write!(f, "expected time T_E <= {seconds_max:.0} s (meets T_R)"),
            Requirement::NotTooFast { seconds_min } => {
                write!(f, "expected time T_E >= {seconds_min:.0} s (no more power than asked)")
            }
            Requirement::ReliabilityMin { pi_min } => write!(f, "reliability pi >= {pi_min:.3}"),
            Requirement::Terms { .. } => write!(f, "the provider's requirement over jobs, the job's over providers"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequirementReport {
    pub requirement: Requirement,
    /// Providers that do not meet it.
    pub ruled_out: u64,
    /// Providers that meet every other requirement but not this one.
    pub ruled_out_alone: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainedState {
    /// Waiting; `ahead_in_job` tasks of its job come before it.
    Waiting {
        ahead_in_job: u64,
    },
    Running {
        members: u32,
        reliability: f64,
        launched_ms: u64,
    },
}

/// What holds a waiting task back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocker {
    /// The job runs as many nodes as its requested power allows (P5.7).
    NodeLimitReached { nodes_running: u32, nodes_max: u32 },
    /// No provider meets every requirement.
    NoMatchingProvider,
    /// The best `members_max` matching providers together reach only `best`.
    ReliabilityUnreachable { best: f64, requested: f64 },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::NodeLimitReached { nodes_running, nodes_max } => {
                write!(
                    f,
                    "the job already runs {nodes_running} of its {nodes_max} nodes (its requested power); the task starts when one finishes"
                )
            }
            Blocker::NoMatchingProvider => {
                write!(f, "no provider meets every requirement; relax the one that rules out most providers alone")
            }
            Blocker::ReliabilityUnreachable { best, requested } => {
                write!(
                    f,
                    "matching providers reach a reliability of only {best:.4} together, below the requested {requested:.4}"
                )
            }
        }
    }
}

/// The answer to "why does this task wait?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub task: TaskKey,
    pub job: JobKey,
    pub state: ExplainedState,
    pub requested_seconds: f64,
    /// Effective speeds `C a_c` (GFLOPS) the candidates must lie within.
    pub effective_speed_range: (f64, f64),
    pub reliability: f64,
    pub providers: u64,
    pub requirements: Vec<RequirementReport>,
    pub providers_matching: u64,
    /// `1 - prod(1 - pi)` over the best `members_max` matching providers.
    pub best_reliability: f64,
    pub blockers: Vec<Blocker>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            ExplainedState::Waiting { ahead_in_job } => {
                writeln!(f, "{} of {}: waiting, {ahead_in_job} tasks of its job ahead of it", self.task, self.job)?
            }
            ExplainedState::Running { members, reliability, .. } => writeln!(
                f,
                "{} of {}: running on a virtual node of {members} providers, reliability {reliability:.4}",
                self.task, self.job
            )?,
        }
        let (low, high) = self.effective_speed_range;
        writeln!(
            f,
            "requested time T_R {:.0} s; candidates have effective speed C*a_c in [{low:.3}, {high:.3}] GFLOPS; requested reliability {:.4}",
            self.requested_seconds, self.reliability
        )?;
        writeln!(
            f,
            "{} providers registered, {} meet every requirement; together the best of them reach a reliability of {:.4}",
            self.providers, self.providers_matching, self.best_reliability
        )?;
        writeln!(f)?;
        writeln!(f, "{:<66} {:>10} {:>10}", "requirement", "rules out", "only this")?;
        for report in &self.requirements {
            writeln!(
                f,
                "{:<66} {:>10} {:>10}",
                report.requirement.to_string(),
                report.ruled_out,
                report.ruled_out_alone
            )?;
        }
        if !self.blockers.is_empty() {
            writeln!(f)?;
            for blocker in &self.blockers {
                writeln!(f, "blocked: {blocker}")?;
            }
        }
        Ok(())
    }
}

impl Scheduler {
    /// Explain a task (waiting or running) at `now_ms`.
    pub fn explain(&self, key: TaskKey, now_ms: u64) -> Result<Explanation, SchedulerError> {
        let ctx = self.task_context(key, now_ms)?;
        let task = &self.tasks[&key];
        let job = &self.jobs[&task.job];
        let state = match &task.node {
            Some(node) => {
                let pis: Vec<f64> = node.members.iter().map(|m| m.pi).collect();
                ExplainedState::Running {
                    members: node.members.len() as u32,
                    reliability: node_reliability(&pis),
                    launched_ms: node.launched_ms,
                }
            }
            None => ExplainedState::Waiting {
                ahead_in_job: job.waiting.range(..(Reverse(task.priority), task.seq, key)).count() as u64,
            },
        };
        let requirements = self.requirements_of(&ctx);
        let mut ruled_out = [0u64; REQUIREMENTS];
        let mut alone = [0u64; REQUIREMENTS];
        let mut matching = 0u64;
        let members_max = self.config.members_max as usize;
        let mut best: BinaryHeap<Reverse<OrderedPi>> = BinaryHeap::new();
        let mut providers = 0u64;
        for (slot, record) in self.providers.iter().enumerate() {
            if record.is_none() {
                continue;
            }
            providers += 1;
            let a = self.assess(slot as u32, &ctx, true, false);
            for (bit, count) in ruled_out.iter_mut().enumerate() {
                if a.failed & (1 << bit) != 0 {
                    *count += 1;
                }
            }
            if a.failed.count_ones() == 1 {
                alone[a.failed.trailing_zeros() as usize] += 1;
            }
            if a.failed == 0 {
                matching += 1;
                best.push(Reverse(OrderedPi(a.pi)));
                if best.len() > members_max {
                    best.pop();
                }
            }
        }
        let best_pis: Vec<f64> = best.into_iter().map(|Reverse(OrderedPi(pi))| pi).collect();
        let best_reliability = node_reliability(&best_pis);
        let mut blockers = Vec::new();
        if task.node.is_none() {
            if let Some(nodes_max) = job.spec.nodes_max
                && job.nodes_running >= nodes_max
            {
                blockers.push(Blocker::NodeLimitReached { nodes_running: job.nodes_running, nodes_max });
            }
            if matching == 0 {
                blockers.push(Blocker::NoMatchingProvider);
            } else if best_reliability < ctx.reliability {
                blockers.push(Blocker::ReliabilityUnreachable { best: best_reliability, requested: ctx.reliability });
            }
        }
        Ok(Explanation {
            task: key,
            job: task.job,
            state,
            requested_seconds: ctx.requested_seconds,
            effective_speed_range: ctx.speed_range,
            reliability: ctx.reliability,
            providers,
            requirements: requirements
                .into_iter()
                .enumerate()
                .filter(|(_, requirement)| requirement.applies())
                .map(|(bit, requirement)| RequirementReport {
                    requirement,
                    ruled_out: ruled_out[bit],
                    ruled_out_alone: alone[bit],
                })
                .collect(),
            providers_matching: matching,
            best_reliability,
            blockers,
        })
    }

    /// Explain the first waiting task of a job (`None` when none waits).
    pub fn explain_job(&self, key: JobKey, now_ms: u64) -> Result<Option<Explanation>, SchedulerError> {
        let job = self.jobs.get(&key).ok_or(SchedulerError::UnknownJob(key))?;
        match job.waiting.first() {
            Some((_, _, task)) => self.explain(*task, now_ms).map(Some),
            None => Ok(None),
        }
    }

    fn requirements_of(&self, ctx: &TaskContext) -> Vec<Requirement> {
        let all = [
            (FAIL_MEASURED, Requirement::Measured { window_minutes_min: self.config.rating_window_minutes_min }),
            (FAIL_CONNECTED, Requirement::Connected),
            (FAIL_FREE_SLOT, Requirement::FreeSlot),
            (FAIL_MEMORY, Requirement::MemoryMb { min: ctx.memory_mb }),
            (FAIL_DISK, Requirement::DiskMb { min: ctx.disk_mb }),
            (
                FAIL_CONNECTIVITY,
                if ctx.connectivity == Connectivity::Constant {
                    Requirement::ConstantConnectivity
                } else {
                    Requirement::AnyConnectivity
                },
            ),
            (FAIL_BANDWIDTH, Requirement::BandwidthMin { mb_per_s: ctx.bandwidth_min }),
            (FAIL_TOO_SLOW, Requirement::NotTooSlow { seconds_max: ctx.seconds_max }),
            (FAIL_TOO_FAST, Requirement::NotTooFast { seconds_min: ctx.seconds_min }),
            (FAIL_RELIABILITY, Requirement::ReliabilityMin { pi_min: ctx.pi_min }),
            (FAIL_TERMS, Requirement::Terms { present: self.has_terms() }),
        ];
        debug_assert!(all.iter().enumerate().all(|(i, (bit, _))| *bit == 1 << i));
        all.into_iter().map(|(_, requirement)| requirement).collect()
    }
}

/// `pi` ordered for the heap of the best providers (NaN never reaches here: `assess` refuses it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedPi(f64);

impl Eq for OrderedPi {}

impl PartialOrd for OrderedPi {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedPi {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
