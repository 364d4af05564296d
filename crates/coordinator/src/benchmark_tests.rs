//! Benchmarks (P5.1) through the coordinator: an in-memory SQLite store and a hand-set clock.

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::*;
use idlegrid_store::{SqliteStore, Store};
use idlegrid_types::*;

use crate::tests::{self, Peer, World, launched_job};
use crate::*;

const SIZE: u32 = 12;
const INTERVAL_MS: u64 = 6 * 3600 * 1000;

fn config() -> CoordinatorConfig {
    CoordinatorConfig { benchmark_interval_ms: Some(INTERVAL_MS), benchmark_size: SIZE, ..CoordinatorConfig::default() }
}

fn world() -> World {
    World::with(config())
}

fn profile_of(world: &mut World, engine: &Peer) -> ProviderProfile {
    let c = &world.coordinator;
    world
        .store
        .write(|tx| -> Result<_, CoordinatorError> { Ok(c.provider_profile(tx, &engine.party.id)?) })
        .unwrap()
        .expect("a profile")
}

fn node_profile() -> ProviderToServer {
    ProviderToServer::NodeProfile {
        os: "linux".into(),
        arch: "x86_64".into(),
        cores: 1,
        memory_bytes: 1 << 30,
        disk_bytes: 1 << 32,
        engine_version: "0.1.0".into(),
        job_requirement: None,
    }
}

fn node_status(capacity: u32) -> ProviderToServer {
    ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: capacity }
}

fn status(a: &Assignment, state: AssignmentState, result: Option<Vec<u8>>, cpu_ms: u64) -> ProviderToServer {
    ProviderToServer::TaskStatus(AssignmentStatus {
        assignment: a.assignment,
        state,
        progress: 1.0,
        status: None,
        result: result.map(Payload::Inline),
        failure: None,
        checkpoint: None,
        cpu_ms,
        trace: None,
    })
}

fn is_benchmark(a: &Assignment) -> bool {
    a.executable == benchmark_element()
}

/// The right answer to a benchmark assignment, from its parameters.
fn answer(a: &Assignment) -> Vec<u8> {
    let (n, seed) = benchmark::parse_params(&a.params).expect("benchmark parameters");
    benchmark::expected_answer(n, seed).to_vec()
}

/// A client with a launched job of `n` tasks, attached.
/// An engine that announced itself as a real one does (profile, contents, status) and the
/// benchmark it was given first.
fn announced_engine(world: &mut World, capacity: u32) -> (Peer, Vec<Assignment>) {
    let mut engine = world.join(Role::Provider);
    world.engine_send(
        &mut engine,
        vec![node_profile(), ProviderToServer::Contents { tasks: Vec::new(), request: None }, node_status(capacity)],
    );
    let assignments = tests::assignments(world, &mut engine);
    (engine, assignments)
}

fn work_record_power(world: &mut World, job: JobId, assignment: AssignmentId) -> f64 {
    let records = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.work_records_of_job(job)?) }).unwrap();
    records.iter().find(|r| r.id == assignment.0).expect("a work record").power_gflops
}

