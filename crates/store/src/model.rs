//! Rows as the coordinator sees them.

use std::collections::BTreeMap;

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, JobCounts, JobId, JobProperties, JobState, PartyId, Role, SessionId,
    TaskFailureInfo, TaskIndex, TaskState,
};

/// One line of the log server (P4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Assigned by the store.
    pub id: u64,
    pub time_ms: u64,
    pub received_ms: u64,
    pub party: PartyId,
    pub role: Role,
    pub level: String,
    pub component: String,
    pub job: Option<JobId>,
    pub message: String,
}

/// Which log lines an operator asks for; every given field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogFilter {
    pub component: Option<String>,
    pub party: Option<PartyId>,
    pub job: Option<JobId>,
    pub level: Option<String>,
    /// Received at or after.
    pub since_ms: Option<u64>,
    /// Received before.
    pub until_ms: Option<u64>,
    pub limit: u32,
}

/// Counts across the whole database, for operators' health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    pub tasks_queued: u64,
    pub tasks_running: u64,
    pub jobs_active: u64,
    /// Engines heard from since the given time.
    pub engines_connected: u64,
}

/// An operator's decision that a party's certificate and key are no longer honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub party: PartyId,
    pub reason: String,
    pub revoked_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyRow {
    pub id: PartyId,
    pub role: Role,
    pub public_key: [u8; 32],
    pub name: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    pub inbound_acked: u64,
    pub outbound_head: u64,
    pub outbound_acked: u64,
    pub last_seen_ms: u64,
}

/// A session with the party that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSession {
    pub party: PartyId,
    pub session: SessionRow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: u64,
    pub reply_to: Option<u64>,
    /// The message, encoded as JSON.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRow {
    pub id: PartyId,
    pub session: Option<SessionId>,
    pub state: NodeState,
    pub slots: u32,
    /// Tasks the engine wants to hold (running and staged).
    pub capacity: u32,
    /// Active assignments now.
    pub assigned: u32,
    pub last_contact_ms: u64,
}

/// A provider that can take `room` more tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRoom {
    pub id: PartyId,
    pub session: SessionId,
    pub room: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: JobId,
    pub client: PartyId,
    pub properties: JobProperties,
    pub state: JobState,
    pub counts: JobCounts,
    pub created_ms: u64,
    /// Why the server holds the job stopped (its cost maximum, the client's account limit),
    /// as opposed to a stop by the client.
    pub hold: Option<String>,
}

/// A task to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub index: TaskIndex,
    pub priority: i32,
    pub executable: ElementHash,
    pub data: BTreeMap<String, ElementHash>,
    pub params: Vec<u8>,
    /// The trace its spans join (a W3C `traceparent`), when the request that added it was traced.
    pub trace: Option<String>,
}

/// Database key of a task (its row), distinct from the client's (job, index).
pub type TaskKey = i64;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub key: TaskKey,
    pub job: JobId,
    pub index: TaskIndex,
    pub state: TaskState,
    pub priority: i32,
    pub executable: ElementHash,
    pub data: BTreeMap<String, ElementHash>,
    pub params: Vec<u8>,
    pub attempts: u32,
    pub checkpoint: Option<ElementHash>,
    pub progress: f32,
    pub status: Option<Payload>,
    pub cpu_ms: u64,
    /// The trace its spans join (a W3C `traceparent`), when the request that added it was traced.
    pub trace: Option<String>,
}

/// What the coordinator keeps about checking a task's result (P6.1, P6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssuranceRow {
    /// The coordinator's JSON; the store does not read it.
    pub state: String,
    /// More replicas to place; a task with none waiting is not scheduled again.
    pub replicas_wanted: u32,
}

/// A queued task in scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedTask {
    pub key: TaskKey,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignmentRowState {
    /// The engine holds the task.
    Active,
    /// Ended: result or failure received, handed back, removed, or the engine went silent.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    pub id: AssignmentId,
    pub task: TaskKey,
    pub provider: PartyId,
    pub state: AssignmentRowState,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewResult {
    pub task: TaskKey,
    pub job: JobId,
    pub index: TaskIndex,
    pub state: TaskState,
    pub result: Option<Payload>,
    pub failure: Option<TaskFailureInfo>,
    pub cpu_ms: u64,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub id: i64,
    pub result: NewResult,
    pub delivered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub session: SessionId,
    pub job: JobId,
    pub replay: Replay,
    /// Results with an id at or below this were already put in the session's outbox.
    pub cursor: i64,
    /// The job's completion was announced to this session.
    pub completion_sent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementGrant {
    pub kind: ElementKind,
    pub name: String,
    pub size: u64,
}

/// A notice waiting to reach a client (P4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub id: i64,
    pub client: PartyId,
    /// "webhook" or "email".
    pub channel: String,
    /// The notice as JSON.
    pub body: String,
    pub attempts: u32,
    pub next_try_ms: u64,
}

/// What one owner stores: bytes and number of elements granted to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElementUsage {
    pub bytes: u64,
    pub elements: u64,
}
