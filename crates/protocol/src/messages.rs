//! The message catalogue of the seed (P8.6), one enum per direction. The four enums together,
//! as [`Message`], are the whole catalogue; each channel endpoint decodes only the direction it
//! accepts, so a provider cannot send `CreateJob` and a client cannot send `NodeStatus`.
//!
//! Where the seed uses one name in two directions (`Task`, `TaskStatus`, `GetTask`), each
//! direction has its own payload. Messages added to the seed's illustrative list: `Launch`
//! (P1.3), `Detach`, and `Stop`/`RemoveTask` towards providers (the engine "receives messages to
//! remove, suspend or resume tasks").

use std::collections::BTreeMap;

use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, ElementRef, JobCounts, JobId, JobProperties, JobState, TaskFailureInfo,
    TaskIndex, TaskLimitsSpec, TaskState,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::payload::{Payload, base64_bytes};

/// A task as the client defines it: code, named data elements and parameters (P1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub index: TaskIndex,
    pub executable: ElementHash,
    #[serde(default)]
    pub data: BTreeMap<String, ElementHash>,
    #[serde(default, with = "base64_bytes")]
    pub params: Vec<u8>,
    /// Overrides the job's priority for this task.
    #[serde(default)]
    pub priority: Option<i32>,
}

/// Which results an `Attach` replays before streaming new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// Final results no session of this client has acknowledged yet (results wait on the server
    /// for a client that was away, P1.6).
    #[default]
    Undelivered,
    /// Every final result the server holds for the job.
    All,
    /// Only results that arrive from now on.
    None,
}

/// Which interim statuses of a task a client wants: at most one every `every_secs`, and only
/// when progress moved `every_percent` since the last one sent (each bound when given). A
/// task's final status always goes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterimPattern {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::payload::finite_f32_opt")]
    pub every_percent: Option<f32>,
}

impl InterimPattern {
    /// Check the bounds: a period of at most a day, a step of progress within 0..=100.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(secs) = self.every_secs
            && secs > 86_400
        {
            return Err(format!("interim every_secs = {secs} is over a day (86400)"));
        }
        if let Some(percent) = self.every_percent
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(format!("interim every_percent = {percent} is outside 0..=100"));
        }
        Ok(())
    }
}

/// Machine-readable class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    UnknownJob,
    UnknownTask,
    UnknownElement,
    UnknownSession,
    Conflict,
    LimitExceeded,
    Unsupported,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnknownJob => "unknown_job",
            ErrorCode::UnknownTask => "unknown_task",
            ErrorCode::UnknownElement => "unknown_element",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error condition (the seed's `Error` message, in every direction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReport {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorReport { code, message: message.into() }
    }
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

/// A job as the server reports it (the seed's `JobProperties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub job: JobId,
    pub properties: JobProperties,
    pub state: JobState,
    pub counts: JobCounts,
    pub created_unix_ms: u64,
}

/// A task's status as the client sees it (the seed's server-to-client `TaskStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusReport {
    pub job: JobId,
    pub task: TaskIndex,
    pub state: TaskState,
    /// 0.0..=1.0 as last reported by the task.
    #[serde(deserialize_with = "crate::payload::finite_f32")]
    pub progress: f32,
    /// The last interim status the task sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Payload>,
    /// The final result, for a succeeded task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<TaskFailureInfo>,
    pub cpu_ms: u64,
    /// How many times the task was placed on an engine.
    pub attempts: u32,
    /// The job's counts when this status was sent.
    pub counts: JobCounts,
    /// The latest checkpoint the server holds of a task not yet final (P1.5), in answers to
    /// `GetTaskStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ElementRef>,
}

