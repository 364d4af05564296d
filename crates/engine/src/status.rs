//! The owner's view (P3.10, P3.11): a page on 127.0.0.1 that says what the engine is doing and
//! why, and the same data as JSON for `idlegrid engine status`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub assignment: u64,
    pub state: String,
    pub progress: f32,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub used: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub title: String,
    pub body: String,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub engine: String,
    pub name: String,
    pub server: String,
    pub version: String,
    /// "computing", "waiting" (not allowed to run now) or "idle" (nothing to run).
    pub state: String,
    pub reason: Option<String>,
    pub mode: String,
    pub hours: String,
    pub contact: String,
    pub activity_source: String,
    pub task_priority: String,
    /// Tasks staged ahead of the free cores (the server may change it with `Config`).
    pub prefetch: u32,
    pub tasks: Vec<TaskView>,
    pub memory: Usage,
    pub disk: Usage,
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_suspended: u64,
    pub cpu_seconds: u64,
    /// What the server last said about this node's work (WorkSummary).
    pub server_summary: Option<String>,
    pub connected: bool,
    pub last_contact_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub messages: Vec<Pushed>,
    /// The market contracts the provider serves, as the server last listed them.
    #[serde(default)]
    pub contracts: Vec<crate::market_served::ContractView>,
}

