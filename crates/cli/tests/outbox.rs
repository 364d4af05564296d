//! The outbox of results waiting for the server is bounded: with the server unreachable, an
//! engine stops starting tasks at the bound, and delivers and goes on once the server is back.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_engine::activity::InjectedActivity;
use idlegrid_engine::{Activity, Engine, OutboxLimits, RunMode};
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::JobProperties;

fn sleepy(index: u64, executable: idlegrid_types::ElementHash) -> TaskSpec {
    TaskSpec {
        index,
        executable,
        data: BTreeMap::new(),
        params: format!("mode=sleep ms=50 i={index}").into_bytes(),
        priority: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_unreachable_an_engine_stops_taking_work_at_the_outbox_bound() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    let mut server = spawn_server(port, &data, 600);
    wait_healthy(&url).await;
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let total = 5u64;
    client.add_tasks(job, (0..total).map(|i| sleepy(i, misbehave.hash))).await.unwrap();
    client.launch(job).await.unwrap();

    // The owner is at the computer: the engine takes every task (one core, four staged) but
    // runs none yet.
    let activity = InjectedActivity::new();
    activity.input();
    let mut config = engine_config(&url, dir.path(), "engine");
    config.owner.mode = RunMode::IdleOnly;
    config.owner.resume_after_secs = 0;
    config.activity = Activity::Injected(activity.clone());
    config.outbox = OutboxLimits { results_max: 2, bytes_max: 1 << 20 };
    let engine = Engine::start(config).await.unwrap();
    wait_for("the engine to stage every task", || {
        let status = engine.status();
        status.tasks.len() as u64 == total && status.tasks.iter().all(|t| t.state == "prepared")
    })
    .await;

    // The server goes away; the owner leaves: tasks run, and their results cannot be sent.
    server.kill9();
    activity.away();
    wait_for("the outbox to reach its bound", || engine.status().state == "outbox full").await;
    let status = engine.status();
    let count = |state: &str| status.tasks.iter().filter(|t| t.state == state).count();
    assert_eq!(count("done"), 2, "two results wait for the server: {status:?}");
    assert_eq!(count("prepared"), 3, "no task starts at the bound: {status:?}");
    assert_eq!(count("running"), 0);
    assert!(status.reason.as_deref().unwrap_or("").contains("2 results"), "{status:?}");
    assert_eq!(engine.stats().tasks_succeeded, 2);

    // The server is back: the results are delivered and the rest of the work runs.
    server = spawn_server(port, &data, 600);
    wait_healthy(&url).await;
    let (finals, info) = tokio::time::timeout(PATIENCE, run_to_completion(&client, job, Replay::Undelivered))
        .await
        .expect("the job completes once the server is back");
    assert_eq!(info.counts.succeeded, total);
    assert_eq!(finals.len() as u64, total);
    assert_eq!(engine.stats().tasks_succeeded, total);
    engine.shutdown().await;
    drop(server);
}