/// Registered element as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementInfo {
    pub element: ElementRef,
    pub kind: ElementKind,
    pub name: String,
}

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
#[expect(
    clippy::large_enum_variant,
    reason = "a message lives only while it is encoded or handled; boxing would only add allocations"
)]
pub enum ClientToServer {
    /// Ask for a `Config` message.
    GetConfig,
    /// Sent on startup and whenever client settings change.
    ClientProfile {
        name: String,
        software_version: String,
    },
    CreateJob {
        job: JobId,
        properties: JobProperties,
    },
    /// Add tasks to a job (a batch of the seed's `Task` message).
    Task {
        job: JobId,
        tasks: Vec<TaskSpec>,
    },
    /// Launch every task of the job that is not launched yet (P1.3).
    Launch {
        job: JobId,
    },
    /// Stop a job, or one of its tasks.
    Stop {
        job: JobId,
        task: Option<TaskIndex>,
    },
    /// Resume a stopped job or task.
    Resume {
        job: JobId,
        task: Option<TaskIndex>,
    },
    /// Remove (cancel) a job and everything it holds on the server.
    RemoveJob {
        job: JobId,
    },
    RemoveTask {
        job: JobId,
        task: TaskIndex,
    },
    GetJobProperties {
        job: JobId,
    },
    /// Ask for a `Contents` message: the client's jobs.
    GetContents,
    GetExecutableElement {
        hash: ElementHash,
    },
    GetDataElement {
        hash: ElementHash,
    },
    RemoveExecutableElement {
        hash: ElementHash,
    },
    RemoveDataElement {
        hash: ElementHash,
    },
    /// Register an uploaded executable element under a name.
    ExecutableElement {
        element: ElementRef,
        name: String,
    },
    /// Register an uploaded data element under a name.
    DataElement {
        element: ElementRef,
        name: String,
    },
    /// Subscribe this session to a job's task statuses and results.
    Attach {
        job: JobId,
        #[serde(default)]
        replay: Replay,
        /// Only this task's statuses and result (P1.4); `None`: every task's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskIndex>,
        /// The client's own pattern of interim statuses; `None`: every one the server gets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interim: Option<InterimPattern>,
    },
    Detach {
        job: JobId,
    },
    /// Ask for a checkpoint of a task, returned in a `Task` message.
    GetTask {
        job: JobId,
        task: TaskIndex,
    },
    /// Ask for a `TaskStatus` of one task (also for results of running tasks, P1.4).
    GetTaskStatus {
        job: JobId,
        task: TaskIndex,
    },
    CloseSession,
    Error(ErrorReport),
    /// Deliver the job's final results (or only `task`'s) to `url` as they arrive, and those
    /// already in: an HTTP PUT of each result's bytes, retried with back-off until the
    /// receiver answers 2xx. A new URL replaces the old. `url: None` only asks how delivery
    /// goes. Answered with `ExternalDelivery`.
    ExternalDelivery {
        job: JobId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskIndex>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    Heartbeat,
    /// Ask to pay money into the client's account: a pending request that an operator (or the
    /// payment processor the operator configured) approves once the payment arrives;
    /// `reference` makes a retried request the same request. Answered with `MoneyRequest`.
    Deposit {
        amount_micros: i64,
        reference: String,
    },
    /// Ask for an `Account` message.
    GetAccount,
    /// Where notices go when a job completes, fails or is stopped (P4.12). Empty: none.
    SetNotices {
        webhook_url: Option<String>,
        webhook_secret: Option<String>,
        email: Option<String>,
    },
    /// Ask why a task of a job waits (the given one, or its first waiting one); answered with
    /// `Explanation`.
    ExplainJob {
        job: JobId,
        #[serde(default)]
        task: Option<TaskIndex>,
    },
}

/// A party's money as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountInfo {
    pub account: String,
    /// Posted balance (credits minus debits), micro-units.
    pub balance_micros: i64,
    /// What may still be spent: balance minus reservations plus the overdraft allowed.
    pub available_micros: i64,
    pub overdraft_max_micros: Option<i64>,
    pub over_limit: bool,
}

