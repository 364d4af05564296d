//! Money end to end: notices reach real receivers (an HTTP endpoint and an SMTP server), and a
//! server killed between journaling and billing bills everything once after it restarts.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::JobProperties;

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

/// A local SMTP server (aiosmtpd, installed by .ci/run) writing to a maildir.
struct Smtp {
    child: std::process::Child,
    maildir: std::path::PathBuf,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_smtp(dir: &std::path::Path) -> Smtp {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = std::process::Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 with aiosmtpd is needed: `cargo xtask prerequisites --install` installs it");
    // Killed on drop, also when the loop below gives up.
    let smtp = Smtp { child, maildir, port };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return smtp;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("aiosmtpd did not start (pip install aiosmtpd)");
}

fn mails(maildir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else { return Vec::new() };
    entries.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_job_is_announced_by_a_signed_webhook_and_by_email() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(dir.path());
    // The webhook receiver: records bodies and signatures.
    let received: Arc<Mutex<Vec<(String, Option<String>)>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let received = received.clone();
                async move {
                    let signature =
                        headers.get("x-idlegrid-signature").and_then(|v| v.to_str().ok()).map(str::to_string);
                    received.lock().unwrap().push((body, signature));
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = server_config(dir.path());
    // The receiver listens on loopback, which webhooks reach only where the operator allows.
    config.coordinator.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
    config.smtp = Some(idlegrid_server::SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp.port,
        from: "grid@example.test".into(),
    });
    config.notice_interval = Duration::from_millis(100);
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let _engine = idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), "engine")).await.unwrap();
    let client = connect(&server.url()).await;
    client.set_notices(Some(hook), Some("s3cret".into()), Some("owner@example.test".into())).await.unwrap();
    let noop = upload_task(&client, "noop").await;
    let job =
        client.create_job(JobProperties { name: "nightly".into(), ..JobProperties::default() }).await.unwrap().job;
    client.add_tasks(job, (0..3).map(|i| spec(i, noop.hash, "x"))).await.unwrap();
    client.launch(job).await.unwrap();
    run_to_completion(&client, job, Replay::Undelivered).await;

    let started = Instant::now();
    while (received.lock().unwrap().is_empty() || mails(&smtp.maildir).is_empty()) && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (body, signature) = received.lock().unwrap().first().cloned().expect("the webhook was called");
    let notice: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(notice["kind"], "completed");
    assert_eq!(notice["job"], job.to_string());
    assert_eq!(notice["succeeded"], 3);
    assert!(notice.get("webhook_secret").is_none(), "the secret is never sent");
    assert_eq!(
        signature.as_deref(),
        Some(idlegrid_server::webhook_signature("s3cret", &body).as_str()),
        "signed with HMAC-SHA256"
    );
    let mail = mails(&smtp.maildir).remove(0);
    assert!(mail.contains("To: owner@example.test") && mail.contains("From: grid@example.test"), "{mail}");
    assert!(mail.contains("nightly") && mail.contains("completed"), "{mail}");
    assert!(mail.contains("3 tasks succeeded"), "{mail}");
}

