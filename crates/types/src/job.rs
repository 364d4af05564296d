//! What a client asks for when it creates a job (P1.1, P1.2), and how a task can fail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Connectivity of a node in a virtual cluster request (P1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    Intermittent,
    Constant,
}

/// The virtual cluster a client asks for (P1.2): node attributes and facts about the work.
/// Stored with the job; the server places its tasks on virtual nodes that meet it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualClusterRequest {
    pub node_cpu_gflops: Option<f64>,
    pub node_memory_mb: Option<u64>,
    pub node_disk_mb: Option<u64>,
    pub node_bandwidth_mbps: Option<f64>,
    pub connectivity: Option<Connectivity>,
    pub node_count: Option<u32>,
    /// Probability in [0, 1) that a virtual node delivers.
    pub reliability: Option<f64>,
    pub work_per_task_gflop_hours: Option<f64>,
    pub data_in_mb: Option<f64>,
    pub data_out_mb: Option<f64>,
}

impl VirtualClusterRequest {
    /// Check every figure; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        use limits::*;
        if let Some(r) = self.reliability
            && !(0.0..1.0).contains(&r)
        {
            return Err(format!("cluster.reliability = {r} must be in [0, 1)"));
        }
        let non_negative = [
            ("cluster.node_cpu_gflops", self.node_cpu_gflops),
            ("cluster.node_bandwidth_mbps", self.node_bandwidth_mbps),
            ("cluster.work_per_task_gflop_hours", self.work_per_task_gflop_hours),
            ("cluster.data_in_mb", self.data_in_mb),
            ("cluster.data_out_mb", self.data_out_mb),
        ];
        for (field, value) in non_negative {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=QUANTITY_MAX).contains(&v))
            {
                return Err(format!("{field} = {v} must be a number from 0 to {QUANTITY_MAX:e}"));
            }
        }
        for (field, value) in
            [("cluster.node_memory_mb", self.node_memory_mb), ("cluster.node_disk_mb", self.node_disk_mb)]
        {
            if let Some(v) = value
                && v > CLUSTER_NODE_MB_MAX
            {
                return Err(format!("{field} = {v} is more than {CLUSTER_NODE_MB_MAX}"));
            }
        }
        if let Some(count) = self.node_count
            && (count == 0 || count > CLUSTER_NODES_MAX)
        {
            return Err(format!("cluster.node_count = {count} is outside 1..={CLUSTER_NODES_MAX}"));
        }
        Ok(())
    }
}

/// Limits every task of a job runs under; engines cap them further by their owners' budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskLimitsSpec {
    pub memory_bytes_max: u64,
    pub cpu_seconds_max: u64,
    pub result_bytes_max: u64,
    pub checkpoint_bytes_max: u64,
    /// Run the tasks with NaNs as the processor makes them instead of one canonical pattern:
    /// faster floating point, but replicas on different processors may disagree in a NaN's
    /// bits, so a job that compares results (a validation policy) cannot ask for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub native_nans: bool,
}

impl Default for TaskLimitsSpec {
    fn default() -> Self {
        TaskLimitsSpec {
            memory_bytes_max: 256 << 20,
            cpu_seconds_max: 3600,
            result_bytes_max: 16 << 20,
            checkpoint_bytes_max: 16 << 20,
            native_nans: false,
        }
    }
}

/// Highest limits a job may ask for, whatever engines allow.
pub mod limits {
    pub const JOB_NAME_BYTES_MAX: usize = 200;
    pub const TASK_MEMORY_BYTES_MAX: u64 = 4 << 30;
    pub const TASK_CPU_SECONDS_MAX: u64 = 7 * 24 * 3600;
    pub const TASK_RESULT_BYTES_MAX: u64 = 1 << 30;
    pub const TASK_CHECKPOINT_BYTES_MAX: u64 = 1 << 30;
    pub const PRIORITY_ABS_MAX: i32 = 1_000_000;
    pub const ATTEMPTS_MAX: u32 = 100;
    pub const HINTS_MAX: usize = 64;
    pub const HINT_BYTES_MAX: usize = 256;
    /// Longest requirement or rank expression of a job (the market language's own bound).
    pub const EXPRESSION_BYTES_MAX: usize = 4096;
    /// Largest single amount of money anywhere (a job's maximum cost, a deposit, a payout, one
    /// transfer of the ledger): a million currency units. Bounding every amount keeps every
    /// sum of the ledger far from the 64-bit limit, so one request can never make the shared
    /// accounts overflow for everybody else.
    pub const AMOUNT_MICROS_MAX: i64 = 1_000_000 * 1_000_000;
    /// Latest deadline a job may name: the year 2200, in milliseconds since the epoch.
    pub const DEADLINE_UNIX_MS_MAX: u64 = 7_258_118_400_000;
    /// Largest figure of a cluster request's node (memory, disk: a petabyte in MB).
    pub const CLUSTER_NODE_MB_MAX: u64 = 1 << 30;
    /// Largest node count of a cluster request.
    pub const CLUSTER_NODES_MAX: u32 = 10_000_000;
    /// Largest power, speed, bandwidth or size of work a job may name (GFLOPS, MB/s, MB, GFLOP-hours).
    pub const QUANTITY_MAX: f64 = 1e12;
}