/// Whether a request pays money in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoneyRequestKind {
    Deposit,
    Payout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoneyRequestState {
    /// Waiting for an operator; a payout's amount is reserved meanwhile.
    Pending,
    /// The money moved.
    Approved,
    /// Nothing moved.
    Rejected,
}

/// A deposit or payout request as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoneyRequestInfo {
    /// The request's number, which operators approve or reject.
    pub id: u64,
    /// The account the money goes into or comes out of.
    pub account: String,
    pub kind: MoneyRequestKind,
    pub amount_micros: i64,
    pub reference: String,
    pub state: MoneyRequestState,
    pub created_ms: u64,
    #[serde(default)]
    pub decided_ms: Option<u64>,
    /// `operator:<id>` or `payment:<adapter>`.
    #[serde(default)]
    pub decided_by: Option<String>,
    /// The decision's note: the payment's reference, or why it was rejected.
    #[serde(default)]
    pub note: String,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
#[expect(
    clippy::large_enum_variant,
    reason = "a message lives only while it is encoded or handled; boxing would only add allocations"
)]
pub enum ServerToClient {
    /// A checkpoint of a task, in reply to `GetTask` (`None` when the task has none yet).
    Task {
        job: JobId,
        task: TaskIndex,
        checkpoint: Option<ElementRef>,
    },
    TaskStatus(TaskStatusReport),
    Config {
        settings: BTreeMap<String, String>,
    },
    JobProperties(JobInfo),
    /// The client's jobs.
    Contents {
        jobs: Vec<JobInfo>,
    },
    Account(AccountInfo),
    ExecutableElement(ElementInfo),
    DataElement(ElementInfo),
    Error(ErrorReport),
    /// Where a job's results are delivered and how far delivery got, in reply to
    /// `ExternalDelivery`.
    ExternalDelivery(DeliveryReport),
    Heartbeat,
    Explanation(JobExplanation),
    /// A deposit request, in reply to `Deposit`.
    MoneyRequest(MoneyRequestInfo),
}

/// Where a job's results are delivered outside the server, and each delivery's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    pub job: JobId,
    /// Only this task's result is delivered; `None`: every task's.
    pub task: Option<TaskIndex>,
    /// The target, without credentials, query or fragment; `None`: no delivery was asked.
    pub url: Option<String>,
    pub pending: u64,
    pub delivered: u64,
    /// Given up after the last attempt.
    pub failed: u64,
    /// The first deliveries by task index (at most [`DELIVERIES_LISTED_MAX`]).
    pub deliveries: Vec<DeliveryInfo>,
}

/// Most deliveries a [`DeliveryReport`] lists.
pub const DELIVERIES_LISTED_MAX: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub task: TaskIndex,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
}

/// Why a job's task waits: requirement by requirement, the engines each rules out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobExplanation {
    pub job: JobId,
    /// The task explained; `None` when none waits or the job asks for no virtual cluster.
    pub task: Option<TaskIndex>,
    /// Engines heard from recently (the ones requirements are counted over).
    pub providers: u64,
    pub providers_matching: u64,
    pub requirements: Vec<RequirementCount>,
    /// What holds the task back, in words.
    pub blockers: Vec<String>,
    /// The whole explanation, as `idlegrid job explain` prints it.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequirementCount {
    pub requirement: String,
    /// Engines that do not meet it.
    pub ruled_out: u64,
    /// Engines that meet every other requirement but not this one.
    pub ruled_out_alone: u64,
}

