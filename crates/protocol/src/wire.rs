//! HTTP request and response bodies of the message channel, registration and errors.
//!
//! The message channel (P8.3-P8.5) is one session per party process:
//! - `POST /v1/sessions` opens a session (or resumes one after a restart) and tells both
//!   positions: the last message from the party the server processed, and the last message from
//!   the server the party acknowledged.
//! - `POST /v1/sessions/{id}/messages` carries a batch of sequence-numbered messages. The server
//!   processes each message exactly once, in order: a message whose number it has processed is
//!   skipped (a retransmission), a gap stops the batch. The reply says how far it got and how
//!   far the server's own outbox reaches, so replies to this batch are known to be there.
//! - `GET /v1/sessions/{id}/messages?after=N&ack=M` acknowledges everything up to `M` (by
//!   default `N`) as processed and long-polls for what follows `N`. A reconnecting party resumes
//!   from its last acknowledged number.
//! - `POST /v1/sessions/{id}/reset` re-synchronises a party that lost track (P8.5).

use idlegrid_types::{AssignmentId, JobId, PartyId, Role, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_PREFIX: &str = "/v1";

/// Headers of a signed request (see [`crate::auth`]).
pub const HEADER_ID: &str = "x-idlegrid-id";
pub const HEADER_TIME: &str = "x-idlegrid-time";
pub const HEADER_SIGNATURE: &str = "x-idlegrid-signature";
/// Header carrying an element download ticket.
pub const HEADER_TICKET: &str = "x-idlegrid-ticket";
/// Header of a `HEAD /v1/elements/{hash}` answer: the element's size.
pub const HEADER_ELEMENT_SIZE: &str = "x-idlegrid-element-size";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(value_type = String, example = "client")]
    pub role: Role,
    /// Ed25519 public key, hex.
    pub public_key: String,
    #[serde(default)]
    pub name: String,
    /// Over TLS: a certificate signing request (PEM) for `public_key`, signed with it; the
    /// answer carries the certificate that identifies the party from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    #[schema(value_type = String)]
    pub id: PartyId,
    #[schema(value_type = String)]
    pub role: Role,
    /// The server's Ed25519 public key (hex), with which it signs task assignments.
    #[serde(default)]
    pub server_key: String,
    /// Over TLS: the party's client certificate (PEM), issued by the server's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionRequest {
    /// Resume this session instead of opening a new one.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub resume: Option<SessionId>,
}

/// Both positions of a session's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    #[schema(value_type = String)]
    pub session: SessionId,
    /// Sequence number of the last message from the party that the server processed.
    pub inbound_acked: u64,
    /// Sequence number of the last server message the party acknowledged.
    pub outbound_acked: u64,
    /// Sequence number of the last message in the server's outbox for this session.
    pub outbound_head: u64,
}

/// One message with its place in the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<M> {
    pub seq: u64,
    /// For a server message: the sequence number of the party message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    pub message: M,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostBatch<M> {
    /// Optionally acknowledge server messages up to this number, as a poll would.
    #[serde(default)]
    pub ack: Option<u64>,
    pub messages: Vec<Envelope<M>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostReply {
    /// Sequence number of the last party message processed (after this batch).
    pub inbound_acked: u64,
    /// Last sequence number in the server's outbox after processing: every reply to this
    /// batch has a number at or below it.
    pub outbound_head: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollQuery {
    /// Return server messages after this number.
    pub after: u64,
    /// Acknowledge (as processed) server messages up to this number; defaults to `after`. A
    /// party that received messages it has not processed yet acknowledges less than it asks
    /// after, so that a crash makes the server send them again.
    #[serde(default)]
    pub ack: Option<u64>,
    /// Wait up to this long for a message when none is ready (long poll).
    #[serde(default)]
    pub wait_ms: Option<u64>,
    #[serde(default)]
    pub max: Option<u32>,
}

/// A poll's answer. Messages are raw JSON on the server side (it stores them encoded) and
/// typed on the party side.
#[derive(Debug, Serialize, Deserialize)]
pub struct PollReply<M> {
    pub messages: Vec<Envelope<M>>,
}

/// What the server sends: messages stored as encoded JSON are spliced in without re-parsing.
pub type RawPollReply = PollReply<Box<RawValue>>;

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[schema(value_type = Object)]
    pub error: crate::ErrorReport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthReply {
    pub status: String,
    pub version: String,
}

/// POST /v1/ops/revoke (operators): stop honouring a party's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[schema(value_type = String)]
    pub party: PartyId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokeReply {
    /// False when the party was revoked already (a retry).
    pub revoked_now: bool,
}

/// One entry of GET /v1/ops/revocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevocationInfo {
    #[schema(value_type = String)]
    pub party: PartyId,
    pub reason: String,
    pub revoked_ms: u64,
}

