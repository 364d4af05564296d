//! Checkpoints that travel (P1.5, P3.8, P4.5): engines upload running tasks' checkpoints, a
//! task whose engine was killed resumes elsewhere from the last one uploaded, the client can
//! read it (`GetTask`, `GetTaskStatus`), and an engine whose owner came back for long hands
//! its task over to another engine.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_engine::activity::InjectedActivity;
use idlegrid_engine::{Activity, Engine, RunMode};
use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::JobProperties;

fn counting(executable: idlegrid_types::ElementHash, target: u64) -> TaskSpec {
    TaskSpec {
        index: 0,
        executable,
        data: BTreeMap::new(),
        params: format!("mode=stop-aware target={target} every=50 report=1").into_bytes(),
        priority: None,
    }
}

/// The step a `stop-aware` checkpoint holds.
fn step_of(checkpoint: &[u8]) -> u64 {
    u64::from_le_bytes(checkpoint.try_into().expect("a stop-aware checkpoint is 8 bytes"))
}

/// `count restored_from=step`, the result of a `stop-aware` task with `report`.
fn restored_from(result: &[u8]) -> (u64, u64) {
    let text = String::from_utf8(result.to_vec()).unwrap();
    let (count, restored) = text.split_once(" restored_from=").unwrap();
    (count.parse().unwrap(), restored.parse().unwrap())
}

