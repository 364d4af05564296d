//! Settlement: metering, pro-rata splits that always balance, keys the ledger accepts, proofs
//! of storage, reproducible draws.

use idlegrid_ledger::IdempotencyKey;
use proptest::prelude::*;

use super::*;
use crate::contract::tests::contract;
use crate::contract::{CommissionPayer, Contract};
use idlegrid_random::Xoshiro256StarStar;

fn record(seq: u64, units: u64) -> MeterRecord {
    MeterRecord { contract: ContractId(9), seq, from_ms: seq * 10, to_ms: seq * 10 + 10, units }
}

fn sum(transfers: &[Transfer]) -> i64 {
    transfers.iter().map(|t| t.amount.as_i64()).sum()
}

#[test]
fn metering_counts_each_record_once_and_refuses_conflicts() {
    let contract = contract();
    let records = [record(1, 100), record(2, 150), record(1, 100), record(3, 50)];
    let due = metered(&contract, 1000, &records).unwrap();
    assert_eq!((due.units, due.repeated), (300, 1));
    assert_eq!(due.amount_due, Micros::new(300_000), "30% of 1.000000");
    let over = metered(&contract, 100, &records).unwrap();
    assert_eq!(over.amount_due, contract.price, "never more than the price");
    let conflicting = [record(1, 100), record(1, 999)];
    assert_eq!(metered(&contract, 1000, &conflicting).unwrap_err(), SettlementError::ConflictingRecord { seq: 1 });
    let foreign = [MeterRecord { contract: ContractId(8), ..record(1, 1) }];
    assert!(matches!(metered(&contract, 1000, &foreign).unwrap_err(), SettlementError::WrongContract { .. }));
    let backwards = [MeterRecord { to_ms: 0, ..record(2, 1) }];
    assert_eq!(metered(&contract, 1000, &backwards).unwrap_err(), SettlementError::BackwardsRecord { seq: 2 });
    assert_eq!(metered(&contract, 0, &[]).unwrap_err(), SettlementError::NothingContracted);
}

#[test]
fn a_contract_failed_partway_is_settled_pro_rata() {
    let contract = contract(); // price 1.0, commission 0.05 paid by the seller, one hour from t=1000
    let escrow = plan_escrow(&contract);
    assert_eq!(escrow.len(), 1);
    assert_eq!((escrow[0].amount, escrow[0].to.clone()), (Micros::new(1_000_000), Account::Escrow(ContractId(9))));
    let quarter = delivered_by_time(&contract, 1000 + 900_000);
    assert_eq!(quarter, Fraction { numerator: 900_000, denominator: 3_600_000 });
    let transfers = plan_settlement(&contract, quarter);
    let amounts: Vec<(&str, i64)> =
        transfers.iter().map(|t| (t.key.rsplit(':').next().unwrap(), t.amount.as_i64())).collect();
    assert_eq!(amounts, [("seller", 237_500), ("platform", 12_500), ("refund", 750_000)]);
    assert_eq!(sum(&transfers), sum(&escrow));
    // Delivered in full: everything to the seller and the platform.
    let full = plan_settlement(&contract, delivered_by_time(&contract, u64::MAX));
    assert_eq!(full.iter().map(|t| t.amount.as_i64()).collect::<Vec<_>>(), [950_000, 50_000]);
    // Nothing delivered: all back to the buyer.
    let none = plan_settlement(&contract, delivered_by_time(&contract, 0));
    assert_eq!((none.len(), none[0].to.clone()), (1, Account::Party(contract.buyer.party.clone())));
}

#[test]
fn settlement_keys_are_stable_and_accepted_by_the_ledger() {
    let contract = Contract { id: ContractId(u64::MAX), ..contract() };
    let first = plan_settlement(&contract, Fraction::new(1, 3));
    // Planned again (a repeated failure report, a restart): the same keys, so the ledger moves
    // nothing twice.
    let again = plan_settlement(&contract, Fraction::new(1, 3));
    assert_eq!(first, again);
    for transfer in first.iter().chain(&plan_escrow(&contract)) {
        IdempotencyKey::new(transfer.key.clone()).unwrap();
    }
    let mut keys: Vec<&str> = first.iter().map(|t| t.key.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), first.len());
}

