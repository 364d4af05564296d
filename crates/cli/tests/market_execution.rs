//! Market contracts carried out end to end, from the command line against a real server
//! (SQLite, and PostgreSQL): a peer-with-peer trade through the coordinator started by both
//! signatures (escrow), metered by the seller (repeated and conflicting records), failed by the
//! buyer and settled pro rata with the commission in the platform's account, across a server
//! restart and settled again without paying twice; a contract both peers signed directly,
//! registered (twice) and settled in full without commission; and one whose time ran out,
//! settled by the server on its own. The ledger stays balanced throughout.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use idlegrid_ledger::{AccountId, Micros};
use idlegrid_market::contract::{BarterMode, CommissionPayer, Consideration, Contract, ContractParty, PublicKey};
use idlegrid_market::contract::{ContractId, SignedContract};
use idlegrid_market::resource::classify;
use idlegrid_market::settlement::{Fraction, plan_settlement};
use idlegrid_market::{Measurements, ResourceDeclaration, Value};
use idlegrid_protocol::auth::Identity;
use idlegrid_server::{Server, ServerConfig, ServerHandle};
use idlegrid_store::{AnyStore, PostgresStore, Store};

/// A client home and a provider (an engine's data folder) using the CLI.
struct Parties {
    url: String,
    client_home: PathBuf,
    engine_dir: PathBuf,
}

impl Parties {
    fn market(&self, provider: bool, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["market"];
        if provider {
            all.extend_from_slice(&["--engine-data", self.engine_dir.to_str().unwrap()]);
        }
        all.extend_from_slice(args);
        cli(&self.client_home, &self.url, &all)
    }

    fn client(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.market(false, args);
        assert!(ok, "market {args:?} failed: {err}\n{out}");
        out
    }

    fn provider(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.market(true, args);
        assert!(ok, "market {args:?} as the provider failed: {err}\n{out}");
        out
    }

    fn refused(&self, provider: bool, args: &[&str]) -> String {
        let (ok, out, err) = self.market(provider, args);
        assert!(!ok, "market {args:?} should be refused:\n{out}");
        err
    }
}

/// The number after `word ` at the start of a line of `out`.
fn number(out: &str, word: &str) -> String {
    let prefix = format!("{word} ");
    out.lines()
        .find_map(|line| line.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| panic!("no '{word} N' in:\n{out}"))
        .to_string()
}

/// The database as the test reads it (the server's own, opened beside it).
fn store(database: &str, dir: &Path) -> AnyStore {
    AnyStore::open(database, &dir.join("server").join("state.db")).unwrap()
}

/// Balances of the accounts named, and the ledger checked balanced.
fn balances(store: &AnyStore, accounts: &[AccountId]) -> Vec<i64> {
    store
        .write(|tx| -> Result<Vec<i64>, idlegrid_store::StoreError> {
            idlegrid_ledger::check_balanced(tx.ledger()).expect("the ledger is balanced");
            Ok(accounts
                .iter()
                .map(|id| {
                    let account = tx.ledger().account(id).unwrap();
                    account.map_or(0, |a| a.balance_posted().unwrap().as_i64())
                })
                .collect())
        })
        .unwrap()
}

fn terms(store: &AnyStore, id: u64) -> Contract {
    let row = store.write(|tx| tx.market().contract(id)).unwrap().expect("the contract is stored");
    serde_json::from_str(&row.terms).unwrap()
}

async fn start(config: &ServerConfig) -> ServerHandle {
    Server::start(config.clone()).await.unwrap()
}

