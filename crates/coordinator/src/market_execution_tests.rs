//! Contracts carried out through the coordinator: escrow at the second signature, metering
//! repeated and reordered, failure and pro-rata settlement booked once in a balanced ledger, a
//! buyer who cannot pay refused with nothing stored, direct contracts registered without
//! commission, and contracts whose time is over settled by maintenance.

use idlegrid_ledger::{AccountId, Micros};
use idlegrid_market::negotiation::Status;
use idlegrid_protocol::market::{ContractInfo, MeterBody};
use idlegrid_store::Store;
use idlegrid_types::Role;

use crate::market_tests::{Trader, automatic, call, join, memory_offer, negotiate, offer, sign};
use crate::tests::World;
use crate::{ErrorKind, Party};

fn balance(world: &World, party: Option<&Party>) -> i64 {
    let id = party.map_or(AccountId::Platform, |p| AccountId::Party(p.id.clone()));
    world
        .store
        .write(|tx| -> Result<i64, idlegrid_store::StoreError> {
            idlegrid_ledger::check_balanced(tx.ledger()).expect("balanced");
            Ok(tx.ledger().account(&id).unwrap().map_or(0, |a| a.balance_posted().unwrap().as_i64()))
        })
        .unwrap()
}

fn account(world: &World, party: &Party) -> idlegrid_ledger::Account {
    let id = AccountId::Party(party.id.clone());
    world
        .store
        .write(|tx| -> Result<_, idlegrid_store::StoreError> { Ok(tx.ledger().account(&id).unwrap()) })
        .unwrap()
        .unwrap()
}

/// A signed trade through the coordinator between a provider and a client.
fn signed_trade(world: &mut World) -> (Trader, Trader, ContractInfo) {
    let seller = join(world, Role::Provider);
    let buyer = join(world, Role::Client);
    let listed =
        offer(world, &seller, &memory_offer(100_000, r#"{"mode": "automatic", "reservation": 60000}"#)).unwrap();
    let negotiation = negotiate(world, &buyer, listed.id, automatic(20_000, 80_000)).unwrap();
    assert!(matches!(negotiation.view.status, Status::Agreed { .. }));
    let contract = negotiation.contract.unwrap();
    let half = sign(world, &buyer, contract, &buyer.identity).unwrap();
    assert!(half.execution.is_none(), "one signature starts nothing");
    let signed = sign(world, &seller, contract, &seller.identity).unwrap();
    (seller, buyer, signed)
}

fn meter(
    world: &World,
    who: &Trader,
    contract: u64,
    seq: u64,
    units: u64,
) -> Result<ContractInfo, crate::CoordinatorError> {
    let body = MeterBody { seq, from_ms: seq, to_ms: seq + 1, units };
    call(world, |c, tx, _, now| c.market_meter(tx, &who.party, contract, &body, now))
}

#[test]
fn a_trade_is_escrowed_metered_failed_and_settled_pro_rata_once() {
    let mut world = World::new();
    let (seller, buyer, signed) = signed_trade(&mut world);
    let id = signed.id;
    let price = signed.terms.price.as_i64();
    let execution = signed.execution.expect("started at the second signature");
    assert_eq!(execution.execution.state.name(), "active");
    assert_eq!(execution.escrow[0].amount.as_i64(), price, "the commission is the seller's: the buyer holds the price");
    let held = account(&world, &buyer.party);
    assert_eq!(held.debits_pending.as_i64(), price, "reserved, not yet paid");
    assert_eq!(sign(&world, &seller, id, &seller.identity).unwrap().execution.unwrap().escrow, execution.escrow);

    // Reordered and repeated records; the buyer may not meter; other figures are refused.
    let quarter = 900_000;
    meter(&world, &seller, id, 3, quarter).unwrap();
    meter(&world, &seller, id, 1, quarter).unwrap();
    let again = meter(&world, &seller, id, 3, quarter).unwrap().execution.unwrap().execution;
    assert_eq!((again.units_metered(), again.repeated), (2 * quarter, 1));
    assert_eq!(meter(&world, &buyer, id, 2, 1).unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(meter(&world, &seller, id, 1, 5).unwrap_err().kind, ErrorKind::Conflict);
    let settle = |who: &Trader| call(&world, |c, tx, _, now| c.market_settle(tx, &who.party, id, now));
    assert_eq!(settle(&buyer).unwrap_err().kind, ErrorKind::Conflict, "still active");

    let before = [balance(&world, Some(&seller.party)), balance(&world, Some(&buyer.party)), balance(&world, None)];
    let failed = call(&world, |c, tx, _, now| c.market_fail(tx, &buyer.party, id, "gone", now)).unwrap();
    assert_eq!(failed.execution.unwrap().execution.state.name(), "failed");
    let settled = settle(&buyer).unwrap().execution.unwrap();
    assert_eq!(settled.execution.state.name(), "settled");
    let half = price / 2;
    let commission = signed.terms.commission.as_i64() / 2;
    let after = [balance(&world, Some(&seller.party)), balance(&world, Some(&buyer.party)), balance(&world, None)];
    assert_eq!(
        [after[0] - before[0], after[1] - before[1], after[2] - before[2]],
        [half - commission, -half, commission]
    );
    let held = account(&world, &buyer.party);
    assert_eq!(held.debits_pending, Micros::ZERO, "the rest released");
    // Again, by either party, or by maintenance: nothing moves.
    assert_eq!(settle(&seller).unwrap().execution.unwrap(), settled);
    call(&world, |c, tx, _, now| Ok(c.market_settle_due(tx, now + 1_000_000_000)?)).unwrap();
    let last = [balance(&world, Some(&seller.party)), balance(&world, Some(&buyer.party)), balance(&world, None)];
    assert_eq!(last, after);
    assert!(meter(&world, &seller, id, 4, 1).is_err(), "no metering once settled");
}

#[test]
fn a_buyer_who_cannot_pay_leaves_the_contract_unsigned() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    // A provider buys: its account may not go below zero and it has earned nothing.
    let buyer = join(&mut world, Role::Provider);
    let listed =
        offer(&world, &seller, &memory_offer(100_000, r#"{"mode": "automatic", "reservation": 60000}"#)).unwrap();
    let contract = negotiate(&world, &buyer, listed.id, automatic(20_000, 80_000)).unwrap().contract.unwrap();
    sign(&world, &buyer, contract, &buyer.identity).unwrap();
    let error = sign(&world, &seller, contract, &seller.identity).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert!(error.report.message.contains("cannot hold this contract's price"), "{error}");
    let info = call(&world, |c, tx, _, _| c.market_contract(tx, &seller.party, contract)).unwrap();
    assert_eq!((info.state.as_str(), info.execution.is_none()), ("awaiting_signatures", true));
}

#[test]
fn a_contract_whose_time_is_over_is_settled_by_maintenance() {
    let mut world = World::new();
    let (seller, buyer, signed) = signed_trade(&mut world);
    let id = signed.id;
    meter(&world, &seller, id, 1, signed.terms.duration_ms).unwrap();
    let before = balance(&world, Some(&seller.party));
    world.now = signed.terms.ends_ms();
    call(&world, |c, tx, _, now| Ok(c.market_settle_due(tx, now)?)).unwrap();
    let info = call(&world, |c, tx, _, _| c.market_contract(tx, &buyer.party, id)).unwrap();
    let execution = info.execution.unwrap();
    assert_eq!(execution.execution.state.name(), "settled");
    let earned = signed.terms.price.as_i64() - signed.terms.commission.as_i64();
    assert_eq!(balance(&world, Some(&seller.party)) - before, earned, "delivered in full by metering");
}
