//! Priorities across the system with preemption, end to end: a real server with preemption on,
//! a real engine with one slot, a long low-priority task and a high-priority job.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_engine::Engine;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_scheduler::preempt::PreemptionPolicy;
use idlegrid_store::{SqliteStore, Store};
use idlegrid_types::{JobId, JobProperties};

/// A task of `misbehave` that counts 1 ms steps to `target`, checkpointing as it goes and when
/// asked to stop.
fn counting(executable: idlegrid_types::ElementHash, target: u64) -> TaskSpec {
    TaskSpec {
        index: 0,
        executable,
        data: BTreeMap::new(),
        params: format!("mode=stop-aware target={target} every=50 report=1").into_bytes(),
        priority: None,
    }
}

fn step_of(checkpoint: &[u8]) -> u64 {
    u64::from_le_bytes(checkpoint.try_into().expect("a stop-aware checkpoint is 8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_job_preempts_a_long_task_that_resumes_later_from_its_checkpoint() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.preemption = PreemptionPolicy { enabled: true, ..PreemptionPolicy::default() };
    config.coordinator.checkpoint_uploads.min_ms = 1_000;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let database = dir.path().join("server").join("state.db");
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let noop = upload_task(&client, "noop").await;

    // The only engine, one task at a time.
    let mut engine = engine_config(&server.url(), dir.path(), "engine");
    engine.prefetch = 0;
    engine.server = engine.server.with_trust(idlegrid_client::ServerTrust::Ca(server.ca_pem().unwrap().to_string()));
    let engine = Engine::start(engine).await.unwrap();

    let low = JobProperties { priority: -5, checkpoint_upload_secs: Some(1), ..JobProperties::default() };
    let low = client.create_job(low).await.unwrap().job;
    client.add_tasks(low, vec![counting(misbehave.hash, 30_000)]).await.unwrap();
    client.launch(low).await.unwrap();
    wait_until("the low task to run and checkpoint", || async {
        client.checkpoint(low, 0).await.unwrap().is_some_and(|c| step_of(&c) >= 100)
    })
    .await;

    let high = client.create_job(JobProperties { priority: 10, ..JobProperties::default() }).await.unwrap().job;
    let quick = TaskSpec { params: Vec::new(), ..counting(noop.hash, 0) };
    client.add_tasks(high, vec![quick]).await.unwrap();
    client.launch(high).await.unwrap();
    let (finals, _) = run_to_completion(&client, high, Replay::Undelivered).await;
    assert_eq!(finals.len(), 1);
    let (finals, _) = run_to_completion(&client, low, Replay::Undelivered).await;
    let result = String::from_utf8(client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap()).unwrap();
    let (count, restored) = result.split_once(" restored_from=").unwrap();
    assert_eq!(count, "30000");
    assert!(restored.parse::<u64>().unwrap() >= 100, "resumed from its checkpoint, not from 0: {result}");
    assert_eq!(engine.stats().tasks_suspended, 1, "the low task was handed back once");
    assert_eq!(engine.stats().tasks_succeeded, 2);

    let store = SqliteStore::open(&database).unwrap();
    let id = |job: JobId| store.read(|tx| tx.results_after(job, 0, false, 10)).unwrap()[0].id;
    assert!(id(high) < id(low), "the high-priority job finished first");
    engine.shutdown().await;
    server.shutdown().await;
}