/// Properties of a job (P1.1), stored with it and reported with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobProperties {
    pub name: String,
    /// Higher runs first; a task may override it.
    pub priority: i32,
    pub deadline_unix_ms: Option<u64>,
    /// Maximum cost in micro-units of the account's currency.
    pub cost_max_micros: Option<u64>,
    pub power_max_gflops: Option<f64>,
    pub power_requested_gflops: Option<f64>,
    pub cluster: Option<VirtualClusterRequest>,
    pub scheduling_hints: BTreeMap<String, String>,
    pub task_limits: TaskLimitsSpec,
    /// How many times a task is placed before it fails for good when its engines vanish.
    pub attempts_max: u32,
    /// How much agreement between replicas a result needs before it is final (P6.1).
    pub validation: crate::ValidationPolicy,
    /// A wasm element that decides whether two results of a task agree, for results that may
    /// differ slightly; `None`: byte for byte.
    pub validator: Option<crate::ElementHash>,
    /// What the job asks of an engine, in the requirement language of the market
    /// (`engine.memory_mb >= 512 and engine.os == "linux"`); `None`: any engine.
    pub requirement: Option<String>,
    /// Which engines the job prefers, a number from the engine's attributes, highest first
    /// (`engine.gflops`); `None`: no preference.
    pub rank: Option<String>,
    /// How often (seconds) engines upload a running task's checkpoint to the server, so that a
    /// task taken from an engine that vanished resumes from it elsewhere (P1.5); the server
    /// bounds it from below. `None`: the server's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_upload_secs: Option<u64>,
}

impl Default for JobProperties {
    fn default() -> Self {
        JobProperties {
            name: String::new(),
            priority: 0,
            deadline_unix_ms: None,
            cost_max_micros: None,
            power_max_gflops: None,
            power_requested_gflops: None,
            cluster: None,
            scheduling_hints: BTreeMap::new(),
            task_limits: TaskLimitsSpec::default(),
            attempts_max: 5,
            validation: crate::ValidationPolicy::None,
            validator: None,
            requirement: None,
            rank: None,
            checkpoint_upload_secs: None,
        }
    }
}