#[test]
fn an_engine_that_reports_its_profile_gets_a_benchmark_first_and_others_get_none() {
    let mut world = world();
    let (_client, job, _) = launched_job(&mut world, 3);
    let (engine, assignments) = announced_engine(&mut world, 4);
    assert_eq!(assignments.len(), 4, "the benchmark and three tasks fill the queue of four");
    let benchmark = &assignments[0];
    assert!(is_benchmark(benchmark), "the benchmark comes first");
    assert!(assignments[1..].iter().all(|a| !is_benchmark(a)));
    assert_eq!(benchmark::parse_params(&benchmark.params).map(|(n, _)| n), Some(SIZE));
    assert!(
        !benchmark.ticket.is_empty() && !benchmark.signature.is_empty(),
        "an ordinary, signed assignment with a ticket"
    );
    // The engine may download the module with the benchmark's ticket.
    let c = &world.coordinator;
    let engine_party = engine.party.clone();
    let (hash, ticket, now) = (benchmark.executable.hash, benchmark.ticket.clone(), world.now);
    let size = world.store.write(|tx| c.authorize_download(tx, &engine_party, &hash, Some(&ticket), now)).unwrap();
    assert_eq!(size, benchmark::module_bytes().len() as u64);
    // The hidden job is nobody's business: the census counts only the client's job, and the
    // client's counts do not know about the benchmark.
    let (census, counts) = world
        .store
        .write(|tx| -> Result<_, CoordinatorError> { Ok((tx.census(0)?, tx.job(job)?.unwrap().counts)) })
        .unwrap();
    assert_eq!((census.jobs_active, census.tasks_running, census.tasks_queued), (1, 3, 0));
    assert_eq!((counts.running, counts.total()), (3, 3));
    // An engine that never said what it is gets no benchmark.
    let mut silent = world.join(Role::Provider);
    world.engine_send(&mut silent, vec![node_status(4)]);
    assert!(tests::assignments(&mut world, &mut silent).iter().all(|a| !is_benchmark(a)));
}

#[test]
fn a_right_answer_records_the_speed_and_later_work_carries_it() {
    let mut world = world();
    let (mut client, job, _) = launched_job(&mut world, 4);
    let (mut engine, assignments) = announced_engine(&mut world, 2);
    let (benchmark, first) = (assignments[0].clone(), assignments[1].clone());
    assert!(is_benchmark(&benchmark) && !is_benchmark(&first));
    assert_eq!(work_record_power(&mut world, job, first.assignment), 1.0, "not measured yet: the default rating");
    // 100 ms of CPU, answered 200 ms after it was placed: the CPU time counts.
    world.now += 200;
    world.engine_send(&mut engine, vec![status(&benchmark, AssignmentState::Succeeded, Some(answer(&benchmark)), 100)]);
    let expected = benchmark::flops(SIZE) / 0.1 / 1e9;
    let profile = profile_of(&mut world, &engine);
    assert_eq!(profile.measured_gflops(), Some(expected));
    assert_eq!(profile.cpu_measured_ms, Some(world.now));
    assert_eq!(profile.benchmark, None);
    assert_eq!((profile.os.as_deref(), profile.cores), (Some("linux"), Some(1)), "the reported fields stay");
    // The freed room went to a real task, rated at the measured speed.
    let next = tests::assignments(&mut world, &mut engine);
    assert_eq!(next.len(), 1);
    assert!(!is_benchmark(&next[0]));
    assert_eq!(work_record_power(&mut world, job, next[0].assignment), expected);
    // The client heard nothing of it.
    let told: Vec<ServerToClient> = world.poll(&mut client).into_iter().map(|(_, m)| m).collect();
    assert!(told.iter().all(|m| !matches!(m, ServerToClient::TaskStatus(r) if r.state.is_final())), "{told:?}");
    let counts = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap().counts) }).unwrap();
    assert_eq!((counts.running, counts.queued, counts.succeeded), (2, 2, 0));
    // A new NodeProfile (the engine restarted) keeps the measurement.
    world.engine_send(&mut engine, vec![node_profile()]);
    assert_eq!(profile_of(&mut world, &engine).measured_gflops(), Some(expected));
    // A late repeat of the answer changes nothing.
    world.engine_send(&mut engine, vec![status(&benchmark, AssignmentState::Succeeded, Some(answer(&benchmark)), 1)]);
    assert_eq!(profile_of(&mut world, &engine).cpu_gflops.unwrap().samples, 1);
}

