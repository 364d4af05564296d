//! What the server tells engines besides their tasks, end to end: after billing settles an
//! engine's work its status page shows the server's summary (tasks completed, time run, the
//! account balance), and content an operator publishes with `idlegrid ops publish` reaches
//! every connected engine at once and an engine that connects later when it does.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::*;
use idlegrid_client::{Accounts, ClientError};
use idlegrid_engine::Engine;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_protocol::wire::DisplayBody;
use idlegrid_types::{JobProperties, PartyId, Role};
use reqwest::Method;

fn idlegrid(home: &Path, server: &str, ca: &Path, args: &[&str]) -> Output {
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
async fn engines_show_the_servers_work_summary_and_the_operators_published_content() {
    let dir = tempfile::tempdir().unwrap();
    let operator_home = dir.path().join("operator");
    let none = dir.path().join("none.pem");
    let id = idlegrid(&operator_home, "https://127.0.0.1:1", &none, &["ops", "id"]);
    let operator: PartyId = String::from_utf8_lossy(&id.stdout).trim().parse().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator];
    // Short billing increments, so the work is settled within the test.
    config.coordinator.pricing.increment_ms = 1000;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let (url, ca) = (server.url(), dir.path().join("ca.pem"));
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();
    let first = Engine::start(engine_config(&url, dir.path(), "first")).await.unwrap();

    // Five tasks run on the only engine; once billing settles them, its page says so.
    let client = connect(&url).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let tasks: Vec<TaskSpec> = (0..5)
        .map(|i| TaskSpec {
            index: i,
            executable: noop.hash,
            data: BTreeMap::new(),
            params: i.to_string().into_bytes(),
            priority: None,
        })
        .collect();
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    let (_, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 5);
    wait_for("the server's summary of the five tasks", || {
        first.status().server_summary.is_some_and(|s| s.starts_with("5 tasks completed"))
    })
    .await;
    // The balance it shows is the provider's account balance as the API reports it.
    let provider = Identity::load_or_create(&dir.path().join("first").join("identity.key")).unwrap();
    let provider_transport = transport(&url, provider, Role::Provider).await;
    let balance = Accounts::new(&provider_transport).info().await.unwrap().balance_micros;
    let summary = first.status().server_summary.unwrap();
    let shown = format!("account balance {}.{:06}", balance / 1_000_000, balance % 1_000_000);
    assert!(balance > 0 && summary.ends_with(&shown), "{summary} against a balance of {balance} micro-units");

    // The operator publishes a notice: the connected engine shows it.
    let out = idlegrid(
        &operator_home,
        &url,
        &ca,
        &[
            "ops",
            "publish",
            "--title",
            "Maintenance on Sunday",
            "--body",
            "02:00 to 03:00 UTC",
            "--url",
            "https://status.example.org",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sent to 1 connected engines"), "{stdout}");
    wait_for("the notice on the connected engine", || {
        first.status().messages.iter().any(|m| {
            m.title == "Maintenance on Sunday"
                && m.body == "02:00 to 03:00 UTC"
                && m.url.as_deref() == Some("https://status.example.org")
        })
    })
    .await;

    // An engine that connects afterwards gets the notice and a summary when its session starts.
    let second = Engine::start(engine_config(&url, dir.path(), "second")).await.unwrap();
    wait_for("the notice on the engine that came later", || {
        let status = second.status();
        status.messages.iter().any(|m| m.title == "Maintenance on Sunday")
            && status.server_summary.is_some_and(|s| s.starts_with("0 tasks completed"))
    })
    .await;

    // Bad content is refused with the field named; only operators may publish.
    let out = idlegrid(&operator_home, &url, &ca, &["ops", "publish", "--title", "x", "--url", "javascript:alert(1)"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("url must start with"));
    let client_transport = transport(&url, Identity::generate(), Role::Client).await;
    let content = DisplayBody { title: "mine".into(), body: String::new(), url: None };
    let refused = client_transport
        .call::<_, serde_json::Value>(Method::POST, "/v1/ops/display", Some(&content), PATIENCE)
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::Api { status: 403, .. }), "{refused}");
    assert!(second.status().messages.iter().all(|m| m.title != "mine"));
    server.shutdown().await;
}
