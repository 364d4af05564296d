//! Property tests of amounts and of money crossing the platform's edge: whatever amounts
//! requests carry (zero, negative, the 64-bit extremes), a bad amount fails its own request
//! and nothing else, the shared accounts never overflow, and deposits and payouts move money
//! only when approved, once, keeping the ledger balanced.

use idlegrid_ledger::*;
use idlegrid_types::PartyId;
use proptest::prelude::*;

const CLIENTS: u8 = 4;
const PROVIDERS: u8 = 2;

fn client(n: u8) -> AccountId {
    AccountId::Party(PartyId::from_public_key(&[n + 1; 32]))
}

fn provider(n: u8) -> AccountId {
    AccountId::Party(PartyId::from_public_key(&[n + 100; 32]))
}

fn setup() -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut ledger = Ledger::new(&mut store);
    ledger.open_system_accounts(0).unwrap();
    for n in 0..CLIENTS {
        ledger.open_account(client(n), None, 0).unwrap();
    }
    for n in 0..PROVIDERS {
        ledger.open_account(provider(n), Some(Micros::ZERO), 0).unwrap();
    }
    store
}

/// Amounts as an attacker or a buggy client sends them: ordinary ones, the bound and its
/// neighbours, and the extremes of the type.
fn any_amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1i64..10_000_000_000,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(0i64),
        1 => Just(AMOUNT_MICROS_MAX),
        1 => Just(AMOUNT_MICROS_MAX + 1),
        1 => (i64::MAX / 2)..i64::MAX,
    ]
}

