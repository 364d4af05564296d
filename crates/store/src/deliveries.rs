//! Results delivered outside the server, behind `Tx::deliveries()`: where a client asked a
//! job's final results (or one task's) to go, and each result's delivery (pending with its
//! next try, delivered, or failed for good) with its attempts and last error.

use idlegrid_types::{JobId, TaskIndex};

use crate::StoreResult;

/// Where a job's final results go: every task's, or only `task`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    pub job: JobId,
    pub task: Option<TaskIndex>,
    pub url: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_try_ms`.
    Pending,
    Delivered,
    /// Given up after the last attempt allowed.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One task's result on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub job: JobId,
    pub task: TaskIndex,
    /// The result delivered (its id among the job's results).
    pub result_id: i64,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_try_ms: u64,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
}

/// How many of a job's deliveries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

pub trait DeliveryTx {
    /// Set where the job's results go, replacing an earlier target.
    fn set_delivery_target(&mut self, target: &DeliveryTarget) -> StoreResult<()>;
    fn delivery_target(&mut self, job: JobId) -> StoreResult<Option<DeliveryTarget>>;
    /// Queue the delivery of a task's result, due at `now_ms`; a delivery of the task queued
    /// before starts again from no attempts (a new target, or a new result).
    fn queue_delivery(&mut self, job: JobId, task: TaskIndex, result_id: i64, now_ms: u64) -> StoreResult<()>;
    /// Pending deliveries due at `now_ms`, the earliest due first, at most `limit`.
    fn due_deliveries(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<DeliveryRow>>;
    /// Record an attempt on a task's delivery: its state, attempts so far, next try, error.
    #[allow(clippy::too_many_arguments)]
    fn delivery_attempted(
        &mut self,
        job: JobId,
        task: TaskIndex,
        state: DeliveryState,
        attempts: u32,
        next_try_ms: u64,
        error: Option<&str>,
        delivered_ms: Option<u64>,
    ) -> StoreResult<()>;
    /// A job's deliveries of tasks after `after_task` (all: `None`), by task index, at most `limit`.
    fn deliveries_of_job(
        &mut self,
        job: JobId,
        after_task: Option<TaskIndex>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRow>>;
    fn delivery_counts(&mut self, job: JobId) -> StoreResult<DeliveryCounts>;
}
