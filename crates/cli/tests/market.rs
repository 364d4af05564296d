//! The bartering market end to end, from the command line against a real server (SQLite, and
//! PostgreSQL) and a real engine: offers of the seven categories read back with their valuation
//! (the engine's benchmarked speed marked measured), a request finding ranked candidates,
//! automatic negotiations ending in a contract signed by both keys or in failure, a person
//! accepting and countering, the private share never offered, and bad input refused with
//! nothing stored. And requirements in scheduling: an engine's requirement over jobs keeps a
//! job off it (`job explain` names the requirement) while an engine that accepts the job runs it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use idlegrid_protocol::auth::Identity;
use idlegrid_store::PostgresStore;

/// A client home and a provider (an engine's data folder) using the CLI.
struct Traders {
    url: String,
    client_home: PathBuf,
    engine_dir: PathBuf,
}

impl Traders {
    fn run(&self, home: &Path, args: &[&str]) -> (bool, String, String) {
        cli(home, &self.url, args)
    }

    fn client(&self, args: &[&str]) -> String {
        let mut all = vec!["market"];
        all.extend_from_slice(args);
        let (ok, out, err) = self.run(&self.client_home, &all);
        assert!(ok, "market {args:?} failed: {err}\n{out}");
        out
    }

    fn client_refused(&self, args: &[&str]) -> String {
        let mut all = vec!["market"];
        all.extend_from_slice(args);
        let (ok, out, err) = self.run(&self.client_home, &all);
        assert!(!ok, "market {args:?} should be refused:\n{out}");
        err
    }

    fn provider_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["market", "--engine-data", self.engine_dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all
    }

    fn provider(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(&self.client_home, &self.provider_args(args));
        assert!(ok, "market {args:?} as the provider failed: {err}\n{out}");
        out
    }

    fn provider_refused(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(&self.client_home, &self.provider_args(args));
        assert!(!ok, "market {args:?} as the provider should be refused:\n{out}");
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

const MEMORY: [&str; 5] = ["memory", "memory_mb=4096", "read_ns=80", "write_ns=90", "duration_s=3600"];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    let mut all = base.to_vec();
    all.extend_from_slice(more);
    all
}

/// What both store backends must do: search, automatic and in-person negotiations, contracts
/// signed by both keys, the private share kept, refusals that change nothing.
async fn trade(traders: &Traders) {
    let t = traders;
    // The private share is never offered: all of it is refused, part of it is kept back.
    let err = t.provider_refused(&with(&["offer"], &with(&MEMORY, &["--private-share", "1"])));
    assert!(err.contains("private share is never offered"), "{err}");
    let out = t.provider(&with(&["offer"], &with(&MEMORY, &["--private-share", "0.75", "--price", "3"])));
    let kept_back = number(&out, "offer");
    assert!(out.contains(" 1024 MB ") && out.contains("private share 0.75"), "{out}");
    let err = t.provider_refused(&with(&["offer"], &with(&MEMORY, &["--private-share", "0.75", "--quantity", "2048"])));
    assert!(err.contains("offerable"), "{err}");

    // Offers to negotiate: automatic (reservation 6 of 10), automatic and firm, in person (twice).
    let auto =
        number(&t.provider(&with(&["offer"], &with(&MEMORY, &["--price", "10", "--reservation", "6"]))), "offer");
    let firm =
        number(&t.provider(&with(&["offer"], &with(&MEMORY, &["--price", "10", "--reservation", "9.5"]))), "offer");
    let person = number(&t.provider(&with(&["offer"], &with(&MEMORY, &["--price", "8", "--person"]))), "offer");
    let person2 = number(&t.provider(&with(&["offer"], &with(&MEMORY, &["--price", "8", "--person"]))), "offer");

    // A request finds ranked candidates: cheapest price first by rank; the kept-back offer lists
    // only its offerable quarter.
    let out = t.client(&["request", "memory", "--rank", "0 - other.price", "--limit", "20"]);
    let request = number(&out, "request");
    let ranked: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(ranked.len() >= 5, "{out}");
    let prices: Vec<f64> = ranked.iter().map(|columns| columns[5].parse().unwrap()).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "ranked by price, cheapest first: {out}");
    let listed = ranked.iter().find(|columns| columns[1] == kept_back).expect("the kept-back offer is a candidate");
    assert_eq!(listed[3], "1024", "only its offerable quarter: {out}");
    let kept = t.client(&["requests"]);
    assert!(kept.contains(&format!("request {request}  memory  open")), "{kept}");
    let again = t.client(&["search", "--request", &request]);
    assert!(again.contains(&format!("request {request}")), "{again}");

