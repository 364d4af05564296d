//! The coordinator driven directly, against an in-memory SQLite store and a hand-set clock.
//! `World` and its helpers also serve the other test modules of the crate.

use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::*;
use idlegrid_protocol::wire::{Envelope, PostBatch, PostReply, RegisterRequest};
use idlegrid_protocol::{ErrorCode, Payload};
use idlegrid_store::{SqliteStore, Store};
use idlegrid_types::*;
use serde::de::DeserializeOwned;

use crate::*;

pub(crate) struct World {
    pub store: SqliteStore,
    pub coordinator: Coordinator,
    pub now: u64,
}

/// One party's end of a channel, as a well-behaved client library would keep it.
pub(crate) struct Peer {
    pub party: Party,
    pub session: SessionId,
    pub next_seq: u64,
    pub received: u64,
}

impl World {
    pub fn new() -> World {
        Self::with(CoordinatorConfig::default())
    }

    pub fn with(config: CoordinatorConfig) -> World {
        let store = SqliteStore::open_in_memory().unwrap();
        let coordinator = store.write(|tx| Coordinator::new(config, tx)).unwrap();
        World { store, coordinator, now: 1_000_000 }
    }

    pub fn join(&mut self, role: Role) -> Peer {
        let identity = Identity::generate();
        let request = RegisterRequest { role, public_key: identity.public_key_hex(), name: "t".into(), csr: None };
        let (c, now) = (&self.coordinator, self.now);
        let response = self.store.write(|tx| c.register(tx, &request, now)).unwrap();
        let party = Party { id: response.id, role };
        let mut fx = Effects::default();
        let info = self.store.write(|tx| c.open_session(tx, &party, None, now, &mut fx)).unwrap();
        Peer { party, session: info.session, next_seq: 1, received: 0 }
    }

    pub fn client_send(&mut self, peer: &mut Peer, messages: Vec<ClientToServer>) -> PostReply {
        let batch = envelopes(peer, messages);
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.post_client(tx, &peer.party, peer.session, batch, now, &mut fx)).unwrap()
    }

    pub fn engine_send(&mut self, peer: &mut Peer, messages: Vec<ProviderToServer>) -> PostReply {
        let batch = envelopes(peer, messages);
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.post_provider(tx, &peer.party, peer.session, batch, now, &mut fx)).unwrap()
    }

    /// Acknowledge what was received and fetch what follows.
    pub fn poll<M: DeserializeOwned>(&mut self, peer: &mut Peer) -> Vec<(Option<u64>, M)> {
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        let rows = self
            .store
            .write(|tx| c.poll(tx, &peer.party, peer.session, peer.received, peer.received, 10_000, now, &mut fx))
            .unwrap();
        if let Some(last) = rows.last() {
            peer.received = last.seq;
        }
        rows.into_iter().map(|r| (r.reply_to, serde_json::from_str(&r.body).unwrap())).collect()
    }

    pub fn upload(&mut self, peer: &Peer, bytes: &[u8], kind: ElementKind) -> ElementHash {
        let hash = ElementHash::of(bytes);
        let (c, now) = (&self.coordinator, self.now);
        self.store.write(|tx| c.element_stored(tx, &peer.party, &hash, bytes.len() as u64, kind, "e", now)).unwrap();
        hash
    }

    pub fn maintain(&mut self) -> schedule::MaintenanceReport {
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.maintain(tx, now, &mut fx)).unwrap()
    }
}

/// A client asks for a deposit over its channel; returns the request's number.
pub(crate) fn request_deposit(world: &mut World, client: &mut Peer, amount_micros: i64, reference: &str) -> u64 {
    world.client_send(client, vec![ClientToServer::Deposit { amount_micros, reference: reference.into() }]);
    let replies = world.poll::<ServerToClient>(client);
    replies
        .iter()
        .find_map(|(_, m)| match m {
            ServerToClient::MoneyRequest(info) => Some(info.id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no request in {replies:?}"))
}

/// An operator approves a request.
pub(crate) fn approve(world: &mut World, request: u64) -> MoneyRequestInfo {
    let (c, now) = (&world.coordinator, world.now);
    let operator = crate::requests::Decider::Operator(PartyId::from_public_key(&[0xee; 32]));
    let mut fx = Effects::default();
    world
        .store
        .write(|tx| c.decide_request(tx, &operator, request, crate::requests::Decision::Approve, "", now, &mut fx))
        .unwrap()
}

fn envelopes<M>(peer: &mut Peer, messages: Vec<M>) -> PostBatch<M> {
    let messages = messages
        .into_iter()
        .map(|message| {
            let seq = peer.next_seq;
            peer.next_seq += 1;
            Envelope { seq, reply_to: None, message }
        })
        .collect();
    PostBatch { ack: None, messages }
}

fn specs(exe: ElementHash, range: std::ops::Range<u64>) -> Vec<TaskSpec> {
    range
        .map(|index| TaskSpec {
            index,
            executable: exe,
            data: Default::default(),
            params: format!("n={index}").into_bytes(),
            priority: None,
        })
        .collect()
}

fn engine_ready(world: &mut World, engine: &mut Peer, capacity: u32) {
    world.engine_send(
        engine,
        vec![ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: capacity }],
    );
}

pub(crate) fn assignments(world: &mut World, engine: &mut Peer) -> Vec<Assignment> {
    world
        .poll::<ServerToProvider>(engine)
        .into_iter()
        .filter_map(|(_, m)| match m {
            ServerToProvider::Task(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn succeed(a: &Assignment) -> ProviderToServer {
    ProviderToServer::TaskStatus(AssignmentStatus {
        assignment: a.assignment,
        state: AssignmentState::Succeeded,
        progress: 1.0,
        status: None,
        result: Some(Payload::Inline(a.params.clone())),
        failure: None,
        checkpoint: None,
        cpu_ms: 5,
        trace: None,
    })
}

fn final_statuses(messages: &[(Option<u64>, ServerToClient)]) -> Vec<TaskStatusReport> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            ServerToClient::TaskStatus(r) if r.state.is_final() => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Client with a launched job of `n` tasks and an attached session.
pub(crate) fn launched_job(world: &mut World, n: u64) -> (Peer, JobId, ElementHash) {
    launched_job_with(world, n, JobProperties::default())
}

/// The same, with the job's properties given.
pub(crate) fn launched_job_with(world: &mut World, n: u64, properties: JobProperties) -> (Peer, JobId, ElementHash) {
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"\0asm fake", ElementKind::Executable);
    let job = JobId::random();
    world.client_send(
        &mut client,
        vec![
            ClientToServer::CreateJob { job, properties },
            ClientToServer::Task { job, tasks: specs(exe, 0..n) },
            ClientToServer::Attach { job, replay: Replay::Undelivered, task: None, interim: None },
            ClientToServer::Launch { job },
        ],
    );
    (client, job, exe)
}

#[test]
fn a_job_runs_end_to_end_and_every_result_reaches_the_client_once() {
    let mut world = World::new();
    let (mut client, job, _) = launched_job(&mut world, 10);
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 4);
    let mut results = Vec::new();
    let mut completed = false;
    for _ in 0..10 {
        let batch = assignments(&mut world, &mut engine);
        assert!(batch.len() <= 4, "never more than the engine asked for");
        let done: Vec<ProviderToServer> = batch.iter().map(succeed).collect();
        if !done.is_empty() {
            world.engine_send(&mut engine, done);
        }
        let messages = world.poll::<ServerToClient>(&mut client);
        results.extend(final_statuses(&messages));
        completed |= messages
            .iter()
            .any(|(_, m)| matches!(m, ServerToClient::JobProperties(info) if info.state == JobState::Completed));
    }
    let mut indexes: Vec<u64> = results.iter().map(|r| r.task).collect();
    indexes.sort();
    assert_eq!(indexes, (0..10).collect::<Vec<_>>(), "each task's result exactly once");
    for r in &results {
        assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())));
    }
    assert!(completed, "the client is told the job completed");
    // A second session attaching for undelivered results finds none: all were acknowledged.
    world.poll::<ServerToClient>(&mut client);
    let mut other = Peer { session: SessionId::random(), ..world.join(Role::Client) };
    other.party = client.party.clone();
    let (c, now) = (&world.coordinator, world.now);
    let mut fx = Effects::default();
    other.session = world.store.write(|tx| c.open_session(tx, &client.party, None, now, &mut fx)).unwrap().session;
    world.client_send(
        &mut other,
        vec![ClientToServer::Attach { job, replay: Replay::Undelivered, task: None, interim: None }],
    );
    assert!(final_statuses(&world.poll::<ServerToClient>(&mut other)).is_empty());
    world.client_send(&mut other, vec![ClientToServer::Attach { job, replay: Replay::All, task: None, interim: None }]);
    assert_eq!(
        final_statuses(&world.poll::<ServerToClient>(&mut other)).len(),
        10,
        "replay all gives every result again"
    );
}

#[test]
fn retransmitted_messages_are_processed_once_and_gaps_wait() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"exe", ElementKind::Executable);
    let job = JobId::random();
    let create = ClientToServer::CreateJob { job, properties: JobProperties::default() };
    let add = ClientToServer::Task { job, tasks: specs(exe, 0..3) };
    let reply = world.client_send(&mut client, vec![create, add.clone()]);
    assert_eq!(reply.inbound_acked, 2);
    // The same batch again (the reply was lost): nothing happens twice.
    client.next_seq = 1;
    let again = world.client_send(&mut client, vec![ClientToServer::GetContents, add.clone()]);
    assert_eq!(again.inbound_acked, 2);
    // A gap: message 4 before 3 is not processed.
    client.next_seq = 4;
    let gap = world.client_send(&mut client, vec![ClientToServer::Launch { job }]);
    assert_eq!(gap.inbound_acked, 2);
    let messages = world.poll::<ServerToClient>(&mut client);
    let errors = messages.iter().filter(|(_, m)| matches!(m, ServerToClient::Error(_))).count();
    assert_eq!(errors, 0, "the duplicate Task batch was skipped, not refused as a conflict");
    let (c, now) = (&world.coordinator, world.now);
    let counts = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap().counts) }).unwrap();
    let _ = (c, now);
    assert_eq!(counts.created, 3);
}

