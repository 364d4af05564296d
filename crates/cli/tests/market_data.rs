//! The market's data contracts carried out end to end, through the command line against a
//! real server and a real engine: storage kept by the seller's engine and proven by
//! proof-of-storage challenges (one contract proven to its end and paid as metered, one whose
//! blob is altered on the engine's disk, caught by a challenge and settled pro rata), and a
//! file sold, refused before payment and delivered once paid. The ledger stays balanced.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use idlegrid_ledger::AccountId;
use idlegrid_market::contract::Contract;
use idlegrid_market::settlement::{Fraction, plan_settlement};
use idlegrid_protocol::auth::Identity;
use idlegrid_server::{Server, ServerConfig};
use idlegrid_store::{AnyStore, Store};
use idlegrid_types::PartyId;

/// `idlegrid market ARGS` as the client of `home` (or as the engine of `engine`).
fn market(home: &Path, engine: Option<&Path>, url: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["market"];
    if let Some(engine) = engine {
        all.extend_from_slice(&["--engine-data", engine.to_str().unwrap()]);
    }
    all.extend_from_slice(args);
    cli(home, url, &all)
}

fn ok(result: (bool, String, String), what: &str) -> String {
    let (ok, out, err) = result;
    assert!(ok, "{what} failed: {err}\n{out}");
    out
}

