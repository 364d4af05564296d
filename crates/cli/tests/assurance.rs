//! Results can be trusted (P6.1, P6.2): real engines, one of them modified to forge results.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use idlegrid_assurance::{SpotCheckPolicy, ValidationPolicy};
use idlegrid_engine::{Engine, EngineHandle};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{AccountInfo, Replay, TaskSpec};
use idlegrid_server::{Server, ServerConfig};
use idlegrid_store::{SqliteStore, Store, Tx};
use idlegrid_types::{ElementKind, FailureKind, JobProperties, PartyId, Role, TaskState};

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

fn party_of(dir: &std::path::Path, engine: &str) -> PartyId {
    Identity::load_or_create(&dir.join(engine).join("identity.key")).unwrap().id().clone()
}

async fn start_engine(
    server: &idlegrid_server::ServerHandle,
    dir: &std::path::Path,
    name: &str,
    forge: Option<idlegrid_engine::ResultForger>,
) -> EngineHandle {
    let mut config = engine_config(&server.url(), dir, name);
    if let Some(ca) = server.ca_pem() {
        config.server = config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
    }
    config.forge_result = forge;
    Engine::start(config).await.unwrap()
}

/// A pi estimate `inside total` is plausible when 4 inside / total is near pi.
fn plausible_pi(bytes: &[u8], samples: u64) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((inside, total)) = text.split_once(' ') else { return false };
    let (Ok(inside), Ok(total)) = (inside.parse::<f64>(), total.parse::<u64>()) else { return false };
    total == samples && (4.0 * inside / total as f64 - std::f64::consts::PI).abs() < 0.1
}

async fn balance(url: &str, dir: &std::path::Path, engine: &str) -> i64 {
    let identity = Identity::load_or_create(&dir.join(engine).join("identity.key")).unwrap();
    let transport = transport(url, identity, Role::Provider).await;
    let info: AccountInfo =
        transport.call::<(), _>(reqwest::Method::GET, "/v1/account", None, Duration::from_secs(10)).await.unwrap();
    info.balance_micros
}

