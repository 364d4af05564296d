//! CPU benchmarks (P5.1) with a real server and a real engine: the engine is measured when it
//! first connects, the measurement is kept in its provider profile and rates its later work, and
//! the benchmark disturbs no job.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use idlegrid_coordinator::ProviderProfile;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_store::{SqliteStore, Store, StoreError};
use idlegrid_types::{JobId, JobProperties, PartyId, TaskState};

/// The engine's party, from its identity file.
fn engine_party(engine_dir: &Path) -> PartyId {
    Identity::load_or_create(&engine_dir.join("identity.key")).unwrap().id().clone()
}

/// The provider's profile and the job's work records, read from the server's database after it
/// stopped.
fn stored(
    data_dir: &Path,
    party: &PartyId,
    job: Option<JobId>,
) -> (Option<ProviderProfile>, Vec<idlegrid_ledger::WorkRecord>) {
    let store = SqliteStore::open(&data_dir.join("state.db")).unwrap();
    store
        .write(|tx| -> Result<_, StoreError> {
            let profile = tx.provider_profile(party)?.map(|json| serde_json::from_str(&json).unwrap());
            let records = match job {
                Some(job) => tx.work_records_of_job(job)?,
                None => Vec::new(),
            };
            Ok((profile, records))
        })
        .unwrap()
}

/// Until the engine ran a task and the server acknowledged its result (the engine forgets a
/// task only then).
async fn wait_for_first_answer(engine: &idlegrid_engine::EngineHandle) {
    wait_for("the engine to answer its benchmark", || {
        let stats = engine.stats();
        stats.tasks_succeeded >= 1 && stats.held == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_is_measured_at_registration_and_its_work_carries_the_measurement() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.benchmark_interval_ms = Some(idlegrid_coordinator::BENCHMARK_INTERVAL_DEFAULT_MS);
    // A smaller size than the default: this test's server is a debug build, whose native twin
    // computes the answers slowly.
    config.coordinator.benchmark_size = 320;
    let data_dir = config.data_dir.clone();
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let mut engine_config = engine_config(&server.url(), dir.path(), "engine");
    if let Some(ca) = server.ca_pem() {
        engine_config.server = engine_config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
    }
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    wait_for_first_answer(&engine).await;

    // A normal job afterwards: nothing of the benchmark reaches the client or its counts.
    let client = connect(&server.url()).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties { name: "after".into(), ..JobProperties::default() }).await.unwrap().job;
    let tasks = (0..6).map(|index| TaskSpec {
        index,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: format!("{index}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.total()), (6, 6), "{info:?}");
    assert_eq!(finals.len(), 6);
    assert!(finals.iter().all(|r| r.state == TaskState::Succeeded && r.task < 6), "{finals:?}");
    let jobs = client.jobs().await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.job).collect::<Vec<_>>(), vec![job], "the client sees only its own job");
    assert_eq!(engine.stats().tasks_succeeded, 7, "the engine ran the benchmark and the six tasks");

    engine.shutdown().await;
    server.shutdown().await;
    let (profile, records) = stored(&data_dir, &engine_party(&dir.path().join("engine")), Some(job));
    let profile = profile.expect("the engine's profile");
    let gflops = profile.measured_gflops().expect("a measured speed");
    assert!(gflops > 0.0 && gflops < idlegrid_coordinator::BENCHMARK_GFLOPS_MAX, "{profile:?}");
    assert_eq!(profile.cpu_gflops.unwrap().samples, 1, "measured once: the next is due in 6 hours");
    assert_eq!(profile.cores, Some(1), "the reported fields are kept beside the measurement");
    assert!(profile.os.is_some() && profile.engine_version.is_some());
    assert_eq!(profile.benchmark_wrong, 0);
    eprintln!("measured {gflops:.3} GFLOPS per slot");
    assert_eq!(records.len(), 6, "one work record per task; none for the benchmark");
    assert!(
        records.iter().all(|r| r.power_gflops == gflops),
        "the job's work is rated at the measured speed: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_command_benchmarks_engines_by_default() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    let server = std::process::Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .args(["--maintenance-secs", "0.2", "--log", "warn", "--benchmark-size", "128"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Process(server);
    wait_healthy(&url).await;
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir.path(), "engine")).await.unwrap();
    wait_for_first_answer(&engine).await;
    engine.shutdown().await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (profile, _) = stored(&data, &engine_party(&dir.path().join("engine")), None);
    let profile = profile.expect("the engine's profile");
    assert!(profile.measured_gflops().is_some_and(|g| g > 0.0), "{profile:?}");
}
