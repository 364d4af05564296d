//! Tasks written in C (`examples/c` over `sdk/c/idlegrid.h`, built with clang for wasm32-wasi)
//! run on real engines through a real server, give the same results as their Rust twins, and
//! resume from their checkpoints after a stop.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec, TaskStatusReport};
use idlegrid_types::{ElementHash, ElementKind, FailureKind, JobProperties, TaskState};

fn spec(index: u64, executable: ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

async fn upload_c_task(client: &idlegrid_client::Client, name: &str) -> ElementHash {
    let bytes = idlegrid_testkit::c_task_bytes(name);
    client.upload(bytes, ElementKind::Executable, &format!("{name}-c.wasm")).await.unwrap().hash
}

async fn result_text(client: &idlegrid_client::Client, report: &TaskStatusReport) -> String {
    assert_eq!(report.state, TaskState::Succeeded, "task {}: {:?}", report.task, report.failure);
    String::from_utf8(client.fetch(report.result.as_ref().unwrap()).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_tasks_give_the_same_results_as_their_rust_twins() {
    let cluster = Cluster::start(2).await;
    let client = cluster.client().await;
    let (pi_c, wordcount_c) = (upload_c_task(&client, "pi").await, upload_c_task(&client, "wordcount").await);
    let (pi_rust, wordcount_rust) =
        (upload_task(&client, "pi").await.hash, upload_task(&client, "wordcount").await.hash);
    let text = "one two  three\nfour\tfive\n\nsix".repeat(5000);
    let chunk = client.upload(text.clone().into_bytes(), ElementKind::Data, "chunk.txt").await.unwrap().hash;

    let job = client.create_job(JobProperties { name: "c".into(), ..JobProperties::default() }).await.unwrap().job;
    // Tasks 2i (C) and 2i+1 (Rust) are twins.
    let mut tasks = Vec::new();
    for seed in 0..4u64 {
        let params = format!("samples={} seed={seed}", 1_500_000 + seed * 1000);
        tasks.push(spec(2 * seed, pi_c, &params));
        tasks.push(spec(2 * seed + 1, pi_rust, &params));
    }
    for (index, executable) in [(8, wordcount_c), (9, wordcount_rust)] {
        let mut task = spec(index, executable, "element=input");
        task.data.insert("input".into(), chunk);
        tasks.push(task);
    }
    tasks.push(spec(10, pi_c, "samples=12x"));
    tasks.push(spec(11, wordcount_c, "element=absent"));
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();

    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.failed), (10, 2), "{finals:#?}");
    let by_task: BTreeMap<u64, TaskStatusReport> = finals.into_iter().map(|r| (r.task, r)).collect();
    for seed in 0..4u64 {
        let c = result_text(&client, &by_task[&(2 * seed)]).await;
        let rust = result_text(&client, &by_task[&(2 * seed + 1)]).await;
        assert_eq!(c, rust, "pi with seed {seed}: C and Rust disagree");
        let (inside, total) = c.split_once(' ').unwrap();
        assert_eq!(total.parse::<u64>().unwrap(), 1_500_000 + seed * 1000);
        let estimate = 4.0 * inside.parse::<f64>().unwrap() / total.parse::<f64>().unwrap();
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{estimate}");
    }
    let words = text.split_ascii_whitespace().count();
    let expected = format!("{} {words} {}", text.matches('\n').count(), text.len());
    assert_eq!(result_text(&client, &by_task[&8]).await, expected, "the C word count");
    assert_eq!(result_text(&client, &by_task[&9]).await, expected, "its Rust twin");
    for (task, reason) in [(10, "parameter samples is not a whole number"), (11, "data element 'absent': not found")] {
        let failure = by_task[&task].failure.clone().unwrap_or_else(|| panic!("task {task} did not fail"));
        assert_eq!(failure.kind, FailureKind::Reported, "{failure:?}");
        assert!(failure.message.ends_with(reason), "{failure:?}");
    }
}

/// The checkpoint of the C pi task: samples done, points inside, generator state.
fn decode_pi_checkpoint(bytes: &[u8]) -> (u64, u64) {
    assert_eq!(bytes.len(), 24, "three 64-bit words");
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_c_task_resumes_from_its_checkpoint_with_the_uninterrupted_result() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client().await;
    let pi_c = upload_c_task(&client, "pi").await;
    let pi_rust = upload_task(&client, "pi").await.hash;
    let samples = 100_000_000u64;
    let params = format!("samples={samples} seed=7");
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let tasks = vec![spec(0, pi_c, &format!("{params} report=1")), spec(1, pi_rust, &params)];
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();

    // The C task runs first (the engine takes tasks in order) and saves a checkpoint per chunk.
    wait_for_checkpoint(&client, job, 0).await;
    let stopped = client.stop(job, Some(0)).await.unwrap();
    assert_eq!(stopped.counts.stopped, 1, "{stopped:?}");
    // The task saw the stop and returned without a result: suspended, not failed.
    wait_for("the engine to suspend the C task", || cluster.engines[0].stats().tasks_suspended == 1).await;
    // Handed back: the server keeps the checkpoint of where it stopped.
    let mut handed_back = None;
    for _ in 0..2000 {
        if client.task_status(job, 0).await.unwrap().state == TaskState::Stopped
            && let Some(bytes) = client.checkpoint(job, 0).await.unwrap()
        {
            handed_back = Some(bytes);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (done, inside) = decode_pi_checkpoint(&handed_back.expect("the stopped task's checkpoint is on the server"));
    assert!(done > 0 && done < samples && done.is_multiple_of(1 << 20), "stopped part way, at a chunk: {done}");
    assert!(inside <= done);

    client.resume(job, Some(0)).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 2, "{finals:#?}");
    let by_task: BTreeMap<u64, TaskStatusReport> = finals.into_iter().map(|r| (r.task, r)).collect();
    let resumed = result_text(&client, &by_task[&0]).await;
    let uninterrupted = result_text(&client, &by_task[&1]).await;
    let (result, resumed_from) = resumed.split_once(" resumed_from=").expect("report=1 says where it resumed");
    assert_eq!(result, uninterrupted, "a resumed task continues exactly where it stopped");
    assert!(result.ends_with(&format!(" {samples}")), "{resumed}");
    // It restarted from the checkpoint handed back at the stop (or a later one), not from zero.
    assert!(resumed_from.parse::<u64>().unwrap() >= done, "{resumed} after a stop at {done}");
}

/// Wait until a running task has saved a checkpoint (the engine is asked for a fresh one).
async fn wait_for_checkpoint(client: &idlegrid_client::Client, job: idlegrid_types::JobId, task: u64) {
    let started = std::time::Instant::now();
    loop {
        if client.checkpoint(job, task).await.unwrap().is_some() {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "task {task} saved no checkpoint in time");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
