//! Health of one server instance as name-value pairs (P4.8): for operators through
//! GET /v1/ops/status (`idlegrid ops status` polls every instance), and for Prometheus at
//! /metrics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use idlegrid_protocol::wire::InstanceStatus;
use idlegrid_store::{Census, Store};

use crate::AppState;

/// Counters kept in memory by one instance since it started.
pub struct Metrics {
    started: Instant,
    pub requests: AtomicU64,
    pub responses_client_error: AtomicU64,
    pub responses_server_error: AtomicU64,
    pub tasks_concluded: AtomicU64,
    /// Market operations committed: offers registered, searches, negotiations opened,
    /// contracts made and contracts signed by both parties.
    pub market_offers: AtomicU64,
    pub market_searches: AtomicU64,
    pub market_negotiations: AtomicU64,
    pub market_contracts: AtomicU64,
    pub market_contracts_signed: AtomicU64,
    /// (when, tasks_concluded) once per maintenance pass, over the last minute.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            responses_client_error: AtomicU64::new(0),
            responses_server_error: AtomicU64::new(0),
            tasks_concluded: AtomicU64::new(0),
            market_offers: AtomicU64::new(0),
            market_searches: AtomicU64::new(0),
            market_negotiations: AtomicU64::new(0),
            market_contracts: AtomicU64::new(0),
            market_contracts_signed: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => self.responses_client_error.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.responses_server_error.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Count the market operations of a committed transaction.
    pub fn count_market(&self, counts: &idlegrid_coordinator::market::MarketCounts) {
        self.market_offers.fetch_add(counts.offers, Ordering::Relaxed);
        self.market_searches.fetch_add(counts.searches, Ordering::Relaxed);
        self.market_negotiations.fetch_add(counts.negotiations, Ordering::Relaxed);
        self.market_contracts.fetch_add(counts.contracts, Ordering::Relaxed);
        self.market_contracts_signed.fetch_add(counts.contracts_signed, Ordering::Relaxed);
    }

    /// Record a sample for the tasks-per-second figure (called by maintenance).
    pub fn sample(&self) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now, self.tasks_concluded.load(Ordering::Relaxed)));
        while samples.len() > 2 && samples.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            samples.pop_front();
        }
    }

    /// Tasks concluded per second by this instance over the last minute.
    fn tasks_per_second(&self) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        match (samples.front(), samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Everything an operator sees of this instance; reads the database (census and latency).
pub async fn status(state: &std::sync::Arc<AppState>, instance: &str) -> InstanceStatus {
    let store_state = state.clone();
    let since = crate::now_ms().saturating_sub(state.coordinator.config().provider_silence_ms_max);
    let measured = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let census = store_state.store.read(|tx| tx.census(since));
        (census, started.elapsed())
    })
    .await;
    let m = &state.metrics;
    let mut values = BTreeMap::new();
    let mut put = |name: &str, value: f64| {
        values.insert(name.to_string(), value);
    };
    put("uptime_seconds", m.started.elapsed().as_secs_f64());
    put("requests_total", m.requests.load(Ordering::Relaxed) as f64);
    put("responses_client_error_total", m.responses_client_error.load(Ordering::Relaxed) as f64);
    put("responses_server_error_total", m.responses_server_error.load(Ordering::Relaxed) as f64);
    put("tasks_concluded_total", m.tasks_concluded.load(Ordering::Relaxed) as f64);
    put("tasks_per_second", m.tasks_per_second());
    put("market_offers_total", m.market_offers.load(Ordering::Relaxed) as f64);
    put("market_searches_total", m.market_searches.load(Ordering::Relaxed) as f64);
    put("market_negotiations_total", m.market_negotiations.load(Ordering::Relaxed) as f64);
    put("market_contracts_total", m.market_contracts.load(Ordering::Relaxed) as f64);
    put("market_contracts_signed_total", m.market_contracts_signed.load(Ordering::Relaxed) as f64);
    // Polls held open now and since start; a poll answered at once is only a request.
    put("long_polls_waiting", state.polls.waiting() as f64);
    put("long_polls_held_total", state.polls.held_total() as f64);
    let mut errors = Vec::new();
    match measured {
        Ok((Ok(census), latency)) => {
            let Census { tasks_queued, tasks_running, jobs_active, engines_connected } = census;
            put("tasks_queued", tasks_queued as f64);
            put("tasks_running", tasks_running as f64);
            put("jobs_active", jobs_active as f64);
            put("engines_connected", engines_connected as f64);
            put("database_latency_seconds", latency.as_secs_f64());
        }
        Ok((Err(error), _)) => errors.push(format!("database: {error}")),
        Err(error) => errors.push(format!("database worker: {error}")),
    }
    InstanceStatus {
        instance: instance.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        store: state.store.kind().to_string(),
        values,
        errors,
    }
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn prometheus(status: &InstanceStatus) -> String {
    let mut text = String::new();
    for (name, value) in &status.values {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        text.push_str(&format!(
            "# TYPE idlegrid_{name} {kind}\nidlegrid_{name}{{instance=\"{}\"}} {value}\n",
            status.instance
        ));
    }
    text.push_str(&format!(
        "# TYPE idlegrid_up gauge\nidlegrid_up{{instance=\"{}\"}} {}\n",
        status.instance,
        u8::from(status.errors.is_empty())
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_slope_over_the_window_and_zero_without_samples() {
        let metrics = Metrics::default();
        assert_eq!(metrics.tasks_per_second(), 0.0);
        let t0 = Instant::now();
        {
            let mut samples = metrics.samples.lock().unwrap();
            samples.push_back((t0, 100));
            samples.push_back((t0 + Duration::from_secs(10), 600));
        }
        assert!((metrics.tasks_per_second() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn prometheus_text_names_counters_and_gauges() {
        let status = InstanceStatus {
            instance: "a:1".into(),
            version: "0".into(),
            store: "sqlite".into(),
            values: [("requests_total".to_string(), 5.0), ("tasks_queued".to_string(), 2.0)].into_iter().collect(),
            errors: vec![],
        };
        let text = prometheus(&status);
        assert!(
            text.contains("# TYPE idlegrid_requests_total counter\nidlegrid_requests_total{instance=\"a:1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE idlegrid_tasks_queued gauge"), "{text}");
        assert!(text.contains("idlegrid_up{instance=\"a:1\"} 1"), "{text}");
    }
}
