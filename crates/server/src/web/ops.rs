//! The operators' pages: the health of every server instance (each reports its own into the
//! store every maintenance interval), system-wide figures, deposits and payouts waiting for a
//! decision, and the collected logs with a search.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use idlegrid_coordinator::requests::{Decider, Decision};
use idlegrid_protocol::messages::MoneyRequestState;
use idlegrid_protocol::wire::{InstanceStatus, LogEntry};
use idlegrid_store::{InstanceReport, LogFilter};
use serde::Deserialize;

use super::{checked_form, html, pages, problem, read, redirect, session, signed_in};
use crate::{AppState, now_ms};

/// Instances listed at most.
const INSTANCES_MAX: u32 = 100;
/// Log lines shown on one page.
const LOG_LINES: u32 = 200;
/// Newest lines a text search looks through.
const LOG_SEARCH_LINES: u32 = 1_000;

/// One instance's health as the operators' page shows it.
pub struct InstanceView {
    pub status: InstanceStatus,
    pub reported_ms: u64,
    /// Not heard from for several maintenance intervals: stopped or cut off.
    pub silent: bool,
}

/// Whether an instance that last reported at `reported_ms` is silent: more than three
/// maintenance intervals ago (and at least 30 s, so a short interval does not flap).
pub fn is_silent(reported_ms: u64, now_ms: u64, interval_ms: u64) -> bool {
    now_ms.saturating_sub(reported_ms) > (3 * interval_ms).max(30_000)
}

/// Whether this instance's health is due to be recorded again (every few maintenance
/// intervals, at least every 10 s: a report reads the whole database's census).
pub fn report_due(last_ms: u64, now_ms: u64, interval_ms: u64) -> bool {
    now_ms.saturating_sub(last_ms) >= interval_ms.max(10_000)
}

/// Called by maintenance: record this instance's health when it is due.
pub(crate) async fn report_health_now_and_then(state: &Arc<AppState>) {
    let last = state.web.reported_ms.load(std::sync::atomic::Ordering::Relaxed);
    if report_due(last, now_ms(), state.web.maintenance_interval_ms) {
        report_health(state).await;
    }
}

/// Record this instance's health in the store, for every instance's operators' page.
async fn report_health(state: &Arc<AppState>) {
    state.web.reported_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
    let instance = state.instance.get().cloned().unwrap_or_default();
    let status = crate::metrics::status(state, &instance).await;
    let Ok(body) = serde_json::to_string(&status) else { return };
    let report = InstanceReport { instance, reported_ms: now_ms(), body };
    let written = state.run(move |_, tx, _| Ok(tx.web().put_instance_report(&report)?)).await;
    if let Err(error) = written {
        tracing::warn!(%error, "cannot record this instance's health");
    }
}

pub(super) async fn ops_page(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, web_session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    // This instance's figures are fresh; the others' are their last reports.
    report_health(&state).await;
    let interval_ms = state.web.maintenance_interval_ms.max(10_000);
    let found = read(&state, &web_session, move |c, tx, _, party, now| {
        let pending = c.requests_for_operator(tx, party, Some(MoneyRequestState::Pending), 100)?;
        let reports = tx.web().instance_reports(INSTANCES_MAX)?;
        let sessions = session::open_sessions(tx, now)?;
        let instances = reports
            .into_iter()
            .filter_map(|r| {
                let status = serde_json::from_str::<InstanceStatus>(&r.body).ok()?;
                Some(InstanceView {
                    status,
                    reported_ms: r.reported_ms,
                    silent: is_silent(r.reported_ms, now, interval_ms),
                })
            })
            .collect::<Vec<_>>();
        Ok((pending, instances, sessions))
    })
    .await;
    match found {
        Ok((pending, instances, sessions)) => {
            html(StatusCode::OK, pages::ops(&web_session, &instances, &pending, sessions, now_ms()))
        }
        Err(page) => page,
    }
}

/// The log search's fields; empty ones do not filter.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub component: String,
    #[serde(default)]
    pub party: String,
    #[serde(default)]
    pub job: String,
}

/// The store's filter of a search, or what is wrong with it.
fn log_filter(query: &LogQuery) -> Result<LogFilter, String> {
    let some = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
    let party = some(&query.party).map(|p| p.parse().map_err(|e| format!("party: {e}"))).transpose()?;
    let job = some(&query.job).map(|j| j.parse().map_err(|e| format!("job: {e}"))).transpose()?;
    let text = query.q.trim();
    Ok(LogFilter {
        component: some(&query.component),
        party,
        job,
        level: some(&query.level),
        since_ms: None,
        until_ms: None,
        limit: if text.is_empty() { LOG_LINES } else { LOG_SEARCH_LINES },
    })
}

