//! Money across the platform's edge, driven through the coordinator: deposits and payouts wait
//! for an operator, decisions move money once, bad amounts are refused as the caller's error
//! (never a failure of the server), and jobs whose numbers or tasks make no sense are refused
//! or concluded instead of breaking others or running for ever.

use idlegrid_ledger::{AccountId, Ledger};
use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::messages::*;
use idlegrid_store::Store;
use idlegrid_types::*;

use crate::requests::{Decider, Decision};
use crate::tests::{World, approve, request_deposit};
use crate::*;

fn operator() -> Party {
    Party { id: PartyId::from_public_key(&[0xee; 32]), role: Role::Operator }
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

fn available(world: &World, party: &PartyId) -> i64 {
    world.store.write(|tx| world.coordinator.account_info(tx, party)).unwrap().available_micros
}

fn call<R>(
    world: &mut World,
    work: impl FnOnce(&Coordinator, &mut dyn idlegrid_store::Tx, &mut Effects, u64) -> Result<R, CoordinatorError>,
) -> Result<R, CoordinatorError> {
    let (c, now) = (&world.coordinator, world.now);
    let mut fx = Effects::default();
    world.store.write(|tx| work(c, tx, &mut fx, now))
}

fn errors(replies: &[(Option<u64>, ServerToClient)]) -> Vec<ErrorReport> {
    replies
        .iter()
        .filter_map(|(_, m)| match m {
            ServerToClient::Error(report) => Some(report.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deposit_request_is_no_money_until_an_operator_approves_it_and_then_only_once() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let id = request_deposit(&mut world, &mut client, 25_000_000, "INV-1");
    assert_eq!(balance(&world, &client.party.id), 0, "asking is not paying");
    let listed = call(&mut world, |c, tx, _, _| c.requests_for_operator(tx, &operator(), None, 100)).unwrap();
    assert_eq!(listed.iter().map(|r| (r.id, r.state)).collect::<Vec<_>>(), vec![(id, MoneyRequestState::Pending)]);

    let first = approve(&mut world, id);
    assert_eq!(
        (first.state, first.decided_by.as_deref().map(|d| d.starts_with("operator:"))),
        (MoneyRequestState::Approved, Some(true))
    );
    let again = approve(&mut world, id);
    assert_eq!(again, first, "a repeated approval returns the first decision");
    assert_eq!(balance(&world, &client.party.id), 25_000_000, "credited once");
    let reject = call(&mut world, |c, tx, fx, now| {
        c.decide_request(tx, &Decider::Operator(operator().id), id, Decision::Reject, "late", now, fx)
    });
    assert_eq!(reject.unwrap_err().kind, ErrorKind::Conflict, "an approved request cannot be rejected");

    // The statement shows the pending and the approved requests, and the money.
    let pending = request_deposit(&mut world, &mut client, 1_000_000, "INV-2");
    let query = money::StatementQuery { from_ms: 0, to_ms: u64::MAX / 2, period: None };
    let party = client.party.clone();
    let statement = call(&mut world, |c, tx, _, _| c.statement(tx, &party, query)).unwrap();
    let states: Vec<(u64, idlegrid_ledger::RequestState)> =
        statement.requests.iter().map(|r| (r.id, r.state)).collect();
    assert_eq!(
        states,
        vec![(id, idlegrid_ledger::RequestState::Approved), (pending, idlegrid_ledger::RequestState::Pending)]
    );
    assert_eq!(statement.credits.as_i64(), 25_000_000);
}

#[test]
fn only_clients_ask_for_deposits_only_providers_for_payouts_and_only_operators_decide() {
    let mut world = World::new();
    let client = world.join(Role::Client);
    let engine = world.join(Role::Provider);
    let (c_party, e_party) = (client.party.clone(), engine.party.clone());
    let refused = call(&mut world, |c, tx, _, now| c.request_deposit(tx, &e_party, 1_000_000, "R", now));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Forbidden);
    let refused = call(&mut world, |c, tx, _, now| c.request_payout(tx, &c_party, 1_000_000, "R", now));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Forbidden);
    let refused =
        call(&mut world, |c, tx, fx, now| c.credit_account(tx, &c_party, &c_party.id, 1_000_000, "R", "", now, fx));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Forbidden, "nobody credits their own account");
    let refused = call(&mut world, |c, tx, _, _| c.requests_for_operator(tx, &c_party, None, 10));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Forbidden);
    let stranger = PartyId::from_public_key(&[0x55; 32]);
    let refused =
        call(&mut world, |c, tx, fx, now| c.credit_account(tx, &operator(), &stranger, 1_000_000, "R", "", now, fx));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::Invalid, "only registered parties have accounts");
    assert_eq!(balance(&world, &client.party.id), 0);
}