#[test]
fn money_given_moves_at_the_start() {
    use crate::contract::Consideration;
    let mut contract = contract();
    contract.buyer.gives.push(Consideration::Money { amount: Micros::new(700) });
    let transfers = plan_escrow(&contract);
    assert_eq!(transfers[1].key, "market:contract:9:money:buyer:0");
    assert_eq!(transfers[1].to, Account::Party(contract.seller.party.clone()));
}

#[test]
fn proof_of_storage_passes_with_the_bytes_and_fails_without_them() {
    let blob: Vec<u8> = (0..10_000u32).map(|n| (n * 7 % 251) as u8).collect();
    let mut random = Xoshiro256StarStar::from_seed(3);
    let prepared = prepare_challenges(&blob, 20, 512, &mut random).unwrap();
    for one in &prepared {
        assert!(one.challenge.length >= 1 && one.challenge.length <= 512);
        assert!(one.challenge.offset + one.challenge.length <= blob.len() as u64);
        let answer = answer_challenge(&one.challenge, &blob).unwrap();
        assert!(check_answer(one, &answer));
        assert!(check_answer(one, &answer.to_ascii_uppercase()));
        // A seller who lost a byte of the range fails.
        let mut damaged = blob.clone();
        damaged[one.challenge.offset as usize] ^= 1;
        assert!(!check_answer(one, &answer_challenge(&one.challenge, &damaged).unwrap()));
        assert!(!check_answer(one, ""));
    }
    let nonces: std::collections::BTreeSet<_> = prepared.iter().map(|p| p.challenge.nonce.clone()).collect();
    assert_eq!(nonces.len(), 20);
    let outside = Challenge { offset: 9_990, length: 20, nonce: "00".into() };
    assert!(matches!(answer_challenge(&outside, &blob), Err(SettlementError::OutOfRange { .. })));
    let overflow = Challenge { offset: u64::MAX, length: 2, nonce: "00".into() };
    assert!(answer_challenge(&overflow, &blob).is_err());
    assert_eq!(prepare_challenges(&[], 1, 10, &mut random).unwrap_err(), SettlementError::EmptyBlob);
}

#[test]
fn the_sweepstakes_draw_is_weighted_and_reproducible() {
    let party = |n: u8| PartyId::from_public_key(&[n; 32]);
    let entries = vec![(party(1), 900), (party(2), 100), (party(3), 0)];
    let first = draw(&entries, 2, 42).unwrap();
    assert_eq!(first, draw(&entries, 2, 42).unwrap());
    let reversed: Vec<_> = entries.iter().rev().cloned().collect();
    assert_eq!(first, draw(&reversed, 2, 42).unwrap(), "the order of entries does not matter");
    assert_eq!(first.len(), 2, "a party with no entries is never drawn");
    let mut wins = 0;
    for seed in 0..1000 {
        wins += (draw(&entries, 1, seed).unwrap()[0] == party(1)) as u32;
    }
    assert!((850..=950).contains(&wins), "party 1 holds 90% of the entries and won {wins} of 1000 draws");
    assert_eq!(draw(&[(party(1), 0)], 1, 0).unwrap_err(), SettlementError::NoEntries);
    assert_eq!(draw(&entries, 10, 1).unwrap().len(), 2);
}

proptest! {
    #[test]
    fn settlements_always_balance_the_escrow(
        price in 0i64..1_000_000_000_000,
        commission in 0i64..1_000_000_000,
        payer in 0u8..3,
        numerator in 0u64..10_000_000,
        denominator in 1u64..10_000_000,
    ) {
        let commission_payer = [CommissionPayer::Seller, CommissionPayer::Buyer, CommissionPayer::Shared][payer as usize];
        let contract = Contract { price: Micros::new(price), commission: Micros::new(commission), commission_payer, ..contract() };
        let fraction = Fraction::new(numerator, denominator);
        let transfers = plan_settlement(&contract, fraction);
        prop_assert_eq!(sum(&transfers), sum(&plan_escrow(&contract)));
        prop_assert!(transfers.iter().all(|t| t.amount.is_positive()));
        let seller: i64 = transfers.iter().filter(|t| t.key.ends_with("seller")).map(|t| t.amount.as_i64()).sum();
        prop_assert!(seller <= fraction.of(contract.price).as_i64());
    }
}
