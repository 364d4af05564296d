//! Processes killed mid-job: the server (kill -9, restart) and an engine (kill -9).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use idlegrid_client::JobEvent;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{JobProperties, JobState};

fn sleepy(index: u64, executable: idlegrid_types::ElementHash, ms: u64) -> TaskSpec {
    TaskSpec {
        index,
        executable,
        data: BTreeMap::new(),
        params: format!("mode=sleep ms={ms} i={index}").into_bytes(),
        priority: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_job_restarts_and_every_result_arrives_exactly_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    let mut server = spawn_server(port, &data, 30);
    wait_healthy(&url).await;
    let mut engines = Vec::new();
    for i in 0..2 {
        engines.push(
            idlegrid_engine::Engine::start(engine_config(&url, dir.path(), &format!("engine-{i}"))).await.unwrap(),
        );
    }
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let total = 120u64;
    client.add_tasks(job, (0..total).map(|i| sleepy(i, misbehave.hash, 30))).await.unwrap();
    client.launch(job).await.unwrap();

    let mut watch = client.watch(job, Replay::Undelivered).await.unwrap();
    let mut seen = BTreeMap::new();
    let mut restarted = false;
    let outcome = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = watch.next().await {
            match event.expect("the client rides out the restart") {
                JobEvent::Task(report) if report.state.is_final() => {
                    *seen.entry(report.task).or_insert(0u32) += 1;
                    if seen.len() == 30 && !restarted {
                        server.kill9();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        server = spawn_server(port, &data, 30);
                        restarted = true;
                    }
                }
                JobEvent::Job(info) if info.state == JobState::Completed => return info,
                _ => {}
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the job completes after the restart");
    assert!(restarted);
    assert_eq!(outcome.counts.succeeded, total);
    assert_eq!(seen.len() as u64, total, "every result arrived");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "results delivered twice: {repeated:?}");
    drop(watch);
    for engine in engines {
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_task_loses_its_tasks_to_another_engine() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 2);
    wait_healthy(&url).await;
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    // The engine holds three tasks (one slot, two staged).
    client.add_tasks(job, (0..3).map(|i| sleepy(i, misbehave.hash, 1500))).await.unwrap();
    client.launch(job).await.unwrap();
    // Only the doomed engine is up: it takes every task.
    let mut doomed = spawn_engine(&url, &dir.path().join("doomed"), 1);
    wait_until("the first engine to take the tasks", || async { client.job(job).await.unwrap().counts.running == 3 })
        .await;
    doomed.kill9();
    let rescuer = idlegrid_engine::Engine::start(engine_config(&url, dir.path(), "rescuer")).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 3);
    assert_eq!(finals.len(), 3);
    assert!(finals.iter().all(|r| r.attempts == 2), "each task was placed again: {finals:?}");
    assert_eq!(rescuer.stats().tasks_succeeded, 3);
    rescuer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restarted_after_a_crash_resumes_its_task_from_the_checkpoint() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(port, &dir.path().join("server"), 60);
    wait_healthy(&url).await;
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let task = TaskSpec { params: b"mode=stop-aware target=2000 report=1".to_vec(), ..sleepy(0, misbehave.hash, 0) };
    client.add_tasks(job, vec![task]).await.unwrap();
    client.launch(job).await.unwrap();
    let engine_dir = dir.path().join("engine");
    let mut engine = spawn_engine(&url, &engine_dir, 1);
    // Let it run and checkpoint (every 50 steps of 1 ms), then crash it.
    let checkpoints = engine_dir.join("checkpoints");
    wait_for("the task to checkpoint", || {
        std::fs::read_dir(&checkpoints)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| !d.path().to_string_lossy().ends_with(".tmp"))
    })
    .await;
    engine.kill9();
    let _engine = spawn_engine(&url, &engine_dir, 1);
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let text = String::from_utf8(client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap()).unwrap();
    let (count, restored) = text.split_once(" restored_from=").unwrap();
    assert_eq!(count, "2000");
    let restored: u64 = restored.parse().unwrap();
    assert!(restored >= 50 && restored.is_multiple_of(50), "the restart began from a saved step, not from 0: {text}");
    assert_eq!(finals[0].attempts, 1, "the same placement resumed: the server never reassigned it");
}

/// The server's records and an engine's disagree mid-session: the server holds a placement on
/// the engine that the engine never got, and the engine runs one the server has ended (as
/// after a lost message or a database restored from a backup). The engine's next report on the
/// ended placement makes the server ask what it holds (`GetContents`); the answer reconciles
/// both: the task is queued again and the engine drops its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_an_engines_records_and_the_servers_disagree_the_server_asks_and_reconciles() {
    use idlegrid_store::{AssignmentRowState, SqliteStore, Store, StoreError, Tx};
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    // No periodic audit: the disagreement alone makes the server ask.
    config.coordinator.contents_audit_ms = None;
    let db = config.data_dir.join("state.db");
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let spec = TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: BTreeMap::new(),
        params: b"mode=stop-aware target=20000 every=50".to_vec(),
        priority: None,
    };
    client.add_tasks(job, vec![spec]).await.unwrap();
    client.launch(job).await.unwrap();
    let first = idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), "first")).await.unwrap();
    let first_party = idlegrid_protocol::auth::Identity::load_or_create(&dir.path().join("first").join("identity.key"))
        .unwrap()
        .id()
        .clone();
    let write = |f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>| {
        SqliteStore::open(&db).unwrap().write(|tx| f(tx)).unwrap();
    };
    let mut running = None;
    wait_for("the task to run on the first engine", || {
        write(&mut |tx| {
            let task = tx.task(job, 0)?.unwrap();
            running = tx.active_assignments_of_task(task.key)?.first().map(|a| (task.key, a.id));
            Ok(())
        });
        running.is_some()
    })
    .await;
    let (task_key, real) = running.unwrap();
    wait_for("the first engine to report progress", || first.stats().held == 1).await;

    // The records disagree: the server ends the placement the engine runs and holds another
    // one, of the same task on the same engine, that the engine never heard of.
    let mut phantom = None;
    write(&mut |tx| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(tx.end_assignment(real, now)?);
        phantom = Some(tx.insert_assignment(task_key, &first_party, now)?);
        Ok(())
    });
    let phantom = phantom.unwrap();
    let second = idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), "second")).await.unwrap();

    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 1, "{info:?}");
    assert_eq!(String::from_utf8(client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap()).unwrap(), "20000");
    // Without the question, the ended placement's result would have been taken (attempt 1).
    assert!(finals[0].attempts >= 2, "the task was placed again once the engine said it did not hold it");
    let mut ended = false;
    write(&mut |tx| {
        ended = tx.assignment(phantom)?.unwrap().state == AssignmentRowState::Ended;
        Ok(())
    });
    assert!(ended, "the placement the engine never had was ended");
    let succeeded = first.stats().tasks_succeeded + second.stats().tasks_succeeded;
    assert_eq!(succeeded, 1, "one copy ran to the end: the first engine dropped the one the server had ended");
    wait_for("the engines to hold nothing", || first.stats().held == 0 && second.stats().held == 0).await;
    first.shutdown().await;
    second.shutdown().await;
    server.shutdown().await;
}
