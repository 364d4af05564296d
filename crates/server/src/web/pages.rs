//! The web manager's HTML, rendered with maud (every value is escaped unless marked
//! otherwise, and nothing here marks a value otherwise), its style sheet and its one script.
//! Pure: data in, markup out.

use maud::{DOCTYPE, Markup, html};

use idlegrid_ledger::{Micros, Statement};
use idlegrid_protocol::messages::{AccountInfo, JobInfo, MoneyRequestInfo};
use idlegrid_protocol::wire::LogEntry;
use idlegrid_types::Role;

use idlegrid_store::TaskLine;
use idlegrid_types::TaskIndex;

use super::jobs::{JobStats, ResultLine};
use super::ops::{InstanceView, LogQuery};
use super::parties::EngineView;
use super::{CSRF_FIELD, WebSession};

/// The style sheet, served at /web/static/style.css.
pub const STYLE: &str = include_str!("style.css");
/// The script that keeps a job's figures and chart live, served at /web/static/app.js.
pub const SCRIPT: &str = include_str!("app.js");

pub(super) fn money(micros: i64) -> String {
    Micros::new(micros).to_string()
}

/// `2026-12-06 15:04 UTC` for a Unix time in milliseconds.
pub fn utc(ms: u64) -> String {
    let minutes = ms / 60_000;
    let (days, minute_of_day) = (minutes / 1440, minutes % 1440);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minute_of_day / 60, minute_of_day % 60)
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Availability by hour of the week (0 = Monday 00:00 UTC) from the quarter-hour intervals of
/// an engine's weekly signature: the mean of each hour's intervals, 0.0..=1.0.
pub fn hours_of_week(intervals: &[f64]) -> Vec<f64> {
    intervals.chunks(4).map(|hour| hour.iter().sum::<f64>() / hour.len() as f64).collect()
}

/// Five shades, for a share 0.0..=1.0.
fn shade(share: f64) -> &'static str {
    match (share.clamp(0.0, 1.0) * 4.0).round() as u32 {
        0 => "a0",
        1 => "a1",
        2 => "a2",
        3 => "a3",
        _ => "a4",
    }
}

pub(super) fn csrf(session: &WebSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A button that posts a form with the session's CSRF token.
pub(super) fn action(session: &WebSession, to: &str, label: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action=(to) {
            (csrf(session))
            button type="submit" id=(id) { (label) }
        }
    }
}