/// GET /v1/ops/status (operators): one instance's health as name-value pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceStatus {
    /// The address the instance listens on.
    pub instance: String,
    pub version: String,
    /// "sqlite" or "postgres".
    pub store: String,
    pub values: std::collections::BTreeMap<String, f64>,
    /// What the instance could not measure (the database unreachable, say).
    pub errors: Vec<String>,
}

/// POST /v1/logs: error and warning lines of an engine or client, for operators (P4.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    pub lines: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// When it was logged, on the sender's clock.
    pub time_ms: u64,
    /// "error", "warn" or "info".
    pub level: String,
    /// What logged it: "engine", "client", or a module path.
    pub component: String,
    pub message: String,
    /// An engine's assignment the line is about (the server files it under the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    pub assignment: Option<AssignmentId>,
    /// A client's job the line is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub job: Option<JobId>,
}

/// One stored line, as GET /v1/ops/logs lists it (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    pub id: u64,
    pub time_ms: u64,
    /// When the server received it.
    pub received_ms: u64,
    #[schema(value_type = String)]
    pub party: PartyId,
    #[schema(value_type = String)]
    pub role: Role,
    pub level: String,
    pub component: String,
    #[schema(value_type = Option<String>)]
    pub job: Option<JobId>,
    pub message: String,
}

/// POST /v1/account/deposits (clients) and /v1/account/payouts (providers): ask for money to be
/// paid in or out; an operator decides. `reference` (the payment's, 1 to 100 printable ASCII
/// characters) makes a retried request the same request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyRequestBody {
    /// Micro-units (millionths of the currency unit), positive, at most 10^12.
    pub amount_micros: i64,
    pub reference: String,
}

/// POST /v1/ops/requests/{request}/approve and /reject (operators): the decision's note (the
/// payment's own reference on approval; the reason, required, on rejection).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub note: String,
}

/// POST /v1/ops/credit (operators): money received for a party, credited at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditBody {
    #[schema(value_type = String)]
    pub party: PartyId,
    pub amount_micros: i64,
    pub reference: String,
    #[serde(default)]
    pub note: String,
}

/// POST /v1/ops/display (operators): content shown on every engine's status page, replacing
/// what was published before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplayBody {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// The answer to a [`DisplayBody`]: how many connected engines it was sent to now (the others
/// get it when they next connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DisplayReply {
    pub engines_told: u32,
}

/// Upper bounds of the channel, shared by both ends.
pub mod limits {
    /// Messages in one POST batch.
    pub const BATCH_MESSAGES_MAX: usize = 1000;
    /// Bytes of one message-channel request body.
    pub const MESSAGE_BODY_BYTES_MAX: usize = 32 << 20;
    /// Messages returned by one poll.
    pub const POLL_MESSAGES_MAX: u32 = 2000;
    /// Longest long poll the server holds.
    pub const POLL_WAIT_MS_MAX: u64 = 30_000;
    /// Tasks in one `Task` message.
    pub const TASKS_PER_MESSAGE_MAX: usize = 10_000;
    /// Bytes of a task's parameters.
    pub const TASK_PARAMS_BYTES_MAX: usize = 1 << 20;
    /// Data elements of one task.
    pub const TASK_ELEMENTS_MAX: usize = 256;
    /// Results and statuses up to this size travel inline; larger ones as elements.
    pub const INLINE_PAYLOAD_BYTES_MAX: usize = 256 << 10;
    /// Lines in one POST /v1/logs.
    pub const LOG_LINES_PER_BATCH_MAX: usize = 200;
    /// Bytes of one log message (longer ones are cut).
    pub const LOG_MESSAGE_BYTES_MAX: usize = 2048;
}
