//! Archive and purge on the operator's demand (P4.11), with `idlegrid ops retention` against a
//! real server and engine: archived results can still be retrieved whole; a purge deletes the
//! completed jobs whose results nobody fetched, with their data, tells their clients with a
//! `purged` notice, and leaves jobs that are not completed alone.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use idlegrid_protocol::messages::TaskSpec;
use idlegrid_types::{ElementHash, JobProperties, JobState};

fn idlegrid(home: &std::path::Path, server: &str, ca: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .arg("--home")
        .arg(home)
        .args(["--server", server, "--server-ca"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    (output.status.success(), format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
}

/// Notices posted to a webhook, as JSON.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn result_of(executable: ElementHash, index: u64, bytes: u64) -> TaskSpec {
    TaskSpec {
        index,
        executable,
        data: BTreeMap::new(),
        params: format!("mode=big-result bytes={bytes}").into_bytes(),
        priority: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_archives_then_purges_unfetched_results_on_demand() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (ok, id) = idlegrid(&home, "https://127.0.0.1:1", &dir.path().join("none.pem"), &["ops", "id"]);
    assert!(ok, "{id}");
    let operator: idlegrid_types::PartyId = id.trim().parse().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator];
    config.coordinator.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();
    let ops = |args: &[&str]| {
        let mut all = vec!["ops", "retention"];
        all.extend_from_slice(args);
        idlegrid(&home, &url, &ca, &all)
    };

    let (hook, notices) = webhook().await;
    let client = connect(&url).await;
    client.set_notices(Some(hook), None, None).await.unwrap();
    let misbehave = upload_task(&client, "misbehave").await.hash;
    // One job that completes (an inline result and one sent as an element), nobody fetching
    // its results; one created but never launched.
    let done = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(done, vec![result_of(misbehave, 0, 1_000), result_of(misbehave, 1, 400_000)]).await.unwrap();
    client.launch(done).await.unwrap();
    let waiting = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(waiting, vec![result_of(misbehave, 0, 10)]).await.unwrap();
    let mut engine_config = engine_config(&url, dir.path(), "engine");
    engine_config.server = endpoint(&url).await;
    let _engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    wait_until("the job to complete", || async { client.job(done).await.unwrap().state == JobState::Completed }).await;

    // Nothing is old enough for an hour's bound; without one, both results are archived.
    let (ok, out) = ops(&["--archive-now", "--older-than", "3600"]);
    assert!(ok && out.contains("archived 0 results of 0 jobs"), "{out}");
    let (ok, out) = ops(&["--archive-now"]);
    assert!(ok && out.contains("archived 2 results of 1 jobs"), "{out}");
    // Archived results are retrieved whole.
    let small = client.task_status(done, 0).await.unwrap().result.expect("an archived result");
    assert_eq!(client.fetch(&small).await.unwrap(), vec![7u8; 1_000]);
    let large = client.task_status(done, 1).await.unwrap().result.expect("an archived result");
    assert_eq!(client.fetch(&large).await.unwrap(), vec![7u8; 400_000]);

    // A purge asks for one action only, and a number of seconds.
    let (ok, out) = ops(&["--archive-now", "--purge-now"]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");
    let (ok, out) = ops(&["--purge-now", "--older-than", "soon"]);
    assert!(!ok && out.contains("soon"), "{out}");

    let (ok, out) = ops(&["--purge-now", "--older-than", "3600"]);
    assert!(ok && out.contains("purged 0 jobs"), "{out}");
    let (ok, out) = ops(&["--purge-now"]);
    assert!(ok && out.contains("purged 1 jobs"), "{out}");
    let error = client.job(done).await.unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
    assert!(client.fetch(&large).await.is_err(), "the purged result cannot be downloaded");
    assert_eq!(client.job(waiting).await.unwrap().state, JobState::Defining, "a job not completed stays");
    wait_for("the purge notice", || {
        notices.lock().unwrap().iter().any(|n| n["kind"] == "purged" && n["job"] == done.to_string())
    })
    .await;
}
