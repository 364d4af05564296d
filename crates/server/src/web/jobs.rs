//! A client's jobs in the web manager: the list, a job's page (live figures, a chart over a
//! history the server computes from stored result times, one page of tasks with their own
//! controls, one page of results), the figures as JSON for the page's script, the job's and a
//! task's stop, resume and remove forms, and result downloads. No page reads all of a job's
//! tasks or results: every list is a page of a bounded size.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use idlegrid_coordinator::{Coordinator, CoordinatorError, Party};
use idlegrid_protocol::messages::ClientToServer;
use idlegrid_store::{ResultBucket, Tx};
use idlegrid_types::{JobId, TaskIndex};
use serde::{Deserialize, Serialize};

use super::{
    checked_form, client_command, html, pages, parse_job, problem, read, redirect, refusal, secure_headers, signed_in,
};
use crate::AppState;
use crate::http::json_response;

/// Results listed on one page of a job.
pub(super) const RESULTS_PER_PAGE: u32 = 20;
/// Tasks listed on one page of a job.
pub(super) const TASKS_PER_PAGE: u32 = 50;
/// Engines whose speeds are added up into the power delivered, at most.
const RUNNING_ENGINES_MAX: u32 = 10_000;
/// Points of the chart's history.
const HISTORY_POINTS: u64 = 60;

pub(super) async fn jobs_page(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match read(&state, &session, |c, tx, _, party, _| c.jobs_of(tx, party)).await {
        Ok(jobs) => html(StatusCode::OK, pages::jobs(&session, &jobs)),
        Err(page) => page,
    }
}

/// What a job's page shows and its polling reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    pub job: String,
    pub name: String,
    pub state: String,
    pub created: u64,
    pub queued: u64,
    pub running: u64,
    pub stopped: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub total: u64,
    /// Charged to the job so far (micro-units).
    pub spent_micros: i64,
    /// Reserved for the job at launch: the estimate of what it costs (micro-units).
    pub estimated_micros: Option<i64>,
    pub cost_max_micros: Option<u64>,
    pub power_requested_gflops: Option<f64>,
    /// The measured speeds of the engines running its tasks now, added up.
    pub power_delivered_gflops: f64,
    pub now_ms: u64,
    /// Results in so far at the end of each interval of the chart, oldest first.
    pub history: Vec<HistoryPoint>,
}

/// How many of a job's tasks had succeeded and failed at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// The width of the chart's intervals for a job created at `created_ms`: its age spread over
/// the chart's points, at least a second, rounded up to a whole second.
pub fn history_width(created_ms: u64, now_ms: u64) -> u64 {
    let age = now_ms.saturating_sub(created_ms).max(1);
    age.div_ceil(HISTORY_POINTS).max(1_000).div_ceil(1_000) * 1_000
}

/// The totals of results at the end of each interval from `since_ms` to `now_ms`, from the
/// results counted per interval (`buckets`, any order) and the totals now: the totals before an
/// interval are the totals now less what arrived since.
pub fn cumulative_history(
    buckets: &[ResultBucket],
    succeeded_now: u64,
    failed_now: u64,
    since_ms: u64,
    width_ms: u64,
    now_ms: u64,
) -> Vec<HistoryPoint> {
    let width = width_ms.max(1);
    let mut points = Vec::new();
    let mut start = since_ms - since_ms % width;
    while start <= now_ms {
        let end = start.saturating_add(width);
        let (later_ok, later_failed) = buckets
            .iter()
            .filter(|b| b.start_ms >= end)
            .fold((0u64, 0u64), |(s, f), b| (s + b.succeeded, f + b.failed));
        points.push(HistoryPoint {
            at_ms: end.min(now_ms),
            succeeded: succeeded_now.saturating_sub(later_ok),
            failed: failed_now.saturating_sub(later_failed),
        });
        if end > now_ms {
            break;
        }
        start = end;
    }
    points
}