#[test]
fn bad_requests_get_error_replies_naming_the_problem() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let unknown = JobId::random();
    let missing = ElementHash::of(b"never uploaded");
    let job = JobId::random();
    let mut bad_props = JobProperties::default();
    bad_props.task_limits.cpu_seconds_max = 0;
    world.client_send(
        &mut client,
        vec![
            ClientToServer::Launch { job: unknown },
            ClientToServer::CreateJob { job, properties: bad_props },
            ClientToServer::CreateJob { job, properties: JobProperties::default() },
            ClientToServer::Task { job, tasks: specs(missing, 0..1) },
        ],
    );
    let replies = world.poll::<ServerToClient>(&mut client);
    let errors: Vec<(u64, ErrorReport)> = replies
        .into_iter()
        .filter_map(|(to, m)| match m {
            ServerToClient::Error(e) => Some((to.unwrap(), e)),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1.code), (1, ErrorCode::UnknownJob));
    assert!(errors[1].1.message.contains("task_limits.cpu_seconds_max"));
    assert_eq!(errors[2].1.code, ErrorCode::UnknownElement);
    assert!(errors[2].1.message.contains(&missing.to_string()));
}

#[test]
fn a_clients_stored_bytes_and_elements_are_held_to_its_quota() {
    let mut world = World::with(CoordinatorConfig {
        client_storage_bytes_max: 100,
        client_elements_max: 2,
        ..CoordinatorConfig::default()
    });
    let (client, provider) = (world.join(Role::Client), world.join(Role::Provider));
    let store = |world: &World, peer: &Peer, bytes: &[u8]| {
        let (c, hash) = (&world.coordinator, ElementHash::of(bytes));
        world.store.write(|tx| c.element_stored(tx, &peer.party, &hash, bytes.len() as u64, ElementKind::Data, "", 0))
    };
    let allowance = |world: &World, peer: &Peer, bytes: &[u8]| {
        let c = &world.coordinator;
        world.store.write(|tx| c.upload_allowance(tx, &peer.party, &ElementHash::of(bytes)))
    };
    assert_eq!(allowance(&world, &client, b"a").unwrap().bytes_max, 100, "the quota binds before the element limit");
    store(&world, &client, &[1; 60]).unwrap();
    assert_eq!(allowance(&world, &client, b"b").unwrap().bytes_max, 40);
    let error = store(&world, &client, &[2; 41]).unwrap_err();
    assert_eq!(error.kind, ErrorKind::TooLarge);
    assert!(error.report.message.contains("stores 60 bytes in 1 elements"), "{}", error.report.message);
    store(&world, &client, &[1; 60]).expect("an element the client holds costs nothing again");
    store(&world, &client, &[3; 40]).unwrap();
    let error = allowance(&world, &client, b"c").unwrap_err();
    assert!(error.report.message.contains("quota is 100 bytes and 2 elements"), "{}", error.report.message);
    assert_eq!(
        world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.element_usage(&client.party.id)?) }).unwrap(),
        idlegrid_store::ElementUsage { bytes: 100, elements: 2 },
        "the refused upload was not counted"
    );
    // Engines' results are not a client's storage.
    store(&world, &provider, &[4; 500]).unwrap();
}

#[test]
fn jobs_per_client_and_tasks_per_job_are_limited_and_a_retry_is_not_counted_twice() {
    let mut world =
        World::with(CoordinatorConfig { jobs_per_client_max: 2, tasks_per_job_max: 5, ..CoordinatorConfig::default() });
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"exe", ElementKind::Executable);
    let (a, b, c) = (JobId::random(), JobId::random(), JobId::random());
    let create = |job| ClientToServer::CreateJob { job, properties: JobProperties::default() };
    world.client_send(&mut client, vec![create(a), create(b), create(a), create(c)]);
    world.client_send(
        &mut client,
        vec![
            ClientToServer::Task { job: a, tasks: specs(exe, 0..4) },
            ClientToServer::Task { job: a, tasks: specs(exe, 4..6) },
        ],
    );
    let errors: Vec<ErrorReport> = world
        .poll::<ServerToClient>(&mut client)
        .into_iter()
        .filter_map(|(_, m)| match m {
            ServerToClient::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "the re-creation of job a is a retry, not a third job: {errors:?}");
    assert_eq!(errors[0].code, ErrorCode::LimitExceeded);
    assert!(
        errors[0].message.contains(&c.to_string()) && errors[0].message.contains("at most 2 jobs"),
        "{}",
        errors[0].message
    );
    assert!(errors[1].message.contains("limit of 5 tasks per job"), "{}", errors[1].message);
    let held =
        world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(a)?.unwrap().counts.total()) }).unwrap();
    assert_eq!(held, 4, "the batch over the limit added nothing");
    assert!(world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(c)?.is_none()) }).unwrap());
}

#[test]
fn another_clients_job_is_invisible() {
    let mut world = World::new();
    let (_owner, job, _) = launched_job(&mut world, 2);
    let mut intruder = world.join(Role::Client);
    world.client_send(&mut intruder, vec![ClientToServer::GetJobProperties { job }, ClientToServer::RemoveJob { job }]);
    let replies = world.poll::<ServerToClient>(&mut intruder);
    assert!(replies.iter().all(|(_, m)| matches!(m, ServerToClient::Error(e) if e.code == ErrorCode::UnknownJob)));
    assert_eq!(replies.len(), 2);
    assert!(
        world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.is_some()) }).unwrap(),
        "nothing was removed"
    );
}

