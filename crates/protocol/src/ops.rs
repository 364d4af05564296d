//! Bodies of operators' requests: archive and purge on demand (P4.11), `POST
//! /v1/ops/retention`: the same work the maintenance pass does by the server's retention
//! settings, now, for jobs completed at least `older_than_secs` ago; and the engines'
//! server-controlled settings (`POST /v1/ops/engine-config`), pushed to every engine as `Config`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    /// Compress the results nobody fetched yet; they can still be retrieved.
    Archive,
    /// Delete the jobs whose results nobody fetched, with their data; their clients get a
    /// `purged` notice.
    Purge,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    pub action: RetentionAction,
    /// Only jobs completed at least this long ago (0: every completed job).
    #[serde(default)]
    pub older_than_secs: u64,
}

/// What was done: jobs touched, and results archived (for `archive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionReply {
    pub jobs: u64,
    pub results: u64,
}

/// Settings for every engine (`prefetch`, `status_interval_ms`); an empty value removes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfigBody {
    pub settings: BTreeMap<String, String>,
}

/// The settings now in force, and how many connected engines were sent them (the others get
/// them when they next connect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngineConfigReply {
    pub settings: BTreeMap<String, String>,
    pub engines_told: u32,
}