fn quarantined(server_dir: &std::path::Path) -> Vec<PartyId> {
    let store = SqliteStore::open(&server_dir.join("state.db")).unwrap();
    store.write(|tx: &mut dyn Tx| tx.quarantined_providers()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_engine_is_quarantined_its_lies_never_reach_the_client_and_the_honest_are_paid() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config: ServerConfig = server_config(dir.path());
    // Billing increments of 4 s, so that pay is settled while the test waits.
    config.coordinator.pricing.increment_ms = 4000;
    // Every provider's first placements are tests, once the server knows answers.
    config.coordinator.spot_checks = SpotCheckPolicy { rate: 0.1, new_provider_rate: 1.0, new_provider_checks: 2 };
    let server_dir = config.data_dir.clone();
    let server = Server::start(config).await.unwrap();
    let url = server.url();
    let mut engines = Vec::new();
    for name in ["honest-0", "honest-1", "honest-2"] {
        engines.push(start_engine(&server, dir.path(), name, None).await);
    }
    let forged = b"0 20000".to_vec();
    let liar_forgery = forged.clone();
    engines.push(
        start_engine(&server, dir.path(), "liar", Some(std::sync::Arc::new(move |_| liar_forgery.clone()))).await,
    );

    let client = connect(&url).await;
    let pi = upload_task(&client, "pi").await;
    let properties =
        JobProperties { name: "checked".into(), validation: ValidationPolicy::quorum(2), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    client.add_tasks(job, (0..40).map(|i| spec(i, pi.hash, &format!("samples=20000 seed={}", i + 1)))).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 40, "{info:?}");
    assert_eq!(finals.len(), 40);
    for report in &finals {
        let bytes = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        assert_ne!(bytes, forged, "task {}: a forged result reached the client", report.task);
        assert!(plausible_pi(&bytes, 20000), "task {}: {:?}", report.task, String::from_utf8_lossy(&bytes));
    }
    let liar_stats = engines[3].stats();
    assert!(liar_stats.tasks_succeeded > 0, "the liar took part: {liar_stats:?}");

    // Pay: every honest engine that worked is paid once its increments close; the liar is not.
    let started = Instant::now();
    loop {
        let mut paid = 0;
        for (i, engine) in engines.iter().take(3).enumerate() {
            if engine.stats().tasks_succeeded == 0 || balance(&url, dir.path(), &format!("honest-{i}")).await > 0 {
                paid += 1;
            }
        }
        if paid == 3 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the honest engines were never paid");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // One more increment: anything the liar could have been paid is billed by now.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(balance(&url, dir.path(), "liar").await, 0, "the liar earned nothing");

    for engine in engines {
        engine.shutdown().await;
    }
    server.shutdown().await;
    assert_eq!(
        quarantined(&server_dir),
        vec![party_of(dir.path(), "liar")],
        "the liar, and only the liar, is quarantined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_accepts_results_within_its_tolerance_and_a_broken_one_never_accepts() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.spot_checks = SpotCheckPolicy::off();
    config.validator_cpu_time_max = Duration::from_secs(1);
    let server = Server::start(config).await.unwrap();
    // A sloppy engine: its pi estimates are off by one sample in 20000, as different
    // floating-point hardware might be.
    let sloppy: idlegrid_engine::ResultForger = std::sync::Arc::new(|bytes: Vec<u8>| {
        let text = String::from_utf8_lossy(&bytes).to_string();
        match text.split_once(' ') {
            Some((inside, total)) => format!("{} {total}", inside.parse::<u64>().unwrap_or(0) + 1).into_bytes(),
            None => bytes,
        }
    });
    let engines = vec![
        start_engine(&server, dir.path(), "exact", None).await,
        start_engine(&server, dir.path(), "sloppy", Some(sloppy)).await,
    ];
    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let approx = upload_task(&client, "approx").await;
    let trap = client
        .upload(
            idlegrid_testkit::hostile::wasm(
                r#"(module (func (export "_start") unreachable) (memory (export "memory") 1))"#,
            ),
            ElementKind::Executable,
            "trap.wasm",
        )
        .await
        .unwrap();
    let endless = client
        .upload(
            idlegrid_testkit::hostile::wasm(idlegrid_testkit::hostile::START_LOOP),
            ElementKind::Executable,
            "loop.wasm",
        )
        .await
        .unwrap();
    let policy = ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 2 };

    let mut jobs = Vec::new();
    for (validator, n) in [(approx.hash, 6), (trap.hash, 2), (endless.hash, 1)] {
        let properties = JobProperties { validation: policy, validator: Some(validator), ..JobProperties::default() };
        let job = client.create_job(properties).await.unwrap().job;
        client
            .add_tasks(job, (0..n).map(|i| spec(i, pi.hash, &format!("samples=20000 seed={}", i + 7))))
            .await
            .unwrap();
        client.launch(job).await.unwrap();
        jobs.push(job);
    }
    let (finals, info) = run_to_completion(&client, jobs[0], Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 6, "results within the tolerance agree: {info:?}");
    for report in &finals {
        let bytes = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        assert!(plausible_pi(&bytes, 20000), "{:?}", String::from_utf8_lossy(&bytes));
    }
    for job in &jobs[1..] {
        let (finals, info) = run_to_completion(&client, *job, Replay::Undelivered).await;
        assert_eq!(info.counts.succeeded, 0, "a broken validator never accepts: {info:?}");
        for report in &finals {
            assert_eq!(report.state, TaskState::Failed);
            let failure = report.failure.as_ref().unwrap();
            assert_eq!(failure.kind, FailureKind::Inconclusive, "{failure:?}");
            assert!(failure.message.contains("validator"), "{}", failure.message);
        }
    }
    for engine in engines {
        engine.shutdown().await;
    }
    server.shutdown().await;
}