fn refused(result: (bool, String, String), what: &str) -> String {
    let (ok, out, err) = result;
    assert!(!ok, "{what} should be refused:\n{out}");
    err
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

/// The figure after `word ` anywhere in `out`.
fn figure(out: &str, word: &str) -> u64 {
    let at = out.find(&format!("{word} ")).unwrap_or_else(|| panic!("no '{word}' in:\n{out}")) + word.len() + 1;
    out[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).unwrap()
}

fn store(config: &ServerConfig) -> AnyStore {
    AnyStore::open(&config.database, &config.data_dir.join("state.db")).unwrap()
}

fn terms(db: &AnyStore, id: &str) -> Contract {
    let id: u64 = id.parse().unwrap();
    let row = db.write(|tx| tx.market().contract(id)).unwrap().expect("the contract is stored");
    serde_json::from_str(&row.terms).unwrap()
}

/// Posted balances of `parties` and the platform; the ledger checked balanced.
fn balances(db: &AnyStore, parties: &[&PartyId]) -> Vec<i64> {
    let mut accounts: Vec<AccountId> = parties.iter().map(|p| AccountId::Party((*p).clone())).collect();
    accounts.push(AccountId::Platform);
    db.write(|tx| -> Result<Vec<i64>, idlegrid_store::StoreError> {
        idlegrid_ledger::check_balanced(tx.ledger()).expect("the ledger is balanced");
        Ok(accounts
            .iter()
            .map(|id| tx.ledger().account(id).unwrap().map_or(0, |a| a.balance_posted().unwrap().as_i64()))
            .collect())
    })
    .unwrap()
}

/// What `plan_settlement` pays to the party whose key ends with `purpose`.
fn paid(contract: &Contract, fraction: Fraction, purpose: &str) -> i64 {
    plan_settlement(contract, fraction).iter().find(|t| t.key.ends_with(purpose)).map_or(0, |t| t.amount.as_i64())
}

struct Trade {
    url: String,
    buyer: PathBuf,
    engine: PathBuf,
}

impl Trade {
    fn buyer(&self, args: &[&str]) -> String {
        ok(market(&self.buyer, None, &self.url, args), &format!("market {args:?}"))
    }

    fn seller(&self, args: &[&str]) -> String {
        ok(market(&self.buyer, Some(&self.engine), &self.url, args), &format!("market {args:?} as the seller"))
    }

    /// The engine offers storage for `seconds`; the buyer buys it and both sign.
    fn storage_contract(&self, seconds: u64) -> String {
        let duration = format!("duration_s={seconds}");
        let attributes = ["storage", "capacity_mb=10", "access_ms=5", "read_mb_s=100", "write_mb_s=80", &duration];
        let mut args = vec!["offer"];
        args.extend_from_slice(&attributes);
        args.extend_from_slice(&["--price", "4"]);
        let offer = number(&self.seller(&args), "offer");
        let out = self.buyer(&["negotiate", &offer, "--opening", "1", "--reservation", "10", "--sign"]);
        let contract = number(&out, "contract");
        let out = self.seller(&["contracts", &contract, "--sign"]);
        assert!(out.contains("execution active"), "{out}");
        contract
    }

    async fn proven(&self, contract: &str, passed: u64) -> String {
        wait_some(&format!("contract {contract} to pass {passed} storage proofs"), || {
            let out = self.buyer(&["contracts", contract]);
            async move { (figure(&out, "proofs passed") >= passed).then_some(out) }
        })
        .await
    }

    async fn settled(&self, contract: &str) -> String {
        wait_some(&format!("contract {contract} to be settled"), || {
            let out = self.buyer(&["contracts", contract]);
            async move { out.contains("execution settled").then_some(out) }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_kept_by_the_sellers_engine_and_proven_until_a_corrupted_blob_fails() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    config.coordinator.market.data.storage_challenge_ms = 1_000;
    config.coordinator.market.data.storage_answer_ms = 60_000;
    let server = Server::start(config.clone()).await.unwrap();
    let url = server.url();
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir, "seller")).await.unwrap();
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), engine: dir.join("seller") };
    let seller = Identity::load_or_create(&trade.engine.join("identity.key")).unwrap().id().clone();

    // Two contracts: one short, proven to its end; one long, whose blob gets corrupted.
    let short = trade.storage_contract(40);
    let long = trade.storage_contract(3600);
    let buyer = Identity::load_or_create(&trade.buyer.join("client.key")).unwrap().id().clone();
    let db = store(&config);
    let before = balances(&db, &[&seller, &buyer]);

    let plain: Vec<u8> = (0..200_000u32).map(|n| (n % 253) as u8).collect();
    let file = dir.join("blob.bin");
    std::fs::write(&file, &plain).unwrap();
    let err = refused(
        market(&trade.buyer, Some(&trade.engine), &url, &["storage", "put", &short, file.to_str().unwrap()]),
        "put by the seller",
    );
    assert!(err.contains("only the buyer"), "{err}");
    for contract in [&short, &long] {
        let out = trade.buyer(&["storage", "put", contract, file.to_str().unwrap()]);
        assert!(out.contains("storage blob "), "{out}");
    }
    // The engine keeps the blob outside its element cache, encrypted by the buyer.
    let kept = trade.engine.join("market").join("storage").join(format!("contract-{long}.blob"));
    wait_for("the engine to keep the blob", || kept.exists()).await;
    let on_disk = std::fs::read(&kept).unwrap();
    assert!(!on_disk.windows(64).any(|w| w == &plain[1000..1064]), "the engine holds ciphertext only");

    let out = trade.proven(&short, 1).await;
    assert!(out.contains("kept by the seller's engine"), "{out}");
    trade.proven(&long, 1).await;
    // The buyer fetches its blob back while the contract is active.
    let back = dir.join("back.bin");
    let out = trade.buyer(&["storage", "get", &short, "--out", back.to_str().unwrap()]);
    assert!(out.contains("200000 bytes fetched back"), "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), plain);

    // The long contract's blob is altered on the engine's disk: the next challenge fails it.
    let altered: Vec<u8> = std::fs::read(&kept).unwrap().iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&kept, altered).unwrap();
    let out = trade.settled(&long).await;
    assert!(out.contains("failed: the seller's engine failed storage challenge"), "{out}");
    let long_terms = terms(&db, &long);
    let passed = figure(&out, "proofs passed");
    let proven = figure(&out, "proven until") - long_terms.starts_ms;
    assert!(passed >= 1 && figure(&out, ", failed") == 1, "{out}");
    assert!(out.contains(&format!("settled {proven}/3600000 delivered")), "pro rata, the time proven: {out}");
    let err = refused(market(&trade.buyer, None, &url, &["storage", "get", &long, "--out", "x"]), "get after failure");
    assert!(err.contains("no longer kept"), "{err}");

    // The short one is proven until its time is over, then settled as metered.
    let out = trade.settled(&short).await;
    assert!(!out.contains("failed:") && out.contains("failed 0"), "{out}");
    let short_terms = terms(&db, &short);
    let metered = figure(&out, "metered");
    assert!(metered > 0 && metered <= 40_000, "{out}");
    assert!(out.contains(&format!("settled {metered}/40000 delivered")), "{out}");

    let after = balances(&db, &[&seller, &buyer]);
    let (f_short, f_long) = (Fraction::new(metered, 40_000), Fraction::new(proven, 3_600_000));
    let seller_paid = paid(&short_terms, f_short, "seller") + paid(&long_terms, f_long, "seller");
    let platform_paid = paid(&short_terms, f_short, "platform") + paid(&long_terms, f_long, "platform");
    assert!(seller_paid > 0, "the seller is paid for the time proven");
    assert_eq!(after[0] - before[0], seller_paid, "the seller is paid pro rata");
    assert_eq!(after[2] - before[2], platform_paid, "the commission on what was earned");
    assert_eq!(after[1] - before[1], -(seller_paid + platform_paid), "the buyer paid only that");
    drop(db);
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_delivered_only_once_paid_and_only_the_file_named() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config.clone()).await.unwrap();
    let url = server.url();
    let (seller_home, buyer_home) = (dir.join("seller"), dir.join("buyer"));
    let seller = |args: &[&str]| ok(market(&seller_home, None, &url, args), &format!("seller {args:?}"));
    let buyer = |args: &[&str]| ok(market(&buyer_home, None, &url, args), &format!("buyer {args:?}"));

    let content = b"a dataset worth paying for\n".repeat(1000);
    let file = dir.join("dataset.csv");
    std::fs::write(&file, &content).unwrap();
    let sha256 = idlegrid_types::ElementHash::of(&content).to_string();
    let (size, hash) = (format!("size_bytes={}", content.len()), format!("sha256={sha256}"));
    let header = ["target_user=analysts", "objective=research", "function=dataset", "environment=csv"];
    let mut args = vec!["offer", "files", &size, &hash];
    args.extend_from_slice(&header);
    args.extend_from_slice(&["--price", "3"]);
    let offer = number(&seller(&args), "offer");
    let out = buyer(&["negotiate", &offer, "--opening", "1", "--reservation", "10", "--sign"]);
    let contract = number(&out, "contract");
    let db = store(&config);
    let terms = terms(&db, &contract);
    let ids = [&terms.seller.party, &terms.buyer.party];
    let before = balances(&db, &ids);

    // Another file is refused; the one named is attached before the seller signs.
    let other = dir.join("other.csv");
    std::fs::write(&other, b"something else").unwrap();
    let err =
        refused(market(&seller_home, None, &url, &["file", "attach", &contract, other.to_str().unwrap()]), "swap");
    assert!(err.contains("is not the one contract"), "{err}");
    let out = seller(&["file", "attach", &contract, file.to_str().unwrap()]);
    assert!(!out.contains("execution"), "not started: {out}");
    let got = dir.join("got.csv");
    let err =
        refused(market(&buyer_home, None, &url, &["file", "get", &contract, "--out", got.to_str().unwrap()]), "get");
    assert!(err.contains("not paid yet"), "{err}");
    assert!(!got.exists());

    // Paid (both signed, the price held): the buyer downloads it and delivery is confirmed.
    let out = seller(&["contracts", &contract, "--sign"]);
    assert!(out.contains("execution active") && out.contains(&format!("file {sha256}")), "{out}");
    assert!(out.contains("attached, not delivered yet"), "{out}");
    let err = refused(market(&seller_home, None, &url, &["file", "get", &contract, "--out", "x"]), "get by seller");
    assert!(err.contains("only the buyer"), "{err}");
    let out = buyer(&["file", "get", &contract, "--out", got.to_str().unwrap()]);
    assert!(out.contains("file saved to") && out.contains("delivered to the buyer"), "{out}");
    assert_eq!(std::fs::read(&got).unwrap(), content);

    let out = wait_some("the file contract to be settled", || {
        let out = buyer(&["contracts", &contract]);
        async move { out.contains("execution settled").then_some(out) }
    })
    .await;
    assert!(out.contains("settled 1/1 delivered") && out.contains("to seller"), "{out}");
    let after = balances(&db, &ids);
    let (to_seller, to_platform) = (paid(&terms, Fraction::WHOLE, "seller"), paid(&terms, Fraction::WHOLE, "platform"));
    assert!(to_seller > 0, "a price was agreed");
    assert_eq!(after[0] - before[0], to_seller, "the seller is paid in full, less its commission");
    assert_eq!(after[1] - before[1], -(to_seller + to_platform), "the buyer paid the price");
    drop(db);
    server.shutdown().await;
}

