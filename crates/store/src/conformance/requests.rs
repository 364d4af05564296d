//! Conformance of deposit and payout requests: the `LedgerStore` request methods one by one,
//! then the ledger's request life cycle over the store, with a rollback.

use idlegrid_ledger::{AccountId, Ledger, Micros, MoneyRequest, RequestFilter, RequestKind, RequestState, TransferId};
use idlegrid_types::Role;

use super::{R, ledger_failed, party};
use crate::{Store, StoreError};

fn request(id: u64, account: &AccountId, kind: RequestKind, reference: &str, created_ms: u64) -> MoneyRequest {
    MoneyRequest {
        id,
        account: account.clone(),
        kind,
        amount: Micros::new(1_000 * id as i64),
        reference: reference.to_string(),
        state: RequestState::Pending,
        created_ms,
        decided_by: None,
        decided_ms: None,
        note: String::new(),
        reservation: None,
        transfer: None,
    }
}

/// The request methods of `LedgerStore`: ids, uniqueness of references, replacement, filters.
pub fn requests_round_trip_and_filter(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let provider = AccountId::Party(party(2, Role::Provider).id);
    let r1 = request(1, &client, RequestKind::Deposit, "INV-1", 100);
    let r2 = request(2, &provider, RequestKind::Payout, "INV-1", 200);
    let r3 = request(3, &client, RequestKind::Payout, "INV-1", 300);
    store
        .write(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(l.next_request_id().map_err(ledger_failed)?, 1);
            assert_eq!(l.request(1).map_err(ledger_failed)?, None);
            l.insert_request(&r1).map_err(ledger_failed)?;
            assert_eq!(l.next_request_id().map_err(ledger_failed)?, 2);
            // The same reference is fine for another account, or another kind.
            l.insert_request(&r2).map_err(ledger_failed)?;
            l.insert_request(&r3).map_err(ledger_failed)?;
            assert_eq!(l.request(1).map_err(ledger_failed)?, Some(r1.clone()));
            assert_eq!(l.request(9).map_err(ledger_failed)?, None);
            let found = l.request_by_reference(&provider, RequestKind::Payout, "INV-1").map_err(ledger_failed)?;
            assert_eq!(found, Some(r2.clone()));
            assert_eq!(l.request_by_reference(&provider, RequestKind::Deposit, "INV-1").map_err(ledger_failed)?, None);
            assert_eq!(l.request_by_reference(&client, RequestKind::Deposit, "INV-2").map_err(ledger_failed)?, None);

            let mut decided = r1.clone();
            decided.state = RequestState::Approved;
            decided.decided_by = Some("operator:x".into());
            decided.decided_ms = Some(150);
            decided.note = "bank transfer 77, \"quoted\"".into();
            decided.transfer = Some(TransferId(4));
            l.put_request(&decided).map_err(ledger_failed)?;
            assert_eq!(l.request(1).map_err(ledger_failed)?, Some(decided.clone()), "put_request replaces");
            let ids = |l: &mut dyn idlegrid_ledger::LedgerStore, filter: RequestFilter| -> R<Vec<u64>> {
                Ok(l.requests(&filter).map_err(ledger_failed)?.iter().map(|r| r.id).collect())
            };
            assert_eq!(ids(l, RequestFilter::default())?, vec![1, 2, 3], "in id order");
            let pending = RequestFilter { state: Some(RequestState::Pending), ..RequestFilter::default() };
            assert_eq!(ids(l, pending.clone())?, vec![2, 3]);
            let of_client = RequestFilter { account: Some(client.clone()), ..RequestFilter::default() };
            assert_eq!(ids(l, of_client.clone())?, vec![1, 3]);
            assert_eq!(ids(l, RequestFilter { state: Some(RequestState::Pending), ..of_client.clone() })?, vec![3]);
            let span = RequestFilter { created_from_ms: 200, created_to_ms: 300, ..RequestFilter::default() };
            assert_eq!(ids(l, span)?, vec![2], "from included, to excluded");
            assert_eq!(ids(l, RequestFilter { limit: 2, ..RequestFilter::default() })?, vec![1, 2]);
            assert_eq!(
                ids(l, RequestFilter { state: Some(RequestState::Rejected), ..RequestFilter::default() })?,
                Vec::<u64>::new()
            );
            Ok(())
        })
        .unwrap();

    // A second request with a used id, or the same account, kind and reference, is refused; a
    // request never inserted cannot be replaced.
    for (duplicate, replace) in [
        (request(4, &client, RequestKind::Deposit, "INV-1", 400), false),
        (request(3, &client, RequestKind::Deposit, "INV-9", 400), false),
        (request(7, &client, RequestKind::Deposit, "INV-7", 400), true),
    ] {
        let refused: R<()> = store.write(|tx| {
            let l = tx.ledger();
            let result = if replace { l.put_request(&duplicate) } else { l.insert_request(&duplicate) };
            assert!(result.is_err(), "{duplicate:?} must be refused");
            Err(StoreError::Conflict("roll back".into()))
        });
        assert!(refused.is_err());
    }
    store
        .read(|tx| -> R<()> {
            assert_eq!(tx.ledger().next_request_id().map_err(ledger_failed)?, 4);
            Ok(())
        })
        .unwrap();
}

