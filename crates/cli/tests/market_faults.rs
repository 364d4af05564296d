//! Market contracts under faults, end to end with a real server, a real engine and the CLI: the
//! seller's engine killed mid-contract (stopped at once, as a crash would: failed, settled pro
//! rata for the time it was there); metering records repeated, reordered and sent at once by
//! several processes (each counted once); the server stopped between delivery and settlement
//! and started again on the same data folder, on SQLite and PostgreSQL (settled once). After
//! each, nothing is paid twice and the ledger is balanced.

mod common;
mod market_common;

use std::path::Path;
use std::time::Duration;

use common::*;
use idlegrid_protocol::auth::Identity;
use idlegrid_server::{Server, ServerConfig, ServerHandle};
use idlegrid_store::{PostgresStore, Store};
use market_common::*;

async fn start(config: &ServerConfig) -> ServerHandle {
    Server::start(config.clone()).await.unwrap()
}

fn plain_config(dir: &Path) -> ServerConfig {
    let mut config = server_config(dir);
    config.tls = None;
    config
}

/// Wait until `contract` is settled; the `market contracts` output.
async fn settled(trade: &Trade, contract: &str) -> String {
    wait_some("the server to settle the contract", || {
        let out = trade.buyer(&["contracts", contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sellers_engine_killed_mid_contract_fails_it_and_settles_pro_rata_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = plain_config(dir);
    config.coordinator.provider_silence_ms_max = 6_000;
    let server = start(&config).await;
    let url = server.url();
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir, "seller")).await.unwrap();
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let db = store(&config.database, dir);
    wait_until("the seller's engine to register", || {
        let key = trade.seller.join("identity.key");
        let known = key.exists()
            && Identity::load_or_create(&key)
                .ok()
                .and_then(|id| db.write(|tx| tx.provider(id.id())).ok().flatten())
                .is_some();
        async move { known }
    })
    .await;
    let contract = trade.contract(&["computing", "mflops=1000", "cores=1", "duration_s=3600"], "1");
    let terms = terms(&db, &contract);
    let seller = terms.seller.party.clone();
    wait_until("the seller's engine to keep in touch for a while after the contract started", || {
        let heard = db.write(|tx| tx.provider(&seller)).unwrap().map_or(0, |row| row.last_contact_ms);
        async move { heard > terms.starts_ms + 3_000 }
    })
    .await;
    let accounts = accounts(&terms);
    let before = balances(&db, &accounts);
    let out = trade.buyer(&["contracts", &contract]);
    assert!(out.contains("execution active"), "still under way when the engine dies: {out}");

    engine.kill();
    let out = settled(&trade, &contract).await;
    assert!(out.contains("failed: the seller's engine fell silent"), "{out}");
    let share = settled_share(&out);
    assert!(share.0 > 0 && share.0 < share.1, "pro rata, for the time the engine was there: {out}");
    let after = balances(&db, &accounts);
    assert_eq!(gained(&before, &after), settlement_gains(&terms, share), "{out}");
    assert!(after[0] > before[0], "the seller earned its share");

    // Settling and failing again move nothing.
    trade.seller(&["settle", &contract]);
    trade.buyer(&["settle", &contract]);
    trade.buyer(&["fail", &contract, "--reason", "again"]);
    assert_eq!(balances(&db, &accounts), after);
    drop(db);
    server.shutdown().await;
}

/// Send metering record `seq` for `units` ms as the seller, from a process of its own.
fn meter(trade: &Trade, contract: &str, seq: u64, units: u64) -> String {
    let (seq, units) = (seq.to_string(), units.to_string());
    trade.seller(&["meter", contract, &seq, &units, "--from-ms", "1", "--to-ms", "2"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metering_records_repeated_reordered_and_concurrent_are_counted_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = plain_config(dir);
    let server = start(&config).await;
    let trade = Trade { url: server.url(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let memory = ["memory", "memory_mb=1024", "read_ns=80", "write_ns=90", "duration_s=3600"];
    let contract = trade.contract(&memory, "6");
    let db = store(&config.database, dir);
    let terms = terms(&db, &contract);
    let accounts = accounts(&terms);
    let before = balances(&db, &accounts);

    // Out of order, with repeats.
    for seq in [3, 1, 3, 2, 1] {
        meter(&trade, &contract, seq, 600_000);
    }
    // The same record from four processes at once.
    std::thread::scope(|scope| {
        let sending: Vec<_> = (0..4).map(|_| scope.spawn(|| meter(&trade, &contract, 4, 600_000))).collect();
        for sender in sending {
            sender.join().unwrap();
        }
    });
    let out = trade.buyer(&["contracts", &contract]);
    assert!(out.contains("metered 2400000 of 3600000 ms in 4 records (5 repeated)"), "{out}");

    // The buyer reports the rest missing: settled for the four records, exactly.
    trade.buyer(&["fail", &contract, "--reason", "the memory went away"]);
    let out = settled(&trade, &contract).await;
    let share = settled_share(&out);
    assert_eq!(share.0 * 3, share.1 * 2, "two thirds metered: {out}");
    let after = balances(&db, &accounts);
    assert_eq!(gained(&before, &after), settlement_gains(&terms, share), "{out}");

    // A record arriving after the settlement is refused or ignored; nothing moves.
    let err = trade.refused(true, &["meter", &contract, "5", "1", "--from-ms", "1", "--to-ms", "2"]);
    assert!(err.contains("is settled"), "{err}");
    meter(&trade, &contract, 1, 600_000);
    trade.seller(&["settle", &contract]);
    assert_eq!(balances(&db, &accounts), after);
    drop(db);
    server.shutdown().await;
}

/// Delivered under one server, settled by the next on the same data (and database), once.
async fn restarted_between_delivery_and_settlement(config: ServerConfig, dir: &Path) {
    // The first server never gets to settle on its own: its maintenance is an hour away.
    let mut idle = config.clone();
    idle.maintenance_interval = Duration::from_secs(3600);
    let first = start(&idle).await;
    let mut trade = Trade { url: first.url(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let memory = ["memory", "memory_mb=512", "read_ns=80", "write_ns=90", "duration_s=3600"];
    let contract = trade.contract(&memory, "4");
    meter(&trade, &contract, 1, 3_600_000);
    let out = trade.buyer(&["confirm", &contract]);
    assert!(out.contains("execution delivered"), "delivered, not settled yet: {out}");
    let db = store(&config.database, dir);
    let terms = terms(&db, &contract);
    let accounts = accounts(&terms);
    let before = balances(&db, &accounts);
    drop(db);
    first.shutdown().await;

    // A new server on the same data folder settles it on its own, once.
    let second = start(&config).await;
    trade.url = second.url();
    let out = settled(&trade, &contract).await;
    assert_eq!(settled_share(&out), (1, 1), "{out}");
    let db = store(&config.database, dir);
    let after = balances(&db, &accounts);
    assert_eq!(gained(&before, &after), settlement_gains(&terms, (1, 1)), "{out}");
    assert!(after[0] > before[0], "the seller was paid");
    trade.seller(&["settle", &contract]);
    trade.buyer(&["confirm", &contract]);
    drop(db);
    second.shutdown().await;

    // And once more after another restart.
    let third = start(&config).await;
    trade.url = third.url();
    trade.buyer(&["settle", &contract]);
    let db = store(&config.database, dir);
    assert_eq!(balances(&db, &accounts), after, "nothing is paid twice");
    drop(db);
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_between_delivery_and_settlement_settles_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    restarted_between_delivery_and_settlement(plain_config(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_between_delivery_and_settlement_settles_once_on_postgres() {
    logs();
    let url = std::env::var("IDLEGRID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("market_faults_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    drop(
        PostgresStore::connect_in_schema(&url, &schema)
            .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed"),
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().unwrap();
    let mut config = plain_config(dir.path());
    config.database = format!("{url}{separator}options=-csearch_path%3D{schema}");
    restarted_between_delivery_and_settlement(config, dir.path()).await;
    PostgresStore::drop_schema(&url, &schema).unwrap();
}
