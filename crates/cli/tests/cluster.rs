//! Virtual clusters with a real server and real engines (issue 4): the server measures the
//! engines' speeds, places a job that asks for nodes of a given speed and reliability on virtual
//! nodes of the engines fast enough, replaces a node whose engines disappear mid-task, and
//! removes the duplicates once a member answers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use idlegrid_coordinator::ProviderProfile;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_store::{SqliteStore, Store, StoreError};
use idlegrid_testkit::chaos::{ChaosConfig, ChaosProxy};
use idlegrid_types::{JobId, JobProperties, PartyId, TaskState, VirtualClusterRequest};

fn engine_party(engine_dir: &Path) -> PartyId {
    Identity::load_or_create(&engine_dir.join("identity.key")).unwrap().id().clone()
}

/// Read the running server's database (SQLite allows a second connection beside the server's).
fn read<T>(db: &Path, f: impl FnOnce(&mut dyn idlegrid_store::Tx) -> Result<T, StoreError>) -> T {
    let store = SqliteStore::open(db).unwrap();
    store.write(f).unwrap()
}

fn measured(db: &Path, party: &PartyId) -> Option<f64> {
    let json = read(db, |tx| tx.provider_profile(party))?;
    serde_json::from_str::<ProviderProfile>(&json).ok()?.measured_gflops()
}