#[test]
fn a_payout_is_reserved_while_it_waits_and_paid_once_when_approved() {
    let mut world = World::new();
    let client = world.join(Role::Client);
    let engine = world.join(Role::Provider);
    let (c_party, e_party) = (client.party.clone(), engine.party.clone());
    // The operator credits the provider (as if it had earned 30).
    let credit = call(&mut world, |c, tx, fx, now| {
        c.credit_account(tx, &operator(), &e_party.id, 30_000_000, "EARN-1", "test", now, fx)
    })
    .unwrap();
    assert_eq!(credit.state, MoneyRequestState::Approved);
    let payout = call(&mut world, |c, tx, _, now| c.request_payout(tx, &e_party, 20_000_000, "OUT-1", now)).unwrap();
    assert_eq!((payout.state, available(&world, &engine.party.id)), (MoneyRequestState::Pending, 10_000_000));
    // The reserved part can be neither paid out again nor bartered.
    let twice = call(&mut world, |c, tx, _, now| c.request_payout(tx, &e_party, 20_000_000, "OUT-2", now));
    let error = twice.unwrap_err();
    assert_eq!(
        (error.kind, error.report.code),
        (ErrorKind::Conflict, ErrorCode::LimitExceeded),
        "{}",
        error.report.message
    );
    let barter = call(&mut world, |c, tx, fx, now| c.barter(tx, &e_party.id, &c_party.id, 15_000_000, "B1", now, fx));
    assert_eq!(barter.unwrap_err().kind, ErrorKind::Conflict);

    let approve_twice = |world: &mut World| {
        call(world, |c, tx, fx, now| {
            c.decide_request(tx, &Decider::Operator(operator().id), payout.id, Decision::Approve, "sent", now, fx)
        })
        .unwrap()
    };
    approve_twice(&mut world);
    approve_twice(&mut world);
    assert_eq!(balance(&world, &engine.party.id), 10_000_000, "paid out once");
    assert_eq!(available(&world, &engine.party.id), 10_000_000);

    // A rejected payout gives the reservation back.
    let other = call(&mut world, |c, tx, _, now| c.request_payout(tx, &e_party, 4_000_000, "OUT-3", now)).unwrap();
    assert_eq!(available(&world, &engine.party.id), 6_000_000);
    call(&mut world, |c, tx, fx, now| {
        c.decide_request(tx, &Decider::Operator(operator().id), other.id, Decision::Reject, "wrong IBAN", now, fx)
    })
    .unwrap();
    assert_eq!(available(&world, &engine.party.id), 10_000_000);
    let balanced = world
        .store
        .write(|tx| -> Result<bool, CoordinatorError> { Ok(Ledger::new(tx.ledger()).check_balanced().is_ok()) });
    assert!(balanced.unwrap());
}

#[test]
fn a_bad_amount_is_the_callers_error_and_fails_that_request_alone() {
    let mut world =
        World::with(CoordinatorConfig { client_overdraft_max_micros: None, ..CoordinatorConfig::default() });
    let mut client = world.join(Role::Client);
    let other = world.join(Role::Client);
    let engine = world.join(Role::Provider);
    let (c_party, o_party, e_party) = (client.party.clone(), other.party.clone(), engine.party.clone());
    for amount in [0, -1, i64::MIN, i64::MAX, idlegrid_ledger::AMOUNT_MICROS_MAX + 1] {
        let error = call(&mut world, |c, tx, _, now| c.request_deposit(tx, &c_party, amount, "BIG", now)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid, "{amount}: {}", error.report.message);
        assert!(error.report.message.contains("amount"), "the error names the amount: {}", error.report.message);
        let error = call(&mut world, |c, tx, fx, now| {
            c.credit_account(tx, &operator(), &c_party.id, amount, "BIG", "", now, fx)
        })
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid, "{amount}");
        let error = call(&mut world, |c, tx, _, now| c.request_payout(tx, &e_party, amount, "BIG", now)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid, "{amount}");
        let error = call(&mut world, |c, tx, fx, now| c.barter(tx, &e_party.id, &c_party.id, amount, "BIG", now, fx))
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid, "{amount}");
    }
    // Over the channel the same refusal is an error reply naming the amount, and the message
    // still counts as processed.
    world.client_send(&mut client, vec![ClientToServer::Deposit { amount_micros: i64::MAX, reference: "X".into() }]);
    let replies = world.poll::<ServerToClient>(&mut client);
    let refused = errors(&replies);
    assert!(refused.iter().any(|e| e.code == ErrorCode::BadRequest && e.message.contains("amount")), "{replies:?}");
    // The largest amount, twice, from one client, and the other client's ordinary payment: all
    // fine, nothing overflows.
    for reference in ["MAX-1", "MAX-2"] {
        let big = call(&mut world, |c, tx, fx, now| {
            c.credit_account(tx, &operator(), &c_party.id, idlegrid_ledger::AMOUNT_MICROS_MAX, reference, "", now, fx)
        });
        assert!(big.is_ok(), "{big:?}");
    }
    let ordinary =
        call(&mut world, |c, tx, fx, now| c.credit_account(tx, &operator(), &o_party.id, 1_000_000, "R1", "", now, fx));
    assert_eq!(ordinary.unwrap().state, MoneyRequestState::Approved);
    assert_eq!(balance(&world, &other.party.id), 1_000_000);
}