/// Webhooks are requests the server makes on a client's behalf: by default they may not reach
/// loopback, private or link-local addresses, in whatever spelling, at registration nor at
/// delivery (a range allowed when the URL was registered and no longer is); an operator may
/// allow a range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_private_addresses_only_where_the_operator_allows() {
    let dir = tempfile::tempdir().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let hits = hits.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "ok" }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hook = format!("http://127.0.0.1:{port}/hook");

    // Refused when the URL is registered, in every spelling of a loopback or private address.
    let config = server_config(dir.path());
    let server = idlegrid_server::Server::start(config.clone()).await.unwrap();
    let client = connect(&server.url()).await;
    for url in [
        hook.clone(),
        format!("http://localhost:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://10.0.0.1/hook".to_string(),
    ] {
        match client.set_notices(Some(url.clone()), None, None).await {
            Err(idlegrid_client::ClientError::Refused(report)) => {
                assert_eq!(report.code, idlegrid_protocol::ErrorCode::BadRequest, "{url}");
                assert!(report.message.contains("--webhook-allow"), "{url}: {}", report.message);
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    client.close().await.unwrap();
    server.shutdown().await;

    // Allowed by the operator: registered. Then the server restarts without that range: the
    // notice is attempted and refused at delivery; the receiver hears nothing.
    let mut allowing = config.clone();
    allowing.coordinator.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
    let server = idlegrid_server::Server::start(allowing).await.unwrap();
    let owner = idlegrid_protocol::auth::Identity::generate();
    let connect_as = |url: String, identity: idlegrid_protocol::auth::Identity| async move {
        let channel = idlegrid_client::ChannelConfig {
            poll_wait: Duration::from_secs(5),
            backoff_max: Duration::from_millis(500),
            ..Default::default()
        };
        idlegrid_client::Client::connect_with(endpoint(&url).await, identity, "owner", channel).await.unwrap()
    };
    let client = connect_as(server.url(), owner.clone()).await;
    client.set_notices(Some(hook.clone()), None, None).await.expect("allowed by --webhook-allow");
    client.close().await.unwrap();
    server.shutdown().await;

    let mut strict = config.clone();
    strict.notice_interval = Duration::from_millis(100);
    let database = strict.data_dir.join("state.db");
    let server = idlegrid_server::Server::start(strict).await.unwrap();
    let mut engine_config = engine_config(&server.url(), dir.path(), "engine");
    engine_config.server =
        engine_config.server.with_trust(idlegrid_client::ServerTrust::Ca(server.ca_pem().unwrap().to_string()));
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let client = connect_as(server.url(), owner).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, (0..1).map(|i| spec(i, noop.hash, "x"))).await.unwrap();
    client.launch(job).await.unwrap();
    run_to_completion(&client, job, Replay::Undelivered).await;
    let store = idlegrid_store::SqliteStore::open(&database).unwrap();
    let started = Instant::now();
    loop {
        use idlegrid_store::Store;
        let notices = store.read(|tx| tx.due_notices(u64::MAX, 100)).unwrap();
        if notices.iter().any(|n| n.channel == "webhook" && n.attempts >= 1) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the webhook was never attempted: {notices:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the loopback receiver");
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_between_journaling_and_billing_bills_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    // Billing increments of 3 s: the work below is journaled inside one increment, and the
    // server dies before that increment closes, so before it is billed.
    let server_args = |data: &std::path::Path| {
        let mut command = std::process::Command::new(binary());
        command
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args([
                "--engine-silence-secs",
                "30",
                "--maintenance-secs",
                "0.2",
                "--billing-increment-secs",
                "3",
                "--log",
                "warn",
            ])
            .args(["--benchmark-interval-secs", "0"]);
        command
    };
    let mut server = Process(server_args(&data).spawn().unwrap());
    wait_healthy(&url).await;
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir.path(), "engine")).await.unwrap();
    let client = connect(&url).await;
    let noop = upload_task(&client, "noop").await;
    // Wait for the start of an increment so that the job fits in it.
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    while now_ms() % 3000 > 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, (0..4).map(|i| spec(i, noop.hash, "x"))).await.unwrap();
    client.launch(job).await.unwrap();
    run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(client.account().await.unwrap().balance_micros, 0, "not billed yet: the increment is open");
    server.kill9();
    server = Process(server_args(&data).spawn().unwrap());
    wait_healthy(&url).await;
    let started = Instant::now();
    let charged = loop {
        let balance = client.account().await.unwrap().balance_micros;
        if balance < 0 {
            break -balance;
        }
        assert!(started.elapsed() < PATIENCE, "the journaled work was never billed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Two more increments pass: nothing is charged again.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    assert_eq!(-client.account().await.unwrap().balance_micros, charged, "charged once");
    let engine_identity =
        idlegrid_protocol::auth::Identity::load_or_create(&dir.path().join("engine/identity.key")).unwrap();
    let transport = transport(&url, engine_identity, idlegrid_types::Role::Provider).await;
    let earned: idlegrid_protocol::messages::AccountInfo =
        transport.call::<(), _>(reqwest::Method::GET, "/v1/account", None, Duration::from_secs(10)).await.unwrap();
    assert!(
        earned.balance_micros > 0 && earned.balance_micros < charged,
        "the provider was paid, the platform kept a margin: {earned:?}"
    );
    let csv = client
        .transport()
        .call_text(reqwest::Method::GET, "/v1/account/statement?period=whole&format=csv", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(csv.starts_with("period_start,period_end,job,purpose,transfers,amount"), "{csv}");
    assert!(csv.contains(&job.to_string()), "{csv}");
    engine.shutdown().await;
    drop(server);
}

#[test]
fn the_shipped_pricing_file_holds_the_defaults_and_a_bad_one_stops_the_server() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/pricing.toml")).unwrap();
    let parsed: idlegrid_ledger::PricingConfig = toml::from_str(&shipped).unwrap();
    assert_eq!(parsed, idlegrid_ledger::PricingConfig::default(), "packaging/pricing.toml documents the defaults");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("pricing.toml");
    std::fs::write(&bad, shipped.replace("baseline_reliability = 0.9", "baseline_reliability = 1.0")).unwrap();
    let output = std::process::Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{}", free_port()), "--data"])
        .arg(dir.path().join("server"))
        .arg("--pricing")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("baseline_reliability") && stderr.contains("(0, 1)"), "{stderr}");

    std::fs::write(&bad, "computation_exponent = 1.2\nsurprise = 3\n").unwrap();
    let output = std::process::Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{}", free_port()), "--data"])
        .arg(dir.path().join("server"))
        .arg("--pricing")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("surprise"), "an unknown key is named: {stderr}");
}
