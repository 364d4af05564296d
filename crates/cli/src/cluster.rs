//! A server and engines in this process, for `demo` and `bench`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use idlegrid_client::Client;
use idlegrid_engine::{Engine, EngineConfig, EngineHandle};
use idlegrid_protocol::auth::Identity;
use idlegrid_server::{Server, ServerConfig, ServerHandle};

pub struct LocalCluster {
    /// The first instance; the client talks to it.
    pub server: ServerHandle,
    /// Further instances on the same database, element folder and CA.
    pub more_servers: Vec<ServerHandle>,
    pub engines: Vec<EngineHandle>,
    _dir: tempfile::TempDir,
}

pub struct ClusterOptions {
    pub engines: u32,
    pub slots_per_engine: u32,
    pub prefetch_per_engine: u32,
    /// Plain HTTP instead of TLS (to measure what TLS costs).
    pub plain_http: bool,
    /// Server instances (more than one needs a PostgreSQL `database`).
    pub instances: u32,
    /// The servers' database: empty for SQLite.
    pub database: String,
}

impl ClusterOptions {
    /// One instance on SQLite, over TLS.
    pub fn new(engines: u32, slots_per_engine: u32, prefetch_per_engine: u32) -> ClusterOptions {
        ClusterOptions {
            engines,
            slots_per_engine,
            prefetch_per_engine,
            plain_http: false,
            instances: 1,
            database: String::new(),
        }
    }
}

/// The server as its parties reach it: its URL and, over TLS, its CA.
pub fn endpoint_of(server: &ServerHandle) -> idlegrid_client::Endpoint {
    let endpoint = idlegrid_client::Endpoint::new(&server.url());
    match server.ca_pem() {
        Some(ca) => endpoint.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string())),
        None => endpoint,
    }
}

impl LocalCluster {
    pub async fn start(options: &ClusterOptions) -> anyhow::Result<LocalCluster> {
        anyhow::ensure!(options.instances >= 1, "at least one server instance");
        anyhow::ensure!(
            options.instances == 1 || options.database.starts_with("postgres"),
            "several server instances need a shared PostgreSQL database (--database postgres://...)"
        );
        let dir = tempfile::Builder::new().prefix("idlegrid-cluster").tempdir()?;
        // Every instance: the same data folder (elements, CA) and database.
        let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("valid address"), dir.path().join("server"));
        config.database = options.database.clone();
        // Every party of a local cluster comes from loopback: limits per source address would
        // treat the whole cluster as one caller.
        config.connection_limits.connections_per_source_max = config.connection_limits.connections_max;
        config.rate_limits = idlegrid_server::RateLimits::unbounded();
        if options.plain_http {
            config.tls = None;
        }
        let server = Server::start(config.clone()).await?;
        let mut more_servers = Vec::new();
        for _ in 1..options.instances {
            more_servers.push(Server::start(config.clone()).await?);
        }
        let urls: Vec<String> = std::iter::once(&server).chain(&more_servers).map(|s| s.url()).collect();
        let mut engines = Vec::new();
        for i in 0..options.engines {
            // Spread over the instances; each engine knows the others as alternates.
            let first = i as usize % urls.len();
            let ordered: Vec<&str> = urls[first..].iter().chain(&urls[..first]).map(String::as_str).collect();
            let mut endpoint = idlegrid_client::Endpoint::new(&ordered.join(","));
            if let Some(ca) = server.ca_pem() {
                endpoint = endpoint.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
            }
            let mut config = EngineConfig::new(endpoint, dir.path().join(format!("engine-{i}")));
            config.name = format!("engine-{i}");
            config.owner.cores = options.slots_per_engine;
            config.owner.status_listen = None;
            config.prefetch = options.prefetch_per_engine;
            engines.push(Engine::start(config).await?);
        }
        Ok(LocalCluster { server, more_servers, engines, _dir: dir })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(endpoint_of(&self.server), Identity::generate(), "demo").await?)
    }

    pub async fn stop(self) {
        for engine in self.engines {
            engine.shutdown().await;
        }
        self.server.shutdown().await;
        for server in self.more_servers {
            server.shutdown().await;
        }
    }
}

/// Find the folder with the example tasks' `.wasm` files.
pub fn tasks_dir(given: Option<PathBuf>, needed: &[&str]) -> anyhow::Result<PathBuf> {
    let relative = Path::new("examples/tasks/target/wasm32-wasip1/release");
    let mut candidates: Vec<PathBuf> = given.into_iter().collect();
    candidates.push(relative.to_path_buf());
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/idlegrid -> the repository root is three levels up.
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join(relative));
        }
    }
    for dir in &candidates {
        if needed.iter().all(|name| dir.join(format!("{name}.wasm")).exists()) {
            return Ok(dir.clone());
        }
    }
    anyhow::bail!(
        "the example tasks ({}) were not found in {}: build them with `cargo xtask build-tasks` (or run `cargo xtask demo`), or pass --tasks-dir",
        needed.join(", "),
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    )
}

pub fn read_task(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}