pub(super) fn layout(session: Option<&WebSession>, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Idlegrid" }
                link rel="stylesheet" href="/web/static/style.css";
                script src="/web/static/app.js" defer {}
            }
            body {
                header {
                    strong { "Idlegrid" }
                    @if let Some(session) = session {
                        nav {
                            @match session.party.role {
                                Role::Client => {
                                    a href="/web/jobs" { "Jobs" }
                                    a href="/web/account" { "Account" }
                                    a href="/web/market" { "Market" }
                                }
                                Role::Provider => {
                                    a href="/web/engine" { "Engine" }
                                    a href="/web/account" { "Account" }
                                    a href="/web/market" { "Market" }
                                }
                                Role::Operator => {
                                    a href="/web/ops" { "Operations" }
                                }
                            }
                        }
                        span.who { (session.party.role.as_str()) " " code { (session.party.id.to_string()) } }
                        (action(session, "/web/signout", "Sign out", "signout"))
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

pub fn problem(status: axum::http::StatusCode, message: &str, session: Option<&WebSession>) -> Markup {
    let title = status.canonical_reason().unwrap_or("Refused");
    layout(session, title, html! { p.problem id="problem" { (message) } })
}

pub fn signed_out() -> Markup {
    layout(
        None,
        "Signed out",
        html! { p { "You are signed out. Ask for a new link with " code { "idlegrid web login" } "." } },
    )
}

pub fn jobs(session: &WebSession, jobs: &[JobInfo]) -> Markup {
    layout(
        Some(session),
        "Jobs",
        html! {
            @if jobs.is_empty() {
                p { "No jobs yet. Submit one with " code { "idlegrid job submit" } "." }
            } @else {
                table #jobs {
                    thead { tr { th { "Job" } th { "Name" } th { "State" } th.n { "Tasks" } th.n { "Succeeded" }
                        th.n { "Failed" } th.n { "Running" } th.n { "Queued" } th { "Created" } } }
                    tbody {
                        @for job in jobs {
                            tr {
                                td { a href={ "/web/jobs/" (job.job) } { code { (job.job.to_string()) } } }
                                td { (job.properties.name) }
                                td { (job.state.as_str()) }
                                td.n { (job.counts.total()) }
                                td.n { (job.counts.succeeded) }
                                td.n { (job.counts.failed) }
                                td.n { (job.counts.running) }
                                td.n { (job.counts.queued) }
                                td { (utc(job.created_unix_ms)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn figure(label: &str, field: &str, value: String) -> Markup {
    html! { tr { th { (label) } td.n data-field=(field) id={ "f-" (field) } { (value) } } }
}

/// The pages of a job's lists shown with it.
pub struct JobLists<'a> {
    pub results: &'a [ResultLine],
    /// The results shown come after this one.
    pub after: i64,
    pub tasks: &'a [TaskLine],
    /// The tasks shown come after this index.
    pub tasks_after: Option<TaskIndex>,
}

/// One page of a job's tasks, each with its own stop, resume and remove forms.
fn task_table(session: &WebSession, base: &str, lists: &JobLists<'_>) -> Markup {
    let per_page = super::jobs::TASKS_PER_PAGE as usize;
    html! {
        @if lists.tasks.is_empty() {
            p { "No tasks here." }
        } @else {
            table #tasks {
                thead { tr { th.n { "Task" } th { "State" } th.n { "Attempts" } th.n { "CPU (s)" } th.n { "Progress" } th { "" } } }
                tbody {
                    @for task in lists.tasks {
                        @let to = format!("{base}/tasks/{}", task.index);
                        tr id={ "task-" (task.index) } {
                            td.n { (task.index) }
                            td.state { (task.state.as_str()) }
                            td.n { (task.attempts) }
                            td.n { (format!("{:.1}", task.cpu_ms as f64 / 1000.0)) }
                            td.n { (format!("{:.0}%", f64::from(task.progress.clamp(0.0, 1.0)) * 100.0)) }
                            td {
                                (action(session, &format!("{to}/stop"), "Stop", &format!("stop-{}", task.index)))
                                (action(session, &format!("{to}/resume"), "Resume", &format!("resume-{}", task.index)))
                                (action(session, &format!("{to}/remove"), "Remove", &format!("remove-{}", task.index)))
                            }
                        }
                    }
                }
            }
        }
        p {
            @if lists.tasks_after.is_some() { a href=(base) { "first tasks" } " " }
            @if lists.tasks.len() == per_page {
                @if let Some(last) = lists.tasks.last() {
                    a #next-tasks href={ (base) "?tasks=" (last.index) } { "next tasks" }
                }
            }
        }
    }
}

pub fn job(session: &WebSession, stats: &JobStats, explanation: &str, lists: &JobLists<'_>) -> Markup {
    let (results, after) = (lists.results, lists.after);
    let per_page = super::jobs::RESULTS_PER_PAGE;
    let title = if stats.name.is_empty() { format!("Job {}", stats.job) } else { format!("Job {}", stats.name) };
    let base = format!("/web/jobs/{}", stats.job);
    html! {
        (layout(Some(session), &title, html! {
            p { code { (stats.job) } }
            div #live data-stats={ (base) "/stats" } {
                div.columns {
                    table.figures {
                        (figure("State", "state", stats.state.clone()))
                        (figure("Tasks", "total", stats.total.to_string()))
                        (figure("Not launched", "created", stats.created.to_string()))
                        (figure("Queued", "queued", stats.queued.to_string()))
                        (figure("Running", "running", stats.running.to_string()))
                        (figure("Stopped", "stopped", stats.stopped.to_string()))
                        (figure("Succeeded", "succeeded", stats.succeeded.to_string()))
                        (figure("Failed", "failed", stats.failed.to_string()))
                    }
                    table.figures {
                        (figure("Spent", "spent", money(stats.spent_micros)))
                        (figure("Estimated (reserved)", "estimated",
                            stats.estimated_micros.map(money).unwrap_or_else(|| "-".into())))
                        (figure("Cost limit", "cost_max",
                            stats.cost_max_micros.map(|m| money(m.min(i64::MAX as u64) as i64)).unwrap_or_else(|| "none".into())))
                        (figure("Power requested (GFLOPS)", "power_requested",
                            stats.power_requested_gflops.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into())))
                        (figure("Power delivered (GFLOPS)", "power_delivered", format!("{:.1}", stats.power_delivered_gflops)))
                    }
                }
                h2 { "Progress" }
                svg #chart viewBox="0 0 600 200" width="600" height="200" role="img" aria-label="tasks over time"
                    data-history=(stats.history.len()) {}
                p.legend {
                    span.succeeded { "succeeded" } " " span.running { "running" } " "
                    span.queued { "queued" } " " span.failed { "failed" }
                }
            }
            div.actions {
                (action(session, &format!("{base}/stop"), "Stop", "stop"))
                (action(session, &format!("{base}/resume"), "Resume", "resume"))
                (action(session, &format!("{base}/remove"), "Remove", "remove"))
            }
            @if !explanation.is_empty() {
                h2 { "Why tasks wait" }
                pre #explain { (explanation) }
            }
            h2 { "Tasks" }
            (task_table(session, &base, lists))
            h2 { "Results" }
            @if results.is_empty() {
                p { "No results here yet." }
            } @else {
                table #results {
                    thead { tr { th.n { "Task" } th { "State" } th.n { "Bytes" } th { "" } } }
                    tbody {
                        @for line in results {
                            tr {
                                td.n { (line.task) }
                                td { (line.state) }
                                td.n { (line.size.map(|s| s.to_string()).unwrap_or_default()) }
                                td {
                                    @if line.size.is_some() {
                                        a href={ (base) "/results/" (line.id) } { "download" }
                                    } @else if let Some(failure) = &line.failure {
                                        (failure)
                                    }
                                }
                            }
                        }
                    }
                }
                p {
                    @if after > 0 { a href=(base) { "first results" } " " }
                    @if results.len() as u32 == per_page {
                        @if let Some(last) = results.last() {
                            a #next href={ (base) "?after=" (last.id) } { "next results" }
                        }
                    }
                }
            }
        }))
    }
}

fn statement_table(statement: &Statement) -> Markup {
    html! {
        @if statement.rows.is_empty() {
            p { "No transfers yet." }
        } @else {
            table #statement {
                thead { tr { th { "From" } th { (statement.subject.as_str()) } th { "What" } th.n { "Transfers" } th.n { "Amount" } } }
                tbody {
                    @for row in &statement.rows {
                        tr {
                            td { (utc(row.period.start_ms)) }
                            td { code { (row.subject) } }
                            td { (row.purpose.as_str()) }
                            td.n { (row.transfers) }
                            td.n { (row.amount.to_string()) }
                        }
                    }
                }
            }
            p { "Credits " (statement.credits.to_string()) ", debits " (statement.debits.to_string()) "." }
        }
    }
}

fn balance(account: &AccountInfo) -> Markup {
    html! {
        table.figures #balance {
            tr { th { "Balance" } td.n { (money(account.balance_micros)) } }
            tr { th { "Available" } td.n { (money(account.available_micros)) } }
            tr { th { "Overdraft allowed" } td.n { (account.overdraft_max_micros.map(money).unwrap_or_else(|| "unlimited".into())) } }
            @if account.over_limit { tr { th { "Over its limit" } td { "yes: new jobs wait for a deposit" } } }
        }
    }
}

pub fn account(
    session: &WebSession,
    account: &AccountInfo,
    statement: &Statement,
    profile: Option<&idlegrid_coordinator::client_profile::ClientProfileInfo>,
) -> Markup {
    layout(
        Some(session),
        "Account",
        html! {
            (balance(account))
            @if let Some(profile) = profile {
                p #client-software { "Client software: " (profile.name) " (" (profile.software_version) ")" }
            }
            h2 { "Statement by day" }
            (statement_table(statement))
            @if !statement.requests.is_empty() {
                h2 { "Deposits and payouts" }
                table {
                    thead { tr { th { "Request" } th { "Kind" } th.n { "Amount" } th { "State" } } }
                    tbody {
                        @for request in &statement.requests {
                            tr {
                                td { (request.id) }
                                td { (format!("{:?}", request.kind).to_lowercase()) }
                                td.n { (request.amount.to_string()) }
                                td { (format!("{:?}", request.state).to_lowercase()) }
                            }
                        }
                    }
                }
            }
        },
    )
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

pub fn engine(session: &WebSession, view: &EngineView, now_ms: u64) -> Markup {
    let profile = view.profile.as_ref();
    let hours = profile.and_then(|p| p.availability()).map(|history| {
        let signature = history.signature();
        let intervals: Vec<f64> = (0..7 * 24 * 4).map(|i| signature.cpu(i)).collect();
        hours_of_week(&intervals)
    });
    layout(
        Some(session),
        "Engine",
        html! {
            table.figures #engine {
                @if let Some((state, slots, last)) = &view.node {
                    tr { th { "State" } td #state { (state) } }
                    tr { th { "Slots" } td.n { (slots) } }
                    tr { th { "Last heard from" } td { (utc(*last)) " (" (now_ms.saturating_sub(*last) / 1000) " s ago)" } }
                } @else {
                    tr { th { "State" } td #state { "never connected" } }
                }
                tr { th { "Tasks running now" } td.n #running { (view.running) } }
                @if let Some(p) = profile {
                    tr { th { "Measured speed (GFLOPS per slot)" } td.n #speed {
                        (p.cpu_gflops.map(|s| format!("{:.2}", s.mean)).unwrap_or_else(|| "not measured yet".into())) } }
                    tr { th { "Bandwidth to the server (MB/s)" } td.n {
                        (p.bandwidth_mb_per_s.map(|s| format!("{:.1}", s.mean)).unwrap_or_else(|| "not measured yet".into())) } }
                    tr { th { "Cores" } td.n { (p.cores.map(|c| c.to_string()).unwrap_or_default()) } }
                    tr { th { "Memory (MB)" } td.n { (p.memory_bytes.map(|m| (m >> 20).to_string()).unwrap_or_default()) } }
                    tr { th { "System" } td { (p.os.clone().unwrap_or_default()) " " (p.arch.clone().unwrap_or_default()) } }
                    tr { th { "Engine version" } td { (p.engine_version.clone().unwrap_or_default()) } }
                }
            }
            h2 { "Availability by hour of the week (UTC)" }
            @if let Some(hours) = hours {
                table.week #availability {
                    thead { tr { th {} @for h in 0..24 { th { (h) } } } }
                    tbody {
                        @for (d, day) in DAYS.iter().enumerate() {
                            tr {
                                th { (day) }
                                @for h in 0..24 {
                                    @let share = hours.get(d * 24 + h).copied().unwrap_or(0.0);
                                    td class=(shade(share)) title={ (format!("{:.0}", share * 100.0)) "%" } {}
                                }
                            }
                        }
                    }
                }
            } @else {
                p { "Not recorded yet." }
            }
            h2 { "Earnings" }
            (balance(&view.account))
            (statement_table(&view.statement))
        },
    )
}

/// One instance's health row.
fn instance_row(view: &InstanceView, now_ms: u64) -> Markup {
    let status = &view.status;
    let health = if view.silent {
        "silent"
    } else if status.errors.is_empty() {
        "healthy"
    } else {
        "errors"
    };
    let value = |name: &str| status.values.get(name).map(|v| format!("{v:.0}")).unwrap_or_default();
    html! {
        tr.instance data-health=(health) {
            td { code { (status.instance) } }
            td { (status.version) }
            td { (status.store) }
            td.health { (health) @for error in &status.errors { br; (error) } }
            td.n { (value("uptime_seconds")) }
            td.n { (value("requests_total")) }
            td.n { (value("long_polls_waiting")) }
            td { (now_ms.saturating_sub(view.reported_ms) / 1000) " s ago" }
        }
    }
}

pub fn ops(
    session: &WebSession,
    instances: &[InstanceView],
    pending: &[MoneyRequestInfo],
    web_sessions: u64,
    now_ms: u64,
) -> Markup {
    let healthy = instances.iter().all(|i| !i.silent && i.status.errors.is_empty());
    // System-wide figures are the database's: any fresh instance's report has them.
    let system = instances.iter().find(|i| !i.silent).map(|i| &i.status.values);
    layout(
        Some(session),
        "Operations",
        html! {
            h2 { "Server instances" }
            p { "All: " span #healthy { @if healthy { "healthy" } @else { "attention" } } ". "
                "Web sessions open: " span #web-sessions { (web_sessions) } ". "
                a href="/web/ops/logs" { "Collected logs" } }
            table #instances {
                thead { tr { th { "Instance" } th { "Version" } th { "Store" } th { "Health" } th.n { "Uptime (s)" }
                    th.n { "Requests" } th.n { "Polls held" } th { "Reported" } } }
                tbody { @for view in instances { (instance_row(view, now_ms)) } }
            }
            h2 { "System statistics" }
            table.figures #statistics {
                @for name in ["jobs_active", "tasks_queued", "tasks_running", "engines_connected", "database_latency_seconds"] {
                    @if let Some(value) = system.and_then(|values| values.get(name)) {
                        tr { th { (name) } td.n id={ "stat-" (name) } { (value) } }
                    }
                }
            }
            h2 { "Pending deposits and payouts" }
            @if pending.is_empty() {
                p #no-pending { "None waiting." }
            } @else {
                table #pending {
                    thead { tr { th { "Request" } th { "Account" } th { "Kind" } th.n { "Amount" } th { "Reference" } th { "Asked" } th { "" } } }
                    tbody {
                        @for request in pending {
                            tr {
                                td { (request.id) }
                                td { code { (request.account) } }
                                td { (format!("{:?}", request.kind).to_lowercase()) }
                                td.n { (money(request.amount_micros)) }
                                td { (request.reference) }
                                td { (utc(request.created_ms)) }
                                td {
                                    form.inline method="post" action={ "/web/ops/requests/" (request.id) "/approve" } {
                                        (csrf(session))
                                        button type="submit" id={ "approve-" (request.id) } { "Approve" }
                                    }
                                    form.inline method="post" action={ "/web/ops/requests/" (request.id) "/reject" } {
                                        (csrf(session))
                                        input type="text" name="note" placeholder="reason";
                                        button type="submit" id={ "reject-" (request.id) } { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn logs(session: &WebSession, query: &LogQuery, lines: &[LogEntry]) -> Markup {
    layout(
        Some(session),
        "Collected logs",
        html! {
            form #log-search method="get" action="/web/ops/logs" {
                input type="search" name="q" value=(query.q) placeholder="text in the message or component";
                input type="text" name="level" value=(query.level) placeholder="level";
                input type="text" name="component" value=(query.component) placeholder="component";
                input type="text" name="party" value=(query.party) placeholder="party";
                input type="text" name="job" value=(query.job) placeholder="job";
                button type="submit" { "Search" }
            }
            @if lines.is_empty() {
                p #no-lines { "No lines match." }
            } @else {
                table #logs {
                    thead { tr { th { "Time" } th { "Level" } th { "Component" } th { "Party" } th { "Job" } th { "Message" } } }
                    tbody {
                        @for line in lines {
                            tr {
                                td { (utc(line.time_ms)) }
                                td { (line.level) }
                                td { (line.component) }
                                td { code { (line.role.as_str()) " " (line.party.to_string()) } }
                                td { (line.job.map(|j| j.to_string()).unwrap_or_default()) }
                                td.message { (line.message) }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_coordinator::Party;
    use idlegrid_types::PartyId;

    fn session(role: Role) -> WebSession {
        WebSession {
            party: Party { id: PartyId::from_public_key(&[1u8; 32]), role },
            csrf: "token123".into(),
            started_ms: 0,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn dates_read_as_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_569_445_000), "2026-12-06 15:04 UTC");
    }

    #[test]
    fn hours_average_their_quarters() {
        let mut intervals = vec![0.0; 672];
        intervals[4..8].copy_from_slice(&[1.0, 1.0, 0.0, 0.0]);
        let hours = hours_of_week(&intervals);
        assert_eq!(hours.len(), 168);
        assert_eq!(hours[0], 0.0);
        assert_eq!(hours[1], 0.5);
        assert_eq!([shade(0.0), shade(0.5), shade(1.0), shade(7.0)], ["a0", "a2", "a4", "a4"]);
    }

    #[test]
    fn text_from_users_is_escaped_and_forms_carry_the_csrf_token() {
        let hostile = "<script>alert(1)</script>";
        let stats = JobStats {
            job: "j1".into(),
            name: hostile.into(),
            state: "running".into(),
            created: 0,
            queued: 1,
            running: 0,
            stopped: 0,
            succeeded: 0,
            failed: 0,
            total: 1,
            spent_micros: 1_500_000,
            estimated_micros: None,
            cost_max_micros: None,
            power_requested_gflops: Some(2.0),
            power_delivered_gflops: 0.0,
            now_ms: 0,
            history: Vec::new(),
        };
        let tasks = [TaskLine {
            index: 4,
            state: idlegrid_types::TaskState::Running,
            attempts: 1,
            cpu_ms: 1500,
            progress: 0.5,
        }];
        let lists = JobLists { results: &[], after: 0, tasks: &tasks, tasks_after: None };
        let page = job(&session(Role::Client), &stats, hostile, &lists).into_string();
        assert!(!page.contains(hostile), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("1.500000"));
        let forms = page.matches("<form").count();
        assert_eq!(forms, 7, "stop, resume, remove the job and the task, sign out");
        assert!(page.contains(r#"action="/web/jobs/j1/tasks/4/remove""#), "{page}");
        assert_eq!(page.matches(r#"name="csrf" value="token123""#).count(), forms);
        assert!(!page.contains("<script>"), "no inline script: the policy forbids it");
    }

    #[test]
    fn each_role_sees_its_own_navigation() {
        let client = jobs(&session(Role::Client), &[]).into_string();
        assert!(client.contains(r#"href="/web/jobs""#) && !client.contains(r#"href="/web/ops""#));
        let operator = problem(axum::http::StatusCode::NOT_FOUND, "x", Some(&session(Role::Operator))).into_string();
        assert!(operator.contains(r#"href="/web/ops""#) && !operator.contains(r#"href="/web/jobs""#));
        let stranger = problem(axum::http::StatusCode::UNAUTHORIZED, "<b>", None).into_string();
        assert!(!stranger.contains("<nav") && stranger.contains("&lt;b&gt;"));
    }
}