impl JobProperties {
    /// Check every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        use limits::*;
        if self.name.len() > JOB_NAME_BYTES_MAX {
            return Err(format!("job name is {} bytes; at most {JOB_NAME_BYTES_MAX} allowed", self.name.len()));
        }
        if self.priority.abs() > PRIORITY_ABS_MAX {
            return Err(format!("priority {} is outside -{PRIORITY_ABS_MAX}..={PRIORITY_ABS_MAX}", self.priority));
        }
        let limits = &self.task_limits;
        let ranges = [
            ("task_limits.memory_bytes_max", limits.memory_bytes_max, 1 << 20, TASK_MEMORY_BYTES_MAX),
            ("task_limits.cpu_seconds_max", limits.cpu_seconds_max, 1, TASK_CPU_SECONDS_MAX),
            ("task_limits.result_bytes_max", limits.result_bytes_max, 1, TASK_RESULT_BYTES_MAX),
            ("task_limits.checkpoint_bytes_max", limits.checkpoint_bytes_max, 0, TASK_CHECKPOINT_BYTES_MAX),
        ];
        for (field, value, low, high) in ranges {
            if value < low || value > high {
                return Err(format!("{field} = {value} is outside {low}..={high}"));
            }
        }
        if self.attempts_max == 0 || self.attempts_max > ATTEMPTS_MAX {
            return Err(format!("attempts_max = {} is outside 1..={ATTEMPTS_MAX}", self.attempts_max));
        }
        if self.scheduling_hints.len() > HINTS_MAX {
            return Err(format!("{} scheduling hints; at most {HINTS_MAX} allowed", self.scheduling_hints.len()));
        }
        if let Some(cost) = self.cost_max_micros
            && (cost == 0 || cost > AMOUNT_MICROS_MAX as u64)
        {
            return Err(format!(
                "cost_max_micros = {cost} is outside 1..={AMOUNT_MICROS_MAX} (micro-units: at most a million currency units)"
            ));
        }
        if let Some(secs) = self.checkpoint_upload_secs
            && (secs == 0 || secs > TASK_CPU_SECONDS_MAX)
        {
            return Err(format!("checkpoint_upload_secs = {secs} is outside 1..={TASK_CPU_SECONDS_MAX}"));
        }
        if let Some(deadline) = self.deadline_unix_ms
            && deadline > DEADLINE_UNIX_MS_MAX
        {
            return Err(format!(
                "deadline_unix_ms = {deadline} is after {DEADLINE_UNIX_MS_MAX} (milliseconds since 1970)"
            ));
        }
        for (name, value) in &self.scheduling_hints {
            if name.len() > HINT_BYTES_MAX || value.len() > HINT_BYTES_MAX {
                let name: String = name.chars().take(40).collect();
                return Err(format!(
                    "scheduling hint '{}' (or its value) is longer than {HINT_BYTES_MAX} bytes",
                    crate::Untrusted(&name)
                ));
            }
        }
        let positive =
            [("power_max_gflops", self.power_max_gflops), ("power_requested_gflops", self.power_requested_gflops)];
        for (field, value) in positive {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0 && v <= QUANTITY_MAX)
            {
                return Err(format!("{field} = {v} must be a positive number up to {QUANTITY_MAX:e}"));
            }
        }
        self.validation.validate().map_err(|e| format!("validation: {e}"))?;
        if self.task_limits.native_nans && self.validation != crate::ValidationPolicy::None {
            return Err("task_limits.native_nans cannot go with a validation policy: replicas on different processors may disagree in a NaN's bits; use canonical NaNs (the default) to compare results".into());
        }
        if self.validator.is_some() && self.validation == crate::ValidationPolicy::None {
            return Err("validator is set but validation is none: a validator compares replicas, so ask for a quorum, adaptive or credibility policy".into());
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        for (field, source) in [("requirement", &self.requirement), ("rank", &self.rank)] {
            if let Some(source) = source
                && source.len() > EXPRESSION_BYTES_MAX
            {
                return Err(format!("{field} is {} bytes long; at most {EXPRESSION_BYTES_MAX} allowed", source.len()));
            }
        }
        Ok(())
    }
}

/// The class of a task failure, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The executable element is not a valid module, imports what the sandbox forbids, or has
    /// no entry point.
    InvalidModule,
    Trap,
    OutOfMemory,
    CpuTimeExceeded,
    /// Exited with a non-zero code, or returned without a result.
    NoResult,
    /// The task itself reported failure.
    Reported,
    /// An element of the task could not be fetched or verified.
    ElementUnavailable,
    /// The task's engines vanished more times than the job allows.
    AttemptsExhausted,
    /// A fault of the engine, not of the task.
    Engine,
    /// The replicas' results never reached the agreement the job's validation policy asks for.
    Inconclusive,
}

impl FailureKind {
    /// Failures that would happen again on any engine: retrying is pointless.
    pub fn is_deterministic(self) -> bool {
        !matches!(self, FailureKind::ElementUnavailable | FailureKind::Engine)
    }
}

/// Why a task failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailureInfo {
    pub kind: FailureKind,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_properties_are_valid() {
        JobProperties::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut p = JobProperties::default();
        p.task_limits.memory_bytes_max = 1;
        assert!(p.validate().unwrap_err().contains("task_limits.memory_bytes_max"));
        let mut p = JobProperties { attempts_max: 0, ..JobProperties::default() };
        assert!(p.validate().unwrap_err().contains("attempts_max"));
        p.attempts_max = 3;
        p.cluster = Some(VirtualClusterRequest { reliability: Some(1.0), ..Default::default() });
        assert!(p.validate().unwrap_err().contains("cluster.reliability"));
        p.cluster = None;
        p.power_requested_gflops = Some(f64::NAN);
        assert!(p.validate().unwrap_err().contains("power_requested_gflops"));
        p.power_requested_gflops = None;
        p.name = "x".repeat(500);
        assert!(p.validate().unwrap_err().contains("job name"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<JobProperties>(r#"{"name":"a","prority":3}"#).unwrap_err();
        assert!(err.to_string().contains("prority"), "{err}");
    }
}
