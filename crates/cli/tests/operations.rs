//! What an operator sees (issue 8, P4.8): every instance's health side by side with
//! `idlegrid ops status`, and Prometheus metrics at /metrics.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::JobProperties;

fn idlegrid(home: &std::path::Path, server: &str, ca: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .arg("--home")
        .arg(home)
        .args(["--server", server, "--server-ca"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_status_shows_every_instance_and_metrics_count_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // The operator's ID first: the server is told which key may operate it.
    let id = idlegrid(&home, "https://127.0.0.1:1", &dir.path().join("none.pem"), &["ops", "id"]);
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let operator: idlegrid_types::PartyId = String::from_utf8(id.stdout).unwrap().trim().parse().unwrap();

    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator];
    config.maintenance_interval = std::time::Duration::from_millis(50);
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();
    let mut engine = engine_config(&url, dir.path(), "engine");
    engine.server = endpoint(&url).await;
    let engine = idlegrid_engine::Engine::start(engine).await.unwrap();
    let client = connect(&url).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let specs = (0..12).map(|i| TaskSpec {
        index: i,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: vec![b'x'],
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();
    run_to_completion(&client, job, Replay::Undelivered).await;

    // Prometheus: no party certificate needed, the server's CA is.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(idlegrid_pki::client_config(server.ca_pem().unwrap(), None).unwrap())
        .build()
        .unwrap();
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let instance = url.trim_start_matches("https://");
    assert!(metrics.contains(&format!("idlegrid_tasks_concluded_total{{instance=\"{instance}\"}} 12\n")), "{metrics}");
    assert!(metrics.contains(&format!("idlegrid_engines_connected{{instance=\"{instance}\"}} 1\n")), "{metrics}");
    assert!(metrics.contains("# TYPE idlegrid_database_latency_seconds gauge"), "{metrics}");
    assert!(metrics.contains(&format!("idlegrid_up{{instance=\"{instance}\"}} 1")), "{metrics}");

    // Two instances asked, one of them down: shown side by side, the dead one as DOWN.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let output = idlegrid(&home, &url, &ca, &["ops", "status", "--instance", &dead]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = |name: &str| {
        stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{stdout}")).to_string()
    };
    let concluded: Vec<String> = line("tasks_concluded_total").split_whitespace().map(str::to_string).collect();
    assert_eq!(concluded[1..], ["12".to_string(), "DOWN".to_string()], "{stdout}");
    assert!(line("store").contains("sqlite"), "{stdout}");
    assert!(line("engines_connected").split_whitespace().nth(1) == Some("1"), "{stdout}");
    assert!(stdout.contains(&format!("{dead}: ")), "the dead instance's error is named:\n{stdout}");

    // Only operators see it.
    let refused =
        client.transport().call_text(reqwest::Method::GET, "/v1/ops/status", std::time::Duration::from_secs(10)).await;
    assert!(matches!(refused, Err(idlegrid_client::ClientError::Api { status: 403, .. })), "{refused:?}");
    engine.shutdown().await;
    server.shutdown().await;
}
