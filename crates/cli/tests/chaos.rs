//! The reliable channel under a hostile network (P8.3-P8.5): every request between the parties
//! and the server goes through a proxy that drops requests and answers, duplicates, delays,
//! reorders and truncates them. The job still completes, each result reaches the client once and
//! carries the right bytes, and the faults really happened.
//!
//! Plain HTTP (the development mode) so that the proxy can see and cut requests; TLS is tested
//! elsewhere and rides below the channel.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_client::JobEvent;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_testkit::chaos::{ChaosConfig, ChaosProxy};
use idlegrid_types::{JobProperties, JobState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_exactly_once_through_a_proxy_that_drops_duplicates_and_reorders() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    // Dropped polls make an engine look silent for a while; it is not dead.
    config.coordinator.provider_silence_ms_max = 30_000;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let upstream: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let proxy = ChaosProxy::start(upstream, ChaosConfig::with_rate(0.3, 7)).await.unwrap();
    let url = proxy.url();

    let mut engines = Vec::new();
    for i in 0..2 {
        let mut config = engine_config(&url, dir.path(), &format!("engine-{i}"));
        config.channel.poll_wait = std::time::Duration::from_secs(1);
        engines.push(idlegrid_engine::Engine::start(config).await.unwrap());
    }
    let channel = idlegrid_client::ChannelConfig {
        poll_wait: std::time::Duration::from_secs(1),
        backoff_max: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let client =
        idlegrid_client::Client::connect_with(url.as_str(), Identity::generate(), "chaos", channel).await.unwrap();

    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let total = 2000u64;
    let specs = (0..total).map(|i| TaskSpec {
        index: i,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: format!("task {i}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();

    let mut watch = client.watch(job, Replay::Undelivered).await.unwrap();
    let mut seen: BTreeMap<_, u32> = BTreeMap::new();
    let mut results = BTreeMap::new();
    let info = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = watch.next().await {
            match event.expect("the client rides out the faults") {
                JobEvent::Task(report) if report.state.is_final() => {
                    *seen.entry(report.task).or_default() += 1;
                    results.insert(report.task, report.result.clone());
                }
                JobEvent::Job(info) if info.state == JobState::Completed => return info,
                _ => {}
            }
        }
        panic!("the watch ended before the job completed");
    })
    .await
    .expect("the job completes through the faults");
    drop(watch);

    assert_eq!(info.counts.succeeded, total, "{:?}", info.counts);
    assert_eq!(seen.len() as u64, total, "every result arrived");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "results delivered twice: {repeated:?}");
    // Each result is the task's own parameters (the noop task echoes them).
    let mut bodies = std::collections::BTreeSet::new();
    for result in results.values() {
        let bytes = client.fetch(result.as_ref().expect("a result")).await.unwrap();
        assert!(bytes.starts_with(b"task "), "{}", String::from_utf8_lossy(&bytes));
        bodies.insert(bytes);
    }
    assert_eq!(bodies.len() as u64, total, "each task has its own result");

    let stats = proxy.stats();
    assert!(stats.dropped_responses > 0 && stats.dropped_requests > 0 && stats.duplicated > 0, "{stats:?}");
    for engine in engines {
        engine.shutdown().await;
    }
}
