//! Contracts: canonical bytes, signatures by both parties, and every refusal.

use proptest::prelude::*;

use super::*;
use crate::resource::tests::examples;
use crate::resource::{Measurements, classify};

pub(crate) fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub(crate) fn side(n: u8, gives: Vec<Consideration>) -> ContractParty {
    let public_key = PublicKey(key(n).verifying_key().to_bytes());
    ContractParty { party: PartyId::from_public_key(&public_key.0), public_key, gives }
}

/// Memory for money through the coordinator, with a commission paid by the seller.
pub(crate) fn contract() -> Contract {
    let (memory, _) = classify(&examples()[1], &Measurements::new()).unwrap();
    Contract {
        id: ContractId(9),
        mode: BarterMode::PeerWithPeerCoordinated,
        seller: side(1, vec![Consideration::Resource { resource: memory }]),
        buyer: side(2, vec![]),
        price: Micros::new(1_000_000),
        commission: Micros::new(50_000),
        commission_payer: CommissionPayer::Seller,
        starts_ms: 1_000,
        duration_ms: 3_600_000,
        offer: Some(OfferId(4)),
        negotiation: Some(NegotiationId(5)),
        created_ms: 900,
    }
}

fn signed(contract: Contract) -> SignedContract {
    SignedContract { seller_signature: contract.sign(&key(1)), buyer_signature: contract.sign(&key(2)), contract }
}

#[test]
fn a_contract_signed_by_both_parties_verifies() {
    let signed = signed(contract());
    signed.verify().unwrap();
    let json = serde_json::to_string(&signed).unwrap();
    let stored: SignedContract = serde_json::from_str(&json).unwrap();
    assert_eq!(stored, signed);
    stored.verify().unwrap();
}

#[test]
fn each_side_signs_on_its_own_and_only_with_its_key() {
    let contract = contract();
    contract.verify_signature(Role::Seller, &contract.sign(&key(1))).unwrap();
    contract.verify_signature(Role::Buyer, &contract.sign(&key(2))).unwrap();
    assert_eq!(
        contract.verify_signature(Role::Buyer, &contract.sign(&key(1))).unwrap_err(),
        ContractError::BadSignature { role: "buyer" },
        "the seller's signature is not the buyer's"
    );
    assert_eq!(
        contract.verify_signature(Role::Seller, &contract.sign(&key(3))).unwrap_err(),
        ContractError::BadSignature { role: "seller" }
    );
}

#[test]
fn a_contract_signed_with_a_wrong_key_is_refused() {
    let mut forged = signed(contract());
    forged.buyer_signature = forged.contract.sign(&key(3));
    assert_eq!(forged.verify().unwrap_err(), ContractError::BadSignature { role: "buyer" });
    // A key that is not the party's, even with a matching signature.
    let mut swapped = contract();
    swapped.seller.public_key = PublicKey(key(3).verifying_key().to_bytes());
    let swapped = SignedContract { seller_signature: swapped.sign(&key(3)), ..signed(swapped) };
    assert!(matches!(swapped.verify().unwrap_err(), ContractError::KeyMismatch { role: "seller", .. }));
    // The terms altered after signing.
    let mut altered = signed(contract());
    altered.contract.price = Micros::new(1);
    assert_eq!(altered.verify().unwrap_err(), ContractError::BadSignature { role: "seller" });
    let mut garbage = signed(contract());
    garbage.seller_signature = "zz".into();
    assert_eq!(garbage.verify().unwrap_err(), ContractError::BadSignature { role: "seller" });
}

#[test]
fn barter_modes_follow_their_commission_rule() {
    let direct = Contract { mode: BarterMode::PeerWithPeerDirect, ..contract() };
    assert!(matches!(direct.validate(), Err(ContractError::Invalid(reason)) if reason.contains("commission")));
    Contract { commission: Micros::ZERO, ..direct }.validate().unwrap();
    let coordinator = Contract { mode: BarterMode::CoordinatorWithPeer, commission: Micros::ZERO, ..contract() };
    coordinator.validate().unwrap();
    for bad in [
        Contract { buyer: side(1, vec![]), ..contract() },
        Contract { price: Micros::new(-1), ..contract() },
        Contract { duration_ms: 0, ..contract() },
        Contract { buyer: side(2, vec![Consideration::Money { amount: Micros::ZERO }]), ..contract() },
        Contract { seller: side(1, vec![]), price: Micros::ZERO, ..contract() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert_eq!(
        Contract { commission_payer: CommissionPayer::Shared, commission: Micros::new(5), ..contract() }
            .buyer_commission(),
        Micros::new(2)
    );
}

#[test]
fn the_signed_bytes_are_canonical() {
    let bytes = contract().signing_bytes();
    assert!(bytes.starts_with(b"idlegrid-market-contract-v1\0"));
    assert_eq!(contract().signing_bytes(), bytes, "the same contract, the same bytes");
    // Through JSON and back: the same bytes.
    let again: Contract = serde_json::from_str(&serde_json::to_string(&contract()).unwrap()).unwrap();
    assert_eq!(again.signing_bytes(), bytes);
    assert_ne!(Contract { offer: None, ..contract() }.signing_bytes(), bytes);
    assert_ne!(Contract { commission_payer: CommissionPayer::Buyer, ..contract() }.signing_bytes(), bytes);
}

proptest! {
    #[test]
    fn any_change_of_terms_changes_the_signed_bytes(price in 0i64..10_000_000, duration in 1u64..10_000_000, starts in 0u64..1u64 << 40) {
        let base = contract();
        let changed = Contract { price: Micros::new(price), duration_ms: duration, starts_ms: starts, ..base.clone() };
        let same = price == base.price.as_i64() && duration == base.duration_ms && starts == base.starts_ms;
        prop_assert_eq!(changed.signing_bytes() == base.signing_bytes(), same);
    }
}