/// A trade through the coordinator: signed, metered, failed, settled pro rata across a restart.
async fn coordinated(config: &ServerConfig, parties: &mut Parties, dir: &Path, first: ServerHandle) {
    let p = &*parties;
    let memory = ["memory", "memory_mb=1024", "read_ns=80", "write_ns=90", "duration_s=3600"];
    let mut args = vec!["offer"];
    args.extend_from_slice(&memory);
    args.extend_from_slice(&["--price", "10", "--reservation", "6"]);
    let offer = number(&p.provider(&args), "offer");
    let out = p.client(&["negotiate", &offer, "--opening", "2", "--reservation", "8", "--rounds", "10", "--sign"]);
    let contract = number(&out, "contract");
    assert!(!out.contains("execution"), "not started before both sign: {out}");
    let out = p.provider(&["contracts", &contract, "--sign"]);
    assert!(out.contains("execution active  (peer with peer through the coordinator)"), "{out}");
    assert!(out.contains("metered 0 of 3600000 ms"), "{out}");

    // Metering by the seller only; a record sent again counts once, other figures are refused.
    let meter = |seq| ["meter", contract.as_str(), seq, "900000", "--from-ms", "1", "--to-ms", "2"];
    let err = p.refused(false, &meter("1"));
    assert!(err.contains("only the seller"), "{err}");
    p.provider(&meter("2"));
    p.provider(&meter("1"));
    let out = p.provider(&meter("1"));
    assert!(out.contains("metered 1800000 of 3600000 ms in 2 records (1 repeated)"), "{out}");
    let err = p.refused(true, &["meter", &contract, "1", "5", "--from-ms", "1", "--to-ms", "2"]);
    assert!(err.contains("other figures"), "{err}");
    let err = p.refused(false, &["settle", &contract]);
    assert!(err.contains("still active"), "{err}");

    let id: u64 = contract.parse().unwrap();
    let db = store(&config.database, dir);
    let terms = terms(&db, id);
    let (seller, buyer) = (AccountId::Party(terms.seller.party.clone()), AccountId::Party(terms.buyer.party.clone()));
    let accounts = [seller, buyer, AccountId::Platform];
    let before = balances(&db, &accounts);
    drop(db);

    // The buyer reports the rest not delivered (the server settles a failed contract on its
    // own, or when asked); the server restarts meanwhile.
    let out = p.client(&["fail", &contract, "--reason", "the memory went away"]);
    assert!(out.contains("execution failed") && out.contains("the memory went away"), "{out}");
    first.shutdown().await;

    let server = start(config).await;
    parties.url = server.url();
    let p = &*parties;
    let out = p.client(&["settle", &contract]);
    assert!(out.contains("execution settled") && out.contains("settled 1800000/3600000 delivered"), "{out}");
    assert!(out.contains("to platform (commission)") && out.contains("to buyer (refund)"), "{out}");
    // Settling again, or failing again, moves nothing.
    p.provider(&["settle", &contract]);
    p.client(&["fail", &contract]);
    let db = store(&config.database, dir);
    let after = balances(&db, &accounts);
    let half = plan_settlement(&terms, Fraction::new(1, 2));
    let paid = |purpose: &str| half.iter().find(|t| t.key.ends_with(purpose)).map_or(0, |t| t.amount.as_i64());
    assert!(paid("platform") > 0, "a commission was due: {half:?}");
    assert_eq!(after[0] - before[0], paid("seller"), "the seller is paid half, less its commission");
    assert_eq!(after[2] - before[2], paid("platform"), "the commission is in the platform's account");
    assert_eq!(after[1] - before[1], -(paid("seller") + paid("platform")), "the buyer paid half");
    assert_eq!(
        paid("seller") + paid("platform"),
        Fraction::new(1, 2).of(terms.price).as_i64(),
        "pro rata: half the price"
    );
    drop(db);
    let out = p.client(&["contracts"]);
    assert!(out.contains(&format!("contract {contract}  signed")) && out.contains("execution settled"), "{out}");
    server.shutdown().await;
}

