//! The log server (P4.9): engines and clients send their error and warning lines; operators
//! list and filter them. Batches, lines and the rate per party are bounded.

mod common;

use std::time::Duration;

use common::*;
use idlegrid_client::{ClientError, Method, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::wire::{LogBatch, LogEntry, LogLine};
use idlegrid_types::{JobProperties, Role};

const WAIT: Duration = Duration::from_secs(20);

fn line(level: &str, component: &str, message: &str) -> LogLine {
    LogLine {
        time_ms: 1,
        level: level.into(),
        component: component.into(),
        message: message.into(),
        assignment: None,
        job: None,
    }
}

async fn send(transport: &Transport, lines: Vec<LogLine>) -> Result<serde_json::Value, ClientError> {
    transport.call(Method::POST, "/v1/logs", Some(&LogBatch { lines }), WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_from_engines_and_clients_are_filed_filtered_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Identity::generate();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator.id().clone()];
    config.coordinator.log_lines_per_minute_max = 50;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let engine = transport(&url, Identity::generate(), Role::Provider).await;
    let client = connect(&url).await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let stranger = connect(&url).await;

    send(
        &engine,
        vec![line("warn", "idlegrid_engine::cache", "staging failed"), line("error", "idlegrid_engine", "disk full")],
    )
    .await
    .unwrap();
    let mut about_job = line("error", "client", "cannot write results");
    about_job.job = Some(job);
    send(client.transport(), vec![about_job.clone()]).await.unwrap();
    // Another client naming that job: the line is kept, but not filed under someone else's job.
    send(stranger.transport(), vec![about_job]).await.unwrap();

    let ops = transport(&url, operator, Role::Operator).await;
    let list = |query: &str| {
        let (ops, query) = (ops.clone(), query.to_string());
        async move { ops.call::<(), Vec<LogEntry>>(Method::GET, &format!("/v1/ops/logs{query}"), None, WAIT).await.unwrap() }
    };
    let all = list("").await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].message, "staging failed", "newest first");
    assert_eq!(all[3].party, engine.identity().id().clone());
    assert_eq!(all[3].role, Role::Provider);
    let of_job = list(&format!("?job={job}")).await;
    assert_eq!(of_job.len(), 1, "only the owner's line is filed under the job: {of_job:?}");
    assert_eq!(of_job[0].party, client.transport().identity().id().clone());
    let errors = list("?level=error").await;
    assert_eq!(errors.len(), 3);
    let engine_lines = list("?component=idlegrid_engine").await;
    assert_eq!(engine_lines.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), vec!["disk full"]);
    let future = list("?since_ms=99999999999999").await;
    assert!(future.is_empty());

    // Bounds: a level that is not one, a batch too large, more lines a minute than allowed.
    let refused = send(&engine, vec![line("panic", "x", "y")]).await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 400, report }) if report.message.contains("log level")),
        "{refused:?}"
    );
    let refused = send(&engine, (0..201).map(|i| line("warn", "x", &i.to_string())).collect()).await;
    assert!(matches!(refused, Err(ClientError::Api { status: 413, .. })), "{refused:?}");
    let refused = send(&engine, (0..49).map(|i| line("warn", "x", &i.to_string())).collect()).await;
    assert!(matches!(refused, Err(ClientError::Api { status: 429, .. })), "2 + 49 lines in a minute: {refused:?}");
    let huge = "x".repeat(10_000);
    send(client.transport(), vec![line("warn", "client", &huge)]).await.unwrap();
    assert!(list("?limit=1").await[0].message.len() <= 2048 + 3, "long lines are cut");
    // Only operators read them.
    let refused = client.transport().call::<(), Vec<LogEntry>>(Method::GET, "/v1/ops/logs", None, WAIT).await;
    assert!(matches!(refused, Err(ClientError::Api { status: 403, .. })));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_process_ships_its_warnings_and_the_operator_reads_them_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let id = std::process::Command::new(binary()).arg("--home").arg(&home).args(["ops", "id"]).output().unwrap();
    let operator: idlegrid_types::PartyId = String::from_utf8(id.stdout).unwrap().trim().parse().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();
    // The first instance it is given is down: the engine warns that it switches, and ships that.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let engine_data = dir.path().join("engine");
    let _engine = Process(
        std::process::Command::new(binary())
            .args(["--server", &format!("{dead},{url}"), "--server-ca"])
            .arg(&ca)
            .args(["engine", "--data"])
            .arg(&engine_data)
            .args(["--cores", "1", "--log", "warn", "--task-priority", "normal"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    let stdout = loop {
        let output = std::process::Command::new(binary())
            .arg("--home")
            .arg(&home)
            .args(["--server", &url, "--server-ca"])
            .arg(&ca)
            .args(["ops", "logs", "--component", "idlegrid_client::transport", "--level", "warn"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        if stdout.contains("switching") {
            break stdout;
        }
        assert!(started.elapsed() < PATIENCE, "the engine's warning never arrived:\n{stdout}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(stdout.contains("(provider)") && stdout.contains(&dead), "{stdout}");
    server.shutdown().await;
}