fn job_stats(
    c: &Coordinator,
    tx: &mut dyn Tx,
    party: &Party,
    job: JobId,
    now: u64,
) -> Result<JobStats, CoordinatorError> {
    let info = c.job_of(tx, party, job)?;
    let statement = c.statement(
        tx,
        party,
        idlegrid_coordinator::money::StatementQuery { from_ms: 0, to_ms: u64::MAX / 2, period: None },
    )?;
    let subject = job.to_string();
    let spent_micros: i64 =
        statement.rows.iter().filter(|row| row.subject == subject).map(|row| -row.amount.as_i64()).sum();
    let estimated_micros = idlegrid_ledger::Ledger::new(tx.ledger())
        .job_reservation(job)
        .map_err(|e| CoordinatorError::internal(e.to_string()))?
        .map(|r| r.amount.as_i64());
    let mut power_delivered_gflops = 0.0;
    for engine in tx.web().running_engines(job, RUNNING_ENGINES_MAX)? {
        if let Some(profile) = c.provider_profile(tx, &engine)?
            && let Some(speed) = profile.cpu_gflops
        {
            power_delivered_gflops += speed.mean;
        }
    }
    let counts = info.counts;
    let width = history_width(info.created_unix_ms, now);
    let since = now.saturating_sub(width * (HISTORY_POINTS - 1));
    let buckets = tx.web().result_history(job, since - since % width, width)?;
    let history = cumulative_history(&buckets, counts.succeeded, counts.failed, since, width, now);
    Ok(JobStats {
        job: subject,
        name: info.properties.name.clone(),
        state: format!("{:?}", info.state).to_lowercase(),
        created: counts.created,
        queued: counts.queued,
        running: counts.running,
        stopped: counts.stopped,
        succeeded: counts.succeeded,
        failed: counts.failed,
        total: counts.total(),
        spent_micros,
        estimated_micros,
        cost_max_micros: info.properties.cost_max_micros,
        power_requested_gflops: info.properties.power_requested_gflops,
        power_delivered_gflops,
        now_ms: now,
        history,
    })
}

#[derive(Deserialize)]
pub(super) struct JobQuery {
    /// Results after this one.
    #[serde(default)]
    after: Option<i64>,
    /// Tasks after this index.
    #[serde(default)]
    tasks: Option<TaskIndex>,
}

/// One result as a job's page lists it.
pub struct ResultLine {
    pub id: i64,
    pub task: u64,
    pub state: String,
    pub size: Option<u64>,
    pub failure: Option<String>,
}

pub(super) async fn job_page(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let query = query.ok().map(|Query(q)| q);
    let after = query.as_ref().and_then(|q| q.after).unwrap_or(0).max(0);
    let tasks_after = query.as_ref().and_then(|q| q.tasks);
    let found = read(&state, &session, move |c, tx, fx, party, now| {
        let stats = job_stats(c, tx, party, job, now)?;
        let explanation = client_command(c, tx, fx, party, ClientToServer::ExplainJob { job, task: None }, now)?
            .into_iter()
            .find_map(|answer| answer["text"].as_str().map(str::to_string))
            .unwrap_or_default();
        let results = tx
            .results_after(job, after, false, RESULTS_PER_PAGE)?
            .into_iter()
            .map(|row| ResultLine {
                id: row.id,
                task: row.result.index,
                state: format!("{:?}", row.result.state).to_lowercase(),
                size: row.result.result.as_ref().map(|p| p.len()),
                failure: row.result.failure.as_ref().map(|f| format!("{:?}: {}", f.kind, f.message)),
            })
            .collect::<Vec<_>>();
        let tasks = tx.web().task_page(job, tasks_after, TASKS_PER_PAGE)?;
        Ok((stats, explanation, results, tasks))
    })
    .await;
    match found {
        Ok((stats, explanation, results, tasks)) => {
            let lists = pages::JobLists { results: &results, after, tasks: &tasks, tasks_after };
            html(StatusCode::OK, pages::job(&session, &stats, &explanation, &lists))
        }
        Err(page) => page,
    }
}

/// A job's figures as JSON, for the page's script.
pub(super) async fn stats_json(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    match read(&state, &session, move |c, tx, _, party, now| job_stats(c, tx, party, job, now)).await {
        Ok(stats) => {
            let mut response = json_response(StatusCode::OK, &stats);
            secure_headers(response.headers_mut());
            response
        }
        Err(page) => page,
    }
}