/// A memory contract the two peers signed themselves, for `price`, over `duration_ms`.
fn direct(client: &Identity, engine: &Identity, id: u64, price: i64, duration_ms: u64) -> SignedContract {
    let attributes =
        [("memory_mb", 512.0), ("read_ns", 80.0), ("write_ns", 90.0), ("duration_s", duration_ms as f64 / 1000.0)]
            .into_iter()
            .map(|(name, value)| (name.to_string(), Value::Number(value)))
            .collect();
    let declaration = ResourceDeclaration { category: "memory".into(), attributes, private_share: 0.0 };
    let (memory, _) = classify(&declaration, &Measurements::new()).unwrap();
    let side = |identity: &Identity, gives| ContractParty {
        party: identity.id().clone(),
        public_key: PublicKey(identity.public_key()),
        gives,
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let contract = Contract {
        id: ContractId(id),
        mode: BarterMode::PeerWithPeerDirect,
        seller: side(engine, vec![Consideration::Resource { resource: memory }]),
        buyer: side(client, vec![]),
        price: Micros::new(price),
        commission: Micros::ZERO,
        commission_payer: CommissionPayer::Seller,
        starts_ms: now,
        duration_ms,
        offer: None,
        negotiation: None,
        created_ms: now,
    };
    let bytes = contract.signing_bytes();
    SignedContract { seller_signature: engine.sign_bytes(&bytes), buyer_signature: client.sign_bytes(&bytes), contract }
}

/// Contracts registered directly: no commission; confirmed and settled in full, or settled by
/// the server when their time is over.
async fn registered(config: &ServerConfig, parties: &mut Parties, dir: &Path) {
    let server = start(config).await;
    parties.url = server.url();
    let p = &*parties;
    let client = Identity::load_or_create(&p.client_home.join("client.key")).unwrap();
    let engine = Identity::load_or_create(&p.engine_dir.join("identity.key")).unwrap();
    let accounts = [AccountId::Party(engine.id().clone()), AccountId::Party(client.id().clone()), AccountId::Platform];
    let db = store(&config.database, dir);
    let before = balances(&db, &accounts);

    let file = dir.join("direct.json");
    let signed = direct(&client, &engine, 500, 3_000_000, 3_600_000);
    std::fs::write(&file, serde_json::to_string(&signed).unwrap()).unwrap();
    let out = p.client(&["register", file.to_str().unwrap()]);
    assert!(out.contains("contract 500  signed") && out.contains("commission 0.000000"), "{out}");
    assert!(out.contains("execution active  (peer with peer, registered directly)"), "{out}");
    assert!(out.contains("escrow 3.000000"), "{out}");
    let again = p.provider(&["register", file.to_str().unwrap()]);
    assert!(again.contains("escrow 3.000000"), "registered again: the same contract, held once: {again}");
    let err = p.refused(true, &["confirm", "500"]);
    assert!(err.contains("only the buyer"), "{err}");
    p.client(&["confirm", "500"]);
    let out = p.provider(&["settle", "500"]);
    assert!(out.contains("settled 1/1 delivered") && out.contains("paid 3.000000 to seller"), "{out}");
    assert!(!out.contains("platform"), "no commission: {out}");
    let after = balances(&db, &accounts);
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [3_000_000, -3_000_000, 0]);

    // A forged signature is refused, with nothing stored.
    let mut forged = direct(&client, &engine, 501, 1_000_000, 3_600_000);
    forged.seller_signature = client.sign_bytes(&forged.contract.signing_bytes());
    std::fs::write(&file, serde_json::to_string(&forged).unwrap()).unwrap();
    let err = p.refused(false, &["register", file.to_str().unwrap()]);
    assert!(err.contains("seller's signature does not match"), "{err}");

    // Time over with nothing metered: the server settles on its own, all back to the buyer.
    let short = direct(&client, &engine, 502, 2_000_000, 1_000);
    std::fs::write(&file, serde_json::to_string(&short).unwrap()).unwrap();
    p.client(&["register", file.to_str().unwrap()]);
    let out = wait_some("the server to settle contract 502 when its time is over", || {
        let out = p.client(&["contracts", "502"]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("settled 0/1000 delivered") && out.contains("paid 2.000000 to buyer (refund)"), "{out}");
    let last = balances(&db, &accounts);
    assert_eq!(last, after, "a full refund leaves every balance as it was");
    drop(db);
    server.shutdown().await;
}

async fn carried_out(config: ServerConfig, dir: &Path) {
    let first = start(&config).await;
    let mut parties = Parties { url: first.url(), client_home: dir.join("client"), engine_dir: dir.join("engine") };
    coordinated(&config, &mut parties, dir, first).await;
    registered(&config, &mut parties, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_are_carried_out_and_settled_on_sqlite() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    carried_out(config, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_are_carried_out_and_settled_on_postgres() {
    logs();
    let url = std::env::var("IDLEGRID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("market_execution_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    drop(
        PostgresStore::connect_in_schema(&url, &schema)
            .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed"),
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.database = format!("{url}{separator}options=-csearch_path%3D{schema}");
    carried_out(config, dir.path()).await;
    PostgresStore::drop_schema(&url, &schema).unwrap();
}

/// Coordinator with peer: the platform buys an engine's computing for credits; the engine then
/// disappears, the server finds it silent, fails the contract at its last contact and pays the
/// seller pro rata from the platform's account, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_buys_computing_and_pays_pro_rata_when_the_engine_disappears() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    config.coordinator.provider_silence_ms_max = 6_000;
    let server = start(&config).await;
    let url = server.url();
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir, "seller")).await.unwrap();
    let p = Parties { url: url.clone(), client_home: dir.join("client"), engine_dir: dir.join("seller") };
    let seller = Identity::load_or_create(&p.engine_dir.join("identity.key")).unwrap().id().clone();

    let out = p.provider(&["offer", "computing", "mflops=1000", "cores=1", "duration_s=3600"]);
    let offer = number(&out, "offer");
    let err = p.refused(false, &["sell-to-platform", &offer]);
    assert!(err.contains("you have no offer"), "only the owner sells: {err}");
    let out = p.provider(&["sell-to-platform", &offer, "--sign"]);
    let contract = number(&out, "contract");
    assert!(out.contains(&format!("contract {contract}  signed")), "the platform signed, then the seller: {out}");
    assert!(out.contains("execution active  (coordinator with peer)") && out.contains("commission 0.000000"), "{out}");
    let err = p.refused(true, &["sell-to-platform", &offer]);
    assert!(err.contains("only an open offer"), "sold once: {err}");

    // The engine keeps in touch after the contract started, then disappears.
    let db = store(&config.database, dir);
    let terms = terms(&db, contract.parse().unwrap());
    wait_until("the seller's engine to poll after the contract started", || {
        let heard = db.write(|tx| tx.provider(&seller)).unwrap().map_or(0, |row| row.last_contact_ms);
        async move { heard > terms.starts_ms }
    })
    .await;
    let accounts = [AccountId::Party(seller.clone()), AccountId::Platform];
    let before = balances(&db, &accounts);
    engine.shutdown().await;
    let out = wait_some("the server to find the engine silent and settle", || {
        let out = p.provider(&["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("failed: the seller's engine fell silent"), "{out}");
    let after = balances(&db, &accounts);
    let paid = after[0] - before[0];
    assert!(paid > 0 && paid < terms.price.as_i64(), "pro rata, for the time the engine was there: {paid}");
    assert_eq!(after[1] - before[1], -paid, "the platform paid it");
    // Settling again changes nothing.
    p.provider(&["settle", &contract]);
    assert_eq!(balances(&db, &accounts), after);
    drop(db);
    server.shutdown().await;
}

fn submit(home: &Path, url: &str, job_file: &Path) -> String {
    let (ok, out, err) = cli(home, url, &["job", "submit", job_file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    out.split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in: {out}"))
        .to_string()
}

/// Computing sold peer to peer: while the contract is active the seller's engine runs the
/// buyer's jobs and keeps another client's waiting (`job explain` names the reservation); once
/// the buyer confirms delivery the contract is settled (commission to the platform) and the
/// engine is free for everyone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computing_sold_runs_the_buyers_jobs_on_the_sellers_engine() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = start(&config).await;
    let url = server.url();
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir, "seller")).await.unwrap();
    let p = Parties { url: url.clone(), client_home: dir.join("buyer"), engine_dir: dir.join("seller") };

    let out = p.provider(&["offer", "computing", "mflops=1000", "cores=1", "duration_s=3600", "--price", "1"]);
    let offer = number(&out, "offer");
    let out = p.client(&["negotiate", &offer, "--opening", "0.5", "--reservation", "2", "--rounds", "10", "--sign"]);
    let contract = number(&out, "contract");
    let out = p.provider(&["contracts", &contract, "--sign"]);
    assert!(out.contains("execution active"), "{out}");

    let job_file = dir.join("pi.toml");
    let pi = example_task("pi");
    let job = format!(
        "name = \"pi\"\nexecutable = \"{}\"\n[tasks]\ncount = 2\nparams = \"samples=1000 seed={{index}}\"\n",
        pi.display()
    );
    std::fs::write(&job_file, job).unwrap();
    let other_home = dir.join("other");
    let waiting = submit(&other_home, &url, &job_file);
    let explained = wait_some("job explain to name the reservation", || {
        let (ok, out, err) = cli(&other_home, &url, &["job", "explain", &waiting]);
        assert!(ok, "{out}{err}");
        async move { out.contains("kept off 1 engines").then_some(out) }
    })
    .await;
    assert!(explained.contains("job.client_id in ["), "{explained}");

    let bought = submit(&p.client_home, &url, &job_file);
    let results = dir.join("bought-results");
    let (ok, out, err) = cli(&p.client_home, &url, &["job", "results", &bought, "--out", results.to_str().unwrap()]);
    assert!(ok && out.contains("2 tasks succeeded, 0 failed"), "{out}{err}");
    assert_eq!(engine.stats().tasks_succeeded, 2, "the buyer's tasks ran on the seller's engine, the other's did not");
    let (_, status, _) = cli(&other_home, &url, &["job", "status", &waiting]);
    assert!(status.contains("0 succeeded"), "{status}");

    // Delivered: settled in full, less the commission, and the engine is everyone's again.
    p.client(&["confirm", &contract]);
    let out = wait_some("the server to settle the delivered contract", || {
        let out = p.client(&["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("settled 1/1 delivered") && out.contains("to platform (commission)"), "{out}");
    let results = dir.join("other-results");
    let (ok, out, err) = cli(&other_home, &url, &["job", "results", &waiting, "--out", results.to_str().unwrap()]);
    assert!(ok && out.contains("2 tasks succeeded, 0 failed"), "{out}{err}");
    assert_eq!(engine.stats().tasks_succeeded, 4);
    let db = store(&config.database, dir);
    balances(&db, &[]);
    drop(db);
    engine.shutdown().await;
    server.shutdown().await;
}

/// `idlegrid market ARGS` as the client of `home`; its output.
fn market(home: &Path, url: &str, args: &[&str]) -> String {
    let mut all = vec!["market"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(home, url, &all);
    assert!(ok, "market {args:?} failed: {err}\n{out}");
    out
}

/// `buyer` buys `offer` (automatically) and both sign; the contract's number.
fn buy(url: &str, seller: &Path, buyer: &Path, offer: &str) -> String {
    let out = market(buyer, url, &["negotiate", offer, "--opening", "0.1", "--reservation", "10", "--sign"]);
    let contract = number(&out, "contract");
    market(seller, url, &["contracts", &contract, "--sign"]);
    contract
}

/// Money sold as platform credits moves through the ledger at the start; sweepstakes entries
/// are drawn with a seed that reproduces the winners; both are then settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_move_and_sweepstakes_are_drawn_reproducibly() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = start(&config).await;
    let url = server.url();
    let (banker, buyer, other) = (dir.join("banker"), dir.join("buyer"), dir.join("other"));
    let id = |home: &Path| Identity::load_or_create(&home.join("client.key")).unwrap().id().clone();

    // Five credits sold for at most four.
    let offer = number(&market(&banker, &url, &["offer", "money", "kind=credit", "amount=5", "--price", "4"]), "offer");
    let contract = buy(&url, &banker, &buyer, &offer);
    let (banker_id, buyer_id) = (id(&banker), id(&buyer));
    let db = store(&config.database, dir);
    let price = terms(&db, contract.parse().unwrap()).price.as_i64();
    let out = wait_some("the credits contract to be settled", || {
        let out = market(&buyer, &url, &["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("metered 0 of 1 delivery") && out.contains("settled 1/1 delivered"), "{out}");
    let accounts = [AccountId::Party(banker_id), AccountId::Party(buyer_id.clone()), AccountId::Platform];
    let commission = (price as f64 * 0.02).round() as i64;
    assert_eq!(balances(&db, &accounts), [price - commission - 5_000_000, 5_000_000 - price, commission]);

    // Two sweepstakes contracts, three entries each; one winner drawn.
    let cash = ["offer", "money", "kind=sweepstakes", "amount=3", "--price", "0.5"];
    let first = number(&market(&banker, &url, &cash), "offer");
    let second = number(&market(&banker, &url, &cash), "offer");
    let contracts = [buy(&url, &banker, &buyer, &first), buy(&url, &banker, &other, &second)];
    let out = market(&banker, &url, &["draw", "--winners", "1"]);
    let seed: u64 = out.split_whitespace().nth(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    let winner = out.lines().find_map(|l| l.trim().strip_prefix("winner ")).unwrap_or_else(|| panic!("{out}"));
    let entries = [(buyer_id, 3), (id(&other), 3)];
    let again = idlegrid_market::settlement::draw(&entries, 1, seed).unwrap();
    assert_eq!(winner, again[0].to_string(), "the seed reproduces the draw: {out}");
    let err = cli(&banker, &url, &["market", "draw"]).2;
    assert!(err.contains("no sweepstakes contract under way"), "drawn once: {err}");
    // The draw delivered both contracts: each is settled, its draw kept with it.
    for (home, contract) in [(&buyer, &contracts[0]), (&other, &contracts[1])] {
        let out = wait_some("the drawn contracts to be settled", || {
            let out = market(home, &url, &["contracts", contract]);
            async move { out.contains("execution settled").then_some(out) }
        })
        .await;
        assert!(out.contains(&format!("sweepstakes drawn with seed {seed}: winners {winner}")), "{out}");
    }
    balances(&db, &[]);
    drop(db);
    server.shutdown().await;
}
