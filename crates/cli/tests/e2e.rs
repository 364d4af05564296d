//! A client's jobs run on engines through the server, in one process, over real HTTP.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{ElementKind, FailureKind, JobProperties, TaskLimitsSpec, TaskState};

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_wordcount_and_mandelbrot_run_on_two_engines() {
    let cluster = Cluster::start(2).await;
    let client = cluster.client().await;
    let pi = upload_task(&client, "pi").await;
    let wordcount = upload_task(&client, "wordcount").await;
    let mandelbrot = upload_task(&client, "mandelbrot").await;
    let text = "one two three\nfour five\n".repeat(1000);
    let chunk = client.upload(text.clone().into_bytes(), ElementKind::Data, "chunk.txt").await.unwrap();

    let job = client.create_job(JobProperties { name: "mixed".into(), ..JobProperties::default() }).await.unwrap().job;
    let mut tasks: Vec<TaskSpec> =
        (0..40).map(|i| spec(i, pi.hash, &format!("samples=20000 seed={}", i + 1))).collect();
    let mut counted = spec(40, wordcount.hash, "");
    counted.data.insert("text".into(), chunk.hash);
    tasks.push(counted);
    tasks.push(spec(41, mandelbrot.hash, "x=0 y=0 w=16 h=8 width=64 height=48 iter=50"));
    assert_eq!(client.add_tasks(job, tasks).await.unwrap(), 42);
    client.launch(job).await.unwrap();

    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 42, "{info:?}");
    assert_eq!(finals.len(), 42, "each result once");
    let mut seen = std::collections::BTreeSet::new();
    for report in &finals {
        assert!(seen.insert(report.task), "task {} reported twice", report.task);
        assert_eq!(report.state, TaskState::Succeeded, "{report:?}");
        let bytes = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        match report.task {
            40 => assert_eq!(String::from_utf8(bytes).unwrap(), format!("2000 5000 {}", text.len())),
            41 => assert_eq!(bytes.len(), 16 + 16 * 8),
            _ => {
                let text = String::from_utf8(bytes).unwrap();
                let (inside, total) = text.split_once(' ').unwrap();
                assert_eq!(total, "20000");
                let ratio = inside.parse::<f64>().unwrap() / 20000.0;
                assert!((ratio * 4.0 - std::f64::consts::PI).abs() < 0.1);
            }
        }
    }
    let done: u64 = cluster.engines.iter().map(|e| e.stats().tasks_succeeded).sum();
    assert_eq!(done, 42);
    assert!(cluster.engines.iter().all(|e| e.stats().tasks_succeeded > 0), "both engines worked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tasks_fail_with_reasons_and_nothing_else_is_affected() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client().await;
    let misbehave = upload_task(&client, "misbehave").await;
    let noop = upload_task(&client, "noop").await;
    // The client library refuses to ship these; another client might: upload them as they are.
    let not_wasm = client
        .transport()
        .upload_verbatim(b"#!/bin/sh\necho hello\n".to_vec().into(), ElementKind::Executable, "script.sh")
        .await
        .unwrap();
    let truncated_wasm = client
        .transport()
        .upload_verbatim(example_task_bytes("noop")[..200].to_vec().into(), ElementKind::Executable, "cut.wasm")
        .await
        .unwrap();
    assert!(
        client.upload(b"#!/bin/sh\n".to_vec(), ElementKind::Executable, "script.sh").await.is_err(),
        "the library refuses what is not wasm"
    );
    let limits = TaskLimitsSpec { memory_bytes_max: 64 << 20, cpu_seconds_max: 1, ..TaskLimitsSpec::default() };
    let job = client.create_job(JobProperties { task_limits: limits, ..JobProperties::default() }).await.unwrap().job;
    let tasks = vec![
        spec(0, not_wasm.hash, ""),
        spec(1, truncated_wasm.hash, ""),
        spec(2, misbehave.hash, "mode=missing-element"),
        spec(3, misbehave.hash, "mode=trap"),
        spec(4, misbehave.hash, "mode=oom"),
        spec(5, misbehave.hash, "mode=loop"),
        spec(6, misbehave.hash, "mode=exit"),
        spec(7, noop.hash, "fine"),
        spec(8, misbehave.hash, "mode=read-file"),
    ];
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.failed, info.counts.succeeded), (7, 2), "{finals:#?}");
    let by_task: BTreeMap<u64, _> = finals.iter().map(|r| (r.task, r)).collect();
    let failure = |task: u64| by_task[&task].failure.clone().unwrap_or_else(|| panic!("task {task} did not fail"));
    assert_eq!(failure(0).kind, FailureKind::InvalidModule);
    assert!(failure(0).message.contains("not a valid WebAssembly module"), "{}", failure(0).message);
    assert_eq!(failure(1).kind, FailureKind::InvalidModule);
    assert_eq!(failure(2).kind, FailureKind::Reported);
    assert!(failure(2).message.contains("'does-not-exist' not found"), "{}", failure(2).message);
    assert_eq!(failure(3).kind, FailureKind::Trap);
    assert!(
        failure(3).message.contains("index out of bounds"),
        "the panic message reaches the client: {}",
        failure(3).message
    );
    assert_eq!(failure(4).kind, FailureKind::OutOfMemory);
    assert!(failure(4).message.contains("67108864 bytes"), "{}", failure(4).message);
    assert_eq!(failure(5).kind, FailureKind::CpuTimeExceeded);
    assert_eq!(failure(6).kind, FailureKind::NoResult);
    assert!(failure(6).message.contains("code 3"));
    assert_eq!(client.fetch(by_task[&7].result.as_ref().unwrap()).await.unwrap(), b"fine");
    let escape = client.fetch(by_task[&8].result.as_ref().unwrap()).await.unwrap();
    assert!(String::from_utf8_lossy(&escape).starts_with("contained"), "{}", String::from_utf8_lossy(&escape));

    // The engine and server keep working.
    let next = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(next, vec![spec(0, noop.hash, "after")]).await.unwrap();
    client.launch(next).await.unwrap();
    let (after, _) = run_to_completion(&client, next, Replay::Undelivered).await;
    assert_eq!(after[0].result, Some(Payload::Inline(b"after".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_using_an_element_never_uploaded_is_refused_at_submission() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client().await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let mut task = spec(0, noop.hash, "");
    let ghost = idlegrid_types::ElementHash::of(b"never uploaded");
    task.data.insert("input".into(), ghost);
    let error = client.add_tasks(job, vec![task]).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("data element 'input'") && text.contains(&ghost.to_string()), "{text}");
    assert_eq!(client.job(job).await.unwrap().counts.total(), 0, "nothing was added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_travel_as_elements() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client().await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![spec(0, misbehave.hash, "mode=big-result bytes=3000000")]).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let payload = finals[0].result.clone().unwrap();
    assert!(matches!(payload, Payload::Element(e) if e.size == 3_000_000), "{payload:?}");
    assert_eq!(client.fetch(&payload).await.unwrap(), vec![7u8; 3_000_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_resume_and_remove_a_running_job() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client().await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    // Long enough to be caught running; each checkpoints as it goes.
    let tasks = (0..3).map(|i| spec(i, misbehave.hash, "mode=stop-aware target=1500")).collect::<Vec<_>>();
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    // Stopped once a task has made progress (it reports progress when it checkpoints).
    let engine = &cluster.engines[0];
    wait_for("a task to make progress", || engine.status().tasks.iter().any(|t| t.progress > 0.0)).await;
    let stopped = client.stop(job, None).await.unwrap();
    assert_eq!(stopped.state, idlegrid_types::JobState::Stopped);
    // The engine hands the running task back with its checkpoint (the others had none yet).
    let checkpoint = wait_some("the stopped task's checkpoint on the server", || async {
        for task in 0..3 {
            if let Some(bytes) = client.checkpoint(job, task).await.unwrap() {
                return Some(bytes);
            }
        }
        None
    })
    .await;
    let count = u64::from_le_bytes(checkpoint.try_into().unwrap());
    assert!(count > 0 && count < 1500, "stopped part way: {count}");
    let status = client.job(job).await.unwrap();
    assert_eq!(status.counts.stopped + status.counts.succeeded, 3);
    client.resume(job, None).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 3);
    for report in &finals {
        assert_eq!(client.fetch(report.result.as_ref().unwrap()).await.unwrap(), b"1500");
    }
    client.remove_job(job).await.unwrap();
    let error = client.job(job).await.unwrap_err();
    assert_eq!(error.code(), Some(idlegrid_protocol::ErrorCode::UnknownJob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_wait_for_a_client_that_was_away() {
    let cluster = Cluster::start(1).await;
    let identity = idlegrid_protocol::auth::Identity::generate();
    let first = idlegrid_client::Client::connect(cluster.endpoint(), identity.clone(), "first").await.unwrap();
    let noop = upload_task(&first, "noop").await;
    let job = first.create_job(JobProperties::default()).await.unwrap().job;
    first.add_tasks(job, (0..20).map(|i| spec(i, noop.hash, &i.to_string()))).await.unwrap();
    first.launch(job).await.unwrap();
    first.close().await.unwrap();
    // Fire and forget: later, another process of the same client attaches.
    wait_until("every task to succeed while nobody watches", || async {
        let probe = idlegrid_client::Client::connect(cluster.endpoint(), identity.clone(), "probe").await.unwrap();
        let done = probe.job(job).await.unwrap().counts.succeeded == 20;
        probe.close().await.unwrap();
        done
    })
    .await;
    let second = idlegrid_client::Client::connect(cluster.endpoint(), identity, "second").await.unwrap();
    let (finals, _) = run_to_completion(&second, job, Replay::Undelivered).await;
    let mut got: Vec<u64> = finals.iter().map(|r| r.task).collect();
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    // Acknowledged: a further attach for undelivered results finds nothing new.
    let (again, _) = run_to_completion(&second, job, Replay::Undelivered).await;
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_lost_track_resets_and_goes_on() {
    use idlegrid_client::{Channel, ChannelConfig, Transport};
    use idlegrid_protocol::messages::{ClientToServer, ServerToClient};
    let cluster = Cluster::start(0).await;
    let transport: Transport =
        common::transport(&cluster.url(), idlegrid_protocol::auth::Identity::generate(), idlegrid_types::Role::Client)
            .await;
    let config = ChannelConfig { poll_wait: std::time::Duration::from_millis(200), ..ChannelConfig::default() };
    let (channel, _) =
        Channel::<ClientToServer, ServerToClient>::open(transport.clone(), config.clone(), None).await.unwrap();
    channel.send(vec![ClientToServer::GetConfig, ClientToServer::GetContents]).await.unwrap();
    let first = channel.poll(std::time::Duration::from_millis(200)).await.unwrap();
    assert_eq!(first.len(), 2);
    // A second copy of the party that knows only the session's name: its numbering is wrong
    // until it resets.
    let (lost, info) =
        Channel::<ClientToServer, ServerToClient>::open(transport, config, Some(channel.session())).await.unwrap();
    assert_eq!((info.inbound_acked, info.outbound_head), (2, 2));
    let info = lost.reset().await.unwrap();
    assert_eq!(info.inbound_acked, 2);
    let (seq, _) = lost.send(vec![ClientToServer::GetContents]).await.unwrap();
    assert_eq!(seq, 3, "numbering continues after what the server processed");
    // Nothing was acknowledged, so after the reset both earlier replies come again, then the new one.
    let again = lost.poll(std::time::Duration::from_millis(200)).await.unwrap();
    assert_eq!(again.iter().map(|m| m.reply_to).collect::<Vec<_>>(), vec![Some(1), Some(2), Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_statuses_reach_watchers_while_a_task_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.status_interval = std::time::Duration::from_millis(50);
    let _engine = idlegrid_engine::Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let mut watch = client.watch(job, Replay::Undelivered).await.unwrap();
    client.add_tasks(job, vec![spec(0, pi.hash, "samples=40000000 seed=1")]).await.unwrap();
    client.launch(job).await.unwrap();
    let mut progress = Vec::new();
    loop {
        match watch.next().await.unwrap().unwrap() {
            idlegrid_client::JobEvent::Task(report) if report.state == TaskState::Running => {
                progress.push(report.progress)
            }
            idlegrid_client::JobEvent::Task(report) if report.state.is_final() => {
                assert_eq!(report.state, TaskState::Succeeded);
                break;
            }
            _ => {}
        }
    }
    assert!(!progress.is_empty(), "at least one interim status");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]) && progress.iter().all(|p| *p > 0.0 && *p <= 1.0),
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_job_is_submitted_from_a_lazy_iterator_with_bounded_lookahead() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let cluster = Cluster::start(0).await;
    let client = cluster.client().await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let total = 60_000u64;
    let pulled = Arc::new(AtomicU64::new(0));
    let most_ahead = Arc::new(AtomicU64::new(0));
    let server_side = {
        let (pulled, most_ahead, client) = (pulled.clone(), most_ahead.clone(), client.clone());
        // Each task is created only when the library asks for it; a watcher checks how far the
        // iterator runs ahead of what the server has stored.
        tokio::spawn(async move {
            loop {
                let stored = client.job(job).await.unwrap().counts.total();
                let ahead = pulled.load(Ordering::SeqCst).saturating_sub(stored);
                most_ahead.fetch_max(ahead, Ordering::SeqCst);
                if stored == total {
                    return;
                }
            }
        })
    };
    let tasks = (0..total).map({
        let pulled = pulled.clone();
        move |i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            spec(i, noop.hash, "")
        }
    });
    assert_eq!(client.add_tasks(job, tasks).await.unwrap(), total);
    server_side.await.unwrap();
    // One request carries at most 4 messages of 1,000 tasks: the client never holds more.
    assert!(most_ahead.load(Ordering::SeqCst) <= 4_000, "ran ahead by {}", most_ahead.load(Ordering::SeqCst));
}

/// Zero divided by zero, the NaN's eight bytes as the result (see the sandbox's own test).
const ZERO_BY_ZERO: &str = r#"(module
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $zero (mut f64) (f64.const 0))
  (func (export "_start")
    (i64.store (i32.const 0) (i64.reinterpret_f64 (f64.div (global.get $zero) (global.get $zero))))
    (drop (call $result_set (i32.const 0) (i32.const 8)))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_may_ask_for_native_nans_unless_it_compares_results() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client().await;
    let module = client
        .upload(idlegrid_testkit::hostile::wasm(ZERO_BY_ZERO), ElementKind::Executable, "nan.wasm")
        .await
        .unwrap();
    let mut bits = Vec::new();
    for native_nans in [false, true] {
        let task_limits = TaskLimitsSpec { native_nans, ..TaskLimitsSpec::default() };
        let job = client.create_job(JobProperties { task_limits, ..JobProperties::default() }).await.unwrap().job;
        client.add_tasks(job, vec![spec(0, module.hash, "")]).await.unwrap();
        client.launch(job).await.unwrap();
        let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
        let bytes = client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap();
        bits.push(u64::from_le_bytes(bytes.try_into().unwrap()));
    }
    assert_eq!(bits[0], 0x7ff8_0000_0000_0000, "canonical by default");
    assert!(f64::from_bits(bits[1]).is_nan());
    #[cfg(target_arch = "x86_64")]
    assert_eq!(bits[1], 0xfff8_0000_0000_0000, "the processor's own NaN reached the result");

    let compared = JobProperties {
        task_limits: TaskLimitsSpec { native_nans: true, ..TaskLimitsSpec::default() },
        validation: idlegrid_types::ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 4 },
        ..JobProperties::default()
    };
    let refused = client.create_job(compared).await.unwrap_err().to_string();
    assert!(refused.contains("native_nans cannot go with a validation policy"), "{refused}");
}