    // Automatic on both sides: agreement between the reservations, signed by both keys.
    let out = t.client(&["negotiate", &auto, "--opening", "2", "--reservation", "8", "--rounds", "10", "--sign"]);
    assert!(out.contains("agreed at"), "{out}");
    let contract = number(&out, "contract");
    assert!(out.contains("awaiting_signatures") && out.contains("(you) (signed)"), "the buyer signed: {out}");
    let out = t.provider(&["contracts", &contract, "--sign"]);
    assert!(out.contains(&format!("contract {contract}  signed")), "{out}");
    let out = t.provider(&["offers"]);
    assert!(out.lines().any(|l| l.starts_with(&format!("offer {auto} ")) && l.contains("contracted")), "{out}");
    // The contracted offer is no candidate any more.
    let out = t.client(&["search", "memory", "--limit", "10"]);
    assert!(!out.lines().any(|l| l.split_whitespace().nth(1) == Some(auto.as_str())), "{out}");

    // Automatic without overlap: failure, no contract, the offer stays open.
    let out = t.client(&["negotiate", &firm, "--opening", "1", "--reservation", "5", "--rounds", "6"]);
    assert!(out.contains("failed"), "{out}");
    assert!(!out.contains("contract"), "{out}");

    // In person: the buyer proposes, the seller accepts from the CLI.
    let out = t.client(&["negotiate", &person, "--price", "7"]);
    assert!(out.contains("open, waiting for") && !out.contains("(you)"), "waits for the seller: {out}");
    let accepted = number(&out, "negotiation");
    let out = t.provider(&["accept", &accepted, "--sign"]);
    assert!(out.contains("agreed at 7.000000"), "{out}");
    let person_contract = number(&out, "contract");
    let out = t.client(&["contracts", &person_contract, "--sign"]);
    assert!(out.contains("  signed"), "{out}");

    // In person: the seller counters; it is the buyer's turn.
    let out = t.client(&["negotiate", &person2, "--price", "5"]);
    let countered = number(&out, "negotiation");
    let out = t.provider(&["counter", &countered, "7.5"]);
    assert!(out.contains("seller  proposes 7.500000") && !out.contains("(you)"), "{out}");
    let out = t.client(&["negotiations", &countered]);
    assert!(out.contains("open, waiting for") && out.contains("(you)"), "now the buyer answers: {out}");

    // A counter on a closed negotiation is refused and changes nothing.
    let before = t.client(&["negotiations", &accepted]);
    let err = t.client_refused(&["counter", &accepted, "1"]);
    assert!(err.contains("closed"), "{err}");
    assert_eq!(t.client(&["negotiations", &accepted]), before);

