//! Shared test helpers: an in-process cluster, child processes of the real binary, example
//! tasks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use idlegrid_client::{Client, JobEvent};
use idlegrid_engine::{Engine, EngineConfig, EngineHandle};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{JobInfo, Replay, TaskStatusReport};
use idlegrid_server::{Server, ServerConfig, ServerHandle};
use idlegrid_types::{ElementKind, ElementRef, JobId, JobState};

#[allow(unused_imports)]
pub use idlegrid_testkit::{example_task, example_task_bytes};

/// Generous bound so a broken test fails instead of hanging; never a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(180);

pub fn server_config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.join("server"));
    config.maintenance_interval = Duration::from_millis(100);
    // Well above the engines' poll interval (`engine_config`), even on a busy machine: a live
    // engine is never taken for a silent one, while a killed one is found out within a test.
    config.coordinator.provider_silence_ms_max = 15_000;
    // Tests run many parties from one address (loopback); the tests of these limits set their own.
    config.connection_limits.connections_per_source_max = 100_000;
    config.rate_limits = idlegrid_server::RateLimits::unbounded();
    config
}

pub fn engine_config(server: &str, dir: &Path, name: &str) -> EngineConfig {
    let mut config = EngineConfig::new(server, dir.join(name));
    config.name = name.to_string();
    config.owner.cores = 1;
    config.owner.status_listen = None;
    // Tests run beside other work (builds, other tests): at the lowest priority their tasks
    // would wait for an idle CPU. Tests about priority set it back.
    config.owner.task_priority = idlegrid_engine::TaskPriority::Normal;
    config.prefetch = 4;
    config.channel.poll_wait = Duration::from_secs(2);
    config.channel.backoff_max = Duration::from_millis(500);
    config
}

/// Logs to stderr when TEST_LOG is set (e.g. TEST_LOG=debug), for debugging a test.
pub fn logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub server: Option<ServerHandle>,
    pub engines: Vec<EngineHandle>,
}

impl Cluster {
    pub async fn start(engines: usize) -> Cluster {
        Self::start_with(engines, true).await
    }

    /// A cluster on plain HTTP (development mode), for tests of what rides on top of TLS.
    pub async fn start_plain(engines: usize) -> Cluster {
        Self::start_with(engines, false).await
    }

    async fn start_with(engines: usize, tls: bool) -> Cluster {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let mut config = server_config(dir.path());
        if !tls {
            config.tls = None;
        }
        let server = Server::start(config).await.unwrap();
        let mut handles = Vec::new();
        for i in 0..engines {
            let mut config = engine_config(&server.url(), dir.path(), &format!("engine-{i}"));
            if let Some(ca) = server.ca_pem() {
                config.server = config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
            }
            handles.push(Engine::start(config).await.unwrap());
        }
        Cluster { dir, server: Some(server), engines: handles }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }

    /// The server with the CA to trust.
    pub fn endpoint(&self) -> idlegrid_client::Endpoint {
        let server = self.server.as_ref().unwrap();
        let endpoint = idlegrid_client::Endpoint::new(&server.url());
        match server.ca_pem() {
            Some(ca) => endpoint.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string())),
            None => endpoint,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url()).await
    }
}

/// The server at `url`; for HTTPS, trusting the CA it presents now (the test's own server).
pub async fn endpoint(url: &str) -> idlegrid_client::Endpoint {
    let endpoint = idlegrid_client::Endpoint::new(url);
    if !endpoint.is_tls() {
        return endpoint;
    }
    let (host, port) = endpoint.host_port().unwrap();
    let ca = idlegrid_pki::fetch_server_ca(&host, port, Duration::from_secs(10)).await.unwrap();
    endpoint.with_trust(idlegrid_client::ServerTrust::Ca(ca))
}

pub async fn connect(url: &str) -> Client {
    let config = idlegrid_client::ChannelConfig {
        poll_wait: Duration::from_secs(5),
        backoff_max: Duration::from_millis(500),
        ..Default::default()
    };
    Client::connect_with(endpoint(url).await, Identity::generate(), "test", config).await.unwrap()
}

/// A signed-request transport for `identity`, registered as `role` (which over TLS also
/// gives it its certificate).
pub async fn transport(url: &str, identity: Identity, role: idlegrid_types::Role) -> idlegrid_client::Transport {
    let transport = idlegrid_client::Transport::new(endpoint(url).await, identity).unwrap();
    transport.register(role, "test").await.unwrap();
    transport
}

pub async fn upload_task(client: &Client, name: &str) -> ElementRef {
    client.upload(example_task_bytes(name), ElementKind::Executable, &format!("{name}.wasm")).await.unwrap()
}

/// Watch a job to completion; returns every final status and the completion notice.
pub async fn run_to_completion(client: &Client, job: JobId, replay: Replay) -> (Vec<TaskStatusReport>, JobInfo) {
    let mut watch = client.watch(job, replay).await.unwrap();
    let mut finals = Vec::new();
    let outcome = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = watch.next().await {
            match event.unwrap() {
                JobEvent::Task(report) if report.state.is_final() => finals.push(report),
                JobEvent::Job(info) if info.state == JobState::Completed => return info,
                _ => {}
            }
        }
        panic!("the watch ended before the job completed");
    })
    .await
    .expect("the job did not complete in time");
    (finals, outcome)
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_idlegrid"))
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process that is killed (SIGKILL) when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

pub fn spawn_server(port: u16, data: &Path, silence_secs: u64) -> Process {
    let child = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--engine-silence-secs", &silence_secs.to_string(), "--maintenance-secs", "0.2", "--log", "warn"])
        // Benchmarks (P5.1) would take a slot of every new engine: tests count tasks exactly.
        .args(["--benchmark-interval-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

pub fn spawn_engine(server: &str, data: &Path, slots: u32) -> Process {
    let child = Command::new(binary())
        .args(["--server", server, "engine", "--data"])
        .arg(data)
        .args(["--cores", &slots.to_string(), "--prefetch", "2", "--status-listen", "127.0.0.1:0", "--log", "warn"])
        // Not starved by other work on the machine (see `engine_config`).
        .args(["--task-priority", "normal"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

/// Wait until the server answers its health check.
pub async fn wait_healthy(url: &str) {
    idlegrid_pki::install_default_provider();
    let endpoint = idlegrid_client::Endpoint::new(url);
    for _ in 0..600 {
        let http = if endpoint.is_tls() {
            let (host, port) = endpoint.host_port().unwrap();
            match idlegrid_pki::fetch_server_ca(&host, port, Duration::from_secs(2)).await {
                Ok(ca) => reqwest::Client::builder()
                    .tls_backend_preconfigured(idlegrid_pki::client_config(&ca, None).unwrap())
                    .build()
                    .unwrap(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        } else {
            reqwest::Client::new()
        };
        if let Ok(response) = http.get(format!("{url}/v1/health")).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server at {url} did not come up");
}

/// Run the CLI as a client; returns (success, stdout, stderr).
pub fn cli(home: &Path, server: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary()).arg("--home").arg(home).args(["--server", server]).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Wait until `check` holds (never a speed assertion: PATIENCE is generous).
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the asynchronous `check` holds (never a speed assertion: PATIENCE is generous).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_some(what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// Wait until the asynchronous `find` finds something, and return it.
pub async fn wait_some<T, F, Fut>(what: &str, mut find: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = find().await {
            return found;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