#[test]
fn under_reported_cpu_time_counts_for_a_quarter_of_the_time_seen() {
    let mut world = world();
    let (mut engine, assignments) = announced_engine(&mut world, 1);
    let benchmark = &assignments[0];
    world.now += 2000;
    world.engine_send(&mut engine, vec![status(benchmark, AssignmentState::Succeeded, Some(answer(benchmark)), 1)]);
    assert_eq!(profile_of(&mut world, &engine).measured_gflops(), Some(benchmark::flops(SIZE) / 0.5 / 1e9));
    assert_eq!(benchmark_seconds(0, 0), 0.001, "never less than a millisecond");
    assert_eq!(benchmark_seconds(300, 400), 0.3);
}

#[test]
fn a_wrong_answer_records_nothing_and_waits_for_the_interval() {
    let mut world = world();
    let (mut engine, assignments) = announced_engine(&mut world, 1);
    let benchmark = &assignments[0];
    let mut wrong = answer(benchmark);
    wrong[0] ^= 1;
    world.now += 500;
    world.engine_send(&mut engine, vec![status(benchmark, AssignmentState::Succeeded, Some(wrong), 400)]);
    let profile = profile_of(&mut world, &engine);
    assert_eq!(profile.measured_gflops(), None);
    assert_eq!(profile.benchmark_wrong, 1);
    let answered = world.now;
    world.now = answered + INTERVAL_MS - 1;
    world.maintain();
    assert!(tests::assignments(&mut world, &mut engine).is_empty(), "no second benchmark before the interval");
    world.now = answered + INTERVAL_MS;
    world.maintain();
    let again = tests::assignments(&mut world, &mut engine);
    assert_eq!(again.len(), 1);
    assert!(is_benchmark(&again[0]));
    assert_ne!(again[0].assignment, benchmark.assignment);
}

#[test]
fn a_second_benchmark_comes_only_after_the_interval_and_only_with_a_free_slot() {
    let mut world = world();
    let (mut engine, assignments) = announced_engine(&mut world, 2);
    let benchmark = &assignments[0];
    world.now += 300;
    world.engine_send(&mut engine, vec![status(benchmark, AssignmentState::Succeeded, Some(answer(benchmark)), 250)]);
    let measured = world.now;
    let first = profile_of(&mut world, &engine).measured_gflops().unwrap();
    world.now = measured + INTERVAL_MS - 1;
    world.maintain();
    world.engine_send(&mut engine, vec![node_status(2)]);
    assert!(tests::assignments(&mut world, &mut engine).is_empty(), "not before the interval");
    // Due, but the engine's one slot is busy with a task: the benchmark waits for it to end.
    let (mut client, job, _) = launched_job(&mut world, 1);
    let task = tests::assignments(&mut world, &mut engine);
    assert_eq!(task.len(), 1);
    world.now = measured + INTERVAL_MS;
    world.maintain();
    assert!(tests::assignments(&mut world, &mut engine).is_empty(), "the engine's only slot is busy");
    world.engine_send(&mut engine, vec![status(&task[0], AssignmentState::Succeeded, Some(b"done".to_vec()), 5)]);
    let results: Vec<ServerToClient> = world.poll(&mut client).into_iter().map(|(_, m)| m).collect();
    assert!(results.iter().any(|m| matches!(m, ServerToClient::TaskStatus(r) if r.state == TaskState::Succeeded)));
    world.maintain();
    let second = tests::assignments(&mut world, &mut engine);
    assert_eq!(second.len(), 1);
    assert!(is_benchmark(&second[0]));
    // Twice as fast this time: the average of two samples.
    world.now += 200;
    world.engine_send(&mut engine, vec![status(&second[0], AssignmentState::Succeeded, Some(answer(&second[0])), 125)]);
    let profile = profile_of(&mut world, &engine);
    assert_eq!(profile.cpu_gflops.unwrap().samples, 2);
    assert!((profile.measured_gflops().unwrap() - 1.5 * first).abs() < 1e-12 * first);
    let counts = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap().counts) }).unwrap();
    assert_eq!((counts.succeeded, counts.total()), (1, 1));
}