#[test]
fn a_silent_engines_tasks_move_to_another_engine() {
    let mut world = World::new();
    let (mut client, _job, _) = launched_job(&mut world, 3);
    let mut first = world.join(Role::Provider);
    engine_ready(&mut world, &mut first, 8);
    assert_eq!(assignments(&mut world, &mut first).len(), 3);
    world.now += world.coordinator.config().provider_silence_ms_max + 1;
    let mut second = world.join(Role::Provider);
    engine_ready(&mut world, &mut second, 8);
    assert!(assignments(&mut world, &mut second).is_empty(), "not before the silence is noticed");
    let report = world.maintain();
    assert_eq!(report.assignments_reclaimed, 3);
    let moved = assignments(&mut world, &mut second);
    assert_eq!(moved.len(), 3);
    world.engine_send(&mut second, moved.iter().map(succeed).collect());
    assert_eq!(final_statuses(&world.poll(&mut client)).len(), 3);
    // The first engine comes back and reports late results: ignored, and told to drop them.
    let stale = assignments(&mut world, &mut first);
    assert!(stale.is_empty());
    let old = world.poll::<ServerToProvider>(&mut first);
    assert!(old.iter().all(|(_, m)| matches!(m, ServerToProvider::RemoveTask { .. })));
}

#[test]
fn the_first_result_wins() {
    let mut world = World::new();
    let (mut client, _job, _) = launched_job(&mut world, 1);
    let mut first = world.join(Role::Provider);
    engine_ready(&mut world, &mut first, 1);
    let a = assignments(&mut world, &mut first).remove(0);
    world.now += world.coordinator.config().provider_silence_ms_max + 1;
    let mut second = world.join(Role::Provider);
    engine_ready(&mut world, &mut second, 1);
    world.maintain();
    let b = assignments(&mut world, &mut second).remove(0);
    assert_ne!(a.assignment, b.assignment);
    world.engine_send(&mut first, vec![succeed(&a)]);
    world.engine_send(&mut second, vec![succeed(&b)]);
    assert_eq!(final_statuses(&world.poll(&mut client)).len(), 1);
    let told = world.poll::<ServerToProvider>(&mut second);
    assert!(
        told.iter()
            .any(|(_, m)| matches!(m, ServerToProvider::RemoveTask { assignment } if *assignment == b.assignment))
    );
}

#[test]
fn a_task_is_given_up_after_attempts_max_losses() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"exe", ElementKind::Executable);
    let job = JobId::random();
    let properties = JobProperties { attempts_max: 2, ..JobProperties::default() };
    world.client_send(
        &mut client,
        vec![
            ClientToServer::CreateJob { job, properties },
            ClientToServer::Task { job, tasks: specs(exe, 0..1) },
            ClientToServer::Attach { job, replay: Replay::Undelivered, task: None, interim: None },
            ClientToServer::Launch { job },
        ],
    );
    for _ in 0..2 {
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 1);
        assert_eq!(assignments(&mut world, &mut engine).len(), 1);
        world.now += world.coordinator.config().provider_silence_ms_max + 1;
        world.maintain();
    }
    let results = final_statuses(&world.poll(&mut client));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].failure.as_ref().unwrap().kind, FailureKind::AttemptsExhausted);
}

#[test]
fn stop_hands_tasks_back_and_resume_restarts_them_from_the_checkpoint() {
    let mut world = World::new();
    let (mut client, job, _) = launched_job(&mut world, 2);
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 1);
    let a = assignments(&mut world, &mut engine).remove(0);
    world.client_send(&mut client, vec![ClientToServer::Stop { job, task: None }]);
    let told = world.poll::<ServerToProvider>(&mut engine);
    assert!(
        told.iter().any(|(_, m)| matches!(m, ServerToProvider::Stop { assignment } if *assignment == a.assignment))
    );
    let checkpoint = world.upload(&engine, b"halfway", ElementKind::Data);
    world.engine_send(
        &mut engine,
        vec![ProviderToServer::TaskStatus(AssignmentStatus {
            assignment: a.assignment,
            state: AssignmentState::Suspended,
            progress: 0.5,
            status: None,
            result: None,
            failure: None,
            checkpoint: Some(ElementRef { hash: checkpoint, size: 7 }),
            cpu_ms: 10,
            trace: None,
        })],
    );
    assert!(assignments(&mut world, &mut engine).is_empty(), "a stopped job gets no engine");
    let info = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
    assert_eq!((info.state, info.counts.stopped), (JobState::Stopped, 2));
    world.client_send(&mut client, vec![ClientToServer::Resume { job, task: None }]);
    let again = assignments(&mut world, &mut engine);
    assert_eq!(again.len(), 1);
    // The stopped task is the oldest of equal priority, so it is placed first.
    assert_eq!(again[0].params, a.params);
    assert_eq!(again[0].checkpoint.map(|c| c.hash), Some(checkpoint), "the restart carries the checkpoint");
}

#[test]
fn removing_a_job_tells_engines_and_deletes_everything() {
    let mut world = World::new();
    let (mut client, job, _) = launched_job(&mut world, 2);
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 2);
    let held = assignments(&mut world, &mut engine);
    world.client_send(&mut client, vec![ClientToServer::RemoveJob { job }]);
    let told: Vec<_> = world.poll::<ServerToProvider>(&mut engine);
    assert_eq!(told.iter().filter(|(_, m)| matches!(m, ServerToProvider::RemoveTask { .. })).count(), held.len());
    assert!(world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.is_none()) }).unwrap());
    // Its elements become garbage once the grace period passes (the client still owns the
    // executable, so only after it removes that too).
    world.client_send(
        &mut client,
        vec![ClientToServer::RemoveExecutableElement { hash: ElementHash::of(b"\0asm fake") }],
    );
    world.now += world.coordinator.config().element_grace_ms + 1;
    assert_eq!(world.maintain().elements_deleted, 1);
}

#[test]
fn results_flow_within_the_window_and_wait_for_acks() {
    let config = CoordinatorConfig { client_window_messages: 5, ..CoordinatorConfig::default() };
    let mut world = World::with(config);
    let (mut client, _job, _) = launched_job(&mut world, 12);
    world.poll::<ServerToClient>(&mut client); // replies to the setup messages
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 12);
    let all = assignments(&mut world, &mut engine);
    world.engine_send(&mut engine, all.iter().map(succeed).collect());
    let mut seen = 0;
    for _ in 0..5 {
        let batch = final_statuses(&world.poll(&mut client));
        assert!(batch.len() <= 5, "never more than the window in flight");
        seen += batch.len();
    }
    assert_eq!(seen, 12);
}

#[test]
fn a_new_engine_session_gets_its_active_tasks_again() {
    let mut world = World::new();
    let (_client, _job, _) = launched_job(&mut world, 2);
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 2);
    let before: Vec<AssignmentId> = assignments(&mut world, &mut engine).iter().map(|a| a.assignment).collect();
    let (c, now) = (&world.coordinator, world.now);
    let mut fx = Effects::default();
    let info = world.store.write(|tx| c.open_session(tx, &engine.party, None, now, &mut fx)).unwrap();
    let mut fresh = Peer { party: engine.party.clone(), session: info.session, next_seq: 1, received: 0 };
    let after: Vec<AssignmentId> = assignments(&mut world, &mut fresh).iter().map(|a| a.assignment).collect();
    assert_eq!(before, after);
    // The engine reports that it holds only the first: the second goes back to the queue.
    world.engine_send(
        &mut fresh,
        vec![ProviderToServer::Contents { tasks: vec![(before[0], AssignmentState::Running)], request: None }],
    );
    let reassigned = assignments(&mut world, &mut fresh);
    assert_eq!(reassigned.len(), 1, "the lost task is placed again");
    assert_ne!(reassigned[0].assignment, before[1]);
}