/// Internet access: the seller's engine relays the buyer's element; both sides count the
/// bytes, the lower is delivered, and the contract is settled by bytes delivered over bytes
/// contracted when its time is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internet_access_is_relayed_by_the_sellers_engine_and_settled_by_the_bytes() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut config = server_config(dir);
    config.tls = None;
    let server = Server::start(config.clone()).await.unwrap();
    let url = server.url();
    let mut engine_config = engine_config(&url, dir, "seller");
    engine_config.relay_listen = Some("127.0.0.1:0".into());
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let trade = Trade { url: url.clone(), buyer: dir.join("buyer"), engine: dir.join("seller") };

    // 1 Mbit/s for 30 s: 3 750 000 bytes contracted.
    let access = ["offer", "internet_access", "speed_mbit_s=1", "availability=0.99", "duration_s=30", "--price", "4"];
    let offer = number(&trade.seller(&access), "offer");
    let out = trade.buyer(&["negotiate", &offer, "--opening", "1", "--reservation", "10", "--sign"]);
    let contract = number(&out, "contract");
    trade.seller(&["contracts", &contract, "--sign"]);
    let db = store(&config);
    let terms = terms(&db, &contract);
    let ids = [&terms.seller.party, &terms.buyer.party];
    let before = balances(&db, &ids);

    // The buyer's element, fetched through the relay (not from the server).
    let identity = Identity::load_or_create(&trade.buyer.join("client.key")).unwrap();
    let buyer = transport(&url, identity, idlegrid_types::Role::Client).await;
    let content: Vec<u8> = (0..750_000u32).map(|n| (n % 241) as u8).collect();
    let element = buyer.upload(content.clone().into(), idlegrid_types::ElementKind::Data, "input").await.unwrap();
    let hash = element.hash.to_string();
    let got = dir.join("got.bin");
    let err = refused(
        market(&trade.buyer, Some(&trade.engine), &url, &["relay", "get", &contract, &hash, "--out", "x"]),
        "seller",
    );
    assert!(err.contains("only the buyer"), "{err}");
    let out = trade.buyer(&["relay", "get", &contract, &hash, "--out", got.to_str().unwrap()]);
    assert!(out.contains("750000 bytes received through the relay"), "{out}");
    assert_eq!(std::fs::read(&got).unwrap(), content);
    let out = wait_some("both sides' byte counts", || {
        let out = trade.buyer(&["contracts", &contract]);
        async move { out.contains("seller counted 750000, buyer 750000").then_some(out) }
    })
    .await;
    assert!(out.contains("bytes served 750000 of 3750000"), "{out}");

    // Settled by the bytes when its time is over: a fifth.
    let out = trade.settled(&contract).await;
    assert!(out.contains("settled 6000/30000 delivered"), "{out}");
    let after = balances(&db, &ids);
    let fifth = Fraction::new(1, 5);
    assert_eq!(after[0] - before[0], paid(&terms, fifth, "seller"), "the seller is paid for the bytes delivered");
    let platform = paid(&terms, fifth, "platform");
    assert_eq!(after[1] - before[1], -(paid(&terms, fifth, "seller") + platform), "the buyer paid a fifth");
    drop(db);
    engine.shutdown().await;
    server.shutdown().await;
}