/// Every placement of the job's tasks so far (task index -> engines, from the work records the
/// server journals per placement), and the ones active now.
fn placements(
    db: &Path,
    job: JobId,
    tasks: u64,
) -> (BTreeMap<u64, BTreeSet<PartyId>>, BTreeMap<u64, BTreeSet<PartyId>>) {
    read(db, |tx| {
        let (mut all, mut active) = (BTreeMap::new(), BTreeMap::new());
        for record in tx.work_records_of_job(job)? {
            all.entry(record.task).or_insert_with(BTreeSet::new).insert(record.provider.clone());
        }
        for index in 0..tasks {
            let Some(task) = tx.task(job, index)? else { continue };
            for a in tx.active_assignments_of_task(task.key)? {
                active.entry(index).or_insert_with(BTreeSet::new).insert(a.provider.clone());
            }
        }
        Ok((all, active))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_job_runs_on_nodes_of_fast_enough_engines_and_a_vanished_node_is_replaced() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.coordinator.benchmark_interval_ms = Some(idlegrid_coordinator::BENCHMARK_INTERVAL_DEFAULT_MS);
    // Small: this test's server is a debug build, whose native twin computes the answers slowly.
    config.coordinator.benchmark_size = 320;
    // The engines are seconds old; a day of history is the production default.
    config.coordinator.scheduler.rating_window_minutes_min = 0;
    // Engines on a shared test machine measure within a wide range; accept nodes up to 20 times
    // faster than asked, so that only the slow engine is ruled out.
    config.coordinator.scheduler.band.faster_fraction_max = 0.95;
    let db = config.data_dir.join("state.db");
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let upstream: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();

    // The slow engine talks through a link that delays every exchange by up to 3 s. The server
    // sees its benchmark take seconds and rates it by a quarter of that time (the floor that
    // keeps engines from claiming any speed), so it is measured far slower than the others.
    let slow_link = ChaosProxy::start(
        upstream,
        ChaosConfig { delay: 1.0, max_delay: Duration::from_secs(3), ..ChaosConfig::none() },
    )
    .await
    .unwrap();
    let slow = idlegrid_engine::Engine::start(engine_config(&slow_link.url(), dir.path(), "slow")).await.unwrap();
    let names: Vec<String> = (0..4).map(|i| format!("fast-{i}")).collect();
    let mut fast: BTreeMap<PartyId, idlegrid_engine::EngineHandle> = BTreeMap::new();
    for name in &names {
        let engine = idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), name)).await.unwrap();
        fast.insert(engine_party(&dir.path().join(name)), engine);
    }
    let slow_party = engine_party(&dir.path().join("slow"));
    let everyone: Vec<PartyId> = fast.keys().cloned().chain([slow_party.clone()]).collect();
    wait_for("every engine to be measured", || everyone.iter().all(|p| measured(&db, p).is_some())).await;
    let slow_speed = measured(&db, &slow_party).unwrap();
    let fast_speeds: Vec<f64> = fast.keys().map(|p| measured(&db, p).unwrap()).collect();
    let slowest_fast = fast_speeds.iter().cloned().fold(f64::INFINITY, f64::min);
    eprintln!("measured GFLOPS: slow {slow_speed:.3}, fast {fast_speeds:.3?}");
    assert!(
        slowest_fast > 2.0 * slow_speed,
        "the delayed engine must measure slower: slow {slow_speed}, fast {fast_speeds:?}"
    );
    // Nodes between the two: the fast engines qualify, the slow one is too slow.
    let node_speed = (slow_speed * slowest_fast).sqrt();

    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let properties = JobProperties {
        name: "cluster".into(),
        cluster: Some(VirtualClusterRequest {
            node_cpu_gflops: Some(node_speed),
            // Members count as 0.95 reliable at most: 0.99 needs two members per node.
            reliability: Some(0.99),
            work_per_task_gflop_hours: Some(0.01),
            data_in_mb: Some(0.0),
            data_out_mb: Some(0.0),
            ..VirtualClusterRequest::default()
        }),
        ..JobProperties::default()
    };
    let job = client.create_job(properties).await.unwrap().job;
    let tasks = 6u64;
    let specs = (0..tasks).map(|index| TaskSpec {
        index,
        executable: pi.hash,
        data: BTreeMap::new(),
        params: format!("samples=40000000 seed={index}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();

    // A node of two members is running: both of its engines disappear mid-task.
    let mut victims = BTreeSet::new();
    let mut victim_task = None;
    wait_for("a virtual node of two engines to run", || {
        let (_, active) = placements(&db, job, tasks);
        if let Some((index, members)) = active.iter().find(|(_, members)| members.len() == 2) {
            victims = members.clone();
            victim_task = Some(*index);
        }
        victim_task.is_some()
    })
    .await;
    let victim_task = victim_task.unwrap();
    for party in &victims {
        fast.remove(party).unwrap().kill();
    }
    eprintln!("killed both members of task {victim_task}'s node");

    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.total()), (tasks, tasks), "{info:?}");
    assert_eq!(finals.len() as u64, tasks, "each result once");
    for report in &finals {
        assert_eq!(report.state, TaskState::Succeeded);
        let text = match &report.result {
            Some(idlegrid_protocol::Payload::Inline(bytes)) => String::from_utf8(bytes.clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        let numbers: Vec<u64> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
        let estimate = 4.0 * numbers[0] as f64 / numbers[1] as f64;
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "{text}");
    }

    let (all, active) = placements(&db, job, tasks);
    assert!(active.is_empty(), "no placement is left running: the duplicates were removed: {active:?}");
    let members: BTreeSet<&PartyId> = all.values().flatten().collect();
    assert!(!members.contains(&slow_party), "the engine too slow for the requested nodes got no task");
    // pi is 0.95 at most, so r = 0.99 implies N = ln(0.01) / ln(0.05) = 1.54 members per node on
    // average: nodes of two, and of one whenever the reliability carried from earlier nodes
    // allows (a fractional N met on average).
    let replaced = &all[&victim_task];
    let copies: usize = all.iter().filter(|(index, _)| **index != victim_task).map(|(_, engines)| engines.len()).sum();
    let per_task = copies as f64 / (tasks - 1) as f64;
    eprintln!("members per node {per_task:.2} (placements {all:?})");
    assert!(
        all.len() as u64 == tasks && (1.2..=2.0).contains(&per_task),
        "duplication {per_task} is not near N = 1.54: {all:?}"
    );
    assert!(
        replaced.is_superset(&victims) && replaced.len() >= 4,
        "the silent node was replaced by two other engines: {replaced:?}"
    );
    let survivors: usize = fast.values().map(|e| e.stats().tasks_succeeded as usize).sum();
    assert!(survivors > 0);
    for (_, engine) in fast {
        engine.shutdown().await;
    }
    slow.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_cluster_job_draws_its_quorums_from_engines_fit_to_be_its_nodes() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let db = config.data_dir.join("state.db");
    let server = idlegrid_server::Server::start(config).await.unwrap();

    // Three engines with the memory a node asks for, two without: replicas of the checked job
    // may only go to the three.
    let mut engines = BTreeMap::new();
    for (name, memory) in
        [("big-0", 4u64 << 30), ("big-1", 4 << 30), ("big-2", 4 << 30), ("small-0", 512 << 20), ("small-1", 512 << 20)]
    {
        let mut config = engine_config(&server.url(), dir.path(), name);
        config.owner.memory_bytes_max = memory;
        config.owner.task_memory_bytes_max = 256 << 20;
        let engine = idlegrid_engine::Engine::start(config).await.unwrap();
        engines.insert(name, (engine_party(&dir.path().join(name)), engine));
    }
    let small: BTreeSet<PartyId> =
        engines.iter().filter(|(name, _)| name.starts_with("small")).map(|(_, (party, _))| party.clone()).collect();

    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let properties = JobProperties {
        name: "checked cluster".into(),
        cluster: Some(VirtualClusterRequest {
            node_memory_mb: Some(2048),
            reliability: Some(0.9),
            work_per_task_gflop_hours: Some(0.001),
            ..VirtualClusterRequest::default()
        }),
        validation: idlegrid_types::ValidationPolicy::quorum(2),
        ..JobProperties::default()
    };
    let job = client.create_job(properties).await.unwrap().job;
    let tasks = 8u64;
    let specs = (0..tasks).map(|index| TaskSpec {
        index,
        executable: pi.hash,
        data: BTreeMap::new(),
        params: format!("samples=200000 seed={}", index + 1).into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();

    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.total()), (tasks, tasks), "{info:?}");
    assert_eq!(finals.len() as u64, tasks, "each accepted result once");
    for report in &finals {
        let bytes = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let numbers: Vec<f64> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert!((4.0 * numbers[0] / numbers[1] - std::f64::consts::PI).abs() < 0.05, "{text}");
    }
    let (all, active) = placements(&db, job, tasks);
    assert!(active.is_empty(), "no replica is left running: {active:?}");
    assert_eq!(all.len() as u64, tasks, "every task was placed: {all:?}");
    for (index, members) in &all {
        assert!(members.len() >= 2, "task {index}'s quorum needs two engines that agree: {members:?}");
        assert!(members.is_disjoint(&small), "task {index} ran on an engine below the node's memory: {members:?}");
    }
    for (name, (_, engine)) in engines {
        if name.starts_with("small") {
            assert_eq!(engine.stats().tasks_succeeded, 0, "{name} is no node of the cluster");
        }
        engine.shutdown().await;
    }
    server.shutdown().await;
}