#[test]
fn engines_need_a_ticket_for_elements_of_their_own_tasks() {
    let mut world = World::new();
    let (client, _job, exe) = launched_job(&mut world, 1);
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 1);
    let a = assignments(&mut world, &mut engine).remove(0);
    let other = world.join(Role::Provider);
    let stranger = world.join(Role::Client);
    let (c, now) = (&world.coordinator, world.now);
    let check = |party: &Party, hash: &ElementHash, ticket: Option<&str>| {
        world.store.write(|tx| c.authorize_download(tx, party, hash, ticket, now))
    };
    assert_eq!(check(&engine.party, &exe, Some(&a.ticket)).unwrap(), 9);
    assert_eq!(
        check(&other.party, &exe, Some(&a.ticket)).unwrap_err().kind,
        ErrorKind::Forbidden,
        "a ticket names its engine"
    );
    assert_eq!(check(&engine.party, &exe, None).unwrap_err().kind, ErrorKind::Forbidden);
    let foreign = ElementHash::of(b"someone else's");
    world.store.write(|tx| tx.insert_element(&foreign, 1, 0)).unwrap();
    let check = |party: &Party, hash: &ElementHash, ticket: Option<&str>| {
        world.store.write(|tx| c.authorize_download(tx, party, hash, ticket, now))
    };
    assert_eq!(
        check(&engine.party, &foreign, Some(&a.ticket)).unwrap_err().kind,
        ErrorKind::Forbidden,
        "only the task's elements"
    );
    let later = now + c.config().ticket_ttl_ms + 1;
    let expired = world.store.write(|tx| c.authorize_download(tx, &engine.party, &exe, Some(&a.ticket), later));
    assert_eq!(expired.unwrap_err().kind, ErrorKind::Forbidden, "an expired ticket");
    assert_eq!(check(&client.party, &exe, None).unwrap(), 9, "the owner may read its element");
    assert_eq!(check(&stranger.party, &exe, None).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn higher_priority_tasks_are_placed_first_then_oldest_first() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"exe", ElementKind::Executable);
    let (low, high) = (JobId::random(), JobId::random());
    world.client_send(
        &mut client,
        vec![
            ClientToServer::CreateJob {
                job: low,
                properties: JobProperties { priority: 0, ..JobProperties::default() },
            },
            ClientToServer::CreateJob {
                job: high,
                properties: JobProperties { priority: 5, ..JobProperties::default() },
            },
            ClientToServer::Task { job: low, tasks: specs(exe, 0..3) },
            ClientToServer::Task { job: high, tasks: specs(exe, 0..3) },
            ClientToServer::Launch { job: low },
            ClientToServer::Launch { job: high },
        ],
    );
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 4);
    let first = assignments(&mut world, &mut engine);
    assert_eq!(first.iter().map(|a| a.priority).collect::<Vec<_>>(), vec![5, 5, 5, 0]);
    assert_eq!(first[3].params, b"n=0", "among equals, the oldest first");
    let priority_of_task = |n: u64| TaskSpec { priority: Some(9), ..specs(exe, n..n + 1).remove(0) };
    world.client_send(&mut client, vec![ClientToServer::Task { job: low, tasks: vec![priority_of_task(7)] }]);
    world.engine_send(&mut engine, vec![succeed(&first[0])]);
    let next = assignments(&mut world, &mut engine);
    assert_eq!(
        (next[0].priority, next[0].params.clone()),
        (9, b"n=7".to_vec()),
        "a task may override its job's priority"
    );
}

#[test]
fn assignments_are_signed_with_the_key_given_at_registration() {
    let mut world = World::new();
    let (_client, _job, _) = launched_job(&mut world, 1);
    let identity = Identity::generate();
    let request =
        RegisterRequest { role: Role::Provider, public_key: identity.public_key_hex(), name: "e".into(), csr: None };
    let (c, now) = (&world.coordinator, world.now);
    let registered = world.store.write(|tx| c.register(tx, &request, now)).unwrap();
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 1);
    let assignment = assignments(&mut world, &mut engine).remove(0);
    idlegrid_protocol::auth::verify_bytes(&registered.server_key, &assignment.signed_bytes(), &assignment.signature)
        .unwrap();
    let forged = Assignment { params: b"rm -rf /".to_vec(), ..assignment.clone() };
    assert!(
        idlegrid_protocol::auth::verify_bytes(&registered.server_key, &forged.signed_bytes(), &forged.signature)
            .is_err()
    );
}

mod money {
    use super::*;
    use idlegrid_ledger::{AccountId, Ledger, Micros};

    fn billing_world(increment_ms: u64, overdraft: Option<i64>) -> World {
        let mut config = CoordinatorConfig::default();
        config.pricing.increment_ms = increment_ms;
        config.client_overdraft_max_micros = overdraft;
        World::with(config)
    }

    fn balance(world: &World, party: &PartyId) -> i64 {
        world
            .store
            .write(|tx| -> Result<i64, CoordinatorError> {
                let account = Ledger::new(tx.ledger()).account(&AccountId::Party(party.clone())).unwrap();
                Ok(account.balance_posted().unwrap().as_i64())
            })
            .unwrap()
    }

    fn balanced(world: &World) -> bool {
        world
            .store
            .write(|tx| -> Result<bool, CoordinatorError> { Ok(Ledger::new(tx.ledger()).check_balanced().is_ok()) })
            .unwrap()
    }

    /// Run a job of `n` tasks for `ms` of simulated time on one engine, with results.
    fn run_job(
        world: &mut World,
        client: &mut Peer,
        engine: &mut Peer,
        exe: ElementHash,
        properties: JobProperties,
        n: u64,
        ms: u64,
    ) -> JobId {
        let job = JobId::random();
        world.client_send(
            client,
            vec![
                ClientToServer::CreateJob { job, properties },
                ClientToServer::Task { job, tasks: specs(exe, 0..n) },
                ClientToServer::Launch { job },
            ],
        );
        let held = assignments(world, engine);
        world.now += ms;
        world.engine_send(engine, held.iter().map(succeed).collect());
        job
    }