    // A contract signed with a key that is not the party's is refused.
    let stranger = Identity::generate();
    let buyer = Identity::load_or_create(&t.client_home.join("client.key")).unwrap();
    let transport = transport(&t.url, buyer, idlegrid_types::Role::Client).await;
    let market = idlegrid_client::Market::new(&transport);
    // A fresh agreement to sign: the seller accepts the buyer's counter-offer on person2.
    let countered_id: u64 = countered.parse().unwrap();
    market.counter(countered_id, idlegrid_ledger::Micros::new(7_000_000)).await.unwrap();
    let out = t.provider(&["accept", &countered]);
    let fresh: u64 = number(&out, "contract").parse().unwrap();
    let terms = market.contract(fresh).await.unwrap().terms;
    let forged = stranger.sign_bytes(&terms.signing_bytes());
    let error = market.sign_with(fresh, &forged).await.unwrap_err().to_string();
    assert!(error.contains("buyer's signature does not match"), "{error}");
    let info = market.contract(fresh).await.unwrap();
    assert_eq!((info.state.as_str(), info.buyer_signature.as_ref()), ("awaiting_signatures", None), "nothing changed");
    assert!(market.sign(fresh).await.unwrap().buyer_signature.is_some());
}

/// Bad input is refused with what is wrong named, and nothing is stored.
fn refusals(t: &Traders) {
    let before = t.provider(&["offers"]);
    let err = t.provider_refused(&["offer", "gold", "amount=3"]);
    assert!(err.contains("unknown category 'gold'"), "{err}");
    let err = t.provider_refused(&["offer", "memory", "memory_mb=-5", "read_ns=80", "write_ns=90", "duration_s=3600"]);
    assert!(err.contains("memory.memory_mb is -5: it must not be negative"), "{err}");
    let err = t.provider_refused(&["offer", "memory", "memory_mb=NaN", "read_ns=80", "write_ns=90", "duration_s=3600"]);
    assert!(err.contains("memory.memory_mb") && err.contains("expected a number"), "{err}");
    let err = t.provider_refused(&with(&["offer"], &with(&MEMORY, &["--requirements", "other.price >= && 3"])));
    assert!(err.contains("column"), "{err}");
    let long = "other.price > 1 && ".repeat(600) + "true";
    let err = t.provider_refused(&with(&["offer"], &with(&MEMORY, &["--requirements", &long])));
    assert!(err.contains("--requirements"), "{err}");
    let err = t.client_refused(&["request", "gold"]);
    assert!(err.contains("unknown category 'gold'"), "{err}");
    let err = t.client_refused(&["request", "memory", "--quantity-min=-1"]);
    assert!(err.contains("quantity_min"), "{err}");
    assert_eq!(t.provider(&["offers"]), before, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_from_the_command_line_on_sqlite_with_a_measured_engine() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.coordinator.benchmark_interval_ms = Some(idlegrid_coordinator::BENCHMARK_INTERVAL_DEFAULT_MS);
    // Small: this test's server is a debug build, whose native twin computes slowly.
    config.coordinator.benchmark_size = 320;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir.path(), "engine")).await.unwrap();
    wait_for("the engine to answer its benchmark", || {
        let stats = engine.stats();
        stats.tasks_succeeded >= 1 && stats.held == 0
    })
    .await;
    let traders =
        Traders { url: url.clone(), client_home: dir.path().join("client"), engine_dir: dir.path().join("engine") };

    // An offer in each of the seven categories, read back with its valuation: the engine's
    // benchmarked speed is measured, everything else declared.
    let offers: [&[&str]; 7] = [
        &["computing", "mflops=999999", "cores=1", "duration_s=3600"],
        &MEMORY,
        &["storage", "capacity_mb=100000", "access_ms=5", "read_mb_s=500", "write_mb_s=400", "duration_s=86400"],
        &["peripherals", "kind=printer", "count=1", "speed=20", "duration_s=3600"],
        &[
            "files",
            "target_user=researchers",
            "objective=folding",
            "function=dataset",
            "environment=linux",
            "size_bytes=1000",
            "sha256=abababababababababababababababababababababababababababababababab",
            "asking_price=2",
        ],
        &["internet_access", "speed_mbit_s=100", "availability=0.99", "duration_s=3600"],
        &["money", "kind=cash", "amount=25"],
    ];
    for offer in offers {
        let out = traders.provider(&with(&["offer"], offer));
        assert!(out.starts_with("offer ") && out.contains(&format!("  {}  ", offer[0])), "{out}");
        let figure = |name: &str| out.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or("");
        if offer[0] == "computing" {
            assert!(figure("mflops").ends_with("measured"), "the benchmark beats the declaration: {out}");
            assert!(!figure("mflops").contains("999999"), "{out}");
            assert!(figure("cores").ends_with("declared"), "{out}");
        } else {
            assert!(out.lines().skip(1).all(|l| l.ends_with("declared")), "{out}");
            assert!(!out.contains("measured"), "{out}");
        }
    }
    let listed = traders.provider(&["offers"]);
    assert_eq!(listed.lines().filter(|l| l.starts_with("offer ")).count(), 7, "{listed}");

    refusals(&traders);
    trade(&traders).await;

    let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    for counter in ["offers", "searches", "negotiations", "contracts", "contracts_signed"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("idlegrid_market_{counter}_total{{")))
            .unwrap_or_else(|| panic!("no {counter} counter:\n{metrics}"));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value >= 1.0, "{line}");
    }
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_from_the_command_line_on_postgres() {
    logs();
    let url = std::env::var("IDLEGRID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("market_e2e_{}", std::process::id());
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
    let server = idlegrid_server::Server::start(config.clone()).await.unwrap();
    let traders =
        Traders { url: server.url(), client_home: dir.path().join("client"), engine_dir: dir.path().join("engine") };
    refusals(&traders);
    trade(&traders).await;
    server.shutdown().await;
    // A restarted server rebuilds its search index from the database.
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let traders = Traders { url: server.url(), ..traders };
    let out = traders.client(&["search", "memory", "--limit", "10"]);
    assert!(out.lines().filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit())).count() >= 2, "{out}");
    server.shutdown().await;
    PostgresStore::drop_schema(&url, &schema).unwrap();
}