/// One task placed on one engine: everything needed to stage and run it, and nothing that
/// names the client, the job or the task (P6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub assignment: AssignmentId,
    pub executable: ElementRef,
    #[serde(default)]
    pub data: BTreeMap<String, ElementRef>,
    #[serde(default, with = "base64_bytes")]
    pub params: Vec<u8>,
    /// A checkpoint to restart from, when the task ran before.
    #[serde(default)]
    pub checkpoint: Option<ElementRef>,
    pub priority: i32,
    pub limits: TaskLimitsSpec,
    /// Lets this engine, and only it, download the elements above for a while.
    pub ticket: String,
    /// The server's Ed25519 signature (hex) over [`Assignment::signed_bytes`]: engines run only
    /// what their server issued (P3.7).
    #[serde(default)]
    pub signature: String,
    /// How often (milliseconds) the engine uploads the running task's latest checkpoint to the
    /// server (P1.5); `None`: only when asked (`GetTask`) or when the task is handed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_upload_ms: Option<u64>,
    /// The trace the engine's spans for this task join (W3C `traceparent`), when the task is
    /// traced. Not signed: it decides nothing, and engines that do not know it still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceParent>,
}

impl Assignment {
    /// What the signature covers: the assignment's JSON with an empty signature and no trace
    /// (field order is the declaration order, maps are sorted, so both ends produce the same
    /// bytes).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Assignment { signature: String::new(), trace: None, ..self.clone() };
        serde_json::to_vec(&unsigned).expect("assignments serialize")
    }
}

/// Server to provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ServerToProvider {
    /// Assign a task.
    Task(Assignment),
    GetTaskStatus {
        assignment: AssignmentId,
    },
    /// Ask for a checkpoint of a task; answered with `Task`.
    GetTask {
        assignment: AssignmentId,
    },
    /// Suspend a task and hand it back with its checkpoint (client stop, migration).
    Stop {
        assignment: AssignmentId,
    },
    /// Drop a task: its result is no longer wanted.
    RemoveTask {
        assignment: AssignmentId,
    },
    Config {
        settings: BTreeMap<String, String>,
    },
    /// Ask for the engine's task queue, answered with `Contents` naming the same `request`.
    GetContents {
        /// The server's mark of this question (the time it asked, in its clock), echoed in
        /// the answer, so that placements made after the question are not taken for lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    /// The server's view of the provider's work, settled by billing, to show the owner beside
    /// the engine's own figures: tasks whose final result it returned, seconds its placements
    /// ran, and the provider's account balance.
    WorkSummary {
        tasks_completed: u64,
        run_seconds: u64,
        balance_micros: i64,
    },
    GetCacheContents,
    /// Content the operator published for every engine's status page.
    DisplayContent {
        title: String,
        body: String,
        url: Option<String>,
    },
    /// A new engine build (P3.11): the element is the binary; the signature (hex, by the
    /// server's assignment key) covers [`upgrade_signed_bytes`].
    Upgrade {
        version: String,
        element: ElementRef,
        signature: String,
    },
    Error(ErrorReport),
    ExternalDelivery {
        url: String,
    },
    Heartbeat,
    /// The market contracts this provider serves (its engine's status page lists them).
    MarketContracts {
        contracts: Vec<crate::market::ServedContract>,
        /// Memory reserved for buyers by the provider's active contracts (bytes).
        #[serde(default)]
        memory_reserved_bytes: u64,
    },
    /// Memory granted to the task the server sends next (a buyer's, on memory it bought).
    MarketMemoryGrant {
        assignment: AssignmentId,
        bytes: u64,
    },
    /// Run the handler of the peripheral `kind` on the buyer's input (use `number` of a contract).
    PeripheralUse {
        contract: u64,
        number: u64,
        kind: String,
        #[serde(with = "base64_bytes")]
        input: Vec<u8>,
    },
    /// Keep a storage buyer's blob (a market contract this engine sold storage in): fetch the
    /// element and keep it in the data folder until `MarketRelease` or the contract's end
    /// (`until_ms`); answer `MarketStored`.
    MarketStore {
        contract: u64,
        element: ElementRef,
        until_ms: u64,
    },
    /// Prove the blob is kept: answer with `MarketProof`.
    MarketChallenge {
        contract: u64,
        number: u32,
        challenge: idlegrid_market::settlement::Challenge,
    },
    /// The storage contract is over: the blob may go.
    MarketRelease {
        contract: u64,
    },
}