/// The lines whose message or component contains `text` (any case), at most a page.
pub fn search_lines(lines: Vec<LogEntry>, text: &str) -> Vec<LogEntry> {
    let needle = text.trim().to_lowercase();
    lines
        .into_iter()
        .filter(|l| {
            needle.is_empty()
                || l.message.to_lowercase().contains(&needle)
                || l.component.to_lowercase().contains(&needle)
        })
        .take(LOG_LINES as usize)
        .collect()
}

pub(super) async fn logs_page(
    State(state): State<Arc<AppState>>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, web_session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let filter = match log_filter(&query) {
        Ok(filter) => filter,
        Err(message) => return problem(StatusCode::BAD_REQUEST, &message, Some(&web_session)),
    };
    let text = query.q.clone();
    let found = read(&state, &web_session, move |c, tx, _, party, _| {
        Ok(search_lines(c.logs_for(tx, party, filter.clone())?, &text))
    })
    .await;
    match found {
        Ok(lines) => html(StatusCode::OK, pages::logs(&web_session, &query, &lines)),
        Err(page) => page,
    }
}

pub(super) async fn ops_decide(
    State(state): State<Arc<AppState>>,
    Path((request, decision)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, web_session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let fields = match checked_form(&web_session, &headers, body).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return problem(StatusCode::NOT_FOUND, "no such decision", Some(&web_session)),
    };
    let Ok(id) = request.parse::<u64>() else {
        return problem(StatusCode::NOT_FOUND, "a request is named by its number", Some(&web_session));
    };
    let note = fields.iter().find(|(k, _)| k == "note").map(|(_, v)| v.clone()).unwrap_or_default();
    let decided = read(&state, &web_session, move |c, tx, fx, party, now| {
        let decider = Decider::Operator(party.id.clone());
        c.decide_request(tx, &decider, id, decision, &note, now, fx)
    })
    .await;
    match decided {
        Ok(_) => redirect("/web/ops"),
        Err(page) => page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_types::{PartyId, Role};

    fn line(component: &str, message: &str) -> LogEntry {
        LogEntry {
            id: 1,
            time_ms: 0,
            received_ms: 0,
            party: PartyId::from_public_key(&[1; 32]),
            role: Role::Provider,
            level: "warn".into(),
            component: component.into(),
            job: None,
            message: message.into(),
        }
    }

    #[test]
    fn a_search_matches_message_or_component_in_any_case() {
        let lines = vec![line("engine::run", "Disk FULL"), line("engine::fetch", "ticket expired")];
        assert_eq!(search_lines(lines.clone(), "disk full").len(), 1);
        assert_eq!(search_lines(lines.clone(), "FETCH")[0].message, "ticket expired");
        assert_eq!(search_lines(lines.clone(), "  ").len(), 2);
        assert!(search_lines(lines, "nothing like it").is_empty());
    }

    #[test]
    fn filters_check_their_ids_and_search_further_back_for_text() {
        let plain = log_filter(&LogQuery { level: "warn".into(), ..Default::default() }).unwrap();
        assert_eq!((plain.level.as_deref(), plain.limit), (Some("warn"), LOG_LINES));
        let searching = log_filter(&LogQuery { q: "disk".into(), ..Default::default() }).unwrap();
        assert_eq!(searching.limit, LOG_SEARCH_LINES);
        assert!(log_filter(&LogQuery { party: "nope".into(), ..Default::default() }).unwrap_err().contains("party"));
        assert!(log_filter(&LogQuery { job: "nope".into(), ..Default::default() }).unwrap_err().contains("job"));
    }

    #[test]
    fn reports_are_due_every_interval_and_at_most_every_ten_seconds() {
        assert!(report_due(0, 10_000, 5_000));
        assert!(!report_due(5_000, 14_999, 5_000));
        assert!(report_due(0, 60_000, 60_000) && !report_due(1, 60_000, 60_000));
    }

    #[test]
    fn an_instance_is_silent_after_three_intervals_and_half_a_minute() {
        assert!(!is_silent(0, 30_000, 5_000));
        assert!(is_silent(0, 30_001, 5_000));
        assert!(!is_silent(0, 180_000, 60_000));
        assert!(is_silent(0, 180_001, 60_000));
        assert!(!is_silent(10, 0, 5_000), "a report from ahead of this clock");
    }
}
