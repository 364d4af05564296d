//! Results nobody fetched (P4.11), run by the operator's flags on the real server binary:
//! archived results can still be retrieved; a job whose results stay unclaimed is purged with
//! its data after the client was warned by its notices.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{JobId, JobProperties, JobState};

fn spawn_retaining_server(port: u16, data: &std::path::Path) -> Process {
    let child = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--engine-silence-secs", "30", "--maintenance-secs", "0.2", "--log", "warn"])
        .args(["--benchmark-interval-secs", "0", "--webhook-allow", "127.0.0.0/8"])
        .args(["--archive-after-secs", "0", "--results-retention-secs", "8", "--purge-warning-secs", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

/// Notices posted to the webhook, as JSON.
async fn webhook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_results_are_retrieved_and_unclaimed_ones_purged_after_a_warning() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_retaining_server(port, &dir.path().join("server"));
    wait_healthy(&url).await;
    let (hook, notices) = webhook().await;
    let client = connect(&url).await;
    client.set_notices(Some(hook), None, None).await.unwrap();
    let misbehave = upload_task(&client, "misbehave").await;
    // Results larger than the inline limit, of different sizes: elements each job owns alone.
    let big = |bytes| TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: BTreeMap::new(),
        params: format!("mode=big-result bytes={bytes}").into_bytes(),
        priority: None,
    };
    let mut jobs: Vec<JobId> = Vec::new();
    for bytes in [400_000, 400_001] {
        let job = client.create_job(JobProperties::default()).await.unwrap().job;
        client.add_tasks(job, vec![big(bytes)]).await.unwrap();
        client.launch(job).await.unwrap();
        jobs.push(job);
    }
    let (kept, purged) = (jobs[0], jobs[1]);
    let _engine = spawn_engine(&url, &dir.path().join("engine"), 2);
    for job in [kept, purged] {
        wait_until("the job to complete", || async { client.job(job).await.unwrap().state == JobState::Completed })
            .await;
    }
    // The result of the job to be purged, as the client could have fetched it.
    let doomed = client.task_status(purged, 0).await.unwrap().result.expect("a result");

    // Both are warned (neither result was fetched); results are archived from completion on.
    wait_for("both purge warnings", || {
        notices.lock().unwrap().iter().filter(|n| n["kind"] == "purge_warning").count() == 2
    })
    .await;
    let warned: Vec<String> = notices.lock().unwrap().iter().map(|n| n["job"].as_str().unwrap().to_string()).collect();
    assert!(warned.contains(&kept.to_string()) && warned.contains(&purged.to_string()), "{warned:?}");

    // The archived result is retrieved, whole; that claims it.
    let (finals, _) = run_to_completion(&client, kept, Replay::Undelivered).await;
    let bytes = client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap();
    assert_eq!(bytes, vec![7u8; 400_000]);

    // The other is purged with its data: the job and its result are gone for the client.
    wait_until("the unclaimed job to be purged", || async { client.job(purged).await.is_err() }).await;
    let error = client.job(purged).await.unwrap_err().to_string();
    assert!(error.contains("does not exist"), "{error}");
    assert!(client.fetch(&doomed).await.is_err(), "the purged result cannot be downloaded");
    assert_eq!(client.job(kept).await.unwrap().state, JobState::Completed, "the claimed job stays");
}
