//! A server and engines in this process, for `demo` and `bench`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use idlegrid_client::Client;
use idlegrid_engine::{Engine, EngineConfig, EngineHandle};
use idlegrid_protocol::auth::Identity;
use idlegrid_server::{Server, ServerConfig, ServerHandle};

pub struct LocalCluster {
    pub server: ServerHandle,
    pub engines: Vec<EngineHandle>,
    _dir: tempfile::TempDir,
}

pub struct ClusterOptions {
    pub engines: u32,
    pub slots_per_engine: u32,
    pub prefetch_per_engine: u32,
    /// Plain HTTP instead of TLS (to measure what TLS costs).
    pub plain_http: bool,
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
        let dir = tempfile::Builder::new().prefix("idlegrid-cluster").tempdir()?;
        let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("valid address"), dir.path().join("server"));
        if options.plain_http {
            config.tls = None;
        }
        let server = Server::start(config).await?;
        let mut engines = Vec::new();
        for i in 0..options.engines {
            let mut config = EngineConfig::new(endpoint_of(&server), dir.path().join(format!("engine-{i}")));
            config.name = format!("engine-{i}");
            config.owner.cores = options.slots_per_engine;
            config.owner.status_listen = None;
            config.prefetch = options.prefetch_per_engine;
            engines.push(Engine::start(config).await?);
        }
        Ok(LocalCluster { server, engines, _dir: dir })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(endpoint_of(&self.server), Identity::generate(), "demo").await?)
    }

    pub async fn stop(self) {
        for engine in self.engines {
            engine.shutdown().await;
        }
        self.server.shutdown().await;
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
