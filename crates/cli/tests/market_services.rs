//! The market's services carried out end to end with a real server and the CLI: a sweepstakes
//! prize paid to the winners through the ledger (once, however often the draw or the
//! settlement is asked for again), and the notices both parties get when a contract starts,
//! fails and is settled.

mod common;
mod market_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idlegrid_ledger::AccountId;
use idlegrid_protocol::auth::Identity;
use idlegrid_server::Server;
use idlegrid_types::PartyId;
use market_common::*;

/// Notices received by webhook, by the path they were sent to (`/hook/NAME`): (kind, name).
type Received = Arc<Mutex<BTreeMap<String, Vec<(String, String)>>>>;

/// A webhook receiver on loopback; its URL prefix and what it heard.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook/{name}",
            axum::routing::post(move |axum::extract::Path(name): axum::extract::Path<String>, body: String| {
                let received = received.clone();
                async move {
                    let notice: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let said = (notice["kind"].as_str().unwrap().to_string(), notice["name"].to_string());
                    received.lock().unwrap().entry(name).or_default().push(said);
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn party(home: &Path) -> PartyId {
    Identity::load_or_create(&home.join("client.key")).unwrap().id().clone()
}

/// Wait until `who` heard a notice of `kind` naming `contract`.
async fn heard(received: &Received, who: &str, kind: &str, contract: &str) {
    let about = format!("contract {contract} ");
    wait_for(&format!("{who} to hear {kind} of contract {contract}"), || {
        let received = received.lock().unwrap();
        received.get(who).is_some_and(|notices| notices.iter().any(|(k, name)| k == kind && name.contains(&about)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_parties_hear_when_a_contract_starts_fails_and_is_settled() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (hook, received) = receiver().await;
    let mut config = server_config(dir);
    config.tls = None;
    config.coordinator.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
    config.notice_interval = Duration::from_millis(100);
    let server = Server::start(config).await.unwrap();
    let url = server.url();
    let (seller, buyer) = (dir.join("seller"), dir.join("buyer"));
    for (home, name) in [(&seller, "seller"), (&buyer, "buyer")] {
        let (ok, out, err) = cli(home, &url, &["account", "notices", "--webhook", &format!("{hook}/{name}")]);
        assert!(ok, "{out}{err}");
    }
    let memory = ["memory", "memory_mb=256", "read_ns=80", "write_ns=90", "duration_s=3600", "--price", "2"];
    let offer = number(&market(&seller, &url, &["offer"].into_iter().chain(memory).collect::<Vec<_>>()), "offer");
    let out = market(&buyer, &url, &["negotiate", &offer, "--opening", "0.1", "--reservation", "10", "--sign"]);
    let contract = number(&out, "contract");
    market(&seller, &url, &["contracts", &contract, "--sign"]);
    for who in ["seller", "buyer"] {
        heard(&received, who, "market_started", &contract).await;
    }
    market(&seller, &url, &["fail", &contract, "--reason", "the machine is needed back"]);
    for who in ["seller", "buyer"] {
        heard(&received, who, "market_failed", &contract).await;
        heard(&received, who, "market_settled", &contract).await;
    }
    let notices = received.lock().unwrap().clone();
    let failed = notices["buyer"].iter().find(|(kind, _)| kind == "market_failed").unwrap();
    assert!(failed.1.contains("the seller reports: the machine is needed back"), "{failed:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweepstakes_prize_moves_to_the_winner_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config.clone()).await.unwrap();
    let url = server.url();
    let (banker, buyer) = (dir.join("banker"), dir.join("buyer"));
    let entries = ["offer", "money", "kind=sweepstakes", "amount=3", "--price", "0.5"];
    let offer = number(&market(&banker, &url, &entries), "offer");
    let out = market(&buyer, &url, &["negotiate", &offer, "--opening", "0.1", "--reservation", "10", "--sign"]);
    let contract = number(&out, "contract");
    market(&banker, &url, &["contracts", &contract, "--sign"]);
    let db = store(&config.database, dir);
    let terms = terms(&db, &contract);
    let accounts = [AccountId::Party(party(&banker)), AccountId::Party(party(&buyer)), AccountId::Platform];
    let before = balances(&db, &accounts);

    let err = cli(&banker, &url, &["market", "draw", "--prize=-1"]).2;
    assert!(err.contains("--prize") && err.contains("negative"), "{err}");
    let out = market(&banker, &url, &["draw", "--winners", "1", "--prize", "2.5"]);
    assert!(out.contains("prize 2.500000 paid to each winner"), "{out}");
    let winner = out.lines().find_map(|l| l.trim().strip_prefix("winner ")).unwrap_or_else(|| panic!("{out}"));
    assert!(winner.contains(&party(&buyer).to_string()), "the only entrant wins: {out}");
    let err = cli(&banker, &url, &["market", "draw", "--prize", "2.5"]).2;
    assert!(err.contains("no sweepstakes contract under way"), "drawn once: {err}");

    let out = wait_some("the drawn contract to be settled", || {
        let out = market(&buyer, &url, &["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("prize 2.500000 paid to each winner"), "shown with the contract: {out}");
    let after = balances(&db, &accounts);
    let mut expected = settlement_gains(&terms, (1, 1));
    let prize = 2_500_000;
    expected[0] -= prize; // the banker (seller) pays the prize
    expected[1] += prize; // to the buyer, who won it
    assert_eq!(gained(&before, &after), expected, "the price settled and the prize paid once");
    market(&banker, &url, &["settle", &contract]);
    market(&buyer, &url, &["settle", &contract]);
    assert_eq!(balances(&db, &accounts), after, "nothing is paid twice");
    drop(db);
    server.shutdown().await;
}

/// The engine's status page as JSON.
async fn engine_status(address: std::net::SocketAddr) -> serde_json::Value {
    let text = reqwest::get(format!("http://{address}/status.json")).await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The served contract `contract` on the status page, once it reads `state`.
async fn served_as(address: std::net::SocketAddr, contract: &str, state: &str) -> serde_json::Value {
    let id: u64 = contract.parse().unwrap();
    wait_some(&format!("the status page to show contract {contract} {state}"), || async move {
        let status = engine_status(address).await;
        status["contracts"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["contract"] == id && c["state"] == state).cloned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sellers_status_page_lists_the_contracts_its_engine_serves() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config).await.unwrap();
    let url = server.url();
    let mut engine_config = engine_config(&url, dir, "seller");
    engine_config.owner.status_listen = Some("127.0.0.1:0".into());
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let address = engine.status_addr().expect("the status page listens");
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let memory = ["memory", "memory_mb=128", "read_ns=80", "write_ns=90", "duration_s=3600"];
    let contract = trade.contract(&memory, "3");
    let buyer = party(&trade.buyer).to_string();

    let shown = served_as(address, &contract, "active").await;
    assert_eq!(shown["category"], "memory", "{shown}");
    assert_eq!(shown["buyer"], buyer.as_str(), "{shown}");
    assert_eq!(shown["metered"], "0 of 3600000 ms (0%)", "{shown}");
    trade.seller(&["meter", &contract, "1", "900000", "--from-ms", "1", "--to-ms", "2"]);
    wait_until("the status page to show the metered share", || async {
        engine_status(address).await["contracts"].as_array().is_some_and(|list| {
            list.iter().any(|c| {
                c["contract"] == contract.parse::<u64>().unwrap() && c["metered"] == "900000 of 3600000 ms (25%)"
            })
        })
    })
    .await;
    trade.buyer(&["confirm", &contract]);
    served_as(address, &contract, "settled").await;
    let page = reqwest::get(format!("http://{address}/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("Contracts served") && page.contains(&buyer), "{page}");
    engine.shutdown().await;
    server.shutdown().await;
}

/// Submit `misbehave` in mode `oom` (it allocates until refused) asking 512 MB per task, as
/// the client of `home`; what `job results` says.
fn hoard_memory(home: &Path, url: &str, dir: &Path) -> String {
    let job_file = dir.join("hoard.toml");
    let job = format!(
        "name = \"hoard\"\nexecutable = \"{}\"\n[tasks]\ncount = 1\nparams = \"mode=oom\"\n[limits]\nmemory_bytes_max = {}\n",
        example_task("misbehave").display(),
        512u64 << 20
    );
    std::fs::write(&job_file, job).unwrap();
    let (ok, out, err) = cli(home, url, &["job", "submit", job_file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let id = out.split_whitespace().skip_while(|w| *w != "job").nth(1).unwrap_or_else(|| panic!("{out}")).to_string();
    let results = dir.join(format!("results-{id}"));
    let (_, out, err) = cli(home, url, &["job", "results", &id, "--out", results.to_str().unwrap()]);
    format!("{out}{err}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sold_raises_the_buyers_task_limit_on_the_sellers_engine_and_no_one_elses() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config).await.unwrap();
    let url = server.url();
    // The owner lets a task use 64 MB; the engine has 1 GB.
    let mut engine_config = engine_config(&url, dir, "seller");
    engine_config.owner.task_memory_bytes_max = 64 << 20;
    engine_config.owner.memory_bytes_max = 1 << 30;
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let contract = trade.contract(&["memory", "memory_mb=200", "read_ns=80", "write_ns=90", "duration_s=3600"], "2");

    let bought = hoard_memory(&trade.buyer, &url, dir);
    assert!(bought.contains(&format!("memory limit of {} bytes", 200u64 << 20)), "the buyer's 200 MB: {bought}");
    let other = hoard_memory(&dir.join("other"), &url, dir);
    assert!(other.contains(&format!("memory limit of {} bytes", 64u64 << 20)), "the owner's 64 MB: {other}");
    assert!(engine.stats().tasks_failed >= 2, "both ran on the seller's engine");

    // The contract was carried out while the engine was there: delivered in full when confirmed.
    trade.buyer(&["confirm", &contract]);
    let out = wait_some("the memory contract to be settled", || {
        let out = trade.buyer(&["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("settled 1/1 delivered"), "{out}");
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peripheral_sold_is_served_by_the_handler_on_the_sellers_engine() {
    use std::os::unix::fs::PermissionsExt;
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config).await.unwrap();
    let url = server.url();
    // The owner's "printer": a script that writes its input in capitals.
    let script = dir.join("printer.sh");
    std::fs::write(&script, "#!/bin/sh\ntr a-z A-Z < \"$1\" > \"$2\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut engine_config = engine_config(&url, dir, "seller");
    let handler = idlegrid_engine::market_peripheral::PeripheralHandler {
        command: script,
        timeout_secs: 60,
        output_bytes_max: 1024,
    };
    engine_config.owner.peripherals.insert("printer".into(), handler);
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), seller: dir.join("seller") };
    let contract = trade.contract(&["peripherals", "kind=printer", "count=1", "duration_s=3600"], "1");

    let (input, output) = (dir.join("letter.txt"), dir.join("printed.txt"));
    std::fs::write(&input, "hello from the buyer\n").unwrap();
    let use_it = ["peripheral", "use", contract.as_str(), "--input", input.to_str().unwrap(), "--out"];
    let out = trade.buyer(&[&use_it[..], &[output.to_str().unwrap()]].concat());
    assert!(out.contains(&format!("use 1 of contract {contract} (printer)")), "{out}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "HELLO FROM THE BUYER\n");
    let again = trade.buyer(&[&use_it[..], &[output.to_str().unwrap()]].concat());
    assert!(again.contains("use 2 of"), "each use is numbered: {again}");
    let err = trade.refused(true, &[&use_it[..], &[output.to_str().unwrap()]].concat());
    assert!(err.contains("only the buyer"), "{err}");

    // Once the contract is over, its peripheral is no longer served.
    trade.buyer(&["confirm", &contract]);
    let err = trade.refused(false, &[&use_it[..], &[output.to_str().unwrap()]].concat());
    assert!(err.contains("is delivered") || err.contains("is settled"), "{err}");
    engine.shutdown().await;
    server.shutdown().await;
}