/// What the server signs when it offers an engine upgrade.
pub fn upgrade_signed_bytes(version: &str, element: &ElementRef) -> Vec<u8> {
    format!("idlegrid-upgrade\n{version}\n{}\n{}", element.hash, element.size).into_bytes()
}

/// Where a task is on an engine, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentState {
    Running,
    /// Handed back after a `Stop`, with a checkpoint if the task saved one.
    Suspended,
    Succeeded,
    Failed,
    /// Dropped after `RemoveTask`, or unknown to the engine.
    Removed,
}

/// A task's status from the engine (the seed's provider-to-server `TaskStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentStatus {
    pub assignment: AssignmentId,
    pub state: AssignmentState,
    #[serde(deserialize_with = "crate::payload::finite_f32")]
    pub progress: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<TaskFailureInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ElementRef>,
    pub cpu_ms: u64,
    /// The engine's span that produced this status (W3C `traceparent`), for a traced task: the
    /// server's handling of the result joins the task's trace through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceParent>,
}

/// What the engine is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Accepting and running tasks.
    Active,
    /// Connected, not running tasks now (owner busy, outside hours).
    Paused,
    /// About to disconnect; running tasks are being suspended.
    ShuttingDown,
}

/// Provider to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ProviderToServer {
    /// A change of the node's state; `queue_capacity` is how many tasks it wants to hold
    /// (running and staged) so that it never waits for work (P3.1).
    NodeStatus {
        state: NodeState,
        slots: u32,
        queue_capacity: u32,
    },
    NodeProfile {
        os: String,
        arch: String,
        cores: u32,
        memory_bytes: u64,
        disk_bytes: u64,
        engine_version: String,
        /// The owner's requirement over the jobs this engine runs, in the market's expression
        /// language (`job.client in ["alice"] and task.memory_mb <= 512`); `None`: any job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_requirement: Option<String>,
    },
    GetConfig,
    CacheContents {
        elements: Vec<ElementHash>,
    },
    /// The engine's task queue: unasked when its session starts, or the answer to
    /// `GetContents` (with its `request`).
    Contents {
        tasks: Vec<(AssignmentId, AssignmentState)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<u64>,
    },
    TaskStatus(AssignmentStatus),
    /// A checkpoint, in reply to `GetTask`.
    Task {
        assignment: AssignmentId,
        checkpoint: Option<ElementRef>,
    },
    Error(ErrorReport),
    ExternalDelivery {
        url: String,
    },
    Heartbeat,
    /// What the handler of a peripheral use made: its output, or why it failed.
    PeripheralDone {
        contract: u64,
        number: u64,
        #[serde(default, with = "base64_bytes")]
        output: Vec<u8>,
        #[serde(default)]
        error: Option<String>,
    },
    /// The blob of `MarketStore` is kept, or could not be (`error`).
    MarketStored {
        contract: u64,
        element: ElementHash,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The answer to `MarketChallenge` (hex SHA-256 of the nonce and the range).
    MarketProof {
        contract: u64,
        number: u32,
        answer: String,
    },
    /// Where this engine's element relay (internet access it sells) listens, `host:port`.
    MarketRelay {
        address: String,
    },
    /// Bytes the relay served under an internet access contract: report `seq` (from 1).
    MarketServed {
        contract: u64,
        seq: u64,
        bytes: u64,
    },
}

/// The whole catalogue, for logs and tools that handle every direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "direction", content = "message", rename_all = "snake_case")]
pub enum Message {
    ClientToServer(ClientToServer),
    ServerToClient(ServerToClient),
    ServerToProvider(ServerToProvider),
    ProviderToServer(ProviderToServer),
}

/// A message type that travels on a channel.
pub trait ChannelMessage: Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static {
    /// The seed's name of the message, for logs.
    fn name(&self) -> &'static str;
}