/// Run one operation in a transaction: commit on success, roll back on error.
fn transaction<T>(
    store: &mut MemoryStore,
    operation: impl FnOnce(&mut Ledger<'_, MemoryStore>) -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    let mut tx = store.clone();
    let result = operation(&mut Ledger::new(&mut tx));
    if result.is_ok() {
        *store = tx;
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Deposits straight into the ledger (the path payments take once approved): any amount is
    /// either moved exactly or refused with an amount error, and an ordinary deposit of any
    /// other client always succeeds afterwards.
    #[test]
    fn a_bad_amount_fails_only_its_own_deposit(amounts in proptest::collection::vec((0..CLIENTS, any_amount()), 1..60)) {
        let mut store = setup();
        for (index, (who, amount)) in amounts.iter().enumerate() {
            let before = Ledger::new(&mut store).account(&client(*who)).unwrap().balance_posted().unwrap();
            let key = IdempotencyKey::new(format!("deposit:{index}")).unwrap();
            let result =
                transaction(&mut store, |l| l.deposit(key, client(*who), Micros::new(*amount), index as u64));
            let after = Ledger::new(&mut store).account(&client(*who)).unwrap().balance_posted().unwrap();
            if (1..=AMOUNT_MICROS_MAX).contains(amount) {
                prop_assert!(result.is_ok(), "{amount}: {:?}", result.err());
                prop_assert_eq!(after.as_i64() - before.as_i64(), *amount);
            } else {
                let error = result.unwrap_err();
                prop_assert!(
                    matches!(error, LedgerError::NonPositiveAmount { .. } | LedgerError::AmountTooLarge { .. }),
                    "{amount}: {error}"
                );
                prop_assert!(error.to_string().contains("amount"), "the error names the amount: {error}");
                prop_assert_eq!(after, before, "a refused deposit moves nothing");
            }
            // Every other client can still pay in an ordinary amount.
            let other = (who + 1) % CLIENTS;
            let key = IdempotencyKey::new(format!("ordinary:{index}")).unwrap();
            let ordinary = transaction(&mut store, |l| l.deposit(key, client(other), Micros::new(1_000_000), 0));
            prop_assert!(ordinary.is_ok(), "one request's amount broke another's: {:?}", ordinary.err());
            check_balanced(&mut store).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }

    /// Deposit and payout requests with any amounts, decided in any order, repeated: money
    /// moves only on approval, exactly once per request; payouts never take a provider below
    /// zero; the ledger balances after every step.
    #[test]
    fn requests_move_money_once_and_only_when_approved(
        steps in proptest::collection::vec((0u8..6, 0..CLIENTS.max(PROVIDERS), any_amount(), 0usize..8), 1..80),
    ) {
        let mut store = setup();
        // Providers earn something to pay out.
        for n in 0..PROVIDERS {
            let key = IdempotencyKey::new(format!("pay:{n}")).unwrap();
            let earn = TransferRequest {
                key,
                action: Action::Post { debit: AccountId::Platform, credit: provider(n), amount: Micros::new(50_000_000), over_limit: OverLimit::Refuse },
                purpose: Purpose::ProviderPay,
                memo: Memo::default(),
            };
            transaction(&mut store, |l| l.execute(earn, 0)).unwrap();
        }
        for (index, (action, who, amount, pick)) in steps.into_iter().enumerate() {
            let now = index as u64 + 1;
            let known = Ledger::new(&mut store).requests(&RequestFilter::default()).unwrap();
            let chosen = (!known.is_empty()).then(|| known[pick % known.len()].clone());
            let result = match action {
                0 => transaction(&mut store, |l| l.request_deposit(client(who % CLIENTS), Micros::new(amount), &format!("D{index}"), now)).map(|_| ()),
                1 => transaction(&mut store, |l| l.request_payout(provider(who % PROVIDERS), Micros::new(amount), &format!("P{index}"), now)).map(|_| ()),
                2 | 3 => match &chosen {
                    Some(r) => transaction(&mut store, |l| l.approve_request(r.id, "operator:t", "", now)).map(|_| ()),
                    None => Ok(()),
                },
                4 => match &chosen {
                    Some(r) => transaction(&mut store, |l| l.reject_request(r.id, "operator:t", "no", now)).map(|_| ()),
                    None => Ok(()),
                },
                _ => transaction(&mut store, |l| l.credit(client(who % CLIENTS), Micros::new(amount), &format!("C{index}"), "operator:t", "", now)).map(|_| ()),
            };
            if let Err(error) = &result {
                prop_assert!(
                    matches!(
                        error,
                        LedgerError::NonPositiveAmount { .. }
                            | LedgerError::AmountTooLarge { .. }
                            | LedgerError::OverLimit { .. }
                            | LedgerError::RequestDecided { .. }
                            | LedgerError::TooManyPendingRequests { .. }
                    ),
                    "unexpected error: {error}"
                );
            }
            check_balanced(&mut store).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // What crossed the edge is exactly what approved requests say.
            let requests = Ledger::new(&mut store).requests(&RequestFilter::default()).unwrap();
            let approved = |kind| -> i64 {
                requests.iter().filter(|r| r.kind == kind && r.state == RequestState::Approved).map(|r| r.amount.as_i64()).sum()
            };
            let external = Ledger::new(&mut store).account(&AccountId::External).unwrap();
            prop_assert_eq!(external.debits_posted.as_i64(), approved(RequestKind::Deposit));
            prop_assert_eq!(external.credits_posted.as_i64(), approved(RequestKind::Payout));
            let pending_payouts: i64 = requests
                .iter()
                .filter(|r| r.kind == RequestKind::Payout && r.state == RequestState::Pending)
                .map(|r| r.amount.as_i64())
                .sum();
            prop_assert_eq!(external.credits_pending.as_i64(), pending_payouts, "waiting payouts are reserved");
            for n in 0..PROVIDERS {
                let account = Ledger::new(&mut store).account(&provider(n)).unwrap();
                prop_assert!(account.available().unwrap().as_i64() >= 0, "a provider was paid out beyond its earnings");
            }
            for request in &requests {
                prop_assert!(request.amount.is_positive() && request.amount.as_i64() <= AMOUNT_MICROS_MAX);
            }
        }
    }
}
