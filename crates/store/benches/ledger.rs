//! Ledger transfers per second on the SQLite store (a file in a temporary folder, WAL, the
//! server's settings), printed as a table; nothing is asserted about time.
//! Run: `cargo bench -p idlegrid-store --bench ledger`.
//!
//! Rows: one transfer per committed transaction (a deposit or a settlement made by a request),
//! the same with a retried idempotency key (nothing moves), and transfers batched in
//! transactions of 100 (how a billing pass posts a journal's lines).

use std::time::Instant;

use idlegrid_ledger::*;
use idlegrid_store::{SqliteStore, Store, StoreError};
use idlegrid_types::PartyId;

const CLIENTS: u8 = 50;
const SINGLE: u64 = 5_000;
const BATCHED: u64 = 50_000;
const BATCH: u64 = 100;

fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn key(text: String) -> IdempotencyKey {
    IdempotencyKey::new(text).expect("bench keys are valid")
}

fn charge(n: u64) -> TransferRequest {
    TransferRequest {
        key: key(format!("charge:{n}")),
        action: Action::Post {
            debit: AccountId::Party(party((n % CLIENTS as u64) as u8)),
            credit: AccountId::Platform,
            amount: Micros::new(1_000 + (n % 7) as i64),
            over_limit: OverLimit::Refuse,
        },
        purpose: Purpose::Computation,
        memo: Memo::default(),
    }
}

fn ledger_failed(error: LedgerError) -> StoreError {
    StoreError::Conflict(error.to_string())
}

fn transfer(store: &SqliteStore, request: TransferRequest, now_ms: u64) -> TransferOutcome {
    store
        .write(|tx| Ledger::new(tx.ledger()).execute(request, now_ms).map_err(ledger_failed))
        .expect("bench transfer")
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("open SQLite");
    store
        .write(|tx| {
            let mut ledger = Ledger::new(tx.ledger());
            ledger.open_system_accounts(0).map_err(ledger_failed)?;
            for n in 0..CLIENTS {
                let account = AccountId::Party(party(n));
                ledger.open_account(account.clone(), Some(Micros::new(1_000_000_000_000)), 0).map_err(ledger_failed)?;
                ledger
                    .deposit(key(format!("deposit:{n}")), account, Micros::new(1_000_000_000_000), 0)
                    .map_err(ledger_failed)?;
            }
            Ok::<_, StoreError>(())
        })
        .expect("setup");

    let mut rows: Vec<(&str, u64, f64)> = Vec::new();

    let started = Instant::now();
    for n in 0..SINGLE {
        assert!(!transfer(&store, charge(n), n).repeated);
    }
    rows.push(("post, one per transaction", SINGLE, started.elapsed().as_secs_f64()));

    let started = Instant::now();
    for n in 0..SINGLE {
        assert!(transfer(&store, charge(n), n).repeated, "a retried key moves nothing");
    }
    rows.push(("retry (same key), one per tx", SINGLE, started.elapsed().as_secs_f64()));

    let started = Instant::now();
    for batch in 0..BATCHED / BATCH {
        store
            .write(|tx| {
                let mut ledger = Ledger::new(tx.ledger());
                for n in 0..BATCH {
                    let n = SINGLE + batch * BATCH + n;
                    ledger.execute(charge(n), n).map_err(ledger_failed)?;
                }
                Ok::<_, StoreError>(())
            })
            .expect("batch");
    }
    rows.push(("post, 100 per transaction", BATCHED, started.elapsed().as_secs_f64()));

    let totals = store.read(|tx| check_balanced(tx.ledger()).map_err(ledger_failed)).expect("balanced");
    println!();
    println!("idlegrid ledger on SQLite (file, WAL, synchronous=NORMAL; {} accounts, balanced)", totals.accounts);
    println!("{:<32} {:>10} {:>10} {:>14}", "operation", "transfers", "seconds", "per second");
    for (operation, count, seconds) in rows {
        println!("{operation:<32} {count:>10} {seconds:>10.3} {:>14.0}", count as f64 / seconds);
    }
}
