//! The engine's warnings and errors go to the platform's log server (P4.9) as well as to its
//! owner's terminal: a `tracing` layer keeps them in a bounded queue, and the engine sends them
//! in batches. When the queue is full the oldest lines go (counted, and reported with the next
//! batch): logging never blocks the engine or grows its memory.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use idlegrid_protocol::wire::LogLine;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const QUEUE_LINES_MAX: usize = 1000;

static QUEUE: Mutex<VecDeque<LogLine>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Add to the process's subscriber to have warnings and errors shipped to the server.
pub fn layer() -> ShippingLayer {
    ShippingLayer
}

pub struct ShippingLayer;

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

impl<S: Subscriber> Layer<S> for ShippingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = LogLine {
            time_ms: crate::engine::now_ms(),
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
            time_ms: crate::engine::now_ms(),
            level: "warn".into(),
            component: "idlegrid_engine::log_shipper".into(),
            message: format!("{dropped} log lines were dropped: the queue was full"),
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

/// Put lines back at the front after a failed send (the newest go if that overflows).
pub(crate) fn put_back(lines: Vec<LogLine>) {
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    for line in lines.into_iter().rev() {
        if queue.len() >= QUEUE_LINES_MAX {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        queue.push_front(line);
    }
}
