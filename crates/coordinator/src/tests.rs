//! The coordinator driven directly, against an in-memory SQLite store and a hand-set clock.

use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::*;
use idlegrid_protocol::wire::{Envelope, PostBatch, PostReply, RegisterRequest};
use idlegrid_protocol::{ErrorCode, Payload};
use idlegrid_store::{SqliteStore, Store};
use idlegrid_types::*;
use serde::de::DeserializeOwned;

use crate::*;

struct World {
    store: SqliteStore,
    coordinator: Coordinator,
    now: u64,
}

/// One party's end of a channel, as a well-behaved client library would keep it.
struct Peer {
    party: Party,
    session: SessionId,
    next_seq: u64,
    received: u64,
}

impl World {
    fn new() -> World {
        Self::with(CoordinatorConfig::default())
    }

    fn with(config: CoordinatorConfig) -> World {
        let store = SqliteStore::open_in_memory().unwrap();
        let coordinator = store.write(|tx| Coordinator::new(config, tx)).unwrap();
        World { store, coordinator, now: 1_000_000 }
    }

    fn join(&mut self, role: Role) -> Peer {
        let identity = Identity::generate();
        let request = RegisterRequest { role, public_key: identity.public_key_hex(), name: "t".into() };
        let (c, now) = (&self.coordinator, self.now);
        let response = self.store.write(|tx| c.register(tx, &request, now)).unwrap();
        let party = Party { id: response.id, role };
        let mut fx = Effects::default();
        let info = self.store.write(|tx| c.open_session(tx, &party, None, now, &mut fx)).unwrap();
        Peer { party, session: info.session, next_seq: 1, received: 0 }
    }

    fn client_send(&mut self, peer: &mut Peer, messages: Vec<ClientToServer>) -> PostReply {
        let batch = envelopes(peer, messages);
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.post_client(tx, &peer.party, peer.session, batch, now, &mut fx)).unwrap()
    }

    fn engine_send(&mut self, peer: &mut Peer, messages: Vec<ProviderToServer>) -> PostReply {
        let batch = envelopes(peer, messages);
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.post_provider(tx, &peer.party, peer.session, batch, now, &mut fx)).unwrap()
    }

    /// Acknowledge what was received and fetch what follows.
    fn poll<M: DeserializeOwned>(&mut self, peer: &mut Peer) -> Vec<(Option<u64>, M)> {
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        let rows = self.store.write(|tx| c.poll(tx, &peer.party, peer.session, peer.received, peer.received, 10_000, now, &mut fx)).unwrap();
        if let Some(last) = rows.last() {
            peer.received = last.seq;
        }
        rows.into_iter().map(|r| (r.reply_to, serde_json::from_str(&r.body).unwrap())).collect()
    }

    fn upload(&mut self, peer: &Peer, bytes: &[u8], kind: ElementKind) -> ElementHash {
        let hash = ElementHash::of(bytes);
        let (c, now) = (&self.coordinator, self.now);
        self.store.write(|tx| c.element_stored(tx, &peer.party, &hash, bytes.len() as u64, kind, "e", now)).unwrap();
        hash
    }

    fn maintain(&mut self) -> schedule::MaintenanceReport {
        let (c, now) = (&self.coordinator, self.now);
        let mut fx = Effects::default();
        self.store.write(|tx| c.maintain(tx, now, &mut fx)).unwrap()
    }
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
    world.engine_send(engine, vec![ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: capacity }]);
}