/// The real server binary, quick to notice a silent engine, letting jobs upload every second.
fn spawn_checkpointing_server(port: u16, data: &Path) -> Process {
    let child = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--engine-silence-secs", "3", "--maintenance-secs", "0.2", "--log", "warn"])
        .args(["--benchmark-interval-secs", "0", "--checkpoint-upload-secs-min", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_engine_is_killed_resumes_elsewhere_from_the_uploaded_checkpoint() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_checkpointing_server(port, &dir.path().join("server"));
    wait_healthy(&url).await;
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let properties = JobProperties { checkpoint_upload_secs: Some(1), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    client.add_tasks(job, vec![counting(misbehave.hash, 8_000)]).await.unwrap();
    client.launch(job).await.unwrap();
    let mut first = spawn_engine(&url, &dir.path().join("first"), 1);

    // The engine uploads on its own (nobody asked with GetTask): the task's status shows it.
    let uploaded = wait_some("a checkpoint uploaded by the running engine", || async {
        client.task_status(job, 0).await.unwrap().checkpoint
    })
    .await;
    let uploaded = step_of(&client.fetch(&Payload::Element(uploaded)).await.unwrap());
    assert!(uploaded >= 50, "a checkpoint of a step the task reached: {uploaded}");
    first.kill9();

    // GetTask while the task's engine is gone: once the server gives up on the engine, the
    // client gets the latest checkpoint uploaded, not nothing.
    let held = client.checkpoint(job, 0).await.unwrap().expect("the server holds the uploaded checkpoint");
    let held = step_of(&held);
    assert!(held >= uploaded, "the latest upload ({held}) is at least the one seen ({uploaded})");

    // Another engine, with nothing of the first on its disk, resumes from that checkpoint.
    let _second = spawn_engine(&url, &dir.path().join("second"), 1);
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let (count, restored) = restored_from(&client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap());
    assert_eq!(count, 8_000);
    assert_eq!(restored, held, "the new engine started from the uploaded checkpoint, not from 0");
    assert_eq!(finals[0].attempts, 2, "placed a second time, on the second engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_owner_comes_back_for_long_hands_its_task_to_another() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.migrate_after_busy_ms = Some(30 * 60_000);
    // A new engine's history says it is busy from now on (the intervals it was never seen in);
    // production waits for a day of history first.
    config.coordinator.scheduler.rating_window_minutes_min = 0;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![counting(misbehave.hash, 6_000)]).await.unwrap();
    client.launch(job).await.unwrap();

    let activity = InjectedActivity::new();
    let mut owned = engine_config(&server.url(), dir.path(), "owned");
    owned.owner.mode = RunMode::IdleOnly;
    owned.owner.resume_after_secs = 0;
    owned.activity = Activity::Injected(activity.clone());
    owned.governor_tick = Duration::from_millis(20);
    let owned = Engine::start(owned).await.unwrap();
    wait_until("the task to checkpoint on the first engine", || async {
        client.checkpoint(job, 0).await.unwrap().is_some_and(|c| step_of(&c) >= 100)
    })
    .await;
    let spare = Engine::start(engine_config(&server.url(), dir.path(), "spare")).await.unwrap();

    // The owner comes back: the engine pauses, the server asks for the task back, and it
    // finishes on the spare engine from where it stopped.
    activity.input();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let (count, restored) = restored_from(&client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap());
    assert_eq!(count, 6_000);
    assert!(restored >= 100, "resumed from the handed-back checkpoint, not from 0: {restored}");
    assert_eq!(owned.stats().tasks_suspended, 1, "the owner's engine handed the task back");
    assert_eq!(owned.stats().tasks_succeeded, 0);
    assert_eq!(spare.stats().tasks_succeeded, 1, "the spare engine finished it");
    owned.shutdown().await;
    spare.shutdown().await;
    server.shutdown().await;
}

/// Files under the engine's checkpoint folder (finished writes only).
fn checkpoint_files(engine_dir: &Path) -> usize {
    std::fs::read_dir(engine_dir.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| !d.path().to_string_lossy().ends_with(".tmp"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_tasks_space_on_the_engine_is_reclaimed_once_the_server_has_its_status() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let restart = config.clone();
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let ca = server.ca_pem().unwrap().to_string();
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![counting(misbehave.hash, 3_000)]).await.unwrap();
    client.launch(job).await.unwrap();
    let mut engine_config = engine_config(&url, dir.path(), "engine");
    engine_config.server = engine_config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca));
    let engine_dir = engine_config.data_dir.clone();
    let engine = Engine::start(engine_config).await.unwrap();
    wait_for("the task to checkpoint", || checkpoint_files(&engine_dir) > 0).await;

    // The server goes away; the task finishes meanwhile: its status and checkpoint stay on
    // the engine's disk, since the server does not have the status yet.
    server.shutdown().await;
    wait_for("the task to finish without the server", || engine.stats().tasks_succeeded == 1).await;
    assert_eq!(checkpoint_files(&engine_dir), 1, "kept until the server has the final status");

    // The server is back: once it has the status, the task's space is reclaimed.
    let server = idlegrid_server::Server::start(restart).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(finals.len(), 1);
    wait_for("the task's checkpoint to be deleted", || checkpoint_files(&engine_dir) == 0).await;
    wait_for("the engine to hold nothing", || engine.stats().held == 0).await;
    engine.shutdown().await;
    server.shutdown().await;
}

/// Names (hex hashes) of the element files the server stores.
fn stored_elements(server_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in std::fs::read_dir(server_dir.join("elements")).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                names.insert(name);
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_and_finished_checkpoints_are_released_and_a_shared_one_stays() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.checkpoint_uploads.min_ms = 1000;
    // A released checkpoint is collected this long after its release (an engine may still be
    // fetching it); production keeps an hour.
    config.coordinator.element_grace_ms = 2000;
    let server_dir = config.data_dir.clone();
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let properties = JobProperties { checkpoint_upload_secs: Some(1), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    client.add_tasks(job, vec![counting(misbehave.hash, 30_000)]).await.unwrap();
    client.launch(job).await.unwrap();
    let engine = Engine::start(engine_config(&server.url(), dir.path(), "engine")).await.unwrap();

    // Every checkpoint the task's status names while it runs; the client keeps the bytes of one
    // of them as a data element of its own, so that blob is shared with the client's grant.
    let mut seen: Vec<idlegrid_types::ElementRef> = Vec::new();
    let mut kept = None;
    let started = std::time::Instant::now();
    while seen.len() < 10 {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for ten checkpoints: {seen:?}");
        if let Some(checkpoint) = client.task_status(job, 0).await.unwrap().checkpoint
            && seen.last() != Some(&checkpoint)
        {
            seen.push(checkpoint);
            if kept.is_none()
                && let Ok(bytes) = client.fetch(&Payload::Element(checkpoint)).await
            {
                let copy = client.upload(bytes.clone(), idlegrid_types::ElementKind::Data, "kept.bin").await.unwrap();
                assert_eq!(copy, checkpoint, "content-addressed: the same blob");
                kept = Some((checkpoint, bytes));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (kept, kept_bytes) = kept.expect("a checkpoint the client copied");
    let executable = misbehave.hash.to_string();
    // Storage does not grow with the uploads: all but the latest few are gone while the task
    // still runs, except the one the client holds too.
    let superseded: Vec<String> =
        seen[..seen.len() - 4].iter().filter(|c| **c != kept).map(|c| c.hash.to_string()).collect();
    wait_for("superseded checkpoints to be deleted", || {
        let stored = stored_elements(&server_dir);
        superseded.iter().all(|hash| !stored.contains(hash))
    })
    .await;
    let stored = stored_elements(&server_dir);
    assert!(stored.contains(&executable), "the executable {executable} is kept: {stored:?}");
    assert!(stored.contains(&kept.hash.to_string()), "the client's copy {} is kept: {stored:?}", kept.hash);
    assert!(stored.len() <= 2 + 4, "the executable, the client's copy and the latest few: {stored:?}");
    assert_eq!(engine.stats().tasks_succeeded, 0, "all this while the task runs");

    // Once the task has finished, none of its checkpoints is kept, but the shared blob is.
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(restored_from(&client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap()).0, 30_000);
    let expected: std::collections::BTreeSet<String> = [executable, kept.hash.to_string()].into();
    wait_for("only the executable and the client's copy to be stored", || stored_elements(&server_dir) == expected)
        .await;
    assert_eq!(client.fetch(&Payload::Element(kept)).await.unwrap(), kept_bytes, "the shared blob is still served");
    engine.shutdown().await;
    server.shutdown().await;
}