/// An engine whose owner accepts only alice's jobs keeps a job of another client waiting, and
/// `job explain` names its requirement; a second engine whose requirement the job meets runs
/// every task, and the first runs none. The job's own requirement and rank come from its file.
async fn provider_requirements(url: &str, dir: &Path) {
    let home = dir.join("requirements-client");
    let pi = example_task("pi");
    let job_file = dir.join("picky.toml");
    std::fs::write(
        &job_file,
        format!(
            "name = \"picky\"\nexecutable = \"{}\"\nrequirement = \"engine.cores >= 1\"\nrank = \"engine.gflops\"\n[tasks]\ncount = 6\nparams = \"samples=1000 seed={{index}}\"\n",
            pi.display()
        ),
    )
    .unwrap();

    // A requirement that does not parse is refused where it is written, with its column.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!("executable = \"{}\"\nrank = \"engine.gflops +\"\n[tasks]\ncount = 1\n", pi.display()),
    )
    .unwrap();
    let (ok, out, err) = cli(&home, url, &["job", "submit", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("rank") && err.contains("column 16"), "{out}{err}");
    let mut refused = engine_config(url, dir, "refused-engine");
    refused.owner.job_requirement = Some("job.client in [\"alice\"] and".into());
    let err = refused.owner.validate().unwrap_err();
    assert!(err.contains("job_requirement") && err.contains("column 28"), "{err}");

    let mut alice_only = engine_config(url, dir, "alice-only");
    alice_only.owner.job_requirement = Some("job.client in [\"alice\"] and task.memory_mb <= 4096".into());
    let picky = idlegrid_engine::Engine::start(alice_only).await.unwrap();
    let (ok, out, err) = cli(&home, url, &["job", "submit", job_file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let id = out
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in: {out}"))
        .to_string();
    let explained = wait_some("job explain to name the engine's requirement", || {
        let (ok, out, err) = cli(&home, url, &["job", "explain", &id]);
        assert!(ok, "{out}{err}");
        async move { out.contains("kept off 1 engines").then_some(out) }
    })
    .await;
    assert!(explained.contains("1 engines have room now, 0 of them accept the job"), "{explained}");
    assert!(explained.contains("engine alice-only"), "{explained}");
    assert!(explained.contains("job.client in [\"alice\"] is false (job.client = "), "{explained}");
    let (_, status, _) = cli(&home, url, &["job", "status", &id]);
    assert!(status.contains("0 succeeded"), "{status}");

    let mut open = engine_config(url, dir, "open-engine");
    open.owner.job_requirement = Some("task.memory_mb <= 512 and job.pay_per_hour > 0".into());
    let accepting = idlegrid_engine::Engine::start(open).await.unwrap();
    let results = dir.join("picky-results");
    let (ok, out, err) = cli(&home, url, &["job", "results", &id, "--out", results.to_str().unwrap()]);
    assert!(ok && out.contains("6 tasks succeeded, 0 failed"), "{out}{err}");
    assert_eq!(accepting.stats().tasks_succeeded, 6);
    assert_eq!(picky.stats().tasks_succeeded + picky.stats().tasks_failed, 0, "the picky engine ran nothing");
    accepting.shutdown().await;
    picky.shutdown().await;
}

/// The server's bounds on open offers and requests (set to 2 by the callers), requests
/// withdrawn, and offers that expire.
fn bounds_and_withdrawal(url: &str, dir: &Path) {
    let t = Traders { url: url.into(), client_home: dir.join("bounded-client"), engine_dir: dir.join("unused") };
    let cash = ["money", "kind=cash", "amount=5"];
    let out = t.client(&with(&["offer"], &with(&cash, &["--expires-in", "2h"])));
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("  expires ")), "{out}");
    let err = t.client_refused(&with(&["offer"], &with(&cash, &["--expires-in", "2 weeks"])));
    assert!(err.contains("--expires-in") && err.contains("unit"), "{err}");
    let err = t.client_refused(&with(&["offer"], &with(&cash, &["--expires-in", "0s"])));
    assert!(err.contains("from one second to ten years"), "{err}");
    let second = number(&t.client(&with(&["offer"], &cash)), "offer");
    let err = t.client_refused(&with(&["offer"], &cash));
    assert!(err.contains("you have 2 open offers, the most allowed"), "{err}");
    t.client(&["withdraw", &second]);
    t.client(&with(&["offer"], &cash));

    let first = number(&t.client(&["request", "money"]), "request");
    t.client(&["request", "memory"]);
    let before = t.client(&["requests"]);
    let err = t.client_refused(&["request", "storage"]);
    assert!(err.contains("you have 2 open requests, the most allowed") && err.contains("withdraw-request"), "{err}");
    assert_eq!(t.client(&["requests"]), before, "nothing was stored");
    let out = t.client(&["withdraw-request", &first]);
    assert!(out.contains(&format!("request {first}  money  withdrawn")), "{out}");
    let err = t.client_refused(&["search", "--request", &first]);
    assert!(err.contains("withdrawn"), "{err}");
    let err = t.client_refused(&["withdraw-request", &first]);
    assert!(err.contains("only an open request can be withdrawn"), "{err}");
    t.client(&["request", "storage"]);
    let kept = t.client(&["requests"]);
    assert_eq!(kept.lines().filter(|l| l.contains("  open  ")).count(), 2, "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_requirement_keeps_a_job_off_an_engine_on_sqlite() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.coordinator.market.open_offers_per_party_max = 2;
    config.coordinator.market.open_requests_per_party_max = 2;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    provider_requirements(&server.url(), dir.path()).await;
    bounds_and_withdrawal(&server.url(), dir.path());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_requirement_keeps_a_job_off_an_engine_on_postgres() {
    logs();
    let url = std::env::var("IDLEGRID_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("market_requirements_{}", std::process::id());
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
    config.coordinator.market.open_offers_per_party_max = 2;
    config.coordinator.market.open_requests_per_party_max = 2;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    provider_requirements(&server.url(), dir.path()).await;
    bounds_and_withdrawal(&server.url(), dir.path());
    server.shutdown().await;
    PostgresStore::drop_schema(&url, &schema).unwrap();
}
