//! Deadlines and every job's power and cost limits, end to end: a real server, real engines,
//! real tasks.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use idlegrid_engine::Engine;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_server::Server;
use idlegrid_store::{SqliteStore, Store};
use idlegrid_types::{JobId, JobProperties, TaskState};

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn with_work(properties: JobProperties, gflop_hours: &str) -> JobProperties {
    let mut properties = properties;
    properties.scheduling_hints.insert("work_per_task_gflop_hours".into(), gflop_hours.into());
    properties
}

/// The kinds of the notices queued for delivery, with their reasons.
fn notices(database: &Path) -> Vec<(String, String)> {
    let store = SqliteStore::open(database).unwrap();
    let rows = store.read(|tx| tx.due_notices(u64::MAX, 100)).unwrap();
    rows.iter()
        .map(|row| {
            let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
            (
                body["kind"].as_str().unwrap_or_default().to_string(),
                body["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn start_engine(server: &idlegrid_server::ServerHandle, dir: &Path, name: &str) -> idlegrid_engine::EngineHandle {
    let mut config = engine_config(&server.url(), dir, name);
    // One task at a time: the order the server places them in is the order they run.
    config.prefetch = 0;
    if let Some(ca) = server.ca_pem() {
        config.server = config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
    }
    Engine::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_meet_its_deadline_is_told_so_and_explain_says_why() {
    let cluster = Cluster::start(1).await;
    let database = cluster.dir.path().join("server").join("state.db");
    let client = cluster.client().await;
    client.set_notices(None, None, Some("owner@example.org".into())).await.unwrap();
    let noop = upload_task(&client, "noop").await;
    // A thousand GFLOP-hours per task, a minute to go: no engine of this cluster makes it.
    let properties = JobProperties { deadline_unix_ms: Some(now_ms() + 60_000), ..JobProperties::default() };
    let job = client.create_job(with_work(properties, "1000")).await.unwrap().job;
    client.add_tasks(job, [spec(0, noop.hash, "")]).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the deadline notice", || notices(&database).iter().any(|(kind, _)| kind == "deadline_missed")).await;
    let (_, reason) = notices(&database).into_iter().find(|(kind, _)| kind == "deadline_missed").unwrap();
    assert!(reason.contains("will be missed") && reason.contains("1000 GFLOP-hours"), "{reason}");
    let explanation = client.explain(job, None).await.unwrap();
    assert!(explanation.text.contains("the deadline will be missed"), "{}", explanation.text);
    // The work still runs: a late result is better than none.
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(finals.len(), 1);
    // A job with a deadline it can meet is not told anything.
    let fine = JobProperties { deadline_unix_ms: Some(now_ms() + 3_600_000), ..JobProperties::default() };
    let fine = client.create_job(with_work(fine, "0.001")).await.unwrap().job;
    client.add_tasks(fine, [spec(0, noop.hash, "")]).await.unwrap();
    client.launch(fine).await.unwrap();
    run_to_completion(&client, fine, Replay::Undelivered).await;
    let explanation = client.explain(fine, None).await.unwrap();
    assert!(explanation.text.contains("on time"), "{}", explanation.text);
    assert_eq!(notices(&database).iter().filter(|(kind, _)| kind == "deadline_missed").count(), 1, "once per job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_tight_deadline_runs_before_an_older_job_without_one() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).await.unwrap();
    let database = dir.path().join("server").join("state.db");
    let client = connect(&server.url()).await;
    let noop = upload_task(&client, "noop").await;
    // Submitted first, without a deadline, same priority.
    let old = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(old, (0..3).map(|i| spec(i, noop.hash, ""))).await.unwrap();
    client.launch(old).await.unwrap();
    let tight = JobProperties { deadline_unix_ms: Some(now_ms() + 600_000), ..JobProperties::default() };
    let tight = client.create_job(tight).await.unwrap().job;
    client.add_tasks(tight, (0..2).map(|i| spec(i, noop.hash, ""))).await.unwrap();
    client.launch(tight).await.unwrap();
    // Only now an engine appears, taking one task at a time.
    let engine = start_engine(&server, dir.path(), "engine").await;
    run_to_completion(&client, tight, Replay::Undelivered).await;
    run_to_completion(&client, old, Replay::Undelivered).await;
    let store = SqliteStore::open(&database).unwrap();
    let ids = |job: JobId| -> Vec<i64> {
        let rows = store.read(|tx| tx.results_after(job, 0, false, 10)).unwrap();
        assert!(rows.iter().all(|r| r.result.state == TaskState::Succeeded), "{rows:?}");
        rows.iter().map(|r| r.id).collect()
    };
    let (tight_ids, old_ids) = (ids(tight), ids(old));
    assert_eq!((tight_ids.len(), old_ids.len()), (2, 3));
    assert!(tight_ids.iter().max() < old_ids.iter().min(), "tight {tight_ids:?} before old {old_ids:?}");
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_runs_on_more_power_than_its_maximum() {
    let cluster = Cluster::start(2).await;
    let database = cluster.dir.path().join("server").join("state.db");
    let client = cluster.client().await;
    let pi = upload_task(&client, "pi").await;
    // Engines count 1 GFLOPS until measured: at most one engine at a time.
    let properties = JobProperties { power_max_gflops: Some(1.0), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    client.add_tasks(job, (0..6).map(|i| spec(i, pi.hash, &format!("samples=200000 seed={}", i + 1)))).await.unwrap();
    client.launch(job).await.unwrap();
    let watch = tokio::spawn({
        let database = database.clone();
        async move {
            let store = SqliteStore::open(&database).unwrap();
            let mut most = 0;
            loop {
                let running = store.read(|tx| tx.active_assignments_of_job(job)).unwrap().len();
                most = most.max(running);
                let done = store.read(|tx| tx.job(job)).unwrap().is_some_and(|j| j.counts.succeeded == 6);
                if done {
                    return most;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((finals.len(), info.counts.succeeded), (6, 6));
    let most = watch.await.unwrap();
    assert!(most <= 1, "never two engines at once: {most}");
    let explanation = client.explain(job, None).await.unwrap();
    assert!(explanation.text.contains("of at most 1 GFLOPS"), "{}", explanation.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_stops_before_the_estimated_spend_passes_the_maximum_cost() {
    let cluster = Cluster::start(1).await;
    let database = cluster.dir.path().join("server").join("state.db");
    let client = cluster.client().await;
    client.set_notices(None, None, Some("owner@example.org".into())).await.unwrap();
    let noop = upload_task(&client, "noop").await;
    // 0.1 GFLOP-hours at the baseline 0.25 per GFLOP-hour: 0.025 a task, so 0.06 pays for two.
    let properties = JobProperties { cost_max_micros: Some(60_000), ..JobProperties::default() };
    let job = client.create_job(with_work(properties, "0.1")).await.unwrap().job;
    client.add_tasks(job, (0..4).map(|i| spec(i, noop.hash, ""))).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the cost notice", || notices(&database).iter().any(|(kind, _)| kind == "held")).await;
    let (_, reason) = notices(&database).into_iter().find(|(kind, _)| kind == "held").unwrap();
    assert!(reason.contains("cost_max = 0.06"), "{reason}");
    wait_until("two results", || async { client.job(job).await.unwrap().counts.succeeded == 2 }).await;
    let info = client.job(job).await.unwrap();
    assert_eq!((info.counts.succeeded, info.counts.queued), (2, 2), "{info:?}");
    let explanation = client.explain(job, None).await.unwrap();
    assert!(explanation.text.contains("cost: about 0.05 of at most 0.06"), "{}", explanation.text);
}
