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
use idlegrid_store::{PostgresStore, Store};
use idlegrid_types::{JobProperties, JobState};

fn postgres_url() -> String {
    std::env::var("IDLEGRID_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn spawn_instance(port: u16, data: &Path, database: &str, ca_dir: &Path) -> Process {
    spawn_instance_with(port, data, database, ca_dir, &[])
}

fn spawn_instance_with(port: u16, data: &Path, database: &str, ca_dir: &Path, extra: &[&str]) -> Process {
    let child = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .args(["--database", database, "--engine-silence-secs", "60", "--maintenance-secs", "0.5", "--log", "warn"])
        .args(extra)
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

/// Three instances on one database, two engines on each, and three clients, one per instance,
/// whose jobs run at the same time: every instance's transactions run side by side (no lock
/// shared by all of them). Every result reaches its client exactly once, no task runs to
/// completion twice, every launch is billed, and the ledger balances (billing runs on every
/// instance, each second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_concurrent_clients_lose_and_double_nothing() {
    logs();
    let per_job: u64 = std::env::var("IDLEGRID_SCALE_OUT_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let url = postgres_url();
    let schema = format!("scale_out_concurrent_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    let store = PostgresStore::connect_in_schema(&url, &schema)
        .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed");
    let database = format!("{url}?options=-csearch_path%3D{schema}");

    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let authority = idlegrid_pki::Authority::load_or_create(&ca_dir, "scale-out test").unwrap();
    let shared = dir.path().join("shared");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let billing = ["--billing-increment-secs", "1"];
    let instances: Vec<Process> =
        ports.iter().map(|&port| spawn_instance_with(port, &shared, &database, &ca_dir, &billing)).collect();
    let urls: Vec<String> = ports.iter().map(|port| format!("https://127.0.0.1:{port}")).collect();
    for url in &urls {
        wait_healthy(url).await;
    }
    let trusted =
        |url: &str| idlegrid_client::Endpoint::new(url).with_trust(ServerTrust::Ca(authority.cert_pem().to_string()));
    let mut engines = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for j in 0..2 {
            let mut config = engine_config(url, dir.path(), &format!("engine-{i}-{j}"));
            config.server = trusted(url);
            config.prefetch = 16;
            engines.push(idlegrid_engine::Engine::start(config).await.unwrap());
        }
    }

    // One client per instance, all at once.
    let mut runs = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let endpoint = trusted(url);
        runs.push(tokio::spawn(async move {
            let client = idlegrid_client::Client::connect_with(
                endpoint,
                Identity::generate(),
                &format!("client-{i}"),
                idlegrid_client::ChannelConfig::default(),
            )
            .await
            .unwrap();
            let noop = upload_task(&client, "noop").await;
            let job = client.create_job(JobProperties::default()).await.unwrap().job;
            let specs = (0..per_job).map(|t| TaskSpec {
                index: t,
                executable: noop.hash,
                data: BTreeMap::new(),
                params: format!("{i}-{t}").into_bytes(),
                priority: None,
            });
            client.add_tasks(job, specs).await.unwrap();
            client.launch(job).await.unwrap();
            let mut watch = client.watch(job, Replay::Undelivered).await.unwrap();
            let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
            let info = tokio::time::timeout(PATIENCE * 3, async {
                while let Some(event) = watch.next().await {
                    match event.expect("the client's instance stays up") {
                        JobEvent::Task(report) if report.state.is_final() => {
                            let result = report.result.as_ref().expect("a result");
                            let bytes = client.fetch(result).await.unwrap();
                            assert_eq!(bytes, format!("{i}-{}", report.task).into_bytes(), "another task's result");
                            *seen.entry(report.task).or_default() += 1;
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
            (client, job, info, seen)
        }));
    }
    let mut clients = Vec::new();
    let mut jobs = Vec::new();
    for run in runs {
        let (client, job, info, seen) = run.await.expect("a client's run");
        jobs.push(job);
        assert_eq!(info.counts.succeeded, per_job, "{:?}", info.counts);
        assert_eq!(seen.len() as u64, per_job, "every result arrived");
        let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
        assert!(repeated.is_empty(), "results delivered twice: {repeated:?}");
        clients.push(client);
    }
    let ran: Vec<u64> = engines.iter().map(|e| e.status().tasks_succeeded).collect();
    assert_eq!(ran.iter().sum::<u64>(), 3 * per_job, "no task ran to completion twice: {ran:?}");

    // Billing catches up on whichever instance gets there first, and posts every launch once.
    let unbilled = || {
        store
            .read(|tx| tx.unbilled_work_records(u64::MAX, 1_000))
            .map(|records: Vec<idlegrid_ledger::WorkRecord>| records.len())
            .unwrap()
    };
    wait_for("every launch billed", || unbilled() == 0).await;
    let (records, totals) = store
        .read(|tx| {
            let mut records = 0;
            for job in &jobs {
                records += tx.work_records_of_job(*job)?.len() as u64;
            }
            let totals = tx.ledger().totals().map_err(|e| idlegrid_store::StoreError::Corrupt(e.to_string()))?;
            Ok::<_, idlegrid_store::StoreError>((records, totals))
        })
        .unwrap();
    assert!(records >= 3 * per_job, "every task's launch is journaled: {records} records");
    assert!(totals.is_balanced(), "the ledger balances: {totals:?}");
    for client in &clients {
        assert!(client.account().await.unwrap().balance_micros < 0, "every client was charged");
    }
    for engine in engines {
        engine.shutdown().await;
    }
    for client in clients {
        let _ = client.close().await;
    }
    drop(instances);
    drop(store);
    PostgresStore::drop_schema(&url, &schema).unwrap();
}