pub type Snapshot = Arc<dyn Fn() -> EngineStatus + Send + Sync>;

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The server's WorkSummary as the owner reads it: tasks completed and time run as billed,
/// and the account balance (micro-units shown as units with six decimals).
pub fn server_summary(tasks_completed: u64, run_seconds: u64, balance_micros: i64) -> String {
    let sign = if balance_micros < 0 { "-" } else { "" };
    let magnitude = balance_micros.unsigned_abs();
    format!(
        "{tasks_completed} tasks completed, {run_seconds} s run (as billed); account balance {sign}{}.{:06}",
        magnitude / 1_000_000,
        magnitude % 1_000_000
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
}

pub fn render(status: &EngineStatus) -> String {
    let mut tasks = String::new();
    for task in &status.tasks {
        tasks.push_str(&format!(
            "<tr><td>{}</td><td class=\"state\">{}</td><td><progress max=\"1\" value=\"{:.3}\"></progress> <span class=\"progress\">{:.0}%</span></td><td>{}</td></tr>",
            task.assignment,
            escape(&task.state),
            task.progress,
            task.progress * 100.0,
            task.priority
        ));
    }
    if tasks.is_empty() {
        tasks.push_str("<tr><td colspan=\"4\">no tasks</td></tr>");
    }
    let messages: String = status
        .messages
        .iter()
        .map(|m| {
            let link = m.url.as_ref().map(|u| format!(" <a href=\"{0}\">{0}</a>", escape(u))).unwrap_or_default();
            format!("<li><b>{}</b> {}{link}</li>", escape(&m.title), escape(&m.body))
        })
        .collect();
    let reason = status.reason.as_ref().map(|r| format!(" — {}", escape(r))).unwrap_or_default();
    let contact = match (status.connected, status.last_contact_unix_ms) {
        (true, _) => "connected".to_string(),
        (false, Some(ms)) => format!("offline (last contact at {ms} ms since the epoch)"),
        (false, None) => "never connected".to_string(),
    };
    let error = status.last_error.as_ref().map(|e| format!("<p class=\"error\">{}</p>", escape(e))).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Idlegrid engine: {state}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} .state-{state} {{ font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }}
.error {{ color: #a00; }}
</style></head>
<body>
<h1>Idlegrid engine <code>{engine}</code> ({name})</h1>
<p id="state" class="state-{state}">{state}{reason}</p>
<table>
<tr><th>mode</th><td>{mode}, tasks at {priority} priority, {prefetch} staged ahead</td></tr>
<tr><th>hours</th><td>{hours}</td></tr>
<tr><th>activity</th><td>{activity}</td></tr>
<tr><th>server</th><td>{server} — {contact} ({contact_schedule})</td></tr>
<tr><th>memory</th><td>{mem_used} of {mem_max}</td></tr>
<tr><th>disk</th><td>{disk_used} of {disk_max}</td></tr>
<tr><th>work done</th><td>{ok} tasks succeeded, {failed} failed, {suspended} handed back; {cpu} s of CPU</td></tr>
<tr><th>from the server</th><td>{summary}</td></tr>
</table>
{error}
<h2>Tasks</h2>
<table id="tasks"><tr><th>assignment</th><th>state</th><th>progress</th><th>priority</th></tr>{tasks}</table>
<h2>Contracts served</h2>
{contracts}
<h2>Messages</h2><ul>{messages}</ul>
<p><small>engine {version}</small></p>
</body></html>"#,
        state = escape(&status.state),
        engine = escape(&status.engine),
        name = escape(&status.name),
        mode = escape(&status.mode),
        priority = escape(&status.task_priority),
        prefetch = status.prefetch,
        hours = escape(&status.hours),
        activity = escape(&status.activity_source),
        server = escape(&status.server),
        contact_schedule = escape(&status.contact),
        mem_used = mb(status.memory.used),
        mem_max = mb(status.memory.max),
        disk_used = mb(status.disk.used),
        disk_max = mb(status.disk.max),
        ok = status.tasks_succeeded,
        failed = status.tasks_failed,
        suspended = status.tasks_suspended,
        cpu = status.cpu_seconds,
        summary = escape(status.server_summary.as_deref().unwrap_or("nothing yet")),
        version = escape(&status.version),
        contracts = crate::market_served::render(&status.contracts),
    )
}

async fn page(State(snapshot): State<Snapshot>) -> impl IntoResponse {
    Html(render(&snapshot()))
}

async fn json(State(snapshot): State<Snapshot>) -> impl IntoResponse {
    Json(snapshot())
}

/// Serve the page on `listen` (loopback only); returns the bound address.
pub async fn serve(
    listen: &str,
    snapshot: Snapshot,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<SocketAddr> {
    let address: SocketAddr =
        listen.parse().map_err(|e| std::io::Error::other(format!("status_listen '{listen}': {e}")))?;
    if !address.ip().is_loopback() {
        return Err(std::io::Error::other(format!("the status page listens on loopback only, not on {address}")));
    }
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/", get(page)).route("/status.json", get(json)).with_state(snapshot);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_summary_reads_the_balance_in_units() {
        assert_eq!(
            server_summary(3, 41, 2_500_000),
            "3 tasks completed, 41 s run (as billed); account balance 2.500000"
        );
        assert_eq!(server_summary(0, 0, -1), "0 tasks completed, 0 s run (as billed); account balance -0.000001");
        assert!(server_summary(0, 0, i64::MIN).ends_with("-9223372036854.775808"));
    }

    #[test]
    fn the_page_escapes_what_the_server_pushed() {
        let status = EngineStatus {
            engine: "e".into(),
            name: "n".into(),
            server: "s".into(),
            version: "v".into(),
            state: "computing".into(),
            reason: None,
            mode: "continuous".into(),
            hours: "always".into(),
            contact: "c".into(),
            activity_source: "a".into(),
            task_priority: "SCHED_IDLE".into(),
            prefetch: 4,
            tasks: vec![TaskView { assignment: 7, state: "running".into(), progress: 0.5, priority: 0 }],
            memory: Usage { used: 0, max: 1 },
            disk: Usage { used: 0, max: 1 },
            tasks_succeeded: 1,
            tasks_failed: 0,
            tasks_suspended: 0,
            cpu_seconds: 3,
            server_summary: None,
            connected: true,
            last_contact_unix_ms: None,
            last_error: None,
            messages: vec![Pushed { title: "<script>alert(1)</script>".into(), body: "b".into(), url: None }],
            contracts: Vec::new(),
        };
        let html = render(&status);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>alert"));
        assert!(html.contains("50%"));
    }
}
