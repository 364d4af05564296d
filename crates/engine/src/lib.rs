//! The compute engine (P3): runs on a provider's computer, talks to the server independently of
//! task execution, stages tasks (downloads their elements) before they run, runs them in the
//! wasm sandbox only when the owner allows, sends interim statuses and final results, keeps
//! results on disk until the server has them, and reclaims their space afterwards.
//!
//! The owner decides (see [`settings::OwnerSettings`]): continuous mode (at the lowest OS
//! priority unless the owner says otherwise) or idle-only mode, budgets of cores, memory and disk, hours when tasks may run, and
//! when the engine may contact the server. [`policy`] turns readings of the computer's activity
//! ([`activity`]) into run or wait; waiting pauses running tasks in memory within one epoch
//! tick.
//!
//! Shape: [`EngineConfig`] -> [`Engine::start`] -> [`EngineHandle`] (`shutdown`).

pub mod activity;
mod cache;
pub mod clock;
mod contact;
mod disk;
mod engine;
pub mod log_shipper;
pub mod market_memory;
pub mod market_peripheral;
pub mod market_served;
pub mod market_storage;
pub mod policy;
pub mod queue;
pub mod settings;
pub mod space;
pub mod status;
pub mod upgrade;
mod vault;
mod workers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idlegrid_client::ChannelConfig;
use idlegrid_sandbox::SandboxConfig;

pub use engine::{Engine, EngineHandle, EngineStats, check_assignment};
pub use settings::{OwnerSettings, RunMode, TaskPriority};
pub use space::DiskSpace;
pub use upgrade::{SWITCHED_ENV, StagedUpgrade, staged_upgrade};

/// Where readings of the computer's activity come from.
#[derive(Clone)]
pub enum Activity {
    /// The operating system's own readings, through `idlegrid-platform`.
    System,
    /// Set by hand (tests, owners with their own detector).
    Injected(activity::InjectedActivity),
}

#[derive(Clone)]
pub struct EngineConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:7700`.
    pub server: idlegrid_client::Endpoint,
    /// Identity, keys, session, element cache and held tasks live here.
    pub data_dir: PathBuf,
    /// Shown to the server operator.
    pub name: String,
    pub owner: OwnerSettings,
    /// Tasks staged beyond the running ones, so that the engine never waits for work
    /// (server-controlled).
    pub prefetch: u32,
    /// How long a task asked to stop may take to checkpoint before it is stopped by force (P2.3).
    pub stop_grace: Duration,
    /// Least time between two interim statuses of one task (server-controlled).
    pub status_interval: Duration,
    /// How often warnings and errors caught by `log_shipper::layer` go to the server.
    pub log_ship_interval: Duration,
    pub task_output_bytes_max: usize,
    /// The server's assignment-signing key (hex), if the owner pins it; otherwise the key the
    /// server gives at the first registration is kept and required from then on.
    pub server_key: Option<String>,
    pub activity: Activity,
    /// Where free space on the data folder's disk is read from.
    pub disk_space: DiskSpace,
    pub clock: Arc<dyn clock::LocalClock>,
    /// How often activity is read.
    pub governor_tick: Duration,
    pub channel: ChannelConfig,
    pub sandbox: SandboxConfig,
    /// Bounds on the results waiting to be sent: at the bound the engine takes and starts no
    /// new work until some are delivered.
    pub outbox: OutboxLimits,
    /// Alters every result before it is sent, as a dishonest owner's modified engine would.
    /// Only for tests of result assurance (no command line option sets it).
    #[doc(hidden)]
    pub forge_result: Option<ResultForger>,
    /// Where the market relay listens (`host:port`), for internet access this engine sells;
    /// `None`: no relay.
    pub relay_listen: Option<String>,
}

/// Bounds on the final statuses (results, failures, tasks handed back) waiting for the server.
/// They are on disk as well; the bounds keep the engine's memory from growing while the server
/// cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most final statuses waiting.
    pub results_max: usize,
    /// Most bytes (as sent) of final statuses waiting.
    pub bytes_max: u64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits { results_max: 10_000, bytes_max: 256 << 20 }
    }
}

/// See `EngineConfig::forge_result`.
pub type ResultForger = Arc<dyn Fn(Vec<u8>) -> Vec<u8> + Send + Sync>;

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("server", &self.server)
            .field("data_dir", &self.data_dir)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// For an `https://` server without a given CA, the engine trusts on first use and pins
    /// the CA in `server-ca.pem` of its data folder.
    pub fn new(server: impl Into<idlegrid_client::Endpoint>, data_dir: PathBuf) -> Self {
        let mut server: idlegrid_client::Endpoint = server.into();
        if server.trust().is_none() {
            server = server.with_trust(idlegrid_client::ServerTrust::FirstUse { pin: data_dir.join("server-ca.pem") });
        }
        let owner = OwnerSettings::default();
        EngineConfig {
            server,
            data_dir,
            name: hostname(),
            prefetch: owner.cores.max(2) * 2,
            owner,
            stop_grace: Duration::from_millis(500),
            status_interval: Duration::from_secs(1),
            log_ship_interval: Duration::from_secs(10),
            task_output_bytes_max: 16 << 10,
            server_key: None,
            activity: Activity::System,
            disk_space: DiskSpace::System,
            clock: Arc::new(clock::SystemLocalClock),
            governor_tick: Duration::from_millis(100),
            channel: ChannelConfig::default(),
            sandbox: SandboxConfig::default(),
            outbox: OutboxLimits::default(),
            forge_result: None,
            relay_listen: None,
        }
    }
}

fn hostname() -> String {
    idlegrid_platform::hostname().unwrap_or_else(|| "engine".to_string())
}
