//! Conformance of the market's tables: offers with their change order, requests, negotiations
//! with rounds and whose answer they await, contracts with both signatures; updates of rows
//! never inserted and repeated ids refused; a rolled-back transaction leaves no market row.

use idlegrid_types::{PartyId, Role};

use super::{R, party};
use crate::{ContractRow, ExecutionRow, MarketTable, NegotiationRow, OfferRow, RequestRow, Store, StoreError};

fn offer(id: u64, owner: &PartyId, category: &str) -> OfferRow {
    OfferRow {
        id,
        owner: owner.clone(),
        category: category.into(),
        state: "open".into(),
        quantity: 1536.5,
        value_micros: 1_250_000,
        price_micros: 1_500_000,
        private_share: 0.25,
        measured: vec!["mflops".into()],
        declared: vec!["cores".into(), "duration_s".into()],
        created_ms: 10,
        updated_ms: 10,
        seq: 0,
        body: format!("{{\"offer\":{id}}}"),
    }
}

fn negotiation(id: u64, seller: &PartyId, buyer: &PartyId, deadline_ms: u64) -> NegotiationRow {
    NegotiationRow {
        id,
        offer: 1,
        seller: seller.clone(),
        buyer: buyer.clone(),
        state: "open".into(),
        rounds: 0,
        awaiting: Some(seller.clone()),
        deadline_ms,
        created_ms: 20,
        updated_ms: 20,
        contract: None,
        body: "{}".into(),
    }
}

fn contract(id: u64, seller: &PartyId, buyer: &PartyId) -> ContractRow {
    ContractRow {
        id,
        offer: Some(1),
        negotiation: Some(1),
        seller: seller.clone(),
        buyer: buyer.clone(),
        state: "awaiting_signatures".into(),
        price_micros: 900_000,
        commission_micros: 18_000,
        created_ms: 30,
        signed_ms: None,
        terms: "{\"terms\":true}".into(),
        seller_signature: None,
        buyer_signature: None,
    }
}

/// Every market row round-trips; offers are followed in the order they were written.
pub fn market_rows_round_trip_in_order(store: &impl Store) {
    let seller = party(1, Role::Provider).id;
    let buyer = party(2, Role::Client).id;
    store
        .write(|tx| -> R<()> {
            let m = tx.market();
            for table in [MarketTable::Offers, MarketTable::Requests, MarketTable::Negotiations, MarketTable::Contracts]
            {
                assert_eq!(m.next_id(table)?, 1, "{table:?}");
            }
            let s1 = m.insert_offer(&offer(1, &seller, "computing"))?;
            let s2 = m.insert_offer(&offer(2, &seller, "memory"))?;
            let s3 = m.insert_offer(&offer(3, &buyer, "files"))?;
            assert!(s1 < s2 && s2 < s3);
            assert_eq!(m.next_id(MarketTable::Offers)?, 4);
            let mut read = m.offer(1)?.unwrap();
            assert_eq!(read.seq, s1);
            read.seq = 0;
            assert_eq!(read, offer(1, &seller, "computing"));
            assert_eq!(m.offer(9)?, None);
            let owned: Vec<u64> = m.offers_of(&seller, 10)?.iter().map(|o| o.id).collect();
            assert_eq!(owned, vec![1, 2]);
            assert_eq!(m.offers_of(&seller, 1)?.len(), 1);

            // An update moves the offer to the end of the change order.
            let mut withdrawn = offer(1, &seller, "computing");
            withdrawn.state = "withdrawn".into();
            withdrawn.measured = vec![];
            withdrawn.updated_ms = 15;
            let s4 = m.update_offer(&withdrawn)?;
            assert!(s4 > s3);
            let changed: Vec<(u64, String)> =
                m.offers_changed_since(0, 10)?.into_iter().map(|o| (o.id, o.state)).collect();
            assert_eq!(changed, vec![(2, "open".into()), (3, "open".into()), (1, "withdrawn".into())]);
            let after: Vec<u64> = m.offers_changed_since(s3, 10)?.iter().map(|o| o.id).collect();
            assert_eq!(after, vec![1]);
            assert_eq!(m.offers_changed_since(s2, 1)?.len(), 1, "limit");
            assert!(m.offer(1)?.unwrap().measured.is_empty());
            assert_eq!(m.open_offers_of(&seller)?, 1, "the withdrawn one does not count");
            assert_eq!(m.open_offers_of(&buyer)?, 1);

            let request = RequestRow {
                id: 1,
                requester: buyer.clone(),
                category: "memory".into(),
                state: "open".into(),
                created_ms: 12,
                body: "{\"q\":1}".into(),
            };
            m.insert_request(&request)?;
            assert_eq!(m.request(1)?, Some(request.clone()));
            assert_eq!(m.open_requests_of(&buyer)?, 1);
            let withdrawn_request = RequestRow { state: "withdrawn".into(), ..request.clone() };
            m.update_request(&withdrawn_request)?;
            assert_eq!(m.open_requests_of(&buyer)?, 0, "the withdrawn one does not count");
            assert_eq!(m.open_requests_of(&seller)?, 0);
            assert_eq!(m.requests_of(&buyer, 10)?, vec![withdrawn_request]);
            assert!(m.requests_of(&seller, 10)?.is_empty());

            m.insert_negotiation(&negotiation(1, &seller, &buyer, 1_000))?;
            m.insert_negotiation(&negotiation(2, &seller, &buyer, 500))?;
            let mut agreed = negotiation(1, &seller, &buyer, 1_000);
            agreed.state = "agreed".into();
            agreed.rounds = 7;
            agreed.awaiting = None;
            agreed.contract = Some(1);
            m.update_negotiation(&agreed)?;
            assert_eq!(m.negotiation(1)?, Some(agreed.clone()));
            assert_eq!(m.negotiations_of(&buyer, 10)?.len(), 2);
            assert_eq!(m.negotiations_of(&seller, 10)?[0], agreed);
            let due: Vec<u64> = m.open_negotiations_due(1_000, 10)?.iter().map(|n| n.id).collect();
            assert_eq!(due, vec![2], "only open ones");
            assert!(m.open_negotiations_due(499, 10)?.is_empty());

            m.insert_contract(&contract(1, &seller, &buyer))?;
            let mut signed = contract(1, &seller, &buyer);
            signed.seller_signature = Some("ab".repeat(64));
            signed.buyer_signature = Some("cd".repeat(64));
            signed.state = "signed".into();
            signed.signed_ms = Some(40);
            m.update_contract(&signed)?;
            assert_eq!(m.contract(1)?, Some(signed.clone()));
            assert_eq!(m.contracts_of(&seller, 10)?, vec![signed.clone()]);
            assert_eq!(m.contracts_of(&buyer, 10)?, vec![signed]);
            assert_eq!(m.contract(2)?, None);
            Ok(())
        })
        .unwrap();
    executions_are_replaced_and_come_due(store);
}