fn assignments(world: &mut World, engine: &mut Peer) -> Vec<Assignment> {
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
fn launched_job(world: &mut World, n: u64) -> (Peer, JobId, ElementHash) {
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"\0asm fake", ElementKind::Executable);
    let job = JobId::random();
    world.client_send(
        &mut client,
        vec![
            ClientToServer::CreateJob { job, properties: JobProperties::default() },
            ClientToServer::Task { job, tasks: specs(exe, 0..n) },
            ClientToServer::Attach { job, replay: Replay::Undelivered },
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
        completed |= messages.iter().any(|(_, m)| matches!(m, ServerToClient::JobProperties(info) if info.state == JobState::Completed));
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
    world.client_send(&mut other, vec![ClientToServer::Attach { job, replay: Replay::Undelivered }]);
    assert!(final_statuses(&world.poll::<ServerToClient>(&mut other)).is_empty());
    world.client_send(&mut other, vec![ClientToServer::Attach { job, replay: Replay::All }]);
    assert_eq!(final_statuses(&world.poll::<ServerToClient>(&mut other)).len(), 10, "replay all gives every result again");
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
    let counts = world.store.write(|tx| -> Result<_, ApiError> { Ok(tx.job(job)?.unwrap().counts) }).unwrap();
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
fn another_clients_job_is_invisible() {
    let mut world = World::new();
    let (_owner, job, _) = launched_job(&mut world, 2);
    let mut intruder = world.join(Role::Client);
    world.client_send(&mut intruder, vec![ClientToServer::GetJobProperties { job }, ClientToServer::RemoveJob { job }]);
    let replies = world.poll::<ServerToClient>(&mut intruder);
    assert!(replies.iter().all(|(_, m)| matches!(m, ServerToClient::Error(e) if e.code == ErrorCode::UnknownJob)));
    assert_eq!(replies.len(), 2);
    assert!(world.store.write(|tx| -> Result<_, ApiError> { Ok(tx.job(job)?.is_some()) }).unwrap(), "nothing was removed");
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
    assert!(told.iter().any(|(_, m)| matches!(m, ServerToProvider::RemoveTask { assignment } if *assignment == b.assignment)));
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
            ClientToServer::Attach { job, replay: Replay::Undelivered },
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
    assert!(told.iter().any(|(_, m)| matches!(m, ServerToProvider::Stop { assignment } if *assignment == a.assignment)));
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
        })],
    );
    assert!(assignments(&mut world, &mut engine).is_empty(), "a stopped job gets no engine");
    let info = world.store.write(|tx| -> Result<_, ApiError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
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
    assert!(world.store.write(|tx| -> Result<_, ApiError> { Ok(tx.job(job)?.is_none()) }).unwrap());
    // Its elements become garbage once the grace period passes (the client still owns the
    // executable, so only after it removes that too).
    world.client_send(&mut client, vec![ClientToServer::RemoveExecutableElement { hash: ElementHash::of(b"\0asm fake") }]);
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
    world.engine_send(&mut fresh, vec![ProviderToServer::Contents { tasks: vec![(before[0], AssignmentState::Running)] }]);
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
    assert_eq!(check(&other.party, &exe, Some(&a.ticket)).unwrap_err().status, 403, "a ticket names its engine");
    assert_eq!(check(&engine.party, &exe, None).unwrap_err().status, 403);
    let foreign = ElementHash::of(b"someone else's");
    world.store.write(|tx| tx.insert_element(&foreign, 1, 0)).unwrap();
    let check = |party: &Party, hash: &ElementHash, ticket: Option<&str>| {
        world.store.write(|tx| c.authorize_download(tx, party, hash, ticket, now))
    };
    assert_eq!(check(&engine.party, &foreign, Some(&a.ticket)).unwrap_err().status, 403, "only the task's elements");
    assert_eq!(check(&client.party, &exe, None).unwrap(), 9, "the owner may read its element");
    assert_eq!(check(&stranger.party, &exe, None).unwrap_err().status, 404);
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
            ClientToServer::CreateJob { job: low, properties: JobProperties { priority: 0, ..JobProperties::default() } },
            ClientToServer::CreateJob { job: high, properties: JobProperties { priority: 5, ..JobProperties::default() } },
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
    assert_eq!((next[0].priority, next[0].params.clone()), (9, b"n=7".to_vec()), "a task may override its job's priority");
}

#[test]
fn assignments_are_signed_with_the_key_given_at_registration() {
    let mut world = World::new();
    let (_client, _job, _) = launched_job(&mut world, 1);
    let identity = Identity::generate();
    let request = RegisterRequest { role: Role::Provider, public_key: identity.public_key_hex(), name: "e".into() };
    let (c, now) = (&world.coordinator, world.now);
    let registered = world.store.write(|tx| c.register(tx, &request, now)).unwrap();
    let mut engine = world.join(Role::Provider);
    engine_ready(&mut world, &mut engine, 1);
    let assignment = assignments(&mut world, &mut engine).remove(0);
    idlegrid_protocol::auth::verify_bytes(&registered.server_key, &assignment.signed_bytes(), &assignment.signature).unwrap();
    let forged = Assignment { params: b"rm -rf /".to_vec(), ..assignment.clone() };
    assert!(idlegrid_protocol::auth::verify_bytes(&registered.server_key, &forged.signed_bytes(), &forged.signature).is_err());
}