macro_rules! names {
    ($ty:ty { $($variant:ident),* $(,)? }) => {
        impl ChannelMessage for $ty {
            fn name(&self) -> &'static str {
                match self { $(Self::$variant { .. } => stringify!($variant),)* }
            }
        }
    };
}

names!(ClientToServer {
    GetConfig,
    ClientProfile,
    CreateJob,
    Task,
    Launch,
    Stop,
    Resume,
    RemoveJob,
    RemoveTask,
    GetJobProperties,
    GetContents,
    GetExecutableElement,
    GetDataElement,
    RemoveExecutableElement,
    RemoveDataElement,
    ExecutableElement,
    DataElement,
    Attach,
    Detach,
    GetTask,
    GetTaskStatus,
    CloseSession,
    Error,
    ExternalDelivery,
    Heartbeat,
    Deposit,
    GetAccount,
    SetNotices,
    ExplainJob,
});
names!(ServerToClient {
    Task,
    TaskStatus,
    Config,
    JobProperties,
    Contents,
    Account,
    ExecutableElement,
    DataElement,
    Error,
    ExternalDelivery,
    Heartbeat,
    Explanation,
    MoneyRequest,
});
names!(ServerToProvider {
    Task,
    GetTaskStatus,
    GetTask,
    Stop,
    RemoveTask,
    Config,
    GetContents,
    WorkSummary,
    GetCacheContents,
    DisplayContent,
    Upgrade,
    Error,
    ExternalDelivery,
    Heartbeat,
    MarketContracts,
    MarketMemoryGrant,
    PeripheralUse,
    MarketStore,
    MarketChallenge,
    MarketRelease,
});
names!(ProviderToServer {
    NodeStatus,
    NodeProfile,
    GetConfig,
    CacheContents,
    Contents,
    TaskStatus,
    Task,
    Error,
    ExternalDelivery,
    Heartbeat,
    PeripheralDone,
    MarketStored,
    MarketProof,
    MarketRelay,
    MarketServed,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let job = JobId::random();
        let msg = ClientToServer::Launch { job };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(json, format!(r#"{{"type":"Launch","job":"{job}"}}"#));
        assert_eq!(serde_json::from_str::<ClientToServer>(&json).unwrap(), msg);
        assert_eq!(msg.name(), "Launch");
    }

    #[test]
    fn a_provider_message_does_not_decode_as_a_client_message() {
        let json = serde_json::to_string(&ProviderToServer::GetConfig).unwrap();
        assert!(serde_json::from_str::<ClientToServer>(&json).is_ok(), "GetConfig exists in both directions");
        let json = serde_json::to_string(&ProviderToServer::NodeStatus {
            state: NodeState::Active,
            slots: 2,
            queue_capacity: 4,
        })
        .unwrap();
        let err = serde_json::from_str::<ClientToServer>(&json).unwrap_err();
        assert!(err.to_string().contains("NodeStatus"), "{err}");
    }

    #[test]
    fn task_spec_params_are_base64_and_defaults_apply() {
        let spec = TaskSpec {
            index: 3,
            executable: ElementHash::of(b"x"),
            data: BTreeMap::new(),
            params: b"n=5".to_vec(),
            priority: None,
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["params"], "bj01");
        let minimal = format!(r#"{{"index":1,"executable":"{}"}}"#, ElementHash::of(b"x"));
        let parsed: TaskSpec = serde_json::from_str(&minimal).unwrap();
        assert!(parsed.params.is_empty() && parsed.data.is_empty());
        assert!(serde_json::from_str::<TaskSpec>(r#"{"index":1,"executable":"zz"}"#).is_err());
    }

    #[test]
    fn the_catalogue_round_trips() {
        let msg = Message::ServerToProvider(ServerToProvider::RemoveTask { assignment: AssignmentId(9) });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), msg);
    }
}
