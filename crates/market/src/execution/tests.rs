//! Execution: the state machine's paths, repeated and reordered messages, and properties over
//! any message order: the ledger balanced, nothing paid twice, pro-rata bounds.

use std::collections::{BTreeMap, BTreeSet};

use idlegrid_ledger::Micros;
use proptest::prelude::*;

use super::*;
use crate::contract::tests::contract;
use crate::contract::{CommissionPayer, Contract};
use crate::settlement::Account;

fn record(seq: u64, units: u64) -> MeterRecord {
    MeterRecord { contract: ContractId(9), seq, from_ms: 1_000 + seq * 10, to_ms: 1_000 + seq * 10 + 10, units }
}

fn meter(seq: u64, units: u64) -> ExecEvent {
    ExecEvent::Meter { record: record(seq, units) }
}

/// Every event in turn, refused ones skipped; all transfers made, escrow first.
fn run(contract: &Contract, events: &[ExecEvent]) -> (Execution, Vec<Transfer>) {
    let (mut execution, mut transfers) = Execution::start(contract, 1_000);
    for event in events {
        if let Ok((next, outcome)) = execution.apply(contract, event) {
            execution = next;
            transfers.extend(outcome.transfers);
        }
    }
    (execution, transfers)
}

/// Balances after the transfers, by account.
fn balances(transfers: &[Transfer]) -> BTreeMap<Account, i64> {
    let mut balances = BTreeMap::new();
    for transfer in transfers {
        *balances.entry(transfer.from.clone()).or_default() -= transfer.amount.as_i64();
        *balances.entry(transfer.to.clone()).or_default() += transfer.amount.as_i64();
    }
    balances
}

#[test]
fn metered_delivery_is_settled_by_what_was_metered() {
    let contract = contract(); // one hour of memory for 1.000000, commission 0.05 from the seller
    assert_eq!(metering_units(&contract), (3_600_000, "ms"));
    let half = 1_800_000;
    let events = [meter(2, half / 2), meter(1, half / 2), meter(2, half / 2), ExecEvent::TimeUp { at_ms: 3_601_000 }];
    let (execution, _) = run(&contract, &events);
    assert_eq!((execution.state, execution.repeated, execution.units_metered()), (ExecState::Delivered, 1, half));
    let (settled, outcome) = execution.apply(&contract, &ExecEvent::Settle { at_ms: 3_700_000 }).unwrap();
    assert_eq!(settled.state, ExecState::Settled);
    let amounts: Vec<_> = outcome.transfers.iter().map(|t| (t.key.as_str(), t.amount.as_i64())).collect();
    assert_eq!(
        amounts,
        [
            ("market:contract:9:settle:seller", 475_000),
            ("market:contract:9:settle:platform", 25_000),
            ("market:contract:9:settle:refund", 500_000)
        ]
    );
    // Settling again moves nothing; metering after the end is refused.
    let (_, again) = settled.apply(&contract, &ExecEvent::Settle { at_ms: 3_800_000 }).unwrap();
    assert!(again.repeated && again.transfers.is_empty());
    assert!(matches!(settled.apply(&contract, &meter(3, 1)).unwrap_err(), ExecError::Closed { .. }));
    // ...but a record already counted, sent again, is only a repeat.
    assert!(settled.apply(&contract, &meter(1, half / 2)).unwrap().1.repeated);
}

#[test]
fn a_failure_without_records_is_settled_by_time_and_confirmation_pays_in_full() {
    let contract = contract();
    let fail = ExecEvent::Fail { at_ms: 1_000 + 900_000, reason: "engine gone".into() };
    let (failed, _) = run(&contract, &[fail.clone(), ExecEvent::Confirm { at_ms: 2_000_000 }]);
    assert_eq!(failed.state, ExecState::Failed, "a later confirmation does not undo the failure");
    assert_eq!(failed.delivered_fraction(&contract), Fraction { numerator: 900_000, denominator: 3_600_000 });
    let (confirmed, _) = run(&contract, &[meter(1, 10), ExecEvent::Confirm { at_ms: 5_000 }, fail]);
    assert_eq!((confirmed.state, confirmed.delivered_fraction(&contract)), (ExecState::Delivered, Fraction::WHOLE));
    let active = Execution::start(&contract, 1_000).0;
    assert_eq!(
        active.apply(&contract, &ExecEvent::Settle { at_ms: 1 }).unwrap_err(),
        ExecError::NotEnded { contract: ContractId(9) }
    );
}

