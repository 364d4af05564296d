//! Virtual clusters (P5.2-P5.7) through the coordinator: availability recorded per minute,
//! virtual nodes from the pure scheduler, silent nodes replaced, duplicates removed, explain.

use std::collections::{BTreeMap, BTreeSet};

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::*;
use idlegrid_scheduler::profile::BenchmarkAverage;
use idlegrid_store::Store;
use idlegrid_types::*;

use crate::tests::{Peer, World, assignments, launched_job_with};
use crate::*;

const MINUTE: u64 = 60_000;

fn config() -> CoordinatorConfig {
    let mut config = CoordinatorConfig::default();
    // Engines in these tests are minutes old.
    config.scheduler.rating_window_minutes_min = 0;
    config
}

fn profile_of(world: &mut World, engine: &Peer) -> ProviderProfile {
    let c = &world.coordinator;
    world
        .store
        .write(|tx| -> Result<_, CoordinatorError> { Ok(c.provider_profile(tx, &engine.party.id)?) })
        .unwrap()
        .unwrap_or_default()
}

/// Give an engine a measured speed, as a benchmark would.
fn measured(world: &mut World, engine: &Peer, gflops: f64) {
    let mut profile = profile_of(world, engine);
    let mut average = BenchmarkAverage::default();
    average.record(gflops, 1e6).unwrap();
    profile.cpu_gflops = Some(average);
    profile.memory_bytes = Some(8 << 30);
    profile.disk_bytes = Some(100 << 30);
    let c = &world.coordinator;
    let id = engine.party.id.clone();
    world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(c.save_profile(tx, &id, &profile)?) }).unwrap();
}

fn ready(world: &mut World, engine: &mut Peer, state: NodeState) {
    world.engine_send(engine, vec![ProviderToServer::NodeStatus { state, slots: 1, queue_capacity: 1 }]);
}

fn engines(world: &mut World, speeds: &[f64]) -> Vec<Peer> {
    speeds
        .iter()
        .map(|&gflops| {
            let mut engine = world.join(Role::Provider);
            ready(world, &mut engine, NodeState::Active);
            measured(world, &engine, gflops);
            engine
        })
        .collect()
}

fn cluster_properties(reliability: f64, node_cpu_gflops: f64) -> JobProperties {
    JobProperties {
        cluster: Some(VirtualClusterRequest {
            reliability: Some(reliability),
            node_cpu_gflops: Some(node_cpu_gflops),
            work_per_task_gflop_hours: Some(1.0),
            data_in_mb: Some(0.0),
            data_out_mb: Some(0.0),
            ..VirtualClusterRequest::default()
        }),
        ..JobProperties::default()
    }
}

fn status(a: &Assignment, state: AssignmentState, checkpoint: Option<ElementRef>) -> ProviderToServer {
    ProviderToServer::TaskStatus(AssignmentStatus {
        assignment: a.assignment,
        state,
        progress: 0.5,
        status: None,
        result: (state == AssignmentState::Succeeded).then(|| Payload::Inline(a.params.clone())),
        failure: None,
        checkpoint,
        cpu_ms: 5,
        trace: None,
    })
}

/// Everything an engine was sent: new assignments and removals.
fn drain(world: &mut World, engine: &mut Peer) -> (Vec<Assignment>, Vec<AssignmentId>) {
    let (mut tasks, mut removed) = (Vec::new(), Vec::new());
    for (_, message) in world.poll::<ServerToProvider>(engine) {
        match message {
            ServerToProvider::Task(a) => tasks.push(a),
            ServerToProvider::RemoveTask { assignment } => removed.push(assignment),
            _ => {}
        }
    }
    (tasks, removed)
}

#[test]
fn availability_is_recorded_per_minute_and_silence_counts_as_unavailable() {
    let mut world = World::with(config());
    world.now = 1_000 * MINUTE;
    let mut engine = world.join(Role::Provider);
    ready(&mut world, &mut engine, NodeState::Active);
    let first =
        profile_of(&mut world, &engine).availability().expect("the state report starts a history").ratings().unwrap();
    assert_eq!((first.window_minutes, first.cpu), (1, 1.0), "the current minute counts at once");
    // Ten minutes active, heard from every minute.
    for _ in 0..10 {
        world.now += MINUTE;
        world.engine_send(&mut engine, vec![ProviderToServer::Heartbeat]);
        world.maintain();
    }
    // Ten minutes paused: connected, the owner uses the computer.
    ready(&mut world, &mut engine, NodeState::Paused);
    for _ in 0..10 {
        world.now += MINUTE;
        world.engine_send(&mut engine, vec![ProviderToServer::Heartbeat]);
        world.maintain();
    }
    // Twenty minutes of silence, then back.
    for _ in 0..20 {
        world.now += MINUTE;
        world.maintain();
    }
    ready(&mut world, &mut engine, NodeState::Active);
    let ratings = profile_of(&mut world, &engine).availability().unwrap().ratings().unwrap();
    assert_eq!(ratings.window_minutes, 41, "{ratings:?}");
    // 11 active minutes, then 10 paused, then the silence limit (2 minutes) still counts as
    // paused, then silence, then the minute it came back.
    assert!((ratings.cpu - 12.0 / 41.0).abs() < 1e-9, "{ratings:?}");
    assert!((ratings.bandwidth - 24.0 / 41.0).abs() < 1e-9, "{ratings:?}");
    // The pass runs once a minute: a second one in the same minute records nothing.
    let c = &world.coordinator;
    let now = world.now;
    let again = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(c.record_availability(tx, now)?) }).unwrap();
    assert_eq!(again, 0);
}