    #[test]
    fn work_is_billed_once_after_its_increment_and_the_ledger_balances() {
        let mut world = billing_world(60_000, Some(1_000_000_000));
        let mut client = world.join(Role::Client);
        let exe = world.upload(&client, b"exe", ElementKind::Executable);
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 4);
        world.now = world.now - world.now % 60_000 + 60_000 + 1_000;
        run_job(&mut world, &mut client, &mut engine, exe, JobProperties::default(), 4, 30_000);
        assert_eq!(balance(&world, &client.party.id), 0, "nothing is billed before the increment closes");
        world.now += 60_000;
        let first = world.maintain();
        assert!(first.transfers_billed > 0);
        let charged = -balance(&world, &client.party.id);
        let paid = balance(&world, &engine.party.id);
        assert!(charged > 0 && paid > 0, "client charged {charged}, provider paid {paid}");
        assert!(charged > paid, "the platform keeps a margin");
        assert!(balanced(&world));
        // Another pass, and a pass after time moves on, charge nothing more for the same work.
        world.maintain();
        world.now += 5 * 60_000;
        world.maintain();
        assert_eq!(-balance(&world, &client.party.id), charged);
        assert_eq!(balance(&world, &engine.party.id), paid);
    }

    #[test]
    fn a_crash_between_journaling_and_billing_charges_once() {
        let mut world = billing_world(60_000, None);
        let mut client = world.join(Role::Client);
        let exe = world.upload(&client, b"exe", ElementKind::Executable);
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 2);
        world.now = world.now - world.now % 60_000 + 60_000 + 1_000;
        run_job(&mut world, &mut client, &mut engine, exe, JobProperties::default(), 2, 20_000);
        world.now += 2 * 60_000;
        // The billing transaction fails half way (a crash): nothing of it stays.
        let (c, now) = (&world.coordinator, world.now);
        let crashed: Result<(), CoordinatorError> = world.store.write(|tx| {
            let mut fx = Effects::default();
            c.bill(tx, now, &mut fx)?;
            Err(CoordinatorError::internal("the process died"))
        });
        assert!(crashed.is_err());
        assert_eq!(balance(&world, &client.party.id), 0, "a rolled-back pass moved no money");
        world.maintain();
        let charged = -balance(&world, &client.party.id);
        assert!(charged > 0);
        world.maintain();
        assert_eq!(-balance(&world, &client.party.id), charged, "charged exactly once");
        assert!(balanced(&world));
    }

    #[test]
    fn a_job_stops_at_its_maximum_cost() {
        let mut world = billing_world(60_000, None);
        let mut client = world.join(Role::Client);
        let exe = world.upload(&client, b"exe", ElementKind::Executable);
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 1);
        world.now = world.now - world.now % 60_000 + 60_000 + 1_000;
        let job = JobId::random();
        // Less than one increment's base price (4.5 per hour, a quarter of it is 1.125 for 15
        // minutes; here an increment is a minute: 0.075).
        let properties = JobProperties { cost_max_micros: Some(50_000), ..JobProperties::default() };
        world.client_send(
            &mut client,
            vec![
                ClientToServer::CreateJob { job, properties },
                ClientToServer::Task { job, tasks: specs(exe, 0..3) },
                ClientToServer::Launch { job },
            ],
        );
        assert_eq!(assignments(&mut world, &mut engine).len(), 1);
        world.now += 3 * 60_000;
        world.poll::<ServerToProvider>(&mut engine); // the engine is alive and working
        world.maintain();
        let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
        assert_eq!((row.state, row.hold.as_deref()), (JobState::Stopped, Some(crate::money::HOLD_COST_MAX)));
        assert!(-balance(&world, &client.party.id) <= 50_000, "never past the maximum");
        assert!(balanced(&world));
        let told = world.poll::<ServerToProvider>(&mut engine);
        assert!(told.iter().any(|(_, m)| matches!(m, ServerToProvider::Stop { .. })), "the engine was told to stop");
    }

    #[test]
    fn a_client_over_its_limit_is_held_until_it_pays() {
        let mut world = billing_world(60_000, Some(10_000));
        let mut client = world.join(Role::Client);
        world.client_send(
            &mut client,
            vec![ClientToServer::SetNotices {
                webhook_url: Some("https://hooks.example.com/hook".into()),
                webhook_secret: Some("s".into()),
                email: None,
            }],
        );
        let exe = world.upload(&client, b"exe", ElementKind::Executable);
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 1);
        world.now = world.now - world.now % 60_000 + 60_000 + 1_000;
        let job = JobId::random();
        world.client_send(
            &mut client,
            vec![
                ClientToServer::CreateJob { job, properties: JobProperties::default() },
                ClientToServer::Task { job, tasks: specs(exe, 0..3) },
                ClientToServer::Launch { job },
            ],
        );
        assignments(&mut world, &mut engine);
        world.now += 3 * 60_000;
        world.maintain();
        let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
        assert_eq!(row.hold.as_deref(), Some(crate::money::HOLD_ACCOUNT_LIMIT));
        let notices = world.store.write(|tx| tx.due_notices(u64::MAX, 10)).unwrap();
        assert!(notices.iter().any(|n| n.channel == "webhook" && n.body.contains("\"stopped\"")), "{notices:?}");
        // A new job is refused while over the limit.
        let refused = JobId::random();
        world.client_send(
            &mut client,
            vec![
                ClientToServer::CreateJob { job: refused, properties: JobProperties::default() },
                ClientToServer::Task { job: refused, tasks: specs(exe, 0..1) },
                ClientToServer::Launch { job: refused },
            ],
        );
        let replies = world.poll::<ServerToClient>(&mut client);
        assert!(
            replies.iter().any(|(_, m)| matches!(m, ServerToClient::Error(e) if e.code == ErrorCode::LimitExceeded))
        );
        // A deposit request alone is no payment: the job stays held.
        let request = request_deposit(&mut world, &mut client, 5_000_000, "pay-1");
        assert_eq!(
            request_deposit(&mut world, &mut client, 5_000_000, "pay-1"),
            request,
            "a retry is the same request"
        );
        let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
        assert_eq!(row.hold.as_deref(), Some(crate::money::HOLD_ACCOUNT_LIMIT));
        // The operator approves it (twice): the account is current and the held job resumes.
        approve(&mut world, request);
        approve(&mut world, request);
        let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
        assert_eq!((row.state, row.hold), (JobState::Running, None));
        let account = world.store.write(|tx| world.coordinator.account_info(tx, &client.party.id)).unwrap();
        assert!(!account.over_limit);
        assert!(account.balance_micros < 5_000_000, "the retried deposit counted once: {account:?}");
        assert!(balanced(&world));
    }

    #[test]
    fn a_provider_spends_its_earnings_on_a_clients_job_by_barter() {
        let mut world = billing_world(60_000, Some(0));
        let client = world.join(Role::Client);
        let exe = world.upload(&client, b"exe", ElementKind::Executable);
        let mut engine = world.join(Role::Provider);
        engine_ready(&mut world, &mut engine, 2);
        world.now = world.now - world.now % 60_000 + 60_000 + 1_000;
        // Somebody else's job earns the engine money (that client may owe).
        let mut payer = world.join(Role::Client);
        let paid = request_deposit(&mut world, &mut payer, 100_000_000, "p");
        approve(&mut world, paid);
        let exe2 = world.upload(&payer, b"exe", ElementKind::Executable);
        run_job(&mut world, &mut payer, &mut engine, exe2, JobProperties::default(), 2, 50_000);
        world.now += 2 * 60_000;
        world.maintain();
        let earned = balance(&world, &engine.party.id);
        assert!(earned > 0);
        let (c, now) = (&world.coordinator, world.now);
        let too_much = world.store.write(|tx| {
            c.barter(tx, &engine.party.id, &client.party.id, earned + 1, "b1", now, &mut Effects::default())
        });
        assert!(too_much.is_err(), "only what was earned");
        world
            .store
            .write(|tx| c.barter(tx, &engine.party.id, &client.party.id, earned, "b2", now, &mut Effects::default()))
            .unwrap();
        assert_eq!(balance(&world, &client.party.id), earned);
        assert_eq!(balance(&world, &engine.party.id), 0);
        let _ = exe;
        assert!(balanced(&world));
        let _ = Micros::ZERO;
    }

    #[derive(Debug, Clone)]
    enum Step {
        Results(usize),
        Advance(u64),
        Bill,
        CrashedBill,
        EngineVanishes,
        Stop,
        Resume,
        RemoveTask(u64),
        AddTasks(u64),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (1usize..4).prop_map(Step::Results),
            (1_000u64..200_000).prop_map(Step::Advance),
            Just(Step::Bill),
            Just(Step::CrashedBill),
            Just(Step::EngineVanishes),
            Just(Step::Stop),
            Just(Step::Resume),
            (0u64..8).prop_map(Step::RemoveTask),
            (1u64..3).prop_map(Step::AddTasks),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any interleaving of results, cancellations, engines vanishing, billing passes and
        /// crashed passes keeps the ledger balanced and charges each unit of work exactly once:
        /// what the client paid and the provider earned equals billing the whole journal at once.
        #[test]
        fn billing_is_exactly_once_under_any_interleaving(steps in proptest::collection::vec(step(), 1..40)) {
            check_steps(steps)?;
        }
    }

    #[test]
    fn billing_exactly_once_regression_removed_task_and_vanished_engine() {
        check_steps(vec![Step::Advance(1000), Step::Advance(1000), Step::RemoveTask(2), Step::EngineVanishes]).unwrap();
    }

    fn check_steps(steps: Vec<Step>) -> Result<(), proptest::test_runner::TestCaseError> {
        {
            let mut world = billing_world(60_000, None);
            world.now = world.now - world.now % 60_000 + 60_000;
            let mut client = world.join(Role::Client);
            let exe = world.upload(&client, b"exe", ElementKind::Executable);
            let job = JobId::random();
            world.client_send(
                &mut client,
                vec![
                    ClientToServer::CreateJob {
                        job,
                        properties: JobProperties { attempts_max: 100, ..JobProperties::default() },
                    },
                    ClientToServer::Task { job, tasks: specs(exe, 0..5) },
                    ClientToServer::Launch { job },
                ],
            );
            let mut engine = world.join(Role::Provider);
            engine_ready(&mut world, &mut engine, 3);
            let mut next_index = 5;
            let mut held: Vec<Assignment> = Vec::new();
            for step in steps {
                held.extend(assignments(&mut world, &mut engine));
                match step {
                    Step::Results(n) => {
                        let done: Vec<Assignment> = held.drain(..n.min(held.len())).collect();
                        if !done.is_empty() {
                            world.engine_send(&mut engine, done.iter().map(succeed).collect());
                        }
                    }
                    Step::Advance(ms) => {
                        world.now += ms;
                        world.poll::<ServerToProvider>(&mut engine);
                    }
                    Step::Bill => {
                        world.maintain();
                    }
                    Step::CrashedBill => {
                        let (c, now) = (&world.coordinator, world.now);
                        let _ = world.store.write(|tx| -> Result<(), CoordinatorError> {
                            c.bill(tx, now, &mut Effects::default())?;
                            Err(CoordinatorError::internal("crash"))
                        });
                    }
                    Step::EngineVanishes => {
                        world.now += world.coordinator.config().provider_silence_ms_max + 1;
                        world.maintain();
                        held.clear();
                        engine = world.join(Role::Provider);
                        engine_ready(&mut world, &mut engine, 3);
                    }
                    Step::Stop => {
                        world.client_send(&mut client, vec![ClientToServer::Stop { job, task: None }]);
                    }
                    Step::Resume => {
                        world.client_send(&mut client, vec![ClientToServer::Resume { job, task: None }]);
                    }
                    Step::RemoveTask(i) => {
                        world.client_send(&mut client, vec![ClientToServer::RemoveTask { job, task: i }]);
                    }
                    Step::AddTasks(n) => {
                        world.client_send(
                            &mut client,
                            vec![ClientToServer::Task { job, tasks: specs(exe, next_index..next_index + n) }],
                        );
                        next_index += n;
                    }
                }
            }
            // Wind down: finish or drop everything, then bill until nothing is left.
            world.client_send(&mut client, vec![ClientToServer::RemoveJob { job }]);
            world.now += 2 * 3_600_000;
            world.maintain();
            world.now += 3 * 60_000;
            world.maintain();
            proptest::prop_assert!(balanced(&world));
            let (records, unbilled) = world
                .store
                .write(|tx| -> Result<_, CoordinatorError> {
                    Ok((tx.work_records_of_job(job)?, tx.unbilled_records_of_job(job)?))
                })
                .unwrap();
            proptest::prop_assert_eq!(unbilled, 0);
            let config = world.coordinator.config().pricing.clone();
            let terms = vec![idlegrid_ledger::JobTerms::new(job, client.party.id.clone())];
            let window = idlegrid_ledger::BillingWindow::closed_until(0, world.now, &config);
            let plan = idlegrid_ledger::plan_billing(&config, &records, &terms, window, world.now).unwrap();
            let (charges, _) = plan.totals().unwrap();
            if -balance(&world, &client.party.id) != charges.as_i64() {
                for r in &records {
                    eprintln!(
                        "record {} task {} launched {} cancelled {:?} concluded {:?} final {}",
                        r.id, r.task, r.launched_ms, r.cancelled_ms, r.concluded_ms, r.final_status
                    );
                }
                for line in &plan.lines {
                    eprintln!("expected {} {}", line.key, line.amount);
                }
                world
                    .store
                    .write(|tx| -> Result<(), CoordinatorError> {
                        for t in tx
                            .ledger()
                            .transfers_of_account(&AccountId::Party(client.party.id.clone()), 0, u64::MAX)
                            .unwrap()
                        {
                            eprintln!(
                                "actual {} posted {} released {} capped {}",
                                t.key(),
                                t.posted,
                                t.released,
                                t.capped
                            );
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            proptest::prop_assert_eq!(
                -balance(&world, &client.party.id),
                charges.as_i64(),
                "the client paid each unit of work once"
            );
            let earned: i64 = world
                .store
                .write(|tx| -> Result<i64, CoordinatorError> {
                    let mut total = 0;
                    for account in Ledger::new(tx.ledger()).store().accounts().unwrap() {
                        if let AccountId::Party(p) = &account.id
                            && *p != client.party.id
                        {
                            total += account.balance_posted().unwrap().as_i64();
                        }
                    }
                    Ok(total)
                })
                .unwrap();
            let pay: i64 = plan.lines.iter().filter(|l| !l.is_client_charge()).map(|l| l.amount.as_i64()).sum();
            proptest::prop_assert_eq!(earned, pay, "providers were paid each unit of work once");
        }
        Ok(())
    }
}

/// Result assurance (P6.1, P6.2) carried out by the coordinator.
mod assurance {
    use super::*;
    use idlegrid_assurance::{Comparison, SpotCheckPolicy, ValidationPolicy};

    fn assured_job(world: &mut World, n: u64, properties: JobProperties) -> (Peer, JobId) {
        let (client, job, _) = launched_job_with(world, n, properties);
        (client, job)
    }

    fn answer(a: &Assignment, result: &[u8]) -> ProviderToServer {
        let mut status = succeed(a);
        if let ProviderToServer::TaskStatus(s) = &mut status {
            s.result = Some(Payload::Inline(result.to_vec()));
        }
        status
    }

    struct Engine {
        peer: Peer,
        honest: bool,
        received: Vec<Assignment>,
    }

    /// Engines answer what they received (honest ones with the task's parameters, liars with
    /// a forgery) until the client has every result; returns the client's final results.
    fn run(world: &mut World, client: &mut Peer, engines: &mut [Engine], rounds: usize) -> Vec<TaskStatusReport> {
        let mut finals = Vec::new();
        for _ in 0..rounds {
            for engine in engines.iter_mut() {
                let batch = assignments(world, &mut engine.peer);
                let replies: Vec<ProviderToServer> =
                    batch.iter().map(|a| if engine.honest { succeed(a) } else { answer(a, b"forged") }).collect();
                engine.received.extend(batch);
                if !replies.is_empty() {
                    world.engine_send(&mut engine.peer, replies);
                }
            }
            finals.extend(final_statuses(&world.poll::<ServerToClient>(client)));
        }
        finals
    }

    fn engines(world: &mut World, honesty: &[bool]) -> Vec<Engine> {
        honesty
            .iter()
            .map(|honest| {
                let mut peer = world.join(Role::Provider);
                engine_ready(world, &mut peer, 4);
                Engine { peer, honest: *honest, received: Vec::new() }
            })
            .collect()
    }

    fn without_spot_checks() -> CoordinatorConfig {
        CoordinatorConfig { spot_checks: SpotCheckPolicy::off(), ..CoordinatorConfig::default() }
    }

    #[test]
    fn a_quorum_accepts_only_agreeing_results_from_distinct_engines() {
        let mut world = World::with(without_spot_checks());
        let properties = JobProperties { validation: ValidationPolicy::quorum(2), ..JobProperties::default() };
        let (mut client, _) = assured_job(&mut world, 12, properties);
        let mut engines = engines(&mut world, &[true, true, false]);
        let finals = run(&mut world, &mut client, &mut engines, 30);

        let mut indexes: Vec<u64> = finals.iter().map(|r| r.task).collect();
        indexes.sort();
        assert_eq!(indexes, (0..12).collect::<Vec<_>>(), "each task's result exactly once");
        for r in &finals {
            assert_eq!(r.state, TaskState::Succeeded);
            assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())), "never the forgery");
        }
        // Every task ran on at least two engines, never twice on one.
        let mut per_task: std::collections::BTreeMap<Vec<u8>, Vec<usize>> = Default::default();
        for (i, engine) in engines.iter().enumerate() {
            for a in &engine.received {
                let holders = per_task.entry(a.params.clone()).or_default();
                assert!(
                    !holders.contains(&i),
                    "engine {i} got two replicas of {:?}",
                    String::from_utf8_lossy(&a.params)
                );
                holders.push(i);
            }
        }
        assert!(per_task.values().all(|holders| holders.len() >= 2));
        assert!(!engines[2].received.is_empty(), "the liar took part");
        // The liar's results were judged invalid and are not paid; the honest ones' are.
        let liar = engines[2].peer.party.id.clone();
        let (record, works) = world
            .store
            .write(|tx| -> Result<_, idlegrid_store::StoreError> {
                let record: idlegrid_assurance::ProviderRecord =
                    serde_json::from_str(&tx.provider_record(&liar)?.unwrap()).unwrap();
                let job = finals[0].job;
                Ok((record, tx.work_records_of_job(job)?))
            })
            .unwrap();
        assert_eq!(record.valid, 0);
        assert!(record.invalid > 0, "{record:?}");
        for work in &works {
            assert!(!work.pay_awaits_judgement, "every replica judged or settled: {work:?}");
            assert_eq!(work.pay_withheld, work.provider == liar, "{work:?}");
        }
    }

    #[test]
    fn a_wrong_answer_to_a_test_task_quarantines_the_provider_and_its_results_are_reverified() {
        let always = SpotCheckPolicy { rate: 1.0, new_provider_rate: 1.0, new_provider_checks: 0 };
        let mut world = World::with(CoordinatorConfig { spot_checks: always, ..CoordinatorConfig::default() });
        let properties = JobProperties { validation: ValidationPolicy::quorum(2), ..JobProperties::default() };
        let (mut client, _) = assured_job(&mut world, 20, properties);
        let mut engines = engines(&mut world, &[true, true, false]);
        let finals = run(&mut world, &mut client, &mut engines, 40);
        assert_eq!(finals.len(), 20, "the job completes without the liar");
        for r in &finals {
            assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())));
        }
        let liar = engines[2].peer.party.id.clone();
        let quarantined = world.store.write(|tx| tx.quarantined_providers()).unwrap();
        assert_eq!(quarantined, vec![liar.clone()], "only the liar is quarantined");
        // Nothing more reaches it.
        let received = engines[2].received.len();
        world.engine_send(
            &mut engines[2].peer,
            vec![ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: 8 }],
        );
        assert!(assignments(&mut world, &mut engines[2].peer).is_empty());
        assert_eq!(engines[2].received.len(), received);
        let works = world.store.write(|tx| tx.work_records_of_job(finals[0].job)).unwrap();
        assert!(works.iter().filter(|w| w.provider == liar).all(|w| w.pay_withheld));
        assert!(works.iter().filter(|w| w.provider != liar).all(|w| !w.pay_withheld && !w.pay_awaits_judgement));
    }

    #[test]
    fn results_that_need_the_validator_wait_for_its_verdict() {
        let mut world = World::with(without_spot_checks());
        let mut client = world.join(Role::Client);
        let exe = world.upload(&client, b"\0asm fake", ElementKind::Executable);
        let validator = world.upload(&client, b"\0asm validator", ElementKind::Executable);
        let job = JobId::random();
        let properties = JobProperties {
            validation: ValidationPolicy::quorum(2),
            validator: Some(validator),
            ..JobProperties::default()
        };
        world.client_send(
            &mut client,
            vec![
                ClientToServer::CreateJob { job, properties },
                ClientToServer::Task { job, tasks: specs(exe, 0..1) },
                ClientToServer::Attach { job, replay: Replay::Undelivered, task: None, interim: None },
                ClientToServer::Launch { job },
            ],
        );
        let mut engines = engines(&mut world, &[true, true]);
        let mut pending = Vec::new();
        for (i, engine) in engines.iter_mut().enumerate() {
            let batch = assignments(&mut world, &mut engine.peer);
            assert_eq!(batch.len(), 1, "one replica on each engine");
            let batch = envelopes(&mut engine.peer, vec![answer(&batch[0], format!("3.1415{i}").as_bytes())]);
            let (c, now) = (&world.coordinator, world.now);
            let mut fx = Effects::default();
            world
                .store
                .write(|tx| c.post_provider(tx, &engine.peer.party, engine.peer.session, batch, now, &mut fx))
                .unwrap();
            pending.extend(fx.comparisons);
        }
        assert_eq!(pending.len(), 1, "the two different results go to the validator");
        assert_eq!(pending[0].validator, validator);
        assert!(
            final_statuses(&world.poll::<ServerToClient>(&mut client)).is_empty(),
            "nothing final before the verdict"
        );
        let comparison = pending.remove(0);
        let (c, now) = (&world.coordinator, world.now);
        world
            .store
            .write(|tx| {
                c.record_comparison(
                    tx,
                    comparison.task,
                    comparison.first.0,
                    comparison.second.0,
                    Comparison::Equivalent,
                    now,
                )
            })
            .unwrap();
        let finals = final_statuses(&world.poll::<ServerToClient>(&mut client));
        assert_eq!(finals.len(), 1);
        assert_eq!(finals[0].result, Some(Payload::Inline(b"3.14150".to_vec())), "the earlier result is canonical");
    }

    #[test]
    fn a_job_with_a_validator_it_does_not_own_or_an_impossible_policy_is_refused() {
        let mut world = World::with(without_spot_checks());
        let mut other = world.join(Role::Client);
        let foreign = world.upload(&other, b"\0asm theirs", ElementKind::Executable);
        let mut client = world.join(Role::Client);
        let bad = [
            JobProperties {
                validation: ValidationPolicy::quorum(2),
                validator: Some(foreign),
                ..JobProperties::default()
            },
            JobProperties {
                validation: ValidationPolicy::Quorum { min_agreeing: 3, target_replicas: 2, replicas_max: 4 },
                ..JobProperties::default()
            },
        ];
        for properties in bad {
            let job = JobId::random();
            world.client_send(&mut client, vec![ClientToServer::CreateJob { job, properties }]);
            let replies = world.poll::<ServerToClient>(&mut client);
            assert!(replies.iter().any(|(_, m)| matches!(m, ServerToClient::Error(_))), "{replies:?}");
        }
        let _ = world.poll::<ServerToClient>(&mut other);
    }
}

