//! The server's own warnings and errors go to the log server (P4.9) beside those of clients
//! and engines: a `tracing` layer keeps them in a bounded queue, and the maintenance pass files
//! them under the server's own identity. When the queue is full the oldest lines go (counted,
//! and reported with the next lines): logging never blocks the server or grows its memory.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use idlegrid_protocol::wire::LogLine;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const QUEUE_LINES_MAX: usize = 1000;
/// Lines filed per maintenance pass at most (the log server's batch bound).
pub(crate) const LINES_PER_PASS_MAX: usize = idlegrid_protocol::wire::limits::LOG_LINES_PER_BATCH_MAX;

static QUEUE: Mutex<VecDeque<LogLine>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Add to the server process's subscriber to have its warnings and errors filed in its own
/// log server.
pub fn layer() -> FilingLayer {
    FilingLayer
}

pub struct FilingLayer;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for FilingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = LogLine {
            time_ms: crate::now_ms(),
            level: if level == Level::ERROR { "error" } else { "warn" }.to_string(),
            component: event.metadata().target().to_string(),
            message: message.0,
            assignment: None,
            job: None,
        };
        let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= QUEUE_LINES_MAX {
            queue.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(line);
    }
}

/// Up to `max` queued lines, oldest first, with a line saying how many were dropped.
pub(crate) fn take(max: usize) -> Vec<LogLine> {
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    let mut lines: Vec<LogLine> = Vec::new();
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        lines.push(LogLine {
            time_ms: crate::now_ms(),
            level: "warn".into(),
            component: "idlegrid_server::self_log".into(),
            message: format!("{dropped} log lines of the server were dropped: the queue was full"),
            assignment: None,
            job: None,
        });
    }
    while lines.len() < max {
        let Some(line) = queue.pop_front() else { break };
        lines.push(line);
    }
    lines
}

/// File the queued lines in the log server (a maintenance step). Lines that cannot be filed
/// are dropped, not logged again: that would feed the queue from its own failure.
pub(crate) async fn file(state: &std::sync::Arc<crate::AppState>) {
    let lines = take(LINES_PER_PASS_MAX);
    if lines.is_empty() {
        return;
    }
    let now = crate::now_ms();
    let filed = state.run(move |coordinator, tx, _| coordinator.file_own_logs(tx, lines.clone(), now)).await;
    if let Err(error) = filed {
        tracing::debug!(%error, "cannot file the server's own log lines");
    }
}
