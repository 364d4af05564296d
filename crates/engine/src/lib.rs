//! The compute engine (P3): runs on a provider's computer, talks to the server independently of
//! task execution, stages tasks (downloads their elements) before they run, runs as many at
//! once as it has slots, in the wasm sandbox, sends interim statuses and final results, keeps
//! results on disk until the server has them, and reclaims their space afterwards.
//!
//! Owner-facing policy (idle detection, budgets, hours, status page) belongs to a later issue;
//! its seam is [`EngineConfig`] and the run loop's `may_run` check.
//!
//! Shape: [`EngineConfig`] -> [`Engine::start`] -> [`EngineHandle`] (`shutdown`).

mod cache;
mod disk;
mod engine;
pub mod queue;

use std::path::PathBuf;
use std::time::Duration;

use idlegrid_client::ChannelConfig;
use idlegrid_sandbox::SandboxConfig;

pub use engine::{Engine, EngineHandle, EngineStats};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:7700`.
    pub server: String,
    /// Identity, session, element cache and held tasks live here.
    pub data_dir: PathBuf,
    /// Shown to the server operator.
    pub name: String,
    /// Tasks run at once (the cores the owner allows).
    pub slots: u32,
    /// Tasks staged beyond the running ones, so that the engine never waits for work.
    pub prefetch: u32,
    /// How long a task asked to stop may take to checkpoint before it is stopped by force (P2.3).
    pub stop_grace: Duration,
    /// Least time between two interim statuses of one task.
    pub status_interval: Duration,
    /// Caps on what a job may ask of this machine.
    pub task_memory_bytes_max: u64,
    pub task_output_bytes_max: usize,
    pub channel: ChannelConfig,
    pub sandbox: SandboxConfig,
}

impl EngineConfig {
    pub fn new(server: &str, data_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        EngineConfig {
            server: server.to_string(),
            data_dir,
            name: hostname(),
            slots: cores,
            prefetch: cores.max(2) * 2,
            stop_grace: Duration::from_millis(500),
            status_interval: Duration::from_secs(1),
            task_memory_bytes_max: 1 << 30,
            task_output_bytes_max: 16 << 10,
            channel: ChannelConfig::default(),
            sandbox: SandboxConfig::default(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "engine".to_string())
}