#[test]
fn bad_records_are_refused_with_a_reason() {
    let contract = contract();
    let execution = Execution::start(&contract, 1_000).0.apply(&contract, &meter(1, 5)).unwrap().0;
    let refuse = |event: ExecEvent| execution.apply(&contract, &event).unwrap_err();
    assert_eq!(refuse(meter(1, 6)), ExecError::ConflictingRecord { seq: 1 });
    assert!(matches!(refuse(meter(0, 1)), ExecError::BadRecord { .. }));
    assert!(matches!(refuse(meter(2, 4_000_000)), ExecError::BadRecord { .. }));
    let foreign = MeterRecord { contract: ContractId(8), ..record(2, 1) };
    assert!(matches!(refuse(ExecEvent::Meter { record: foreign }), ExecError::WrongContract { .. }));
    let backwards = MeterRecord { to_ms: 0, ..record(2, 1) };
    assert!(matches!(refuse(ExecEvent::Meter { record: backwards }), ExecError::BadRecord { .. }));
}

fn event() -> impl Strategy<Value = ExecEvent> {
    prop_oneof![
        4 => (1u64..8, 0u64..1_000_000).prop_map(|(seq, units)| meter(seq, units * seq % 900_000)),
        1 => (0u64..4_000_000).prop_map(|at_ms| ExecEvent::Confirm { at_ms }),
        1 => (0u64..4_000_000).prop_map(|at_ms| ExecEvent::TimeUp { at_ms }),
        1 => (0u64..4_000_000).prop_map(|at_ms| ExecEvent::Fail { at_ms, reason: "gone".into() }),
        2 => (0u64..4_000_000).prop_map(|at_ms| ExecEvent::Settle { at_ms }),
    ]
}

proptest! {
    #[test]
    fn any_message_order_balances_and_never_pays_twice(
        events in proptest::collection::vec(event(), 0..30),
        price in 0i64..10_000_000_000,
        commission in 0i64..100_000_000,
        payer in 0u8..3,
    ) {
        let commission_payer = [CommissionPayer::Seller, CommissionPayer::Buyer, CommissionPayer::Shared][payer as usize];
        let contract = Contract { price: Micros::new(price), commission: Micros::new(commission), commission_payer, ..contract() };
        // Every message sent twice, the copies later: repeats change nothing.
        let mut doubled = events.clone();
        doubled.extend(events.iter().cloned());
        let (once, paid_once) = run(&contract, &events);
        let (twice, paid_twice) = run(&contract, &doubled);
        prop_assert_eq!(&once.records, &twice.records);
        if once.state == ExecState::Settled {
            prop_assert_eq!(&paid_once, &paid_twice, "a settled contract pays nothing more");
        }
        // Keys are unique: the ledger would refuse nothing, and pay nothing twice.
        let keys: BTreeSet<&str> = paid_twice.iter().map(|t| t.key.as_str()).collect();
        prop_assert_eq!(keys.len(), paid_twice.len());
        // Balanced: the escrow is empty once settled, never negative before.
        let balances = balances(&paid_twice);
        let escrow = balances.get(&Account::Escrow(ContractId(9))).copied().unwrap_or(0);
        prop_assert!(escrow >= 0);
        prop_assert_eq!(balances.values().sum::<i64>(), 0);
        if twice.state == ExecState::Settled {
            prop_assert_eq!(escrow, 0);
            // Pro rata: the seller never earns more than its share of the price.
            let fraction = twice.fraction.unwrap();
            let seller = balances.get(&Account::Party(contract.seller.party.clone())).copied().unwrap_or(0);
            prop_assert!(seller >= 0 && seller <= fraction.of(contract.price).as_i64());
            let platform = balances.get(&Account::Platform).copied().unwrap_or(0);
            prop_assert!(platform <= contract.commission.as_i64());
        } else {
            prop_assert_eq!(escrow, price + contract.buyer_commission().as_i64());
        }
    }
}

#[test]
fn credits_sold_move_at_the_start_and_the_contract_is_delivered_at_once() {
    use crate::resource::{Measurements, ResourceDeclaration, classify};
    let attributes = [("kind", crate::Value::Text("credit".into())), ("amount", crate::Value::Number(25.0))]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    let declaration = ResourceDeclaration { category: "money".into(), attributes, private_share: 0.0 };
    let (credits, _) = classify(&declaration, &Measurements::new()).unwrap();
    let mut contract = contract();
    contract.seller.gives = vec![crate::contract::Consideration::Resource { resource: credits }];
    let (execution, transfers) = Execution::start(&contract, 1_000);
    assert_eq!((execution.state, execution.unit.as_str()), (ExecState::Delivered, "delivery"));
    let credit = transfers.iter().find(|t| t.key.contains("credit")).unwrap();
    assert_eq!(credit.amount, Micros::new(25_000_000));
    assert_eq!(credit.to, Account::Party(contract.buyer.party.clone()));
    let (settled, outcome) = execution.apply(&contract, &ExecEvent::Settle { at_ms: 1_001 }).unwrap();
    assert_eq!((settled.state, settled.fraction), (ExecState::Settled, Some(Fraction::WHOLE)));
    assert_eq!(outcome.transfers.iter().map(|t| t.amount.as_i64()).sum::<i64>(), contract.price.as_i64());
}