mod quarantine {
    use super::*;
    use idlegrid_assurance::{SpotCheckPolicy, ValidationPolicy};

    fn answer(a: &Assignment, honest: bool) -> ProviderToServer {
        let mut status = succeed(a);
        if let (ProviderToServer::TaskStatus(s), false) = (&mut status, honest) {
            s.result = Some(Payload::Inline(b"forged".to_vec()));
        }
        status
    }

    #[test]
    fn quarantine_takes_back_running_replicas_withholds_pay_and_the_job_completes_elsewhere() {
        let mut world =
            World::with(CoordinatorConfig { spot_checks: SpotCheckPolicy::off(), ..CoordinatorConfig::default() });
        let properties = JobProperties { validation: ValidationPolicy::quorum(2), ..JobProperties::default() };
        let (mut client, job, exe) = launched_job_with(&mut world, 6, properties);
        let mut liar = world.join(Role::Provider);
        engine_ready(&mut world, &mut liar, 4);
        let mut a = world.join(Role::Provider);
        let mut b = world.join(Role::Provider);
        for engine in [&mut a, &mut b] {
            engine_ready(&mut world, engine, 4);
        }
        // The honest engines answer; the liar sits on its replicas for now.
        let held = assignments(&mut world, &mut liar);
        assert_eq!(held.len(), 4, "one replica of each of four tasks");
        for _ in 0..3 {
            for engine in [&mut a, &mut b] {
                let batch: Vec<ProviderToServer> =
                    assignments(&mut world, engine).iter().map(|x| answer(x, true)).collect();
                if !batch.is_empty() {
                    world.engine_send(engine, batch);
                }
            }
        }
        let early = final_statuses(&world.poll::<ServerToClient>(&mut client));
        assert_eq!(early.len(), 2, "the two tasks the liar does not hold are accepted");

        // Test tasks from now on; the liar asks for one more task, and when one comes, gets a
        // test in its place.
        world.coordinator.config.spot_checks =
            SpotCheckPolicy { rate: 1.0, new_provider_rate: 1.0, new_provider_checks: 0 };
        engine_ready(&mut world, &mut liar, 5);
        for engine in [&mut a, &mut b] {
            engine_ready(&mut world, engine, 0);
        }
        world.client_send(&mut client, vec![ClientToServer::Task { job, tasks: specs(exe, 6..10) }]);
        let test = assignments(&mut world, &mut liar);
        assert_eq!(test.len(), 1);
        assert!(
            early.iter().any(|r| Some(Payload::Inline(test[0].params.clone())) == r.result),
            "a test is an accepted task sent again"
        );
        world.engine_send(&mut liar, vec![answer(&test[0], false)]);
        let quarantined = world.store.write(|tx| tx.quarantined_providers()).unwrap();
        assert_eq!(quarantined, vec![liar.party.id.clone()]);
        let removed = world
            .poll::<ServerToProvider>(&mut liar)
            .iter()
            .filter(|(_, m)| matches!(m, ServerToProvider::RemoveTask { .. }))
            .count();
        assert_eq!(removed, 4, "its running replicas are taken back");
        // Its late answers count for nothing.
        world.engine_send(&mut liar, held.iter().map(|x| answer(x, false)).collect());

        // A third honest engine takes over; the job completes with correct results only.
        let mut c = world.join(Role::Provider);
        world.coordinator.config.spot_checks = SpotCheckPolicy::off();
        for engine in [&mut a, &mut b, &mut c] {
            engine_ready(&mut world, engine, 4);
        }
        let mut finals = early;
        for _ in 0..10 {
            for engine in [&mut a, &mut b, &mut c] {
                let batch: Vec<ProviderToServer> =
                    assignments(&mut world, engine).iter().map(|x| answer(x, true)).collect();
                if !batch.is_empty() {
                    world.engine_send(engine, batch);
                }
            }
            finals.extend(final_statuses(&world.poll::<ServerToClient>(&mut client)));
            engine_ready(&mut world, &mut liar, 8);
            assert!(assignments(&mut world, &mut liar).is_empty(), "a quarantined engine gets nothing");
        }
        let mut indexes: Vec<u64> = finals.iter().map(|r| r.task).collect();
        indexes.sort();
        assert_eq!(indexes, (0..10).collect::<Vec<_>>());
        for r in &finals {
            assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())));
        }
        let works = world.store.write(|tx| tx.work_records_of_job(job)).unwrap();
        for work in &works {
            assert!(!work.pay_awaits_judgement, "{work:?}");
            assert_eq!(work.pay_withheld, work.provider == liar.party.id, "{work:?}");
        }
        assert_eq!(
            works.iter().filter(|w| w.provider == liar.party.id).count(),
            4,
            "the test task is not journaled to the client's job"
        );
    }
}