/// The ledger's requests over the store: a payout reserved then paid once, a deposit approved
/// once, and a rolled-back request that leaves nothing.
pub fn requests_move_money_once_and_roll_back(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let provider = AccountId::Party(party(2, Role::Provider).id);
    store
        .write(|tx| -> R<()> {
            let mut ledger = Ledger::new(tx.ledger());
            ledger.open_system_accounts(0).map_err(ledger_failed)?;
            ledger.open_account(client.clone(), Some(Micros::ZERO), 0).map_err(ledger_failed)?;
            ledger.open_account(provider.clone(), Some(Micros::ZERO), 0).map_err(ledger_failed)?;
            let deposit =
                ledger.request_deposit(client.clone(), Micros::new(9_000_000), "INV-1", 10).map_err(ledger_failed)?;
            ledger.approve_request(deposit.request.id, "operator:x", "", 11).map_err(ledger_failed)?;
            let twice = ledger.approve_request(deposit.request.id, "operator:x", "", 12).map_err(ledger_failed)?;
            assert!(twice.repeated);
            let barter = idlegrid_ledger::IdempotencyKey::new("earn").unwrap();
            let AccountId::Party(payer) = client.clone() else { unreachable!() };
            let AccountId::Party(payee) = provider.clone() else { unreachable!() };
            // Move money to the provider so that it has something to pay out.
            ledger.barter_credit(barter, &payer, &payee, Micros::new(4_000_000), 13).map_err(ledger_failed)?;
            let payout =
                ledger.request_payout(provider.clone(), Micros::new(3_000_000), "OUT-1", 14).map_err(ledger_failed)?;
            assert_eq!(ledger.account(&provider).map_err(ledger_failed)?.available().unwrap(), Micros::new(1_000_000));
            ledger.approve_request(payout.request.id, "operator:x", "sent", 15).map_err(ledger_failed)?;
            let provider_account = ledger.account(&provider).map_err(ledger_failed)?;
            assert_eq!(
                (provider_account.balance_posted().unwrap(), provider_account.debits_pending),
                (Micros::new(1_000_000), Micros::ZERO)
            );
            ledger.check_balanced().map_err(ledger_failed)?;
            Ok(())
        })
        .unwrap();
    let aborted: R<()> = store.write(|tx| {
        Ledger::new(tx.ledger())
            .request_payout(provider.clone(), Micros::new(500_000), "OUT-2", 20)
            .map_err(ledger_failed)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(aborted.is_err());
    store
        .read(|tx| -> R<()> {
            let mut ledger = Ledger::new(tx.ledger());
            let all = ledger.requests(&RequestFilter::default()).map_err(ledger_failed)?;
            let states: Vec<(&str, RequestState)> = all.iter().map(|r| (r.reference.as_str(), r.state)).collect();
            assert_eq!(states, vec![("INV-1", RequestState::Approved), ("OUT-1", RequestState::Approved)]);
            let provider_account = ledger.account(&provider).map_err(ledger_failed)?;
            assert_eq!(provider_account.debits_pending, Micros::ZERO, "the rolled-back reservation left nothing");
            ledger.check_balanced().map_err(ledger_failed)?;
            Ok(())
        })
        .unwrap();
}