#[test]
fn a_cluster_job_runs_on_virtual_nodes_and_the_first_result_removes_the_duplicates() {
    let mut world = World::with(config());
    // Three engines fast enough, one too slow for the requested node, one too fast.
    let mut peers = engines(&mut world, &[1.0, 1.1, 1.2, 0.5, 5.0]);
    // pi is capped at 0.95: reliability 0.99 needs two members per node.
    let (mut client, job, _) = launched_job_with(&mut world, 3, cluster_properties(0.99, 1.0));
    world.maintain();
    let mut placed: BTreeMap<Vec<u8>, Vec<(usize, Assignment)>> = BTreeMap::new();
    for (i, peer) in peers.iter_mut().enumerate() {
        for a in assignments(&mut world, peer) {
            placed.entry(a.params.clone()).or_default().push((i, a));
        }
    }
    let members: Vec<usize> = placed.values().flatten().map(|(i, _)| *i).collect();
    assert!(members.iter().all(|i| *i < 3), "only engines of the requested speed are members: {members:?}");
    // Three engines of one slot each: one node of two members, the other tasks wait.
    assert_eq!(placed.len(), 1, "{placed:?}");
    let node = placed.values().next().unwrap().clone();
    assert_eq!(node.len(), 2, "two members");
    assert_ne!(node[0].0, node[1].0, "on distinct engines");

    // The first member's result wins; the other member is told to drop its copy.
    let (winner, loser) = (node[0].0, node[1].0);
    let (won, lost) = (node[0].1.clone(), node[1].1.clone());
    world.engine_send(&mut peers[winner], vec![status(&won, AssignmentState::Succeeded, None)]);
    let mut pending: Vec<Vec<Assignment>> = vec![Vec::new(); peers.len()];
    let (tasks, removed) = drain(&mut world, &mut peers[loser]);
    assert_eq!(removed, vec![lost.assignment], "the duplicate is removed");
    pending[loser].extend(tasks);
    // A late result of the duplicate is ignored.
    world.engine_send(&mut peers[loser], vec![status(&lost, AssignmentState::Succeeded, None)]);

    // Run the rest to completion: every node has two members on distinct engines.
    let mut nodes: BTreeMap<Vec<u8>, BTreeSet<usize>> = BTreeMap::new();
    for _ in 0..20 {
        world.maintain();
        for i in 0..peers.len() {
            let (tasks, _) = drain(&mut world, &mut peers[i]);
            pending[i].extend(tasks);
            for a in std::mem::take(&mut pending[i]) {
                nodes.entry(a.params.clone()).or_default().insert(i);
                world.engine_send(&mut peers[i], vec![status(&a, AssignmentState::Succeeded, None)]);
            }
        }
    }
    assert!(nodes.values().all(|members| members.len() == 2 && members.iter().all(|i| *i < 3)), "{nodes:?}");
    let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
    assert_eq!(row.state, JobState::Completed, "{:?}", row.counts);
    assert_eq!(row.counts.succeeded, 3);
    let results =
        world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.results_after(job, 0, false, 100)?) }).unwrap();
    assert_eq!(results.len(), 3, "one result per task, the duplicates' ignored");
    let finals = world
        .poll::<ServerToClient>(&mut client)
        .into_iter()
        .filter(|(_, m)| matches!(m, ServerToClient::TaskStatus(r) if r.state.is_final()))
        .count();
    assert_eq!(finals, 3, "the client gets each result once");
}