mod policies {
    use super::*;
    use idlegrid_assurance::{SpotCheckPolicy, ValidationPolicy};

    /// Honest engines answer every assignment for `rounds` rounds; returns the client's finals
    /// and how many assignments each engine received.
    fn run_honest(
        world: &mut World,
        client: &mut Peer,
        engines: &mut [Peer],
        rounds: usize,
    ) -> (Vec<TaskStatusReport>, usize) {
        let mut finals = Vec::new();
        let mut placements = 0;
        for _ in 0..rounds {
            for engine in engines.iter_mut() {
                let batch = assignments(world, engine);
                placements += batch.len();
                let replies: Vec<ProviderToServer> = batch.iter().map(succeed).collect();
                if !replies.is_empty() {
                    world.engine_send(engine, replies);
                }
            }
            finals.extend(final_statuses(&world.poll::<ServerToClient>(client)));
        }
        (finals, placements)
    }

    fn job_of(world: &mut World, n: u64, validation: ValidationPolicy) -> Peer {
        launched_job_with(world, n, JobProperties { validation, ..JobProperties::default() }).0
    }

    #[test]
    fn adaptive_replication_runs_trusted_providers_alone_most_of_the_time() {
        let mut world =
            World::with(CoordinatorConfig { spot_checks: SpotCheckPolicy::off(), ..CoordinatorConfig::default() });
        let policy = ValidationPolicy::Adaptive {
            min_agreeing: 2,
            trusted_after: 3,
            check_probability_min: 0.05,
            replicas_max: 6,
        };
        let mut engines: Vec<Peer> = (0..2).map(|_| world.join(Role::Provider)).collect();
        for engine in engines.iter_mut() {
            engine_ready(&mut world, engine, 1);
        }
        // Build a record: the first tasks are checked (two replicas each).
        let mut warm_up = job_of(&mut world, 4, policy);
        let (finals, placements) = run_honest(&mut world, &mut warm_up, &mut engines, 10);
        assert_eq!(finals.len(), 4);
        assert_eq!(placements, 8, "new providers are always checked");
        // Now both are trusted: a larger job needs far fewer than two replicas per task.
        let mut client = job_of(&mut world, 200, policy);
        let (finals, placements) = run_honest(&mut world, &mut client, &mut engines, 400);
        assert_eq!(finals.len(), 200);
        for r in &finals {
            assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())));
        }
        assert!(placements < 300, "{placements} placements for 200 tasks: trusted providers run alone");
        assert!(placements > 200, "{placements} placements: some results are still checked");
    }

    #[test]
    fn credibility_voting_accepts_once_agreeing_results_are_credible_enough() {
        let mut world =
            World::with(CoordinatorConfig { spot_checks: SpotCheckPolicy::off(), ..CoordinatorConfig::default() });
        let mut engines: Vec<Peer> = (0..4).map(|_| world.join(Role::Provider)).collect();
        for engine in engines.iter_mut() {
            engine_ready(&mut world, engine, 2);
        }
        // New providers have credibility 1 - f = 0.8: one result is not enough for 0.99.
        let mut client = job_of(&mut world, 10, ValidationPolicy::credibility(0.99));
        let (finals, placements) = run_honest(&mut world, &mut client, &mut engines, 30);
        assert_eq!(finals.len(), 10);
        for r in &finals {
            assert_eq!(r.result, Some(Payload::Inline(format!("n={}", r.task).into_bytes())));
        }
        assert!(placements >= 20, "{placements} placements: every task needed agreeing replicas");
    }
}