fn execution(contract: u64, state: &str, ends_ms: u64) -> ExecutionRow {
    ExecutionRow { contract, state: state.into(), ends_ms, updated_ms: 50, body: format!("{{\"c\":{contract}}}") }
}

/// A contract's execution is written again in place; active ones come due when their time is
/// over, delivered and failed ones until settled.
fn executions_are_replaced_and_come_due(store: &impl Store) {
    store
        .write(|tx| -> R<()> {
            let m = tx.market();
            assert_eq!(m.execution(1)?, None);
            for (contract, state, ends_ms) in
                [(1, "active", 100), (2, "active", 300), (3, "failed", 900), (4, "settled", 10), (5, "delivered", 900)]
            {
                m.put_execution(&execution(contract, state, ends_ms))?;
            }
            let due = |m: &mut dyn crate::MarketTx, now_ms, limit| -> R<Vec<u64>> {
                Ok(m.executions_due(now_ms, limit)?.iter().map(|e| e.contract).collect())
            };
            assert_eq!(due(m, 100, 10)?, vec![1, 3, 5]);
            assert_eq!(due(m, 99, 10)?, vec![3, 5]);
            assert_eq!(due(m, 100, 1)?, vec![1], "limit");
            let settled = ExecutionRow { updated_ms: 60, ..execution(3, "settled", 900) };
            m.put_execution(&settled)?;
            assert_eq!(m.execution(3)?, Some(settled));
            assert_eq!(due(m, 1_000, 10)?, vec![1, 2, 5]);
            let active: Vec<u64> = m.executions_in_state("active", 0, 10)?.iter().map(|e| e.contract).collect();
            assert_eq!(active, vec![1, 2]);
            assert_eq!(m.executions_in_state("active", 1, 10)?.len(), 1, "after contract 1");
            assert_eq!(m.executions_in_state("settled", 0, 1)?[0].contract, 3, "limit");
            Ok(())
        })
        .unwrap();
    let failed: R<()> = store.write(|tx| {
        tx.market().put_execution(&execution(5, "settled", 900))?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(failed.is_err());
    let kept = store.write(|tx| tx.market().execution(5)).unwrap();
    assert_eq!(kept.map(|e| e.state), Some("delivered".into()), "a rolled-back write leaves the execution as it was");
}

/// Rows never inserted cannot be updated, ids in use cannot be inserted again, and a rolled-back
/// transaction leaves no market row.
pub fn market_refuses_conflicts_and_rolls_back(store: &impl Store) {
    let seller = party(1, Role::Provider).id;
    let buyer = party(2, Role::Client).id;
    let conflict = |result: Result<(), StoreError>| matches!(result, Err(StoreError::Conflict(_)));
    store
        .write(|tx| -> R<()> {
            let m = tx.market();
            m.insert_offer(&offer(1, &seller, "memory"))?;
            Ok(())
        })
        .unwrap();
    assert!(conflict(store.write(|tx| tx.market().insert_offer(&offer(1, &seller, "memory")).map(drop))));
    assert!(conflict(store.write(|tx| tx.market().update_offer(&offer(5, &seller, "memory")).map(drop))));
    assert!(conflict(store.write(|tx| tx.market().update_negotiation(&negotiation(5, &seller, &buyer, 9)))));
    assert!(conflict(store.write(|tx| tx.market().update_contract(&contract(5, &seller, &buyer)))));
    let request = RequestRow {
        id: 5,
        requester: buyer.clone(),
        category: "money".into(),
        state: "open".into(),
        created_ms: 1,
        body: "{}".into(),
    };
    assert!(conflict(store.write(|tx| tx.market().update_request(&request))));

    let failed: R<()> = store.write(|tx| {
        let m = tx.market();
        m.insert_offer(&offer(2, &seller, "storage"))?;
        m.insert_negotiation(&negotiation(1, &seller, &buyer, 9))?;
        m.insert_contract(&contract(1, &seller, &buyer))?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(failed.is_err());
    store
        .write(|tx| -> R<()> {
            let m = tx.market();
            assert_eq!(m.offer(2)?, None, "a failed transaction leaves no offer");
            assert_eq!(m.negotiation(1)?, None);
            assert_eq!(m.contract(1)?, None);
            assert_eq!(m.offers_changed_since(0, 10)?.len(), 1);
            assert_eq!(m.offer(1)?.unwrap().category, "memory", "the first offer is unchanged");
            Ok(())
        })
        .unwrap();
}