#[test]
fn a_job_with_an_impossible_number_is_refused_naming_the_field_and_others_still_launch() {
    // No account limit: nothing but the bounds stops a huge reservation.
    let mut world =
        World::with(CoordinatorConfig { client_overdraft_max_micros: None, ..CoordinatorConfig::default() });
    let mut client = world.join(Role::Client);
    let exe = world.upload(&client, b"\0asm fake", ElementKind::Executable);
    let spec = |index| TaskSpec { index, executable: exe, data: Default::default(), params: vec![], priority: None };
    let bad: Vec<(&str, JobProperties)> = vec![
        ("cost_max_micros", JobProperties { cost_max_micros: Some(0), ..JobProperties::default() }),
        ("cost_max_micros", JobProperties { cost_max_micros: Some(u64::MAX), ..JobProperties::default() }),
        (
            "cost_max_micros",
            JobProperties {
                cost_max_micros: Some(idlegrid_ledger::AMOUNT_MICROS_MAX as u64 + 1),
                ..JobProperties::default()
            },
        ),
        ("power_requested_gflops", JobProperties { power_requested_gflops: Some(f64::INFINITY), ..Default::default() }),
        ("deadline_unix_ms", JobProperties { deadline_unix_ms: Some(u64::MAX), ..JobProperties::default() }),
        (
            "cluster.node_count",
            JobProperties {
                cluster: Some(VirtualClusterRequest { node_count: Some(u32::MAX), ..Default::default() }),
                ..JobProperties::default()
            },
        ),
        (
            "cluster.data_in_mb",
            JobProperties {
                cluster: Some(VirtualClusterRequest { data_in_mb: Some(-1.0), ..Default::default() }),
                ..JobProperties::default()
            },
        ),
    ];
    for (field, properties) in bad {
        let job = JobId::random();
        world.client_send(
            &mut client,
            vec![
                ClientToServer::CreateJob { job, properties },
                ClientToServer::Task { job, tasks: vec![spec(0)] },
                ClientToServer::Launch { job },
            ],
        );
        let refused = errors(&world.poll::<ServerToClient>(&mut client));
        assert!(
            refused.iter().any(|e| e.code == ErrorCode::BadRequest && e.message.contains(field)),
            "{field}: {refused:?}"
        );
        let stored = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?) }).unwrap();
        assert!(stored.is_none(), "{field}: nothing is stored for a refused job");
    }
    // Jobs with sensible maximum costs, from this client and another, still launch.
    for mut launcher in [client, world.join(Role::Client)] {
        let exe = world.upload(&launcher, b"\0asm fake", ElementKind::Executable);
        let job = JobId::random();
        let properties = JobProperties { cost_max_micros: Some(5_000_000), ..JobProperties::default() };
        let spec = TaskSpec { index: 0, executable: exe, data: Default::default(), params: vec![], priority: None };
        world.client_send(
            &mut launcher,
            vec![
                ClientToServer::CreateJob { job, properties },
                ClientToServer::Task { job, tasks: vec![spec] },
                ClientToServer::Launch { job },
            ],
        );
        assert!(errors(&world.poll::<ServerToClient>(&mut launcher)).is_empty());
        let state = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap().state) }).unwrap();
        assert_eq!(state, JobState::Running);
    }
}

#[test]
fn a_job_without_tasks_is_refused_at_launch_and_a_job_emptied_by_removal_completes() {
    let mut world = World::new();
    let mut client = world.join(Role::Client);
    let job = JobId::random();
    world.client_send(
        &mut client,
        vec![ClientToServer::CreateJob { job, properties: JobProperties::default() }, ClientToServer::Launch { job }],
    );
    let refused = errors(&world.poll::<ServerToClient>(&mut client));
    assert!(refused.iter().any(|e| e.code == ErrorCode::BadRequest && e.message.contains("no tasks")), "{refused:?}");
    let state = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap().state) }).unwrap();
    assert_eq!(state, JobState::Defining, "not launched");

    // A launched job whose every task is removed has nothing left to run: it completes.
    let (mut owner, job, _) = crate::tests::launched_job(&mut world, 2);
    world.client_send(&mut owner, vec![ClientToServer::RemoveTask { job, task: 0 }]);
    world.client_send(&mut owner, vec![ClientToServer::RemoveTask { job, task: 1 }]);
    let row = world.store.write(|tx| -> Result<_, CoordinatorError> { Ok(tx.job(job)?.unwrap()) }).unwrap();
    assert_eq!((row.state, row.counts.total()), (JobState::Completed, 0));
    let told = world.poll::<ServerToClient>(&mut owner);
    assert!(
        told.iter().any(|(_, m)| matches!(m, ServerToClient::JobProperties(info) if info.state == JobState::Completed)),
        "the attached session hears of the completion: {told:?}"
    );
}