/// Stop, resume or remove a job from its page's forms.
pub(super) async fn job_action(
    State(state): State<Arc<AppState>>,
    Path((job, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    command(state, job, None, action, method, uri, headers, body).await
}

/// Stop, resume or remove one task from the task list of its job's page.
pub(super) async fn task_action(
    State(state): State<Arc<AppState>>,
    Path((job, task, action)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    command(state, job, Some(task), action, method, uri, headers, body).await
}

/// The message a form's action sends: for the job, or for one task of it.
fn action_message(job: JobId, task: Option<TaskIndex>, action: &str) -> Option<ClientToServer> {
    match (action, task) {
        ("stop", task) => Some(ClientToServer::Stop { job, task }),
        ("resume", task) => Some(ClientToServer::Resume { job, task }),
        ("remove", None) => Some(ClientToServer::RemoveJob { job }),
        ("remove", Some(task)) => Some(ClientToServer::RemoveTask { job, task }),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn command(
    state: Arc<AppState>,
    job: String,
    task: Option<String>,
    action: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Err(page) = checked_form(&session, &headers, body).await {
        return page;
    }
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let task = match task.map(|t| t.parse::<TaskIndex>()).transpose() {
        Ok(task) => task,
        Err(_) => return problem(StatusCode::NOT_FOUND, "a task is named by its index", Some(&session)),
    };
    let Some(message) = action_message(job, task, &action) else {
        return problem(StatusCode::NOT_FOUND, "no such action", Some(&session));
    };
    let job_removed = matches!(message, ClientToServer::RemoveJob { .. });
    match read(&state, &session, move |c, tx, fx, party, now| client_command(c, tx, fx, party, message.clone(), now))
        .await
    {
        Ok(_) if job_removed => redirect("/web/jobs"),
        Ok(_) => redirect(&format!("/web/jobs/{job}")),
        Err(page) => page,
    }
}

/// A result's bytes, as a download: inline ones from the store, element ones streamed.
pub(super) async fn result_download(
    State(state): State<Arc<AppState>>,
    Path((job, result)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let job = match parse_job(&job, &session) {
        Ok(job) => job,
        Err(page) => return *page,
    };
    let Ok(result) = result.parse::<i64>() else {
        return problem(StatusCode::NOT_FOUND, "a result is named by its number", Some(&session));
    };
    let found = read(&state, &session, move |c, tx, _, party, now| {
        c.job_of(tx, party, job)?;
        let row = tx.results_after(job, result.saturating_sub(1), false, 1)?.into_iter().find(|row| row.id == result);
        let row = row.ok_or_else(|| CoordinatorError::not_found(format!("job {job} has no result {result}")))?;
        let payload = row
            .result
            .result
            .ok_or_else(|| CoordinatorError::not_found(format!("result {result} holds no bytes (the task failed)")))?;
        if let idlegrid_protocol::Payload::Element(element) = &payload {
            c.authorize_download(tx, party, &element.hash, None, now)?;
        }
        Ok((row.result.index, payload))
    })
    .await;
    let (task, payload) = match found {
        Ok(found) => found,
        Err(page) => return page,
    };
    let body = match payload {
        idlegrid_protocol::Payload::Inline(bytes) => Body::from(bytes),
        idlegrid_protocol::Payload::Element(element) => match state.elements.download(&element.hash).await {
            Ok(stream) => Body::from_stream(stream),
            Err(e) => {
                return refusal(&CoordinatorError::internal(format!("cannot read the result: {e}")), Some(&session));
            }
        },
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{job}-task-{task}.bin\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    secure_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_spread_a_jobs_age_over_the_chart_in_whole_seconds() {
        assert_eq!(history_width(0, 0), 1_000);
        assert_eq!(history_width(0, 59_000), 1_000);
        assert_eq!(history_width(0, 120_000), 2_000);
        assert_eq!(history_width(0, 3_600_000), 60_000);
        assert_eq!(history_width(10, 0), 1_000, "a clock behind the job's creation");
    }

    #[test]
    fn the_history_counts_back_from_the_totals_now() {
        let buckets = [
            ResultBucket { start_ms: 2_000, succeeded: 3, failed: 0 },
            ResultBucket { start_ms: 4_000, succeeded: 1, failed: 1 },
        ];
        // 10 succeeded before the window, 3 more in [2s, 3s), 1 and a failure in [4s, 5s).
        let points = cumulative_history(&buckets, 14, 1, 1_500, 1_000, 4_500);
        let totals: Vec<(u64, u64, u64)> = points.iter().map(|p| (p.at_ms, p.succeeded, p.failed)).collect();
        assert_eq!(totals, vec![(2_000, 10, 0), (3_000, 13, 0), (4_000, 13, 0), (4_500, 14, 1)]);
        assert!(points.windows(2).all(|w| w[0].at_ms < w[1].at_ms && w[0].succeeded <= w[1].succeeded));
    }

    #[test]
    fn forms_name_known_actions_only() {
        let job = JobId::random();
        assert_eq!(action_message(job, Some(3), "remove"), Some(ClientToServer::RemoveTask { job, task: 3 }));
        assert_eq!(action_message(job, None, "remove"), Some(ClientToServer::RemoveJob { job }));
        assert_eq!(action_message(job, Some(1), "stop"), Some(ClientToServer::Stop { job, task: Some(1) }));
        assert_eq!(action_message(job, None, "resume"), Some(ClientToServer::Resume { job, task: None }));
        assert_eq!(action_message(job, None, "launch"), None);
    }
}
