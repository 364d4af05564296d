//! Ledger transfers per second on SQLite (a file in a temporary folder, WAL, the server's
//! settings) and on PostgreSQL (a fresh schema, dropped afterwards), printed as one table;
//! nothing is asserted about time.
//! Run: `cargo bench -p idlegrid-store --bench ledger`. PostgreSQL is at
//! `postgres://postgres@127.0.0.1:5432/test` unless IDLEGRID_TEST_POSTGRES names another URL;
//! if it cannot be reached, only SQLite is measured (and the reason printed).
//!
//! Rows: one transfer per committed transaction (a deposit or a settlement made by a request),
//! the same with a retried idempotency key (nothing moves), and transfers batched in
//! transactions of 100 (how a billing pass posts a journal's lines).

use std::time::Instant;

use idlegrid_ledger::*;
use idlegrid_store::{PostgresStore, SqliteStore, Store, StoreError};
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

fn transfer(store: &impl Store, request: TransferRequest, now_ms: u64) -> TransferOutcome {
    store.write(|tx| Ledger::new(tx.ledger()).execute(request, now_ms).map_err(ledger_failed)).expect("bench transfer")
}

/// (operation, transfers, seconds) per row, and the number of accounts of the balanced ledger.
fn run(store: &impl Store) -> (Vec<(&'static str, u64, f64)>, u64) {
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

    let mut rows = Vec::new();

    let started = Instant::now();
    for n in 0..SINGLE {
        assert!(!transfer(store, charge(n), n).repeated);
    }
    rows.push(("post, one per transaction", SINGLE, started.elapsed().as_secs_f64()));

    let started = Instant::now();
    for n in 0..SINGLE {
        assert!(transfer(store, charge(n), n).repeated, "a retried key moves nothing");
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
    (rows, totals.accounts)
}

/// The URL for printing: `postgres://user:secret@host` becomes `postgres://user:***@host`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            format!("{scheme}://{}:***@{host}", user.split(':').next().unwrap_or(""))
        }
        _ => url.to_string(),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let sqlite = SqliteStore::open(&dir.path().join("ledger.db")).expect("open SQLite");
    let (sqlite_rows, accounts) = run(&sqlite);

    let url = std::env::var("IDLEGRID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("igbench_{}", uuid::Uuid::new_v4().simple());
    let postgres = match PostgresStore::connect_in_schema(&url, &schema) {
        Ok(store) => {
            let measured = run(&store);
            drop(store);
            if let Err(error) = PostgresStore::drop_schema(&url, &schema) {
                eprintln!("could not drop the benchmark schema {schema}: {error}");
            }
            Ok(measured.0)
        }
        Err(error) => {
            // The schema may exist half made.
            let _ = PostgresStore::drop_schema(&url, &schema);
            Err(error)
        }
    };

    println!();
    println!("idlegrid ledger: {accounts} accounts, balanced after every run");
    println!("  SQLite: file, WAL, synchronous=NORMAL, one connection");
    println!(
        "  PostgreSQL: {}, fresh schema, pooled connections, advisory write lock per transaction",
        without_password(&url)
    );
    println!(
        "{:<30} {:>9} | {:>8} {:>10} | {:>8} {:>10}",
        "operation", "transfers", "SQLite s", "per second", "PG s", "per second"
    );
    for (i, (operation, count, seconds)) in sqlite_rows.into_iter().enumerate() {
        let pg = match &postgres {
            Ok(rows) => {
                let (_, _, pg_seconds) = rows[i];
                format!("{pg_seconds:>8.3} {:>10.0}", count as f64 / pg_seconds)
            }
            Err(_) => format!("{:>8} {:>10}", "-", "-"),
        };
        println!("{operation:<30} {count:>9} | {seconds:>8.3} {:>10.0} | {pg}", count as f64 / seconds);
    }
    if let Err(error) = postgres {
        println!("PostgreSQL not measured: {error}");
    }
}