#[test]
fn a_node_whose_members_fall_silent_is_replaced_and_resumes_from_a_members_checkpoint() {
    let mut world = World::with(config());
    let mut peers = engines(&mut world, &[1.0, 1.0, 1.0, 1.0]);
    let (_client, job, _) = launched_job_with(&mut world, 1, cluster_properties(0.99, 1.0));
    world.maintain();
    let mut first: Vec<(usize, Assignment)> = Vec::new();
    for (i, peer) in peers.iter_mut().enumerate() {
        first.extend(assignments(&mut world, peer).into_iter().map(|a| (i, a)));
    }
    assert_eq!(first.len(), 2, "one node of two members");
    assert!(first.iter().all(|(_, a)| a.checkpoint.is_none()));
    // One member sends a checkpoint while running.
    let (m0, a0) = first[0].clone();
    let bytes = b"checkpoint after half the work";
    let hash = world.upload(&peers[m0], bytes, ElementKind::Data);
    let checkpoint = ElementRef { hash, size: bytes.len() as u64 };
    world.engine_send(&mut peers[m0], vec![status(&a0, AssignmentState::Running, Some(checkpoint))]);
    // Both members vanish; the other engines stay in contact.
    let silent: BTreeSet<usize> = first.iter().map(|(i, _)| *i).collect();
    let silence = world.coordinator.config.provider_silence_ms_max;
    for _ in 0..(silence / MINUTE + 2) {
        world.now += MINUTE.min(silence);
        for (i, peer) in peers.iter_mut().enumerate() {
            if !silent.contains(&i) {
                world.engine_send(peer, vec![ProviderToServer::Heartbeat]);
            }
        }
        world.maintain();
    }
    world.now += 1;
    world.maintain();
    let mut second: Vec<(usize, Assignment)> = Vec::new();
    for (i, peer) in peers.iter_mut().enumerate() {
        if !silent.contains(&i) {
            second.extend(assignments(&mut world, peer).into_iter().map(|a| (i, a)));
        }
    }
    assert_eq!(second.len(), 2, "a new node of two members replaces the silent one: {second:?}");
    assert!(
        second.iter().all(|(_, a)| a.checkpoint == Some(checkpoint)),
        "the new node resumes from the member's checkpoint"
    );
    assert!(second.iter().all(|(_, a)| a.params == a0.params));
    let task = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.task(job, 0)?.unwrap()) }).unwrap();
    assert_eq!(task.attempts, 2, "a node is one attempt, whatever its size");
}

#[test]
fn explain_names_the_requirement_no_engine_meets() {
    let mut world = World::with(config());
    let _peers = engines(&mut world, &[1.0, 1.0, 1.0]);
    let mut unmeasured = world.join(Role::Provider);
    ready(&mut world, &mut unmeasured, NodeState::Active);
    let mut properties = cluster_properties(0.9, 1.0);
    properties.cluster.as_mut().unwrap().node_memory_mb = Some(1_000_000);
    let (mut client, job, _) = launched_job_with(&mut world, 2, properties);
    world.maintain();
    world.poll::<ServerToClient>(&mut client);
    world.client_send(&mut client, vec![ClientToServer::ExplainJob { job, task: None }]);
    let explanation = world
        .poll::<ServerToClient>(&mut client)
        .into_iter()
        .find_map(|(_, m)| match m {
            ServerToClient::Explanation(e) => Some(e),
            _ => None,
        })
        .expect("an explanation");
    assert_eq!(explanation.task, Some(0));
    assert_eq!((explanation.providers, explanation.providers_matching), (4, 0), "{}", explanation.text);
    let memory =
        explanation.requirements.iter().find(|r| r.requirement.starts_with("memory")).expect(&explanation.text);
    assert_eq!((memory.ruled_out, memory.ruled_out_alone), (3, 3), "the measured engines; {}", explanation.text);
    let measured = explanation
        .requirements
        .iter()
        .find(|r| r.requirement.starts_with("profile measured"))
        .expect(&explanation.text);
    assert_eq!(measured.ruled_out, 1, "the engine never benchmarked: {}", explanation.text);
    assert!(explanation.text.contains("task 0 of job"), "{}", explanation.text);
    assert!(!explanation.blockers.is_empty());

    // A job without a cluster request is explained as such.
    let (mut plain, plain_job, _) = launched_job_with(&mut world, 1, JobProperties::default());
    world.poll::<ServerToClient>(&mut plain);
    world.client_send(&mut plain, vec![ClientToServer::ExplainJob { job: plain_job, task: None }]);
    let text = world
        .poll::<ServerToClient>(&mut plain)
        .into_iter()
        .find_map(|(_, m)| match m {
            ServerToClient::Explanation(e) => Some(e.text),
            _ => None,
        })
        .unwrap();
    assert!(text.contains("asks for no virtual cluster"), "{text}");
    // Another client's job is not explained to it.
    world.client_send(&mut plain, vec![ClientToServer::ExplainJob { job, task: None }]);
    let answers = world.poll::<ServerToClient>(&mut plain);
    assert!(answers.iter().any(|(_, m)| matches!(m, ServerToClient::Error(_))), "{answers:?}");
}