#[test]
fn a_benchmark_lost_without_an_answer_is_sent_again_later() {
    let mut world = world();
    let (mut engine, assignments) = announced_engine(&mut world, 1);
    let benchmark = &assignments[0];
    world.engine_send(&mut engine, vec![status(benchmark, AssignmentState::Suspended, None, 10)]);
    assert_eq!(profile_of(&mut world, &engine).measured_gflops(), None);
    world.maintain();
    assert!(tests::assignments(&mut world, &mut engine).is_empty(), "not at once");
    world.now += BENCHMARK_RETRY_MS;
    world.engine_send(&mut engine, vec![ProviderToServer::Heartbeat]);
    assert!(tests::assignments(&mut world, &mut engine).is_empty(), "a heartbeat places nothing");
    world.maintain();
    let again = tests::assignments(&mut world, &mut engine);
    assert!(again.len() == 1 && is_benchmark(&again[0]), "{again:?}");
    // The engine falls silent: the benchmark is reclaimed like any task, and sent again to the
    // engine when it is back and the retry delay has passed.
    world.now += world.coordinator.config().provider_silence_ms_max + 1;
    world.maintain();
    world.now += BENCHMARK_RETRY_MS;
    world.engine_send(&mut engine, vec![node_status(1)]);
    let third: Vec<Assignment> = tests::assignments(&mut world, &mut engine).into_iter().filter(is_benchmark).collect();
    assert_eq!(third.len(), 1);
    assert_ne!(third[0].assignment, again[0].assignment);
    world.engine_send(&mut engine, vec![status(&third[0], AssignmentState::Succeeded, Some(answer(&third[0])), 50)]);
    assert!(profile_of(&mut world, &engine).measured_gflops().is_some());
}

#[test]
fn the_benchmark_tasks_are_made_once_per_database() {
    let store = SqliteStore::open_in_memory().unwrap();
    let first = store.write(|tx| Coordinator::new(config(), tx)).unwrap();
    let again = store.write(|tx| Coordinator::new(config(), tx)).unwrap();
    assert_eq!(first.benchmark, again.benchmark, "loaded, not made again");
    let off = store.write(|tx| Coordinator::new(CoordinatorConfig::default(), tx)).unwrap();
    assert_eq!(off.benchmark, first.benchmark, "still known with benchmarks off");
    let bigger =
        store.write(|tx| Coordinator::new(CoordinatorConfig { benchmark_size: SIZE + 1, ..config() }, tx)).unwrap();
    let (old, new) = (first.benchmark.unwrap(), bigger.benchmark.clone().unwrap());
    assert_ne!(old.job, new.job, "another size: new tasks");
    assert_eq!(new.size, SIZE + 1);
    let gone = store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(old.job)?.is_none()) }).unwrap();
    assert!(gone, "the old tasks were removed");
    // Without benchmarks ever, nothing is made.
    let fresh = SqliteStore::open_in_memory().unwrap();
    let none = fresh.write(|tx| Coordinator::new(CoordinatorConfig::default(), tx)).unwrap();
    assert!(none.benchmark.is_none() && none.benchmark_module().is_none());
}

#[test]
fn a_seeded_random_source_makes_the_coordinators_draws_repeatable() {
    let benchmark_params = |seed: u64| -> Vec<Vec<u8>> {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .write(|tx| -> Result<_, CoordinatorError> {
                let random = Box::new(idlegrid_random::Xoshiro256StarStar::from_seed(seed));
                let coordinator = Coordinator::with_random_source(config(), tx, random)?;
                let mut params = Vec::new();
                for task in &coordinator.benchmark.as_ref().expect("benchmarks are on").tasks {
                    params.push(tx.task_by_key(task.key)?.expect("benchmark task stored").params);
                }
                Ok(params)
            })
            .unwrap()
    };
    let first = benchmark_params(3);
    assert!(first.len() > 1);
    assert_eq!(first, benchmark_params(3), "the same seed draws the same benchmark inputs");
    assert_ne!(first, benchmark_params(4), "another seed draws others");
}
