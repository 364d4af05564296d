//! Several server instances on one PostgreSQL database (issue 8, P4.10): engines and the client
//! spread across three `idlegrid server` processes that share the database, the element folder
//! and the certificate authority. One instance is killed with SIGKILL mid-job and started again.
//! The job completes, every result reaches the client exactly once, and no task ran to
//! completion on two engines.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_client::{JobEvent, ServerTrust};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_store::PostgresStore;
use idlegrid_types::{JobProperties, JobState};

fn postgres_url() -> String {
    std::env::var("IDLEGRID_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn spawn_instance(port: u16, data: &Path, database: &str, ca_dir: &Path) -> Process {
    let child = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--database", database, "--engine-silence-secs", "60", "--maintenance-secs", "0.5", "--log", "warn"])
        .args(["--benchmark-interval-secs", "0"])
        .arg("--tls-ca-cert")
        .arg(ca_dir.join("ca.pem"))
        .arg("--tls-ca-key")
        .arg(ca_dir.join("ca.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_job_and_survive_one_killed_mid_job() {
    logs();
    let total: u64 = std::env::var("IDLEGRID_SCALE_OUT_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let url = postgres_url();
    let schema = format!("scale_out_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    drop(
        PostgresStore::connect_in_schema(&url, &schema)
            .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed"),
    );
    let database = format!("{url}?options=-csearch_path%3D{schema}");

    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let authority = idlegrid_pki::Authority::load_or_create(&ca_dir, "scale-out test").unwrap();
    let shared = dir.path().join("shared"); // the element folder every instance uses
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut instances: Vec<Process> =
        ports.iter().map(|&port| spawn_instance(port, &shared, &database, &ca_dir)).collect();
    let urls: Vec<String> = ports.iter().map(|port| format!("https://127.0.0.1:{port}")).collect();
    for url in &urls {
        wait_healthy(url).await;
    }
    let trusted =
        |url: &str| idlegrid_client::Endpoint::new(url).with_trust(ServerTrust::Ca(authority.cert_pem().to_string()));

    // Two engines on each instance, which know the others as alternates; the client on the first.
    let mut engines = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let others: Vec<&str> = urls.iter().filter(|u| *u != url).map(String::as_str).collect();
        let all = format!("{url},{}", others.join(","));
        for j in 0..2 {
            let mut config = engine_config(url, dir.path(), &format!("engine-{i}-{j}"));
            config.server = trusted(&all);
            config.prefetch = 16;
            engines.push(idlegrid_engine::Engine::start(config).await.unwrap());
        }
    }
    let channel = idlegrid_client::ChannelConfig {
        poll_wait: Duration::from_secs(5),
        backoff_max: Duration::from_millis(500),
        ..Default::default()
    };
    let client = idlegrid_client::Client::connect_with(trusted(&urls[0]), Identity::generate(), "scale-out", channel)
        .await
        .unwrap();
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let specs = (0..total).map(|i| TaskSpec {
        index: i,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: format!("{i}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();

    let mut watch = client.watch(job, Replay::Undelivered).await.unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    let mut killed = false;
    let mut restarted = false;
    // Tasks finished by the killed instance's engines (2 and 3 of the list) at the kill.
    let of_killed = |engines: &Vec<idlegrid_engine::EngineHandle>| {
        engines[2].status().tasks_succeeded + engines[3].status().tasks_succeeded
    };
    let mut at_kill = 0;
    let mut at_restart = 0;
    let info = tokio::time::timeout(PATIENCE * 3, async {
        while let Some(event) = watch.next().await {
            match event.expect("the client's instance stays up") {
                JobEvent::Task(report) if report.state.is_final() => {
                    let result = report.result.as_ref().expect("a result");
                    let bytes = client.fetch(result).await.unwrap();
                    assert_eq!(
                        bytes,
                        report.task.to_string().into_bytes(),
                        "task {} returned another task's result",
                        report.task
                    );
                    *seen.entry(report.task).or_default() += 1;
                    if !killed && seen.len() as u64 >= total / 4 {
                        instances[1].kill9();
                        at_kill = of_killed(&engines);
                        killed = true;
                    }
                    if killed && !restarted && seen.len() as u64 >= total * 3 / 4 {
                        at_restart = of_killed(&engines);
                        instances[1] = spawn_instance(ports[1], &shared, &database, &ca_dir);
                        restarted = true;
                    }
                }
                JobEvent::Job(info) if info.state == JobState::Completed => return info,
                _ => {}
            }
        }
        panic!("the watch ended before the job completed");
    })
    .await
    .expect("the job completes");
    drop(watch);
    assert!(killed && restarted);
    assert!(
        at_restart > at_kill + 50,
        "the killed instance's engines carried on through the others while it was down: {at_kill} -> {at_restart}"
    );
    assert_eq!(info.counts.succeeded, total, "{:?}", info.counts);
    assert_eq!(seen.len() as u64, total, "every result arrived");
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(repeated.is_empty(), "results delivered twice: {repeated:?}");

    // The killed instance's engines came back through the restarted instance and worked on.
    wait_healthy(&urls[1]).await;
    let ran: Vec<u64> = engines.iter().map(|e| e.status().tasks_succeeded).collect();
    assert_eq!(ran.iter().sum::<u64>(), total, "no task ran to completion twice: {ran:?}");
    assert!(ran.iter().all(|&n| n > 0), "every engine, on every instance, got work: {ran:?}");
    for engine in engines {
        engine.shutdown().await;
    }
    drop(instances);
    PostgresStore::drop_schema(&url, &schema).unwrap();
}
